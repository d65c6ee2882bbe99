package handlers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/logctx"
	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/store/record"
	"github.com/shipbot/shipbot/internal/worker"
	"github.com/shipbot/shipbot/queue"
)

// DefaultChecksTimeout bounds how long a deploy waits for its required
// checks before it fails saying which are still pending.
const DefaultChecksTimeout = time.Hour

// WaitingDeploys finds the deploys that wait for required checks.
type WaitingDeploys interface {
	ListRepos(ctx context.Context) ([]string, error)
	ListEnvironments(ctx context.Context, repo string) ([]record.EnvKey, error)
	ListDeploys(ctx context.Context, env record.EnvKey, n int) ([]record.Deploy, error)
}

// waitingScan is how many of an environment's newest deploys are looked at
// for ones waiting on checks: more pushes than this while CI runs, and the
// oldest waiting ones are superseded anyway.
const waitingScan = 20

// checkVerdict is what the required checks of a commit say now.
type checkVerdict struct {
	Waiting []string // required checks not finished (or not started)
	Failed  string   // the first red one, as a reason for people; "" when none
	Red     string   // the name of that check
}

// green and red are check run conclusions; anything else (stale, none
// yet) is still waiting.
var (
	greenConclusions = []string{"success", "neutral", "skipped"}
	redConclusions   = []string{"failure", "cancelled", "timed_out", "action_required", "startup_failure"}
)

// evaluateChecks decides from a commit's check runs and commit statuses
// whether its required checks passed, failed or are still running.
// shipbot's own check runs (shipbot/...) never count. With `all`, every
// other check run and status must be green; a commit with none passes. A
// named check must exist (as a check run or a status context) and be green.
func evaluateChecks(req repoconfig.Checks, sha string, runs []gh.CheckRunInfo, statuses []gh.CommitStatus) checkVerdict {
	type check struct{ name, state string } // state: green, red, waiting
	var all []check
	for _, r := range runs {
		if strings.HasPrefix(r.Name, "shipbot/") {
			continue
		}
		st := "waiting"
		switch {
		case r.Status != "completed":
		case slices.Contains(greenConclusions, r.Conclusion):
			st = "green"
		case slices.Contains(redConclusions, r.Conclusion):
			st = "red:" + r.Conclusion
		}
		all = append(all, check{r.Name, st})
	}
	for _, s := range statuses {
		if strings.HasPrefix(s.Context, "shipbot/") {
			continue
		}
		st := "waiting"
		switch s.State {
		case "success":
			st = "green"
		case "failure", "error":
			st = "red:" + s.State
		}
		all = append(all, check{s.Context, st})
	}
	var v checkVerdict
	judge := func(c check) {
		switch {
		case c.state == "green":
		case strings.HasPrefix(c.state, "red:"):
			if v.Failed == "" {
				v.Red = c.name
				v.Failed = report.CheckFailed(c.name, strings.TrimPrefix(c.state, "red:"), sha)
			}
		default:
			if !slices.Contains(v.Waiting, c.name) {
				v.Waiting = append(v.Waiting, c.name)
			}
		}
	}
	if req.All {
		for _, c := range all {
			judge(c)
		}
		return v
	}
	for _, name := range req.Names {
		i := slices.IndexFunc(all, func(c check) bool { return strings.EqualFold(c.name, name) })
		if i < 0 {
			v.Waiting = append(v.Waiting, name)
			continue
		}
		// Several runs of one name (a re-run): a green one counts.
		best := all[i]
		for _, c := range all[i:] {
			if strings.EqualFold(c.name, name) && c.state == "green" {
				best = c
			}
		}
		judge(best)
	}
	return v
}

func required(c repoconfig.Checks) bool { return c.All || len(c.Names) > 0 }

