package report

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/shipbot/shipbot/internal/command"
)

var replyScenarios = []struct {
	name string
	r    Reply
}{
	{"deploy-staging", Reply{CommentID: 2136774201, Commenter: "octocat", Answers: []Answer{
		{Command: "/deploy staging", Name: "deploy", Outcome: OutcomeDeploying, Env: "staging", SHA: newSHA, Ref: "feature/greeting", LogURL: logURL},
	}}},
	{"rollback-production", Reply{CommentID: 7, Commenter: "octocat", Answers: []Answer{
		{Command: "/rollback", Name: "rollback", Outcome: OutcomeRollingBack, Env: "production", SHA: oldSHA, Ref: "main", By: "alice", At: t0, LogURL: logURL},
	}}},
	{"lock-then-deploy-queued", Reply{CommentID: 8, Commenter: "octocat", Answers: []Answer{
		{Command: "/lock production release freeze", Name: "lock", Outcome: OutcomeLocked, Env: "production", LockedBy: "octocat", LockReason: "release freeze"},
		{Command: "/deploy production main", Name: "deploy", Outcome: OutcomeQueuedBehindLock, Env: "production", SHA: newSHA, Ref: "main", LockedBy: "octocat", LockReason: "release freeze", LogURL: logURL},
		{Command: "/rollback staging", Name: "rollback", Outcome: OutcomeQueuedBehindLock, Env: "staging", SHA: oldSHA, LockedBy: "bob", LogURL: logURL},
	}}},
	{"already-locked-and-unlock", Reply{CommentID: 9, Commenter: "octocat", Answers: []Answer{
		{Command: "/lock production", Name: "lock", Outcome: OutcomeAlreadyLocked, Env: "production", LockedBy: "alice", LockReason: "incident 42", LockedAt: t0},
		{Command: "/unlock staging", Name: "unlock", Outcome: OutcomeUnlocked, Env: "staging", LockedBy: "bob", LockedAt: t0, Released: 1},
		{Command: "/unlock qa", Name: "unlock", Outcome: OutcomeUnlocked, Env: "qa", LockedBy: "bob", Released: 0},
		{Command: "/unlock preview", Name: "unlock", Outcome: OutcomeNotLocked, Env: "preview"},
	}}},
	{"refusals", Reply{CommentID: 10, Commenter: "mona", Answers: []Answer{
		{Command: "/deploy production", Name: "deploy", Outcome: OutcomeNoPermission, Env: "production", NeedMin: "write", Have: "read", Verb: "deploy to"},
		{Command: "/rollback qa", Name: "rollback", Outcome: OutcomeNoPermission, Env: "qa", NeedLogins: []string{"alice", "bob"}, Have: "admin", Verb: "roll back"},
		{Command: "/deploy prod", Name: "deploy", Outcome: OutcomeUnknownEnvironment, Env: "prod", Environments: []string{"production", "staging"}},
		{Command: "/deploy production", Name: "deploy", Outcome: OutcomeBranchesNotAllowed, Env: "production", Branch: "main"},
		{Command: "/deploy qa", Name: "deploy", Outcome: OutcomeBranchesNotAllowed, Env: "qa"},
		{Command: "/rollback", Name: "rollback", Outcome: OutcomeNoEarlierRelease, Env: "production", SHA: newSHA},
		{Command: "/rollback staging", Name: "rollback", Outcome: OutcomeNoEarlierRelease, Env: "staging"},
		{Command: "/rollback production to deadbee", Name: "rollback", Outcome: OutcomeUnknownRelease, Env: "production", Ref: "deadbee"},
		{Command: "/rollback production to abc1234", Name: "rollback", Outcome: OutcomeAlreadyCurrent, Env: "production", SHA: newSHA},
		{Command: "/deploy staging nosuchbranch", Name: "deploy", Outcome: OutcomeUnknownRef, Env: "staging", Ref: "nosuchbranch"},
		{Command: "/deploy", Name: "deploy", Outcome: OutcomeClosed, Env: "staging"},
		{Command: "/rollback", Name: "rollback", Outcome: OutcomeNoEnvironment, Environments: []string{"blue", "green"}},
		{Command: "/deploy staging", Name: "deploy", Outcome: OutcomeFailed, Env: "staging", Message: "GitHub answered 502"},
	}}},
	{"parse-errors", Reply{CommentID: 11, Commenter: "octocat", Answers: []Answer{
		{Command: "/rollback production abc1234", Name: "rollback", Outcome: OutcomeParseError,
			ParseError: &command.Error{Kind: command.MissingTo, Command: "/rollback", Grammar: command.EnvToRef, Env: "production", Ref: "abc1234"}},
		{Command: "/deplyo staging", Outcome: OutcomeUnknownCommand, ParseError: &command.Error{Kind: command.UnknownCommand, Word: "/deplyo", Fix: "/deploy staging"},
			Block: "| command | what it does |\n| --- | --- |\n| `/help` | shows this list |\n"},
	}}},
	{"status", Reply{CommentID: 12, Commenter: "octocat", Answers: []Answer{
		{Command: "/status", Name: "status", Outcome: OutcomeStatus, Block: StatusTable([]EnvStatus{
			{Env: "production", SHA: newSHA, Ref: "main", By: "alice", At: t0, Locked: true, LockedBy: "bob", LockReason: "release | freeze", LockedAt: at(3600e9),
				Queued: []DeployLine{{SHA: nextSHA, Ref: "main", By: "carol", Kind: KindPush, State: "locked", At: at(7200e9)}},
				Last: []DeployLine{
					{SHA: newSHA, Ref: "main", By: "alice", Kind: KindPush, State: "success", At: t0},
					{SHA: oldSHA, By: "bob", Kind: KindRollback, State: "failure", At: at(-3600e9)},
				}},
			{Env: "staging", Running: &DeployLine{SHA: oldSHA, Ref: "feature/greeting", By: "octocat", Kind: KindComment, State: "running"}},
		})},
	}}},
	{"status-no-environments", Reply{CommentID: 13, Answers: []Answer{
		{Command: "/status", Name: "status", Outcome: OutcomeStatus, Block: StatusTable(nil)},
	}}},
	{"help", Reply{CommentID: 16, Commenter: "octocat", Answers: []Answer{
		{Command: "/help", Name: "help", Outcome: OutcomeHelp, Block: HelpText([]command.Spec{
			{Name: "status", Synopsis: "/status [ENV]", Does: "shows the current release", Who: command.Anyone},
			{Name: "help", Synopsis: "/help", Does: "shows this list", Who: command.Anyone},
			{Name: "lock", Synopsis: "/lock ENV [reason…]", Does: "stops deploys to ENV until /unlock", Who: command.Deployers},
		}, []string{"production"}, map[string]string{"production": Deployers(nil, "maintain")})},
	}}},
	{"not-a-pull-request", Reply{CommentID: 14, Commenter: "octocat", Answers: []Answer{{Outcome: OutcomeNotPullRequest}}}},
	{"bad-config", Reply{CommentID: 15, Commenter: "octocat", Answers: []Answer{
		{Outcome: OutcomeBadConfig, Block: "- line 3: environments.production.rollout.batch: \"lots\" is not a count or a percentage\n"},
	}}},
}

