package queue_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shipbot/shipbot/internal/testenv/redistest"
	"github.com/shipbot/shipbot/queue"
)

// store is one queue under test plus what the suite may do to its store.
type store struct {
	q queue.Queue
	// restart takes the store away and brings it back with its data (Redis
	// SIGKILLed and started again; the embedded file closed and reopened)
	// and returns the queue to use from then on. Nil when the target
	// cannot (miniredis keeps nothing).
	restart func(t *testing.T) queue.Queue
	// releasesOnRestart: leases held across a restart are void at once
	// (embedded: the process that held them is gone) instead of after the
	// visibility timeout (Redis keeps its pending list).
	releasesOnRestart bool
	// outage makes the store unreachable for the rest of the subtest.
	outage func(t *testing.T)
	// sleep lets d pass for the store too: miniredis expires keys only
	// when told time moved.
	sleep func(d time.Duration)
}

// opener makes a fresh, empty store for one case.
type opener func(t *testing.T, opts queue.Options) *store

// target's start runs inside the target's own subtest, so a missing
// redis-server skips (or, in CI, fails) the Redis target alone.
type target struct {
	name  string
	start func(t *testing.T) opener
}

var targets = []target{
	{name: "redis", start: func(t *testing.T) opener {
		srv := redistest.Real(t)
		var prefixes atomic.Int64
		return func(t *testing.T, opts queue.Options) *store {
			q, err := queue.NewRedis(srv.Client(t), fmt.Sprintf("test%d", prefixes.Add(1)), opts)
			if err != nil {
				t.Fatal(err)
			}
			return &store{
				q:       q,
				restart: func(*testing.T) queue.Queue { srv.Restart(); return q },
				outage:  srv.Outage,
			}
		}
	}},

	{name: "embedded", start: func(*testing.T) opener {
		return func(t *testing.T, opts queue.Options) *store {
			path := filepath.Join(t.TempDir(), "queue.db")
			q, err := queue.OpenEmbedded(path, opts)
			if err != nil {
				t.Fatal(err)
			}
			s := &store{q: q, releasesOnRestart: true}
			t.Cleanup(func() { s.q.Close() })
			s.restart = func(t *testing.T) queue.Queue {
				if err := s.q.Close(); err != nil {
					t.Fatal(err)
				}
				q, err := queue.OpenEmbedded(path, opts)
				if err != nil {
					t.Fatal(err)
				}
				s.q = q
				return q
			}
			s.outage = func(*testing.T) { s.q.Close() }
			return s
		}
	}},

	// miniredis is only a faster extra; real Redis above is the reference.
	{name: "miniredis", start: func(t *testing.T) opener {
		if err := redistest.MiniLacks(probeScripts); err != nil {
			t.Skipf("miniredis lacks a command or behaviour the Redis queue relies on: %v", err)
		}
		return func(t *testing.T, opts queue.Options) *store {
			m := redistest.Mini(t)
			q, err := queue.NewRedis(m.Client(t), "test", opts)
			if err != nil {
				t.Fatal(err)
			}
			return &store{q: q, outage: m.Outage, sleep: m.Sleep}
		}
	}},
}

// probeScripts runs one job through every script of the Redis queue.
func probeScripts(ctx context.Context, client *redis.Client) error {
	q, err := queue.NewRedis(client, "probe", testOptions())
	if err != nil {
		return err
	}
	if _, err := q.Enqueue(ctx, queue.Job{DeliveryID: "probe"}); err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	l, err := q.Lease(ctx, "probe", 50*time.Millisecond)
	if err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	if err := q.Extend(ctx, l); err != nil {
		return fmt.Errorf("extend: %w", err)
	}
	if err := q.Nack(ctx, l, "probe", true); err != nil {
		return fmt.Errorf("nack: %w", err)
	}
	time.Sleep(100 * time.Millisecond)
	if l, err = q.Lease(ctx, "probe", time.Second); err != nil {
		return fmt.Errorf("lease again: %w", err)
	}
	if err := q.Ack(ctx, l); err != nil {
		return fmt.Errorf("ack: %w", err)
	}
	if _, err := q.Stats(ctx); err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	return nil
}

func testOptions() queue.Options {
	return queue.Options{
		VisibilityTimeout: 200 * time.Millisecond,
		MaxAttempts:       3,
		Backoff:           func(int) time.Duration { return 50 * time.Millisecond },
		DedupeWindow:      time.Hour,
	}
}

