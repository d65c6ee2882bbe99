package queue

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The crash tests run the store in a child process (this test binary run
// again, with TestCrashChild selected and the role in the environment)
// and kill it, or let it exit, at a chosen point. The child prints
// "stored ID" once an Enqueue returned nil and "acked ID" once an Ack did;
// the parent then opens the file and checks the jobs against those lines.
const (
	envCrashRole = "QUEUE_CRASH_ROLE"
	envCrashPath = "QUEUE_CRASH_PATH"
	envCrashStep = "QUEUE_CRASH_STEP"
	// crashExit is the status a child exits with at its crash point.
	crashExit = 7
)

func TestCrashChild(t *testing.T) {
	role := os.Getenv(envCrashRole)
	if role == "" {
		t.Skip("runs only as the child of a crash test")
	}
	path := os.Getenv(envCrashPath)
	out := &lineWriter{}
	switch role {
	case "intake":
		crashChildIntake(path, out)
	case "compact":
		crashChildCompact(path, os.Getenv(envCrashStep), out)
	case "ack":
		crashChildAck(path, out)
	case "checkpoint":
		crashChildCheckpoint(path, os.Getenv(envCrashStep), out)
	case "reuse":
		crashChildReuse(path, out)
	}
	fmt.Fprintln(os.Stderr, "crash child: no crash happened")
	os.Exit(1)
}

type lineWriter struct{ mu sync.Mutex }

func (w *lineWriter) say(verb, id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(os.Stdout, "%s %s\n", verb, id)
}

func childFail(err error) {
	fmt.Fprintln(os.Stderr, "crash child:", err)
	os.Exit(1)
}

// crashChildIntake enqueues from 64 goroutines until it is killed.
func crashChildIntake(path string, out *lineWriter) {
	e, err := OpenEmbedded(path, Options{})
	if err != nil {
		childFail(err)
	}
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("g%d-%d", g, i)
				if _, err := e.Enqueue(context.Background(), bigJob(id)); err != nil {
					childFail(err)
				}
				out.say("stored", id)
			}
		})
	}
	wg.Wait()
}

// crashChildAck stores 200 jobs, then acks 120 with the commits held
// back, so that only the lease log knows of the acks, and the log is
// rewritten along the way; then it dies.
func crashChildAck(path string, out *lineWriter) {
	ctx := context.Background()
	e, err := openEmbedded(path, Options{}, testTuning())
	if err != nil {
		childFail(err)
	}
	for i := range 200 {
		id := fmt.Sprint("a-", i)
		if _, err := e.Enqueue(ctx, Job{DeliveryID: id}); err != nil {
			childFail(err)
		}
		out.say("stored", id)
	}
	e.commitMu.Lock()
	e.mu.Lock()
	e.compactAt = 40 * markLen
	e.mu.Unlock()
	for range 120 {
		l, err := e.Lease(ctx, "w", 0)
		if err != nil {
			childFail(err)
		}
		if err := e.Ack(ctx, l); err != nil {
			childFail(err)
		}
		out.say("acked", l.Job.DeliveryID)
	}
	os.Exit(crashExit)
}

// crashChildCheckpoint journals 100 jobs with every checkpoint held off,
// leases 40 of them, acks 30, then nacks one, which commits and so
// checkpoints everything, and exits at step: inside the checkpoint's
// transaction, or after its commit and before the journal's spare file is
// emptied.
func crashChildCheckpoint(path, step string, out *lineWriter) {
	ctx := context.Background()
	tune := testTuning()
	tune.checkpointDelay, tune.checkpointBytes, tune.ackDelay = time.Hour, 1<<40, time.Hour
	tune.hook = func(s string) {
		if s == step {
			os.Exit(crashExit)
		}
	}
	e, err := openEmbedded(path, crashCheckpointOptions(), tune)
	if err != nil {
		childFail(err)
	}
	for i := range 100 {
		id := fmt.Sprint("c-", i)
		if _, err := e.Enqueue(ctx, Job{DeliveryID: id, Payload: []byte(`{"n":` + fmt.Sprint(i) + `}`)}); err != nil {
			childFail(err)
		}
		out.say("stored", id)
	}
	var held []*Lease
	for i := range 40 {
		l, err := e.Lease(ctx, "w", 0)
		if err != nil {
			childFail(err)
		}
		if i >= 30 {
			held = append(held, l)
			continue
		}
		if err := e.Ack(ctx, l); err != nil {
			childFail(err)
		}
		out.say("acked", l.Job.DeliveryID)
	}
	if err := e.Nack(ctx, held[0], "failed", true); err != nil {
		childFail(err)
	}
	childFail(errors.New("the nack did not checkpoint"))
}