// readChecks asks GitHub for sha's check runs and statuses and judges them.
func readChecks(ctx context.Context, c GitHub, repo, sha string, req repoconfig.Checks) (checkVerdict, error) {
	owner, name, _ := strings.Cut(repo, "/")
	runs, err := c.CheckRunsForRef(ctx, owner, name, sha)
	if err != nil {
		return checkVerdict{}, fmt.Errorf("read the checks of %s: %w", report.Short(sha), err)
	}
	st, err := c.CombinedStatus(ctx, owner, name, sha)
	if err != nil {
		return checkVerdict{}, fmt.Errorf("read the statuses of %s: %w", report.Short(sha), err)
	}
	return evaluateChecks(req, sha, runs, st.Statuses), nil
}

// checksEvent is what the checks handler reads of a check_suite or
// check_run payload.
type checksEvent struct {
	CheckSuite *struct {
		HeadSHA string `json:"head_sha"`
	} `json:"check_suite"`
	CheckRun *struct {
		HeadSHA string `json:"head_sha"`
	} `json:"check_run"`
	origin
}

// checks re-evaluates the deploys waiting on a commit whose check suite or
// check run completed: green → they proceed, red → they fail.
func (deps Deps) checks(ctx context.Context, job queue.Job) error {
	var p checksEvent
	if err := decode(job, &p); err != nil {
		return err
	}
	var sha string
	switch {
	case p.CheckSuite != nil:
		sha = p.CheckSuite.HeadSHA
	case p.CheckRun != nil:
		sha = p.CheckRun.HeadSHA
	default:
		return worker.Permanent(fmt.Errorf("%s payload has neither check_suite nor check_run", job.Event))
	}
	log := logctx.From(ctx)
	log.Info("checks completed", "sha", sha)
	if deps.Engine == nil || deps.GitHub == nil || deps.Store == nil {
		return nil
	}
	repo := p.repo(job)
	waiting, err := deps.waitingOn(ctx, repo, sha)
	if err != nil || len(waiting) == 0 {
		return err
	}
	inst := p.installation(job)
	return deps.recheck(ctx, deps.GitHub.Installation(inst), repo, p.Repository.DefaultBranch, waiting)
}

// waitingOn lists repo's deploys waiting for checks, of sha ("" for all).
func (deps Deps) waitingOn(ctx context.Context, repo, sha string) ([]record.Deploy, error) {
	envs, err := deps.Store.ListEnvironments(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("list the environments of %s: %w", repo, err)
	}
	var out []record.Deploy
	for _, env := range envs {
		ds, err := deps.Store.ListDeploys(ctx, env, waitingScan)
		if err != nil {
			return nil, fmt.Errorf("list the deploys of %s: %w", env, err)
		}
		for _, d := range ds {
			if d.State == record.StateWaiting && (sha == "" || d.SHA == sha) {
				out = append(out, d)
			}
		}
	}
	return out, nil
}

// recheck judges each waiting deploy again: a red check fails it; a
// freeze window still open keeps it held (saying so again only when what
// it waits for changed); otherwise green checks let it proceed, and one
// that waited for them longer than the bound fails naming the checks still
// pending.
func (deps Deps) recheck(ctx context.Context, c GitHub, repo, defaultBranch string, waiting []record.Deploy) error {
	cfg, err := loadConfig(ctx, c, repo, defaultBranch, waiting[0].SHA)
	if cfg == nil {
		return err
	}
	var errs []error
	for _, d := range waiting {
		env, ok := cfg.Environment(d.Env.Name)
		if !ok {
			errs = append(errs, deps.Engine.ChecksFailed(ctx, deploy.Target{Repo: repo, App: cfg.App, Notify: cfg.Notify}, d.ID, report.EnvironmentGone(d.Env.Name)))
			continue
		}
		if here, err := deps.judgesHere(ctx, repo, env); !here || err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, deps.judge(ctx, c, deploy.Target{Repo: repo, Environment: env, App: cfg.App, Notify: cfg.Notify}, d))
	}
	return errors.Join(errs...)
}

