package report

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/shipbot/shipbot/internal/command"
)

// The bot's answer to a comment of PR commands: one reply per comment,
// one paragraph per command, each a sentence a person can act on.

// ReplyMarker is the hidden marker of the bot's reply to the comment with
// id commentID; the bot finds its reply again by it, so a retried job edits
// the reply instead of posting a second one.
func ReplyMarker(commentID int64) string {
	return "<!-- shipbot:reply:" + strconv.FormatInt(commentID, 10) + " -->"
}

// Outcome is what became of one command.
type Outcome string

const (
	OutcomeDeploying        Outcome = "deploying"          // /deploy: the deploy is recorded and starts (or queues behind another)
	OutcomeRollingBack      Outcome = "rolling_back"       // /rollback: the earlier release is on its way back
	OutcomeQueuedBehindLock Outcome = "queued_behind_lock" // /deploy or /rollback to a locked environment: waits for /unlock
	OutcomeLocked           Outcome = "locked"             // /lock done
	OutcomeAlreadyLocked    Outcome = "already_locked"     // /lock: someone holds the lock already
	OutcomeUnlocked         Outcome = "unlocked"           // /unlock done
	OutcomeNotLocked        Outcome = "not_locked"         // /unlock: there was no lock
	OutcomeStatus           Outcome = "status"             // /status: Block is the table
	OutcomeHelp             Outcome = "help"               // /help: Block is the help text

	OutcomeParseError         Outcome = "parse_error"          // the line is not a command as written: ParseError
	OutcomeUnknownCommand     Outcome = "unknown_command"      // ParseError; Block is the help text
	OutcomeUnknownEnvironment Outcome = "unknown_environment"  // Env; Environments are the real ones
	OutcomeNoEnvironment      Outcome = "no_environment"       // no ENV given and none to default to; Environments
	OutcomeNoPermission       Outcome = "no_permission"        // NeedLogins or NeedMin; Have; Verb
	OutcomeBranchesNotAllowed Outcome = "branches_not_allowed" // Env; Branch is where merges deploy it from ("" for none)
	OutcomeNoEarlierRelease   Outcome = "no_earlier_release"   // Env; SHA is the current release, "" for none
	OutcomeUnknownRelease     Outcome = "unknown_release"      // Env; Ref was never a successful release there
	OutcomeAlreadyCurrent     Outcome = "already_current"      // /rollback to what runs now: Env, SHA
	OutcomeUnknownRef         Outcome = "unknown_ref"          // Ref is no branch, tag or commit of the repository
	OutcomeClosed             Outcome = "closed"               // /deploy of a closed pull request's head
	OutcomeFrozen             Outcome = "frozen"               // /deploy in an open freeze window, by someone below admin: Env, Freeze
	OutcomeHeadMoved          Outcome = "head_moved"           // /deploy of the PR head after it moved past the comment: SHA now, SeenSHA ("" if unknown)
	OutcomeBadConfig          Outcome = "bad_config"           // Block lists the problems of .github/shipbot.yml
	OutcomeNotPullRequest     Outcome = "not_pull_request"     // commands on an issue
	OutcomeFailed             Outcome = "failed"               // the bot could not do it: Message
)

// Accepted reports whether the command was carried out, queued or
// answered, as opposed to refused: a comment with an accepted command gets
// the 👀 reaction.
func (o Outcome) Accepted() bool {
	switch o {
	case OutcomeDeploying, OutcomeRollingBack, OutcomeQueuedBehindLock, OutcomeLocked, OutcomeAlreadyLocked,
		OutcomeUnlocked, OutcomeNotLocked, OutcomeStatus, OutcomeHelp:
		return true
	}
	return false
}

// Answer is the outcome of one command, with what its sentence names.
type Answer struct {
	Command string  // the line as typed, e.g. "/deploy staging"
	Name    string  // the command, as command.Command.Name holds it: "deploy"
	Outcome Outcome //
	Env     string  // the environment, as configured

	SHA    string // the release deployed or put back; the current one for NoEarlierRelease, AlreadyCurrent
	Ref    string // the branch, tag or ref asked for or the release came from
	By     string // RollingBack: who deployed the release being put back
	At     time.Time
	LogURL string // the bot's page of the deploy

	LockedBy   string // QueuedBehindLock, Locked, AlreadyLocked, Unlocked: the lock's holder
	LockReason string
	LockedAt   time.Time
	Released   int // Unlocked: deploys waiting for the lock that now go ahead

	NeedMin    string   // NoPermission: the least permission that may ("write")
	NeedLogins []string // NoPermission: the only logins that may
	Have       string   // NoPermission: the commenter's permission
	Verb       string   // NoPermission: what the command does to Env ("deploy to"), its Spec's Verb

	Branch       string   // BranchesNotAllowed: the environment's branch
	Freeze       *Freeze  // Frozen: the open freeze; Deploying, QueuedBehindLock: the freeze an admin deploys through
	SeenSHA      string   // HeadMoved: the head the commenter saw
	Environments []string // UnknownEnvironment, NoEnvironment: the real ones

	ParseError *command.Error // ParseError, UnknownCommand: the line and the rule it broke
	Message    string         // Failed: what is wrong
	Block      string         // Markdown shown under the sentence: a table, the help text
}