// TestConformance is the contract both implementations meet, run against
// each.
func TestConformance(t *testing.T) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			// The stores share nothing: each target runs beside the
			// others (their cases wait on fsyncs, timeouts and servers
			// more than they compute).
			t.Parallel()
			open := tg.start(t)
			for _, c := range conformanceCases {
				t.Run(c.name, func(t *testing.T) {
					opts := testOptions()
					if c.opts != nil {
						c.opts(&opts)
					}
					s := open(t, opts)
					if s.sleep == nil {
						s.sleep = time.Sleep
					}
					c.run(t, s)
				})
			}
		})
	}
}

var conformanceCases = []struct {
	name string
	opts func(*queue.Options)
	run  func(t *testing.T, s *store)
}{
	{name: "RoundTripPreservesJob", run: func(t *testing.T, s *store) {
		ctx := context.Background()
		in := queue.Job{
			DeliveryID:     "72d3162e-cc78-11e3-81ab-4c9367dc0958",
			Event:          "pull_request",
			Action:         "opened",
			InstallationID: 42,
			Repo:           "octo/app",
			Payload:        []byte("{\"action\":\"opened\"}\n\x00\xff raw bytes survive"),
			Outline:        []int32{18, 19},
			Dropped:        []string{"sender", "organization"},
		}
		before := time.Now()
		got, err := s.q.Enqueue(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID == "" || got.Attempt != 0 {
			t.Errorf("Enqueue returned ID %q, Attempt %d; want an ID and attempt 0", got.ID, got.Attempt)
		}
		if got.EnqueuedAt.Before(before.Add(-time.Second)) || got.EnqueuedAt.After(time.Now().Add(time.Second)) {
			t.Errorf("EnqueuedAt = %v, want about %v", got.EnqueuedAt, before)
		}
		want := in
		want.ID, want.EnqueuedAt = got.ID, got.EnqueuedAt
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Enqueue returned\n%+v\nwant\n%+v", got, want)
		}
		l := mustLease(t, s.q, "w", time.Second)
		want.Attempt = 1
		if !reflect.DeepEqual(l.Job, want) {
			t.Errorf("leased\n%+v\nwant\n%+v", l.Job, want)
		}
		if l.Token == "" {
			t.Error("lease has no token")
		}
		wantStats(t, s.q, queue.Stats{Leased: 1})
		if err := s.q.Ack(ctx, l); err != nil {
			t.Fatal(err)
		}
		wantEmpty(t, s.q, 50*time.Millisecond)
		wantStats(t, s.q, queue.Stats{})
		if err := s.q.Ack(ctx, l); !errors.Is(err, queue.ErrLeaseLost) {
			t.Errorf("second Ack = %v, want ErrLeaseLost", err)
		}
	}},

	// Large payloads are stored compressed when they shrink and raw when
	// not; either way a job comes back byte for byte when leased, after a
	// retry and as a dead letter.
	{name: "LargePayloadsSurviveRetryAndDeadLetter", run: func(t *testing.T, s *store) {
		ctx := context.Background()
		var text bytes.Buffer
		for i := 0; text.Len() < 24<<10; i++ {
			fmt.Fprintf(&text, `{"id":"%040x","message":"change %d of the queue","url":"https://github.com/octo/app/commit/%040x"},`, i*7919, i, i*104729)
		}
		random := make([]byte, 24<<10)
		_, _ = rand.NewChaCha8([32]byte{3}).Read(random)
		for name, payload := range map[string][]byte{"json": text.Bytes(), "random": random} {
			in := newJob("large-" + name)
			in.Payload, in.Outline, in.Dropped = payload, []int32{1, 5000, 24 << 10}, []string{"commits"}
			if _, err := s.q.Enqueue(ctx, in); err != nil {
				t.Fatal(err)
			}
			for attempt := 1; attempt <= 2; attempt++ {
				l := mustLease(t, s.q, "w", 2*time.Second)
				if l.Job.DeliveryID != in.DeliveryID || l.Job.Attempt != attempt || !bytes.Equal(l.Job.Payload, payload) || !slices.Equal(l.Job.Outline, in.Outline) || !slices.Equal(l.Job.Dropped, in.Dropped) {
					t.Fatalf("%s: leased %s attempt %d with %d bytes; want %s attempt %d with the %d bytes enqueued",
						name, l.Job.DeliveryID, l.Job.Attempt, len(l.Job.Payload), in.DeliveryID, attempt, len(payload))
				}
				if err := s.q.Nack(ctx, l, "failed", attempt == 1); err != nil {
					t.Fatal(err)
				}
			}
			dead, err := s.q.Dead(ctx, 1)
			if err != nil || len(dead) != 1 {
				t.Fatalf("Dead = %v, %v", dead, err)
			}
			if dead[0].Job.DeliveryID != in.DeliveryID || !bytes.Equal(dead[0].Job.Payload, payload) || !slices.Equal(dead[0].Job.Outline, in.Outline) || !slices.Equal(dead[0].Job.Dropped, in.Dropped) {
				t.Errorf("%s: dead letter %s holds %d bytes, want the %d enqueued", name, dead[0].Job.DeliveryID, len(dead[0].Job.Payload), len(payload))
			}
		}
	}},

	{name: "DuplicateDeliveryStoredOnce", run: func(t *testing.T, s *store) {
		ctx := context.Background()
		first := mustEnqueue(t, s.q, "dup")
		again := newJob("dup")
		again.Payload = []byte(`{"other":true}`)
		if _, err := s.q.Enqueue(ctx, again); !errors.Is(err, queue.ErrDuplicate) {
			t.Fatalf("second Enqueue = %v, want ErrDuplicate", err)
		}
		l := mustLease(t, s.q, "w", time.Second)
		if l.Job.ID != first.ID || string(l.Job.Payload) != string(first.Payload) {
			t.Errorf("leased %s %s, want the first job %s", l.Job.ID, l.Job.Payload, first.ID)
		}
		if err := s.q.Ack(ctx, l); err != nil {
			t.Fatal(err)
		}
		if _, err := s.q.Enqueue(ctx, again); !errors.Is(err, queue.ErrDuplicate) {
			t.Errorf("Enqueue after ack = %v, want ErrDuplicate", err)
		}
		wantEmpty(t, s.q, 100*time.Millisecond)
	}},

	{name: "EnqueueNeedsDeliveryID", run: func(t *testing.T, s *store) {
		_, err := s.q.Enqueue(context.Background(), queue.Job{Event: "push"})
		if err == nil || errors.Is(err, queue.ErrUnavailable) {
			t.Errorf("Enqueue without delivery id = %v, want a plain error", err)
		}
	}},

	{name: "LeaseOnEmptyQueueWaits", run: func(t *testing.T, s *store) {
		start := time.Now()
		wantEmpty(t, s.q, 100*time.Millisecond)
		if waited := time.Since(start); waited < 90*time.Millisecond {
			t.Errorf("Lease gave up after %v, want it to wait 100ms", waited)
		}
		if _, err := s.q.Lease(context.Background(), "w", 0); !errors.Is(err, queue.ErrEmpty) {
			t.Errorf("Lease with no wait = %v, want ErrEmpty", err)
		}
	}},

	{name: "BlockedLeaseWakesOnEnqueue", run: func(t *testing.T, s *store) {
		got := make(chan *queue.Lease, 1)
		go func() {
			l, err := s.q.Lease(context.Background(), "w", 10*time.Second)
			if err != nil {
				t.Error(err)
			}
			got <- l
		}()
		time.Sleep(50 * time.Millisecond)
		j := mustEnqueue(t, s.q, "wake")
		if l := <-got; l == nil || l.Job.ID != j.ID {
			t.Errorf("blocked Lease got %+v, want job %s", l, j.ID)
		}
	}},

	{name: "ExpiredLeaseIsReclaimed", run: func(t *testing.T, s *store) {
		ctx := context.Background()
		j := mustEnqueue(t, s.q, "crash")
		a := mustLease(t, s.q, "a", time.Second)
		b := mustLease(t, s.q, "b", 3*time.Second)
		if b.Job.ID != j.ID || b.Job.Attempt != 2 {
			t.Fatalf("reclaimed job %s attempt %d, want %s attempt 2", b.Job.ID, b.Job.Attempt, j.ID)
		}
		if b.Job.DeliveryID != j.DeliveryID || string(b.Job.Payload) != string(j.Payload) {
			t.Errorf("reclaimed job lost fields: %+v", b.Job)
		}
		if err := s.q.Ack(ctx, a); !errors.Is(err, queue.ErrLeaseLost) {
			t.Errorf("stale Ack = %v, want ErrLeaseLost", err)
		}
		if err := s.q.Extend(ctx, a); !errors.Is(err, queue.ErrLeaseLost) {
			t.Errorf("stale Extend = %v, want ErrLeaseLost", err)
		}
		if err := s.q.Nack(ctx, a, "stale", true); !errors.Is(err, queue.ErrLeaseLost) {
			t.Errorf("stale Nack = %v, want ErrLeaseLost", err)
		}
		if err := s.q.Ack(ctx, b); err != nil {
			t.Fatal(err)
		}
		wantEmpty(t, s.q, 300*time.Millisecond)
	}},

	{name: "ReclaimBySameConsumerVoidsOldLease", run: func(t *testing.T, s *store) {
		ctx := context.Background()
		mustEnqueue(t, s.q, "same")
		old := mustLease(t, s.q, "w", time.Second)
		cur := mustLease(t, s.q, "w", 3*time.Second)
		if cur.Job.Attempt != 2 || cur.Token == old.Token {
			t.Fatalf("reclaim: attempt %d token %q (old %q)", cur.Job.Attempt, cur.Token, old.Token)
		}
		if err := s.q.Ack(ctx, old); !errors.Is(err, queue.ErrLeaseLost) {
			t.Errorf("Ack with the old lease = %v, want ErrLeaseLost", err)
		}
		if err := s.q.Ack(ctx, cur); err != nil {
			t.Error(err)
		}
	}},

	{name: "ExpiredButUnclaimedLeaseCanStillAck", run: func(t *testing.T, s *store) {
		mustEnqueue(t, s.q, "late")
		l := mustLease(t, s.q, "w", time.Second)
		time.Sleep(300 * time.Millisecond)
		if err := s.q.Ack(context.Background(), l); err != nil {
			t.Errorf("Ack after the timeout with no one reclaiming = %v, want nil", err)
		}
		wantEmpty(t, s.q, 300*time.Millisecond)
	}},

	{name: "ExtendKeepsLease", opts: func(o *queue.Options) {
		// A wide margin between heartbeat and timeout: a starved ticker on
		// a loaded 2-core CI machine must not look like a lost lease.
		o.VisibilityTimeout = 600 * time.Millisecond
	}, run: func(t *testing.T, s *store) {
		ctx := context.Background()
		mustEnqueue(t, s.q, "long")
		a := mustLease(t, s.q, "a", time.Second)
		stop := make(chan struct{})
		beat := make(chan error, 1)
		go func() {
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					beat <- nil
					return
				case <-tick.C:
					if err := s.q.Extend(ctx, a); err != nil {
						beat <- err
						return
					}
				}
			}
		}()
		wantEmpty(t, s.q, 1500*time.Millisecond) // 2.5 visibility timeouts
		close(stop)
		if err := <-beat; err != nil {
			t.Fatalf("Extend: %v", err)
		}
		if err := s.q.Ack(ctx, a); err != nil {
			t.Errorf("Ack after heartbeats = %v", err)
		}
	}},

	{name: "NackRetriesAfterBackoff", opts: func(o *queue.Options) {
		o.Backoff = func(int) time.Duration { return 300 * time.Millisecond }
	}, run: func(t *testing.T, s *store) {
		ctx := context.Background()
		j := mustEnqueue(t, s.q, "flaky")
		l := mustLease(t, s.q, "w", time.Second)
		if err := s.q.Nack(ctx, l, "GitHub said 502", true); err != nil {
			t.Fatal(err)
		}
		wantStats(t, s.q, queue.Stats{Delayed: 1})
		if err := s.q.Ack(ctx, l); !errors.Is(err, queue.ErrLeaseLost) {
			t.Errorf("Ack after Nack = %v, want ErrLeaseLost", err)
		}
		again := mustLease(t, s.q, "w", 3*time.Second)
		want := j
		want.Attempt = 2
		if !reflect.DeepEqual(again.Job, want) {
			t.Errorf("retried\n%+v\nwant\n%+v", again.Job, want)
		}
		if err := s.q.Ack(ctx, again); err != nil {
			t.Fatal(err)
		}
		wantStats(t, s.q, queue.Stats{})
	}},

	{name: "AlwaysFailingJobIsDeadLettered", run: func(t *testing.T, s *store) {
		ctx := context.Background()
		j := mustEnqueue(t, s.q, "poison")
		for attempt := 1; attempt <= 3; attempt++ {
			l := mustLease(t, s.q, "w", 3*time.Second)
			if l.Job.Attempt != attempt {
				t.Fatalf("attempt %d leased as %d", attempt, l.Job.Attempt)
			}
			if err := s.q.Nack(ctx, l, "boom", true); err != nil {
				t.Fatal(err)
			}
		}
		wantEmpty(t, s.q, 300*time.Millisecond)
		wantStats(t, s.q, queue.Stats{Dead: 1})
		dead := wantDead(t, s.q, 1)[0]
		want := j
		want.Attempt = 3
		if !reflect.DeepEqual(dead.Job, want) {
			t.Errorf("dead job\n%+v\nwant\n%+v", dead.Job, want)
		}
		if !strings.Contains(dead.Reason, "boom") {
			t.Errorf("reason %q does not carry the last failure", dead.Reason)
		}
		if d := time.Since(dead.DiedAt); d < -time.Second || d > 10*time.Second {
			t.Errorf("DiedAt %v is not about now", dead.DiedAt)
		}
	}},

	{name: "PermanentFailureIsDeadAtOnce", run: func(t *testing.T, s *store) {
		mustEnqueue(t, s.q, "bad")
		l := mustLease(t, s.q, "w", time.Second)
		if err := s.q.Nack(context.Background(), l, "payload names no repository", false); err != nil {
			t.Fatal(err)
		}
		wantEmpty(t, s.q, 200*time.Millisecond)
		dead := wantDead(t, s.q, 1)[0]
		if dead.Reason != "payload names no repository" || dead.Job.Attempt != 1 || dead.Job.ID != l.Job.ID {
			t.Errorf("dead letter %+v", dead)
		}
		wantStats(t, s.q, queue.Stats{Dead: 1})
	}},

	{name: "ReclaimsCountTowardMaxAttempts", run: func(t *testing.T, s *store) {
		j := mustEnqueue(t, s.q, "crashes-worker")
		for attempt := 1; attempt <= 3; attempt++ {
			l := mustLease(t, s.q, fmt.Sprintf("w%d", attempt), 3*time.Second)
			if l.Job.ID != j.ID || l.Job.Attempt != attempt {
				t.Fatalf("lease %d: job %s attempt %d", attempt, l.Job.ID, l.Job.Attempt)
			}
		}
		wantEmpty(t, s.q, time.Second)
		dead := wantDead(t, s.q, 1)[0]
		if dead.Job.ID != j.ID || dead.Job.Attempt != 3 || dead.Reason == "" {
			t.Errorf("dead letter %+v", dead)
		}
		wantStats(t, s.q, queue.Stats{Dead: 1})
	}},

	{name: "AttemptsSpanRetriesAndReclaims", run: func(t *testing.T, s *store) {
		ctx := context.Background()
		mustEnqueue(t, s.q, "mixed")
		l := mustLease(t, s.q, "w", time.Second)
		if err := s.q.Nack(ctx, l, "first", true); err != nil {
			t.Fatal(err)
		}
		mustLease(t, s.q, "w", 3*time.Second) // attempt 2, abandoned
		l = mustLease(t, s.q, "w", 3*time.Second)
		if l.Job.Attempt != 3 {
			t.Fatalf("after a retry and a reclaim, attempt = %d, want 3", l.Job.Attempt)
		}
		if err := s.q.Nack(ctx, l, "third", true); err != nil {
			t.Fatal(err)
		}
		wantEmpty(t, s.q, 300*time.Millisecond)
		if dead := wantDead(t, s.q, 1)[0]; dead.Job.Attempt != 3 || !strings.Contains(dead.Reason, "third") {
			t.Errorf("dead letter %+v", dead)
		}
	}},

	{name: "DeadListsNewestFirst", run: func(t *testing.T, s *store) {
		ctx := context.Background()
		for _, id := range []string{"d1", "d2", "d3"} {
			mustEnqueue(t, s.q, id)
			l := mustLease(t, s.q, "w", time.Second)
			if err := s.q.Nack(ctx, l, "no "+id, false); err != nil {
				t.Fatal(err)
			}
		}
		dead := wantDead(t, s.q, 2)
		if dead[0].Job.DeliveryID != "d3" || dead[1].Job.DeliveryID != "d2" {
			t.Errorf("Dead(2) = %s, %s; want d3, d2", dead[0].Job.DeliveryID, dead[1].Job.DeliveryID)
		}
		if all, err := s.q.Dead(ctx, 10); err != nil || len(all) != 3 {
			t.Errorf("Dead(10) = %d jobs, %v; want 3", len(all), err)
		}
	}},

	{name: "StatsCountEachState", opts: func(o *queue.Options) {
		o.Backoff = func(int) time.Duration { return time.Hour }
	}, run: func(t *testing.T, s *store) {
		ctx := context.Background()
		for _, id := range []string{"s1", "s2", "s3", "s4"} {
			mustEnqueue(t, s.q, id)
		}
		wantStats(t, s.q, queue.Stats{Ready: 4})
		mustLease(t, s.q, "w", time.Second)
		delayed := mustLease(t, s.q, "w", time.Second)
		if err := s.q.Nack(ctx, delayed, "later", true); err != nil {
			t.Fatal(err)
		}
		dead := mustLease(t, s.q, "w", time.Second)
		if err := s.q.Nack(ctx, dead, "never", false); err != nil {
			t.Fatal(err)
		}
		wantStats(t, s.q, queue.Stats{Ready: 1, Leased: 1, Delayed: 1, Dead: 1})
	}},

	{name: "SeenRemembersDeliveries", run: func(t *testing.T, s *store) {
		ctx := context.Background()
		if seen, err := s.q.Seen(ctx, "seen"); err != nil || seen {
			t.Fatalf("Seen before enqueue = %v, %v", seen, err)
		}
		mustEnqueue(t, s.q, "seen")
		l := mustLease(t, s.q, "w", time.Second)
		if err := s.q.Ack(ctx, l); err != nil {
			t.Fatal(err)
		}
		if seen, err := s.q.Seen(ctx, "seen"); err != nil || !seen {
			t.Errorf("Seen after enqueue and ack = %v, %v; want true", seen, err)
		}
	}},

	{name: "ClaimRedeliveryOnce", run: func(t *testing.T, s *store) {
		ctx := context.Background()
		for i, want := range []bool{true, false, false} {
			if got, err := s.q.ClaimRedelivery(ctx, "failed-1"); err != nil || got != want {
				t.Errorf("claim %d = %v, %v; want %v", i+1, got, err, want)
			}
		}
		if got, err := s.q.ClaimRedelivery(ctx, "failed-2"); err != nil || !got {
			t.Errorf("claim of another delivery = %v, %v; want true", got, err)
		}
		if seen, _ := s.q.Seen(ctx, "failed-1"); seen {
			t.Error("claiming a redelivery marked the delivery as seen; its redelivery would be dropped")
		}
	}},

	{name: "ReleasedRedeliveryCanBeClaimedAgain", run: func(t *testing.T, s *store) {
		ctx := context.Background()
		if ok, err := s.q.ClaimRedelivery(ctx, "asked"); err != nil || !ok {
			t.Fatalf("claim = %v, %v", ok, err)
		}
		if err := s.q.ReleaseRedelivery(ctx, "asked"); err != nil {
			t.Fatalf("release: %v", err)
		}
		if ok, err := s.q.ClaimRedelivery(ctx, "asked"); err != nil || !ok {
			t.Fatalf("claim after release = %v, %v; want true: a failed request must be asked again", ok, err)
		}
		if ok, _ := s.q.ClaimRedelivery(ctx, "asked"); ok {
			t.Fatal("claimed twice after one release")
		}
		if err := s.q.ReleaseRedelivery(ctx, "never-claimed"); err != nil {
			t.Fatalf("releasing an unclaimed delivery: %v", err)
		}
	}},

	{name: "ClaimRedeliveryRacesToOneWinner", run: func(t *testing.T, s *store) {
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				ok, err := s.q.ClaimRedelivery(context.Background(), "contested")
				if err != nil {
					t.Error(err)
				}
				if ok {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Errorf("%d claims won, want 1", n)
		}
	}},

	{name: "DedupeWindowExpires", opts: func(o *queue.Options) {
		o.DedupeWindow = 300 * time.Millisecond
	}, run: func(t *testing.T, s *store) {
		ctx := context.Background()
		mustEnqueue(t, s.q, "old")
		if ok, _ := s.q.ClaimRedelivery(ctx, "old"); !ok {
			t.Fatal("first claim lost")
		}
		if _, err := s.q.Enqueue(ctx, newJob("old")); !errors.Is(err, queue.ErrDuplicate) {
			t.Fatalf("Enqueue within the window = %v, want ErrDuplicate", err)
		}
		s.sleep(400 * time.Millisecond)
		if seen, err := s.q.Seen(ctx, "old"); err != nil || seen {
			t.Errorf("Seen after the window = %v, %v; want false", seen, err)
		}
		if _, err := s.q.Enqueue(ctx, newJob("old")); err != nil {
			t.Errorf("Enqueue after the window = %v", err)
		}
		if ok, err := s.q.ClaimRedelivery(ctx, "old"); err != nil || !ok {
			t.Errorf("claim after the window = %v, %v; want true", ok, err)
		}
	}},

	{name: "EnqueuedJobSurvivesRestart", run: func(t *testing.T, s *store) {
		if s.restart == nil {
			t.Skip("this target keeps nothing across a restart")
		}
		first := mustEnqueue(t, s.q, "before-crash-1")
		second := mustEnqueue(t, s.q, "before-crash-2")
		q := s.restart(t)
		ctx := context.Background()
		for _, want := range []queue.Job{first, second} {
			l := mustLease(t, q, "w", 3*time.Second)
			want.Attempt = 1
			if !reflect.DeepEqual(l.Job, want) {
				t.Errorf("after restart leased\n%+v\nwant\n%+v", l.Job, want)
			}
			if err := q.Ack(ctx, l); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := q.Enqueue(ctx, newJob("before-crash-1")); !errors.Is(err, queue.ErrDuplicate) {
			t.Errorf("dedupe forgot across restart: %v", err)
		}
		if ok, err := q.ClaimRedelivery(ctx, "r"); err != nil || !ok {
			t.Fatalf("claim = %v, %v", ok, err)
		}
		q = s.restart(t)
		if ok, err := q.ClaimRedelivery(ctx, "r"); err != nil || ok {
			t.Errorf("claim after restart = %v, %v; want false", ok, err)
		}
	}},

	{name: "LeasedJobSurvivesRestart", run: func(t *testing.T, s *store) {
		if s.restart == nil {
			t.Skip("this target keeps nothing across a restart")
		}
		j := mustEnqueue(t, s.q, "in-flight")
		old := mustLease(t, s.q, "w", time.Second)
		q := s.restart(t)
		wait := 3 * time.Second
		if s.releasesOnRestart {
			wait = 0
		}
		l := mustLease(t, q, "w", wait)
		if l.Job.ID != j.ID || l.Job.Attempt != 2 {
			t.Errorf("after restart leased job %s attempt %d, want %s attempt 2", l.Job.ID, l.Job.Attempt, j.ID)
		}
		ctx := context.Background()
		if err := q.Ack(ctx, old); !errors.Is(err, queue.ErrLeaseLost) {
			t.Errorf("Ack with the lease from before the restart = %v, want ErrLeaseLost", err)
		}
		if err := q.Ack(ctx, l); err != nil {
			t.Fatal(err)
		}
		wantStats(t, q, queue.Stats{})
	}},

	{name: "RestartOnLastAttemptDeadLetters", run: func(t *testing.T, s *store) {
		if s.restart == nil {
			t.Skip("this target keeps nothing across a restart")
		}
		ctx := context.Background()
		mustEnqueue(t, s.q, "crash-loop")
		for range 2 {
			if err := s.q.Nack(ctx, mustLease(t, s.q, "w", 3*time.Second), "again", true); err != nil {
				t.Fatal(err)
			}
		}
		if l := mustLease(t, s.q, "w", 3*time.Second); l.Job.Attempt != 3 {
			t.Fatalf("attempt %d, want 3", l.Job.Attempt)
		}
		q := s.restart(t)
		wantEmpty(t, q, time.Second)
		if dead := wantDead(t, q, 1)[0]; dead.Job.Attempt != 3 {
			t.Errorf("dead letter %+v", dead)
		}
	}},

	{name: "UnreachableStoreIsUnavailable", run: func(t *testing.T, s *store) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.outage(t)
		if _, err := s.q.Enqueue(ctx, newJob("lost")); !errors.Is(err, queue.ErrUnavailable) {
			t.Errorf("Enqueue = %v, want ErrUnavailable", err)
		}
		if err := s.q.Ping(ctx); !errors.Is(err, queue.ErrUnavailable) {
			t.Errorf("Ping = %v, want ErrUnavailable", err)
		}
		if _, err := s.q.Lease(ctx, "w", 100*time.Millisecond); !errors.Is(err, queue.ErrUnavailable) {
			t.Errorf("Lease = %v, want ErrUnavailable", err)
		}
		if _, err := s.q.Stats(ctx); !errors.Is(err, queue.ErrUnavailable) {
			t.Errorf("Stats = %v, want ErrUnavailable", err)
		}
		if _, err := s.q.Seen(ctx, "lost"); !errors.Is(err, queue.ErrUnavailable) {
			t.Errorf("Seen = %v, want ErrUnavailable", err)
		}
	}},

	{name: "CancelledLeaseReturnsPromptly", run: func(t *testing.T, s *store) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		_, err := s.q.Lease(ctx, "w", 30*time.Second)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled Lease = %v, want context.Canceled", err)
		}
		// A liveness bound, not a latency target: it must not sit out its wait.
		if waited := time.Since(start); waited > 5*time.Second {
			t.Errorf("cancelled Lease returned after %v", waited)
		}
		// The abandoned wait must not swallow the next job's wake-up.
		j := mustEnqueue(t, s.q, "after-cancel")
		if l := mustLease(t, s.q, "w2", 3*time.Second); l.Job.ID != j.ID {
			t.Errorf("leased %s, want %s", l.Job.ID, j.ID)
		}
	}},

	{name: "ConcurrentWorkersAckEachJobOnce", opts: func(o *queue.Options) {
		o.VisibilityTimeout = 10 * time.Second
	}, run: func(t *testing.T, s *store) {
		const producers, consumers, jobs = 4, 4, 100
		ctx := context.Background()
		var mu sync.Mutex
		stored := map[string]int{}
		acked := map[string]int{}
		var wg sync.WaitGroup
		// Every producer offers every delivery, as GitHub's retries and
		// redeliveries racing each other would.
		for p := range producers {
			wg.Go(func() {
				for i := range jobs {
					id := fmt.Sprintf("c-%d", (i+p*7)%jobs)
					_, err := s.q.Enqueue(ctx, newJob(id))
					switch {
					case err == nil:
						mu.Lock()
						stored[id]++
						mu.Unlock()
					case !errors.Is(err, queue.ErrDuplicate):
						t.Error(err)
						return
					}
				}
			})
		}
		var done atomic.Int32
		for c := range consumers {
			wg.Go(func() {
				for done.Load() < jobs {
					l, err := s.q.Lease(ctx, fmt.Sprintf("c%d", c), 50*time.Millisecond)
					if errors.Is(err, queue.ErrEmpty) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					if err := s.q.Ack(ctx, l); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					acked[l.Job.DeliveryID]++
					mu.Unlock()
					done.Add(1)
				}
			})
		}
		wg.Wait()
		for i := range jobs {
			id := fmt.Sprintf("c-%d", i)
			if stored[id] != 1 || acked[id] != 1 {
				t.Errorf("%s stored %d times, acked %d times; want 1 and 1", id, stored[id], acked[id])
			}
		}
		wantStats(t, s.q, queue.Stats{})
	}},
}

