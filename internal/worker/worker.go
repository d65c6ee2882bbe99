// Package worker runs queued jobs: it leases them from the queue, hands each
// to the handler registered for its event, keeps the lease alive while the
// handler works, and acks, retries or dead-letters by what the handler
// returned. A panic in a handler is a failed attempt, never a dead process.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shipbot/shipbot/internal/logctx"
	"github.com/shipbot/shipbot/queue"
)

// Handler does the work of one job. Returning nil acks it. An error whose
// chain has a Permanent() bool method returning true dead-letters the job at
// once (retrying cannot help: bad config, no permission); any other error is
// retried with backoff until the queue's attempts run out.
type Handler func(ctx context.Context, job queue.Job) error

// Router maps events (and optionally actions) to handlers.
type Router struct {
	routes map[string]route
}

type route struct {
	actions map[string]bool // nil: every action
	handle  Handler
	// reads, when set, says whether the handler reads the payload's
	// top-level member whose key is given (as it is between the quotes).
	reads func(key []byte) bool
}

// NewRouter returns an empty router.
func NewRouter() *Router { return &Router{routes: map[string]route{}} }

// Handle registers h for event; with actions given, only those actions are
// accepted and the intake drops the others without queueing them.
func (r *Router) Handle(event string, h Handler, actions ...string) {
	rt := route{handle: h}
	if len(actions) > 0 {
		rt.actions = map[string]bool{}
		for _, a := range actions {
			rt.actions[a] = true
		}
	}
	r.routes[event] = rt
}

// Reads declares which top-level members of event's payloads its handler
// reads: intake stores only those (see queue.Job.Dropped). Call it after
// Handle; an event without it keeps its whole payload.
func (r *Router) Reads(event string, reads func(key []byte) bool) {
	rt, ok := r.routes[event]
	if !ok {
		panic("worker: Reads(" + event + ") before Handle")
	}
	rt.reads = reads
	r.routes[event] = rt
}

// Keeps returns what Reads declared for event, nil for none.
func (r *Router) Keeps(event string) func(key []byte) bool {
	return r.routes[event].reads
}

// Accepts reports whether a handler acts on event with action.
func (r *Router) Accepts(event, action string) bool {
	rt, ok := r.routes[event]
	return ok && (rt.actions == nil || rt.actions[action])
}

func (r *Router) handler(event, action string) Handler {
	if !r.Accepts(event, action) {
		return nil
	}
	return r.routes[event].handle
}

// Leaser is what a worker pool needs of the queue.
type Leaser interface {
	Lease(ctx context.Context, consumer string, wait time.Duration) (*queue.Lease, error)
	Extend(ctx context.Context, l *queue.Lease) error
	Ack(ctx context.Context, l *queue.Lease) error
	Nack(ctx context.Context, l *queue.Lease, reason string, retry bool) error
}

// Pool is a set of workers sharing one consumer name prefix.
type Pool struct {
	q         Leaser
	router    *Router
	consumer  string
	size      int
	heartbeat time.Duration
	grace     time.Duration
	longAfter time.Duration
	maxLong   int32
	log       *slog.Logger
	jobs      *prometheus.CounterVec
	duration  *prometheus.HistogramVec

	// long counts the running jobs that gave their place up (see
	// Options.LongAfter); workers counts every worker goroutine.
	long    atomic.Int32
	workers sync.WaitGroup
}

// Options configure a Pool.
type Options struct {
	// Consumer names this process in the queue (hostname-pid); workers
	// append their index.
	Consumer string
	// Size is the number of jobs leased and run at once, not counting the
	// long ones that gave their place up (LongAfter). Default DefaultSize.
	Size int
	// Heartbeat is how often a running job's lease is extended; keep it well
	// under the queue's visibility timeout. Default 10s.
	Heartbeat time.Duration
	// Grace is how long Run waits for running jobs after its context ends
	// before cancelling them; a cancelled job is left unacked, so another
	// worker (or this one after a restart) resumes it. Default 25s.
	Grace time.Duration
	// LongAfter is how long a job runs before it gives its place up to a
	// new worker, which leases the next job: a rollout takes minutes, and
	// Size of them at once must not stop every webhook behind them.
	// Default 2s.
	LongAfter time.Duration
	// MaxLong bounds the jobs that gave their place up, running beside
	// the Size others; past it a long job keeps its place. Default 64.
	MaxLong    int
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// DefaultSize is Options.Size when it is not set.
const DefaultSize = 4

// NewPool returns a pool; Run starts it.
func NewPool(q Leaser, r *Router, o Options) *Pool {
	p := &Pool{q: q, router: r, consumer: o.Consumer, size: o.Size, heartbeat: o.Heartbeat, grace: o.Grace,
		longAfter: o.LongAfter, maxLong: int32(o.MaxLong), log: o.Logger}
	if p.consumer == "" {
		p.consumer = "worker"
	}
	if p.size <= 0 {
		p.size = DefaultSize
	}
	if p.heartbeat <= 0 {
		p.heartbeat = 10 * time.Second
	}
	if p.grace <= 0 {
		p.grace = 25 * time.Second
	}
	if p.longAfter <= 0 {
		p.longAfter = 2 * time.Second
	}
	if p.maxLong <= 0 {
		p.maxLong = 64
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.jobs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shipbot_jobs_total",
		Help: "Jobs finished by event and result (ok, retry, dead, panic, lost, interrupted).",
	}, []string{"event", "result"})
	p.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "shipbot_job_seconds",
		Help:    "Time a handler spent on a job.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	}, []string{"event"})
	if o.Registerer != nil {
		o.Registerer.MustRegister(p.jobs, p.duration)
	}
	return p
}

