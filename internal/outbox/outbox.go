// Package outbox delivers what shipbot tells the world beyond GitHub (SPEC
// §5): a deploy's one Slack message, edited in place, and its thread reply,
// and the CDEvents posted to notify.webhooks. Everything goes through a
// durable job queue of its own, so that a deploy only ever waits for a
// store write: Slack or a receiver being down delays nobody, and what they
// missed is retried from the queue with cdevents.Backoff for 24 hours.
//
// Slack: a deploy's message is kept in its record (record.Deploy.Slack), so
// that every job of that deploy, on any worker and after a restart, edits
// the same message. Jobs carry the message as rendered with a sequence
// number; a job older than what the message already shows is dropped, so
// retries arriving out of order never put an old state back. One job at a
// time sends a deploy's message: it claims it in the record (BusyUntil)
// before calling Slack, so a second post cannot happen and edits reach
// Slack in order.
//
// Webhooks: one job per event and receiver, its id derived from the
// event's id, so queuing the same event twice sends it once, and a retry
// sends the same body with the same CloudEvents id.
package outbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/shipbot/shipbot/internal/cdevents"
	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/slack"
	"github.com/shipbot/shipbot/internal/store/record"
	"github.com/shipbot/shipbot/internal/worker"
	"github.com/shipbot/shipbot/queue"
)

// The outbox's job events (queue.Job.Event).
const (
	EventSlack      = "shipbot.slack"
	EventSlackReply = "shipbot.slack-reply"
	EventWebhook    = "shipbot.cdevent"
)

// Queue is where the outbox's jobs are kept: its own queue, whose
// Options.Backoff and MaxAttempts follow cdevents (QueueOptions).
type Queue interface {
	Enqueue(ctx context.Context, job queue.Job) (queue.Job, error)
}

// QueueOptions are the options the outbox's queue is opened with: retries
// on cdevents' schedule for 24 hours. backoff replaces cdevents.Backoff
// when not nil (tests).
func QueueOptions(visibility time.Duration, backoff func(int) time.Duration) queue.Options {
	if backoff == nil {
		backoff = cdevents.Backoff
	}
	return queue.Options{VisibilityTimeout: visibility, MaxAttempts: cdevents.MaxAttempts(), Backoff: backoff}
}

// Deploys is what the outbox reads and writes of deploy records.
type Deploys interface {
	GetDeploy(ctx context.Context, id string) (record.Deploy, error)
	UpdateDeploy(ctx context.Context, id string, fn func(*record.Deploy) error) (record.Deploy, error)
}

// SlackClient is the three calls a deploy's message needs (*slack.Client).
type SlackClient interface {
	Post(ctx context.Context, channel string, m slack.Message) (slack.Ref, error)
	Update(ctx context.Context, channel, ts string, m slack.Message) error
	Reply(ctx context.Context, channel, ts string, m slack.Message) (slack.Ref, error)
}

// Sender posts one event to one receiver (*cdevents.Sender).
type Sender interface {
	Send(ctx context.Context, url string, e event.Event) error
}

// Options configure an Outbox.
type Options struct {
	Queue   Queue
	Deploys Deploys
	// Slack is nil when SLACK_BOT_TOKEN is unset: no message is queued.
	Slack SlackClient
	// Causes keeps Slack's permanent failures for the log (once each) and
	// the dashboard. May be nil.
	Causes *slack.Causes
	Sender Sender
	// CheckURL checks a receiver's address before each delivery
	// (cdevents.CheckURL); nil checks nothing.
	CheckURL func(ctx context.Context, url string) error
	Now      func() time.Time
	// SendClaim is how long one job may hold the right to send a deploy's
	// message before another may (its holder died). It must outlast one
	// Slack call: up to 30 s waiting out a rate limit, then a 10 s HTTP
	// timeout per try. Default 2 minutes.
	SendClaim time.Duration
	Logger    *slog.Logger
}

// Outbox queues and delivers. It is safe for concurrent use.
type Outbox struct {
	o     Options
	locks [64]sync.Mutex // a deploy's jobs hold locks[hash(id)%64]
}

