package handlers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/shipbot/shipbot/internal/cdevents"
	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/logctx"
	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/store/record"
	"github.com/shipbot/shipbot/queue"
)

// PreviewGitHub is what the pull_request handler reads and writes on GitHub:
// the configuration (and the check run reporting a bad one), the preview's
// transient deployments and their statuses, and the one sticky PR comment.
type PreviewGitHub interface {
	GitHub
	CreateDeployment(ctx context.Context, owner, repo string, req gh.DeploymentRequest) (gh.Deployment, error)
	CreateDeploymentStatus(ctx context.Context, owner, repo string, deploymentID int64, st gh.DeploymentStatus) (int64, error)
	UpsertStickyComment(ctx context.Context, owner, repo string, number int, marker, body string) (gh.Comment, bool, error)
	FindDeployment(ctx context.Context, owner, repo, sha, environment, marker string) (gh.Deployment, bool, error)
}

// PreviewStore keeps what is known of each pull request's preview: the
// commit it runs, its URL and every GitHub deployment made for it; and
// the lock that lets one job at a time act on a preview.
type PreviewStore interface {
	PutDeploy(ctx context.Context, d record.Deploy) error
	PutPreview(ctx context.Context, p record.Preview) error
	GetPreview(ctx context.Context, repo string, number int) (record.Preview, error)
	ListPreviews(ctx context.Context) ([]record.Preview, error)
	AcquireLock(ctx context.Context, env record.EnvKey, holder string, ttl time.Duration) (record.Lease, bool, error)
	RenewLock(ctx context.Context, l record.Lease, ttl time.Duration) error
	ReleaseLock(ctx context.Context, l record.Lease) error
}

// DefaultPreviewLockTTL is how long a preview's lock outlives a job that
// stopped renewing it (its worker died); a job holding it renews it every
// third of that.
const DefaultPreviewLockTTL = 30 * time.Second

// previewsEnabled: with any of GitHub, Store or Previewers unset,
// pull_request events are only logged.
func (deps Deps) previewsEnabled() bool {
	return deps.GitHub != nil && deps.Store != nil && deps.Previewers != nil
}

// prEvent is the part of a pull_request payload the handler reads.
type prEvent struct {
	Action      string `json:"action"`
	Number      int    `json:"number"`
	PullRequest struct {
		Merged bool `json:"merged"`
		Head   struct {
			SHA  string `json:"sha"`
			Ref  string `json:"ref"`
			Repo *struct {
				FullName string `json:"full_name"`
			} `json:"repo"` // null when the fork was deleted
		} `json:"head"`
		Base struct {
			Repo struct {
				FullName string `json:"full_name"`
			} `json:"repo"`
		} `json:"base"`
	} `json:"pull_request"`
	origin
	Sender struct {
		Login string `json:"login"`
	} `json:"sender"`
}

// fromFork reports whether the PR's head lives in another repository.
func (e *prEvent) fromFork(repo string) bool {
	base := e.PullRequest.Base.Repo.FullName
	if base == "" {
		base = repo
	}
	h := e.PullRequest.Head.Repo
	return h == nil || !strings.EqualFold(h.FullName, base)
}

// pullRequest builds, updates or tears down the PR's preview (SPEC §4, §5).
// Every step is safe to repeat: a redelivered or retried event reuses the
// deployment recorded for the head SHA, EnsurePreview of the release already
// running is a no-op, the comment is upserted, and a closed preview is
// marked Closed so that a second close writes nothing.
func (deps Deps) pullRequest(ctx context.Context, job queue.Job) error {
	var e prEvent
	if err := decode(job, &e); err != nil {
		return err
	}
	logctx.From(ctx).Info("pull request event received", "action", e.Action, "pr", e.Number, "head", e.PullRequest.Head.SHA,
		"branch", e.PullRequest.Head.Ref, "merged", e.PullRequest.Merged)
	if !deps.previewsEnabled() || e.Number < 1 {
		return nil
	}
	p := deps.previewJob(job, &e)
	action := e.Action
	if action == "" {
		action = job.Action
	}
	// One job at a time per preview: a close that came while an update
	// still builds waits for it, so the teardown removes everything the
	// update made and the comment's last word is "torn down".
	ctx, unlock, err := p.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if action == "closed" {
		return p.close(ctx)
	}
	return p.update(ctx, action == "reopened")
}