// Reply is the bot's reply to one comment.
type Reply struct {
	CommentID int64
	Commenter string // login, without "@"
	Answers   []Answer
}

// ReplyComment is the body of the bot's reply: the marker, the commenter
// mentioned, then each command as typed and what became of it.
func ReplyComment(r Reply) string {
	var b strings.Builder
	b.WriteString(ReplyMarker(r.CommentID) + "\n")
	if r.Commenter != "" {
		b.WriteString(mention(r.Commenter) + "\n")
	}
	for _, a := range r.Answers {
		b.WriteString("\n")
		if a.Command != "" {
			b.WriteString("**" + code(fit(a.Command, maxCommandShown)) + "** ")
		}
		b.WriteString(sentence(a) + "\n")
		if blk := strings.TrimRight(a.Block, "\n"); blk != "" {
			b.WriteString("\n" + blk + "\n")
		}
	}
	return clip(b.String(), MaxCommentBody)
}

// maxCommandShown bounds the echo of a command line.
const maxCommandShown = 120

func envName(env string) string { return "**" + md(fit(env, maxName)) + "**" }

// sentence says what became of a command: done (or answered), or refused
// and why.
// AnswerSentence is what the reply says of one command, for the audit log.
func AnswerSentence(a Answer) string { return sentence(a) }

func sentence(a Answer) string {
	if a.Outcome.Accepted() {
		return doneSentence(a)
	}
	return refusedSentence(a)
}

func doneSentence(a Answer) string {
	env := envName(a.Env)
	logLink := ""
	if a.LogURL != "" {
		logLink = " " + link("Follow it here", a.LogURL) + "."
	}
	switch a.Outcome {
	case OutcomeDeploying:
		return "🚀 Deploying " + release(a.SHA, a.Ref) + " to " + env + "." + freezeOverridden(a) + logLink
	case OutcomeRollingBack:
		return "⏪ Rolling " + env + " back to " + release(a.SHA, a.Ref) + deployedBy(a.By, a.At) + "." + logLink
	case OutcomeQueuedBehindLock:
		what := "Deploy of " + release(a.SHA, a.Ref) + " to " + env
		if a.Name == "rollback" {
			what = "Rollback of " + env + " to " + release(a.SHA, a.Ref)
		}
		return "⏸️ " + what + " queued behind the lock " + lockHolder(a.LockedBy, a.LockReason) +
			": it goes ahead after " + code("/unlock "+a.Env) + "." + freezeOverridden(a) + logLink
	case OutcomeLocked:
		s := "🔒 Locked " + env + ": no deploys there, merges included, until " + code("/unlock "+a.Env) + "; they queue up meanwhile."
		if r := md(fit(a.LockReason, maxNote)); r != "" {
			s += " Reason: " + strings.TrimSuffix(r, ".") + "."
		}
		return s
	case OutcomeAlreadyLocked:
		return "🔒 " + env + " is already locked " + lockHolder(a.LockedBy, a.LockReason) + since(a.LockedAt) +
			"; " + code("/unlock "+a.Env) + " releases it."
	case OutcomeUnlocked:
		s := "🔓 Unlocked " + env + " (locked " + lockHolder(a.LockedBy, "") + since(a.LockedAt) + ")."
		switch a.Released {
		case 0:
			s += " No deploy was waiting."
		case 1:
			s += " The queued deploy goes ahead."
		default:
			s += fmt.Sprintf(" %d queued deploys go ahead.", a.Released)
		}
		return s
	case OutcomeNotLocked:
		return env + " was not locked: nothing to unlock."
	case OutcomeStatus:
		if a.Env != "" {
			return "Status of " + env + ":"
		}
		return "Status of every environment:"
	case OutcomeHelp:
		return "The commands:"
	}
	return md(string(a.Outcome))
}

