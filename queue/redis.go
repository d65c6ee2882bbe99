package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

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
// A stream entry carries the encoded job ("j") and, once it went round a
// retry, the job's original id ("id") and the attempts used before it was
// re-added ("n"). The job's attempt is n plus the entry's delivery count in
// the pending list, which XREADGROUP sets to 1 and every reclaim (XCLAIM)
// increments, so a worker that dies mid-job spends an attempt too.
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
}

var _ Queue = (*Redis)(nil)

const (
	redisGroup = "workers"
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
	return &Redis{
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
	}, nil
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

func (r *Redis) Enqueue(ctx context.Context, job Job) (Job, error) {
	if err := validateJob(job); err != nil {
		return Job{}, err
	}
	job.ID, job.Attempt = "", 0
	job.EnqueuedAt = unixTime(time.Now().UnixNano())
	res, err := r.scripts.enqueue.Run(ctx, r.client,
		[]string{r.deliveryPrefix + job.DeliveryID, r.stream},
		r.opts.DedupeWindow.Milliseconds(), appendJob(nil, job)).Text()
	if errors.Is(err, redis.Nil) {
		return Job{}, fmt.Errorf("%w: %s", ErrDuplicate, job.DeliveryID)
	}
	if err != nil {
		return Job{}, r.fail("enqueue", err)
	}
	job.ID = res
	return job, nil
}

// Lease blocks in XREADGROUP in slices of at most 100ms, so a cancelled
// ctx is noticed within that; a new job wakes it at once either way.
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
		block := min(time.Until(deadline), r.blockChunk)
		if d, ok := ctx.Deadline(); ok {
			block = min(block, time.Until(d))
		}
		l, err := r.read(ctx, consumer, block)
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

// read takes one new entry, blocking up to block; XADD wakes it at once.
func (r *Redis) read(ctx context.Context, consumer string, block time.Duration) (*Lease, error) {
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
	res, err := r.client.XReadGroup(ctx, args).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case noGroup(err):
		return nil, r.ensureGroup(ctx)
	case err != nil:
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, r.fail("lease", err)
	}
	if len(res) == 0 || len(res[0].Messages) == 0 {
		return nil, nil
	}
	m := res[0].Messages[0]
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	n, _ := strconv.Atoi(str("n"))
	return r.lease(m.ID, str("id"), str("j"), n, 1, consumer)
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
	if id == "" {
		id = eid
	}
	job.ID, job.Attempt = id, n+count
	return &Lease{Job: job, Token: eid + "/" + strconv.Itoa(count) + "/" + consumer}, nil
}

func parseRedisToken(token string) (eid, count, consumer string, ok bool) {
	eid, rest, ok1 := strings.Cut(token, "/")
	count, consumer, ok2 := strings.Cut(rest, "/")
	return eid, count, consumer, ok1 && ok2 && eid != "" && consumer != ""
}

func (r *Redis) Extend(ctx context.Context, l *Lease) error {
	return r.settle(ctx, "extend", l, func(eid, count, consumer string) (any, error) {
		return r.scripts.extend.Run(ctx, r.client, []string{r.stream}, r.group, eid, consumer, count).Int()
	})
}

func (r *Redis) Ack(ctx context.Context, l *Lease) error {
	return r.settle(ctx, "ack", l, func(eid, count, consumer string) (any, error) {
		return r.scripts.ack.Run(ctx, r.client, []string{r.stream}, r.group, eid, consumer, count).Int()
	})
}

func (r *Redis) Nack(ctx context.Context, l *Lease, reason string, retry bool) error {
	keys := []string{r.stream, r.delayed, r.delayedJobs, r.delayedAttempts, r.dead}
	return r.settle(ctx, "nack", l, func(eid, count, consumer string) (any, error) {
		return r.scripts.nack.Run(ctx, r.client, keys, r.group, eid, consumer, count,
			retry, r.opts.MaxAttempts, r.opts.backoff(l.Job.Attempt).Milliseconds(),
			reason, exhaustedReason(reason), DeadLetterCap).Int()
	})
}

// settle runs one of the lease scripts, which answer 0 when the lease is
// no longer the caller's.
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
	ok, err := r.client.SetNX(ctx, r.redeliveryPrefix+deliveryID, 1, r.opts.DedupeWindow).Result()
	if err != nil {
		return false, r.fail("claim redelivery", err)
	}
	return ok, nil
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

// Close closes the client only if OpenRedis made it.
func (r *Redis) Close() error {
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
	enqueue, sweep, extend, ack, nack, stats *redis.Script
}

func newRedisScripts() redisScripts {
	return redisScripts{
		enqueue: redis.NewScript(enqueueLua),
		sweep:   redis.NewScript(luaHelpers + sweepLua),
		extend:  redis.NewScript(luaHelpers + extendLua),
		ack:     redis.NewScript(luaHelpers + ackLua),
		nack:    redis.NewScript(luaHelpers + nackLua),
		stats:   redis.NewScript(luaHelpers + statsLua),
	}
}

// The dedupe marker and the job are written by one script so that neither
// can exist without the other: a crash between them would either lose the
// job for good (marker only) or let a redelivery run it twice.
//
// KEYS: delivery marker, stream. ARGV: window ms, encoded job.
const enqueueLua = `
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  return false
end
return redis.call('XADD', KEYS[2], '*', 'j', ARGV[2])
`

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
  local blob, id, n = '', eid, 0
  for i = 1, #f, 2 do
    local k = f[i]
    if k == 'j' then blob = f[i + 1]
    elseif k == 'id' then id = f[i + 1]
    elseif k == 'n' then n = tonumber(f[i + 1]) end
  end
  return blob, id, n
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

// KEYS: stream. ARGV: group, entry id, consumer, delivery count.
// XCLAIM to the holder resets the idle time; JUSTID alone keeps the
// delivery count in Redis, RETRYCOUNT pins it everywhere (miniredis counts
// a JUSTID claim), and the count is the lease's identity.
const extendLua = `
if not held(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]) then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'RETRYCOUNT', ARGV[4], 'JUSTID')
return 1
`

// KEYS: stream. ARGV: group, entry id, consumer, delivery count.
const ackLua = `
if not held(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]) then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
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
