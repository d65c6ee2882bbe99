package queue

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
)

// Embedded is the single-process queue: jobs live in a bbolt file, and the
// queue's state (what is ready, leased, delayed) is rebuilt in memory from
// it on open. Memory is the authority while the process runs, which keeps
// Lease free of disk writes; the file is the authority across restarts.
//
// Every Enqueue is durable before it returns: concurrent ones share one
// append to the intake journal and one fdatasync, and reach the bbolt file
// at the next checkpoint (see embedded_journal.go). Every Nack and
// ClaimRedelivery is committed (fsync) before it returns; concurrent ones
// share one commit, which is also a checkpoint. A lease is recorded by
// appending (job id, attempt) to a small log next to the file with a plain
// write, no fsync: it survives the death of the process, which is what
// attempt counting has to survive (a job that crashes its worker must not
// loop forever), while costing microseconds instead of a commit. A machine
// crash can lose the record of the last leases; those jobs then get one
// more attempt than MaxAttempts, which at-least-once allows. An Ack is
// recorded the same way, and the deletes of acked jobs ride the next
// commit without anyone waiting for it; a machine crash can bring the
// last acked jobs back, to run again.
//
// Acknowledged jobs are deleted, delivery ids are forgotten after the
// dedupe window, and dead letters are capped; bbolt reuses the pages they
// free but never gives them back, so a backlog would leave the file at its
// largest for good (and the freelist's bookkeeping grows with it). When more
// than half of the file is free, a background compaction copies what is live
// into a new file and swaps it in; see compact.
type Embedded struct {
	// db is replaced only by a compaction, which holds commitMu and dbMu
	// for it: the committer reads it under commitMu, everyone else through
	// view, under dbMu.
	db      *bolt.DB
	dbMu    sync.RWMutex
	path    string
	opts    Options
	logPath string
	tune    embeddedTuning
	// forgetEvery paces deleting expired delivery ids; lookups check the
	// expiry themselves, so this only bounds the file's growth.
	forgetEvery time.Duration

	writes chan *writeReq
	kick   chan struct{}
	// appends feeds the appender; ckptKick tells the committer there are
	// jobs to checkpoint; appended is closed once the appender stopped.
	appends  chan *enqueueReq
	ckptKick chan struct{}
	appended chan struct{}

	// journalMu is held by the appender for a whole group (the duplicate
	// checks, the append and registering the jobs) and by a commit to
	// rotate the journal's files, so that a rotation never splits a group.
	journalMu sync.Mutex
	journal   *journal
	// nextID is the last job id handed out (under journalMu).
	nextID uint64
	done   chan struct{}
	wg     sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	log       *os.File
	logSize   int64
	compactAt int64
	jobs      map[uint64]*entry
	// acked holds the jobs acked whose delete is not committed yet; their
	// ack marks must survive a rewrite of the lease log until it is.
	// ackQueue is the part the committer has not taken yet.
	acked    map[uint64]struct{}
	ackQueue []uint64
	ackKick  chan struct{}
	leased   map[uint64]*entry // leased and expired
	// pending holds the jobs journaled and not yet checkpointed, by id
	// and in id order: they are served from here until the file has them.
	pending      map[uint64]*journalRec
	pendingOrder []*journalRec
	pendingBytes int
	// seen is every delivery id remembered, journaled or in the file,
	// with its expiry: intake and Seen de-duplicate from it alone.
	seen        deliverySet
	ready       fifo
	reclaim     fifo // expired leases, served before ready so they are not starved
	delayed     delayHeap
	waiters     []chan struct{}
	clockWakeAt time.Time
	tokenSeq    uint64
	stats       Stats
	// readyHint is stats.Ready, for Enqueue to read without mu.
	readyHint atomic.Int64

	// commitMu is held for each commit; a compaction holds it to swap the
	// set of touched keys and, briefly, to catch up and swap files.
	commitMu sync.Mutex
	// tracking: a compaction is copying the file, and every commit adds
	// the keys it changed to touched (touchKey form).
	tracking bool
	touched  map[string]struct{}

	// compactMu makes compactions one at a time.
	compactMu   sync.Mutex
	lastCompact compactionReport

	// groupSize counts the writes per commit (op "commit") and the
	// Enqueues per journal append (op "journal"); commitTime is each
	// commit's time on disk, fsyncs included.
	groupSize  *prometheus.HistogramVec
	commitTime prometheus.Histogram
}

// embeddedTuning holds what tests and benchmarks change; OpenEmbedded uses
// defaultTuning.
type embeddedTuning struct {
	// compactEvery paces the check for free space.
	compactEvery time.Duration
	// compactMin: smaller files are never compacted, whatever is free.
	compactMin int64
	// chunkBytes bounds one copy transaction, so the copy never holds a
	// read transaction of the live file for long (a long one would stall a
	// commit that has to grow the mmap, and pin freed pages).
	chunkBytes int
	// checkpointDelay and checkpointBytes bound how long, and how many
	// bytes of, journaled jobs wait in memory for a commit to write them
	// to the file.
	checkpointDelay time.Duration
	checkpointBytes int
	// ackDelay: see committer.
	ackDelay time.Duration
	// hook, when set, is called at each step of a compaction and of a
	// checkpoint: the crash tests exit the process there.
	hook func(step string)
}

func defaultTuning() embeddedTuning {
	return embeddedTuning{
		compactEvery: 2 * time.Second,
		compactMin:   32 << 20,
		chunkBytes:   4 << 20,
		// At full intake rate a checkpoint every 8 MB is several a
		// second; at 1,000 deliveries/s, every 50 ms carries 50 jobs,
		// most of them acked already.
		checkpointDelay: 50 * time.Millisecond,
		checkpointBytes: 8 << 20,
		ackDelay:        ackDelay,
	}
}

// compactionReport describes the last compaction, for benchmarks.
type compactionReport struct {
	At time.Time
	// Before and After are the file's sizes in bytes.
	Before, After int64
	// Took is the whole compaction; Paused is the part during which
	// commits waited: the last catch-up, the rename and the directory
	// fsync.
	Took, Paused time.Duration
	// Rounds counts the catch-up passes before the paused one.
	Rounds int
	Err    error
}

var _ Queue = (*Embedded)(nil)

type entryState uint8

const (
	stateGone entryState = iota
	stateReady
	stateLeased
	// stateExpired: the lease ran out but nobody reclaimed the job yet;
	// its holder may still Ack, Nack or Extend it.
	stateExpired
	stateDelayed
)

type entry struct {
	id      uint64
	n       int // leases started, the current one included
	state   entryState
	token   string
	expires time.Time
	readyAt time.Time
}

const (
	bucketJobs = "jobs"
	bucketDead = "dead"
	// bucketDeliveries is empty: it held every delivery id by id until the
	// ids moved to memory (see deliverySet). Opening a file that still has
	// them empties it; it stays so that an older version can open the file.
	bucketDeliveries   = "deliveries"
	bucketRedeliveries = "redeliveries"
	// bucketExpiries holds both kinds of delivery ids by expiry: the only
	// copy in the file of a delivery id, and the order in which the
	// expired ones are forgotten without scanning every id ever seen.
	bucketExpiries = "expiries"
)

// buckets is every bucket of the file, in a fixed order: a touched key
// names its bucket by its index here.
var buckets = [...]string{bucketJobs, bucketDead, bucketDeliveries, bucketRedeliveries, bucketExpiries}

func bucketIndex(name string) byte {
	for i, b := range buckets {
		if b == name {
			return byte(i)
		}
	}
	panic("queue: unknown bucket " + name)
}

