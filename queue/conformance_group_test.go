package queue_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shipbot/shipbot/queue"
)

// TestConformanceConcurrentEnqueue holds both implementations to the
// Enqueue contract under many concurrent callers, which is where a queue
// that shares one write among them (issue #17) could break it. It runs
// through the same targets and options as TestConformance.
func TestConformanceConcurrentEnqueue(t *testing.T) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			open := tg.start(t)
			for _, c := range concurrentEnqueueCases {
				t.Run(c.name, func(t *testing.T) {
					opts := testOptions()
					opts.VisibilityTimeout = 10 * time.Second
					c.run(t, open(t, opts))
				})
			}
		})
	}
}

var concurrentEnqueueCases = []struct {
	name string
	run  func(t *testing.T, s *store)
}{
	{name: "ConcurrentDuplicatesStoredOnce", run: func(t *testing.T, s *store) {
		// 20 delivery ids, each enqueued 8 times, by 64 goroutines that
		// take the calls in order: the 8 calls of an id run at once.
		const ids, copies, callers = 20, 8, 64
		type result struct {
			job queue.Job
			err error
		}
		results := make([]result, ids*copies)
		var next atomic.Int64
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				<-start
				for {
					n := int(next.Add(1)) - 1
					if n >= len(results) {
						return
					}
					id, cp := n/copies, n%copies
					j := newJob(fmt.Sprintf("dup-%d", id))
					j.Payload = fmt.Appendf(nil, `{"copy":%d}`, cp)
					got, err := s.q.Enqueue(context.Background(), j)
					results[n] = result{got, err}
				}
			})
		}
		close(start)
		wg.Wait()

		stored := map[string]queue.Job{}
		for n, r := range results {
			switch {
			case r.err == nil:
				id := r.job.DeliveryID
				if prev, ok := stored[id]; ok {
					t.Errorf("%s stored twice: as %s and %s", id, prev.ID, r.job.ID)
				}
				stored[id] = r.job
			case !errors.Is(r.err, queue.ErrDuplicate):
				t.Errorf("Enqueue of dup-%d = %v, want nil or ErrDuplicate", n/copies, r.err)
			}
		}
		if len(stored) != ids {
			t.Fatalf("%d of %d delivery ids stored", len(stored), ids)
		}
		for range ids {
			l := mustLease(t, s.q, "w", time.Second)
			want, ok := stored[l.Job.DeliveryID]
			if !ok {
				t.Fatalf("leased %s twice, or a job never stored", l.Job.DeliveryID)
			}
			if l.Job.ID != want.ID || string(l.Job.Payload) != string(want.Payload) {
				t.Errorf("leased %s as %s %s; the Enqueue that returned nil stored %s %s",
					l.Job.DeliveryID, l.Job.ID, l.Job.Payload, want.ID, want.Payload)
			}
			delete(stored, l.Job.DeliveryID)
			if err := s.q.Ack(context.Background(), l); err != nil {
				t.Fatal(err)
			}
		}
		wantEmpty(t, s.q, 100*time.Millisecond)
	}},

	{name: "AcknowledgedOnlyAfterStored", run: func(t *testing.T, s *store) {
		// Each caller reuses one payload buffer, overwriting it as soon as
		// Enqueue returns, as intake does: what was stored must be what
		// the buffer held during the call.
		const callers, each = 32, 8
		var mu sync.Mutex
		acked := map[string]queue.Job{}
		var wg sync.WaitGroup
		for c := range callers {
			wg.Go(func() {
				buf := make([]byte, 0, 64)
				for i := range each {
					id := fmt.Sprintf("ack-%d-%d", c, i)
					j := newJob(id)
					buf = fmt.Appendf(buf[:0], `{"delivery":%q}`, id)
					j.Payload = buf
					got, err := s.q.Enqueue(context.Background(), j)
					if err != nil {
						t.Errorf("Enqueue %s: %v", id, err)
						return
					}
					// Stored means visible to anyone from now on.
					if seen, err := s.q.Seen(context.Background(), id); err != nil || !seen {
						t.Errorf("Seen(%s) right after Enqueue returned nil = %v, %v", id, seen, err)
					}
					got.Payload = []byte(string(got.Payload)) // the caller's buffer is reused below
					mu.Lock()
					acked[id] = got
					mu.Unlock()
					copy(buf, "XXXXXXXXXXXXXXXX")
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		for range callers * each {
			l := mustLease(t, s.q, "w", time.Second)
			want, ok := acked[l.Job.DeliveryID]
			if !ok {
				t.Fatalf("leased %s, never acknowledged or leased twice", l.Job.DeliveryID)
			}
			want.Attempt = 1
			if l.Job.ID != want.ID || string(l.Job.Payload) != fmt.Sprintf(`{"delivery":%q}`, want.DeliveryID) ||
				!l.Job.EnqueuedAt.Equal(want.EnqueuedAt) || l.Job.Attempt != 1 {
				t.Errorf("leased\n%+v\nwant\n%+v", l.Job, want)
			}
			delete(acked, l.Job.DeliveryID)
			if err := s.q.Ack(context.Background(), l); err != nil {
				t.Fatal(err)
			}
		}
		wantEmpty(t, s.q, 100*time.Millisecond)
	}},

	{name: "CancelledCallerLeavesOthersAlone", run: func(t *testing.T, s *store) {
		// Half the callers give up (some before calling, some during the
		// call); every other call must succeed, and every call that
		// returned nil must be stored.
		const callers = 64
		var mu sync.Mutex
		acked := map[string]bool{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for c := range callers {
			wg.Go(func() {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				giveUp := c%2 == 1
				if giveUp && c%4 == 1 {
					cancel()
				}
				<-start
				if giveUp {
					go cancel()
				}
				id := fmt.Sprintf("cancel-%d", c)
				_, err := s.q.Enqueue(ctx, newJob(id))
				switch {
				case err == nil:
					mu.Lock()
					acked[id] = true
					mu.Unlock()
				case !giveUp:
					t.Errorf("Enqueue %s, whose caller did not give up, = %v", id, err)
				case !errors.Is(err, context.Canceled):
					t.Errorf("Enqueue %s, whose caller gave up, = %v; want nil or context.Canceled", id, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(acked) < callers/2 {
			t.Fatalf("%d calls succeeded, want at least the %d that did not give up", len(acked), callers/2)
		}
		for range len(acked) {
			l := mustLease(t, s.q, "w", time.Second)
			if !acked[l.Job.DeliveryID] {
				t.Fatalf("leased %s: never acknowledged, or leased twice", l.Job.DeliveryID)
			}
			delete(acked, l.Job.DeliveryID)
		}
		// Callers that gave up with an error stored nothing, or at most a
		// job the queue may still hold: either way, nothing acknowledged
		// is missing, which the loop above proved.
	}},
}
