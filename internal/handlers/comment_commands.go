package handlers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/shipbot/shipbot/internal/command"
	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/logctx"
	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/store/record"
)

// commandFunc runs one command of a comment: it gathers what the command's
// outcome depends on, decides it (the pure part, in commands.go) and
// carries out what is quick (/lock and /unlock change the store now); a
// deploy or a resume is returned as the action to run after the reply.
type commandFunc func(r *commentRun, ctx context.Context, c command.Command) (report.Answer, action, error)

// commandTable is every PR command (SPEC §4), in the order /help lists
// them: how it is typed, what /help says of it, who may run it and what
// runs it. Parsing, /help, the permission check and the reply all read
// it. A new command is an entry here, its commandFunc, and its sentences in
// internal/report with a golden reply.
//
// It is a function, not a variable, because /help's commandFunc lists the
// table: a variable cannot be initialised with a function that reads it.
func commandTable() command.Table[commandFunc] {
	return command.Table[commandFunc]{{
		Spec: command.Spec{
			Name: "deploy", Synopsis: "/deploy [ENV] [REF]", Verb: "deploy to", Grammar: command.EnvRef, Who: command.Deployers,
			Does:     "deploys this pull request's head commit (or REF: a SHA, branch or tag) to ENV, or to the default environment",
			Synonyms: []string{"ship", "release", "deployment"},
		},
		Run: (*commentRun).deploy,
	}, {
		Spec: command.Spec{
			Name: "rollback", Synopsis: "/rollback [ENV] [to REF]", Verb: "roll back", Grammar: command.EnvToRef, Who: command.Deployers,
			Does:     "puts back the release before the current one (or the release REF) in ENV, or in production",
			Synonyms: []string{"revert", "undo", "rollout", "roll"},
		},
		Run: (*commentRun).rollback,
	}, {
		Spec: command.Spec{
			Name: "lock", Synopsis: "/lock ENV [reason…]", Verb: "lock", Grammar: command.EnvReason, Who: command.Deployers,
			Does:     "stops deploys to ENV until /unlock; merges queue up behind the lock",
			Synonyms: []string{"freeze", "hold"},
		},
		Run: (*commentRun).lock,
	}, {
		Spec: command.Spec{
			Name: "unlock", Synopsis: "/unlock ENV", Verb: "unlock", Grammar: command.LockedEnv, Who: command.Deployers,
			Does:     "releases the lock on ENV; queued deploys go ahead",
			Synonyms: []string{"unfreeze", "unhold"},
		},
		Run: (*commentRun).unlock,
	}, {
		Spec: command.Spec{
			Name: "status", Synopsis: "/status [ENV]", Grammar: command.OptionalEnv, Who: command.Anyone,
			Does:     "shows the current release, lock, queue and last deploys of each environment (or ENV)",
			Synonyms: []string{"info", "state", "stat"},
		},
		Run: (*commentRun).status,
	}, {
		Spec: command.Spec{
			Name: "help", Synopsis: "/help", Grammar: command.AnyArgs, Who: command.Anyone,
			Does:     "shows this list",
			Synonyms: []string{"commands", "usage"},
		},
		Run: (*commentRun).help,
	}}
}

// help answers /help: the commands and who may use them.
func (r *commentRun) help(_ context.Context, c command.Command) (report.Answer, action, error) {
	return report.Answer{Command: c.Raw, Name: c.Name, Outcome: report.OutcomeHelp, Block: helpText(r.cfg)}, action{}, nil
}

// helpText is report.HelpText for the configuration's environments.
func helpText(cfg *repoconfig.Config) string {
	names := cfg.EnvironmentNames()
	perms := map[string]string{}
	for _, n := range names {
		d := cfg.Environments[n].Deployers
		perms[n] = report.Deployers(d.Logins, max(d.Min, repoconfig.PermWrite).String())
	}
	return report.HelpText(commandTable().Specs(), names, perms)
}