const (
	kindDelivery   = 'd'
	kindRedelivery = 'r'
	// jobHeaderLen: attempts used (uint32), ready-at unix ns (int64).
	jobHeaderLen = 12
	// deadHeaderLen: died unix ns, job id, attempts, reason length.
	deadHeaderLen = 8 + 8 + 4 + 4
	markLen       = 12
	// ackMark in a lease log record's attempt field says the job was
	// acked: opening the file deletes it if its delete was not committed.
	ackMark      = math.MaxUint32
	minCompactAt = 1 << 20
	// maxBatch bounds one commit so a burst cannot hold the writer long.
	maxBatch = 512
	// ackDelay and ackBatch bound how long, and how many, acked jobs'
	// deletes wait for another write's commit to ride (see committer).
	ackDelay = 25 * time.Millisecond
	ackBatch = 256
	// backlogJobs: with this many jobs ready and waiting for a worker, an
	// Enqueue compresses its job before journaling it (see Enqueue).
	backlogJobs = 1024
	// forgetRound bounds the expired delivery ids one commit deletes.
	forgetRound = 10000
)

// OpenEmbedded opens (creating it if needed) the queue file at path, plus
// path+".leases" and the intake journal, path+".journal0" and
// path+".journal1". Jobs that a previous process had leased are ready at
// once: that process is gone.
func OpenEmbedded(path string, opts Options) (*Embedded, error) {
	return openEmbedded(path, opts, defaultTuning())
}

func openEmbedded(path string, opts Options, tune embeddedTuning) (*Embedded, error) {
	opts = opts.withDefaults()
	db, err := bolt.Open(path, 0o600, boltOptions())
	if err != nil {
		return nil, fmt.Errorf("queue: open %s: %w: %w", path, ErrUnavailable, err)
	}
	// A compaction that died before its rename leaves its copy behind;
	// the file at path is the complete one. Removed only now that the
	// lock is ours: the copy of a live process is not ours to delete.
	if err := os.Remove(compactPath(path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		db.Close()
		return nil, fmt.Errorf("queue: remove the unfinished compaction %s: %w: %w", compactPath(path), ErrUnavailable, err)
	}
	e := &Embedded{
		db:          db,
		path:        path,
		tune:        tune,
		opts:        opts,
		logPath:     path + ".leases",
		forgetEvery: min(max(opts.DedupeWindow/2, time.Second), 10*time.Minute),
		writes:      make(chan *writeReq),
		kick:        make(chan struct{}, 1),
		done:        make(chan struct{}),
		appends:     make(chan *enqueueReq),
		ckptKick:    make(chan struct{}, 1),
		appended:    make(chan struct{}),
		jobs:        make(map[uint64]*entry),
		pending:     make(map[uint64]*journalRec),
		seen:        newDeliverySet(),
		acked:       make(map[uint64]struct{}),
		ackKick:     make(chan struct{}, 1),
		leased:      make(map[uint64]*entry),
		compactAt:   minCompactAt,
		tokenSeq:    uint64(time.Now().UnixNano()), // tokens of an earlier process never match
		groupSize:   newGroupSizeHistogram(),
		commitTime:  newCommitTimeHistogram(),
	}
	if err := e.recover(); err != nil {
		e.seen.free()
		db.Close()
		if e.log != nil {
			e.log.Close()
		}
		return nil, err
	}
	e.wg.Add(4)
	go e.appender()
	go e.committer()
	go e.clock()
	go e.compactor()
	return e, nil
}

// boltOptions are the live file's and its compacted copy's.
//
// The hashmap freelist finds a run of free pages for a 24 KB job in
// constant time; the default array scans the whole list, which is what
// made a file with a large free area slow. NoFreelistSync stops writing
// the freelist at every commit (with a big free area that write was
// megabytes per commit); bbolt rebuilds it by walking the tree when it
// opens the file, which takes a moment for a file with a large backlog
// and nothing for a compacted one. The timeout turns a second process on
// the same file into an error instead of a hang on the file lock.
func boltOptions() *bolt.Options {
	return &bolt.Options{
		Timeout:        time.Second,
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true,
	}
}

func compactPath(path string) string { return path + ".compact" }

// recover applies the lease log to the file, loads the jobs, and starts a
// fresh log.
func (e *Embedded) recover() error {
	marks, err := os.ReadFile(e.logPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("queue: read lease log: %w: %w", ErrUnavailable, err)
	}
	err = e.db.Update(func(tx *bolt.Tx) error {
		for _, name := range buckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return err
			}
		}
		// A file from before the ids moved to memory: the expiries bucket
		// has every one of them too.
		if k, _ := tx.Bucket([]byte(bucketDeliveries)).Cursor().First(); k != nil {
			if err := tx.DeleteBucket([]byte(bucketDeliveries)); err != nil {
				return err
			}
			if _, err := tx.CreateBucket([]byte(bucketDeliveries)); err != nil {
				return err
			}
		}
		jobs := tx.Bucket([]byte(bucketJobs))
		// The journal first: the lease log's attempts and acks may be
		// about jobs that only the journal holds.
		recs, err := readJournals(journalPaths(e.path), jobs.Sequence())
		if err != nil {
			return err
		}
		w := &wtx{tx: tx}
		for i := range recs {
			if err := checkpointRec(w, &recs[i], false); err != nil {
				return err
			}
		}
		if len(recs) > 0 {
			if err := jobs.SetSequence(recs[len(recs)-1].id); err != nil {
				return err
			}
		}
		e.nextID = jobs.Sequence()
		// A torn last record (the process died mid-write) is ignored.
		for ; len(marks) >= markLen; marks = marks[markLen:] {
			k := marks[:8]
			n := binary.BigEndian.Uint32(marks[8:markLen])
			v := jobs.Get(k)
			if len(v) < jobHeaderLen {
				continue
			}
			if n == ackMark {
				if err := jobs.Delete(bytes.Clone(k)); err != nil {
					return err
				}
				continue
			}
			if binary.BigEndian.Uint32(v) >= n {
				continue
			}
			nv := bytes.Clone(v)
			binary.BigEndian.PutUint32(nv, n)
			if err := jobs.Put(bytes.Clone(k), nv); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: recover: %w: %w", ErrUnavailable, err)
	}
	now := time.Now()
	err = e.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketJobs)).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) != 8 || len(v) < jobHeaderLen {
				continue
			}
			ent := &entry{id: binary.BigEndian.Uint64(k), n: int(binary.BigEndian.Uint32(v))}
			e.jobs[ent.id] = ent
			if at := int64(binary.BigEndian.Uint64(v[4:])); at > now.UnixNano() {
				ent.readyAt = unixTime(at)
				e.setState(ent, stateDelayed)
				heap.Push(&e.delayed, delayItem{at: ent.readyAt, ent: ent})
			} else {
				e.setState(ent, stateReady)
				e.ready.push(ent)
			}
		}
		e.stats.Dead = int64(tx.Bucket([]byte(bucketDead)).Stats().KeyN)
		c = tx.Bucket([]byte(bucketExpiries)).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) > 9 && k[8] == kindDelivery {
				if exp := int64(binary.BigEndian.Uint64(k)); exp > now.UnixNano() {
					e.seen.put(k[9:], exp)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: load: %w: %w", ErrUnavailable, err)
	}
	e.log, err = os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("queue: open lease log: %w: %w", ErrUnavailable, err)
	}
	if e.journal, err = openJournal(e.path); err != nil {
		return fmt.Errorf("queue: %w: %w", ErrUnavailable, err)
	}
	return nil
}

