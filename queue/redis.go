package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Redis keeps jobs in a Redis Stream read through one consumer group, so
// any number of processes can share the queue. A job's state is spread over
// these keys under "<prefix>:queue:":
//
//	jobs              stream; ready entries and, in the group's pending list, leased ones
//	delayed           zset of job ids scored by the unix ms they become ready
//	delayed:jobs      hash job id -> encoded job, for the delayed ones
//	delayed:attempts  hash job id -> attempts used so far, for the delayed ones
//	dead              stream of dead letters, capped at DeadLetterCap
//	delivery:<id>     dedupe marker, expires after DedupeWindow
//	redelivery:<id>   ClaimRedelivery marker, expires after DedupeWindow
//
// A stream entry carries the encoded job, as one blob ("j", appendJob) or
// as its meta line ("m", appendJob of the job without its payload) and its
// payload ("p") apart, so that m followed by p is the blob. Enqueue writes
// m and p since issue #17, so the payload goes from the caller's buffer to
// Redis without being copied into a blob; Lease reads both forms, and the
// scripts join m and p into a blob for retries and dead letters (fields).
// Once a job went round a retry, its entry also carries the job's original
// id ("id") and the attempts used before it was re-added ("n"). The job's
// attempt is n plus the entry's delivery count in the pending list, which
// XREADGROUP sets to 1 and every reclaim (XCLAIM) increments, so a worker
// that dies mid-job spends an attempt too.
type Redis struct {
	client    *redis.Client
	ownClient bool
	opts      Options
	group     string

	stream, delayed, delayedJobs, delayedAttempts, dead string
	deliveryPrefix, redeliveryPrefix                    string

	scripts redisScripts

	// sweepEvery paces the reclaim/promote sweep, which is a scan, off the
	// hot path; blockChunk bounds each blocking read so a blocked Lease
	// still sweeps on time and notices a cancelled context (go-redis does
	// not interrupt a read when the context is cancelled).
	sweepEvery, blockChunk time.Duration
	// nextSweep is unix ns; Lease callers race for it with CAS so one
	// process sweeps once per interval however many workers it runs.
	nextSweep atomic.Int64

	// Concurrent calls of this process share round trips (issue #17):
	// enqueues go out as one script call, leases as one pipeline of reads,
	// acks and extends as one script call.
	enqueues  *batcher[enqueueCall, string]
	settles   *batcher[settleCall, bool]
	leases    *leaser
	groupSize *prometheus.HistogramVec
}

var _ Queue = (*Redis)(nil)

const (
	redisGroup = "workers"
	// A group is at most groupMaxJobs calls or groupMaxBytes of arguments
	// (one call larger than that goes alone): about 290 deliveries of
	// 7 KB compressed, more than groupMaxJobs; the script call keeps Redis
	// busy for a few milliseconds at most, serving no one else.
	groupMaxJobs  = 128
	groupMaxBytes = 2 << 20
	// groupMaxWait is the longest a group waits behind the round trips in
	// flight before another one goes out beside them, up to groupMaxSends
	// at once.
	groupMaxWait  = 200 * time.Microsecond
	groupMaxSends = 4
	// promoteLimit and scanLimit bound one sweep's work inside Redis, where
	// a long script blocks every other client.
	promoteLimit = 100
	scanLimit    = 32
)

// NewRedis builds a queue on client under prefix. It does not talk to Redis:
// the consumer group is created on first use, and again if someone deleted
// the stream, so a process can start while Redis is down and answer 503
// until it is back. The caller keeps ownership of client.
func NewRedis(client *redis.Client, prefix string, opts Options) (*Redis, error) {
	if client == nil {
		return nil, errors.New("queue: NewRedis needs a client")
	}
	if prefix == "" {
		return nil, errors.New("queue: NewRedis needs a key prefix")
	}
	opts = opts.withDefaults()
	base := prefix + ":queue:"
	sweep := min(max(opts.VisibilityTimeout/4, 5*time.Millisecond), 250*time.Millisecond)
	r := &Redis{
		client:           client,
		opts:             opts,
		group:            redisGroup,
		stream:           base + "jobs",
		delayed:          base + "delayed",
		delayedJobs:      base + "delayed:jobs",
		delayedAttempts:  base + "delayed:attempts",
		dead:             base + "dead",
		deliveryPrefix:   base + "delivery:",
		redeliveryPrefix: base + "redelivery:",
		scripts:          newRedisScripts(),
		sweepEvery:       sweep,
		blockChunk:       min(sweep, 100*time.Millisecond),
		groupSize:        newGroupSizeHistogram(),
	}
	enq, set := r.groupSize.WithLabelValues("enqueue"), r.groupSize.WithLabelValues("settle")
	r.enqueues = newBatcher(groupMaxJobs, groupMaxBytes, groupMaxSends, groupMaxWait,
		func(n int) { enq.Observe(float64(n)) }, r.sendEnqueues)
	r.settles = newBatcher(groupMaxJobs, groupMaxBytes, groupMaxSends, groupMaxWait,
		func(n int) { set.Observe(float64(n)) }, r.sendSettles)
	r.leases = &leaser{r: r, observe: r.groupSize.WithLabelValues("lease")}
	return r, nil
}

