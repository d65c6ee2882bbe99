package handlers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shipbot/shipbot/internal/command"
	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/logctx"
	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/store/record"
	"github.com/shipbot/shipbot/internal/worker"
	"github.com/shipbot/shipbot/queue"
)

// CommandGitHub is what PR comment commands read and write on GitHub: the
// configuration, the pull request's head and its commits, refs, the
// commenter's permission, the 👀 reaction and the one reply per comment.
type CommandGitHub interface {
	ReadFile(ctx context.Context, owner, repo, path, ref string) ([]byte, bool, error)
	PullRequest(ctx context.Context, owner, repo string, number int) (gh.PullRequest, error)
	PullRequestCommits(ctx context.Context, owner, repo string, number int) ([]gh.Commit, error)
	Commit(ctx context.Context, owner, repo, ref string) (gh.Commit, bool, error)
	ResolveRef(ctx context.Context, owner, repo, ref string) (sha string, found bool, err error)
	CollaboratorPermission(ctx context.Context, owner, repo, login string) (gh.Permission, error)
	AddReaction(ctx context.Context, owner, repo string, commentID int64, content string) error
	UpsertStickyComment(ctx context.Context, owner, repo string, number int, marker, body string) (gh.Comment, bool, error)
}

// CommandStore is what commands read and write of the deploy store: the
// /lock of each environment, its releases and its deploys.
type CommandStore interface {
	AppendAudit(ctx context.Context, e record.AuditEntry) (record.AuditEntry, error)
	LockEnvironment(ctx context.Context, env record.EnvKey, by, reason string) (record.EnvLock, bool, error)
	UnlockEnvironment(ctx context.Context, env record.EnvKey) (record.EnvLock, bool, error)
	EnvironmentLock(ctx context.Context, env record.EnvKey) (record.EnvLock, bool, error)
	CurrentRelease(ctx context.Context, env record.EnvKey) (record.Release, error)
	PreviousRelease(ctx context.Context, env record.EnvKey) (record.Release, error)
	FindRelease(ctx context.Context, env record.EnvKey, ref string) (record.Release, error)
	GetDeploy(ctx context.Context, id string) (record.Deploy, error)
	ListDeploys(ctx context.Context, env record.EnvKey, n int) ([]record.Deploy, error)
	Pending(ctx context.Context, env record.EnvKey) (string, bool, error)
	Running(ctx context.Context, env record.EnvKey) (string, bool, error)
	Claim(ctx context.Context, key, holder string, ttl time.Duration) (string, error)
	ReleaseClaim(ctx context.Context, key, holder string) error
}

// CommentClaimTTL is how long a comment stays claimed by the job that
// answers it: as long as delivery ids are remembered, which outlasts
// GitHub keeping a delivery to redeliver (3 days).
const CommentClaimTTL = 7 * 24 * time.Hour

// CommandEngine is the engine calls commands make: /deploy and /rollback
// deploy, /unlock resumes what queued behind the lock.
type CommandEngine interface {
	Deploy(ctx context.Context, req deploy.Request) error
	Resume(ctx context.Context, t deploy.Target) error
}

// enabled: with any of GitHub, Store or Engine unset, comments are only
// logged.
func (b Base) enabled() bool { return b.GitHub != nil && b.Store != nil && b.Engine != nil }

// commentEvent is the part of an issue_comment payload the handler reads.
type commentEvent struct {
	Action string `json:"action"`
	Issue  struct {
		Number      int       `json:"number"`
		PullRequest *struct{} `json:"pull_request"`
	} `json:"issue"`
	Comment struct {
		ID        int64     `json:"id"`
		HTMLURL   string    `json:"html_url"`
		Body      string    `json:"body"`
		CreatedAt time.Time `json:"created_at"`
		User      struct {
			Login string `json:"login"`
			Type  string `json:"type"`
		} `json:"user"`
	} `json:"comment"`
	origin
}

