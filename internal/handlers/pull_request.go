package handlers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

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
}

// PreviewStore keeps what is known of each pull request's preview: the
// commit it runs, its URL and every GitHub deployment made for it.
type PreviewStore interface {
	PutDeploy(ctx context.Context, d record.Deploy) error
	PutPreview(ctx context.Context, p record.Preview) error
	GetPreview(ctx context.Context, repo string, number int) (record.Preview, error)
}

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
	log := logctx.From(ctx)
	log.Info("pull request event received", "action", e.Action, "pr", e.Number, "head", e.PullRequest.Head.SHA,
		"branch", e.PullRequest.Head.Ref, "merged", e.PullRequest.Merged)
	if !deps.previewsEnabled() || e.Number < 1 {
		return nil
	}
	repo := e.repo(job)
	inst := e.installation(job)
	owner, name, _ := strings.Cut(repo, "/")
	c := deps.GitHub.Installation(inst)
	action := e.Action
	if action == "" {
		action = job.Action
	}
	if action == "closed" {
		return deps.closePreview(ctx, c, owner, name, repo, &e)
	}
	return deps.updatePreview(ctx, c, owner, name, repo, inst, &e, job)
}

// updatePreview makes the preview run the PR head. Its GitHub writes are at
// most 4 (SPEC §11): the transient deployment, in_progress (no queued: the
// build starts at once), the final status and the sticky comment.
func (deps Deps) updatePreview(ctx context.Context, c PreviewGitHub, owner, name, repo string, inst int64, e *prEvent, job queue.Job) error {
	log := logctx.From(ctx)
	sha := e.PullRequest.Head.SHA
	if sha == "" {
		return nil
	}

	// Configuration comes from the default branch only (SPEC §3, §9): a PR
	// cannot change what its preview runs with.
	cfg, err := loadConfig(ctx, c, repo, e.Repository.DefaultBranch, sha)
	if cfg == nil {
		return err
	}

	if e.fromFork(repo) && !cfg.Preview.Forks {
		log.Info("pull request from a fork: no preview (preview.forks is off)", "pr", e.Number)
		_, _, err := c.UpsertStickyComment(ctx, owner, name, e.Number, report.PreviewMarker, report.ForkPreviewComment())
		if err != nil {
			return fmt.Errorf("comment on #%d: %w", e.Number, err)
		}
		return nil
	}

	rec, err := deps.Store.GetPreview(ctx, repo, e.Number)
	switch {
	case errors.Is(err, record.ErrNotFound):
		rec = record.Preview{Repo: repo, Number: e.Number}
	case err != nil:
		return fmt.Errorf("read the preview of #%d: %w", e.Number, err)
	}
	if rec.Closed { // reopened: the old deployments were made inactive at close
		rec = record.Preview{Repo: repo, Number: e.Number}
	}

	// One transient deployment per head SHA. The previous SHA's deployment
	// is not marked inactive here: that would be a fifth write per update.
	// GitHub's auto_inactive does not apply to transient environments (and
	// gh sends auto_inactive: false anyway), so the older deployments of
	// pr-N stay "success" until the PR closes, when closePreview marks every
	// one of them inactive.
	env := fmt.Sprintf("pr-%d", e.Number)
	var depID int64
	if rec.SHA == sha && len(rec.DeploymentIDs) > 0 {
		depID = rec.DeploymentIDs[len(rec.DeploymentIDs)-1] // a retry or redelivery
	} else {
		snap := report.Deploy{Env: env, SHA: sha, Ref: e.PullRequest.Head.Ref, PR: e.Number, Kind: report.KindPreview, State: report.StateInProgress}
		dep, err := c.CreateDeployment(ctx, owner, name, gh.DeploymentRequest{
			SHA: sha, Environment: env, Description: report.Status(snap).Description, Transient: true,
		})
		if err != nil {
			return fmt.Errorf("create the preview deployment of #%d: %w", e.Number, err)
		}
		depID = dep.ID
		rec.SHA = sha
		rec.DeploymentIDs = append(rec.DeploymentIDs, depID)
		rec.UpdatedAt = time.Now()
		if err := deps.Store.PutPreview(ctx, rec); err != nil {
			return fmt.Errorf("record the preview of #%d: %w", e.Number, err)
		}
	}

	id := job.DeliveryID
	if id == "" {
		id = job.ID
	}
	snap := report.Deploy{
		Env: env, SHA: sha, Ref: e.PullRequest.Head.Ref, PR: e.Number, Kind: report.KindPreview,
		State: report.StateInProgress, EnvironmentURL: rec.URL, StartedAt: time.Now(),
	}
	if deps.PublicURL != "" {
		snap.LogURL = strings.TrimRight(deps.PublicURL, "/") + "/deploys/preview-" + id
	}

	// The run is a deploy record too, so that log_url's page exists.
	run := record.Deploy{
		ID: "preview-" + id, Env: record.EnvKey{Repo: repo, Name: env}, SHA: sha, Ref: e.PullRequest.Head.Ref,
		Creator: e.Sender.Login, Kind: record.KindPreview, State: record.StateRunning, GitHubDeploymentID: depID,
		InstallationID: inst, CreatedAt: snap.StartedAt, StartedAt: snap.StartedAt,
	}
	if err := deps.Store.PutDeploy(ctx, run); err != nil {
		return fmt.Errorf("record the preview run of #%d: %w", e.Number, err)
	}
	drv := deps.Previewers[cfg.Preview.Driver]
	var url string
	var runErr error
	var buildLog bytes.Buffer
	if drv == nil {
		snap.State = report.StateError
		snap.Reason = report.NoPreviewDriver(string(cfg.Preview.Driver))
	} else {
		if err := deps.deploymentStatus(ctx, c, owner, name, depID, snap); err != nil {
			return err
		}
		url, runErr = drv.EnsurePreview(ctx, deploy.Preview{Repo: repo, Number: e.Number, Config: cfg.Preview, App: cfg.App},
			deploy.Release{Repo: repo, InstallationID: inst, SHA: sha, Ref: e.PullRequest.Head.Ref}, &buildLog)
		if runErr != nil && ctx.Err() != nil {
			return runErr // shutting down: try again later
		}
		snap.FinishedAt = time.Now()
		if runErr != nil {
			snap.State, snap.Reason = report.StateFailure, runErr.Error()
			log.Warn("preview failed", "pr", e.Number, "sha", sha, "err", runErr)
		} else {
			snap.State, snap.EnvironmentURL = report.StateSuccess, url
		}
	}
	run.State, run.Reason, run.FinishedAt, run.LogTail = record.StateSuccess, snap.Reason, snap.FinishedAt, buildLog.String()
	switch snap.State {
	case report.StateFailure:
		run.State = record.StateFailure
	case report.StateError:
		run.State = record.StateError
	}
	if run.FinishedAt.IsZero() {
		run.FinishedAt = time.Now()
	}
	if err := deps.Store.PutDeploy(ctx, run); err != nil {
		return fmt.Errorf("record the preview run of #%d: %w", e.Number, err)
	}
	if err := deps.deploymentStatus(ctx, c, owner, name, depID, snap); err != nil {
		return err
	}

	comment := report.Preview{SHA: sha, URL: snap.EnvironmentURL, LogURL: snap.LogURL, UpdatedAt: snap.FinishedAt}
	if comment.UpdatedAt.IsZero() {
		comment.UpdatedAt = time.Now()
	}
	if snap.State == report.StateSuccess {
		comment.State = report.PreviewReady
	} else {
		comment.State, comment.Reason = report.PreviewFailed, snap.Reason
	}
	if _, _, err := c.UpsertStickyComment(ctx, owner, name, e.Number, report.PreviewMarker, report.PreviewComment(comment)); err != nil {
		return fmt.Errorf("comment on #%d: %w", e.Number, err)
	}
	if url != "" && url != rec.URL {
		rec.URL, rec.UpdatedAt = url, time.Now()
		if err := deps.Store.PutPreview(ctx, rec); err != nil {
			return fmt.Errorf("record the preview of #%d: %w", e.Number, err)
		}
	}
	return nil
}

