package cdevents

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

const secret = "events-secret-for-tests"

func TestSignVerify(t *testing.T) {
	body := []byte(`{"specversion":"1.0"}`)
	sig := Sign(secret, body)
	if !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Fatalf("signature %q is not sha256= and 64 hex digits", sig)
	}
	// An independent value: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
	if got := Sign("key", []byte("The quick brown fox jumps over the lazy dog")); got != "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8" {
		t.Errorf("Sign = %s, not the known HMAC-SHA256", got)
	}
	if err := Verify(secret, body, sig); err != nil {
		t.Errorf("round trip: %v", err)
	}
	tests := []struct {
		name, secret, header string
		body                 []byte
		want                 string
	}{
		{"wrong secret", "another-secret", sig, body, "does not match the body"},
		{"changed body", secret, sig, []byte(`{"specversion":"1.1"}`), "does not match the body"},
		{"no header", secret, "", body, "has no X-Shipbot-Signature-256 header"},
		{"sha1", secret, "sha1=" + strings.Repeat("0", 40), body, "is not sha256="},
		{"not hex", secret, "sha256=" + strings.Repeat("z", 64), body, "is not sha256="},
		{"short", secret, sig[:20], body, "is not sha256="},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.secret, tc.body, tc.header)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// receiver is a webhook receiver on loopback that verifies what it gets
// the way a user's receiver would.
type receiver struct {
	*httptest.Server
	hits atomic.Int32
	got  chan event.Event
}

func newReceiver(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{got: make(chan event.Event, 10)}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.hits.Add(1)
		if answer != nil {
			answer(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		if err := Verify(secret, body, r.Header.Get(SignatureHeader)); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != ContentType || r.Method != http.MethodPost {
			http.Error(w, "want POST "+ContentType+", got "+r.Method+" "+ct, http.StatusUnsupportedMediaType)
			return
		}
		e, err := Decode(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.got <- e
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func testEvent(t *testing.T) event.Event {
	t.Helper()
	e, err := ServiceDeployed(meta, Release{Repo: "octo-org/web", Environment: "production", SHA: sha})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func newSender(t *testing.T, opts ...Option) *Sender {
	s := NewSender(secret, opts...)
	t.Cleanup(s.Close)
	return s
}

func TestSendDelivers(t *testing.T) {
	rc := newReceiver(t, nil)
	s := newSender(t)
	if err := s.Send(context.Background(), rc.URL+"/cd", testEvent(t)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	e := <-rc.got
	if e.ID() != meta.ID || e.Type() != TypeServiceDeployed {
		t.Errorf("receiver got %s %s", e.ID(), e.Type())
	}
	// A retry is the same event: same id, same bytes, same signature.
	if err := s.Send(context.Background(), rc.URL+"/cd", testEvent(t)); err != nil {
		t.Fatalf("second Send: %v", err)
	}
	if again := <-rc.got; again.ID() != e.ID() || !again.Time().Equal(e.Time()) {
		t.Errorf("retry sent id %s at %s, first %s at %s", again.ID(), again.Time(), e.ID(), e.Time())
	}
}

func TestSendUnsignedWithoutSecret(t *testing.T) {
	var header atomic.Value
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		header.Store(r.Header.Values(SignatureHeader))
	})
	s := NewSender("")
	defer s.Close()
	if err := s.Send(context.Background(), rc.URL, testEvent(t)); err != nil {
		t.Fatal(err)
	}
	if h := header.Load().([]string); len(h) != 0 {
		t.Errorf("without EVENTS_SECRET the delivery carried %s: %v", SignatureHeader, h)
	}
}

func TestSendClassifiesAnswers(t *testing.T) {
	tests := []struct {
		name       string
		answer     func(w http.ResponseWriter, r *http.Request)
		want       Outcome
		status     int
		retryAfter time.Duration
		says       string
	}{
		{"500 is retryable", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		}, Retryable, 500, 0, "answered 500 Internal Server Error; the delivery will be retried"},
		{"503 with Retry-After", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "120")
			w.WriteHeader(http.StatusServiceUnavailable)
		}, Retryable, 503, 2 * time.Minute, "not before the 2m0s it asked for"},
		{"429 is retryable", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
		}, Retryable, 429, 7 * time.Second, "answered 429 Too Many Requests"},
		{"404 is permanent", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no such hook", http.StatusNotFound)
		}, Permanent, 404, 0, `answered 404 Not Found ("no such hook"); retrying will not help`},
		{"401 names the secret", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
		}, Permanent, 401, 0, "with the bot's EVENTS_SECRET"},
		{"302 would become a GET", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}, Permanent, 302, 0, "which would turn the POST into a GET and is not followed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, tc.answer)
			err := newSender(t).Send(context.Background(), rc.URL+"/cd?token=hunter2", testEvent(t))
			if got := OutcomeOf(err); got != tc.want {
				t.Fatalf("outcome %s, want %s (err %v)", got, tc.want, err)
			}
			var de *DeliveryError
			if !errors.As(err, &de) {
				t.Fatalf("err %T is not a *DeliveryError", err)
			}
			if de.Status != tc.status || de.RetryAfter != tc.retryAfter || de.Permanent() != (tc.want == Permanent) {
				t.Errorf("status %d, retry after %s, permanent %v", de.Status, de.RetryAfter, de.Permanent())
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "webhook "+rc.URL+"/cd?… ") || !strings.Contains(msg, tc.says) {
				t.Errorf("error %q should name the URL and say %q", msg, tc.says)
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("error %q shows the URL's query", msg)
			}
			if rc.hits.Load() != 1 {
				t.Errorf("receiver hit %d times, want 1", rc.hits.Load())
			}
		})
	}
}

