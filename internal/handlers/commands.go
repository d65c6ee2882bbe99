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
// store and GitHub said), what becomes of the command. issue_comment.go
// gathers those values and carries out the decision.

// productionName is the environment /rollback defaults to.
const productionName = "production"

// environmentFor is the environment a command acts on: the one it names,
// or its default (/deploy: default_environment; /rollback: production, or
// the environment deploying from the default branch). A refusal says why
// there is none.
func environmentFor(c command.Command, cfg *repoconfig.Config, defaultBranch string) (*repoconfig.Environment, *report.Answer) {
	names := cfg.EnvironmentNames()
	name := c.Env
	if name == "" {
		switch c.Name {
		case command.Deploy:
			name = cfg.DefaultEnvironment
		case command.Rollback:
			if env, ok := cfg.Environment(productionName); ok {
				return env, nil
			}
			if env := cfg.ForBranch(defaultBranch); env != nil {
				return env, nil
			}
			if len(names) == 1 {
				return cfg.Environments[names[0]], nil
			}
		}
		if name == "" {
			return nil, &report.Answer{Outcome: report.OutcomeNoEnvironment, Environments: names}
		}
	}
	env, ok := cfg.Environment(name)
	if !ok {
		return nil, &report.Answer{Outcome: report.OutcomeUnknownEnvironment, Env: name, Environments: names}
	}
	return env, nil
}

// permitted refuses a command the commenter may not use in env: /deploy,
// /rollback, /lock and /unlock need the environment's deployers (SPEC §3);
// nobody below write may, whatever the list says. nil: permitted.
func permitted(c command.Command, env *repoconfig.Environment, login string, p repoconfig.Permission) *report.Answer {
	switch c.Name {
	case command.Deploy, command.Rollback, command.Lock, command.Unlock:
	default:
		return nil
	}
	if env.Deployers.Allows(login, p) {
		return nil
	}
	a := &report.Answer{Command: c.Raw, Name: c.Name, Outcome: report.OutcomeNoPermission, Env: env.Name, Have: p.String()}
	if len(env.Deployers.Logins) > 0 && p >= repoconfig.PermWrite {
		a.NeedLogins = env.Deployers.Logins
	} else {
		a.NeedMin = max(env.Deployers.Min, repoconfig.PermWrite).String()
	}
	return a
}

// decideInput is everything a /deploy, /rollback, /lock or /unlock decides
// on, once the environment is known and the commenter may use it.
type decideInput struct {
	Cmd       command.Command
	Env       *repoconfig.Environment
	Commenter string
	CommentID int64
	CommentAt time.Time // when the comment was made
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

// deployID is the deploy a comment's command makes in env: the same for a
// retried job, so the engine sees one deploy.
func deployID(cmd string, commentID int64, env string) string {
	kind := "comment"
	if cmd == command.Rollback {
		kind = "rollback"
	}
	return fmt.Sprintf("%s-%d-%s", kind, commentID, strings.ToLower(env))
}

func decide(in decideInput) decision {
	a := report.Answer{Command: in.Cmd.Raw, Name: in.Cmd.Name, Env: in.Env.Name}
	switch in.Cmd.Name {
	case command.Deploy, command.Rollback:
		return decideDeploy(in, a)
	case command.Lock:
		if l := in.Lock; l != nil {
			// The lock this comment took on an earlier attempt of its job
			// reads as taken now.
			if strings.EqualFold(l.By, in.Commenter) && !l.At.Before(in.CommentAt) {
				a.Outcome, a.LockedBy, a.LockReason = report.OutcomeLocked, l.By, l.Reason
				return decision{answer: a}
			}
			a.Outcome, a.LockedBy, a.LockReason, a.LockedAt = report.OutcomeAlreadyLocked, l.By, l.Reason, l.At
			return decision{answer: a}
		}
		a.Outcome, a.LockedBy, a.LockReason = report.OutcomeLocked, in.Commenter, in.Cmd.Reason
		return decision{answer: a, effect: effectLock}
	case command.Unlock:
		if in.Lock == nil {
			a.Outcome = report.OutcomeNotLocked
			return decision{answer: a}
		}
		a.Outcome, a.LockedBy, a.LockedAt, a.Released = report.OutcomeUnlocked, in.Lock.By, in.Lock.At, in.Pending
		return decision{answer: a, effect: effectUnlock}
	}
	a.Outcome, a.Message = report.OutcomeFailed, "/"+in.Cmd.Name+" is not handled here"
	return decision{answer: a}
}

func decideDeploy(in decideInput, a report.Answer) decision {
	id := deployID(in.Cmd.Name, in.CommentID, in.Env.Name)
	req := deploy.Request{ID: id, Creator: in.Commenter, Kind: record.KindComment}
	if in.Cmd.Name == command.Rollback {
		req.Kind = record.KindRollback
	}
	switch {
	case in.Existing != nil:
		req.Release = deploy.Release{SHA: in.Existing.SHA, Ref: in.Existing.Ref}
	case in.Cmd.Name == command.Rollback:
		if in.Target == nil {
			if in.Cmd.Ref != "" {
				a.Outcome, a.Ref = report.OutcomeUnknownRelease, in.Cmd.Ref
			} else {
				a.Outcome = report.OutcomeNoEarlierRelease
				if in.Current != nil {
					a.SHA = in.Current.SHA
				}
			}
			return decision{answer: a}
		}
		if in.Current != nil && in.Target.SHA == in.Current.SHA {
			a.Outcome, a.SHA = report.OutcomeAlreadyCurrent, in.Current.SHA
			return decision{answer: a}
		}
		req.Release = deploy.Release{SHA: in.Target.SHA, Ref: in.Target.Ref}
		a.By, a.At = in.Target.By, in.Target.At
	default: // /deploy
		if in.Cmd.Ref != "" {
			if !in.RefFound {
				a.Outcome, a.Ref = report.OutcomeUnknownRef, in.Cmd.Ref
				return decision{answer: a}
			}
			req.Release = deploy.Release{SHA: in.RefSHA, Ref: in.Cmd.Ref}
		} else {
			if in.PR.State == "closed" {
				a.Outcome = report.OutcomeClosed
				return decision{answer: a}
			}
			req.Release = deploy.Release{SHA: in.PR.HeadSHA, Ref: in.PR.HeadRef}
		}
		// An environment without allow_branches takes what its branch has
		// (a redeploy of the merged head); anything else is merged first.
		if !in.Env.AllowBranches && (in.BranchHead == "" || in.BranchHead != req.Release.SHA) {
			a.Outcome, a.Branch = report.OutcomeBranchesNotAllowed, in.Env.Branch
			return decision{answer: a}
		}
	}
	a.SHA, a.Ref = req.Release.SHA, req.Release.Ref
	if in.PublicURL != "" {
		a.LogURL = strings.TrimRight(in.PublicURL, "/") + "/deploys/" + id
	}
	switch {
	case in.Lock != nil:
		a.Outcome, a.LockedBy, a.LockReason = report.OutcomeQueuedBehindLock, in.Lock.By, in.Lock.Reason
	case in.Cmd.Name == command.Rollback:
		a.Outcome = report.OutcomeRollingBack
	default:
		a.Outcome = report.OutcomeDeploying
	}
	return decision{answer: a, effect: effectDeploy, request: req}
}
