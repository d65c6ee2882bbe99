package worker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/logctx"
	"github.com/shipbot/shipbot/queue"
)

// The worker runs against the real embedded queue: fakes at the wire, not
// mocks of our own interfaces. openQueue opens one at path (a new one in
// the test's directory if path is ""); it is closed when the test ends,
// after the pools start started over it have stopped.
func openQueue(t *testing.T, path string) *queue.Embedded {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "q.db")
	}
	q, err := queue.OpenEmbedded(path, queue.Options{
		VisibilityTimeout: 300 * time.Millisecond,
		MaxAttempts:       3,
		Backoff:           func(int) time.Duration { return 10 * time.Millisecond },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// runPush runs a pool of o over q with handle for "push" jobs, and enqueues
// one push delivery.
func runPush(t *testing.T, q queue.Queue, o Options, delivery string, handle Handler) (stop func()) {
	t.Helper()
	r := NewRouter()
	r.Handle("push", handle)
	stop = start(t, q, r, o)
	enqueue(t, q, "push", delivery)
	return stop
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func enqueue(t *testing.T, q queue.Queue, event, delivery string) {
	t.Helper()
	if _, err := q.Enqueue(context.Background(), queue.Job{DeliveryID: delivery, Event: event, Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func start(t *testing.T, q queue.Queue, r *Router, o Options) (stop func()) {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quiet()
	}
	p := NewPool(q, r, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func stats(t *testing.T, q queue.Queue) queue.Stats {
	t.Helper()
	s, err := q.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPanicIsAFailedAttemptNotACrash(t *testing.T) {
	q := openQueue(t, "")
	var calls atomic.Int32
	runPush(t, q, Options{Size: 1}, "p1", func(ctx context.Context, j queue.Job) error {
		if calls.Add(1) < 3 {
			panic("boom")
		}
		return nil
	})
	waitFor(t, "third attempt to succeed", func() bool { return calls.Load() == 3 && stats(t, q) == (queue.Stats{}) })
}

func TestAlwaysFailingJobIsDeadLettered(t *testing.T) {
	q := openQueue(t, "")
	var calls atomic.Int32
	runPush(t, q, Options{Size: 2}, "f1", func(ctx context.Context, j queue.Job) error { calls.Add(1); return errors.New("flaky") })
	waitFor(t, "dead letter", func() bool { return stats(t, q).Dead == 1 })
	time.Sleep(100 * time.Millisecond)
	if calls.Load() != 3 {
		t.Fatalf("handler ran %d times, want MaxAttempts = 3", calls.Load())
	}
	dead, err := q.Dead(context.Background(), 10)
	if err != nil || len(dead) != 1 || dead[0].Reason == "" {
		t.Fatalf("dead = %+v, %v", dead, err)
	}
}

func TestPermanentErrorIsNotRetried(t *testing.T) {
	q := openQueue(t, "")
	var calls atomic.Int32
	runPush(t, q, Options{Size: 1}, "perm1", func(ctx context.Context, j queue.Job) error {
		calls.Add(1)
		return Permanent(errors.New(".github/shipbot.yml: unknown key"))
	})
	waitFor(t, "dead letter", func() bool { return stats(t, q).Dead == 1 })
	time.Sleep(100 * time.Millisecond)
	if calls.Load() != 1 {
		t.Fatalf("handler ran %d times, want 1", calls.Load())
	}
}

func TestHeartbeatKeepsLongJobLeased(t *testing.T) {
	q := openQueue(t, "")
	var calls atomic.Int32
	runPush(t, q, Options{Size: 2, Heartbeat: 50 * time.Millisecond}, "long1", func(ctx context.Context, j queue.Job) error {
		calls.Add(1)
		select { // three visibility timeouts long
		case <-time.After(time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	})
	waitFor(t, "long job to finish", func() bool { return calls.Load() == 1 && stats(t, q) == (queue.Stats{}) })
	if calls.Load() != 1 {
		t.Fatalf("long job ran %d times; the heartbeat should have kept it leased", calls.Load())
	}
}

func TestShutdownFinishesRunningJobsWithinGrace(t *testing.T) {
	q := openQueue(t, "")
	started := make(chan struct{})
	stop := runPush(t, q, Options{Size: 1, Grace: 5 * time.Second, Heartbeat: 50 * time.Millisecond}, "g1", func(ctx context.Context, j queue.Job) error {
		close(started)
		time.Sleep(200 * time.Millisecond)
		return nil
	})
	<-started
	stop()
	if s := stats(t, q); s != (queue.Stats{}) {
		t.Fatalf("job not acked after a graceful stop: %+v", s)
	}
}

func TestShutdownLeavesUnfinishedJobForResumption(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	q := openQueue(t, path)
	started := make(chan struct{})
	stop := runPush(t, q, Options{Size: 1, Grace: 100 * time.Millisecond, Heartbeat: 50 * time.Millisecond}, "resume1", func(ctx context.Context, j queue.Job) error {
		close(started)
		<-ctx.Done() // never finishes by itself
		return ctx.Err()
	})
	<-started
	stop()
	if s := stats(t, q); s.Leased != 1 || s.Dead != 0 {
		t.Fatalf("interrupted job should stay leased, not fail: %+v", s)
	}
	q.Close()

	// The next process resumes it.
	q = openQueue(t, path)
	var resumed atomic.Int32
	r2 := NewRouter()
	r2.Handle("push", func(ctx context.Context, j queue.Job) error {
		if j.DeliveryID == "resume1" {
			resumed.Add(1)
		}
		return nil
	})
	start(t, q, r2, Options{Size: 1})
	waitFor(t, "resumed job", func() bool { return resumed.Load() == 1 })
}

func TestRouterAccepts(t *testing.T) {
	r := NewRouter()
	noop := func(context.Context, queue.Job) error { return nil }
	r.Handle("push", noop)
	r.Handle("pull_request", noop, "opened", "closed")
	for _, tc := range []struct {
		event, action string
		want          bool
	}{
		{"push", "", true},
		{"pull_request", "opened", true},
		{"pull_request", "labeled", false},
		{"star", "created", false},
	} {
		if got := r.Accepts(tc.event, tc.action); got != tc.want {
			t.Errorf("Accepts(%q, %q) = %v", tc.event, tc.action, got)
		}
	}
}

// A long job gives its place up: with one worker busy on a rollout, the
// next job still runs, and shutdown waits for both.
func TestLongJobGivesItsPlaceUp(t *testing.T) {
	q := openQueue(t, "")
	release := make(chan struct{})
	longStarted, lightDone := make(chan struct{}), make(chan struct{})
	r := NewRouter()
	r.Handle("push", func(ctx context.Context, j queue.Job) error {
		if j.DeliveryID == "rollout" {
			close(longStarted)
			<-release
			return nil
		}
		close(lightDone)
		return nil
	})
	stop := start(t, q, r, Options{Size: 1, LongAfter: 50 * time.Millisecond, Heartbeat: 50 * time.Millisecond, Grace: 10 * time.Second})
	enqueue(t, q, "push", "rollout")
	<-longStarted
	enqueue(t, q, "push", "webhook")
	select {
	case <-lightDone:
	case <-time.After(10 * time.Second):
		t.Fatal("a light job waited behind a long one in a pool of one")
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("the pool stopped while the long job still ran")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	<-stopped
	if s := stats(t, q); s != (queue.Stats{}) {
		t.Fatalf("jobs not all acked: %+v", s)
	}
}

// MaxLong bounds the jobs that gave their place up: past it, a long job
// keeps its place and the pool runs no more than Size + MaxLong at once.
func TestMaxLongBoundsTheWorkers(t *testing.T) {
	q := openQueue(t, "")
	release := make(chan struct{})
	var running, most atomic.Int32
	r := NewRouter()
	r.Handle("push", func(ctx context.Context, j queue.Job) error {
		n := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release
		return nil
	})
	start(t, q, r, Options{Size: 1, MaxLong: 2, LongAfter: 20 * time.Millisecond, Heartbeat: 50 * time.Millisecond})
	for i := 0; i < 5; i++ {
		enqueue(t, q, "push", "long-"+string(rune('a'+i)))
	}
	waitFor(t, "three long jobs running", func() bool { return running.Load() == 3 })
	time.Sleep(200 * time.Millisecond) // time for a fourth, were the bound broken
	if got := most.Load(); got != 3 {
		t.Fatalf("%d jobs ran at once, want Size + MaxLong = 3", got)
	}
	close(release)
	waitFor(t, "every job done", func() bool { return stats(t, q) == (queue.Stats{}) })
}

// The job's attributes reach every line logged about it, through the
// handler's context logger and loggers derived from it.
func TestJobLinesCarryTheJob(t *testing.T) {
	q := openQueue(t, "")
	var buf syncBuffer
	done := make(chan struct{})
	r := NewRouter()
	r.Handle("push", func(ctx context.Context, j queue.Job) error {
		logctx.From(ctx).Info("handler line")
		logctx.From(logctx.Add(ctx, "step", "two")).Info("derived line")
		close(done)
		return nil
	})
	stop := start(t, q, r, Options{Size: 1, Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	enqueue(t, q, "push", "attrs-1")
	<-done
	stop()
	for _, want := range []string{
		`"msg":"handler line","job":"1","delivery":"attrs-1","event":"push","action":"","installation":0,"repo":"","attempt":1,"consumer":"worker-0"}`,
		`"msg":"derived line","job":"1","delivery":"attrs-1","event":"push","action":"","installation":0,"repo":"","attempt":1,"consumer":"worker-0","step":"two"}`,
		`"msg":"job done","job":"1","delivery":"attrs-1"`,
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("no line with %s in\n%s", want, buf.String())
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