func (e *Embedded) Enqueue(ctx context.Context, job Job) (Job, error) {
	if err := validateJob(job); err != nil {
		return Job{}, err
	}
	if err := ctx.Err(); err != nil {
		return Job{}, err
	}
	now := time.Now()
	job.ID, job.Attempt = "", 0
	job.EnqueuedAt = unixTime(now.UnixNano())
	req := &enqueueReq{
		rec: journalRec{
			key:     []byte(job.DeliveryID),
			expires: now.Add(e.opts.DedupeWindow).UnixNano(),
		},
		now:  now.UnixNano(),
		done: make(chan error, 1),
	}
	if e.readyHint.Load() < backlogJobs {
		// Journaled uncompressed: while the workers keep up, most jobs are
		// acked before their checkpoint and never stored anywhere else, so
		// compressing them would be CPU spent for nothing; the checkpoint
		// compresses the ones it writes. The payload is copied once, out
		// of intake's buffer, and that copy is what the journal writes and
		// Lease hands out.
		meta := job
		meta.Payload = nil
		req.rec.val = appendRecord(make([]byte, jobHeaderLen, jobHeaderLen+256), meta, "") // header zero: no attempts, ready now
		req.rec.job, req.rec.payload = &meta, bytes.Clone(job.Payload)
	} else {
		// A backlog: this job will be checkpointed, so it is compressed
		// once, now, and the journal writes a third of the bytes.
		req.rec.val = appendJob(make([]byte, jobHeaderLen), job)
	}
	select {
	case e.appends <- req:
	case <-e.done:
		return Job{}, e.fail("enqueue", errClosed)
	}
	// Not abandoned on a cancelled context: the caller must learn whether
	// the job was stored.
	if err := <-req.done; err != nil {
		return Job{}, e.fail("enqueue", err)
	}
	if req.dup {
		return Job{}, fmt.Errorf("%w: %s", ErrDuplicate, job.DeliveryID)
	}
	job.ID = strconv.FormatUint(req.rec.id, 10)
	return job, nil
}

type enqueueReq struct {
	rec  journalRec
	now  int64
	dup  bool
	done chan error
}

// appender is the intake's group commit: it takes every Enqueue waiting
// when the previous append finished and journals them together, so
// concurrent deliveries share one write and one fdatasync, and a lone one
// never waits for company.
func (e *Embedded) appender() {
	defer e.wg.Done()
	defer close(e.appended)
	batch := make([]*enqueueReq, 0, maxBatch)
	for {
		batch = batch[:0]
		select {
		case r := <-e.appends:
			batch = append(batch, r)
		case <-e.done:
			return
		}
		batch = gather(batch, e.appends)
		err := e.appendGroup(batch)
		for _, r := range batch {
			r.done <- err
		}
	}
}

// appendGroup de-duplicates the group, journals its new jobs and makes
// them ready.
func (e *Embedded) appendGroup(batch []*enqueueReq) error {
	e.journalMu.Lock()
	defer e.journalMu.Unlock()
	if e.journal.err != nil {
		return e.journal.err
	}
	// A delivery id is a duplicate of one remembered, or of an earlier one
	// in the group.
	var fresh map[string]struct{}
	if len(batch) > 1 {
		fresh = make(map[string]struct{}, len(batch))
	}
	e.mu.Lock()
	for _, r := range batch {
		r.dup, r.rec.id = false, 0
		if e.seen.holds(r.rec.key, r.now) {
			r.dup = true
			continue
		}
		if fresh != nil {
			if _, ok := fresh[string(r.rec.key)]; ok {
				r.dup = true
				continue
			}
			fresh[string(r.rec.key)] = struct{}{}
		}
	}
	e.mu.Unlock()
	j := e.journal
	first, n := e.nextID, 0
	for _, r := range batch {
		if r.dup {
			continue
		}
		n++
		r.rec.id = first + uint64(n)
		j.stage(&r.rec)
	}
	if n == 0 {
		return nil
	}
	e.groupSize.WithLabelValues("journal").Observe(float64(n))
	if err := j.append(); err != nil {
		return err
	}
	e.nextID = first + uint64(n)

	e.mu.Lock()
	for _, r := range batch {
		if r.dup {
			continue
		}
		rec := &r.rec
		e.pending[rec.id] = rec
		e.pendingOrder = append(e.pendingOrder, rec)
		e.seen.put(rec.key, rec.expires)
		e.pendingBytes += rec.size()
		if !e.closed {
			ent := &entry{id: rec.id}
			e.jobs[rec.id] = ent
			e.setState(ent, stateReady)
			e.ready.push(ent)
			e.signal()
		}
	}
	e.mu.Unlock()
	select {
	case e.ckptKick <- struct{}{}:
	default:
	}
	return nil
}

// checkpointRec writes a journaled job to the file: its delivery id, and
// the job itself, compressed, unless it was acked already.
func checkpointRec(w *wtx, r *journalRec, acked bool) error {
	if err := remember(w, kindDelivery, r.key, r.expires); err != nil {
		return err
	}
	if acked {
		return nil
	}
	val := r.val
	if r.job != nil {
		j := *r.job
		j.Payload = r.payload
		val = appendJob(make([]byte, jobHeaderLen, jobHeaderLen+256+len(j.Payload)/2), j) // header zero, as journaled
	}
	return w.put(bucketJobs, u64key(r.id), val)
}

// remember records a delivery id (kind d) or a redelivery claim (kind r)
// until expires. A delivery id goes only to the expiries bucket: seen has
// it in memory.
func remember(tx *wtx, kind byte, key []byte, expires int64) error {
	exp := u64key(uint64(expires))
	if kind == kindRedelivery {
		if err := tx.put(bucketRedeliveries, key, exp); err != nil {
			return err
		}
	}
	idx := make([]byte, 0, 9+len(key))
	idx = append(append(append(idx, exp...), kind), key...)
	return tx.put(bucketExpiries, idx, nil)
}

type leaseSnap struct {
	id    uint64
	n     int
	token string
}

type buried struct {
	id uint64
	n  int
}

func (e *Embedded) Lease(ctx context.Context, consumer string, wait time.Duration) (*Lease, error) {
	if consumer == "" {
		return nil, errors.New("queue: lease needs a consumer name")
	}
	deadline := time.Now().Add(wait)
	w := make(chan struct{}, 1)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	signaled := false
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return nil, e.fail("lease", errClosed)
		}
		if err := ctx.Err(); err != nil {
			if signaled {
				e.signal() // hand the wake-up we swallowed to another waiter
			}
			e.mu.Unlock()
			return nil, err
		}
		snap, dead, err := e.take(time.Now())
		if snap.id != 0 || len(dead) > 0 || err != nil {
			e.mu.Unlock()
			if berr := e.bury(dead, expiredReason); berr != nil && snap.id == 0 && err == nil {
				err = berr
			}
			if err != nil {
				return nil, err
			}
			if snap.id == 0 {
				signaled = false
				continue
			}
			return e.load(snap)
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			e.mu.Unlock()
			return nil, ErrEmpty
		}
		e.waiters = append(e.waiters, w)
		e.mu.Unlock()

		if timer == nil {
			timer = time.NewTimer(remaining)
		} else {
			timer.Reset(remaining)
		}
		signaled = false
		select {
		case <-w:
			signaled = true
		case <-timer.C:
		case <-ctx.Done():
		case <-e.done:
		}
		e.mu.Lock()
		if !signaled && !e.dropWaiter(w) {
			<-w // signal() picked us while we were leaving; it has already sent
			signaled = true
		}
		e.mu.Unlock()
	}
}