// lock takes the preview's lock, waiting while another job holds it, and
// keeps it until unlock. The context it returns ends if the lock is lost
// (the store unreachable past its TTL): the job stops and is retried.
func (p *previewJob) lock(ctx context.Context) (context.Context, func(), error) {
	ttl := p.deps.PreviewLockTTL
	if ttl <= 0 {
		ttl = DefaultPreviewLockTTL
	}
	key := record.EnvKey{Repo: p.repo, Name: p.env}
	wait := 50 * time.Millisecond
	for {
		l, ok, err := p.deps.Store.AcquireLock(ctx, key, p.run, ttl)
		if err != nil {
			return ctx, nil, fmt.Errorf("lock the preview of #%d: %w", p.e.Number, err)
		}
		if ok {
			return p.hold(ctx, l, ttl)
		}
		logctx.From(ctx).Debug("another job acts on this preview; waiting", "pr", p.e.Number, "wait", wait)
		select {
		case <-ctx.Done():
			return ctx, nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, time.Second)
	}
}

// hold renews l until the returned func is called, and releases it then.
func (p *previewJob) hold(ctx context.Context, l record.Lease, ttl time.Duration) (context.Context, func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(ttl / 3)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if err := p.deps.Store.RenewLock(ctx, l, ttl); errors.Is(err, record.ErrLockLost) {
					logctx.From(ctx).Warn("lost the preview's lock; stopping", "pr", p.e.Number)
					cancel()
					return
				}
			}
		}
	}()
	return ctx, func() {
		cancel()
		<-done
		if err := p.deps.Store.ReleaseLock(context.WithoutCancel(ctx), l); err != nil {
			logctx.From(ctx).Warn("could not release the preview's lock; it expires by itself", "pr", p.e.Number, "err", err)
		}
	}, nil
}

// previewJob is one pull_request event acting on the PR's preview; its
// steps are its methods.
type previewJob struct {
	deps              Deps
	job               queue.Job
	c                 PreviewGitHub
	e                 *prEvent
	repo, owner, name string
	inst              int64
	env               string // the preview's environment, pr-N
	run               string // the id of this run's deploy record
}

func (deps Deps) previewJob(job queue.Job, e *prEvent) *previewJob {
	repo := e.repo(job)
	owner, name, _ := strings.Cut(repo, "/")
	inst := e.installation(job)
	id := job.DeliveryID
	if id == "" {
		id = job.ID
	}
	return &previewJob{
		deps: deps, job: job, c: deps.GitHub.Installation(inst), e: e, repo: repo, owner: owner, name: name, inst: inst,
		env: fmt.Sprintf("pr-%d", e.Number), run: "preview-" + id,
	}
}

