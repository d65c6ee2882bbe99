// Package notify tells GitHub about deploys: it is the engine's Notifier.
// It turns engine events into report.Deploy snapshots and writes what
// report renders as deployment statuses and the shipbot/ENV check run,
// keeping within SPEC §11's budget of 5 + ⌈batches/2⌉ writes per rollout.
// Every text it sends comes from package report, which also phrases the
// engine's reasons (Phrase).
package notify

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/outbox"
	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/store/record"
)

// GitHub is the calls the Notifier makes on an installation.
type GitHub interface {
	CreateDeployment(ctx context.Context, owner, repo string, req gh.DeploymentRequest) (gh.Deployment, error)
	FindDeployment(ctx context.Context, owner, repo, sha, environment, marker string) (gh.Deployment, bool, error)
	FindCheckRun(ctx context.Context, owner, repo, sha, name, externalID string) (int64, bool, error)
	CreateDeploymentStatus(ctx context.Context, owner, repo string, deploymentID int64, st gh.DeploymentStatus) (int64, error)
	CreateCheckRun(ctx context.Context, owner, repo string, run gh.CheckRun) (int64, error)
	UpdateCheckRun(ctx context.Context, owner, repo string, id int64, run gh.CheckRun) (bool, error)
}

// Options configure a Notifier.
type Options struct {
	// Installation returns the GitHub client acting for an installation.
	Installation func(id int64) GitHub
	// PublicURL is where the bot is reached; log_url is PublicURL/deploys/{id}.
	PublicURL string
	// EnvironmentURL is an environment's address when its configuration
	// has no url (the local driver's proxy). May be nil.
	EnvironmentURL func(repo, env string) string
	// Outbox carries what is told beyond GitHub: the deploy's Slack
	// message and the CDEvents for notify.webhooks. nil tells nobody else.
	Outbox *outbox.Outbox
	// WebURL is GitHub's web address (https://github.com, or a GitHub
	// Enterprise Server's), for the links in Slack.
	WebURL string
	// Logger receives what could not be queued for Slack or webhooks:
	// that never stops a deploy. Default slog.Default().
	Logger *slog.Logger
}

// Notifier implements deploy.Notifier on GitHub.
type Notifier struct {
	o Options

	mu     sync.Mutex
	active map[string]*tracker // by deploy id, while its rollout runs
	seq    int64               // the last Slack rendering's sequence number
}

var _ deploy.Notifier = (*Notifier)(nil)

