package handlers

import (
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

// Deployer is what a push and a check event ask of the engine.
type Deployer interface {
	Deploy(ctx context.Context, req deploy.Request) error
	ChecksPassed(ctx context.Context, t deploy.Target, id string) error
	ChecksFailed(ctx context.Context, t deploy.Target, id, reason string) error
}

// GitHub is what the push handler reads and writes on GitHub itself: the
// configuration file, and the check run that reports a bad one.
type GitHub interface {
	ReadFile(ctx context.Context, owner, repo, path, ref string) ([]byte, bool, error)
	CreateCheckRun(ctx context.Context, owner, repo string, run gh.CheckRun) (int64, error)
	CheckRunsForRef(ctx context.Context, owner, repo, sha string) ([]gh.CheckRunInfo, error)
	CombinedStatus(ctx context.Context, owner, repo, sha string) (gh.CombinedStatus, error)
	DefaultBranch(ctx context.Context, owner, repo string) (string, error)
}

// zeroSHA is the "after" of a push that deleted its branch.
const zeroSHA = "0000000000000000000000000000000000000000"

// pushEvent is what the push handler reads of a push's payload.
type pushEvent struct {
	Ref     string `json:"ref"`
	After   string `json:"after"`
	Deleted bool   `json:"deleted"`
	Sender  struct {
		Login string `json:"login"`
	} `json:"sender"`
	HeadCommit *struct {
		ID        string `json:"id"`
		Timestamp string `json:"timestamp"`
	} `json:"head_commit"`
	origin
}

func (deps Deps) push(ctx context.Context, job queue.Job) error {
	var p pushEvent
	if err := decode(job, &p); err != nil {
		return err
	}
	log := logctx.From(ctx)
	log.Info("push received", "ref", p.Ref, "sha", p.After, "deleted", p.Deleted)
	if deps.Engine == nil || deps.GitHub == nil {
		return nil
	}
	branch, isBranch := strings.CutPrefix(p.Ref, "refs/heads/")
	if p.Deleted || p.After == "" || p.After == zeroSHA || !isBranch {
		return nil // a deleted branch or a tag: nothing to deploy
	}
	repo := p.repo(job)
	inst := p.installation(job)
	c := deps.GitHub.Installation(inst)

	cfg, err := loadConfig(ctx, c, repo, p.Repository.DefaultBranch, p.After)
	if cfg == nil {
		return err
	}
	env := cfg.ForBranch(branch)
	if env == nil {
		log.Info("no environment deploys from this branch", "branch", branch)
		return nil
	}
	if away, err := deps.elsewhere(ctx, job, repo, env.Driver, env.Name, nil); away || err != nil {
		return err
	}
	id := job.DeliveryID
	if id == "" {
		id = job.ID
	}
	req := deploy.Request{
		ID:      "push-" + id + "-" + strings.ToLower(env.Name),
		Target:  deploy.Target{Repo: repo, Environment: env, App: cfg.App, Notify: cfg.Notify},
		Release: deploy.Release{Repo: repo, InstallationID: inst, SHA: p.After, Ref: branch},
		Kind:    record.KindPush,
		Creator: p.Sender.Login,
	}
	if hc := p.HeadCommit; hc != nil && strings.EqualFold(hc.ID, p.After) {
		req.Release.CommittedAt = commitTime(hc.Timestamp)
	}
	return deps.deployAfterChecks(ctx, c, req)
}

// commitTime reads a push's head_commit.timestamp (ISO 8601 with its
// zone); zero when it is missing or unreadable: the deploy goes ahead
// without a lead time rather than not at all.
func commitTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// deployAfterChecks queues req at once when no freeze window of its
// environment is open and it requires no checks or they passed already.
// Else it is recorded and announced as waiting — for the freeze (SPEC §4),
// the checks, or both, said in one status — and the sweep, a check event
// or the wake-up at the window's end decides. A check already red fails
// the deploy at once, freeze or not, so that the failure is one path.
func (deps Deps) deployAfterChecks(ctx context.Context, c GitHub, req deploy.Request) error {
	env := req.Target.Environment
	req.Frozen = deps.frozen(env)
	var v checkVerdict
	if required(env.RequireChecks) {
		var err error
		if v, err = readChecks(ctx, c, req.Target.Repo, req.Release.SHA, env.RequireChecks); err != nil {
			return err
		}
	}
	req.WaitingOn = v.Waiting
	if v.Failed != "" {
		req.Frozen, req.WaitingOn = nil, append([]string{v.Red}, v.Waiting...)
	}
	if err := deps.Engine.Deploy(ctx, req); err != nil {
		return err
	}
	if v.Failed != "" {
		return deps.Engine.ChecksFailed(ctx, req.Target, req.ID, v.Failed)
	}
	log := logctx.From(ctx)
	if f := req.Frozen; f != nil {
		log.Info("push held by a freeze window", "environment", env.Name, "window", f.Window, "until", f.Until, "checks", strings.Join(v.Waiting, ", "))
		deps.wake(f.Until)
	} else if len(v.Waiting) > 0 {
		log.Info("deploy waits for required checks", "environment", env.Name, "checks", strings.Join(v.Waiting, ", "))
	}
	return nil
}

// frozen is the freeze window of env open now, nil when none is: a push
// waits until the freeze lifts (a chain of windows lifts at the last end).
func (deps Deps) frozen(env *repoconfig.Environment) *deploy.Freeze {
	now := deps.now()
	w, until, open := env.Freeze.OpenAt(now)
	if !open {
		return nil
	}
	return &deploy.Freeze{Window: w.Text, Zone: w.Zone.String(), Until: until, Since: now}
}

// wake asks for the waiting deploys to be judged again when a freeze lifts.
func (deps Deps) wake(at time.Time) {
	if deps.Wake != nil {
		deps.Wake(at)
	}
}

// loadConfig reads .github/shipbot.yml from the default branch (never a
// pull request's head: SPEC §3, §9) and parses it. A file with mistakes
// fails the shipbot/config check on sha and returns a nil config: nothing
// runs on a guess, and the job is done, since retrying cannot fix the file.
func loadConfig(ctx context.Context, c GitHub, repo, defaultBranch, sha string) (*repoconfig.Config, error) {
	owner, name, _ := strings.Cut(repo, "/")
	data, _, err := c.ReadFile(ctx, owner, name, repoconfig.FilePath, "")
	if err != nil {
		return nil, fmt.Errorf("read %s of %s: %w", repoconfig.FilePath, repo, err)
	}
	cfg, err := repoconfig.Parse(data, defaultBranch)
	if err != nil {
		var bad repoconfig.Errors
		if !errors.As(err, &bad) {
			return nil, err
		}
		logctx.From(ctx).Warn("bad configuration file: nothing will run", "problems", len(bad), "sha", sha)
		return nil, reportBadConfig(ctx, c, owner, name, sha, bad)
	}
	return cfg, nil
}

// reportBadConfig fails the shipbot/config check on the pushed commit,
// naming every problem with its key and line. The job is done: retrying
// cannot fix the file.
func reportBadConfig(ctx context.Context, c GitHub, owner, repo, sha string, bad repoconfig.Errors) error {
	problems := make([]string, len(bad))
	for i, e := range bad {
		problems[i] = e.Error()
	}
	out := report.ConfigCheck(problems)
	_, err := c.CreateCheckRun(ctx, owner, repo, gh.CheckRun{
		Name: report.ConfigCheckName, HeadSHA: sha, Status: out.Status, Conclusion: out.Conclusion,
		Output: &gh.CheckRunOutput{Title: out.Title, Summary: out.Summary},
	})
	if err != nil {
		return fmt.Errorf("report the bad configuration on %s: %w", sha, err)
	}
	return nil
}