// status answers /status: the table of every environment, or of one.
func (r *commentRun) status(ctx context.Context, c command.Command) (report.Answer, action, error) {
	a := report.Answer{Command: c.Raw, Name: c.Name, Outcome: report.OutcomeStatus}
	names := r.cfg.EnvironmentNames()
	if c.Env != "" {
		env, ok := r.cfg.Environment(c.Env)
		if !ok {
			a.Outcome, a.Env, a.Environments = report.OutcomeUnknownEnvironment, c.Env, names
			return a, action{}, nil
		}
		a.Env, names = env.Name, []string{env.Name}
	}
	rows := make([]report.EnvStatus, 0, len(names))
	for _, n := range names {
		row, err := r.envStatus(ctx, record.EnvKey{Repo: r.repo, Name: n})
		if err != nil {
			return report.Answer{}, action{}, err
		}
		if env, ok := r.cfg.Environment(n); ok {
			row.Freeze = openFreeze(env, r.now)
		}
		rows = append(rows, row)
	}
	a.Block = report.StatusTable(rows)
	return a, action{}, nil
}

// statusDeploys is how many recent deploys /status reads per environment.
const statusDeploys = 5

func (r *commentRun) envStatus(ctx context.Context, key record.EnvKey) (report.EnvStatus, error) {
	st := report.EnvStatus{Env: key.Name}
	s := r.cs.Store
	cur, err := s.CurrentRelease(ctx, key)
	switch {
	case err == nil:
		st.SHA, st.Ref, st.By, st.At = cur.SHA, cur.Ref, cur.By, cur.At
	case !errors.Is(err, record.ErrNotFound):
		return st, fmt.Errorf("read the current release of %s: %w", key, err)
	}
	lk, err := r.lockOf(ctx, key)
	if err != nil {
		return st, err
	}
	if lk != nil {
		st.Locked, st.LockedBy, st.LockReason, st.LockedAt = true, lk.By, lk.Reason, lk.At
	}
	deploys, err := s.ListDeploys(ctx, key, statusDeploys)
	if err != nil {
		return st, fmt.Errorf("list the deploys of %s: %w", key, err)
	}
	running, _, err := s.Running(ctx, key)
	if err != nil {
		return st, fmt.Errorf("read the running deploy of %s: %w", key, err)
	}
	for _, d := range deploys {
		line := report.DeployLine{SHA: d.SHA, Ref: d.Ref, By: d.Creator, Kind: report.Kind(d.Kind), State: d.State, At: d.CreatedAt}
		switch {
		case d.ID == running || d.State == record.StateRunning:
			l := line
			st.Running = &l
		case d.State == record.StateQueued || d.State == record.StateLocked || d.State == record.StateWaiting:
			st.Queued = append(st.Queued, line)
		default:
			if !d.FinishedAt.IsZero() {
				line.At = d.FinishedAt
			}
			st.Last = append(st.Last, line)
		}
	}
	return st, nil
}

// deploy answers /deploy and returns the deploy to run.
func (r *commentRun) deploy(ctx context.Context, c command.Command) (report.Answer, action, error) {
	in, refusal, err := r.input(ctx, c, r.cfg.DefaultEnvironment)
	if in == nil {
		return refusal, action{}, err
	}
	if err := r.gatherDeploy(ctx, in); err != nil {
		return report.Answer{}, action{}, err
	}
	d := decideDeploy(*in)
	if d.effect == effectDeploy && d.answer.Freeze != nil {
		logctx.From(ctx).Info("freeze overridden", "environment", in.Env.Name, "by", in.Commenter, "permission", in.Perm.String(),
			"window", d.answer.Freeze.Window, "until", d.answer.Freeze.Until, "deploy", d.request.ID)
	}
	return r.deployAction(in.Env, d)
}

// rollback answers /rollback and returns the deploy to run.
func (r *commentRun) rollback(ctx context.Context, c command.Command) (report.Answer, action, error) {
	in, refusal, err := r.input(ctx, c, rollbackDefault(r.cfg, r.e.Repository.DefaultBranch))
	if in == nil {
		return refusal, action{}, err
	}
	if err := r.gatherRollback(ctx, in); err != nil {
		return report.Answer{}, action{}, err
	}
	return r.deployAction(in.Env, decideRollback(*in))
}

// lock answers /lock, taking the lock now.
func (r *commentRun) lock(ctx context.Context, c command.Command) (report.Answer, action, error) {
	in, refusal, err := r.input(ctx, c, "")
	if in == nil {
		return refusal, action{}, err
	}
	d := decideLock(*in)
	if d.effect != effectLock {
		return d.answer, action{}, nil
	}
	key := r.key(in.Env)
	lk, created, err := r.cs.Store.LockEnvironment(ctx, key, in.Commenter, c.Reason)
	if err != nil {
		return report.Answer{}, action{}, fmt.Errorf("lock %s: %w", key, err)
	}
	r.locks[strings.ToLower(in.Env.Name)] = &lk
	if !created { // someone locked it in between
		d.answer.Outcome, d.answer.LockedBy, d.answer.LockReason, d.answer.LockedAt = report.OutcomeAlreadyLocked, lk.By, lk.Reason, lk.At
	}
	return d.answer, action{}, nil
}