// take hands out the next job, reclaimed ones first, and records the lease
// in the log before anyone can see it. Jobs out of attempts are removed and
// returned in dead for the caller to bury outside the lock.
func (e *Embedded) take(now time.Time) (snap leaseSnap, dead []buried, err error) {
	for {
		q := &e.reclaim
		ent := q.pop()
		if ent != nil && ent.state != stateExpired {
			continue // acked, nacked or extended since it expired
		}
		if ent == nil {
			q = &e.ready
			if ent = q.pop(); ent == nil {
				return leaseSnap{}, dead, nil
			}
			if ent.state != stateReady {
				continue
			}
		}
		if ent.n >= e.opts.MaxAttempts {
			dead = append(dead, buried{id: ent.id, n: ent.n})
			e.remove(ent)
			continue
		}
		if err := e.markLease(ent.id, uint32(ent.n+1)); err != nil {
			q.pushFront(ent)
			return leaseSnap{}, dead, e.fail("record lease", err)
		}
		ent.n++
		if e.logSize >= e.compactAt {
			e.compactLog() // after n++: the rewrite must carry this lease
		}
		e.tokenSeq++
		ent.token = strconv.FormatUint(ent.id, 10) + "." + strconv.FormatUint(e.tokenSeq, 10)
		ent.expires = now.Add(e.opts.VisibilityTimeout)
		e.setState(ent, stateLeased)
		e.leased[ent.id] = ent
		e.wakeClockBy(ent.expires)
		return leaseSnap{id: ent.id, n: ent.n, token: ent.token}, dead, nil
	}
}

// load reads the leased job's record; the lease already counts, so on an
// error the job comes back after the visibility timeout like any other.
func (e *Embedded) load(s leaseSnap) (*Lease, error) {
	var job Job
	e.mu.Lock()
	rec := e.pending[s.id]
	e.mu.Unlock()
	var err error
	switch {
	case rec != nil && rec.job != nil:
		// Journaled uncompressed and not checkpointed yet: the job as
		// Enqueue kept it. Its payload is shared, not copied; nothing
		// changes it (Lease's contract).
		job = *rec.job
		job.Payload = rec.payload
	case rec != nil:
		// Not checkpointed yet; the record is never changed, only dropped
		// from pending once the file has it.
		job, err = decodeJob(rec.val[jobHeaderLen:])
	default:
		err = e.view(func(tx *bolt.Tx) error {
			v := tx.Bucket([]byte(bucketJobs)).Get(u64key(s.id))
			if len(v) < jobHeaderLen {
				return fmt.Errorf("queue: job %d has no record", s.id)
			}
			job, err = decodeJob(v[jobHeaderLen:])
			return err
		})
	}
	if err != nil {
		return nil, e.fail("lease", err)
	}
	job.ID = strconv.FormatUint(s.id, 10)
	job.Attempt = s.n
	return &Lease{Job: job, Token: s.token}, nil
}

func (e *Embedded) markLease(id uint64, n uint32) error {
	var rec [markLen]byte
	binary.BigEndian.PutUint64(rec[:8], id)
	binary.BigEndian.PutUint32(rec[8:], n)
	if _, err := e.log.Write(rec[:]); err != nil {
		return err
	}
	e.logSize += markLen
	return nil
}

// compactLog replaces the log by one holding only the attempts of jobs
// still in the queue. The rename is atomic, so a crash leaves either log,
// and both are complete. On failure the old log stays, still complete, and
// the rewrite is tried again after it doubled.
func (e *Embedded) compactLog() {
	buf := make([]byte, 0, markLen*64)
	for id, ent := range e.jobs {
		if ent.n > 0 {
			buf = binary.BigEndian.AppendUint64(buf, id)
			buf = binary.BigEndian.AppendUint32(buf, uint32(ent.n))
		}
	}
	for id := range e.acked {
		buf = binary.BigEndian.AppendUint64(buf, id)
		buf = binary.BigEndian.AppendUint32(buf, ackMark)
	}
	e.compactAt = max(minCompactAt, 2*int64(len(buf)), 2*e.logSize)
	tmp := e.logPath + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	if _, err := f.Write(buf); err != nil {
		f.Close()
		os.Remove(tmp)
		return
	}
	if err := os.Rename(tmp, e.logPath); err != nil {
		f.Close()
		os.Remove(tmp)
		return
	}
	e.log.Close()
	e.log, e.logSize = f, int64(len(buf))
	e.compactAt = max(minCompactAt, 2*e.logSize)
}

func (e *Embedded) Extend(ctx context.Context, l *Lease) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	ent, err := e.held(l)
	if err != nil {
		return err
	}
	ent.expires = time.Now().Add(e.opts.VisibilityTimeout)
	e.setState(ent, stateLeased)
	return nil
}

func (e *Embedded) Ack(ctx context.Context, l *Lease) error {
	e.mu.Lock()
	ent, err := e.held(l)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	id := ent.id
	e.remove(ent)
	// Like a lease, an ack is a record in the log, and its delete joins
	// the next commit without being waited for: a worker acking goes back
	// to Lease at once instead of waiting for a commit, which under heavy
	// intake carries hundreds of payloads. A dead process's acks are
	// applied when the file opens; a machine crash can lose the last ones,
	// and those jobs run again, which at-least-once allows.
	if err := e.markLease(id, ackMark); err != nil {
		e.mu.Unlock()
		// Should the commit fail too, the job is gone from memory but not
		// from the file: it runs again after a restart.
		err = e.commit(func(tx *wtx) error { return tx.del(bucketJobs, u64key(id)) })
		return e.fail("ack", err)
	}
	e.acked[id] = struct{}{}
	e.ackQueue = append(e.ackQueue, id)
	if e.logSize >= e.compactAt {
		e.compactLog()
	}
	e.mu.Unlock()
	select {
	case e.ackKick <- struct{}{}:
	default:
	}
	return nil
}

// acksQueued is how many acked jobs' deletes wait for a commit.
func (e *Embedded) acksQueued() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.ackQueue)
}

// takeAcks returns a write deleting the acked jobs not committed yet, nil
// when there are none.
func (e *Embedded) takeAcks() *writeReq {
	e.mu.Lock()
	ids := e.ackQueue
	e.ackQueue = nil
	e.mu.Unlock()
	if len(ids) == 0 {
		return nil
	}
	return &writeReq{
		fn: func(tx *wtx) error {
			for _, id := range ids {
				if err := tx.del(bucketJobs, u64key(id)); err != nil {
					return err
				}
			}
			return nil
		},
		done: make(chan error, 1),
		acks: ids,
	}
}

// ackCommitted forgets the acks of r once their delete is on disk; after a
// failure they wait for the next commit (their marks keep them meanwhile).
func (e *Embedded) ackCommitted(r *writeReq) {
	err := <-r.done
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		e.ackQueue = append(e.ackQueue, r.acks...)
		return
	}
	for _, id := range r.acks {
		delete(e.acked, id)
	}
}

