package queue

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// The lease log is rewritten every megabyte or so; shrink that to a few
// records and check that attempts recorded only in the log survive both the
// rewrite and a restart.
func TestLeaseLogCompactionKeepsAttempts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	opts := Options{VisibilityTimeout: 50 * time.Millisecond, MaxAttempts: 10}
	e, err := OpenEmbedded(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	e.compactAt = 3 * markLen
	e.mu.Unlock()
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if _, err := e.Enqueue(ctx, Job{DeliveryID: id}); err != nil {
			t.Fatal(err)
		}
	}
	// Two rounds of leases that expire: four marks, so one rewrite.
	for round := 1; round <= 2; round++ {
		for range 2 {
			l, err := e.Lease(ctx, "w", time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if l.Job.Attempt != round {
				t.Fatalf("round %d: attempt %d", round, l.Job.Attempt)
			}
		}
	}
	e.mu.Lock()
	size, compactAt := e.logSize, e.compactAt
	e.mu.Unlock()
	if compactAt != minCompactAt || size > 3*markLen {
		t.Errorf("log not rewritten: size %d, next rewrite at %d", size, compactAt)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".leases.tmp"); err == nil {
		t.Error("rewrite left its temporary file behind")
	}

	e, err = OpenEmbedded(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for range 2 {
		l, err := e.Lease(ctx, "w", 0)
		if err != nil {
			t.Fatal(err)
		}
		if l.Job.Attempt != 3 {
			t.Errorf("after restart job %s attempt %d, want 3", l.Job.ID, l.Job.Attempt)
		}
	}
}

// A process that dies mid-append leaves a torn record; it must not stop
// the file from opening or corrupt the records before it.
func TestTornLeaseLogRecordIsIgnored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	e, err := OpenEmbedded(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := e.Enqueue(ctx, Job{DeliveryID: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Lease(ctx, "w", 0); err != nil {
		t.Fatal(err)
	}
	e.Close()
	f, err := os.OpenFile(path+".leases", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 0})
	f.Close()

	e, err = OpenEmbedded(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	l, err := e.Lease(ctx, "w", 0)
	if err != nil {
		t.Fatal(err)
	}
	if l.Job.Attempt != 2 {
		t.Errorf("attempt %d, want 2", l.Job.Attempt)
	}
}

// commitCount is how many commits e has made (its commit-time histogram).
func commitCount(t *testing.T, e *Embedded) uint64 {
	t.Helper()
	var m dto.Metric
	if err := e.commitTime.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// Acked jobs' deletes do not get a commit (two fsyncs) each: alone, they
// wait for another write to ride, and are committed together after
// ackDelay when none comes. They are still deleted without any other write.
func TestEmbeddedAcksAloneShareOneCommit(t *testing.T) {
	e := openTest(t, filepath.Join(t.TempDir(), "queue.db"), Options{}, testTuning())
	ctx := context.Background()
	const n = 4
	for i := range n {
		if _, err := e.Enqueue(ctx, Job{DeliveryID: fmt.Sprint("a", i), Event: "push"}); err != nil {
			t.Fatal(err)
		}
	}
	before := commitCount(t, e)
	for range n {
		l, err := e.Lease(ctx, "w", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Ack(ctx, l); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // each ack's own commit would be done by now
	}
	for deadline := time.Now().Add(5 * time.Second); bucketKeys(t, e, bucketJobs) != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d acked jobs still in the file after 5s with no other write", bucketKeys(t, e, bucketJobs))
		}
	}
	// The acks come within ackDelay of one another; on a loaded machine
	// they may take two commits, not one each.
	if got := commitCount(t, e) - before; got > 2 {
		t.Errorf("%d acks took %d commits, want 1 or 2", n, got)
	}
}