// New returns an Outbox.
func New(o Options) (*Outbox, error) {
	if o.Queue == nil || o.Deploys == nil || o.Sender == nil {
		return nil, errors.New("outbox: Options.Queue, Deploys and Sender are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SendClaim <= 0 {
		o.SendClaim = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Outbox{o: o}, nil
}

// SlackEnabled reports whether Slack messages are sent at all.
func (o *Outbox) SlackEnabled() bool { return o != nil && o.o.Slack != nil }

// slackJob is a deploy's message as rendered at Seq, or its thread reply.
type slackJob struct {
	Deploy  string              `json:"deploy"`
	Repo    string              `json:"repo"`
	Channel string              `json:"channel"` // as notify.slack.channel names it
	Seq     int64               `json:"seq"`
	Message report.SlackMessage `json:"message"`
}

// webhookJob is one event for one receiver.
type webhookJob struct {
	URL   string          `json:"url"`
	Event json.RawMessage `json:"event"`
	// First is when the event was first queued: retries stop 24 h later.
	First time.Time `json:"first"`
}

// Slack queues the deploy's message as rendered at seq (larger is newer).
func (o *Outbox) Slack(ctx context.Context, deployID, repo, channel string, seq int64, m report.SlackMessage) error {
	if !o.SlackEnabled() {
		return nil
	}
	return o.enqueue(ctx, EventSlack, "slack:"+deployID+":"+strconv.FormatInt(seq, 10), repo,
		slackJob{Deploy: deployID, Repo: repo, Channel: channel, Seq: seq, Message: m})
}

// SlackReply queues the deploy's one thread reply; queuing it again does
// nothing.
func (o *Outbox) SlackReply(ctx context.Context, deployID, repo, channel string, m report.SlackMessage) error {
	if !o.SlackEnabled() {
		return nil
	}
	return o.enqueue(ctx, EventSlackReply, "slack-reply:"+deployID, repo,
		slackJob{Deploy: deployID, Repo: repo, Channel: channel, Message: m})
}

// Webhooks queues e for each receiver; an event already queued for a
// receiver (same id) is not queued again.
func (o *Outbox) Webhooks(ctx context.Context, repo string, urls []string, e event.Event) error {
	if len(urls) == 0 {
		return nil
	}
	body, err := cdevents.Encode(e)
	if err != nil {
		return fmt.Errorf("outbox: event %s: %w", e.ID(), err)
	}
	var errs []error
	for _, u := range urls {
		sum := sha256.Sum256([]byte(u))
		id := "cdevent:" + e.ID() + ":" + hex.EncodeToString(sum[:8])
		errs = append(errs, o.enqueue(ctx, EventWebhook, id, repo, webhookJob{URL: u, Event: body, First: o.o.Now()}))
	}
	return errors.Join(errs...)
}

func (o *Outbox) enqueue(ctx context.Context, ev, id, repo string, v any) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = o.o.Queue.Enqueue(ctx, queue.Job{DeliveryID: id, Event: ev, Repo: repo, Payload: payload})
	if errors.Is(err, queue.ErrDuplicate) {
		return nil
	}
	return err
}

// Register routes the outbox's jobs to their handlers.
func (o *Outbox) Register(r *worker.Router) {
	r.Handle(EventSlack, o.handleSlack)
	r.Handle(EventSlackReply, o.handleSlackReply)
	r.Handle(EventWebhook, o.handleWebhook)
}

var (
	errStale = errors.New("the message shows this rendering or a newer one already")
	errBusy  = errors.New("another job is sending the deploy's Slack message; this newer rendering is retried")
	errNoTS  = errors.New("the deploy's Slack message is not posted yet; the reply is retried")
)

func decode[T any](j queue.Job) (T, error) {
	var v T
	if err := json.Unmarshal(j.Payload, &v); err != nil {
		return v, worker.Permanent(fmt.Errorf("outbox: job %s does not decode: %w", j.DeliveryID, err))
	}
	return v, nil
}

// lockDeploy serialises this process's jobs for one deploy; the claim in
// the record (claimSend) does the same across processes.
func (o *Outbox) lockDeploy(id string) func() {
	h := fnv.New32a()
	h.Write([]byte(id))
	mu := &o.locks[h.Sum32()%uint32(len(o.locks))]
	mu.Lock()
	return mu.Unlock
}

// handleSlack sends one rendering of a deploy's message: the post when the
// message does not exist yet, else an edit. Renderings reach Slack one at a
// time and in order: a job holds the message (claimSend) while it sends,
// and one older than what the message shows or what is being sent is
// dropped.
func (o *Outbox) handleSlack(ctx context.Context, j queue.Job) error {
	if o.o.Slack == nil {
		return nil
	}
	job, err := decode[slackJob](j)
	if err != nil {
		return err
	}
	msg, err := slackMessage(job.Message)
	if err != nil {
		return worker.Permanent(err)
	}
	defer o.lockDeploy(job.Deploy)()
	s, err := o.claimSend(ctx, job)
	switch {
	case errors.Is(err, errStale):
		return nil
	case err != nil:
		return err
	}
	var ref slack.Ref
	if s.TS == "" {
		ref, err = o.o.Slack.Post(ctx, job.Channel, msg)
	} else {
		ref, err = slack.Ref{Channel: s.Channel, TS: s.TS}, o.o.Slack.Update(ctx, s.Channel, s.TS, msg)
	}
	o.note(ctx, job.Channel, err)
	_, uerr := o.o.Deploys.UpdateDeploy(ctx, job.Deploy, func(x *record.Deploy) error {
		if x.Slack == nil {
			x.Slack = &record.SlackPost{}
		}
		p := x.Slack
		if p.BusySeq == job.Seq {
			p.BusyUntil, p.BusySeq = time.Time{}, 0
		}
		if err == nil {
			p.Channel, p.TS, p.Seq = ref.Channel, ref.TS, max(p.Seq, job.Seq)
		}
		return nil
	})
	switch {
	case err != nil:
		return err
	case uerr != nil && s.TS == "":
		return worker.Permanent(fmt.Errorf("outbox: the Slack message of deploy %s was posted (ts %s) but not recorded (%v): a later update may post a second one", job.Deploy, ref.TS, uerr))
	}
	return uerr
}

// claimSend takes the deploy's message for sending job's rendering and
// returns it as it was, or says why not: errStale (the message shows, or is
// being sent, something newer) or errBusy (an older rendering is being
// sent; this one goes after it).
func (o *Outbox) claimSend(ctx context.Context, job slackJob) (record.SlackPost, error) {
	now := o.o.Now()
	var was record.SlackPost
	_, err := o.o.Deploys.UpdateDeploy(ctx, job.Deploy, func(x *record.Deploy) error {
		if x.Slack == nil {
			x.Slack = &record.SlackPost{Channel: job.Channel}
		}
		p := x.Slack
		switch {
		case p.TS != "" && p.Seq >= job.Seq:
			return errStale
		case now.Before(p.BusyUntil) && p.BusySeq >= job.Seq:
			return errStale
		case now.Before(p.BusyUntil):
			return errBusy
		}
		was = *p
		p.BusyUntil, p.BusySeq = now.Add(o.o.SendClaim), job.Seq
		return nil
	})
	return was, err
}

func (o *Outbox) handleSlackReply(ctx context.Context, j queue.Job) error {
	if o.o.Slack == nil {
		return nil
	}
	job, err := decode[slackJob](j)
	if err != nil {
		return err
	}
	defer o.lockDeploy(job.Deploy)()
	d, err := o.o.Deploys.GetDeploy(ctx, job.Deploy)
	if err != nil {
		return err
	}
	s := d.Slack
	switch {
	case s != nil && s.Replied:
		return nil
	case s == nil || s.TS == "":
		return errNoTS
	}
	msg, err := slackMessage(job.Message)
	if err != nil {
		return worker.Permanent(err)
	}
	_, err = o.o.Slack.Reply(ctx, s.Channel, s.TS, msg)
	o.note(ctx, job.Channel, err)
	if err != nil {
		return err
	}
	_, err = o.o.Deploys.UpdateDeploy(ctx, job.Deploy, func(x *record.Deploy) error {
		if x.Slack != nil {
			x.Slack.Replied = true
		}
		return nil
	})
	return err
}

func (o *Outbox) note(ctx context.Context, channel string, err error) {
	if o.o.Causes != nil {
		o.o.Causes.Note(ctx, channel, err)
	}
}

func slackMessage(m report.SlackMessage) (slack.Message, error) {
	blocks, err := json.Marshal(m.Blocks)
	if err != nil {
		return slack.Message{}, fmt.Errorf("outbox: the Slack message does not encode: %w", err)
	}
	return slack.Message{Text: m.Text, Blocks: blocks}, nil
}

func (o *Outbox) handleWebhook(ctx context.Context, j queue.Job) error {
	job, err := decode[webhookJob](j)
	if err != nil {
		return err
	}
	e, err := cdevents.Decode(job.Event)
	if err != nil {
		return worker.Permanent(fmt.Errorf("outbox: the queued event does not decode: %w", err))
	}
	now := o.o.Now()
	if cdevents.Expired(job.First, now) {
		return worker.Permanent(fmt.Errorf("webhook %s: event %s was given up after trying for 24 h", job.URL, e.ID()))
	}
	if o.o.CheckURL != nil {
		if err := o.o.CheckURL(ctx, job.URL); err != nil {
			return worker.Permanent(err)
		}
	}
	err = o.o.Sender.Send(ctx, job.URL, e)
	if err == nil {
		return nil
	}
	if !worker.IsPermanent(err) && cdevents.Expired(job.First, now.Add(cdevents.Backoff(j.Attempt))) {
		return worker.Permanent(fmt.Errorf("%w; it is not retried: the next try would be more than 24 h after the first", err))
	}
	return err
}
