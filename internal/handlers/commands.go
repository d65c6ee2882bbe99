package handlers

import (
	"fmt"
	"strings"
	"time"

	"github.com/shipbot/shipbot/internal/command"
	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/store/record"
)

// The pure core of PR comment commands: given plain values (the command,
// the environment's configuration, the commenter's permission, what the
// store and GitHub said), what becomes of the command. Each command's
// commandFunc (comment_commands.go) gathers those values and carries out
// the decision.

// productionName is the environment /rollback defaults to.
const productionName = "production"

// environmentFor is the environment a command acts on: the one it names,
// or else byDefault, the command's default ("" for none). A refusal says
// why there is none.
func environmentFor(c command.Command, cfg *repoconfig.Config, byDefault string) (*repoconfig.Environment, *report.Answer) {
	names := cfg.EnvironmentNames()
	name := c.Env
	if name == "" {
		name = byDefault
	}
	if name == "" {
		return nil, &report.Answer{Outcome: report.OutcomeNoEnvironment, Environments: names}
	}
	env, ok := cfg.Environment(name)
	if !ok {
		return nil, &report.Answer{Outcome: report.OutcomeUnknownEnvironment, Env: name, Environments: names}
	}
	return env, nil
}

// rollbackDefault is the environment /rollback acts on when it names none:
// production, else the one deploying from the default branch, else the
// only one; "" when none of these is.
func rollbackDefault(cfg *repoconfig.Config, defaultBranch string) string {
	if env, ok := cfg.Environment(productionName); ok {
		return env.Name
	}
	if env := cfg.ForBranch(defaultBranch); env != nil {
		return env.Name
	}
	if names := cfg.EnvironmentNames(); len(names) == 1 {
		return names[0]
	}
	return ""
}

// permitted refuses a command the commenter may not use in env: a
// command for the environment's deployers (spec.Who) needs them (SPEC §3);
// nobody below write may, whatever the list says. nil: permitted.
func permitted(spec command.Spec, c command.Command, env *repoconfig.Environment, login string, p repoconfig.Permission) *report.Answer {
	if spec.Who == command.Anyone || env.Deployers.Allows(login, p) {
		return nil
	}
	a := &report.Answer{Command: c.Raw, Name: c.Name, Outcome: report.OutcomeNoPermission, Env: env.Name, Have: p.String(), Verb: spec.Verb}
	if len(env.Deployers.Logins) > 0 && p >= repoconfig.PermWrite {
		a.NeedLogins = env.Deployers.Logins
	} else {
		a.NeedMin = max(env.Deployers.Min, repoconfig.PermWrite).String()
	}
	return a
}

// decideInput is everything a command for an environment's deployers
// (/deploy, /rollback, /lock, /unlock) decides on, once the environment is
// known and the commenter may use it.
type decideInput struct {
	Cmd       command.Command
	Env       *repoconfig.Environment
	Commenter string
	Perm      repoconfig.Permission // the commenter's, on the repository
	CommentID int64
	CommentAt time.Time // when the comment was made
	Now       time.Time // when the command is decided: freeze windows open or not
	PublicURL string

	Lock    *record.EnvLock // the environment's /lock; nil: none
	Pending int             // /unlock: deploys waiting in the environment

	// Existing is the deploy an earlier attempt of this comment's job
	// created; its decision stands.
	Existing *record.Deploy

	// /deploy
	PR         gh.PullRequest // the pull request, when no ref was named
	RefSHA     string         // the named ref, resolved
	RefFound   bool
	BranchHead string // the head of Env.Branch, for an environment without allow_branches
	// HeadCommittedAt is the committer date of PR.HeadSHA; zero when
	// unknown. After CommentAt, the commenter cannot have seen the head.
	HeadCommittedAt time.Time
	// SeenSHA is the head the commenter saw, read only when the head
	// moved: the newest commit of the pull request committed by the time of
	// the comment; "" when none was.
	SeenSHA string

	// /rollback
	Current *record.Release // what runs now; nil: nothing yet
	Target  *record.Release // the release to put back; nil: none found
}

type effect int

const (
	effectNone effect = iota
	effectDeploy
	effectLock
	effectUnlock
)

