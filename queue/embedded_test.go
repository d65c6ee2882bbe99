package queue

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
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