// screen decides whether a comment is one to act on: created (not edited
// or deleted), by a person (not a bot, this one included), with at least
// one command line. It is the first half of the pure core.
func screen(action, login, userType, body string) (cmds []command.Command, errs []*command.Error, act bool) {
	if action != "created" || isBot(login, userType) {
		return nil, nil, false
	}
	cmds, errs = command.Parse(body, commandTable().Specs())
	return cmds, errs, len(cmds)+len(errs) > 0
}

// isBot: GitHub marks Apps' accounts type Bot and names them "slug[bot]".
func isBot(login, userType string) bool {
	return strings.EqualFold(userType, "Bot") || strings.HasSuffix(strings.ToLower(login), "[bot]")
}

// issueComment runs the commands of a PR comment (SPEC §4) and answers
// them in one reply. Every step is safe to repeat: the reply is found again
// by its marker and edited, deploys have ids made from the comment, a
// repeated /lock is recognised, so a retried job neither doubles the reply
// nor the deploys. Two deliveries of one comment (a redelivery) would
// race each other's find-or-create of the reply and of the deployment, so
// the job first claims the comment: only the job holding the claim acts,
// and the same job retried finds the claim its own and carries on.
func (deps Deps) issueComment(ctx context.Context, job queue.Job) error {
	var e commentEvent
	if err := decode(job, &e); err != nil {
		return err
	}
	log := logctx.From(ctx)
	if e.Action == "" {
		e.Action = job.Action
	}
	cmds, errs, act := screen(e.Action, e.Comment.User.Login, e.Comment.User.Type, e.Comment.Body)
	log.Info("comment received", "issue", e.Issue.Number, "on_pr", e.Issue.PullRequest != nil, "comment", e.Comment.ID,
		"author", e.Comment.User.Login, "author_type", e.Comment.User.Type, "commands", len(cmds), "command_errors", len(errs), "acting", act)
	cs := deps.Base
	if !act || !cs.enabled() || e.Issue.Number < 1 {
		return nil
	}
	repo := e.repo(job)
	inst := e.installation(job)
	owner, name, _ := strings.Cut(repo, "/")
	r := &commentRun{
		cs: cs, c: cs.GitHub.Installation(inst), e: &e, repo: repo, owner: owner, name: name, inst: inst,
		now: cs.now(), locks: map[string]*record.EnvLock{},
	}
	release, mine, err := claimComment(ctx, cs.Store, job, repo, e.Comment.ID)
	if err != nil || !mine {
		return err
	}
	r.job, r.release = job, release
	if e.Issue.PullRequest == nil {
		err = r.reply(ctx, []report.Answer{{Outcome: report.OutcomeNotPullRequest}})
	} else {
		err = r.run(ctx, cmds, errs)
	}
	if worker.IsPermanent(err) {
		// Never retried: let a redelivery of the comment try again.
		release()
	}
	return err
}

// claimComment claims comment id for this job. mine is false when another
// job (another delivery of the comment) holds it: that one answers, this
// one has nothing to do. release gives the claim up.
func claimComment(ctx context.Context, st CommandStore, job queue.Job, repo string, id int64) (release func(), mine bool, err error) {
	holder := job.ID
	if holder == "" {
		holder = job.DeliveryID
	}
	if id == 0 || holder == "" {
		return func() {}, true, nil // nothing to tell deliveries apart by
	}
	key := fmt.Sprintf("comment:%s#%d", strings.ToLower(repo), id)
	got, err := st.Claim(ctx, key, holder, CommentClaimTTL)
	if err != nil {
		return nil, false, fmt.Errorf("claim comment %d: %w", id, err)
	}
	if got != holder {
		logctx.From(ctx).Info("another delivery of this comment is answering it; nothing to do", "comment", id, "holder", got)
		return nil, false, nil
	}
	return func() {
		if err := st.ReleaseClaim(context.WithoutCancel(ctx), key, holder); err != nil {
			logctx.From(ctx).Warn("could not give up the claim of the comment", "comment", id, "err", err)
		}
	}, true, nil
}