// unlock answers /unlock, releasing the lock now; what queued behind it
// resumes after the reply.
func (r *commentRun) unlock(ctx context.Context, c command.Command) (report.Answer, action, error) {
	in, refusal, err := r.input(ctx, c, "")
	if in == nil {
		return refusal, action{}, err
	}
	key := r.key(in.Env)
	if _, ok, err := r.cs.Store.Pending(ctx, key); err != nil {
		return report.Answer{}, action{}, fmt.Errorf("read the queue of %s: %w", key, err)
	} else if ok {
		in.Pending = 1
	}
	d := decideUnlock(*in)
	if d.effect != effectUnlock {
		return d.answer, action{}, nil
	}
	if _, _, err := r.cs.Store.UnlockEnvironment(ctx, key); err != nil {
		return report.Answer{}, action{}, fmt.Errorf("unlock %s: %w", key, err)
	}
	r.locks[strings.ToLower(in.Env.Name)] = nil
	t := r.target(in.Env)
	return d.answer, action{resume: &t}, nil
}

// input is what a command for the environment's deployers decides on,
// once the environment is known and the commenter may act there; byDefault
// is the command's default environment. A nil input comes with the
// refusal, or with err.
func (r *commentRun) input(ctx context.Context, c command.Command, byDefault string) (*decideInput, report.Answer, error) {
	env, refusal := environmentFor(c, r.cfg, byDefault)
	if refusal != nil {
		refusal.Command, refusal.Name = c.Raw, c.Name
		return nil, *refusal, nil
	}
	perm, err := r.permission(ctx)
	if err != nil {
		return nil, report.Answer{}, err
	}
	e, _ := commandTable().Lookup(c.Name)
	if a := permitted(e.Spec, c, env, r.e.Comment.User.Login, perm); a != nil {
		return nil, *a, nil
	}
	lock, err := r.lockOf(ctx, r.key(env))
	if err != nil {
		return nil, report.Answer{}, err
	}
	return &decideInput{
		Cmd: c, Env: env, Commenter: r.e.Comment.User.Login, Perm: perm, CommentID: r.e.Comment.ID, CommentAt: r.e.Comment.CreatedAt,
		Now: r.now, Lock: lock, PublicURL: r.cs.PublicURL,
	}, report.Answer{}, nil
}

func (r *commentRun) key(env *repoconfig.Environment) record.EnvKey {
	return record.EnvKey{Repo: r.repo, Name: env.Name}
}

func (r *commentRun) target(env *repoconfig.Environment) deploy.Target {
	return deploy.Target{Repo: r.repo, Environment: env, App: r.cfg.App, Notify: r.cfg.Notify}
}

// deployAction is d's answer and, when it deploys, the deploy to env to
// run after the reply.
func (r *commentRun) deployAction(env *repoconfig.Environment, d decision) (report.Answer, action, error) {
	if d.effect != effectDeploy {
		return d.answer, action{}, nil
	}
	d.request.Target = r.target(env)
	d.request.Release.Repo, d.request.Release.InstallationID = r.repo, r.inst
	return d.answer, action{deploy: &d.request}, nil
}