// decision is a command's answer and what to do about it. request lacks
// Target and the release's repository and installation, which the caller
// knows.
type decision struct {
	answer  report.Answer
	effect  effect
	request deploy.Request
}

// deployID is the deploy of kind (record.KindComment for /deploy,
// record.KindRollback) a comment makes in env: the same for a retried job,
// so the engine sees one deploy.
func deployID(kind string, commentID int64, env string) string {
	return fmt.Sprintf("%s-%d-%s", kind, commentID, strings.ToLower(env))
}

// answer is the start of the answer to the command in: what it is and where.
func (in decideInput) answer() report.Answer {
	return report.Answer{Command: in.Cmd.Raw, Name: in.Cmd.Name, Env: in.Env.Name}
}

// decideLock: /lock takes the lock, unless someone holds it.
func decideLock(in decideInput) decision {
	a := in.answer()
	l := in.Lock
	switch {
	case l == nil:
		a.Outcome, a.LockedBy, a.LockReason = report.OutcomeLocked, in.Commenter, in.Cmd.Reason
		return decision{answer: a, effect: effectLock}
	case strings.EqualFold(l.By, in.Commenter) && !l.At.Before(in.CommentAt):
		// The lock this comment took on an earlier attempt of its job reads
		// as taken now.
		a.Outcome, a.LockedBy, a.LockReason = report.OutcomeLocked, l.By, l.Reason
	default:
		a.Outcome, a.LockedBy, a.LockReason, a.LockedAt = report.OutcomeAlreadyLocked, l.By, l.Reason, l.At
	}
	return decision{answer: a}
}

// decideUnlock: /unlock releases the lock, if there is one.
func decideUnlock(in decideInput) decision {
	a := in.answer()
	if in.Lock == nil {
		a.Outcome = report.OutcomeNotLocked
		return decision{answer: a}
	}
	a.Outcome, a.LockedBy, a.LockedAt, a.Released = report.OutcomeUnlocked, in.Lock.By, in.Lock.At, in.Pending
	return decision{answer: a, effect: effectUnlock}
}

// decideDeploy: /deploy deploys the ref it names or the pull request's
// head, when the environment takes it. An open freeze window refuses it,
// unless the commenter is an admin, who deploys through it (SPEC §4).
func decideDeploy(in decideInput) decision {
	a, req := in.answer(), in.request(record.KindComment)
	if in.Existing == nil {
		if in.frozenOut() {
			a.Outcome, a.Freeze = report.OutcomeFrozen, in.freeze()
			return decision{answer: a}
		}
		rel, refusal := deployRelease(in, a)
		if refusal != nil {
			return decision{answer: *refusal}
		}
		req.Release = rel
	}
	if in.Perm >= repoconfig.PermAdmin {
		a.Freeze = in.freeze() // overridden, and the reply says so
	}
	return deploying(in, a, req, report.OutcomeDeploying)
}

// deployRelease is what /deploy deploys, or the refusal when it cannot.
func deployRelease(in decideInput, a report.Answer) (deploy.Release, *report.Answer) {
	var rel deploy.Release
	switch {
	case in.Cmd.Ref != "" && !in.RefFound:
		a.Outcome, a.Ref = report.OutcomeUnknownRef, in.Cmd.Ref
		return rel, &a
	case in.Cmd.Ref != "":
		rel = deploy.Release{SHA: in.RefSHA, Ref: in.Cmd.Ref}
	case in.PR.State == "closed":
		a.Outcome = report.OutcomeClosed
		return rel, &a
	default:
		rel = deploy.Release{SHA: in.PR.HeadSHA, Ref: in.PR.HeadRef, CommittedAt: in.HeadCommittedAt}
	}
	// An environment without allow_branches takes what its branch has (a
	// redeploy of the merged head); anything else is merged first.
	if !in.Env.AllowBranches && (in.BranchHead == "" || in.BranchHead != rel.SHA) {
		a.Outcome, a.Branch = report.OutcomeBranchesNotAllowed, in.Env.Branch
		return rel, &a
	}
	if in.headMoved() {
		a.Outcome, a.SHA, a.SeenSHA = report.OutcomeHeadMoved, in.PR.HeadSHA, in.SeenSHA
		return rel, &a
	}
	return rel, nil
}