func TestReplyGolden(t *testing.T) {
	for _, sc := range replyScenarios {
		t.Run(sc.name, func(t *testing.T) {
			golden(t, filepath.Join("reply", sc.name+".golden"), []byte(ReplyComment(sc.r)))
		})
	}
}

func TestReplyStartsWithItsMarker(t *testing.T) {
	body := ReplyComment(Reply{CommentID: 42, Answers: []Answer{{Outcome: OutcomeHelp}}})
	if !strings.HasPrefix(body, ReplyMarker(42)+"\n") {
		t.Errorf("the reply does not start with its marker:\n%s", body)
	}
	if ReplyMarker(42) == ReplyMarker(43) {
		t.Error("two comments' replies share a marker")
	}
}

// Whatever people type, the reply fits in a comment and free text cannot
// open an HTML comment that would hide the rest.
func TestReplyBounds(t *testing.T) {
	long := strings.Repeat("<!-- x ", 300)
	var answers []Answer
	for i := 0; i < 10; i++ {
		answers = append(answers, Answer{Command: long, Name: "lock", Outcome: OutcomeLocked, Env: long, LockReason: long, Block: StatusTable([]EnvStatus{{Env: long, LockReason: long, Locked: true}})})
	}
	body := ReplyComment(Reply{CommentID: 1, Commenter: "x", Answers: answers})
	if n := utf8.RuneCountInString(body); n > MaxCommentBody {
		t.Errorf("reply has %d characters, over %d", n, MaxCommentBody)
	}
	huge := strings.Repeat("x ", 40000)
	if n := utf8.RuneCountInString(ReplyComment(Reply{Answers: []Answer{{Outcome: OutcomeBadConfig, Block: huge}, {Outcome: OutcomeBadConfig, Block: huge}}})); n > MaxCommentBody {
		t.Errorf("reply with huge blocks has %d characters, over %d", n, MaxCommentBody)
	}
	if strings.Count(codeSpans.ReplaceAllString(body, ""), "<!--") != 1 {
		t.Errorf("free text opened an HTML comment in the reply")
	}
}

// codeSpans are inline code, where GitHub shows "<!--" as text.
var codeSpans = regexp.MustCompile("(`+)[^`]*?(`+)")

func TestAccepted(t *testing.T) {
	for _, o := range []Outcome{OutcomeDeploying, OutcomeRollingBack, OutcomeQueuedBehindLock, OutcomeLocked, OutcomeUnlocked, OutcomeStatus, OutcomeHelp} {
		if !o.Accepted() {
			t.Errorf("%s is not accepted", o)
		}
	}
	for _, o := range []Outcome{OutcomeNoPermission, OutcomeUnknownEnvironment, OutcomeBranchesNotAllowed, OutcomeNoEarlierRelease, OutcomeParseError, OutcomeUnknownCommand, OutcomeFailed} {
		if o.Accepted() {
			t.Errorf("%s is accepted", o)
		}
	}
}