func (e *Embedded) Nack(ctx context.Context, l *Lease, reason string, retry bool) error {
	e.mu.Lock()
	ent, err := e.held(l)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	id, n := ent.id, ent.n
	if !retry || n >= e.opts.MaxAttempts {
		if retry {
			reason = exhaustedReason(reason)
		}
		e.remove(ent)
		e.mu.Unlock()
		return e.bury([]buried{{id: id, n: n}}, reason)
	}
	readyAt := time.Now().Add(e.opts.backoff(n))
	ent.token = ""
	ent.readyAt = readyAt
	delete(e.leased, id)
	e.setState(ent, stateDelayed)
	heap.Push(&e.delayed, delayItem{at: readyAt, ent: ent})
	e.wakeClockBy(readyAt)
	e.mu.Unlock()

	err = e.commit(func(tx *wtx) error {
		v := tx.get(bucketJobs, u64key(id))
		if len(v) < jobHeaderLen {
			return nil // acked or buried meanwhile; do not bring it back
		}
		nv := bytes.Clone(v)
		binary.BigEndian.PutUint32(nv, uint32(n))
		binary.BigEndian.PutUint64(nv[4:], uint64(readyAt.UnixNano()))
		return tx.put(bucketJobs, u64key(id), nv)
	})
	return e.fail("nack", err)
}

// bury moves jobs from the jobs bucket to the dead letters, dropping the
// oldest beyond DeadLetterCap. Dead-letter keys are consecutive sequence
// numbers, so the one to drop is known without counting.
func (e *Embedded) bury(jobs []buried, reason string) error {
	if len(jobs) == 0 {
		return nil
	}
	now := time.Now().UnixNano()
	var added int64
	err := e.commit(func(tx *wtx) error {
		added = 0
		dead := tx.bucket(bucketDead)
		for _, j := range jobs {
			k := u64key(j.id)
			v := tx.get(bucketJobs, k)
			if len(v) < jobHeaderLen {
				continue
			}
			rec := make([]byte, deadHeaderLen, deadHeaderLen+len(reason)+len(v)-jobHeaderLen)
			binary.BigEndian.PutUint64(rec, uint64(now))
			binary.BigEndian.PutUint64(rec[8:], j.id)
			binary.BigEndian.PutUint32(rec[16:], uint32(j.n))
			binary.BigEndian.PutUint32(rec[20:], uint32(len(reason)))
			rec = append(append(rec, reason...), v[jobHeaderLen:]...)
			seq, err := dead.NextSequence()
			if err != nil {
				return err
			}
			if err := tx.put(bucketDead, u64key(seq), rec); err != nil {
				return err
			}
			if seq > DeadLetterCap {
				if err := tx.del(bucketDead, u64key(seq-DeadLetterCap)); err != nil {
					return err
				}
			}
			if err := tx.del(bucketJobs, k); err != nil {
				return err
			}
			added++
		}
		return nil
	})
	if err != nil {
		return e.fail("dead-letter", err)
	}
	e.mu.Lock()
	e.stats.Dead = min(e.stats.Dead+added, DeadLetterCap)
	e.mu.Unlock()
	return nil
}

// held finds the entry l still holds. An expired lease is still held
// until someone reclaims the job, as in Redis.
func (e *Embedded) held(l *Lease) (*entry, error) {
	idStr, _, _ := strings.Cut(l.Token, ".")
	id, err := strconv.ParseUint(idStr, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("queue: malformed lease token %q", l.Token)
	}
	if e.closed {
		return nil, e.fail("settle lease", errClosed)
	}
	ent := e.jobs[id]
	if ent == nil || ent.token != l.Token || (ent.state != stateLeased && ent.state != stateExpired) {
		return nil, ErrLeaseLost
	}
	return ent, nil
}

func (e *Embedded) Seen(ctx context.Context, deliveryID string) (bool, error) {
	now := time.Now().UnixNano()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false, e.fail("seen", errClosed)
	}
	return e.seen.holds([]byte(deliveryID), now), nil
}

func (e *Embedded) ClaimRedelivery(ctx context.Context, deliveryID string) (bool, error) {
	if deliveryID == "" || len(deliveryID) > maxDeliveryIDLen {
		return false, fmt.Errorf("queue: claim redelivery: bad delivery id %q", deliveryID)
	}
	now := time.Now()
	key := []byte(deliveryID)
	var claimed bool
	err := e.commit(func(tx *wtx) error {
		claimed = false
		if v := tx.get(bucketRedeliveries, key); len(v) == 8 && int64(binary.BigEndian.Uint64(v)) > now.UnixNano() {
			return nil
		}
		claimed = true
		return remember(tx, kindRedelivery, key, now.Add(e.opts.DedupeWindow).UnixNano())
	})
	if err != nil {
		return false, e.fail("claim redelivery", err)
	}
	return claimed, nil
}

func (e *Embedded) ReleaseRedelivery(ctx context.Context, deliveryID string) error {
	// The expiry index entry stays behind; the sweep deletes a marker only
	// when it still carries that expiry, so a stale index entry is harmless.
	err := e.commit(func(tx *wtx) error {
		return tx.del(bucketRedeliveries, []byte(deliveryID))
	})
	return e.fail("release redelivery", err)
}

func (e *Embedded) Stats(ctx context.Context) (Stats, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return Stats{}, e.fail("stats", errClosed)
	}
	return e.stats, nil
}

func (e *Embedded) Dead(ctx context.Context, n int) ([]DeadJob, error) {
	var out []DeadJob
	err := e.view(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketDead)).Cursor()
		for k, v := c.Last(); k != nil && len(out) < n; k, v = c.Prev() {
			if len(v) < deadHeaderLen {
				continue
			}
			rl := int(binary.BigEndian.Uint32(v[20:]))
			if len(v) < deadHeaderLen+rl {
				continue
			}
			job, err := decodeJob(v[deadHeaderLen+rl:])
			if err != nil {
				return err
			}
			job.ID = strconv.FormatUint(binary.BigEndian.Uint64(v[8:]), 10)
			job.Attempt = int(binary.BigEndian.Uint32(v[16:]))
			out = append(out, DeadJob{
				Job:    job,
				Reason: string(v[deadHeaderLen : deadHeaderLen+rl]),
				DiedAt: unixTime(int64(binary.BigEndian.Uint64(v))),
			})
		}
		return nil
	})
	if err != nil {
		return nil, e.fail("dead", err)
	}
	return out, nil
}

func (e *Embedded) Ping(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return e.fail("ping", errClosed)
	}
	return nil
}

// Close waits for the commits in flight, then releases the file lock.
// Leases still held count as used attempts when the file is opened again.
func (e *Embedded) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	close(e.done)
	e.wg.Wait()
	// Nothing touches seen once closed is set and the appender and the
	// clock are gone.
	e.mu.Lock()
	e.seen.free()
	e.mu.Unlock()
	// A compaction called by a test, outside the compactor, may still run.
	e.compactMu.Lock()
	defer e.compactMu.Unlock()
	err := e.db.Close()
	return errors.Join(err, e.log.Close(), e.journal.close())
}

// setState moves ent between the Stats counters.
func (e *Embedded) setState(ent *entry, s entryState) {
	e.count(ent.state, -1)
	ent.state = s
	e.count(s, 1)
}

func (e *Embedded) count(s entryState, d int64) {
	switch s {
	case stateReady:
		e.stats.Ready += d
		e.readyHint.Store(e.stats.Ready)
	case stateLeased, stateExpired:
		e.stats.Leased += d
	case stateDelayed:
		e.stats.Delayed += d
	}
}

func (e *Embedded) remove(ent *entry) {
	e.setState(ent, stateGone)
	ent.token = ""
	delete(e.jobs, ent.id)
	delete(e.leased, ent.id)
}