// OpenRedis connects to url (redis:// or rediss://), checks that the server
// answers and creates the consumer group. Close closes the connection.
func OpenRedis(ctx context.Context, url, prefix string, opts Options) (*Redis, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("queue: REDIS_URL: %w", err)
	}
	client := redis.NewClient(o)
	r, err := NewRedis(client, prefix, opts)
	if err != nil {
		client.Close()
		return nil, err
	}
	r.ownClient = true
	if err := r.ensureGroup(ctx); err != nil {
		client.Close()
		return nil, err
	}
	return r, nil
}

// Enqueue joins the next group of enqueues (see batcher). The payload goes
// to Redis as an argument of its own, straight from job.Payload: the caller
// is held until the group's reply is in, so nothing reads the buffer after
// Enqueue returns, and no copy of it is made.
func (r *Redis) Enqueue(ctx context.Context, job Job) (Job, error) {
	if err := validateJob(job); err != nil {
		return Job{}, err
	}
	job.ID, job.Attempt = "", 0
	job.EnqueuedAt = unixTime(time.Now().UnixNano())
	head := job
	head.Payload = nil
	var id string
	var err error
	withCompressed(job.Payload, func(payload []byte, z string) {
		c := enqueueCall{marker: r.deliveryPrefix + job.DeliveryID, meta: appendRecord(nil, head, z), payload: payload}
		// do returns once the group's round trip is over (or before it
		// took this call), so nothing reads the payload after it.
		id, err = r.enqueues.do(ctx, c, len(c.marker)+len(c.meta)+len(c.payload))
	})
	if errors.Is(err, ErrDuplicate) {
		return Job{}, fmt.Errorf("%w: %s", ErrDuplicate, job.DeliveryID)
	}
	if err != nil {
		return Job{}, r.fail("enqueue", err)
	}
	job.ID = id
	return job, nil
}

type enqueueCall struct {
	marker        string
	meta, payload []byte
}

// sendEnqueues stores a group in one round trip: one call of enqueueLua,
// which for each delivery sets its marker unless it exists and, if it set
// it, adds the job to the stream. The dedupe and the store are one atomic
// step, so of concurrent duplicates (in this group, in another process's)
// exactly one is stored.
//
// Every argument of a script becomes a Lua string, a copy Redis makes
// twice (into Lua and back into the XADD): for a 24 KB raw payload that
// cost Redis about 45 µs a job, which is why groups went as WATCH + MGET
// then MULTI/EXEC, two round trips. Payloads are compressed now (about
// 7 KB for a 24 KB push), and one run of the side-by-side harness measured
// the script against those two round trips: Redis +10 µs a delivery, the
// bot −7 µs, the same throughput, and p99 at 1,000 req/s 1.33–1.39 ms
// instead of 1.66–2.0 ms.
//
// A failed round trip fails the whole group. A call whose reply was lost
// may have stored the group; a caller that saw an error for a delivery
// that was stored gets ErrDuplicate when GitHub sends it again, which
// intake acknowledges.
func (r *Redis) sendEnqueues(calls []*call[enqueueCall, string]) {
	keys := make([]string, 0, len(calls)+1)
	keys = append(keys, r.stream)
	args := make([]any, 0, 2*len(calls)+1)
	args = append(args, r.opts.DedupeWindow.Milliseconds())
	for _, c := range calls {
		keys = append(keys, c.in.marker)
		args = append(args, c.in.meta, c.in.payload)
	}
	res, err := r.scripts.enqueue.Run(context.Background(), r.client, keys, args...).Slice()
	if err == nil && len(res) != len(calls) {
		err = fmt.Errorf("queue: enqueue script answered %d results for %d jobs", len(res), len(calls))
	}
	for i, c := range calls {
		switch {
		case err != nil:
			c.out, c.err = "", err
		case res[i] == nil: // the marker was there: a duplicate
			c.err = ErrDuplicate
		default:
			id, ok := res[i].(string)
			if !ok {
				c.err = fmt.Errorf("queue: enqueue script answered %v for a job, not a stream entry id", res[i])
			}
			c.out = id
		}
	}
}

