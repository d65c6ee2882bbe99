package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shipbot/shipbot/internal/testenv"
	"github.com/shipbot/shipbot/queue"
)

// TestConcurrentDeliveriesStoreTheirOwnBytes guards the reused body
// buffers: deliveries of different sizes and contents arrive at once over
// real HTTP, some without a Content-Length, and every stored job must hold
// exactly the bytes of its own delivery, on both queues. A buffer handed
// back too early, or a shorter body read into a longer one's buffer, shows
// up as another delivery's bytes.
func TestConcurrentDeliveriesStoreTheirOwnBytes(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		r := testenv.StartRedis(t)
		client := redis.NewClient(&redis.Options{Addr: r.Addr()})
		t.Cleanup(func() { client.Close() })
		q, err := queue.NewRedis(client, "t", queue.Options{})
		if err != nil {
			t.Fatal(err)
		}
		deliverAndCompare(t, q)
	})
	t.Run("embedded", func(t *testing.T) {
		q, err := queue.OpenEmbedded(filepath.Join(t.TempDir(), "q.db"), queue.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		deliverAndCompare(t, q)
	})
}

func deliverAndCompare(t *testing.T, q queue.Queue) {
	const n = 120
	srv := httptest.NewServer(New([]byte("secret"), q, acceptAll{}, WithLogger(discardLogger())))
	t.Cleanup(srv.Close)

	payloads := make(map[string][]byte, n)
	for i := 0; i < n; i++ {
		// Sizes from a few bytes to 60 KB, in an order that makes a
		// short body follow a long one into the same buffer.
		fill := strings.Repeat(string(rune('a'+i%26)), (i*7919)%(60<<10))
		payloads[fmt.Sprintf("own-%d", i)] = fmt.Appendf(nil,
			`{"action":"opened","installation":{"id":%d},"repository":{"full_name":"o/r%d"},"fill":%q}`, i+1, i, fill)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for id, body := range payloads {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var r io.Reader = bytes.NewReader(body)
			if len(body)%2 == 1 {
				r = io.MultiReader(r) // no Content-Length: sent chunked
			}
			req, _ := http.NewRequest(http.MethodPost, srv.URL, r)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-GitHub-Event", "pull_request")
			req.Header.Set("X-GitHub-Delivery", id)
			req.Header.Set("X-Hub-Signature-256", Sign([]byte("secret"), body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			answer, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				t.Errorf("%s: %d %s", id, resp.StatusCode, answer)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	ctx := context.Background()
	for range payloads {
		l, err := q.Lease(ctx, "check", time.Second)
		if errors.Is(err, queue.ErrEmpty) {
			t.Fatal("fewer jobs stored than deliveries answered 202")
		}
		if err != nil {
			t.Fatal(err)
		}
		j := l.Job
		want, ok := payloads[j.DeliveryID]
		if !ok {
			t.Fatalf("job for unknown delivery %q", j.DeliveryID)
		}
		if !bytes.Equal(j.Payload, want) {
			t.Fatalf("%s: stored payload (%d bytes) is not the delivery's (%d bytes)", j.DeliveryID, len(j.Payload), len(want))
		}
		if i := strings.TrimPrefix(j.DeliveryID, "own-"); j.Repo != "o/r"+i || j.Action != "opened" {
			t.Fatalf("%s: routed as %q %q", j.DeliveryID, j.Action, j.Repo)
		}
		delete(payloads, j.DeliveryID)
		if err := q.Ack(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
}