// commentRun is one comment being answered.
type commentRun struct {
	cs                Base
	job               queue.Job
	release           func() // gives the comment's claim up
	c                 CommandGitHub
	e                 *commentEvent
	repo, owner, name string
	inst              int64
	cfg               *repoconfig.Config
	// now is when the comment is answered, the one time every command of
	// it judges freeze windows by.
	now time.Time

	perm    *repoconfig.Permission
	pr      *gh.PullRequest
	locks   map[string]*record.EnvLock // by environment, as this comment leaves them
	checked map[string]bool            // environments whose lock was read
}

// action is what a command leaves to do after the reply is posted.
type action struct {
	deploy *deploy.Request
	resume *deploy.Target
}

func (r *commentRun) run(ctx context.Context, cmds []command.Command, errs []*command.Error) error {
	cfg, problems, err := r.config(ctx)
	if err != nil {
		return err
	}
	if cfg == nil {
		return r.reply(ctx, []report.Answer{{Outcome: report.OutcomeBadConfig, Block: problems}})
	}
	r.cfg = cfg
	if env := commentTarget(cfg, r.e.Repository.DefaultBranch, cmds); env != "" {
		// The comment's claim is given up first: the owner's run claims
		// it under its own job id.
		if away, err := r.cs.elsewhere(ctx, r.job, r.repo, repoconfig.DriverLocal, env, r.release); away || err != nil {
			return err
		}
	}

	var answers []report.Answer
	var actions []action
	for _, item := range inOrder(cmds, errs) {
		if item.err != nil {
			answers = append(answers, r.parseError(item.err))
			continue
		}
		a, act, err := r.command(ctx, item.cmd)
		if err != nil {
			return err
		}
		answers = append(answers, a)
		actions = append(actions, act)
	}

	for _, a := range answers {
		if a.Outcome.Accepted() {
			if err := r.c.AddReaction(ctx, r.owner, r.name, r.e.Comment.ID, "eyes"); err != nil {
				return fmt.Errorf("react to comment %d: %w", r.e.Comment.ID, err)
			}
			break
		}
	}
	// The reply goes out before the engine runs: a deploy may take minutes.
	if err := r.reply(ctx, answers); err != nil {
		return err
	}
	for _, act := range actions {
		switch {
		case act.deploy != nil:
			if err := r.cs.Engine.Deploy(ctx, *act.deploy); err != nil {
				return fmt.Errorf("deploy %s: %w", act.deploy.ID, err)
			}
		case act.resume != nil:
			if err := r.cs.Engine.Resume(ctx, *act.resume); err != nil {
				return fmt.Errorf("resume %s after /unlock: %w", act.resume.Environment.Name, err)
			}
		}
	}
	return nil
}

func (r *commentRun) reply(ctx context.Context, answers []report.Answer) error {
	id := r.e.Comment.ID
	body := report.ReplyComment(report.Reply{CommentID: id, Commenter: r.e.Comment.User.Login, Answers: answers})
	if _, _, err := r.c.UpsertStickyComment(ctx, r.owner, r.name, r.e.Issue.Number, report.ReplyMarker(id), body); err != nil {
		return fmt.Errorf("reply to comment %d on #%d: %w", id, r.e.Issue.Number, err)
	}
	r.audit(ctx, answers)
	return nil
}

// audit writes the commands that change something or were refused to the
// audit log: lock, unlock, a refused command and why, a configuration
// error, a freeze window an admin deployed through. Deploys and rollbacks are the engine's entries. The log must not
// fail the job: a failed append is logged.
func (r *commentRun) audit(ctx context.Context, answers []report.Answer) {
	link := r.e.Comment.HTMLURL
	for _, a := range answers {
		var action, outcome string
		switch {
		case a.Outcome == report.OutcomeLocked:
			action, outcome = record.ActionLock, record.OutcomeSuccess
		case a.Outcome == report.OutcomeUnlocked:
			action, outcome = record.ActionUnlock, record.OutcomeSuccess
		case a.Outcome == report.OutcomeBadConfig:
			action, outcome = record.ActionConfigError, record.OutcomeError
		case !a.Outcome.Accepted() && a.Outcome != report.OutcomeFailed:
			action, outcome = record.ActionCommandRefused, record.OutcomeRefused
		case a.Freeze != nil:
			// An admin's /deploy through an open freeze window.
			action, outcome = record.ActionFreezeOverridden, record.OutcomeSuccess
		default:
			continue
		}
		text := report.AnswerSentence(a)
		if a.Command != "" {
			text = a.Command + ": " + text
		}
		e := record.AuditEntry{Actor: r.e.Comment.User.Login, Repo: r.repo, Env: a.Env, Action: action, Outcome: outcome, Text: text, Link: link}
		if _, err := r.cs.Store.AppendAudit(ctx, e); err != nil {
			logctx.From(ctx).Warn("audit log: the entry was not written", "action", action, "err", err)
		}
	}
}