// Lease waits in rounds of at most 100ms, so a cancelled ctx is noticed
// within that and the sweep runs on time; a new job wakes it at once either
// way. The reads themselves are the leaser's, shared by every Lease call of
// this process.
func (r *Redis) Lease(ctx context.Context, consumer string, wait time.Duration) (*Lease, error) {
	if consumer == "" {
		return nil, errors.New("queue: lease needs a consumer name")
	}
	deadline := time.Now().Add(wait)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// Reclaims go first so that a steady stream of new jobs cannot
		// starve the jobs of a crashed worker.
		if r.sweepDue() {
			l, err := r.sweep(ctx, consumer)
			if err != nil || l != nil {
				return l, err
			}
		}
		until := time.Now().Add(r.blockChunk)
		if deadline.Before(until) {
			until = deadline
		}
		if d, ok := ctx.Deadline(); ok && d.Before(until) {
			until = d
		}
		// Its errors say already what failed.
		l, err := r.leases.next(ctx, consumer, until)
		if err != nil && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil || l != nil {
			return l, err
		}
		if time.Until(deadline) < time.Millisecond {
			return nil, ErrEmpty
		}
	}
}

func (r *Redis) sweepDue() bool {
	now := time.Now().UnixNano()
	next := r.nextSweep.Load()
	return now >= next && r.nextSweep.CompareAndSwap(next, now+int64(r.sweepEvery))
}

// leaser serves the Lease calls of one process with as few reads as it
// can: the calls waiting when a round starts are read for together, one
// XREADGROUP COUNT 1 per call's consumer in one pipeline, so a backlog
// drains at a round trip per group instead of per job, and every lease is
// still in its own consumer's pending list. It reads only for calls that
// are waiting, never ahead of them: a job read for nobody would sit leased
// until its visibility timeout. When a round finds the stream empty, one
// blocking read, for the call that waits longest, stands for all of them:
// whatever wakes it may be there for the others too, so the next round
// reads for them at once.
//
// Like the batcher's senders, its one reading goroutine runs only while
// calls wait.
type leaser struct {
	r       *Redis
	observe prometheus.Observer

	mu      sync.Mutex
	waiting []*leaseCall
	running bool
	// blocking: the reader is in a blocking read, so the stream had nothing
	// for anyone when it started.
	blocking bool
	// more: the last read found a job for every call it read for, so the
	// stream may hold more.
	more   bool
	closed bool
	wg     sync.WaitGroup
}

// A leaseCall is one round of one Lease call: it ends with a lease, an
// error, or nothing when until passes. The fields below done are guarded by
// leaser.mu.
type leaseCall struct {
	consumer string
	until    time.Time
	done     chan struct{}

	state leaseState
	// tried: the call was part of a read, so giving up at until loses it
	// nothing.
	tried bool
	// leaving: its caller gave up during a read; the read's result still
	// goes to it, since a lease read for it is in its consumer's name.
	leaving bool
	e       *readEntry
	err     error
}

// result is what the call's Lease returns: the job read for it, decoded
// in the caller's goroutine (see readEntry), or the read's error.
func (c *leaseCall) result() (*Lease, error) {
	if c.e == nil {
		return nil, c.err
	}
	return c.e.lease()
}

type leaseState int

const (
	leaseWaiting leaseState = iota
	leaseReading
	leaseGone
)

// next waits for a lease for consumer until until; nil, nil means none.
func (g *leaser) next(ctx context.Context, consumer string, until time.Time) (*Lease, error) {
	c := &leaseCall{consumer: consumer, until: until, done: make(chan struct{})}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil, g.r.fail("lease", errGroupClosed)
	}
	g.waiting = append(g.waiting, c)
	if !g.running {
		g.running = true
		g.wg.Add(1)
		go g.run()
	}
	g.mu.Unlock()

	timer := time.NewTimer(time.Until(until))
	defer timer.Stop()
	select {
	case <-c.done:
		return c.result()
	case <-ctx.Done():
	case <-timer.C:
	}
	g.mu.Lock()
	// A call never read for leaves on its own only while the reader
	// blocks: the stream was empty when that read began. Otherwise the
	// round under way may have found jobs, and the next one reads for it.
	if c.state == leaseWaiting && (c.tried || g.blocking || ctx.Err() != nil) {
		c.state = leaseGone
		g.mu.Unlock()
		return nil, nil
	}
	c.leaving = true
	g.mu.Unlock()
	<-c.done
	return c.result()
}