// Run works until ctx ends, then stops leasing, gives running jobs Grace to
// finish, cancels the rest (leaving them unacked for another worker) and
// returns once every worker goroutine has ended.
func (p *Pool) Run(ctx context.Context) {
	// Jobs run under their own context so that a shutdown signal stops new
	// leases at once but lets running jobs finish within the grace period.
	jobCtx, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJobs()
	for i := 0; i < p.size; i++ {
		p.startWorker(ctx, jobCtx, fmt.Sprintf("%s-%d", p.consumer, i))
	}
	<-ctx.Done()
	done := make(chan struct{})
	go func() { p.workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(p.grace):
		p.log.Warn("shutdown grace period over: interrupting running jobs; they stay queued and resume after the visibility timeout or restart",
			"grace", p.grace.String())
		cancelJobs()
		<-done
	}
}

// startWorker runs a worker leasing as consumer. A worker whose job gave
// its place up starts another under the same name: a lease is held by its
// token, so the name only matters while leasing.
func (p *Pool) startWorker(ctx, jobCtx context.Context, consumer string) {
	p.workers.Add(1)
	go func() {
		defer p.workers.Done()
		p.loop(ctx, jobCtx, consumer)
	}()
}

func (p *Pool) loop(ctx, jobCtx context.Context, consumer string) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		l, err := p.q.Lease(ctx, consumer, 5*time.Second)
		switch {
		case err == nil:
			backoff = 100 * time.Millisecond
			if p.run(ctx, jobCtx, consumer, l) {
				return // another worker has taken this one's place
			}
		case errors.Is(err, queue.ErrEmpty), ctx.Err() != nil:
		default:
			p.log.Error("cannot lease jobs: the job store is unreachable; retrying", "err", err, "retry_in", backoff.String())
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
		}
	}
}

// job is one leased job while it runs: what its timers (the heartbeat and
// the hand-over of its place) share with the worker running it.
type job struct {
	p      *Pool
	l      *queue.Lease
	log    *slog.Logger
	ctx    context.Context // the job's own
	cancel context.CancelFunc
	lost   atomic.Bool   // the lease went to another worker
	hbDone chan struct{} // closed when a started heartbeat ended

	// What a worker started in this job's place runs with.
	leaseCtx, jobCtx context.Context
	consumer         string

	mu     sync.Mutex
	ended  bool // the handler returned: its place is no longer given up
	handed bool // its place was given to a new worker
}

// run executes one leased job and settles it with the queue. It reports
// whether the job gave its place up to a new worker while it ran, in which
// case the calling worker ends.
//
// Most jobs take microseconds, so what only a long job needs is started by
// timers that a short job stops before they fire: the heartbeat goroutine
// after Heartbeat, the hand-over after LongAfter.
func (p *Pool) run(leaseCtx, jobCtx context.Context, consumer string, l *queue.Lease) bool {
	j := l.Job
	log := jobLogger(p.log, j, consumer)
	ctx := jobCtx
	shutdown := ctx // cancelled only when the pool's grace period is over
	ctx, cancel := context.WithCancel(logctx.With(ctx, log))
	defer cancel()

	h := p.router.handler(j.Event, j.Action)
	if h == nil {
		// Queued by an intake that knew a handler this build does not have.
		log.Warn("no handler for this event in this build; dead-lettering the job")
		p.settle(ctx, log, l, "dead", p.q.Nack(ctx, l, "no handler for event "+j.Event, false))
		return false
	}

	r := &job{p: p, l: l, log: log, ctx: ctx, cancel: cancel, hbDone: make(chan struct{}),
		leaseCtx: leaseCtx, jobCtx: jobCtx, consumer: consumer}
	hb := time.AfterFunc(p.heartbeat, r.keepAlive)
	long := time.AfterFunc(p.longAfter, r.giveUpPlace)

	start := time.Now()
	err := safeCall(ctx, h, j)
	p.duration.WithLabelValues(j.Event).Observe(time.Since(start).Seconds())
	cancel()
	if !hb.Stop() {
		<-r.hbDone
	}
	long.Stop()
	r.mu.Lock()
	r.ended = true
	handed := r.handed
	r.mu.Unlock()
	if handed {
		defer p.long.Add(-1)
	}

	if r.lost.Load() {
		log.Warn("job lease was lost while running; another worker has it now")
		p.jobs.WithLabelValues(j.Event, "lost").Inc()
		return handed
	}
	// Settle with a fresh context: the job's context is cancelled by now.
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer scancel()
	var pe *panicError
	switch {
	case err == nil:
		if log.Enabled(ctx, slog.LevelInfo) {
			log.Info("job done", "took", time.Since(start).String())
		}
		p.settle(sctx, log, l, "ok", p.q.Ack(sctx, l))
	case shutdown.Err() != nil && !errors.As(err, &pe):
		// Shutdown interrupted the job: leave it leased so that it is
		// reclaimed after the visibility timeout and resumed.
		log.Warn("job interrupted by shutdown; it will be resumed", "err", err)
		p.jobs.WithLabelValues(j.Event, "interrupted").Inc()
	case errors.As(err, &pe):
		log.Error("job panicked; counted as a failed attempt", "panic", pe.value, "stack", pe.stack)
		p.settle(sctx, log, l, "panic", p.q.Nack(sctx, l, "panic: "+fmt.Sprint(pe.value), true))
	case IsPermanent(err):
		log.Error("job failed permanently; dead-lettered", "err", err)
		p.settle(sctx, log, l, "dead", p.q.Nack(sctx, l, err.Error(), false))
	default:
		log.Warn("job failed; will retry", "err", err)
		p.settle(sctx, log, l, "retry", p.q.Nack(sctx, l, err.Error(), true))
	}
	return handed
}