// update makes the preview run the PR head. Its GitHub writes are at most
// 4 (SPEC §11): the transient deployment, in_progress (no queued: the
// build starts at once), the final status and the sticky comment. An
// update that comes after the PR's close (it waited for the close's lock,
// or was retried) builds nothing; only a reopen builds again.
func (p *previewJob) update(ctx context.Context, reopened bool) error {
	sha := p.e.PullRequest.Head.SHA
	if sha == "" {
		return nil
	}
	// Configuration comes from the default branch only (SPEC §3, §9): a PR
	// cannot change what its preview runs with.
	cfg, err := loadConfig(ctx, p.c, p.repo, p.e.Repository.DefaultBranch, sha)
	if cfg == nil {
		return err
	}
	if away, err := p.deps.elsewhere(ctx, p.job, p.repo, cfg.Preview.Driver, p.env, nil); away || err != nil {
		return err
	}
	if p.e.fromFork(p.repo) && !cfg.Preview.Forks {
		logctx.From(ctx).Info("pull request from a fork: no preview (preview.forks is off)", "pr", p.e.Number)
		return p.comment(ctx, report.ForkPreviewComment())
	}
	rec, err := p.stored(ctx)
	if err != nil {
		return err
	}
	if rec.Closed && !reopened {
		logctx.From(ctx).Info("the pull request was closed since: no preview", "pr", p.e.Number, "sha", sha)
		return nil
	}
	if rec.Closed { // reopened: the old deployments were made inactive at close
		rec = record.Preview{Repo: p.repo, Number: p.e.Number}
	}
	depID, err := p.deployment(ctx, &rec, sha)
	if err != nil {
		return err
	}
	snap, err := p.begin(ctx, rec.URL, depID)
	if err != nil {
		return err
	}
	url, buildLog, err := p.build(ctx, cfg, &snap, depID)
	if err != nil {
		return err
	}
	if err := p.finish(ctx, snap, depID, buildLog); err != nil {
		return err
	}
	if err := p.comment(ctx, report.PreviewComment(previewComment(snap))); err != nil {
		return err
	}
	if snap.State == report.StateSuccess {
		build := cdevents.EnvironmentModified
		if rec.URL == "" {
			build = cdevents.EnvironmentCreated
		}
		p.event(ctx, cfg, "built", build, url)
	}
	if url != "" && url != rec.URL {
		rec.URL, rec.UpdatedAt = url, time.Now()
		return p.save(ctx, rec)
	}
	return nil
}

// stored is what the store knows of the preview; a new one if nothing.
func (p *previewJob) stored(ctx context.Context) (record.Preview, error) {
	rec, err := p.deps.Store.GetPreview(ctx, p.repo, p.e.Number)
	switch {
	case errors.Is(err, record.ErrNotFound):
		return record.Preview{Repo: p.repo, Number: p.e.Number}, nil
	case err != nil:
		return rec, fmt.Errorf("read the preview of #%d: %w", p.e.Number, err)
	}
	return rec, nil
}

func (p *previewJob) save(ctx context.Context, rec record.Preview) error {
	if err := p.deps.Store.PutPreview(ctx, rec); err != nil {
		return fmt.Errorf("record the preview of #%d: %w", p.e.Number, err)
	}
	return nil
}

// deployment is the transient deployment of sha: the one recorded for it
// (a retry or redelivery), else a new one, recorded in rec.
//
// The previous SHA's deployment is not marked inactive here: that would
// be a fifth write per update. GitHub's auto_inactive does not apply to
// transient environments (and gh sends auto_inactive: false anyway), so
// the older deployments of pr-N stay "success" until the PR closes, when
// close marks every one of them inactive.
//
// The record says which deployment is being created (its marker, this
// run's id) before GitHub is asked, so a run after one that died between
// GitHub's answer and the record looks for that deployment (one read)
// instead of making a second.
func (p *previewJob) deployment(ctx context.Context, rec *record.Preview, sha string) (int64, error) {
	if rec.SHA == sha && len(rec.DeploymentIDs) > 0 {
		return rec.DeploymentIDs[len(rec.DeploymentIDs)-1], nil
	}
	if rec.Creating != "" && rec.CreatingSHA == sha {
		dep, found, err := p.c.FindDeployment(ctx, p.owner, p.name, sha, p.env, rec.Creating)
		if err != nil {
			return 0, fmt.Errorf("look for the preview deployment of #%d: %w", p.e.Number, err)
		}
		if found {
			return dep.ID, p.created(ctx, rec, sha, dep.ID)
		}
	}
	rec.Creating, rec.CreatingSHA = p.run, sha
	if err := p.save(ctx, *rec); err != nil {
		return 0, err
	}
	snap := report.Deploy{Env: p.env, SHA: sha, Ref: p.e.PullRequest.Head.Ref, PR: p.e.Number, Kind: report.KindPreview, State: report.StateInProgress}
	dep, err := p.c.CreateDeployment(ctx, p.owner, p.name, gh.DeploymentRequest{
		SHA: sha, Environment: p.env, Description: report.Status(snap).Description, Transient: true, Marker: p.run,
	})
	if err != nil {
		return 0, fmt.Errorf("create the preview deployment of #%d: %w", p.e.Number, err)
	}
	return dep.ID, p.created(ctx, rec, sha, dep.ID)
}