// config reads .github/shipbot.yml from the default branch (SPEC §3, §9).
// A file with mistakes gives a nil config and the problems as a Markdown
// list for the reply.
func (r *commentRun) config(ctx context.Context) (*repoconfig.Config, string, error) {
	data, _, err := r.c.ReadFile(ctx, r.owner, r.name, repoconfig.FilePath, "")
	if err != nil {
		return nil, "", fmt.Errorf("read %s of %s: %w", repoconfig.FilePath, r.repo, err)
	}
	cfg, err := repoconfig.Parse(data, r.e.Repository.DefaultBranch)
	if err != nil {
		var bad repoconfig.Errors
		if !errors.As(err, &bad) {
			return nil, "", err
		}
		var b strings.Builder
		for _, p := range bad {
			b.WriteString("- " + p.Error() + "\n")
		}
		return nil, b.String(), nil
	}
	return cfg, "", nil
}

// lineItem is a command or a parse error, in the order of the comment.
type lineItem struct {
	cmd command.Command
	err *command.Error
}

func inOrder(cmds []command.Command, errs []*command.Error) []lineItem {
	out := make([]lineItem, 0, len(cmds)+len(errs))
	i, j := 0, 0
	for i < len(cmds) || j < len(errs) {
		if j == len(errs) || (i < len(cmds) && cmds[i].Line < errs[j].Line) {
			out = append(out, lineItem{cmd: cmds[i]})
			i++
		} else {
			out = append(out, lineItem{err: errs[j]})
			j++
		}
	}
	return out
}

func (r *commentRun) parseError(e *command.Error) report.Answer {
	a := report.Answer{Command: e.Raw, Outcome: report.OutcomeParseError, ParseError: e}
	if e.Kind == command.UnknownCommand {
		a.Outcome, a.Block = report.OutcomeUnknownCommand, helpText(r.cfg)
	}
	return a
}

// command runs c by its entry in the command table.
func (r *commentRun) command(ctx context.Context, c command.Command) (report.Answer, action, error) {
	e, ok := commandTable().Lookup(c.Name)
	if !ok { // Parse yields the table's commands only
		return report.Answer{Command: c.Raw, Name: c.Name, Outcome: report.OutcomeFailed, Message: "/" + c.Name + " is not handled here"}, action{}, nil
	}
	return e.Run(r, ctx, c)
}

func (r *commentRun) permission(ctx context.Context) (repoconfig.Permission, error) {
	if r.perm == nil {
		p, err := r.c.CollaboratorPermission(ctx, r.owner, r.name, r.e.Comment.User.Login)
		if err != nil {
			return repoconfig.PermNone, fmt.Errorf("read the permission of %s: %w", r.e.Comment.User.Login, err)
		}
		rp, _ := repoconfig.ParsePermission(string(p))
		r.perm = &rp
	}
	return *r.perm, nil
}

// lockOf is the environment's /lock as this comment has left it so far.
func (r *commentRun) lockOf(ctx context.Context, key record.EnvKey) (*record.EnvLock, error) {
	k := strings.ToLower(key.Name)
	if r.checked == nil {
		r.checked = map[string]bool{}
	}
	if !r.checked[k] {
		lk, ok, err := r.cs.Store.EnvironmentLock(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("read the lock of %s: %w", key, err)
		}
		r.checked[k] = true
		if ok {
			r.locks[k] = &lk
		}
	}
	return r.locks[k], nil
}
