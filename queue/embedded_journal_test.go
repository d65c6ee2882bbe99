package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// heldTuning holds every checkpoint back until a commit asks for one.
func heldTuning() embeddedTuning {
	t := testTuning()
	t.checkpointDelay, t.checkpointBytes, t.ackDelay = time.Hour, 1<<40, time.Hour
	return t
}

// A journal cut anywhere in its last record, or with any byte of that
// record changed, reads as the records before it; whole, it reads back
// exactly as written, payloads written apart from their heads included.
func TestJournalTornOrCorruptTailIsIgnored(t *testing.T) {
	recs := []journalRec{
		{id: 1, expires: 11, key: []byte("d-1"), val: append(make([]byte, jobHeaderLen), "one\n{}"...)},
		{id: 2, expires: 22, key: []byte("d-22"), val: append(make([]byte, jobHeaderLen), "two\n"...), payload: []byte("[]")},
		{id: 3, expires: 33, key: []byte("d-333"), val: append(make([]byte, jobHeaderLen), "three\n"...), payload: []byte(`"x"`)},
	}
	var b []byte
	for i := range recs {
		b = append(appendJournalRec(b, &recs[i]), recs[i].payload...)
	}
	last := len(appendJournalRec(nil, &recs[2])) + len(recs[2].payload)
	whole := readJournal(b)
	if len(whole) != 3 {
		t.Fatalf("read %d records of 3", len(whole))
	}
	for i, r := range whole {
		w := recs[i]
		if r.id != w.id || r.expires != w.expires || !bytes.Equal(r.key, w.key) || !bytes.Equal(r.val, append(w.val, w.payload...)) {
			t.Errorf("record %d read as %+v, want %+v", i, r, w)
		}
	}
	for cut := len(b) - last; cut < len(b); cut++ {
		if got := readJournal(b[:cut]); len(got) != 2 {
			t.Errorf("cut at %d of %d: read %d records, want 2", cut, len(b), len(got))
		}
	}
	for i := len(b) - last; i < len(b); i++ {
		bad := bytes.Clone(b)
		bad[i] ^= 0x40
		if got := readJournal(bad); len(got) != 2 {
			t.Errorf("byte %d changed: read %d records, want 2", i, len(got))
		}
	}
}

// Jobs acked before their checkpoint never reach the file: only their
// delivery ids do, which still de-duplicate.
func TestJobsAckedBeforeCheckpointStayOutOfTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	e := openTest(t, path, Options{}, heldTuning())
	enqueueN(t, e, "a", 200)
	if got := drain(t, e); len(got) != 200 {
		t.Fatalf("drained %d jobs of 200", len(got))
	}
	syncAcks(t, e)
	if n := bucketKeys(t, e, bucketJobs); n != 0 {
		t.Errorf("%d jobs in the file, want none", n)
	}
	if n := bucketKeys(t, e, bucketExpiries); n != 200 {
		t.Errorf("%d delivery ids in the file, want 200", n)
	}
	if n := bucketKeys(t, e, bucketDeliveries); n != 0 {
		t.Errorf("%d delivery ids in the bucket by id, want none: memory has them", n)
	}
	// 200 jobs of 24 KB would be 4.8 MB.
	if size := fileSize(t, path); size > 1<<20 {
		t.Errorf("the file is %d bytes after 200 jobs acked before their checkpoint", size)
	}
	if _, err := e.Enqueue(context.Background(), bigJob("a-7")); !errors.Is(err, ErrDuplicate) {
		t.Errorf("Enqueue of a checkpointed delivery id: %v, want ErrDuplicate", err)
	}
}