func refusedSentence(a Answer) string {
	env := envName(a.Env)
	switch a.Outcome {
	case OutcomeParseError, OutcomeUnknownCommand:
		msg, h := ParseErrorText(a.ParseError)
		return "❓ " + capital(strings.TrimSuffix(md(fit(msg, maxNote)), ".")) + hint(h)
	case OutcomeUnknownEnvironment:
		return "❓ There is no environment " + code(fit(a.Env, maxName)) + ". " + environments(a.Environments)
	case OutcomeNoEnvironment:
		return "❓ Which environment? Name it: " + code(join("/"+a.Name, "ENV")) + ". " + environments(a.Environments)
	case OutcomeNoPermission:
		verb := a.Verb
		if verb == "" {
			verb = "use " + code("/"+a.Name) + " in"
		}
		if len(a.NeedLogins) > 0 {
			return "⛔ Only " + logins(a.NeedLogins) + " may " + verb + " " + env + " (" + code("deployers") + " in " + code(".github/shipbot.yml") + ")."
		}
		return "⛔ You need " + md(a.NeedMin) + " permission or higher on this repository to " + verb + " " + env +
			"; you have " + md(or(a.Have, "none")) + ". Ask someone with it, or a repository admin for access."
	case OutcomeBranchesNotAllowed:
		s := "⛔ " + env + " does not take pull request deploys (" + code("allow_branches") + " is off): "
		if a.Branch != "" {
			return s + "merge this pull request into " + code(a.Branch) + " and the merge deploys it."
		}
		return s + "deploy it to an environment that allows branches, or turn " + code("allow_branches") + " on in " + code(".github/shipbot.yml") + "."
	case OutcomeNoEarlierRelease:
		if a.SHA == "" {
			return "⛔ Nothing to roll back: " + env + " has no successful release yet."
		}
		return "⛔ Nothing to roll back to: before the current one, " + code(Short(a.SHA)) + ", " + env + " has no release that succeeded and was not rolled back."
	case OutcomeUnknownRelease:
		return "⛔ " + code(fit(a.Ref, maxName)) + " is not a good release of " + env + " (one that succeeded and was not rolled back), so it is not one to roll back to. " +
			code("/status "+a.Env) + " shows the last deploys; " + code("/rollback "+a.Env) + " puts back the one before the current."
	case OutcomeAlreadyCurrent:
		return env + " already runs " + code(Short(a.SHA)) + ": nothing to roll back."
	case OutcomeUnknownRef:
		return "❓ " + code(fit(a.Ref, maxName)) + " is not a branch, tag or commit of this repository: check the name, or push it first."
	case OutcomeClosed:
		return "⛔ This pull request is closed: reopen it to deploy its head, or name what to deploy: " + code(join("/deploy", a.Env, "REF")) + "."
	case OutcomeFrozen:
		return frozenRefusal(a)
	case OutcomeHeadMoved:
		return headMoved(a)
	case OutcomeBadConfig:
		return "⚠️ " + code(".github/shipbot.yml") + " on the default branch has mistakes, so no command runs until they are fixed:"
	case OutcomeNotPullRequest:
		return "Commands work on pull requests only: comment on the pull request whose code you want to deploy."
	case OutcomeFailed:
		return "⚠️ Could not do it: " + strings.TrimSuffix(md(fit(a.Message, maxNote)), ".") + ". Try again in a moment."
	}
	return md(string(a.Outcome))
}

// headMoved is the answer to a /deploy of the pull request's head written
// before its newest commit: the commenter did not see what would deploy.
func headMoved(a Answer) string {
	s := "⛔ This pull request received commits after your comment: its head is now " + code(Short(a.SHA))
	if a.SeenSHA != "" {
		s += ", and you saw " + code(Short(a.SeenSHA))
	} else {
		s += ", committed after you wrote"
	}
	return s + ". Nothing was deployed: review the new commits, then comment again to deploy them."
}

// release is `abc1234` (`main`): the SHA, and where it came from when that
// says more.
func release(sha, ref string) string {
	s := code(Short(sha))
	if ref != "" && ref != sha && !strings.HasPrefix(sha, ref) {
		s += " (" + code(fit(ref, maxName)) + ")"
	}
	return s
}

func deployedBy(by string, at time.Time) string {
	var parts []string
	if by != "" {
		parts = append(parts, "deployed by "+mention(by))
	}
	if t := FormatTime(at); t != "" {
		parts = append(parts, "at "+t)
	}
	if len(parts) == 0 {
		return ""
	}
	return ", " + strings.Join(parts, " ")
}

func lockHolder(by, reason string) string {
	s := "by " + mention(or(by, "someone"))
	if r := md(fit(reason, maxNote)); r != "" {
		s += " (" + strings.TrimSuffix(r, ".") + ")"
	}
	return s
}

func since(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return " since " + FormatTime(t)
}

func hint(h string) string {
	h = strings.TrimSuffix(md(fit(h, maxNote)), ".")
	if h == "" {
		return "."
	}
	return ": " + h + "."
}

// environments lists them for a sentence.
func environments(envs []string) string {
	switch len(envs) {
	case 0:
		return "No environments are configured in " + code(".github/shipbot.yml") + "."
	case 1:
		return "The only environment is " + code(envs[0]) + "."
	}
	names := make([]string, len(envs))
	for i, e := range envs {
		names[i] = code(fit(e, maxName))
	}
	return "The environments are " + andList(names) + "."
}

func logins(ls []string) string {
	ms := make([]string, len(ls))
	for i, l := range ls {
		ms[i] = mention(l)
	}
	return andList(ms)
}

func join(cmd string, args ...string) string {
	out := cmd
	for _, a := range args {
		if a != "" {
			out += " " + a
		}
	}
	return out
}
