package main

import (
	"context"
	"time"

	"github.com/shipbot/shipbot/internal/cdevents"
	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/logctx"
	"github.com/shipbot/shipbot/internal/outbox"
	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/slack"
	"github.com/shipbot/shipbot/internal/store/record"
	"github.com/shipbot/shipbot/internal/worker"
)

// buildOutbox opens the outbox's own queue (beside the job queue: in
// Redis under shipbot:notify, or DATA_DIR/notify.db), its Slack client
// when SLACK_BOT_TOKEN is set and its webhook sender, and a worker pool
// that delivers from it.
func (b *bot) buildOutbox(ctx context.Context, holder string) (*outbox.Outbox, error) {
	q, err := b.queueAt("shipbot:notify", "the notification queue", "notify.db", "the notification queue", outbox.QueueOptions(timingsFor(b.cfg.JobTimeout).visibility, b.outboxBackoff))
	if err != nil {
		return nil, err
	}
	o := outbox.Options{
		Queue:    q,
		Deploys:  b.store,
		Sender:   cdevents.NewSender(string(b.cfg.EventsSecret)),
		CheckURL: cdevents.CheckURL,
		Now:      b.now,
		Logger:   b.log,
	}
	if b.cfg.SlackBotToken != "" {
		sc, err := slack.New(b.cfg.SlackBotToken, slack.WithAPIURL(b.cfg.SlackAPIURL))
		if err != nil {
			return nil, err
		}
		b.slackCauses = slack.NewCauses(b.now)
		o.Slack, o.Causes = sc, b.slackCauses
	}
	ob, err := outbox.New(o)
	if err != nil {
		return nil, err
	}
	r := worker.NewRouter()
	ob.Register(r)
	b.outboxPool = worker.NewPool(q, r, worker.Options{
		Consumer:  "notify-" + holder,
		Heartbeat: timingsFor(b.cfg.JobTimeout).heartbeat,
		Logger:    b.log,
	})
	logctx.From(ctx).Debug("outbox ready", "slack", o.Slack != nil)
	b.outbox = ob
	return ob, nil
}

// problems are what the operator must fix outside any deploy, for the
// dashboard: Slack's failures still in effect, each with its fix.
func (b *bot) problems() []string {
	if b.slackCauses == nil {
		return nil
	}
	var out []string
	for _, c := range b.slackCauses.Open() {
		out = append(out, "Slack: "+c.Fix)
	}
	return out
}

// withOutboxBackoff retries Slack messages and webhooks on backoff instead
// of cdevents.Backoff's 10 s and more: a test plays an outage of seconds.
func withOutboxBackoff(backoff func(int) time.Duration) buildOption {
	return func(b *bot) { b.outboxBackoff = backoff }
}

// auditRedelivery writes a redelivery the bot asked for to the audit log.
func (b *bot) auditRedelivery(ctx context.Context, d gh.HookDelivery) {
	e := record.AuditEntry{
		Actor: record.ActorShipbot, Action: record.ActionRedeliveryRequested, Outcome: record.OutcomeSuccess,
		Text: report.AuditRedelivery(d.GUID, d.Event, d.Action, d.Status),
	}
	if _, err := b.store.AppendAudit(ctx, e); err != nil {
		logctx.From(ctx).Warn("audit log: the redelivery was not written", "delivery", d.GUID, "err", err)
	}
}
