package queue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// testTuning turns the background compaction off (tests call compact
// themselves) and copies in small chunks, so a few hundred jobs take many
// copy transactions.
func testTuning() embeddedTuning {
	t := defaultTuning()
	t.compactEvery, t.compactMin, t.chunkBytes = time.Hour, 0, 64<<10
	return t
}

func openTest(t *testing.T, path string, opts Options, tune embeddedTuning) *Embedded {
	t.Helper()
	e, err := openEmbedded(path, opts, tune)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

const jobPayloadSize = 24 << 10

// bigJob's payload is random bytes, which do not compress: each job adds
// its full 24 KB to the file, the worst case the bounds below assume.
func bigJob(id string) Job {
	p := make([]byte, jobPayloadSize)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(p) // never fails
	copy(p, id)
	return Job{DeliveryID: id, Event: "push", Repo: "octo/app", Payload: p}
}

// enqueueN stores n 24 KB jobs named prefix-i from 16 goroutines.
func enqueueN(t *testing.T, q Queue, prefix string, n int) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				if _, err := q.Enqueue(context.Background(), bigJob(fmt.Sprintf("%s-%d", prefix, i))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// drain leases and acks until nothing is ready, returning the delivery
// ids it acked.
func drain(t *testing.T, q Queue) map[string]int {
	t.Helper()
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for {
				l, err := q.Lease(context.Background(), fmt.Sprint("w", w), 0)
				if errors.Is(err, ErrEmpty) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				if err := q.Ack(context.Background(), l); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got[l.Job.DeliveryID]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return got
}

// syncAcks returns once the deletes of the jobs acked so far are
// committed: the acks queued before an empty write are committed with it
// or before it.
func syncAcks(t *testing.T, e *Embedded) {
	t.Helper()
	if err := e.commit(func(*wtx) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func bucketKeys(t *testing.T, e *Embedded, name string) int {
	t.Helper()
	var n int
	err := e.view(func(tx *bolt.Tx) error {
		n = tx.Bucket([]byte(name)).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Many copies of one delivery enqueued at once, most of them in one group
// commit: one is stored, every other gets ErrDuplicate.
func TestConcurrentDuplicatesInOneGroup(t *testing.T) {
	e := openTest(t, filepath.Join(t.TempDir(), "queue.db"), Options{}, testTuning())
	const ids, copies = 8, 64
	var stored, dups [ids]atomic.Int32
	var wg sync.WaitGroup
	// Holding commitMu stalls the committer on its first batch; the others
	// pile up and go in the next batch together.
	e.commitMu.Lock()
	for i := range ids {
		for range copies {
			wg.Go(func() {
				_, err := e.Enqueue(context.Background(), Job{DeliveryID: fmt.Sprint("dup-", i)})
				switch {
				case err == nil:
					stored[i].Add(1)
				case errors.Is(err, ErrDuplicate):
					dups[i].Add(1)
				default:
					t.Error(err)
				}
			})
		}
	}
	time.Sleep(100 * time.Millisecond)
	e.commitMu.Unlock()
	wg.Wait()
	for i := range ids {
		if stored[i].Load() != 1 || dups[i].Load() != copies-1 {
			t.Errorf("dup-%d: stored %d times, %d duplicates; want 1 and %d", i, stored[i].Load(), dups[i].Load(), copies-1)
		}
	}
	if got := drain(t, e); len(got) != ids {
		t.Errorf("leased %d distinct jobs, want %d: %v", len(got), ids, got)
	}
}

// After its deliveries are acknowledged the file shrinks back to what
// remembering their ids takes: the bound is 100 MB for 150,000
// deliveries of 24 KB, scaled here to n. And it stays there as history
// grows: a second round, after the first round's ids expired, ends no
// bigger.
func TestCompactedFileStaysSmallAsHistoryGrows(t *testing.T) {
	const n = 2000
	const bound = int64(n) * (100 << 20) / 150_000
	path := filepath.Join(t.TempDir(), "queue.db")
	opts := Options{DedupeWindow: 200 * time.Millisecond}
	e := openTest(t, path, opts, testTuning())
	for round := range 2 {
		enqueueN(t, e, fmt.Sprint("r", round), n)
		if got := drain(t, e); len(got) != n {
			t.Fatalf("round %d: acked %d jobs, want %d", round, len(got), n)
		}
		syncAcks(t, e)
		if bucketKeys(t, e, bucketJobs) != 0 {
			t.Fatalf("round %d: acked jobs are still in the file", round)
		}
		before := fileSize(t, path)
		if before < n*jobPayloadSize {
			t.Fatalf("round %d: file is %d bytes with %d jobs of 24 KB written", round, before, n)
		}
		if !e.shouldCompact() {
			t.Fatalf("round %d: a %d-byte file with nothing but delivery ids is not due for compaction", round, before)
		}
		if err := e.compact(); err != nil {
			t.Fatal(err)
		}
		if size := fileSize(t, path); size > bound {
			t.Errorf("round %d: compacted file is %d bytes, want ≤ %d", round, size, bound)
		}
		time.Sleep(300 * time.Millisecond) // past the dedupe window
		if _, err := e.forgetExpired(time.Now()); err != nil {
			t.Fatal(err)
		}
		e.mu.Lock()
		d := e.seen.len()
		e.mu.Unlock()
		if x := bucketKeys(t, e, bucketExpiries); d != 0 || x != 0 {
			t.Errorf("round %d: %d delivery ids in memory and %d in the file left after the window", round, d, x)
		}
	}
}

// Writes made while the copy runs (enqueues, acks, retries, dead letters)
// all reach the compacted file; ids and dead-letter numbering go on from
// where they were.
func TestCompactionKeepsWritesMadeDuringIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	opts := Options{MaxAttempts: 100, Backoff: func(int) time.Duration { return 0 }}
	tune := testTuning()
	ctx := context.Background()
	var e *Embedded
	want := map[string]bool{}
	var dead []string
	mutate := func(prefix string) {
		for i := range 30 {
			id := fmt.Sprintf("%s-%d", prefix, i)
			if _, err := e.Enqueue(ctx, bigJob(id)); err != nil {
				t.Fatal(err)
			}
			want[id] = true
		}
		for i := range 12 {
			l, err := e.Lease(ctx, "w", 0)
			if err != nil {
				t.Fatal(err)
			}
			switch i % 3 {
			case 0:
				err = e.Ack(ctx, l)
				delete(want, l.Job.DeliveryID)
			case 1:
				err = e.Nack(ctx, l, "retry", true)
			case 2:
				err = e.Nack(ctx, l, "permanent", false)
				delete(want, l.Job.DeliveryID)
				dead = append(dead, l.Job.DeliveryID)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	tune.hook = func(step string) {
		switch step {
		case "copied":
			mutate("copying")
		case "synced":
			mutate("catching-up")
		}
	}
	e = openTest(t, path, opts, tune)
	mutate("before")
	if err := e.compact(); err != nil {
		t.Fatal(err)
	}
	if r := e.lastCompaction(); r.Err != nil || r.Paused <= 0 || r.Took < r.Paused {
		t.Errorf("compaction report %+v", r)
	}
	last, err := e.Enqueue(ctx, Job{DeliveryID: "after"})
	if err != nil {
		t.Fatal(err)
	}
	want["after"] = true
	if last.ID != "91" {
		t.Errorf("first job after the compaction got id %s, want 91 (90 were enqueued before)", last.ID)
	}
	for _, id := range []string{"before-0", "copying-29", "catching-up-0"} {
		if _, err := e.Enqueue(ctx, Job{DeliveryID: id}); !errors.Is(err, ErrDuplicate) {
			t.Errorf("Enqueue %s again = %v, want ErrDuplicate", id, err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openTest(t, path, opts, testTuning())
	checkJobs(t, e, want)
	got, err := e.Dead(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(dead) {
		t.Fatalf("%d dead letters, want %d", len(got), len(dead))
	}
	for i, d := range got {
		if w := dead[len(dead)-1-i]; d.Job.DeliveryID != w || d.Reason != "permanent" {
			t.Errorf("dead letter %d: %s %q, want %s", i, d.Job.DeliveryID, d.Reason, w)
		}
	}
}

// checkJobs leases everything in e (retries included) and compares the
// delivery ids with want: no job lost, none twice, none brought back.
func checkJobs(t *testing.T, e *Embedded, want map[string]bool) {
	t.Helper()
	for id, n := range leaseAll(t, e, want) {
		if !want[id] {
			t.Errorf("job %s (leased %d times) should be gone", id, n)
		}
	}
}

// leaseAll leases and acks everything in e, checks that each job of want
// came exactly once, and returns how often each delivery id came.
func leaseAll(t *testing.T, e *Embedded, want map[string]bool) map[string]int {
	t.Helper()
	got := map[string]int{}
	for {
		l, err := e.Lease(context.Background(), "check", 200*time.Millisecond)
		if errors.Is(err, ErrEmpty) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[l.Job.DeliveryID]++
		if err := e.Ack(context.Background(), l); err != nil {
			t.Fatal(err)
		}
	}
	for id := range want {
		if got[id] != 1 {
			t.Errorf("job %s leased %d times, want once", id, got[id])
		}
	}
	return got
}

// Compacting under load from many writers: every job stored before or
// during it is there once afterwards.
func TestCompactionUnderConcurrentIntake(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	e := openTest(t, path, Options{}, testTuning())
	enqueueN(t, e, "old", 300)
	drain(t, e)
	enqueueN(t, e, "backlog", 100)
	var stop atomic.Bool
	var mu sync.Mutex
	stored := map[string]bool{}
	for i := range 100 {
		stored[fmt.Sprint("backlog-", i)] = true
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				// Small jobs at a bounded rate: the compactions must
				// overlap writes, not copy hundreds of megabytes (at full
				// speed the writers stored 15,000 24 KB jobs meanwhile).
				id := fmt.Sprintf("live-%d-%d", w, i)
				time.Sleep(time.Millisecond)
				if _, err := e.Enqueue(context.Background(), Job{DeliveryID: id, Event: "push", Repo: "octo/app", Payload: []byte(id)}); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				stored[id] = true
				mu.Unlock()
			}
		})
	}
	for range 3 {
		if err := e.compact(); err != nil && !errors.Is(err, errCompactBusy) {
			t.Error(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if r := e.lastCompaction(); r.Err != nil {
		t.Logf("last compaction: %v", r.Err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d jobs stored", len(stored))
	e = openTest(t, path, Options{}, testTuning())
	checkJobs(t, e, stored)
}