// judgesHere says whether this host judges env's waiting deploys: a local
// environment's are its owner's (judging releases the deploy, which then
// runs where it was judged). Another host's are left to the owner's
// workers, which look at every waiting deploy every minute
// (RecheckWaiting).
func (deps Deps) judgesHere(ctx context.Context, repo string, env *repoconfig.Environment) (bool, error) {
	if deps.Hosts == nil || env.Driver != repoconfig.DriverLocal {
		return true, nil
	}
	_, here, err := deps.Hosts.Owner(ctx, repo, env.Name)
	if err != nil {
		return false, fmt.Errorf("find the host that runs %s %s: %w", repo, env.Name, err)
	}
	return here, nil
}

// judge decides what becomes of one waiting deploy now.
func (deps Deps) judge(ctx context.Context, c GitHub, t deploy.Target, d record.Deploy) error {
	timeout := deps.ChecksTimeout
	if timeout <= 0 {
		timeout = DefaultChecksTimeout
	}
	env := t.Environment
	frozen := deps.frozen(env)
	var v checkVerdict
	if required(env.RequireChecks) {
		var err error
		if v, err = readChecks(ctx, c, t.Repo, d.SHA, env.RequireChecks); err != nil {
			return err
		}
	}
	log := logctx.From(ctx)
	// The wait for checks counts from when the freeze lifted.
	since := d.CreatedAt
	if d.FrozenUntil.After(since) {
		since = d.FrozenUntil
	}
	switch {
	case v.Failed != "":
		log.Info("a required check failed: not deploying", "deploy", d.ID, "reason", v.Failed)
		return deps.Engine.ChecksFailed(ctx, t, d.ID, v.Failed)
	case frozen != nil:
		deps.wake(frozen.Until)
		return deps.Engine.Deploy(ctx, heldAgain(t, d, frozen, v.Waiting))
	case len(v.Waiting) == 0:
		log.Info("required checks passed: deploying", "deploy", d.ID, "sha", d.SHA)
		return deps.Engine.ChecksPassed(ctx, t, d.ID)
	case deps.now().Sub(since) > timeout:
		return deps.Engine.ChecksFailed(ctx, t, d.ID, report.ChecksTimedOut(timeout, v.Waiting, d.SHA))
	case !d.FrozenUntil.IsZero():
		// The freeze lifted and checks still run: say it waits for them alone
		// (written once; the engine writes nothing when that is said already).
		return deps.Engine.Deploy(ctx, heldAgain(t, d, nil, v.Waiting))
	}
	return nil
}

// heldAgain is the request that judges the waiting deploy d again: held
// by frozen (nil: no longer), waiting for checks.
func heldAgain(t deploy.Target, d record.Deploy, frozen *deploy.Freeze, checks []string) deploy.Request {
	return deploy.Request{
		ID: d.ID, Target: t, Kind: d.Kind, Creator: d.Creator, WaitingOn: checks, Frozen: frozen,
		Release: deploy.Release{Repo: t.Repo, InstallationID: d.InstallationID, SHA: d.SHA, Ref: d.Ref, CommittedAt: d.CommittedAt},
	}
}

// RecheckWaiting looks at every deploy waiting for checks or a freeze
// window, in every repository: a check event GitHub never delivered does
// not leave a deploy waiting for good, the wait is bounded, and a push a
// freeze held runs once the window closed. The bot runs it every minute
// and when a freeze it was told of lifts (Wake).
func (deps Deps) RecheckWaiting(ctx context.Context) error {
	if deps.Engine == nil || deps.GitHub == nil || deps.Store == nil {
		return nil
	}
	repos, err := deps.Store.ListRepos(ctx)
	if err != nil {
		return fmt.Errorf("list repositories: %w", err)
	}
	var errs []error
	for _, repo := range repos {
		waiting, err := deps.waitingOn(ctx, repo, "")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(waiting) == 0 {
			continue
		}
		c := deps.GitHub.Installation(waiting[0].InstallationID)
		owner, name, _ := strings.Cut(repo, "/")
		branch, err := c.DefaultBranch(ctx, owner, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("read the default branch of %s: %w", repo, err))
			continue
		}
		errs = append(errs, deps.recheck(ctx, c, repo, branch, waiting))
	}
	return errors.Join(errs...)
}