// crashChildReuse journals three rounds of jobs, a checkpoint after each
// of the first two, so that the third round is written over the first
// one's records in the same file, and exits before the third checkpoint.
// Records of the first and third rounds are the same size, so the old
// records past the new ones are whole. The first checkpoint dead-letters
// job r-10, whose old record, replayed again, would bring it back.
func crashChildReuse(path string, out *lineWriter) {
	ctx := context.Background()
	e, err := openEmbedded(path, crashCheckpointOptions(), heldTuning())
	if err != nil {
		childFail(err)
	}
	n := 0
	for round, size := range []int{60, 10, 5} {
		pad := strings.Repeat("x", []int{2000, 500, 2000}[round])
		for range size {
			n++
			id := fmt.Sprintf("r-%02d", n)
			payload := fmt.Sprintf(`{"n":%02d,"pad":%q}`, n, pad)
			if _, err := e.Enqueue(ctx, Job{DeliveryID: id, Payload: []byte(payload)}); err != nil {
				childFail(err)
			}
			out.say("stored", id)
		}
		if round == 2 {
			os.Exit(crashExit)
		}
		// A nack commits, and so checkpoints: one each round, so that the
		// rounds alternate between the files. The first round's nack
		// dead-letters its tenth job, the nine before it stay leased.
		var l *Lease
		for range []int{10, 1}[round] {
			if l, err = e.Lease(ctx, "w", 0); err != nil {
				childFail(err)
			}
		}
		if err := e.Nack(ctx, l, "failed", round > 0); err != nil {
			childFail(err)
		}
	}
}

func crashCheckpointOptions() Options {
	return Options{Backoff: func(int) time.Duration { return 0 }}
}

// crashChildCompact fills a store, acks part of it, and compacts it,
// exiting at step. Jobs enqueued and acked after the copy started go
// through the catch-up.
func crashChildCompact(path, step string, out *lineWriter) {
	ctx := context.Background()
	var e *Embedded
	work := func(prefix string, n, acks int) {
		for i := range n {
			id := fmt.Sprintf("%s-%d", prefix, i)
			if _, err := e.Enqueue(ctx, bigJob(id)); err != nil {
				childFail(err)
			}
			out.say("stored", id)
		}
		for range acks {
			l, err := e.Lease(ctx, "w", 0)
			if err != nil {
				childFail(err)
			}
			if err := e.Ack(ctx, l); err != nil {
				childFail(err)
			}
			out.say("acked", l.Job.DeliveryID)
		}
	}
	tune := testTuning()
	tune.hook = func(s string) {
		switch s {
		case "copied":
			work("copying", 10, 5)
		case "synced":
			work("catching-up", 10, 5)
		}
		if s == step {
			os.Exit(crashExit)
		}
	}
	e, err := openEmbedded(path, Options{}, tune)
	if err != nil {
		childFail(err)
	}
	work("j", 100, 40)
	if err := e.compact(); err != nil {
		childFail(err)
	}
}

// runCrashChild starts the child and calls onLine for each line it
// prints; onLine returning true kills the child. It returns the child's
// stored and acked ids and its exit status.
func runCrashChild(t *testing.T, role, path, step string, onLine func(n int) bool) (stored, acked map[string]bool, status int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashRole+"="+role, envCrashPath+"="+path, envCrashStep+"="+step)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stored, acked = map[string]bool{}, map[string]bool{}
	sc := bufio.NewScanner(pipe)
	killed := false
	for n := 1; sc.Scan(); n++ {
		verb, id, _ := strings.Cut(sc.Text(), " ")
		switch verb {
		case "stored":
			stored[id] = true
		case "acked":
			acked[id] = true
		}
		if !killed && onLine != nil && onLine(n) {
			cmd.Process.Kill()
			killed = true
		}
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	switch {
	case killed:
		status = -1
	case errors.As(err, &exit):
		status = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	if status != -1 && status != crashExit {
		t.Fatalf("child exited with status %d, not at its crash point:\n%s", status, stderr.String())
	}
	return stored, acked, status
}

// A process killed in the middle of group commits loses no job whose
// Enqueue had returned nil, and its file opens.
func TestCrashMidGroupKeepsEveryStoredJob(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	stored, _, _ := runCrashChild(t, "intake", path, "", func(n int) bool { return n >= 1500 })
	if len(stored) < 1500 {
		t.Fatalf("child reported %d stored jobs before it was killed", len(stored))
	}
	e := openTest(t, path, Options{}, testTuning())
	got := leaseAll(t, e, stored)
	t.Logf("%d jobs reported stored, %d in the file", len(stored), len(got))
	for id, n := range got {
		if n != 1 {
			t.Errorf("job %s leased %d times", id, n)
		}
	}
}

// A compaction interrupted at any step leaves a store that opens with
// every job that was stored and not acked, once, no acked job back, and
// no copy left behind.
func TestCrashDuringCompactionLeavesUsableStore(t *testing.T) {
	for _, step := range []string{"copied", "synced", "final", "renamed", "swapped"} {
		t.Run(step, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "queue.db")
			stored, acked, _ := runCrashChild(t, "compact", path, step, nil)
			// The catch-up's jobs come only when the crash is after it.
			wantStored, wantAcked := 120, 50
			if step == "copied" {
				wantStored, wantAcked = 110, 45
			}
			if len(stored) != wantStored || len(acked) != wantAcked {
				t.Fatalf("child stored %d and acked %d, want %d and %d", len(stored), len(acked), wantStored, wantAcked)
			}
			want := unacked(stored, acked)
			e := openTest(t, path, Options{}, testTuning())
			if _, err := os.Stat(compactPath(path)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the unfinished copy is still there after open: %v", err)
			}
			for id := range stored {
				if seen, err := e.Seen(context.Background(), id); err != nil || !seen {
					t.Errorf("Seen(%s) = %v, %v after the crash; want true", id, seen, err)
				}
			}
			checkJobs(t, e, want)
			// The store still works: a new job gets a fresh id.
			j, err := e.Enqueue(context.Background(), Job{DeliveryID: "new"})
			if wantID := fmt.Sprint(wantStored + 1); err != nil || j.ID != wantID {
				t.Errorf("Enqueue after the crash = %+v, %v; want job %s", j, err, wantID)
			}
		})
	}
}