func TestSendFollowsSameHostRedirect(t *testing.T) {
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/old" {
			http.Redirect(w, r, "/new", http.StatusPermanentRedirect)
			return
		}
		body, _ := io.ReadAll(r.Body)
		if err := Verify(secret, body, r.Header.Get(SignatureHeader)); err != nil || r.Method != http.MethodPost {
			http.Error(w, "redirected delivery lost its body or signature", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	if err := newSender(t).Send(context.Background(), rc.URL+"/old", testEvent(t)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if rc.hits.Load() != 2 {
		t.Errorf("receiver hit %d times, want 2 (the redirect and the delivery)", rc.hits.Load())
	}
}

func TestSendDoesNotFollowRedirectToAnotherHost(t *testing.T) {
	other := newReceiver(t, nil)
	// The same loopback server under another name: another host to the Sender.
	otherURL := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, otherURL+"/cd", http.StatusTemporaryRedirect)
	})
	err := newSender(t).Send(context.Background(), rc.URL, testEvent(t))
	if OutcomeOf(err) != Permanent {
		t.Fatalf("outcome %s, want permanent (err %v)", OutcomeOf(err), err)
	}
	if !strings.Contains(err.Error(), "to "+otherURL+"/cd, another host, which is not followed") {
		t.Errorf("error %q should name where it pointed", err)
	}
	if other.hits.Load() != 0 {
		t.Errorf("the other host got %d requests", other.hits.Load())
	}
}

func TestSendTimesOut(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	start := time.Now()
	err := newSender(t, WithTimeout(150*time.Millisecond)).Send(context.Background(), rc.URL, testEvent(t))
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Send took %s with a 150ms timeout", took)
	}
	if OutcomeOf(err) != Retryable || !strings.Contains(err.Error(), "did not answer within 150ms") {
		t.Errorf("err = %v (%s), want a retryable timeout", err, OutcomeOf(err))
	}
}

func TestSendToNoOneIsRetryable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nobody listens there now
	err = newSender(t).Send(context.Background(), "http://"+addr+"/cd", testEvent(t))
	if OutcomeOf(err) != Retryable || !strings.Contains(err.Error(), "could not be reached") {
		t.Errorf("err = %v (%s), want a retryable unreachable receiver", err, OutcomeOf(err))
	}
}

// The dialer refuses the metadata service even when the config check was
// passed (a name that resolves there only later).
func TestSendRefusesLinkLocalAtDial(t *testing.T) {
	err := newSender(t, WithTimeout(time.Second)).Send(context.Background(), "http://169.254.169.254/latest/meta-data/", testEvent(t))
	if OutcomeOf(err) != Permanent || !strings.Contains(err.Error(), "resolves to 169.254.169.254, which is a link-local address") {
		t.Errorf("err = %v (%s), want a permanent refusal", err, OutcomeOf(err))
	}
}

func TestSendInterruptedByCaller(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // then the server notices the client leaving
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := newSender(t).Send(ctx, rc.URL, testEvent(t))
	if !errors.Is(err, context.DeadlineExceeded) || OutcomeOf(err) != Retryable {
		t.Errorf("err = %v, want the caller's deadline, retryable", err)
	}
}