// created records deployment id as the preview's for sha.
func (p *previewJob) created(ctx context.Context, rec *record.Preview, sha string, id int64) error {
	rec.SHA = sha
	rec.DeploymentIDs = append(rec.DeploymentIDs, id)
	rec.Creating, rec.CreatingSHA = "", ""
	rec.UpdatedAt = time.Now()
	return p.save(ctx, *rec)
}

// begin records the run as a deploy, so that the page log_url points to
// exists, and returns its snapshot, in progress on the preview's last URL.
func (p *previewJob) begin(ctx context.Context, lastURL string, depID int64) (report.Deploy, error) {
	snap := report.Deploy{
		Env: p.env, SHA: p.e.PullRequest.Head.SHA, Ref: p.e.PullRequest.Head.Ref, PR: p.e.Number, Kind: report.KindPreview,
		State: report.StateInProgress, EnvironmentURL: lastURL, StartedAt: time.Now(),
	}
	if p.deps.PublicURL != "" {
		snap.LogURL = strings.TrimRight(p.deps.PublicURL, "/") + "/deploys/" + p.run
	}
	run := p.record(snap, depID)
	run.State = record.StateRunning
	if err := p.deps.Store.PutDeploy(ctx, run); err != nil {
		return snap, fmt.Errorf("record the preview run of #%d: %w", p.e.Number, err)
	}
	return snap, nil
}

// record is the run's deploy record for snap.
func (p *previewJob) record(snap report.Deploy, depID int64) record.Deploy {
	return record.Deploy{
		ID: p.run, Env: record.EnvKey{Repo: p.repo, Name: p.env}, SHA: snap.SHA, Ref: snap.Ref,
		Creator: p.e.Sender.Login, Kind: record.KindPreview, GitHubDeploymentID: depID,
		InstallationID: p.inst, CreatedAt: snap.StartedAt, StartedAt: snap.StartedAt, Reason: snap.Reason, FinishedAt: snap.FinishedAt,
	}
}

// build runs the preview with the configured driver and leaves the outcome
// in snap: success with the preview's URL, failure with the driver's
// error, or error when the bot has no such driver. It returns the URL and
// the build's log; an error only when the job should be tried again.
func (p *previewJob) build(ctx context.Context, cfg *repoconfig.Config, snap *report.Deploy, depID int64) (url, buildLog string, err error) {
	drv := p.deps.Previewers[cfg.Preview.Driver]
	if drv == nil {
		snap.State, snap.Reason = report.StateError, report.NoPreviewDriver(string(cfg.Preview.Driver))
		return "", "", nil
	}
	if err := p.status(ctx, depID, *snap); err != nil {
		return "", "", err
	}
	// A preview gets app.env and its own env and secrets, never an
	// environment's; a fork's preview gets no secrets at all.
	names := cfg.Preview.Secrets
	if p.e.fromFork(p.repo) {
		names = nil
	}
	vars, secrets, why := deploy.ResolveVars(ctx, p.deps.Secrets, p.repo, record.PreviewEnv, cfg.App.Env, cfg.Preview.Env, names)
	if why != nil {
		snap.State, snap.Reason, snap.FinishedAt = report.StateFailure, report.Reason(*why), time.Now()
		logctx.From(ctx).Warn("preview not built", "pr", p.e.Number, "sha", snap.SHA, "reason", snap.Reason)
		return "", "", nil
	}
	var out bytes.Buffer
	logw := deploy.NewMaskWriter(&out, secrets)
	url, runErr := drv.EnsurePreview(ctx, deploy.Preview{Repo: p.repo, Number: p.e.Number, Config: cfg.Preview, App: cfg.App, Vars: vars, Secrets: secrets},
		deploy.Release{Repo: p.repo, InstallationID: p.inst, SHA: snap.SHA, Ref: snap.Ref}, logw)
	logw.Flush()
	if runErr != nil && ctx.Err() != nil {
		return "", "", runErr // shutting down: try again later
	}
	snap.FinishedAt = time.Now()
	if runErr != nil {
		snap.State, snap.Reason = report.StateFailure, deploy.MaskSecrets(runErr.Error(), secrets)
		logctx.From(ctx).Warn("preview failed", "pr", p.e.Number, "sha", snap.SHA, "err", snap.Reason)
	} else {
		snap.State, snap.EnvironmentURL = report.StateSuccess, url
	}
	return url, out.String(), nil
}