// A delivery id is a duplicate while only the journal holds it, and after
// its checkpoint.
func TestJournaledDeliveryIsADuplicate(t *testing.T) {
	e := openTest(t, filepath.Join(t.TempDir(), "queue.db"), Options{}, heldTuning())
	ctx := context.Background()
	if _, err := e.Enqueue(ctx, Job{DeliveryID: "x"}); err != nil {
		t.Fatal(err)
	}
	if seen, err := e.Seen(ctx, "x"); err != nil || !seen {
		t.Errorf("Seen(x) before the checkpoint = %v, %v", seen, err)
	}
	if _, err := e.Enqueue(ctx, Job{DeliveryID: "x"}); !errors.Is(err, ErrDuplicate) {
		t.Errorf("second Enqueue before the checkpoint: %v, want ErrDuplicate", err)
	}
	syncAcks(t, e)
	if n := bucketKeys(t, e, bucketJobs); n != 1 {
		t.Errorf("%d jobs in the file after the checkpoint, want 1", n)
	}
	if _, err := e.Enqueue(ctx, Job{DeliveryID: "x"}); !errors.Is(err, ErrDuplicate) {
		t.Errorf("Enqueue after the checkpoint: %v, want ErrDuplicate", err)
	}
	if seen, err := e.Seen(ctx, "x"); err != nil || !seen {
		t.Errorf("Seen(x) after the checkpoint = %v, %v", seen, err)
	}
}