// closePreview tears the preview down, marks every deployment of it
// inactive, says so in the comment and marks the preview Closed.
func (deps Deps) closePreview(ctx context.Context, c PreviewGitHub, owner, name, repo string, e *prEvent) error {
	rec, err := deps.Store.GetPreview(ctx, repo, e.Number)
	switch {
	case errors.Is(err, record.ErrNotFound):
		rec = record.Preview{Repo: repo, Number: e.Number}
	case err != nil:
		return fmt.Errorf("read the preview of #%d: %w", e.Number, err)
	}
	// Tear down with every driver: the configuration may have changed
	// since the preview was built. Only the configured driver's failure
	// keeps the job failing; another's is logged (an AWS sweep removes
	// what a closed PR left behind there).
	var configured repoconfig.Driver
	if cfg, err := loadConfig(ctx, c, repo, e.Repository.DefaultBranch, e.PullRequest.Head.SHA); cfg != nil {
		configured = cfg.Preview.Driver
	} else if err != nil {
		return err
	}
	p := deploy.Preview{Repo: repo, Number: e.Number}
	for kind, d := range deps.Previewers {
		if err := d.TeardownPreview(ctx, p); err != nil {
			if kind == configured {
				return fmt.Errorf("tear down the preview of #%d: %w", e.Number, err)
			}
			logctx.From(ctx).Warn("could not tear down with a driver the configuration does not use", "driver", string(kind), "pr", e.Number, "err", err)
		}
	}
	if rec.Closed || len(rec.DeploymentIDs) == 0 {
		return nil // already torn down, or never built (a fork): nothing to say
	}
	env := fmt.Sprintf("pr-%d", e.Number)
	snap := report.Deploy{Env: env, SHA: rec.SHA, PR: e.Number, Kind: report.KindPreview, State: report.StateInactive}
	for _, id := range rec.DeploymentIDs {
		if err := deps.deploymentStatus(ctx, c, owner, name, id, snap); err != nil {
			return err
		}
	}
	body := report.PreviewComment(report.Preview{SHA: rec.SHA, State: report.PreviewTornDown, Reason: report.PreviewClosed(e.PullRequest.Merged), UpdatedAt: time.Now()})
	if _, _, err := c.UpsertStickyComment(ctx, owner, name, e.Number, report.PreviewMarker, body); err != nil {
		return fmt.Errorf("comment on #%d: %w", e.Number, err)
	}
	rec.Closed, rec.URL, rec.UpdatedAt = true, "", time.Now()
	if err := deps.Store.PutPreview(ctx, rec); err != nil {
		return fmt.Errorf("record the preview of #%d: %w", e.Number, err)
	}
	logctx.From(ctx).Info("preview torn down", "pr", e.Number, "deployments", len(rec.DeploymentIDs))
	return nil
}

func (deps Deps) deploymentStatus(ctx context.Context, c PreviewGitHub, owner, name string, id int64, snap report.Deploy) error {
	st := report.Status(snap)
	if _, err := c.CreateDeploymentStatus(ctx, owner, name, id, gh.DeploymentStatus{
		State: gh.DeploymentState(st.State), EnvironmentURL: st.EnvironmentURL, LogURL: st.LogURL, Description: st.Description,
	}); err != nil {
		return fmt.Errorf("set deployment %d %s: %w", id, st.State, err)
	}
	return nil
}