// signal wakes one waiting Lease: one ready job, one wake-up.
func (e *Embedded) signal() {
	if len(e.waiters) == 0 {
		return
	}
	w := e.waiters[0]
	copy(e.waiters, e.waiters[1:])
	e.waiters[len(e.waiters)-1] = nil
	e.waiters = e.waiters[:len(e.waiters)-1]
	w <- struct{}{}
}

func (e *Embedded) dropWaiter(w chan struct{}) bool {
	for i, x := range e.waiters {
		if x == w {
			e.waiters = append(e.waiters[:i], e.waiters[i+1:]...)
			return true
		}
	}
	return false
}

// wakeClockBy makes sure the clock wakes up no later than t.
func (e *Embedded) wakeClockBy(t time.Time) {
	if !e.clockWakeAt.IsZero() && !t.Before(e.clockWakeAt) {
		return
	}
	e.clockWakeAt = t
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// clock owns time: it makes delayed jobs ready and expired leases
// reclaimable when they are due, and forgets expired delivery ids, so that
// Lease only ever waits for a signal.
func (e *Embedded) clock() {
	defer e.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	forgetAt := time.Now().Add(e.forgetEvery)
	for {
		now := time.Now()
		if !now.Before(forgetAt) {
			// Best effort: a failure leaves the ids to the next round. A
			// round that found more than it may delete has the next one
			// follow at once, after the tick.
			forgetAt = now.Add(e.forgetEvery)
			if more, _ := e.forgetExpired(now); more {
				forgetAt = now
			}
		}
		e.mu.Lock()
		next := e.tick(now)
		if next.IsZero() || forgetAt.Before(next) {
			next = forgetAt
		}
		e.clockWakeAt = next
		e.mu.Unlock()
		timer.Reset(time.Until(next))
		select {
		case <-timer.C:
		case <-e.kick:
		case <-e.done:
			return
		}
	}
}

// tick returns when it next has something to do, zero for nothing.
func (e *Embedded) tick(now time.Time) time.Time {
	var next time.Time
	for len(e.delayed) > 0 {
		it := e.delayed[0]
		if it.ent.state != stateDelayed || !it.ent.readyAt.Equal(it.at) {
			heap.Pop(&e.delayed)
			continue
		}
		if it.at.After(now) {
			next = it.at
			break
		}
		heap.Pop(&e.delayed)
		e.setState(it.ent, stateReady)
		e.ready.push(it.ent)
		e.signal()
	}
	for _, ent := range e.leased {
		if ent.state != stateLeased {
			continue
		}
		if !ent.expires.After(now) {
			e.setState(ent, stateExpired)
			e.reclaim.push(ent)
			e.signal()
			continue
		}
		if next.IsZero() || ent.expires.Before(next) {
			next = ent.expires
		}
	}
	return next
}

// forgetExpired deletes delivery ids and redelivery claims past the dedupe
// window, from the file and from seen, at most forgetRound of them, so
// that no commit grows large; more says there may be others.
func (e *Embedded) forgetExpired(now time.Time) (more bool, err error) {
	var forgotten [][]byte // expiry index keys of delivery ids
	n := 0
	err = e.commit(func(tx *wtx) error {
		forgotten, n = forgotten[:0], 0
		var keys [][]byte
		c := tx.bucket(bucketExpiries).Cursor()
		for k, _ := c.First(); k != nil && len(keys) < forgetRound; k, _ = c.Next() {
			if len(k) < 9 || int64(binary.BigEndian.Uint64(k)) > now.UnixNano() {
				break
			}
			keys = append(keys, bytes.Clone(k))
		}
		n = len(keys)
		for _, k := range keys {
			if k[8] == kindDelivery {
				forgotten = append(forgotten, k)
			} else if v := tx.get(bucketRedeliveries, k[9:]); bytes.Equal(v, k[:8]) {
				// Unless claimed again since, with a later expiry and its
				// own index key.
				if err := tx.del(bucketRedeliveries, k[9:]); err != nil {
					return err
				}
			}
			if err := tx.del(bucketExpiries, k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	e.mu.Lock()
	for _, k := range forgotten {
		e.seen.forget(k[9:], int64(binary.BigEndian.Uint64(k)))
	}
	e.mu.Unlock()
	return n == forgetRound, nil
}

type writeReq struct {
	fn   func(*wtx) error
	done chan error
	// acks: the jobs whose delete this is, for a write made by takeAcks.
	acks []uint64
}

// wtx is a write transaction that notes the keys it changes while a
// compaction is copying the file, so that the copy can catch up with them.
// Every write of the queue goes through put and del.
type wtx struct {
	tx *bolt.Tx
	// touched is nil when no compaction is under way.
	touched *[]string
}

func (w *wtx) bucket(name string) *bolt.Bucket { return w.tx.Bucket([]byte(name)) }

func (w *wtx) get(bucket string, key []byte) []byte { return w.bucket(bucket).Get(key) }

func (w *wtx) put(bucket string, key, val []byte) error {
	w.touch(bucket, key)
	return w.bucket(bucket).Put(key, val)
}

func (w *wtx) del(bucket string, key []byte) error {
	w.touch(bucket, key)
	return w.bucket(bucket).Delete(key)
}

func (w *wtx) touch(bucket string, key []byte) {
	if w.touched != nil {
		*w.touched = append(*w.touched, touchKey(bucket, key))
	}
}

// touchKey names one key of one bucket in a string, the set's key type.
func touchKey(bucket string, key []byte) string {
	return string(bucketIndex(bucket)) + string(key)
}

// commit runs fn in a write transaction and returns once it is on disk.
// fn may run more than once, so it must reset what it reports.
func (e *Embedded) commit(fn func(*wtx) error) error {
	req := &writeReq{fn: fn, done: make(chan error, 1)}
	select {
	case e.writes <- req:
	case <-e.done:
		return errClosed
	}
	// Not abandoned on a cancelled context: the caller must learn whether
	// the write happened.
	return <-req.done
}

// committer is the group commit: it takes every write waiting when the
// previous commit finished and commits them together, so concurrent writers
// share one fsync and a lone writer never waits for company. bbolt's own
// Batch would hold a lone write for MaxBatchDelay (10ms by default), far
// beyond the latency a webhook acknowledgement can afford.
//
// Acked jobs' deletes ride the next commit of someone's write. Alone they
// wait up to ackDelay for one (or until ackBatch of them are queued): each
// commit is two fsyncs, and at 1,000 deliveries/s a commit per ack made
// 1,700 commits a second, the next delivery's fsync waiting behind an ack's.
// Nothing waits for these deletes (the lease log already holds the acks).
func (e *Embedded) committer() {
	defer e.wg.Done()
	batch := make([]*writeReq, 0, maxBatch+1)
	// flushTimer holds back a commit that only acks and journaled jobs
	// would make (see ackDelay and checkpointDelay).
	flushTimer := time.NewTimer(time.Hour)
	flushTimer.Stop()
	var flushDue <-chan time.Time
	holdFor := func(d time.Duration) {
		if flushDue == nil {
			flushTimer.Reset(d)
			flushDue = flushTimer.C
		}
	}
	for {
		batch = batch[:0]
		closing := false
		select {
		case r := <-e.writes:
			batch = append(batch, r)
		case <-e.ackKick:
			if e.acksQueued() < ackBatch {
				holdFor(e.tune.ackDelay)
				continue
			}
		case <-e.ckptKick:
			if e.pendingQueued() < e.tune.checkpointBytes {
				holdFor(e.tune.checkpointDelay)
				continue
			}
		case <-flushDue:
			flushDue = nil
		case <-e.done:
			// Acks still queued are in the log, and journaled jobs in the
			// journal; writing them to the file now spares the next open
			// the work. The appender's last group comes first.
			<-e.appended
			closing = true
		}
		if !closing {
			batch = gather(batch, e.writes)
		}
		acks := e.takeAcks()
		if acks != nil {
			batch = append(batch, acks)
		}
		if len(batch) > 0 || e.pendingQueued() > 0 {
			if flushDue != nil {
				flushTimer.Stop()
				flushDue = nil
			}
			e.commitBatch(batch)
			if acks != nil {
				e.ackCommitted(acks)
			}
		}
		if closing {
			return
		}
	}
}

// commitBatch commits the writes of batch, after a checkpoint (which is
// all it commits when batch is empty), and tells each writer the outcome.
func (e *Embedded) commitBatch(batch []*writeReq) {
	start := time.Now()
	err := e.update(batch)
	e.commitTime.Observe(time.Since(start).Seconds())
	e.groupSize.WithLabelValues("commit").Observe(float64(len(batch)))
	if err != nil && len(batch) > 1 {
		// One bad write must not fail its neighbours: retry alone.
		for _, r := range batch {
			r.done <- e.update([]*writeReq{r})
		}
		return
	}
	for _, r := range batch {
		r.done <- err
	}
}

// gather appends to batch the requests waiting on ch, up to maxBatch in
// all, without waiting for more.
func gather[T any](batch []T, ch <-chan T) []T {
	for len(batch) < maxBatch {
		select {
		case r := <-ch:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// pendingQueued is how many bytes of journaled jobs wait for a checkpoint.
func (e *Embedded) pendingQueued() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pendingBytes
}

// update commits the batch in one transaction, after a checkpoint of every
// job journaled so far: a write that reads a job (a nack, a dead letter)
// finds it in the file. It holds commitMu, so a compaction sees every
// commit either before or after it takes the set of touched keys, never
// half-way.
func (e *Embedded) update(batch []*writeReq) error {
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	// Rotate first, so that once this commit is on disk the spare file
	// holds nothing the file lacks: the appender registers a group's jobs
	// in pending before it lets go of journalMu.
	e.journalMu.Lock()
	e.journal.rotate()
	e.journalMu.Unlock()
	e.mu.Lock()
	recs := slices.Clone(e.pendingOrder)
	acked := make([]bool, len(recs))
	for i, r := range recs {
		_, acked[i] = e.acked[r.id]
	}
	e.mu.Unlock()

	w := &wtx{}
	var touched []string
	if e.tracking {
		w.touched = &touched
	}
	err := e.db.Update(func(tx *bolt.Tx) error {
		w.tx, touched = tx, touched[:0]
		if len(recs) > 0 {
			for i, r := range recs {
				if err := checkpointRec(w, r, acked[i]); err != nil {
					return err
				}
			}
			jobs := w.bucket(bucketJobs)
			if last := recs[len(recs)-1].id; last > jobs.Sequence() {
				if err := jobs.SetSequence(last); err != nil {
					return err
				}
			}
			e.step("checkpoint")
		}
		for _, r := range batch {
			if err := r.fn(w); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if e.tracking {
		for _, k := range touched {
			e.touched[k] = struct{}{}
		}
	}
	if len(recs) > 0 {
		e.step("checkpointed")
		e.checkpointed(recs)
	}
	e.journalMu.Lock()
	e.journal.emptySpare()
	e.journalMu.Unlock()
	return nil
}

// checkpointed drops the jobs of recs, now in the file, from memory.
func (e *Embedded) checkpointed(recs []*journalRec) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range recs {
		delete(e.pending, r.id)
		e.pendingBytes -= r.size()
	}
	n := copy(e.pendingOrder, e.pendingOrder[len(recs):])
	clear(e.pendingOrder[n:])
	e.pendingOrder = e.pendingOrder[:n]
}

// view runs a read transaction on the current file; dbMu keeps a
// compaction from closing the file under it.
func (e *Embedded) view(fn func(*bolt.Tx) error) error {
	e.dbMu.RLock()
	defer e.dbMu.RUnlock()
	return e.db.View(fn)
}

// Compaction. bbolt never shrinks its file: a backlog of 100,000 jobs of
// 24 KB leaves 3 GB behind after the workers drain it. The copy runs
// beside the traffic: every commit from its start notes the keys it
// changed, the copy reads the live file in short transactions, then
// catches up with the changed keys, round after round, until few remain;
// only the last round, the rename and the directory fsync hold the
// commits back.
const (
	// compactMaxRounds bounds the catch-up rounds; when the changes still
	// outnumber compactPauseKeys after them, intake outruns the copy and
	// the compaction gives up until later rather than pause for long.
	compactMaxRounds = 8
	compactPauseKeys = 2048
	// compactRetryMax caps the back-off after a failed compaction (a full
	// disk, say).
	compactRetryMax = 10 * time.Minute
)

// errCompactBusy: intake changed keys faster than the copy caught up.
var errCompactBusy = errors.New("queue: compaction could not catch up with intake; it will try again")

// compactor checks, every compactEvery, whether half the file is free,
// and compacts it if so. A failure leaves the old file in use and backs
// off.
func (e *Embedded) compactor() {
	defer e.wg.Done()
	wait := e.tune.compactEvery
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
		case <-e.done:
			return
		}
		if !e.shouldCompact() {
			wait = e.tune.compactEvery
		} else if err := e.compact(); err != nil {
			wait = min(max(2*wait, e.tune.compactEvery), compactRetryMax)
		} else {
			wait = e.tune.compactEvery
		}
		timer.Reset(wait)
	}
}

// lastCompaction reports the last compaction, zero if none ran.
func (e *Embedded) lastCompaction() compactionReport {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastCompact
}

// shouldCompact: the file is big enough to bother and less than half of
// it holds live pages. The space past bbolt's high-water mark (it grows
// the file ahead of need) counts as free.
func (e *Embedded) shouldCompact() bool {
	fi, err := os.Stat(e.path)
	if err != nil || fi.Size() < e.tune.compactMin {
		return false
	}
	var used int64
	if e.view(func(tx *bolt.Tx) error { used = tx.Size(); return nil }) != nil {
		return false
	}
	e.dbMu.RLock()
	free := int64(e.db.Stats().FreeAlloc)
	e.dbMu.RUnlock()
	return 2*(used-free) < fi.Size()
}

// compact copies the live data into a new file and swaps it in. A crash
// at any step leaves a usable store: until the rename the file at path
// is the old one, complete, and the copy is removed when the store opens;
// the copy is fsynced, with every commit made before the rename, before
// the rename puts it at path.
func (e *Embedded) compact() (err error) {
	e.compactMu.Lock()
	defer e.compactMu.Unlock()
	rep := compactionReport{At: time.Now()}
	if fi, err := os.Stat(e.path); err == nil {
		rep.Before = fi.Size()
	}
	defer func() {
		rep.Took, rep.Err = time.Since(rep.At), err
		if fi, serr := os.Stat(e.path); serr == nil {
			rep.After = fi.Size()
		}
		e.mu.Lock()
		e.lastCompact = rep
		e.mu.Unlock()
	}()

	tmp := compactPath(e.path)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("queue: compaction: %w", err)
	}
	ndb, err := bolt.Open(tmp, 0o600, boltOptions())
	if err != nil {
		return fmt.Errorf("queue: compaction: %w", err)
	}
	// Nothing needs to reach the disk before the copy is complete: one
	// fsync at the end does.
	ndb.NoSync = true
	swapped := false
	e.setTracking(true)
	defer func() {
		e.setTracking(false)
		if !swapped {
			ndb.Close()
			os.Remove(tmp)
		}
	}()

	if err := e.copyAll(ndb); err != nil {
		return err
	}
	e.step("copied")
	// Each round applies what changed during the previous one and flushes
	// it, so the paused part has only the last short round to write.
	for {
		n, err := e.catchUp(ndb, e.takeTouched())
		if err != nil {
			return err
		}
		if err := ndb.Sync(); err != nil {
			return fmt.Errorf("queue: compaction: %w", err)
		}
		rep.Rounds++
		if n <= compactPauseKeys/16 || rep.Rounds >= compactMaxRounds {
			break
		}
	}
	e.step("synced")
	old, err := e.swapIn(ndb, tmp, &rep.Paused)
	if old == nil {
		return err
	}
	swapped = true
	e.step("swapped")
	return errors.Join(err, old.Close())
}

// swapIn is the paused part of a compaction: with the commits held back,
// it applies the last changes to ndb with an fsync, renames ndb's file
// over the live one, fsyncs the directory, and makes ndb the live file.
// It returns the old file (nil if it was not swapped).
func (e *Embedded) swapIn(ndb *bolt.DB, tmp string, paused *time.Duration) (*bolt.DB, error) {
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	start := time.Now()
	defer func() { *paused = time.Since(start) }()
	last := e.touched
	if len(last) > compactPauseKeys {
		return nil, errCompactBusy
	}
	e.tracking, e.touched = false, nil
	ndb.NoSync = false
	if _, err := e.catchUp(ndb, last); err != nil { // commits with fsync
		return nil, err
	}
	e.step("final")
	if err := os.Rename(tmp, e.path); err != nil {
		return nil, fmt.Errorf("queue: compaction: %w", err)
	}
	// From here the file at path is the copy: writes must go to it even if
	// the directory fsync fails.
	e.step("renamed")
	err := syncDir(filepath.Dir(e.path))
	e.dbMu.Lock()
	old := e.db
	e.db = ndb
	e.dbMu.Unlock()
	return old, err
}

func (e *Embedded) step(name string) {
	if e.tune.hook != nil {
		e.tune.hook(name)
	}
}

func (e *Embedded) setTracking(on bool) {
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	e.tracking, e.touched = on, nil
	if on {
		e.touched = make(map[string]struct{})
	}
}

// takeTouched hands over the keys changed since the last call and starts
// a new set. Values read after this include at least these changes; later
// ones land in the next set.
func (e *Embedded) takeTouched() map[string]struct{} {
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	t := e.touched
	e.touched = make(map[string]struct{})
	return t
}

// copyAll copies every bucket, a chunk per read transaction. The chunks
// are not one snapshot, but every key changed after tracking started is in
// the touched set, which catchUp applies afterwards.
func (e *Embedded) copyAll(ndb *bolt.DB) error {
	err := ndb.Update(func(tx *bolt.Tx) error {
		for _, name := range buckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: compaction: %w", err)
	}
	for _, name := range buckets {
		var after []byte
		for more := true; more; {
			select {
			case <-e.done:
				return errClosed
			default:
			}
			if after, more, err = e.copyChunk(ndb, name, after); err != nil {
				return fmt.Errorf("queue: compaction: copy %s: %w", name, err)
			}
			// Flushed chunk by chunk: one fsync of the whole copy would
			// hold the disk, and the commits' fsyncs behind it, for long.
			if err := ndb.Sync(); err != nil {
				return fmt.Errorf("queue: compaction: %w", err)
			}
		}
	}
	return nil
}

// copyChunk copies about chunkBytes of bucket name from the key after
// "after" on (from the first key when after is nil), and returns the last
// key copied and whether any remain.
func (e *Embedded) copyChunk(ndb *bolt.DB, name string, after []byte) (last []byte, more bool, err error) {
	err = e.view(func(otx *bolt.Tx) error {
		return ndb.Update(func(ntx *bolt.Tx) error {
			c := otx.Bucket([]byte(name)).Cursor()
			nb := ntx.Bucket([]byte(name))
			// Keys arrive in order: full pages, as a fresh copy can have.
			nb.FillPercent = 1
			k, v := c.First()
			if after != nil {
				if k, v = c.Seek(after); bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			size := 0
			for ; k != nil && size < e.tune.chunkBytes; k, v = c.Next() {
				// Both point into the live file's mmap, valid until its
				// read transaction ends, which is after this commit.
				if err := nb.Put(k, v); err != nil {
					return err
				}
				size += len(k) + len(v)
				last = k
			}
			more = k != nil
			last = bytes.Clone(last)
			return nil
		})
	})
	return last, more, err
}

// catchUp copies the current value of every touched key into ndb (or
// deletes it there), and the buckets' sequences, in transactions of about
// chunkBytes. It returns how many keys it applied.
func (e *Embedded) catchUp(ndb *bolt.DB, touched map[string]struct{}) (int, error) {
	keys := make([]string, 0, len(touched))
	for k := range touched {
		keys = append(keys, k)
	}
	n := len(keys)
	// Sorted, the writes into ndb go page by page.
	slices.Sort(keys)
	for len(keys) > 0 || touched != nil {
		touched = nil // one pass for the sequences even with no keys
		err := e.view(func(otx *bolt.Tx) error {
			return ndb.Update(func(ntx *bolt.Tx) error {
				size := 0
				for len(keys) > 0 && size < e.tune.chunkBytes {
					k := keys[0]
					keys = keys[1:]
					name := []byte(buckets[k[0]])
					key := []byte(k[1:])
					nb := ntx.Bucket(name)
					// A cursor, not Get: an expiry index key has an
					// empty value, which must not read as absent.
					k2, v := otx.Bucket(name).Cursor().Seek(key)
					if !bytes.Equal(k2, key) {
						if err := nb.Delete(key); err != nil {
							return err
						}
						continue
					}
					if err := nb.Put(key, v); err != nil {
						return err
					}
					size += len(key) + len(v)
				}
				for _, name := range buckets {
					seq := otx.Bucket([]byte(name)).Sequence()
					if err := ntx.Bucket([]byte(name)).SetSequence(seq); err != nil {
						return err
					}
				}
				return nil
			})
		})
		if err != nil {
			return 0, fmt.Errorf("queue: compaction: catch up: %w", err)
		}
	}
	return n, nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// errClosed is what a closed Embedded reports, as unavailable: to intake,
// a queue shutting down is a store it cannot reach.
var errClosed = errors.New("queue: closed")

func (e *Embedded) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("queue: embedded %s: %w: %w", op, ErrUnavailable, err)
}

func u64key(v uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v)
}

// fifo is a queue of entries that may hold stale ones; takers check state.
type fifo struct {
	items []*entry
	head  int
}

func (q *fifo) push(x *entry) { q.items = append(q.items, x) }

func (q *fifo) pushFront(x *entry) {
	if q.head > 0 {
		q.head--
		q.items[q.head] = x
		return
	}
	q.items = append([]*entry{x}, q.items...)
}

func (q *fifo) pop() *entry {
	if q.head == len(q.items) {
		return nil
	}
	x := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	switch {
	case q.head == len(q.items):
		q.items, q.head = q.items[:0], 0
	case q.head > 1024 && q.head*2 > len(q.items):
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return x
}

type delayItem struct {
	at  time.Time
	ent *entry
}

type delayHeap []delayItem

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h delayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)        { *h = append(*h, x.(delayItem)) }
func (h *delayHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = delayItem{}
	*h = old[:len(old)-1]
	return x
}