// finish records how the run ended and sets the deployment's final status.
func (p *previewJob) finish(ctx context.Context, snap report.Deploy, depID int64, buildLog string) error {
	run := p.record(snap, depID)
	run.State, run.LogTail = runState(snap.State), buildLog
	if run.FinishedAt.IsZero() {
		run.FinishedAt = time.Now()
	}
	if err := p.deps.Store.PutDeploy(ctx, run); err != nil {
		return fmt.Errorf("record the preview run of #%d: %w", p.e.Number, err)
	}
	return p.status(ctx, depID, snap)
}

// runState is the deploy record's state for a preview run that ended in st.
func runState(st report.State) string {
	switch st {
	case report.StateFailure:
		return record.StateFailure
	case report.StateError:
		return record.StateError
	}
	return record.StateSuccess
}

// previewComment is the PR comment's snapshot of a run that ended.
func previewComment(snap report.Deploy) report.Preview {
	c := report.Preview{SHA: snap.SHA, URL: snap.EnvironmentURL, LogURL: snap.LogURL, UpdatedAt: snap.FinishedAt}
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = time.Now()
	}
	if snap.State == report.StateSuccess {
		c.State = report.PreviewReady
	} else {
		c.State, c.Reason = report.PreviewFailed, snap.Reason
	}
	return c
}

// comment writes body into the PR's one preview comment.
func (p *previewJob) comment(ctx context.Context, body string) error {
	if _, _, err := p.c.UpsertStickyComment(ctx, p.owner, p.name, p.e.Number, report.PreviewMarker, body); err != nil {
		return fmt.Errorf("comment on #%d: %w", p.e.Number, err)
	}
	return nil
}

// close tears the preview down, marks every deployment of it inactive,
// says so in the comment and marks the preview Closed.
func (p *previewJob) close(ctx context.Context) error {
	rec, err := p.stored(ctx)
	if err != nil {
		return err
	}
	// The configuration names the driver to tear down with and the
	// webhooks to tell; a file with mistakes leaves cfg nil.
	cfg, err := loadConfig(ctx, p.c, p.repo, p.e.Repository.DefaultBranch, p.e.PullRequest.Head.SHA)
	if cfg == nil && err != nil {
		return err
	}
	drv := repoconfig.DriverLocal // what a repository without the file gets
	if cfg != nil {
		drv = cfg.Preview.Driver
	}
	if away, err := p.deps.elsewhere(ctx, p.job, p.repo, drv, p.env, nil); away || err != nil {
		return err
	}
	if err := p.teardown(ctx, cfg); err != nil {
		return err
	}
	if rec.Creating != "" && !rec.Closed {
		// A run died creating a deployment: mark it inactive with the rest.
		dep, found, err := p.c.FindDeployment(ctx, p.owner, p.name, rec.CreatingSHA, p.env, rec.Creating)
		if err != nil {
			return fmt.Errorf("look for the preview deployment of #%d: %w", p.e.Number, err)
		}
		if found {
			rec.SHA, rec.DeploymentIDs = rec.CreatingSHA, append(rec.DeploymentIDs, dep.ID)
		}
		rec.Creating, rec.CreatingSHA = "", ""
	}
	if rec.Closed || len(rec.DeploymentIDs) == 0 {
		// Already torn down, or never built (a fork): nothing to say. The
		// record says closed all the same, so that an update that waited
		// for this close builds nothing.
		if rec.Closed {
			return nil
		}
		rec.Closed, rec.UpdatedAt = true, time.Now()
		return p.save(ctx, rec)
	}
	snap := report.Deploy{Env: p.env, SHA: rec.SHA, PR: p.e.Number, Kind: report.KindPreview, State: report.StateInactive}
	for _, id := range rec.DeploymentIDs {
		if err := p.status(ctx, id, snap); err != nil {
			return err
		}
	}
	body := report.PreviewComment(report.Preview{SHA: rec.SHA, State: report.PreviewTornDown, Reason: report.PreviewClosed(p.e.PullRequest.Merged), UpdatedAt: time.Now()})
	if err := p.comment(ctx, body); err != nil {
		return err
	}
	if cfg != nil {
		p.event(ctx, cfg, "deleted", cdevents.EnvironmentDeleted, "")
	}
	rec.Closed, rec.URL, rec.UpdatedAt = true, "", time.Now()
	if err := p.save(ctx, rec); err != nil {
		return err
	}
	logctx.From(ctx).Info("preview torn down", "pr", p.e.Number, "deployments", len(rec.DeploymentIDs))
	return nil
}