// giveUpPlace starts a new worker in this job's place, so that the pool
// goes on leasing Size jobs at once beside it, unless MaxLong jobs have
// done so already or the pool is stopping.
func (r *job) giveUpPlace() {
	p := r.p
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ended || r.leaseCtx.Err() != nil {
		return
	}
	if p.long.Add(1) > p.maxLong {
		p.long.Add(-1)
		return
	}
	r.handed = true
	p.startWorker(r.leaseCtx, r.jobCtx, r.consumer)
}

func (p *Pool) settle(ctx context.Context, log *slog.Logger, l *queue.Lease, result string, err error) {
	p.jobs.WithLabelValues(l.Job.Event, result).Inc()
	if err != nil {
		// The job stays leased and comes back after the visibility timeout:
		// at-least-once, never lost.
		log.Error("could not record the job's result with the queue; it will run again", "result", result, "err", err)
	}
}

// keepAlive extends the lease at once (a heartbeat has passed since the
// lease) and then every heartbeat, until the job's context ends; if the
// lease was lost it says so and cancels the job, whose work now belongs to
// another worker.
func (r *job) keepAlive() {
	defer close(r.hbDone)
	t := time.NewTicker(r.p.heartbeat)
	defer t.Stop()
	for {
		err := r.p.q.Extend(r.ctx, r.l)
		switch {
		case err == nil:
		case errors.Is(err, queue.ErrLeaseLost):
			r.lost.Store(true)
			r.cancel()
			return
		case r.ctx.Err() != nil:
			return
		default:
			r.log.Warn("could not extend the job's lease; will try again", "err", err)
		}
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// jobLogger is the logger of one job, with its attributes. Building a
// JSON or text handler's WithAttrs renders them at once, which cost a job
// more than the rest of the pool's work when no line was logged at all
// (LOG_LEVEL=warn and a job that succeeds); jobAttrs renders them with
// the first line that is.
func jobLogger(base *slog.Logger, j queue.Job, consumer string) *slog.Logger {
	return slog.New(&jobAttrs{inner: base.Handler(), attrs: [...]slog.Attr{
		slog.String("job", j.ID), slog.String("delivery", j.DeliveryID), slog.String("event", j.Event),
		slog.String("action", j.Action), slog.Int64("installation", j.InstallationID), slog.String("repo", j.Repo),
		slog.Int("attempt", j.Attempt), slog.String("consumer", consumer),
	}})
}

// jobAttrs is a handler whose attributes are added to inner when a line
// is first logged through it.
type jobAttrs struct {
	inner slog.Handler
	attrs [8]slog.Attr
	once  sync.Once
	with  slog.Handler
}

func (h *jobAttrs) handler() slog.Handler {
	h.once.Do(func() { h.with = h.inner.WithAttrs(h.attrs[:]) })
	return h.with
}

func (h *jobAttrs) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }
func (h *jobAttrs) Handle(ctx context.Context, r slog.Record) error {
	return h.handler().Handle(ctx, r)
}
func (h *jobAttrs) WithAttrs(as []slog.Attr) slog.Handler { return h.handler().WithAttrs(as) }
func (h *jobAttrs) WithGroup(name string) slog.Handler    { return h.handler().WithGroup(name) }

type panicError struct {
	value any
	stack string
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

func safeCall(ctx context.Context, h Handler, j queue.Job) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: string(debug.Stack())}
		}
	}()
	return h(ctx, j)
}

// IsPermanent reports whether err says retrying cannot help.
func IsPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}

// Permanent marks err as one retrying cannot fix.
func Permanent(err error) error { return permanent{err} }

type permanent struct{ error }

func (permanent) Permanent() bool { return true }
func (p permanent) Unwrap() error { return p.error }