// A nack and a dead letter of jobs that only the journal holds commit
// them with the checkpoint they trigger, and survive a restart.
func TestNackAndDeadLetterOfJournaledJobs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	opts := Options{MaxAttempts: 3, Backoff: func(int) time.Duration { return 0 }}
	e, err := openEmbedded(path, opts, heldTuning())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range []string{"retry", "dead"} {
		if _, err := e.Enqueue(ctx, Job{DeliveryID: id, Payload: []byte(`{"id":"` + id + `"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		l, err := e.Lease(ctx, "w", 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Nack(ctx, l, "no luck", l.Job.DeliveryID == "retry"); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openTest(t, path, opts, heldTuning())
	l, err := e.Lease(ctx, "w", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if l.Job.DeliveryID != "retry" || l.Job.Attempt != 2 || string(l.Job.Payload) != `{"id":"retry"}` {
		t.Errorf("after the restart leased %s attempt %d payload %s, want retry attempt 2", l.Job.DeliveryID, l.Job.Attempt, l.Job.Payload)
	}
	dead, err := e.Dead(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].Job.DeliveryID != "dead" || dead[0].Reason != "no luck" || string(dead[0].Job.Payload) != `{"id":"dead"}` {
		t.Errorf("dead letters %+v, want the job dead with its payload", dead)
	}
}

// A journal that cannot be written fails the Enqueue as unavailable
// (intake answers 503) and stores nothing; one that cannot be cut back to
// its last whole group takes no more Enqueues, and says to restart.
func TestJournalWriteFailure(t *testing.T) {
	e := openTest(t, filepath.Join(t.TempDir(), "queue.db"), Options{}, heldTuning())
	ctx := context.Background()
	if _, err := e.Enqueue(ctx, Job{DeliveryID: "ok"}); err != nil {
		t.Fatal(err)
	}
	e.journalMu.Lock()
	e.journal.files[e.journal.cur].Close()
	e.journalMu.Unlock()
	_, err := e.Enqueue(ctx, Job{DeliveryID: "lost"})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Enqueue on a broken journal: %v, want ErrUnavailable", err)
	}
	_, err = e.Enqueue(ctx, Job{DeliveryID: "after"})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "restart the bot") {
		t.Errorf("Enqueue after the journal could not be cut back: %v, want ErrUnavailable saying to restart", err)
	}
	st, err := e.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Ready != 1 {
		t.Errorf("%d jobs ready, want only the one stored before the failure", st.Ready)
	}
	for _, id := range []string{"lost", "after"} {
		if seen, _ := e.Seen(ctx, id); seen {
			t.Errorf("delivery %s counts as seen after its Enqueue failed", id)
		}
	}
}

// While the workers keep up, jobs are journaled uncompressed and the
// checkpoint compresses the ones it writes; with a backlog of ready jobs,
// Enqueue compresses before journaling. Either way the job comes back as
// it went in, from memory and from the file.
func TestJournalCompressesOnlyABacklog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	e := openTest(t, path, Options{}, heldTuning())
	ctx := context.Background()
	payload := func(i int) []byte { return []byte(strings.Repeat(fmt.Sprintf(`{"n":%d},`, i), 300)) }
	const n = backlogJobs + 10
	for i := range n {
		if _, err := e.Enqueue(ctx, Job{DeliveryID: fmt.Sprint("b-", i), Payload: payload(i)}); err != nil {
			t.Fatal(err)
		}
	}
	e.mu.Lock()
	first, last := e.pending[1], e.pending[n]
	e.mu.Unlock()
	if first == nil || last == nil {
		t.Fatal("the jobs are not pending before their checkpoint")
	}
	if first.job == nil || bytes.Contains(first.val, []byte(`"z":"s2"`)) {
		t.Error("the first job, with no backlog, was compressed before journaling")
	}
	if last.job != nil || !bytes.Contains(last.val, []byte(`"z":"s2"`)) {
		t.Error("the last job, behind a backlog, was journaled uncompressed")
	}
	leaseAllOf := func(e *Embedded, when string) {
		for range n {
			l, err := e.Lease(ctx, "w", 0)
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			var i int
			fmt.Sscanf(l.Job.DeliveryID, "b-%d", &i)
			if !bytes.Equal(l.Job.Payload, payload(i)) {
				t.Errorf("%s: job %s came back with another payload", when, l.Job.DeliveryID)
			}
		}
	}
	// Nothing commits while the leases are held: every job comes from
	// memory.
	leaseAllOf(e, "from memory")
	syncAcks(t, e)
	var stored int
	if err := e.view(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketJobs)).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if bytes.Contains(v, []byte(`"z":"s2"`)) {
				stored++
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if stored != n {
		t.Errorf("%d of %d jobs compressed in the file", stored, n)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	leaseAllOf(openTest(t, path, Options{}, heldTuning()), "from the file")
}

// writeAt writes every buffer in order from its offset, however many
// there are (more than one pwritev takes) and whatever their sizes, empty
// ones included, over what the file held there.
func TestWriteAtWritesEveryBufferInOrder(t *testing.T) {
	var bufs [][]byte
	var want []byte
	for i := range 3*iovMax + 7 {
		b := []byte(strings.Repeat(string(rune('a'+i%26)), i%5))
		bufs = append(bufs, b)
		want = append(want, b...)
	}
	path := filepath.Join(t.TempDir(), "w")
	old := bytes.Repeat([]byte("-"), 5+len(want)+9)
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := writeAt(f, bufs, 5); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want = append(append([]byte("-----"), want...), "---------"...)
	if !bytes.Equal(got, want) {
		t.Errorf("the file holds %d bytes, want %d, or they differ", len(got), len(want))
	}
}

// A job served from the journal comes with the outline intake gave it, and
// its own copy of the payload; so does one read back from the file.
func TestJournaledJobKeepsItsOutline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	e := openTest(t, path, crashCheckpointOptions(), heldTuning())
	ctx := context.Background()
	payload := []byte(`{"a":1,"b":[2]}`)
	if _, err := e.Enqueue(ctx, Job{DeliveryID: "o", Payload: payload, Outline: []int32{6, 14}}); err != nil {
		t.Fatal(err)
	}
	payload[2] = 'X' // intake reuses its buffer
	l, err := e.Lease(ctx, "w", 0)
	if err != nil {
		t.Fatal(err)
	}
	if string(l.Job.Payload) != `{"a":1,"b":[2]}` || !slices.Equal(l.Job.Outline, []int32{6, 14}) {
		t.Errorf("leased from the journal: payload %s, outline %v", l.Job.Payload, l.Job.Outline)
	}
	// The nack checkpoints the job; the next lease reads the file.
	if err := e.Nack(ctx, l, "again", true); err != nil {
		t.Fatal(err)
	}
	if l, err = e.Lease(ctx, "w", time.Second); err != nil {
		t.Fatal(err)
	}
	if string(l.Job.Payload) != `{"a":1,"b":[2]}` || !slices.Equal(l.Job.Outline, []int32{6, 14}) {
		t.Errorf("leased from the file: payload %s, outline %v", l.Job.Payload, l.Job.Outline)
	}
}