func (g *leaser) run() {
	defer g.wg.Done()
	for {
		g.mu.Lock()
		now := time.Now()
		live := g.waiting[:0]
		var untried []*leaseCall
		for _, c := range g.waiting {
			switch {
			case c.state == leaseGone:
			case c.tried && !now.Before(c.until):
				g.finishLocked(c, nil, nil)
			default:
				live = append(live, c)
				if !c.tried {
					untried = append(untried, c)
				}
			}
		}
		clear(g.waiting[len(live):])
		g.waiting = live
		if len(live) == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		// After a read that found a job for everyone, read for everyone
		// again; otherwise the stream was empty, and only calls that came
		// since need a read.
		group := untried
		if g.more {
			group = live
		}
		if len(group) > 1 {
			group = slices.Clone(group[:min(len(group), groupMaxJobs)])
			for _, c := range group {
				c.state, c.tried = leaseReading, true
			}
			g.waiting = slices.DeleteFunc(g.waiting, func(c *leaseCall) bool { return c.state == leaseReading })
			g.mu.Unlock()
			g.observe.Observe(float64(len(group)))
			g.readGroup(group)
			continue
		}
		// One blocking read stands for everyone: for the one call that
		// needs a read, or else for the call that waits longest.
		c := live[0]
		if len(group) == 1 {
			c = group[0]
		} else {
			for _, o := range live[1:] {
				if o.until.After(c.until) {
					c = o
				}
			}
		}
		c.state, c.tried = leaseReading, true
		g.waiting = slices.DeleteFunc(g.waiting, func(o *leaseCall) bool { return o == c })
		g.blocking = true
		g.mu.Unlock()
		g.observe.Observe(1)
		e, err := g.r.read(c.consumer, time.Until(c.until))
		g.mu.Lock()
		g.blocking = false
		g.more = e != nil
		g.finishLocked(c, e, err)
		g.mu.Unlock()
	}
}

// close ends the calls waiting and waits for the read under way.
func (g *leaser) close() {
	g.mu.Lock()
	g.closed = true
	for _, c := range g.waiting {
		if c.state == leaseWaiting {
			g.finishLocked(c, nil, g.r.fail("lease", errGroupClosed))
		}
	}
	g.waiting = nil
	g.mu.Unlock()
	g.wg.Wait()
}

func (g *leaser) finishLocked(c *leaseCall, e *readEntry, err error) {
	c.state, c.e, c.err = leaseGone, e, err
	close(c.done)
}

// readGroup reads one entry for each call's consumer in one pipeline. The
// calls it found nothing for wait on, unless their round is over.
func (g *leaser) readGroup(group []*leaseCall) {
	r := g.r
	ctx := context.Background()
	// Pipelined's own error is the first command's, redis.Nil included;
	// each command says for itself.
	cmds, _ := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range group {
			p.XReadGroup(ctx, r.readArgs(c.consumer, -1))
		}
		return nil
	})
	entries := make([]*readEntry, len(group))
	errs := make([]error, len(group))
	var regroup error
	for i, c := range group {
		cmd := cmds[i].(*redis.XStreamSliceCmd)
		if noGroup(cmd.Err()) {
			if regroup == nil {
				regroup = r.ensureGroup(ctx)
			}
			// With the group back, these calls wait for the next round.
			errs[i] = regroup
			continue
		}
		entries[i], errs[i] = r.entryFrom(cmd, c.consumer)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	served := 0
	now := time.Now()
	for i, c := range group {
		switch {
		case entries[i] != nil || errs[i] != nil:
			served++
			g.finishLocked(c, entries[i], errs[i])
		case c.leaving || !now.Before(c.until):
			g.finishLocked(c, nil, nil)
		case g.closed:
			g.finishLocked(c, nil, r.fail("lease", errGroupClosed))
		default:
			c.state = leaseWaiting
			g.waiting = append(g.waiting, c)
		}
	}
	g.more = served == len(group)
}

func (r *Redis) readArgs(consumer string, block time.Duration) *redis.XReadGroupArgs {
	args := &redis.XReadGroupArgs{
		Group:    r.group,
		Consumer: consumer,
		Streams:  []string{r.stream, ">"},
		Count:    1,
		Block:    -1, // -1 leaves BLOCK out; BLOCK 0 would wait forever.
	}
	if block >= time.Millisecond {
		args.Block = block
	}
	return args
}

// read takes one new entry for consumer, blocking up to block; XADD wakes
// it at once. Redis does not interrupt a blocking read when a context is
// cancelled, so none is passed: the block is the bound.
func (r *Redis) read(consumer string, block time.Duration) (*readEntry, error) {
	ctx := context.Background()
	cmd := r.client.XReadGroup(ctx, r.readArgs(consumer, block))
	if noGroup(cmd.Err()) {
		return nil, r.ensureGroup(ctx)
	}
	return r.entryFrom(cmd, consumer)
}

// readEntry is a stream entry read for a consumer and not yet decoded. One
// goroutine (the leaser's) reads for every Lease call of the process;
// decoding a job, its payload decompressed, is left to the goroutine of
// the call it was read for, so that the reads do not wait on one core's
// share of decoding: beside an intake that keeps the cores busy, one
// goroutine decoding for 64 workers held them back (bench/jobs.sh).
type readEntry struct {
	r        *Redis
	m        redis.XMessage
	consumer string
}

