package webhooks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/shipbot/shipbot/fixtures"
	"github.com/shipbot/shipbot/queue"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// The end-to-end intake cases (real server, real Redis and the embedded
// store) live in cmd/bot; these pin the pure parts.

func TestDecodeRoutingFields(t *testing.T) {
	for name, event := range fixtures.Events {
		t.Run(name, func(t *testing.T) {
			j, p := decode(event, "id-1", "application/json", fixtures.Webhook(name), nil, new([]int32))
			if p != nil {
				t.Fatal(p.msg)
			}
			if j.Event != event || j.DeliveryID != "id-1" {
				t.Fatalf("%+v", j)
			}
			if event != "ping" && (j.InstallationID != fixtures.InstallationID) {
				t.Fatalf("installation = %d, want %d", j.InstallationID, fixtures.InstallationID)
			}
			if event != "ping" && event != "installation" && j.Repo != fixtures.Repo {
				t.Fatalf("repo = %q, want %q", j.Repo, fixtures.Repo)
			}
			if strings.Contains(name, ".") && j.Action != strings.Split(name, ".")[1] {
				t.Fatalf("action = %q for %s", j.Action, name)
			}
		})
	}
}

// The job's outline is where encoding/json finds each top-level member
// ending, whitespace and escapes around them included; a document that
// is not an object, or has no members, has none.
func TestDecodeOutlinesTheTopLevelObject(t *testing.T) {
	docs := map[string][]byte{
		"large push": fixtures.LargePush(24 << 10),
		"spaced":     []byte(" {\n \"a\" : [1, {\"b\":\"}\"}] ,\t\"c\\u0022\":\"x\\\"\" , \"d\":null,\"e\":-1.5e3 } "),
		"array":      []byte(`[{"a":1},{"b":2}]`),
		"empty":      []byte(`{}`),
		"scalar":     []byte(`"x"`),
	}
	for name := range fixtures.Events {
		docs[name] = fixtures.Webhook(name)
	}
	var outline []int32 // reused, as intake's scratch is
	for name, doc := range docs {
		j, p := decode("push", "d", "application/json", doc, nil, &outline)
		if p != nil {
			t.Fatalf("%s: %s", name, p.msg)
		}
		want := fixtures.Outline(doc)
		if !slices.Equal(j.Outline, want) || (want == nil) != (j.Outline == nil) {
			t.Errorf("%s: outline %v, want %v", name, j.Outline, want)
		}
	}
}

func TestDecodeErrorsSayWhy(t *testing.T) {
	for _, tc := range []struct {
		name, contentType, body, want string
		status                        int
	}{
		{"truncated", "application/json", `{"action":"opened",`, "not valid JSON", 400},
		{"trailing garbage", "application/json", `{"action":"opened"} x`, "not valid JSON", 400},
		{"form without payload", "application/x-www-form-urlencoded", `foo=bar`, "no payload field", 400},
		{"xml", "text/xml", `<x/>`, "not a webhook content type", 415},
		{"bad media type", "application/json; =", `{}`, "cannot be parsed", 415},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, p := decode("push", "d", tc.contentType, []byte(tc.body), nil, new([]int32))
			if p == nil || p.status != tc.status || !strings.Contains(p.msg, tc.want) {
				t.Fatalf("got %+v, want %d %q", p, tc.status, tc.want)
			}
			if strings.Contains(p.msg, "\n") {
				t.Fatalf("reason must be one line: %q", p.msg)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	h := New([]byte("secret"), nil, nil)
	body := []byte(`{"zen":"Design for failure."}`)
	good := Sign([]byte("secret"), body)
	for _, tc := range []struct {
		name, header string
		ok           bool
	}{
		{"good", good, true},
		{"other secret", Sign([]byte("other"), body), false},
		{"sha1 prefix", "sha1=" + good[7:], false},
		{"truncated", good[:len(good)-2], false},
		{"not hex", "sha256=" + strings.Repeat("z", 64), false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := h.verify(tc.header, body, new([sha256.Size]byte)); got != tc.ok {
				t.Fatalf("verify = %v, want %v", got, tc.ok)
			}
		})
	}
}

// enqueuer answers each Enqueue with its err.
type enqueuer struct{ err error }

func (e enqueuer) Enqueue(_ context.Context, j queue.Job) (queue.Job, error) {
	j.ID = "1-0"
	return j, e.err
}

// WithRefused hears of exactly the deliveries refused because the store
// failed: not of those queued, duplicates or rejected.
func TestRefusedIsToldOfStoreFailures(t *testing.T) {
	body := []byte(`{"action":"opened","installation":{"id":1},"repository":{"full_name":"o/r"}}`)
	for _, tc := range []struct {
		name   string
		err    error
		sig    string
		status int
		told   int
	}{
		{"queued", nil, Sign([]byte("s"), body), 202, 0},
		{"duplicate", queue.ErrDuplicate, Sign([]byte("s"), body), 200, 0},
		{"bad signature", nil, Sign([]byte("x"), body), 401, 0},
		{"store down", errors.New("dial tcp: connection refused"), Sign([]byte("s"), body), 503, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			told := 0
			h := New([]byte("s"), enqueuer{tc.err}, acceptAll{}, WithLogger(discardLogger()), WithRefused(func() { told++ }))
			req := httptest.NewRequest(http.MethodPost, "/webhooks", bytes.NewReader(body))
			req.Header.Set("X-GitHub-Event", "pull_request")
			req.Header.Set("X-GitHub-Delivery", "d-1")
			req.Header.Set("X-Hub-Signature-256", tc.sig)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status || told != tc.told {
				t.Fatalf("status %d, refused told %d times; want %d and %d", rec.Code, told, tc.status, tc.told)
			}
		})
	}
}