// New returns a Notifier.
func New(o Options) (*Notifier, error) {
	if o.Installation == nil {
		return nil, errors.New("notify: Options.Installation is nil")
	}
	o.PublicURL = strings.TrimRight(o.PublicURL, "/")
	o.WebURL = strings.TrimRight(o.WebURL, "/")
	if o.WebURL == "" {
		o.WebURL = "https://github.com"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Notifier{o: o, active: map[string]*tracker{}}, nil
}

// tracker is what is known of one rollout, as the snapshot report renders.
type tracker struct {
	snap        report.Deploy
	started     bool // the in_progress status was written
	budget      int  // check run progress writes left (SPEC §11)
	lastBatch   int
	failReason  string // the first step that failed, in words
	rollingBack bool
}

func split(repo string) (owner, name string) {
	owner, name, _ = strings.Cut(repo, "/")
	return owner, name
}

// snapshot is the report.Deploy of a deploy before anything happened.
func (n *Notifier) snapshot(d deploy.DeployInfo) report.Deploy {
	url := d.EnvironmentURL
	if url == "" && n.o.EnvironmentURL != nil {
		url = n.o.EnvironmentURL(d.Repo, d.Environment)
	}
	s := report.Deploy{
		Env: d.Environment, SHA: d.SHA, Ref: d.Ref, Creator: d.Creator, Kind: report.Kind(d.Kind),
		State: report.StateQueued, EnvironmentURL: url, Previous: d.Previous, StartedAt: d.StartedAt,
	}
	if n.o.PublicURL != "" {
		s.LogURL = n.o.PublicURL + "/deploys/" + d.ID
	}
	switch d.State {
	case record.StateWaiting:
		s.State, s.WaitingOn = report.StateWaitingForChecks, d.WaitingOn
		if f := d.Frozen; f != nil {
			s.State, s.Frozen = report.StateFrozen, &report.HeldFreeze{Window: f.Window, Zone: f.Zone, Until: f.Until, Since: f.Since}
		}
	case record.StateLocked:
		s.State, s.LockedBy, s.LockReason = report.StateLocked, d.LockedBy, d.LockReason
	}
	return s
}

// Created creates the deployment with a queued status and the queued
// shipbot/ENV check run: 3 writes. The deployment carries the deploy's id
// as its marker; when d.Reannounce says an earlier attempt may have
// created it (and the check run) without the ids being recorded, both are
// looked for first (2 reads) and reused, so a deploy never has two.
func (n *Notifier) Created(ctx context.Context, d deploy.DeployInfo) (int64, int64, error) {
	c := n.o.Installation(d.InstallationID)
	owner, repo := split(d.Repo)
	snap := n.snapshot(d)
	n.slack(ctx, d, snap)
	st := report.Status(snap)
	var dep gh.Deployment
	found := false
	if d.Reannounce {
		var err error
		if dep, found, err = c.FindDeployment(ctx, owner, repo, d.SHA, d.Environment, d.ID); err != nil {
			return 0, 0, err
		}
	}
	if !found {
		var err error
		dep, err = c.CreateDeployment(ctx, owner, repo, gh.DeploymentRequest{
			SHA: d.SHA, Environment: d.Environment, Description: st.Description,
			Production: d.Production || strings.EqualFold(d.Environment, "production"),
			Transient:  d.Kind == record.KindPreview, Marker: d.ID,
		})
		if err != nil {
			return 0, 0, err
		}
	}
	if err := n.status(ctx, c, owner, repo, dep.ID, snap); err != nil {
		return dep.ID, 0, err
	}
	cr := report.CheckRun(snap)
	if found {
		id, ok, err := c.FindCheckRun(ctx, owner, repo, d.SHA, report.CheckRunName(d.Environment), d.ID)
		if err != nil {
			return dep.ID, 0, err
		}
		if ok {
			return dep.ID, id, n.checkRun(ctx, c, owner, repo, id, snap)
		}
	}
	id, err := c.CreateCheckRun(ctx, owner, repo, gh.CheckRun{
		Name: report.CheckRunName(d.Environment), HeadSHA: d.SHA, Status: cr.Status, Conclusion: cr.Conclusion,
		DetailsURL: snap.LogURL, ExternalID: d.ID,
		Output: &gh.CheckRunOutput{Title: cr.Title, Summary: cr.Summary, Text: cr.Text},
	})
	if err != nil {
		return dep.ID, 0, err
	}
	return dep.ID, id, nil
}

func (n *Notifier) status(ctx context.Context, c GitHub, owner, repo string, id int64, snap report.Deploy) error {
	if id == 0 {
		return nil
	}
	st := report.Status(snap)
	_, err := c.CreateDeploymentStatus(ctx, owner, repo, id, gh.DeploymentStatus{
		State: gh.DeploymentState(st.State), EnvironmentURL: st.EnvironmentURL, LogURL: st.LogURL, Description: st.Description,
	})
	return err
}

func (n *Notifier) checkRun(ctx context.Context, c GitHub, owner, repo string, id int64, snap report.Deploy) error {
	if id == 0 {
		return nil
	}
	cr := report.CheckRun(snap)
	run := gh.CheckRun{Status: cr.Status, Conclusion: cr.Conclusion, Output: &gh.CheckRunOutput{Title: cr.Title, Summary: cr.Summary, Text: cr.Text}}
	if cr.Status == "completed" && !snap.FinishedAt.IsZero() {
		run.CompletedAt = snap.FinishedAt
	}
	if !snap.StartedAt.IsZero() {
		run.StartedAt = snap.StartedAt
	}
	_, err := c.UpdateCheckRun(ctx, owner, repo, id, run)
	return err
}

func (n *Notifier) track(d deploy.DeployInfo) *tracker {
	n.mu.Lock()
	defer n.mu.Unlock()
	t := n.active[d.ID]
	if t == nil {
		t = &tracker{snap: n.snapshot(d), lastBatch: -1}
		t.snap.State = report.StateInProgress
		n.active[d.ID] = t
	}
	return t
}

func (n *Notifier) forget(id string) {
	n.mu.Lock()
	delete(n.active, id)
	n.mu.Unlock()
}

// Update follows the rollout and writes: the in_progress status at the
// first batch, and check run progress within the budget — once at the plan
// when there is room, then after every other batch, never after the last
// (the final write follows at once).
func (n *Notifier) Update(ctx context.Context, d deploy.DeployInfo, ev deploy.Event) error {
	t := n.track(d)
	write := t.follow(ev)
	switch ev.Kind {
	case deploy.BatchStarted, deploy.BatchFailed, deploy.RollingBack:
		n.slack(ctx, d, t.snap)
	}
	if ev.Kind == deploy.BatchStarted && !t.started {
		t.started = true
		c := n.o.Installation(d.InstallationID)
		owner, repo := split(d.Repo)
		if err := n.status(ctx, c, owner, repo, d.GitHubDeploymentID, t.snap); err != nil {
			return err
		}
	}
	if !write {
		return nil
	}
	c := n.o.Installation(d.InstallationID)
	owner, repo := split(d.Repo)
	return n.checkRun(ctx, c, owner, repo, d.CheckRunID, t.snap)
}

// follow brings the snapshot to ev and reports whether the check run's
// progress is written now.
func (t *tracker) follow(ev deploy.Event) (write bool) {
	s := &t.snap
	switch ev.Kind {
	case deploy.Planned:
		s.Batches, s.Total, s.Done, s.Notes = batchesOf(ev.Plan)
		if s.StartedAt.IsZero() {
			s.StartedAt = ev.At
		}
		// Fixed writes: deployment, queued, check run, in_progress, final
		// status, final check run = 6; what remains of 5+⌈b/2⌉ is progress.
		b := len(s.Batches)
		t.budget = (b+1)/2 - 1
		t.lastBatch = b - 1
		return t.spend()
	case deploy.BatchStarted:
		if ev.Batch < len(s.Batches) {
			for i := 0; i < ev.Batch; i++ {
				if s.Batches[i].State == report.BatchBaking {
					s.Batches[i].State = report.BatchDone
					s.Batches[i].Finished = ev.At
				}
			}
			s.Batches[ev.Batch].State = report.BatchDraining
			s.Batches[ev.Batch].Started = ev.At
		}
	case deploy.InstanceStep:
		t.batchIs(ev.Batch, stepState(ev.Step, t.rollingBack))
	case deploy.BatchHealthy:
		if ev.Batch < len(s.Batches) {
			s.Batches[ev.Batch].State = report.BatchDone
			s.Batches[ev.Batch].Finished = ev.At
			s.Done += len(s.Batches[ev.Batch].Instances)
		}
		return ev.Batch%2 == 1 && ev.Batch < t.lastBatch && t.spend()
	case deploy.Baking:
		t.batchIs(ev.Batch, report.BatchBaking)
	case deploy.Judged:
		// Shown with the next write; a judgement alone is not worth one.
		if ev.Batch < len(s.Batches) {
			s.Batches[ev.Batch].Analysis = ev.Analysis
		}
	case deploy.BatchFailed:
		t.batchIs(ev.Batch, report.BatchFailed)
		if ev.Reason != nil && t.failReason == "" {
			t.failReason = report.Reason(*ev.Reason)
		}
		s.FailedInstance = ev.Instance
	case deploy.RollingBack:
		t.rollingBack = true
	}
	return false
}

// spend takes one progress write from the budget, if one is left.
func (t *tracker) spend() bool {
	if t.budget <= 0 {
		return false
	}
	t.budget--
	return true
}

func (t *tracker) batchIs(i int, st report.BatchState) {
	if i < len(t.snap.Batches) {
		t.snap.Batches[i].State = st
	}
}

// Finished writes the final deployment status and completes the check
// run: 2 writes.
func (n *Notifier) Finished(ctx context.Context, d deploy.DeployInfo, res deploy.Result) error {
	t := n.track(d)
	defer n.forget(d.ID)
	s := t.snap
	s.State = finalState(res.Outcome)
	s.StartedAt, s.FinishedAt = res.Started, res.Finished
	if s.StartedAt.IsZero() {
		s.StartedAt = d.StartedAt
	}
	s.Previous = res.Previous
	s.RolledBack = res.RolledBack
	if res.FailedInstance != "" {
		s.FailedInstance = res.FailedInstance
	}
	applyResult(&s, res)
	switch s.State {
	case report.StateFailure:
		s.Reason = t.failReason
		if s.Reason == "" {
			s.Reason = report.Reason(res.Reason)
		}
	case report.StateError, report.StateCancelled:
		s.Reason = report.Reason(res.Reason)
	}
	n.slack(ctx, d, s)
	n.events(ctx, d, s, res)
	c := n.o.Installation(d.InstallationID)
	owner, repo := split(d.Repo)
	if err := n.status(ctx, c, owner, repo, d.GitHubDeploymentID, s); err != nil {
		return err
	}
	return n.checkRun(ctx, c, owner, repo, d.CheckRunID, s)
}

// Superseded marks the deployment inactive, naming the SHA that replaced
// it, and closes its check run as neutral: 2 writes.
func (n *Notifier) Superseded(ctx context.Context, d deploy.DeployInfo) error {
	defer n.forget(d.ID)
	s := n.snapshot(d)
	s.State, s.SupersededBy = report.StateSuperseded, d.SupersededBy
	n.slack(ctx, d, s)
	c := n.o.Installation(d.InstallationID)
	owner, repo := split(d.Repo)
	if err := n.status(ctx, c, owner, repo, d.GitHubDeploymentID, s); err != nil {
		return err
	}
	return n.checkRun(ctx, c, owner, repo, d.CheckRunID, s)
}

// Waiting says why a queued deploy waits (a /lock, a freeze window,
// required checks) in its deployment status and check run: 2 writes.
func (n *Notifier) Waiting(ctx context.Context, d deploy.DeployInfo) error {
	s := n.snapshot(d)
	n.slack(ctx, d, s)
	c := n.o.Installation(d.InstallationID)
	owner, repo := split(d.Repo)
	if err := n.status(ctx, c, owner, repo, d.GitHubDeploymentID, s); err != nil {
		return err
	}
	return n.checkRun(ctx, c, owner, repo, d.CheckRunID, s)
}

// Phrase says an engine's reason as GitHub is told it, for the deploy
// record and log the engine keeps.
func (n *Notifier) Phrase(r record.Reason) string { return report.Reason(r) }

func finalState(o deploy.Outcome) report.State {
	switch o {
	case deploy.OutcomeSuccess:
		return report.StateSuccess
	case deploy.OutcomeFailure:
		return report.StateFailure
	case deploy.OutcomeCancelled:
		return report.StateCancelled
	default:
		return report.StateError
	}
}

func batchesOf(p *deploy.Plan) (bs []report.Batch, total, done int, notes []string) {
	if p == nil {
		return nil, 0, 0, nil
	}
	total, done = len(p.Skipped), len(p.Skipped)
	for _, b := range p.Batches {
		ids := make([]string, len(b.Instances))
		for i, inst := range b.Instances {
			ids[i] = inst.ID
		}
		total += len(ids)
		bs = append(bs, report.Batch{Index: b.Index, Canary: b.Canary, Zone: b.Zone, Instances: ids, State: report.BatchPending})
	}
	return bs, total, done, report.PlanNotes(p.Notes)
}

func stepState(step string, rollingBack bool) report.BatchState {
	if rollingBack {
		return report.BatchRollingBack
	}
	switch step {
	case deploy.StepDrain, deploy.StepSurge:
		return report.BatchDraining
	case deploy.StepInstall:
		return report.BatchInstalling
	case deploy.StepHealth:
		return report.BatchChecking
	case deploy.StepAdmit:
		return report.BatchAdmitting
	case deploy.StepBake, deploy.StepRetire:
		return report.BatchBaking
	}
	return report.BatchDraining
}

// applyResult sets the batches' final states and times from the result,
// which is the truth when events were missed (a resumed deploy).
func applyResult(s *report.Deploy, res deploy.Result) {
	for _, br := range res.Batches {
		if br.Index < 0 || br.Index >= len(s.Batches) {
			continue
		}
		b := &s.Batches[br.Index]
		if br.Analysis != nil {
			b.Analysis = br.Analysis
		}
		switch {
		case br.Rollback && br.Failure == nil:
			b.State = report.BatchRolledBack
		case br.Rollback:
			b.State = report.BatchFailed
		case br.Failure != nil:
			b.State = report.BatchFailed
		default:
			b.State = report.BatchDone
			b.Started, b.Finished = br.Started, br.Finished
		}
	}
	if res.Outcome == deploy.OutcomeSuccess {
		s.Done = s.Total
		for i := range s.Batches {
			s.Batches[i].State = report.BatchDone
		}
	} else {
		done := 0
		for _, b := range s.Batches {
			if b.State == report.BatchDone {
				done += len(b.Instances)
			}
		}
		if s.Total > 0 {
			s.Done = done + (s.Total - countInstances(s.Batches))
		}
	}
}

func countInstances(bs []report.Batch) int {
	n := 0
	for _, b := range bs {
		n += len(b.Instances)
	}
	return n
}