// entryFrom takes the entry of a one-entry XREADGROUP reply; nil when it
// had none.
func (r *Redis) entryFrom(cmd *redis.XStreamSliceCmd, consumer string) (*readEntry, error) {
	res, err := cmd.Result()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case err != nil:
		return nil, r.fail("lease", err)
	case len(res) == 0 || len(res[0].Messages) == 0:
		return nil, nil
	}
	return &readEntry{r: r, m: res[0].Messages[0], consumer: consumer}, nil
}

// lease decodes the entry's job into a lease. An entry that does not
// decode stays pending, like any lease never acked: it is reclaimed after
// the visibility timeout, and dead-lettered once its attempts are spent.
func (e *readEntry) lease() (*Lease, error) {
	m := e.m
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	n, _ := strconv.Atoi(str("n"))
	if _, old := m.Values["j"]; old {
		return e.r.lease(m.ID, str("id"), str("j"), n, 1, e.consumer)
	}
	meta, payload := str("m"), str("p")
	job, err := decodeParts([]byte(strings.TrimSuffix(meta, "\n")), []byte(payload))
	if err != nil {
		return nil, fmt.Errorf("queue: entry %s: %w", m.ID, err)
	}
	return e.r.leaseOf(m.ID, str("id"), job, n, 1, e.consumer), nil
}