// teardown removes the preview with every driver: the configuration may
// have changed since the preview was built. Only the configured driver's
// failure keeps the job failing; another's is logged (an AWS sweep removes
// what a closed PR left behind there). cfg is nil when the configuration
// has mistakes: then every driver's failure is only logged.
func (p *previewJob) teardown(ctx context.Context, cfg *repoconfig.Config) error {
	var configured repoconfig.Driver
	if cfg != nil {
		configured = cfg.Preview.Driver
	}
	pv := deploy.Preview{Repo: p.repo, Number: p.e.Number}
	for kind, d := range p.deps.Previewers {
		if err := d.TeardownPreview(ctx, pv); err != nil {
			if kind == configured {
				return fmt.Errorf("tear down the preview of #%d: %w", p.e.Number, err)
			}
			logctx.From(ctx).Warn("could not tear down with a driver the configuration does not use", "driver", string(kind), "pr", p.e.Number, "err", err)
		}
	}
	return nil
}

// status sets a deployment status of the preview from snap.
func (p *previewJob) status(ctx context.Context, id int64, snap report.Deploy) error {
	st := report.Status(snap)
	if _, err := p.c.CreateDeploymentStatus(ctx, p.owner, p.name, id, gh.DeploymentStatus{
		State: gh.DeploymentState(st.State), EnvironmentURL: st.EnvironmentURL, LogURL: st.LogURL, Description: st.Description,
	}); err != nil {
		return fmt.Errorf("set deployment %d %s: %w", id, st.State, err)
	}
	return nil
}

// event queues a preview's CDEvent for the repository's notify.webhooks.
// Its id is the job's run and what happened, so a retried job queues
// nothing new. A queue that cannot take it is logged: the preview stands.
func (p *previewJob) event(ctx context.Context, cfg *repoconfig.Config, what string,
	build func(cdevents.Meta, cdevents.Preview) (event.Event, error), url string) {
	if p.deps.Outbox == nil || len(cfg.Notify.Webhooks) == 0 {
		return
	}
	e, err := build(cdevents.Meta{ID: p.run + "-" + what, Source: cdevents.SourceOf(p.deps.PublicURL), Time: time.Now()},
		cdevents.Preview{Repo: p.repo, Name: p.env, URL: url})
	if err == nil {
		err = p.deps.Outbox.Webhooks(ctx, p.repo, cfg.Notify.Webhooks, e)
	}
	if err != nil {
		logctx.From(ctx).Warn("webhooks: the preview's event was not queued", "pr", p.e.Number, "err", err)
	}
}