// A process that dies after its Acks returned but before their deletes
// were committed does not run those jobs again.
func TestCrashBeforeAckCommitsKeepsAcks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	stored, acked, _ := runCrashChild(t, "ack", path, "", nil)
	if len(stored) != 200 || len(acked) != 120 {
		t.Fatalf("child stored %d and acked %d, want 200 and 120", len(stored), len(acked))
	}
	want := unacked(stored, acked)
	e := openTest(t, path, Options{}, testTuning())
	checkJobs(t, e, want)
}

// A process that dies in the middle of a checkpoint, or after it and
// before the journal is emptied, loses no journaled job, brings back no
// acked one, forgets no delivery id, and hands out no id twice.
func TestCrashDuringCheckpointKeepsJournaledJobs(t *testing.T) {
	for _, step := range []string{"checkpoint", "checkpointed"} {
		t.Run(step, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "queue.db")
			stored, acked, _ := runCrashChild(t, "checkpoint", path, step, nil)
			if len(stored) != 100 || len(acked) != 30 {
				t.Fatalf("child stored %d and acked %d, want 100 and 30", len(stored), len(acked))
			}
			want := unacked(stored, acked)
			e := openTest(t, path, crashCheckpointOptions(), testTuning())
			for id := range stored {
				if seen, err := e.Seen(context.Background(), id); err != nil || !seen {
					t.Errorf("Seen(%s) = %v, %v after the crash; want true", id, seen, err)
				}
			}
			if _, err := e.Enqueue(context.Background(), Job{DeliveryID: "c-5"}); !errors.Is(err, ErrDuplicate) {
				t.Errorf("Enqueue of a delivery stored before the crash: %v, want ErrDuplicate", err)
			}
			checkJobs(t, e, want)
			j, err := e.Enqueue(context.Background(), Job{DeliveryID: "new"})
			if err != nil || j.ID != "101" {
				t.Errorf("Enqueue after the crash = %+v, %v; want job 101", j, err)
			}
		})
	}
}

// A journal file written over its own older records, which stay past the
// new ones, replays the new records and none of the old ones again.
func TestCrashAfterJournalReuseReplaysOnlyNewRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	stored, _, _ := runCrashChild(t, "reuse", path, "", nil)
	if len(stored) != 75 {
		t.Fatalf("child stored %d jobs, want 75", len(stored))
	}
	// The third round went over the first one in journal0, and the first
	// round's records 6 to 60 are still there after it.
	b, err := os.ReadFile(journalPaths(path)[0])
	if err != nil {
		t.Fatal(err)
	}
	if recs := readJournal(b); len(recs) != 60 || recs[4].id != 75 || recs[5].id != 6 {
		t.Fatalf("journal0 reads as %d records; want jobs 71-75 followed by the old records of jobs 6-60", len(recs))
	}
	e := openTest(t, path, crashCheckpointOptions(), testTuning())
	delete(stored, "r-10")
	checkJobs(t, e, stored)
	if st, err := e.Stats(context.Background()); err != nil || st.Dead != 1 {
		t.Errorf("Stats after the crash = %+v, %v; want the one dead letter", st, err)
	}
	j, err := e.Enqueue(context.Background(), Job{DeliveryID: "new"})
	if err != nil || j.ID != "76" {
		t.Errorf("Enqueue after the crash = %+v, %v; want job 76", j, err)
	}
}

// unacked is the ids of stored that are not in acked: the jobs a store
// must still hold after the child's crash.
func unacked(stored, acked map[string]bool) map[string]bool {
	want := map[string]bool{}
	for id := range stored {
		if !acked[id] {
			want[id] = true
		}
	}
	return want
}
