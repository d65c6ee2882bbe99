package notify

import (
	"context"
	"strconv"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/shipbot/shipbot/internal/cdevents"
	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/store/record"
)

// nextSeq is a sequence number for a Slack rendering, larger than every
// one before it in this process and, being the clock's nanoseconds, than
// those of a bot that ran before it.
func (n *Notifier) nextSeq() int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.seq = max(n.seq+1, time.Now().UnixNano())
	return n.seq
}

// slack queues the deploy's Slack message as snap shows it, and at a
// failure the thread reply, when the repository announces the deploy's
// environment. A queue that cannot take it is logged: Slack never stops a
// deploy.
func (n *Notifier) slack(ctx context.Context, d deploy.DeployInfo, snap report.Deploy) {
	ob, cfg := n.o.Outbox, d.Notify.Slack
	if !ob.SlackEnabled() || !cfg.Announces(d.Environment, d.Kind == record.KindPreview) {
		return
	}
	sd := n.slackDeploy(d, snap)
	if err := ob.Slack(ctx, d.ID, d.Repo, cfg.Channel, n.nextSeq(), report.SlackDeployMessage(sd)); err != nil {
		n.o.Logger.Warn("slack: the deploy's message was not queued; it is sent with the deploy's next step", "deploy", d.ID, "err", err)
	}
	if reply, ok := report.SlackThreadReply(sd); ok && snap.State != report.StateQueued {
		if err := ob.SlackReply(ctx, d.ID, d.Repo, cfg.Channel, reply); err != nil {
			n.o.Logger.Warn("slack: the failure's thread reply was not queued", "deploy", d.ID, "err", err)
		}
	}
}

func (n *Notifier) slackDeploy(d deploy.DeployInfo, snap report.Deploy) report.SlackDeploy {
	web := n.o.WebURL + "/" + d.Repo
	sd := report.SlackDeploy{Deploy: snap, Repo: d.Repo, CommitURL: web + "/commit/" + d.SHA, DeploymentURL: web + "/deployments/" + d.Environment}
	if snap.PR > 0 {
		sd.PRURL = web + "/pull/" + strconv.Itoa(snap.PR)
	}
	return sd
}

// events queues the CDEvents a finished deploy makes for notify.webhooks:
// service.deployed, upgraded or rolledback on success, incident.detected
// when the rollout halted. Their ids come from the deploy's, so a Finished
// said again after a crash queues nothing new.
func (n *Notifier) events(ctx context.Context, d deploy.DeployInfo, s report.Deploy, res deploy.Result) {
	urls := d.Notify.Webhooks
	if n.o.Outbox == nil || len(urls) == 0 || d.Kind == record.KindPreview {
		return
	}
	at := res.Finished
	if at.IsZero() {
		at = time.Now()
	}
	meta := func(what string) cdevents.Meta {
		return cdevents.Meta{ID: "deploy-" + d.ID + "-" + what, Source: cdevents.SourceOf(n.o.PublicURL), Time: at}
	}
	rel := cdevents.Release{Repo: d.Repo, Environment: d.Environment, SHA: d.SHA}
	var (
		e   event.Event
		err error
	)
	switch {
	case res.Outcome == deploy.OutcomeSuccess && d.Kind == record.KindRollback:
		e, err = cdevents.ServiceRolledBack(meta("rolledback"), rel)
	case res.Outcome == deploy.OutcomeSuccess && d.Previous == "" && res.Previous == "":
		e, err = cdevents.ServiceDeployed(meta("deployed"), rel)
	case res.Outcome == deploy.OutcomeSuccess:
		e, err = cdevents.ServiceUpgraded(meta("upgraded"), rel)
	case res.Outcome == deploy.OutcomeFailure:
		e, err = cdevents.IncidentDetected(meta("incident"), cdevents.Halt{
			DeployID: d.ID, Repo: d.Repo, Environment: d.Environment, SHA: d.SHA, Reason: or(s.Reason, "the rollout halted"),
		})
	default:
		return // cancelled, or it could not begin: nothing changed where it runs
	}
	if err == nil {
		err = n.o.Outbox.Webhooks(ctx, d.Repo, urls, e)
	}
	if err != nil {
		n.o.Logger.Warn("webhooks: the deploy's event was not queued", "deploy", d.ID, "err", err)
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