// sweep makes due retries ready and reclaims one expired lease for
// consumer, dead-lettering the expired leases that were on their last
// attempt.
func (r *Redis) sweep(ctx context.Context, consumer string) (*Lease, error) {
	keys := []string{r.stream, r.delayed, r.delayedJobs, r.delayedAttempts, r.dead}
	res, err := r.withGroup(ctx, func() (any, error) {
		return r.scripts.sweep.Run(ctx, r.client, keys,
			r.group, consumer, r.opts.VisibilityTimeout.Milliseconds(), r.opts.MaxAttempts,
			DeadLetterCap, promoteLimit, scanLimit, expiredReason).Slice()
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, r.fail("sweep", err)
	}
	v := res.([]any)
	if more, _ := v[0].(int64); more == 1 || len(v) > 1 {
		// There may be more to promote or reclaim: sweep again on the next
		// Lease instead of waiting an interval.
		r.nextSweep.Store(0)
	}
	if len(v) < 6 {
		return nil, nil
	}
	eid, _ := v[1].(string)
	blob, _ := v[2].(string)
	id, _ := v[3].(string)
	n, _ := v[4].(int64)
	count, _ := v[5].(int64)
	return r.lease(eid, id, blob, int(n), int(count), consumer)
}

// lease builds the Lease for stream entry eid whose pending-list delivery
// count is count; the token pins entry, count and consumer, so a reclaim
// (which bumps the count) voids it even when the same consumer name took
// the job again.
func (r *Redis) lease(eid, id, blob string, n, count int, consumer string) (*Lease, error) {
	job, err := decodeJob([]byte(blob))
	if err != nil {
		return nil, fmt.Errorf("queue: entry %s: %w", eid, err)
	}
	return r.leaseOf(eid, id, job, n, count, consumer), nil
}

func (r *Redis) leaseOf(eid, id string, job Job, n, count int, consumer string) *Lease {
	if id == "" {
		id = eid
	}
	job.ID, job.Attempt = id, n+count
	return &Lease{Job: job, Token: eid + "/" + strconv.Itoa(count) + "/" + consumer}
}

func parseRedisToken(token string) (eid, count, consumer string, ok bool) {
	eid, rest, ok1 := strings.Cut(token, "/")
	count, consumer, ok2 := strings.Cut(rest, "/")
	return eid, count, consumer, ok1 && ok2 && eid != "" && consumer != ""
}

// Extend and Ack join the next group of settles, which one script call
// carries (see batcher); a lease in it that is no longer its holder's fails
// alone.
func (r *Redis) Extend(ctx context.Context, l *Lease) error {
	return r.settleGrouped(ctx, "extend", 'e', l)
}

func (r *Redis) Ack(ctx context.Context, l *Lease) error {
	return r.settleGrouped(ctx, "ack", 'a', l)
}

type settleCall struct {
	op                   byte // 'a' ack, 'e' extend
	eid, count, consumer string
}

func (r *Redis) settleGrouped(ctx context.Context, op string, code byte, l *Lease) error {
	eid, count, consumer, ok := parseRedisToken(l.Token)
	if !ok {
		return fmt.Errorf("queue: %s: malformed lease token %q", op, l.Token)
	}
	held, err := r.settles.do(ctx, settleCall{op: code, eid: eid, count: count, consumer: consumer}, len(l.Token))
	if err != nil {
		return r.fail(op, err)
	}
	if !held {
		return ErrLeaseLost
	}
	return nil
}

func (r *Redis) sendSettles(calls []*call[settleCall, bool]) {
	args := make([]any, 1, 1+4*len(calls))
	args[0] = r.group
	for _, c := range calls {
		args = append(args, []byte{c.in.op}, c.in.eid, c.in.consumer, c.in.count)
	}
	ctx := context.Background()
	res, err := r.withGroup(ctx, func() (any, error) {
		return r.scripts.settle.Run(ctx, r.client, []string{r.stream}, args...).Int64Slice()
	})
	var held []int64
	if err == nil {
		if held = res.([]int64); len(held) != len(calls) {
			err = fmt.Errorf("settle script answered %d results for %d leases", len(held), len(calls))
		}
	}
	for i, c := range calls {
		if err != nil {
			c.err = err
		} else {
			c.out = held[i] == 1
		}
	}
}

func (r *Redis) Nack(ctx context.Context, l *Lease, reason string, retry bool) error {
	keys := []string{r.stream, r.delayed, r.delayedJobs, r.delayedAttempts, r.dead}
	return r.settle(ctx, "nack", l, func(eid, count, consumer string) (any, error) {
		return r.scripts.nack.Run(ctx, r.client, keys, r.group, eid, consumer, count,
			retry, r.opts.MaxAttempts, r.opts.backoff(l.Job.Attempt).Milliseconds(),
			reason, exhaustedReason(reason), DeadLetterCap).Int()
	})
}

// settle runs a lease script that answers 0 when the lease is no longer
// the caller's.
func (r *Redis) settle(ctx context.Context, op string, l *Lease, run func(eid, count, consumer string) (any, error)) error {
	eid, count, consumer, ok := parseRedisToken(l.Token)
	if !ok {
		return fmt.Errorf("queue: %s: malformed lease token %q", op, l.Token)
	}
	res, err := r.withGroup(ctx, func() (any, error) { return run(eid, count, consumer) })
	if err != nil {
		return r.fail(op, err)
	}
	if res.(int) == 0 {
		return ErrLeaseLost
	}
	return nil
}

func (r *Redis) Seen(ctx context.Context, deliveryID string) (bool, error) {
	n, err := r.client.Exists(ctx, r.deliveryPrefix+deliveryID).Result()
	if err != nil {
		return false, r.fail("seen", err)
	}
	return n > 0, nil
}

func (r *Redis) ClaimRedelivery(ctx context.Context, deliveryID string) (bool, error) {
	if deliveryID == "" || len(deliveryID) > maxDeliveryIDLen {
		return false, fmt.Errorf("queue: claim redelivery: bad delivery id %q", deliveryID)
	}
	n, err := r.scripts.claim.Run(ctx, r.client, []string{r.redeliveryPrefix + deliveryID},
		newAttempt(), r.opts.DedupeWindow.Milliseconds()).Int64()
	if err != nil {
		return false, r.fail("claim redelivery", err)
	}
	return n == 1, nil
}

// newAttempt names one call, so that the same call arriving twice at
// Redis can be told from another's.
func newAttempt() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (r *Redis) ReleaseRedelivery(ctx context.Context, deliveryID string) error {
	if err := r.client.Del(ctx, r.redeliveryPrefix+deliveryID).Err(); err != nil {
		return r.fail("release redelivery", err)
	}
	return nil
}

func (r *Redis) Stats(ctx context.Context) (Stats, error) {
	keys := []string{r.stream, r.delayed, r.dead}
	res, err := r.withGroup(ctx, func() (any, error) {
		return r.scripts.stats.Run(ctx, r.client, keys, r.group).Int64Slice()
	})
	if err != nil {
		return Stats{}, r.fail("stats", err)
	}
	v := res.([]int64)
	if len(v) != 4 {
		return Stats{}, fmt.Errorf("queue: stats: unexpected reply %v", v)
	}
	return Stats{Ready: v[0], Leased: v[1], Delayed: v[2], Dead: v[3]}, nil
}

func (r *Redis) Dead(ctx context.Context, n int) ([]DeadJob, error) {
	if n <= 0 {
		return nil, nil
	}
	msgs, err := r.client.XRevRangeN(ctx, r.dead, "+", "-", int64(n)).Result()
	if err != nil {
		return nil, r.fail("dead", err)
	}
	out := make([]DeadJob, 0, len(msgs))
	for _, m := range msgs {
		str := func(k string) string { s, _ := m.Values[k].(string); return s }
		job, err := decodeJob([]byte(str("j")))
		if err != nil {
			return nil, fmt.Errorf("queue: dead letter %s: %w", m.ID, err)
		}
		job.ID = str("id")
		job.Attempt, _ = strconv.Atoi(str("n"))
		died, _ := strconv.ParseInt(str("died"), 10, 64)
		out = append(out, DeadJob{Job: job, Reason: str("reason"), DiedAt: unixTime(died * int64(time.Millisecond))})
	}
	return out, nil
}

func (r *Redis) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return r.fail("ping", err)
	}
	return nil
}

