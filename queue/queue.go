// Package queue is shipbot's durable job queue: webhook deliveries become
// jobs that workers lease, ack, retry with backoff, and dead-letter after a
// bounded number of attempts. Two implementations share one contract and one
// conformance suite: Redis Streams with a consumer group (several processes
// may share it) and an embedded bbolt file store for a single process.
package queue

import (
	"context"
	"errors"
	"time"
)

// Job is one unit of work: a webhook delivery the bot acts on.
type Job struct {
	// ID is assigned by the queue on Enqueue.
	ID string
	// DeliveryID is GitHub's X-GitHub-Delivery; the queue refuses a second
	// job with the same DeliveryID (see Enqueue).
	DeliveryID string
	// Event is GitHub's X-GitHub-Event (push, pull_request, ...).
	Event string
	// Action is the payload's "action" field, empty when it has none.
	Action string
	// InstallationID and Repo (owner/name) route the job; zero/empty when
	// the payload has none.
	InstallationID int64
	Repo           string
	// Payload is the JSON body GitHub sent, less the top-level members
	// named in Dropped.
	Payload []byte
	// Dropped names the top-level members of the body that intake left
	// out of Payload because no handler of the event reads them (nil: none
	// was). A handler that reads one of them cannot run the job: it was
	// queued by a version of shipbot whose handlers did not read it.
	Dropped []string
	// Outline, when intake set it, says Payload is a JSON object intake
	// validated, and where each of its top-level members ends: the offset
	// just past its value, in order. A reader may step over a member it
	// does not need instead of scanning it. Both stores keep it with the
	// job; it is a hint, and a job may come back without one.
	Outline []int32
	// EnqueuedAt is set by the queue.
	EnqueuedAt time.Time
	// Attempt is 1 on the first lease and grows with every lease: a retry
	// after Nack and a reclaim after an expired lease both count, so a job
	// that crashes its worker cannot loop forever (see Options.MaxAttempts).
	Attempt int
}

// Lease is a job handed to one worker. Until it is acked, nacked or its
// visibility timeout passes without Extend, no other worker gets the job.
type Lease struct {
	Job Job
	// Token identifies this lease; a stale token (the job was reclaimed by
	// another worker after the visibility timeout) makes Ack/Nack/Extend
	// return ErrLeaseLost.
	Token string
}

// Queue is the contract both implementations meet.
type Queue interface {
	// Enqueue durably stores the job and returns nil only once it would
	// survive a crash of the store. If a job with the same DeliveryID was
	// enqueued before (within the dedupe window), it stores nothing and
	// returns ErrDuplicate. The dedupe and the store happen atomically.
	// It does not keep job.Payload after it returns: intake reuses that
	// buffer for the next delivery.
	Enqueue(ctx context.Context, job Job) (Job, error)
	// Lease blocks up to wait for a job that is ready (new, due for retry,
	// or whose previous lease expired) and leases it to consumer. It
	// returns ErrEmpty when nothing became ready in time. The job's
	// Payload may be the store's own copy: read it, never change it.
	Lease(ctx context.Context, consumer string, wait time.Duration) (*Lease, error)
	// Extend pushes the lease's visibility timeout out again; long jobs
	// (rollouts) call it periodically as a heartbeat.
	Extend(ctx context.Context, l *Lease) error
	// Ack marks the job done; it is never handed out again.
	Ack(ctx context.Context, l *Lease) error
	// Nack records a failed attempt. With retry and attempts left, the job
	// becomes ready again after the backoff; otherwise it is dead-lettered
	// with reason.
	Nack(ctx context.Context, l *Lease, reason string, retry bool) error
	// Seen reports whether a delivery id was ever enqueued (within the
	// dedupe window), for failed-delivery recovery.
	Seen(ctx context.Context, deliveryID string) (bool, error)
	// ClaimRedelivery returns true only the first time it is called for a
	// delivery id within the dedupe window, atomically across processes
	// sharing the store, so failed-delivery recovery asks GitHub to
	// redeliver a delivery at most once.
	ClaimRedelivery(ctx context.Context, deliveryID string) (bool, error)
	// ReleaseRedelivery forgets a claim whose redelivery request failed,
	// so that the next sweep asks again instead of losing the delivery.
	ReleaseRedelivery(ctx context.Context, deliveryID string) error
	// Stats counts jobs by state, for metrics, /status and the dashboard.
	Stats(ctx context.Context) (Stats, error)
	// Dead lists up to n dead-lettered jobs, newest first.
	Dead(ctx context.Context, n int) ([]DeadJob, error)
	// Ping reports whether the store is reachable (/readyz).
	Ping(ctx context.Context) error
	// Close releases connections or the file lock.
	Close() error
}

// Stats is a snapshot of the queue.
type Stats struct {
	Ready int64 // waiting for a worker (including retries that are due)
	// Leased is held by a worker; a lease whose visibility timeout passed
	// stays Leased until another worker reclaims it.
	Leased  int64
	Delayed int64 // waiting out a retry backoff
	// Dead is how many dead-lettered jobs are kept for Dead(): the newest
	// DeadLetterCap, older ones are dropped.
	Dead int64
}

// DeadLetterCap bounds the dead letters kept, so a flood of failing
// deliveries cannot fill the store.
const DeadLetterCap = 1000

// DeadJob is a job that ran out of attempts or failed permanently.
type DeadJob struct {
	Job    Job
	Reason string
	DiedAt time.Time
}

// Options are the knobs both implementations share.
type Options struct {
	// VisibilityTimeout is how long a lease lasts without Extend before
	// another worker may take the job. Default 30s.
	VisibilityTimeout time.Duration
	// MaxAttempts bounds the attempts (leases) a job gets, reclaims after a
	// crashed worker included. Default 5.
	MaxAttempts int
	// Backoff returns the delay before attempt n+1 after attempt n failed.
	// Default: 1s doubling, capped at 5 minutes, with jitter.
	Backoff func(attempt int) time.Duration
	// DedupeWindow is how long delivery ids are remembered. Default 7 days
	// (GitHub keeps deliveries for 3 days; redelivery must still dedupe).
	DedupeWindow time.Duration
}

var (
	// ErrDuplicate: the delivery id was enqueued before; nothing stored.
	ErrDuplicate = errors.New("queue: duplicate delivery")
	// ErrEmpty: no job became ready within the wait.
	ErrEmpty = errors.New("queue: no job ready")
	// ErrLeaseLost: the lease expired and the job went to another worker.
	ErrLeaseLost = errors.New("queue: lease lost to another worker")
	// ErrUnavailable wraps every failure to reach the store, so intake can
	// answer 503 and readiness can fail.
	ErrUnavailable = errors.New("queue: store unavailable")
)