func newJob(deliveryID string) queue.Job {
	return queue.Job{
		DeliveryID:     deliveryID,
		Event:          "push",
		InstallationID: 7,
		Repo:           "octo/app",
		Payload:        []byte(`{"ref":"refs/heads/main","delivery":"` + deliveryID + `"}`),
	}
}

func mustEnqueue(t *testing.T, q queue.Queue, deliveryID string) queue.Job {
	t.Helper()
	j, err := q.Enqueue(context.Background(), newJob(deliveryID))
	if err != nil {
		t.Fatalf("Enqueue %s: %v", deliveryID, err)
	}
	return j
}

func mustLease(t *testing.T, q queue.Queue, consumer string, wait time.Duration) *queue.Lease {
	t.Helper()
	l, err := q.Lease(context.Background(), consumer, wait)
	if err != nil {
		t.Fatalf("Lease: %v", err)
	}
	return l
}

func wantEmpty(t *testing.T, q queue.Queue, wait time.Duration) {
	t.Helper()
	l, err := q.Lease(context.Background(), "idle", wait)
	if !errors.Is(err, queue.ErrEmpty) {
		t.Fatalf("Lease = %+v, %v; want ErrEmpty", l, err)
	}
}

func wantStats(t *testing.T, q queue.Queue, want queue.Stats) {
	t.Helper()
	got, err := q.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func wantDead(t *testing.T, q queue.Queue, n int) []queue.DeadJob {
	t.Helper()
	dead, err := q.Dead(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != n {
		t.Fatalf("Dead(%d) returned %d jobs: %+v", n, len(dead), dead)
	}
	return dead
}