// Close sends the enqueues, acks and extends already waiting for a round
// trip, ends the Lease calls waiting, and then closes the client if
// OpenRedis made it. Enqueue, Lease, Ack and Extend fail after it.
func (r *Redis) Close() error {
	r.enqueues.close()
	r.settles.close()
	r.leases.close()
	if r.ownClient {
		return r.client.Close()
	}
	return nil
}

// ensureGroup starts the group at the stream's beginning ("0"), so jobs
// enqueued before any worker ever ran are still delivered.
func (r *Redis) ensureGroup(ctx context.Context) error {
	err := r.client.XGroupCreateMkStream(ctx, r.stream, r.group, "0").Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return r.fail("create consumer group", err)
	}
	return nil
}

// withGroup runs fn again after recreating the consumer group when Redis
// says it is gone (the stream was deleted, or Redis lost its data).
func (r *Redis) withGroup(ctx context.Context, fn func() (any, error)) (any, error) {
	res, err := fn()
	if noGroup(err) {
		if err := r.ensureGroup(ctx); err != nil {
			return nil, err
		}
		res, err = fn()
	}
	return res, err
}

// noGroup looks inside the message because an error raised by a command
// inside a script comes back wrapped in the script's error text.
func noGroup(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.Contains(rerr.Error(), "NOGROUP")
}

// fail wraps err, marking as ErrUnavailable everything that means Redis
// cannot serve us right now: network errors, timeouts, a closed client, and
// the server's own "try later" replies. Other server errors are bugs
// (a wrong type at our key, a script error) and stay plain.
func (r *Redis) fail(op string, err error) error {
	if errors.Is(err, ErrUnavailable) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("queue: redis %s: %w", op, err)
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !errors.Is(err, redis.ErrClosed) {
		msg := strings.TrimPrefix(rerr.Error(), "ERR ")
		transient := false
		for _, p := range []string{"LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "OOM", "NOREPLICAS", "MISCONF"} {
			if strings.HasPrefix(msg, p) {
				transient = true
			}
		}
		if !transient {
			return fmt.Errorf("queue: redis %s: %w", op, err)
		}
	}
	return fmt.Errorf("queue: redis %s: %w: %w", op, ErrUnavailable, err)
}

// expiredReason is the dead-letter reason for a job whose last attempt's
// lease ran out; the worker cannot give one, it is gone.
const expiredReason = "lease expired on the last attempt: the worker died or stalled without Ack, Nack or Extend"

func exhaustedReason(reason string) string { return reason + " (no attempts left)" }

type redisScripts struct {
	enqueue, sweep, settle, nack, stats, claim *redis.Script
}

func newRedisScripts() redisScripts {
	return redisScripts{
		enqueue: redis.NewScript(enqueueLua),
		sweep:   redis.NewScript(luaHelpers + sweepLua),
		settle:  redis.NewScript(luaHelpers + settleLua),
		nack:    redis.NewScript(luaHelpers + nackLua),
		stats:   redis.NewScript(luaHelpers + statsLua),
		claim:   redis.NewScript(claimLua),
	}
}

// enqueueLua stores a group (sendEnqueues). KEYS: the stream, then one
// delivery marker per job. ARGV: the marker's lifetime in ms, then per job
// its meta line and its payload. It answers per job the new entry's id, or
// false (nil to the client) when the marker existed: a duplicate. A later
// job of the group with an earlier one's marker is a duplicate too.
const enqueueLua = `
local out = {}
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', ARGV[1]) then
    out[i - 1] = redis.call('XADD', KEYS[1], '*', 'm', ARGV[2 * i - 2], 'p', ARGV[2 * i - 1])
  else
    out[i - 1] = false
  end
end
return out`

// claimLua sets KEYS[1] to ARGV[1] (the call's attempt) for ARGV[2] ms
// unless it exists, and answers 1 when this call holds it: set now, or set
// by this very call before. go-redis sends a command again after a network
// error, and Redis may have run the first (a plain SET NX would then
// answer "taken", and the redelivery would never be asked for).
const claimLua = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0`

// Time comes from the Redis server so that every process agrees on when a
// retry is due, whatever its own clock says.
const luaHelpers = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function held(stream, group, eid, consumer, count)
  local p = redis.call('XPENDING', stream, group, eid, eid, 1)
  return #p == 1 and p[1][2] == consumer and tonumber(p[1][4]) == tonumber(count)
end
local function fields(f, eid)
  local blob, meta, payload, id, n = nil, '', '', eid, 0
  for i = 1, #f, 2 do
    local k = f[i]
    if k == 'j' then blob = f[i + 1]
    elseif k == 'm' then meta = f[i + 1]
    elseif k == 'p' then payload = f[i + 1]
    elseif k == 'id' then id = f[i + 1]
    elseif k == 'n' then n = tonumber(f[i + 1]) end
  end
  return blob or (meta .. payload), id, n
end
local function bury(dead, cap, blob, id, attempts, reason, now)
  redis.call('XADD', dead, 'MAXLEN', cap, '*', 'j', blob, 'id', id, 'n', attempts, 'reason', reason, 'died', now)
end
`

