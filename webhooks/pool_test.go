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
// up as another delivery's bytes. Each store runs it twice: payloads queued
// whole, and trimmed (see trim) into a buffer of their own that is reused
// too.
func TestConcurrentDeliveriesStoreTheirOwnBytes(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		r := testenv.StartRedis(t)
		client := redis.NewClient(&redis.Options{Addr: r.Addr()})
		t.Cleanup(func() { client.Close() })
		q, err := queue.NewRedis(client, "t", queue.Options{})
		if err != nil {
			t.Fatal(err)
		}
		deliverAndCompare(t, q, acceptAll{})
		deliverAndCompare(t, q, keepRouter{"installation", "repository", "fill"})
	})
	t.Run("embedded", func(t *testing.T) {
		q, err := queue.OpenEmbedded(filepath.Join(t.TempDir(), "q.db"), queue.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		deliverAndCompare(t, q, acceptAll{})
		deliverAndCompare(t, q, keepRouter{"installation", "repository", "fill"})
	})
}

func deliverAndCompare(t *testing.T, q queue.Queue, router Router) {
	const n = 120
	srv := httptest.NewServer(New([]byte("secret"), q, router, WithLogger(discardLogger())))
	t.Cleanup(srv.Close)
	_, trims := router.(keepRouter)

	payloads := make(map[string][]byte, n)
	stored := make(map[string][]byte, n)
	for i := 0; i < n; i++ {
		// Sizes from a few bytes to 60 KB, in an order that makes a
		// short body follow a long one into the same buffer.
		fill := strings.Repeat(string(rune('a'+i%26)), (i*7919)%(60<<10))
		id := fmt.Sprintf("own-%d", i)
		if trims {
			id = fmt.Sprintf("own-trimmed-%d", i)
		}
		rest := fmt.Sprintf(`"installation":{"id":%d},"repository":{"full_name":"o/r%d"},"fill":%q}`, i+1, i, fill)
		payloads[id] = []byte(`{"action":"opened",` + rest)
		stored[id] = payloads[id]
		if trims {
			stored[id] = []byte(`{` + rest)
		}
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
	for range n {
		l, err := q.Lease(ctx, "check", time.Second)
		if errors.Is(err, queue.ErrEmpty) {
			t.Fatal("fewer jobs stored than deliveries answered 202")
		}
		if err != nil {
			t.Fatal(err)
		}
		j := l.Job
		want, ok := stored[j.DeliveryID]
		if !ok {
			t.Fatalf("job for unknown delivery %q", j.DeliveryID)
		}
		if !bytes.Equal(j.Payload, want) {
			t.Fatalf("%s: stored payload (%d bytes) is not the delivery's (%d bytes)", j.DeliveryID, len(j.Payload), len(want))
		}
		if i := j.DeliveryID[strings.LastIndexByte(j.DeliveryID, '-')+1:]; j.Repo != "o/r"+i || j.Action != "opened" {
			t.Fatalf("%s: routed as %q %q", j.DeliveryID, j.Action, j.Repo)
		}
		delete(stored, j.DeliveryID)
		if err := q.Ack(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
}