// freeze is the environment's freeze open at in.Now; nil when none is.
func (in decideInput) freeze() *report.Freeze { return openFreeze(in.Env, in.Now) }

// frozenOut: an open freeze refuses this commenter's /deploy, whatever
// else is true of it.
func (in decideInput) frozenOut() bool {
	return in.Perm < repoconfig.PermAdmin && in.freeze() != nil
}

// openFreeze is env's freeze window open at now, as report names it; nil
// when none is.
func openFreeze(env *repoconfig.Environment, now time.Time) *report.Freeze {
	w, until, open := env.Freeze.OpenAt(now)
	if !open {
		return nil
	}
	return &report.Freeze{Window: w.Text, Until: until, At: now, Days: !w.Weekly}
}

// headMoved: a /deploy of the pull request's head was written before the
// head was committed, so the commenter did not see what would deploy.
// Without a time for either, nothing says it moved.
func (in decideInput) headMoved() bool {
	return in.Cmd.Ref == "" && !in.CommentAt.IsZero() && in.HeadCommittedAt.After(in.CommentAt)
}

// seenHead is the head a comment made at t saw among a pull request's
// commits (oldest first): the newest committed by then; "" when none was.
// Committer dates are when a commit was made, not pushed, so a commit
// made before the comment and pushed after it reads as seen.
func seenHead(commits []gh.Commit, t time.Time) string {
	var seen gh.Commit
	for _, c := range commits {
		if !c.CommittedAt.IsZero() && !c.CommittedAt.After(t) && !c.CommittedAt.Before(seen.CommittedAt) {
			seen = c
		}
	}
	return seen.SHA
}

// decideRollback: /rollback puts back the release before the current one,
// or the one it names.
func decideRollback(in decideInput) decision {
	a, req := in.answer(), in.request(record.KindRollback)
	if in.Existing == nil {
		refusal := rollbackRefusal(in, a)
		if refusal != nil {
			return decision{answer: *refusal}
		}
		req.Release = deploy.Release{SHA: in.Target.SHA, Ref: in.Target.Ref, CommittedAt: in.Target.CommittedAt}
		a.By, a.At = in.Target.By, in.Target.At
	}
	return deploying(in, a, req, report.OutcomeRollingBack)
}

// rollbackRefusal says why there is nothing to roll back to; nil when
// in.Target is the release to put back.
func rollbackRefusal(in decideInput, a report.Answer) *report.Answer {
	switch {
	case in.Target == nil && in.Cmd.Ref != "":
		a.Outcome, a.Ref = report.OutcomeUnknownRelease, in.Cmd.Ref
	case in.Target == nil:
		a.Outcome = report.OutcomeNoEarlierRelease
		if in.Current != nil {
			a.SHA = in.Current.SHA
		}
	case in.Current != nil && in.Target.SHA == in.Current.SHA:
		a.Outcome, a.SHA = report.OutcomeAlreadyCurrent, in.Current.SHA
	default:
		return nil
	}
	return &a
}

// request is the deploy a /deploy or /rollback makes, with the release of
// the deploy an earlier attempt made, if one did.
func (in decideInput) request(kind string) deploy.Request {
	req := deploy.Request{ID: deployID(kind, in.CommentID, in.Env.Name), Creator: in.Commenter, Kind: kind}
	if in.Existing != nil {
		req.Release = deploy.Release{SHA: in.Existing.SHA, Ref: in.Existing.Ref, CommittedAt: in.Existing.CommittedAt}
	}
	return req
}

// deploying is the answer to a /deploy or /rollback that goes ahead:
// outcome, or queued behind the environment's lock.
func deploying(in decideInput, a report.Answer, req deploy.Request, outcome report.Outcome) decision {
	a.Outcome, a.SHA, a.Ref = outcome, req.Release.SHA, req.Release.Ref
	if in.PublicURL != "" {
		a.LogURL = strings.TrimRight(in.PublicURL, "/") + "/deploys/" + req.ID
	}
	if in.Lock != nil {
		a.Outcome, a.LockedBy, a.LockReason = report.OutcomeQueuedBehindLock, in.Lock.By, in.Lock.Reason
	}
	return decision{answer: a, effect: effectDeploy, request: req}
}