// KEYS: stream, delayed, delayed:jobs, delayed:attempts, dead.
// ARGV: group, consumer, min idle ms, max attempts, dead cap, promote limit,
// scan limit, expired reason.
// Returns {more} or {more, entry id, blob, job id, n, delivery count}.
const sweepLua = `
local now = now_ms()
local more = 0
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))
if #due == tonumber(ARGV[6]) then more = 1 end
for _, id in ipairs(due) do
  local blob = redis.call('HGET', KEYS[3], id)
  local n = redis.call('HGET', KEYS[4], id)
  if blob then
    redis.call('XADD', KEYS[1], '*', 'j', blob, 'id', id, 'n', n or '0')
  end
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
end
for _ = 1, tonumber(ARGV[7]) do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', tonumber(ARGV[3]), '-', '+', 1)
  if #p == 0 then return {more} end
  local eid = p[1][1]
  local count = tonumber(p[1][4]) + 1
  -- XCLAIM re-checks the idle time and bumps the delivery count; an entry
  -- deleted from the stream comes back empty and leaves the pending list.
  local c = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), eid)
  if #c > 0 and c[1] then
    local blob, id, n = fields(c[1][2], eid)
    if n + count > tonumber(ARGV[4]) then
      bury(KEYS[5], ARGV[5], blob, id, n + count - 1, ARGV[8], now)
      redis.call('XACK', KEYS[1], ARGV[1], eid)
      redis.call('XDEL', KEYS[1], eid)
    else
      return {more, eid, blob, id, n, count}
    end
  end
end
return {1}
`

// Ack and Extend for a group of leases; each answers 1, or 0 when the lease
// is no longer its holder's. Ack deletes the entry, so an acked job is
// never handed out again. Extend is an XCLAIM to the holder, which resets
// the idle time; JUSTID alone keeps the delivery count in Redis,
// RETRYCOUNT pins it everywhere (miniredis counts a JUSTID claim), and the
// count is the lease's identity.
//
// KEYS: stream. ARGV: group, then per lease: 'a' (ack) or 'e' (extend),
// entry id, consumer, delivery count.
const settleLua = `
local out = {}
for i = 2, #ARGV, 4 do
  local eid, consumer, count = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local ok = 0
  if held(KEYS[1], ARGV[1], eid, consumer, count) then
    if ARGV[i] == 'a' then
      redis.call('XACK', KEYS[1], ARGV[1], eid)
      redis.call('XDEL', KEYS[1], eid)
    else
      redis.call('XCLAIM', KEYS[1], ARGV[1], consumer, 0, eid, 'RETRYCOUNT', count, 'JUSTID')
    end
    ok = 1
  end
  out[#out + 1] = ok
end
return out
`

// KEYS: stream, delayed, delayed:jobs, delayed:attempts, dead.
// ARGV: group, entry id, consumer, delivery count, retry (1/0), max
// attempts, backoff ms, reason, exhausted reason, dead cap.
// Returns 0 lease lost, 1 delayed, 2 dead-lettered.
const nackLua = `
if not held(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]) then return 0 end
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if #e == 0 then return 2 end
local blob, id, n = fields(e[1][2], ARGV[2])
local attempt = n + tonumber(ARGV[4])
local now = now_ms()
local reason = ARGV[8]
if ARGV[5] == '1' then
  if attempt < tonumber(ARGV[6]) then
    redis.call('HSET', KEYS[3], id, blob)
    redis.call('HSET', KEYS[4], id, attempt)
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[7]), id)
    return 1
  end
  reason = ARGV[9]
end
bury(KEYS[5], ARGV[10], blob, id, attempt, reason, now)
return 2
`

// KEYS: stream, delayed, dead. ARGV: group.
// One script so the four numbers describe one moment.
const statsLua = `
local len = redis.call('XLEN', KEYS[1])
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])[1]
local now = now_ms()
local due = redis.call('ZCOUNT', KEYS[2], '-inf', now)
local delayed = redis.call('ZCARD', KEYS[2])
return {len - pending + due, pending, delayed - due, redis.call('XLEN', KEYS[3])}
`
