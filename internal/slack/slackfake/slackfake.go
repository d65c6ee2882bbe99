// Package slackfake is a strict, stateful Slack Web API for tests of the
// whole bot: chat.postMessage (with and without thread_ts) and chat.update.
// Every call must be a POST form with the bot token, name a channel the
// workspace has, carry text and, when it carries blocks, Block Kit JSON of
// the kinds shipbot sends; an update must name a message that exists, by
// the channel's ID as Slack returned it. A call that breaks a rule fails
// the test. It keeps every message with the history of its edits, and can
// be made to fail (Fail) to play a Slack that is down.
package slackfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Token is the bot token the fake accepts.
const Token = "xoxb-1-fake-token"

// Message is one message the fake keeps.
type Message struct {
	Channel  string   // the channel's ID
	TS       string   // its timestamp, which identifies it
	ThreadTS string   // the message it replies to; "" for a top-level message
	Texts    []string // its text as posted, then after each update
	Blocks   []string // its blocks (JSON) likewise
}

// Text is the message's text now.
func (m Message) Text() string { return m.Texts[len(m.Texts)-1] }

// Server is the fake.
type Server struct {
	URL string // the Web API base, for SLACK_API_URL

	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	channels map[string]string // "#name" and ID → ID
	messages []*Message
	fail     int // answer this HTTP status to every call while not 0
	calls    map[string]int
	failed   int // calls answered with fail
	next     int
}

// New starts a fake whose workspace has the channels given by name
// ("#deploys"); the server stops when the test ends.
func New(t testing.TB, channels ...string) *Server {
	s := &Server{t: t, channels: map[string]string{}, calls: map[string]int{}}
	for i, name := range channels {
		id := fmt.Sprintf("C%09d", i+1)
		s.channels[name] = id
		s.channels[id] = id
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL + "/api/"
	t.Cleanup(s.srv.Close)
	return s
}

// Fail makes every call answer status (e.g. 500) until Fail(0).
func (s *Server) Fail(status int) {
	s.mu.Lock()
	s.fail = status
	s.mu.Unlock()
}

// Messages are the messages kept, in the order they were posted.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.messages))
	for i, m := range s.messages {
		out[i] = *m
		out[i].Texts = append([]string(nil), m.Texts...)
		out[i].Blocks = append([]string(nil), m.Blocks...)
	}
	return out
}

// Calls counts the calls of a method that succeeded.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// Failed counts the calls answered with Fail's status.
func (s *Server) Failed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	method, ok := strings.CutPrefix(r.URL.Path, "/api/")
	if !ok || r.Method != http.MethodPost {
		s.t.Errorf("slackfake: %s %s is not a Web API call", r.Method, r.URL.Path)
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	s.mu.Lock()
	if s.fail != 0 {
		s.failed++
		status := s.fail
		s.mu.Unlock()
		http.Error(w, "slack is down", status)
		return
	}
	s.mu.Unlock()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		s.t.Errorf("slackfake: %s with Content-Type %q, want a form", method, ct)
	}
	if err := r.ParseForm(); err != nil {
		s.t.Errorf("slackfake: %s: %v", method, err)
	}
	if r.PostForm.Get("token") != Token && r.Header.Get("Authorization") != "Bearer "+Token {
		answer(w, `{"ok":false,"error":"invalid_auth"}`)
		return
	}
	var body string
	switch method {
	case "chat.postMessage":
		body = s.post(method, r)
	case "chat.update":
		body = s.update(method, r)
	default:
		s.t.Errorf("slackfake: unexpected method %s", method)
		body = `{"ok":false,"error":"unknown_method"}`
	}
	answer(w, body)
}

func answer(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, body)
}

// content checks the text and blocks every message call carries.
func (s *Server) content(method string, r *http.Request) (text, blocks string, ok bool) {
	text, blocks = r.PostForm.Get("text"), r.PostForm.Get("blocks")
	if strings.TrimSpace(text) == "" {
		s.t.Errorf("slackfake: %s without text: Slack needs it for notifications", method)
		return "", "", false
	}
	if blocks != "" {
		var bs []struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal([]byte(blocks), &bs); err != nil {
			s.t.Errorf("slackfake: %s blocks are not JSON: %v", method, err)
			return "", "", false
		}
		for _, b := range bs {
			if b.Type != "section" && b.Type != "context" {
				s.t.Errorf("slackfake: %s has a block of type %q", method, b.Type)
			}
		}
	}
	return text, blocks, true
}

func (s *Server) post(method string, r *http.Request) string {
	text, blocks, ok := s.content(method, r)
	if !ok {
		return `{"ok":false,"error":"no_text"}`
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.channels[r.PostForm.Get("channel")]
	if !ok {
		return `{"ok":false,"error":"channel_not_found"}`
	}
	thread := r.PostForm.Get("thread_ts")
	if thread != "" && s.find(id, thread) == nil {
		s.t.Errorf("slackfake: a reply to %s, which is not a message in %s", thread, id)
		return `{"ok":false,"error":"thread_not_found"}`
	}
	s.next++
	m := &Message{Channel: id, TS: fmt.Sprintf("1700000000.%06d", s.next), ThreadTS: thread, Texts: []string{text}, Blocks: []string{blocks}}
	s.messages = append(s.messages, m)
	s.calls[method]++
	return fmt.Sprintf(`{"ok":true,"channel":%q,"ts":%q}`, id, m.TS)
}

func (s *Server) update(method string, r *http.Request) string {
	text, blocks, ok := s.content(method, r)
	if !ok {
		return `{"ok":false,"error":"no_text"}`
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := r.PostForm.Get("channel")
	if _, known := s.channels[ch]; !known || strings.HasPrefix(ch, "#") {
		s.t.Errorf("slackfake: chat.update in %q: it needs the channel's ID, as chat.postMessage answered it", ch)
		return `{"ok":false,"error":"channel_not_found"}`
	}
	m := s.find(ch, r.PostForm.Get("ts"))
	if m == nil {
		s.t.Errorf("slackfake: chat.update of %s in %s, which does not exist", r.PostForm.Get("ts"), ch)
		return `{"ok":false,"error":"message_not_found"}`
	}
	m.Texts, m.Blocks = append(m.Texts, text), append(m.Blocks, blocks)
	s.calls[method]++
	return fmt.Sprintf(`{"ok":true,"channel":%q,"ts":%q,"text":""}`, ch, m.TS)
}

func (s *Server) find(channel, ts string) *Message {
	for _, m := range s.messages {
		if m.Channel == channel && m.TS == ts {
			return m
		}
	}
	return nil
}
