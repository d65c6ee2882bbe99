package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"

	"github.com/shipbot/shipbot/fixtures"
	"github.com/shipbot/shipbot/internal/logctx"
	"github.com/shipbot/shipbot/queue"
)

// grow24k returns the fixture named with one long string, set by grow, so
// that the payload is 24 KB: the size SPEC §11 measures deliveries at.
func grow24k(b testing.TB, name string, grow func(p map[string]any, s string)) []byte {
	b.Helper()
	var p map[string]any
	if err := json.Unmarshal(fixtures.Webhook(name), &p); err != nil {
		b.Fatal(err)
	}
	base, _ := json.Marshal(p)
	grow(p, string(bytes.Repeat([]byte("x"), 24*1024-len(base)-2)))
	out, err := json.Marshal(p)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// push24k is the push fixture with a long head commit message.
func push24k(b testing.TB) []byte {
	return grow24k(b, "push", func(p map[string]any, s string) {
		p["head_commit"].(map[string]any)["message"] = s
	})
}

// pullRequest24k is the pull_request.opened fixture with a long PR body.
func pullRequest24k(b testing.TB) []byte {
	return grow24k(b, "pull_request.opened", func(p map[string]any, s string) {
		p["pull_request"].(map[string]any)["body"] = s
	})
}

// benchHandler runs a handler with nothing behind it, so that it decodes,
// logs (to nowhere) and returns: the worker's cost of a 24 KB event
// before any GitHub call.
// Each runs without an outline (a job read back from storage) and with
// the one intake gives it (a job the embedded store serves from memory).
func benchHandler(b *testing.B, event string, payload []byte, h func(context.Context, queue.Job) error) {
	ctx := logctx.With(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, outline := range [][]int32{nil, fixtures.Outline(payload)} {
		name := "stored"
		if outline != nil {
			name = "outlined"
		}
		b.Run(name, func(b *testing.B) {
			job := queue.Job{Event: event, DeliveryID: "d", Payload: payload, Outline: outline}
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if err := h(ctx, job); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkPushDecode24k(b *testing.B) {
	benchHandler(b, "push", push24k(b), Deps{}.push)
}

// BenchmarkPushDecode25Commits is a 24 KB push of 25 distinct commits:
// structure all the way, as a large real push is, where the one above is
// mostly one long string.
func BenchmarkPushDecode25Commits(b *testing.B) {
	benchHandler(b, "push", fixtures.LargePush(24<<10), Deps{}.push)
}

func BenchmarkPullRequestDecode24k(b *testing.B) {
	benchHandler(b, "pull_request", pullRequest24k(b), Deps{}.pullRequest)
}
