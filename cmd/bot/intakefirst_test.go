package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/shipbot/shipbot/internal/worker"
	"github.com/shipbot/shipbot/queue"
	"github.com/shipbot/shipbot/webhooks"
)

// TestIntakeFirstAnswersAsEcho sends the same requests to /webhooks served
// by echo alone (as before intakeFirst) and through intakeFirst, each over
// its own queue, and wants the same status, headers and body every time.
func TestIntakeFirstAnswersAsEcho(t *testing.T) {
	serverWith := func(front bool) http.Handler {
		q, err := queue.OpenEmbedded(filepath.Join(t.TempDir(), "q.db"), queue.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		r := worker.NewRouter()
		r.Handle("push", func(context.Context, queue.Job) error { return nil })
		intake := webhooks.New([]byte(secret), q, r, webhooks.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		e := echo.New()
		e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
		e.POST("/webhooks", echo.WrapHandler(intake))
		if front {
			return intakeFirst(intake, e)
		}
		return e
	}
	viaEcho, viaFront := serverWith(false), serverWith(true)

	push := tagPush()
	sig := webhooks.Sign([]byte(secret), push)
	for _, tc := range []struct {
		name, method, target string
		body                 []byte
		sig                  string
	}{
		{"queued", "POST", "/webhooks", push, sig},
		{"duplicate", "POST", "/webhooks", push, sig},
		{"with a query", "POST", "/webhooks?x=1", push, sig},
		{"bad signature", "POST", "/webhooks", push, "sha256=00"},
		{"no signature", "POST", "/webhooks", push, ""},
		{"malformed JSON", "POST", "/webhooks", []byte(`{"ref":`), webhooks.Sign([]byte(secret), []byte(`{"ref":`))},
		{"GET", "GET", "/webhooks", nil, ""},
		{"HEAD", "HEAD", "/webhooks", nil, ""},
		{"PUT", "PUT", "/webhooks", push, sig},
		{"OPTIONS", "OPTIONS", "/webhooks", nil, ""},
		{"trailing slash", "POST", "/webhooks/", push, sig},
		{"escaped path", "POST", "/%77ebhooks", push, sig},
		{"other case", "POST", "/Webhooks", push, sig},
		{"healthz", "GET", "/healthz", nil, ""},
		{"unknown path", "GET", "/nope", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answer := func(h http.Handler) *httptest.ResponseRecorder {
				req := httptest.NewRequest(tc.method, tc.target, bytes.NewReader(tc.body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-GitHub-Event", "push")
				req.Header.Set("X-GitHub-Delivery", "same-"+tc.name)
				if tc.name == "duplicate" {
					req.Header.Set("X-GitHub-Delivery", "same-queued")
				}
				if tc.sig != "" {
					req.Header.Set("X-Hub-Signature-256", tc.sig)
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				return w
			}
			want, got := answer(viaEcho), answer(viaFront)
			if got.Code != want.Code || got.Body.String() != want.Body.String() {
				t.Fatalf("intakeFirst: %d %q; echo: %d %q", got.Code, got.Body, want.Code, want.Body)
			}
			if g, w := got.Header(), want.Header(); !sameHeader(g, w) {
				t.Fatalf("intakeFirst headers %v; echo's %v", g, w)
			}
			if tc.name == "queued" && (got.Code != http.StatusAccepted || !strings.Contains(got.Body.String(), `"job":"1"`)) {
				t.Fatalf("the first delivery was not queued: %d %s", got.Code, got.Body)
			}
		})
	}
}

func sameHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, "\n") != strings.Join(b[k], "\n") {
			return false
		}
	}
	return true
}
