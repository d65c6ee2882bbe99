package webhooks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/shipbot/shipbot/fixtures"
	"github.com/shipbot/shipbot/queue"
)

// payload24k is GitHub's pull_request.opened example grown to 24 KB with a
// long PR body, the size SPEC §11 measures intake at.
func payload24k(b *testing.B) []byte {
	b.Helper()
	var p map[string]any
	if err := json.Unmarshal(fixtures.Webhook("pull_request.opened"), &p); err != nil {
		b.Fatal(err)
	}
	base, _ := json.Marshal(p)
	p["pull_request"].(map[string]any)["body"] = string(bytes.Repeat([]byte("x"), 24*1024-len(base)-2))
	out, _ := json.Marshal(p)
	return out
}

// discard stands in for the queue so the benchmark measures intake alone.
type discard struct{ n atomic.Int64 }

func (d *discard) Enqueue(_ context.Context, j queue.Job) (queue.Job, error) {
	j.ID = "1"
	d.n.Add(1)
	return j, nil
}

type acceptAll struct{}

func (acceptAll) Accepts(string, string) bool        { return true }
func (acceptAll) Keeps(string) func(key []byte) bool { return nil }

// BenchmarkSignature is the HMAC-SHA256 check of a 24 KB body: the floor.
func BenchmarkSignature(b *testing.B) {
	body := payload24k(b)
	h := New([]byte("secret"), &discard{}, acceptAll{})
	sig := Sign([]byte("secret"), body)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if !h.verify(sig, body, new([sha256.Size]byte)) {
			b.Fatal("signature rejected")
		}
	}
}

// BenchmarkDecode is intake's work beyond the signature (SPEC §11: ≤ 25 µs):
// validate the JSON and pull out the routing fields. The PR with a long
// body is mostly one string, which the scanner skips in strides; the push
// of 25 commits is structure all the way, as a large real push is.
func BenchmarkDecode(b *testing.B) {
	for _, tc := range []struct {
		name, event, action string
		body                []byte
	}{
		{"pull_request_long_body", "pull_request", "opened", payload24k(b)},
		{"push_25_commits", "push", "", fixtures.LargePush(24 << 10)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			names := interner{m: map[string]string{}}
			var outline []int32
			b.SetBytes(int64(len(tc.body)))
			b.ReportAllocs()
			for b.Loop() {
				j, p := decode(tc.event, "d", "application/json", tc.body, &names, &outline)
				if p != nil || j.InstallationID == 0 || j.Action != tc.action {
					b.Fatalf("decode: %+v %v", j, p)
				}
			}
		})
	}
}

// BenchmarkServeHTTP is the whole handler (signature, read, decode, answer)
// with the queue left out.
func BenchmarkServeHTTP(b *testing.B) {
	body := payload24k(b)
	q := &discard{}
	h := New([]byte("secret"), q, acceptAll{}, WithLogger(discardLogger()))
	sig := Sign([]byte("secret"), body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/webhooks", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-GitHub-Event", "pull_request")
			req.Header.Set("X-GitHub-Delivery", "d")
			req.Header.Set("X-Hub-Signature-256", sig)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusAccepted {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
}

// BenchmarkTrim is what intake adds to leave out of a 24 KB push of 25
// commits the members no handler reads (the push handler reads ref, after,
// deleted, sender, head_commit, repository and installation): kept-bytes
// is what is queued.
func BenchmarkTrim(b *testing.B) {
	push := fixtures.LargePush(24 << 10)
	j, p := decode("push", "d", "application/json", push, nil, new([]int32))
	if p != nil {
		b.Fatal(p.msg)
	}
	keep := keepRouter{"ref", "after", "deleted", "sender", "head_commit", "repository", "installation"}.Keeps("push")
	var names interner
	names.m = map[string]string{}
	var buf []byte
	var out queue.Job
	b.SetBytes(int64(len(push)))
	for b.Loop() {
		out, buf = trim(j, keep, buf, &names)
	}
	b.ReportMetric(float64(len(out.Payload)), "kept-bytes")
}