// existing reads the deploy of kind an earlier attempt of this comment's
// job made: its decision stands, so nothing more needs reading.
func (r *commentRun) existing(ctx context.Context, in *decideInput, kind string) (bool, error) {
	id := deployID(kind, in.CommentID, in.Env.Name)
	d, err := r.cs.Store.GetDeploy(ctx, id)
	switch {
	case err == nil:
		in.Existing = &d
		return true, nil
	case errors.Is(err, record.ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("read deploy %s: %w", id, err)
}

// gatherDeploy reads what /deploy decides on: an earlier attempt of the
// same deploy (a retried job), the ref or the pull request's head, the
// head of the environment's branch when it takes no other, and when the
// pull request's head was committed. An open freeze that refuses the
// commenter refuses whatever else is true, so then nothing more is read.
func (r *commentRun) gatherDeploy(ctx context.Context, in *decideInput) error {
	if found, err := r.existing(ctx, in, record.KindComment); found || err != nil || in.frozenOut() {
		return err
	}
	if err := r.gatherRelease(ctx, in); err != nil {
		return err
	}
	if !in.Env.AllowBranches && in.Env.Branch != "" {
		sha, found, err := r.c.ResolveRef(ctx, r.owner, r.name, in.Env.Branch)
		if err != nil {
			return fmt.Errorf("resolve %s: %w", in.Env.Branch, err)
		}
		if found {
			in.BranchHead = sha
		}
	}
	// When the head was committed matters only to a /deploy that would
	// deploy the head.
	if _, refusal := deployRelease(*in, report.Answer{}); refusal != nil || in.Cmd.Ref != "" {
		return nil
	}
	return r.gatherHead(ctx, in)
}

// gatherRelease reads what /deploy would deploy: the ref it names,
// resolved, or else the pull request's head.
func (r *commentRun) gatherRelease(ctx context.Context, in *decideInput) error {
	if in.Cmd.Ref != "" {
		sha, found, err := r.c.ResolveRef(ctx, r.owner, r.name, in.Cmd.Ref)
		if err != nil {
			return fmt.Errorf("resolve %s: %w", in.Cmd.Ref, err)
		}
		in.RefSHA, in.RefFound = sha, found
		return nil
	}
	if r.pr == nil {
		pr, err := r.c.PullRequest(ctx, r.owner, r.name, r.e.Issue.Number)
		if err != nil {
			return fmt.Errorf("read pull request #%d: %w", r.e.Issue.Number, err)
		}
		r.pr = &pr
	}
	in.PR = *r.pr
	return nil
}

// gatherHead reads when the pull request's head was committed (SPEC §4:
// /deploy deploys the head the commenter saw) and, only when that was
// after the comment, the pull request's commits, to name the head the
// commenter saw.
func (r *commentRun) gatherHead(ctx context.Context, in *decideInput) error {
	c, found, err := r.c.Commit(ctx, r.owner, r.name, in.PR.HeadSHA)
	if err != nil {
		return fmt.Errorf("read the head of pull request #%d: %w", r.e.Issue.Number, err)
	}
	if !found || c.SHA != in.PR.HeadSHA {
		return nil
	}
	in.HeadCommittedAt = c.CommittedAt
	if !in.headMoved() {
		return nil
	}
	commits, err := r.c.PullRequestCommits(ctx, r.owner, r.name, r.e.Issue.Number)
	if err != nil {
		return fmt.Errorf("list the commits of pull request #%d: %w", r.e.Issue.Number, err)
	}
	in.SeenSHA = seenHead(commits, in.CommentAt)
	return nil
}

// gatherRollback reads what /rollback decides on: an earlier attempt of
// the same rollback (a retried job), the current release and the one to
// put back.
func (r *commentRun) gatherRollback(ctx context.Context, in *decideInput) error {
	if found, err := r.existing(ctx, in, record.KindRollback); found || err != nil {
		return err
	}
	key := r.key(in.Env)
	cur, err := r.cs.Store.CurrentRelease(ctx, key)
	switch {
	case err == nil:
		in.Current = &cur
	case !errors.Is(err, record.ErrNotFound):
		return fmt.Errorf("read the current release of %s: %w", key, err)
	}
	var target record.Release
	if in.Cmd.Ref == "" {
		target, err = r.cs.Store.PreviousRelease(ctx, key)
	} else {
		target, err = r.findRelease(ctx, key, in.Cmd.Ref)
	}
	switch {
	case err == nil:
		in.Target = &target
	case errors.Is(err, record.ErrNotFound), errors.Is(err, record.ErrAmbiguous):
	default:
		return fmt.Errorf("read the releases of %s: %w", key, err)
	}
	return nil
}

// findRelease finds the release ref names: a SHA or prefix of one the
// environment ran, else what the ref (a tag, a branch) points at now, if
// the environment ran that.
func (r *commentRun) findRelease(ctx context.Context, key record.EnvKey, ref string) (record.Release, error) {
	rel, err := r.cs.Store.FindRelease(ctx, key, ref)
	if err == nil || !errors.Is(err, record.ErrNotFound) {
		return rel, err
	}
	sha, found, gerr := r.c.ResolveRef(ctx, r.owner, r.name, ref)
	if gerr != nil {
		return record.Release{}, fmt.Errorf("resolve %s: %w", ref, gerr)
	}
	if !found {
		return record.Release{}, err
	}
	return r.cs.Store.FindRelease(ctx, key, sha)
}
