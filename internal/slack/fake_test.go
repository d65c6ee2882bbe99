package slack

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

const token = "xoxb-1-test-token"

// call is what the test expects of one Web API call, and what the fake
// answers it with.
type call struct {
	method string            // "chat.postMessage", "chat.update"
	want   map[string]string // form fields that must be present with these values ("" = must be absent)
	blocks json.RawMessage   // the blocks the call must carry (compared as JSON); nil = none
	status int               // HTTP status of the answer; 0 = 200
	header map[string]string // answer headers
	body   string            // answer body; "" = ok with channel C0DEPLOYS1 and a ts
	hold   bool              // answer only once the client has gone (a Slack that hangs)
}

// fakeSlack is a strict Slack Web API: every call must be the next one
// scripted, with the bot token, POST, a form body and exactly the fields
// scripted. A call not scripted, or a script not used up, fails the test.
type fakeSlack struct {
	t   *testing.T
	srv *httptest.Server

	gone chan struct{} // closed when the test ends: held answers give up

	mu     sync.Mutex
	script []call
	n      int
}

func newFake(t *testing.T, script ...call) *fakeSlack {
	t.Helper()
	f := &fakeSlack{t: t, script: script, gone: make(chan struct{})}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		close(f.gone)
		f.srv.Close()
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.n != len(f.script) {
			t.Errorf("fake Slack: %d of %d scripted calls were made", f.n, len(f.script))
		}
	})
	return f
}

func (f *fakeSlack) client(t *testing.T, opts ...Option) *Client {
	t.Helper()
	c, err := New(token, append([]Option{WithAPIURL(f.srv.URL)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fakeSlack) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *fakeSlack) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if f.n >= len(f.script) {
		f.mu.Unlock()
		f.t.Errorf("fake Slack: unscripted call %s %s", r.Method, r.URL.Path)
		http.Error(w, "unscripted", http.StatusTeapot)
		return
	}
	c := f.script[f.n]
	f.n++
	f.mu.Unlock()
	if c.hold {
		select {
		case <-r.Context().Done():
		case <-f.gone:
		}
		return
	}

	if err := check(r, c); err != nil {
		f.t.Errorf("fake Slack: call %s: %v", c.method, err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for k, v := range c.header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json")
	if c.status != 0 {
		w.WriteHeader(c.status)
	}
	body := c.body
	if body == "" {
		ch := r.PostForm.Get("channel")
		if strings.HasPrefix(ch, "#") {
			ch = "C0DEPLOYS1"
		}
		ts := r.PostForm.Get("ts")
		if ts == "" {
			ts = fmt.Sprintf("1700000000.%06d", f.n)
		}
		body = fmt.Sprintf(`{"ok":true,"channel":%q,"ts":%q}`, ch, ts)
	}
	fmt.Fprint(w, body)
}

// check holds r to c: path, method, token, content type, and every
// scripted field; the blocks compared as JSON.
func check(r *http.Request, c call) error {
	if r.Method != http.MethodPost || r.URL.Path != "/"+c.method {
		return fmt.Errorf("got %s %s, want POST /%s", r.Method, r.URL.Path, c.method)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return fmt.Errorf("Content-Type %q, want a form", ct)
	}
	if err := r.ParseForm(); err != nil {
		return err
	}
	if got := r.PostForm.Get("token"); got != token && r.Header.Get("Authorization") != "Bearer "+token {
		return fmt.Errorf("token %q, Authorization %q: the bot token is missing", got, r.Header.Get("Authorization"))
	}
	for k, want := range c.want {
		if got, ok := r.PostForm[k]; want == "" && ok {
			return fmt.Errorf("field %s=%q should be absent", k, got)
		} else if want != "" && r.PostForm.Get(k) != want {
			return fmt.Errorf("field %s=%q, want %q", k, r.PostForm.Get(k), want)
		}
	}
	got := r.PostForm.Get("blocks")
	switch {
	case c.blocks == nil && got != "":
		return fmt.Errorf("blocks %s, want none", got)
	case c.blocks != nil && !sameJSON(got, string(c.blocks)):
		return fmt.Errorf("blocks\n%s\nwant\n%s", got, c.blocks)
	}
	return nil
}

func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}
