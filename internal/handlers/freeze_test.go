package handlers

import (
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/store/record"
)

// freezeConfig freezes staging every weekend, Berlin time, and production
// over the holidays; qa is never frozen.
const freezeConfig = `default_environment: qa
environments:
  staging:
    allow_branches: true
    freeze: Fri 16:00 - Mon 08:00 Europe/Berlin
  production:
    branch: main
    freeze:
      - 2026-12-23 - 2027-01-02
  qa:
    allow_branches: true
`

const shaNext = "e2a057296936aca424e2fc099de65b73d3a7aa4f"

var (
	// saturday is inside staging's weekend freeze, which lifts on Monday
	// 2025-06-02 at 08:00 in Berlin (summer time).
	saturday = time.Date(2025, 5, 31, 10, 0, 0, 0, time.UTC)
	// wednesday is outside every freeze.
	wednesday = time.Date(2025, 6, 4, 10, 0, 0, 0, time.UTC)
)

// TestDecideFreezeAndHead is the pure core of SPEC §4's two /deploy rules:
// a freeze refuses everyone below admin, an admin deploys through it and
// is told so, /rollback is never frozen, a retried job keeps its decision;
// a /deploy of the head written before the head was committed is refused,
// naming both heads.
func TestDecideFreezeAndHead(t *testing.T) {
	cfg := mustConfig(t, freezeConfig)
	staging, qa := cfg.Environments["staging"], cfg.Environments["qa"]
	commentAt := saturday.Add(-time.Minute)
	lock := &record.EnvLock{By: "alice", Reason: "incident", At: saturday.Add(-time.Hour)}
	for _, tc := range []struct {
		name    string
		line    string
		env     *repoconfig.Environment
		with    func(*decideInput)
		outcome report.Outcome
		effect  effect
		sha     string
		freeze  bool // the answer names the open freeze
		seen    string
	}{
		{"write in a freeze is refused", "/deploy staging", staging, nil, report.OutcomeFrozen, effectNone, "", true, ""},
		{"maintain in a freeze is refused", "/deploy staging", staging, func(in *decideInput) { in.Perm = repoconfig.PermMaintain }, report.OutcomeFrozen, effectNone, "", true, ""},
		{"a named ref in a freeze is refused", "/deploy staging v1.2", staging, func(in *decideInput) { in.RefSHA, in.RefFound = shaOld, true }, report.OutcomeFrozen, effectNone, "", true, ""},
		{"admin deploys through a freeze", "/deploy staging", staging, func(in *decideInput) { in.Perm = repoconfig.PermAdmin }, report.OutcomeDeploying, effectDeploy, shaHead, true, ""},
		{"admin through a freeze, behind a lock", "/deploy staging", staging, func(in *decideInput) { in.Perm, in.Lock = repoconfig.PermAdmin, lock }, report.OutcomeQueuedBehindLock, effectDeploy, shaHead, true, ""},
		{"admin in a freeze still names a real ref", "/deploy staging nope", staging, func(in *decideInput) { in.Perm = repoconfig.PermAdmin }, report.OutcomeUnknownRef, effectNone, "", false, ""},
		{"write outside the window deploys", "/deploy staging", staging, func(in *decideInput) { in.Now = wednesday }, report.OutcomeDeploying, effectDeploy, shaHead, false, ""},
		{"another environment is not frozen", "/deploy qa", qa, nil, report.OutcomeDeploying, effectDeploy, shaHead, false, ""},
		{"a retried job keeps its deploy in a freeze", "/deploy staging", staging, func(in *decideInput) {
			in.Existing = &record.Deploy{SHA: shaOld, Ref: "feature/greeting"}
		}, report.OutcomeDeploying, effectDeploy, shaOld, false, ""},
		{"rollback is never frozen", "/rollback staging", staging, func(in *decideInput) {
			in.Current, in.Target = &record.Release{SHA: shaMain}, &record.Release{SHA: shaOld}
		}, report.OutcomeRollingBack, effectDeploy, shaOld, false, ""},

		{"the head moved after the comment", "/deploy qa", qa, func(in *decideInput) {
			in.PR.HeadSHA, in.HeadCommittedAt, in.SeenSHA = shaNext, commentAt.Add(time.Second), shaHead
		}, report.OutcomeHeadMoved, effectNone, shaNext, false, shaHead},
		{"the head moved, the seen one unknown", "/deploy qa", qa, func(in *decideInput) {
			in.PR.HeadSHA, in.HeadCommittedAt = shaNext, commentAt.Add(time.Hour)
		}, report.OutcomeHeadMoved, effectNone, shaNext, false, ""},
		{"the head committed before the comment", "/deploy qa", qa, func(in *decideInput) { in.HeadCommittedAt = commentAt.Add(-time.Hour) }, report.OutcomeDeploying, effectDeploy, shaHead, false, ""},
		{"the head committed in the comment's second", "/deploy qa", qa, func(in *decideInput) { in.HeadCommittedAt = commentAt }, report.OutcomeDeploying, effectDeploy, shaHead, false, ""},
		{"no commit date says nothing moved", "/deploy qa", qa, nil, report.OutcomeDeploying, effectDeploy, shaHead, false, ""},
		{"no comment time says nothing moved", "/deploy qa", qa, func(in *decideInput) { in.CommentAt, in.HeadCommittedAt = time.Time{}, saturday }, report.OutcomeDeploying, effectDeploy, shaHead, false, ""},
		{"a named ref does not care where the head is", "/deploy qa v1.2", qa, func(in *decideInput) {
			in.RefSHA, in.RefFound, in.HeadCommittedAt = shaOld, true, saturday
		}, report.OutcomeDeploying, effectDeploy, shaOld, false, ""},
		{"a closed pull request is closed first", "/deploy qa", qa, func(in *decideInput) { in.PR.State, in.HeadCommittedAt = "closed", saturday }, report.OutcomeClosed, effectNone, "", false, ""},
		{"the freeze comes before a moved head", "/deploy staging", staging, func(in *decideInput) { in.HeadCommittedAt = saturday }, report.OutcomeFrozen, effectNone, "", true, ""},
		{"a retried job keeps its deploy after the head moved", "/deploy qa", qa, func(in *decideInput) {
			in.Existing, in.PR.HeadSHA, in.HeadCommittedAt = &record.Deploy{SHA: shaHead}, shaNext, saturday
		}, report.OutcomeDeploying, effectDeploy, shaHead, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := decideInput{
				Cmd: parseOne(t, tc.line), Env: tc.env, Commenter: "octocat", Perm: repoconfig.PermWrite, CommentID: 7,
				CommentAt: commentAt, Now: saturday, PR: gh.PullRequest{Number: 42, State: "open", HeadSHA: shaHead, HeadRef: "feature/greeting"},
			}
			if tc.with != nil {
				tc.with(&in)
			}
			d := deciders[in.Cmd.Name](in)
			a := d.answer
			if a.Outcome != tc.outcome || d.effect != tc.effect {
				t.Fatalf("decide = %s/%d, want %s/%d (%+v)", a.Outcome, d.effect, tc.outcome, tc.effect, a)
			}
			if a.SHA != tc.sha || a.SeenSHA != tc.seen {
				t.Errorf("answer names %q, seen %q; want %q, %q", a.SHA, a.SeenSHA, tc.sha, tc.seen)
			}
			if d.effect == effectDeploy && d.request.Release.SHA != tc.sha {
				t.Errorf("deploys %q, want %q", d.request.Release.SHA, tc.sha)
			}
			if (a.Freeze != nil) != tc.freeze {
				t.Fatalf("answer's freeze %+v, want one: %t", a.Freeze, tc.freeze)
			}
			if a.Freeze == nil {
				return
			}
			berlin, _ := time.LoadLocation("Europe/Berlin")
			if want := time.Date(2025, 6, 2, 8, 0, 0, 0, berlin); a.Freeze.Window != "Fri 16:00 - Mon 08:00 Europe/Berlin" || !a.Freeze.Until.Equal(want) || a.Freeze.Days {
				t.Errorf("freeze %+v, want the weekend window until %s", a.Freeze, want)
			}
			if got := report.FreezeEnd(*a.Freeze); got != "Mon 08:00 CEST (Europe/Berlin)" {
				t.Errorf("the freeze ends %q", got)
			}
		})
	}
}

func TestOpenFreezeOfDays(t *testing.T) {
	production := mustConfig(t, freezeConfig).Environments["production"]
	f := openFreeze(production, time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC))
	if f == nil || !f.Days || !f.Until.Equal(time.Date(2027, 1, 3, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("holiday freeze %+v, want days until 2027-01-03", f)
	}
	if got := report.FreezeEnd(*f); got != "Sun 2027-01-03 00:00 UTC" {
		t.Errorf("the holiday freeze ends %q", got)
	}
	if f := openFreeze(production, time.Date(2027, 1, 3, 0, 0, 0, 0, time.UTC)); f != nil {
		t.Errorf("open after its last day: %+v", f)
	}
}

func TestSeenHead(t *testing.T) {
	t0 := time.Date(2025, 5, 31, 10, 0, 0, 0, time.UTC)
	c := func(sha string, d time.Duration) gh.Commit { return gh.Commit{SHA: sha, CommittedAt: t0.Add(d)} }
	for _, tc := range []struct {
		name    string
		commits []gh.Commit
		want    string
	}{
		{"the last before the comment", []gh.Commit{c("a", -2*time.Hour), c("b", -time.Hour), c("c", time.Hour)}, "b"},
		{"one made in the comment's second", []gh.Commit{c("a", -time.Hour), c("b", 0), c("c", time.Second)}, "b"},
		{"the newest by date, not by place (a rebase reorders dates)", []gh.Commit{c("a", -time.Minute), c("b", -time.Hour), c("c", time.Hour)}, "a"},
		{"of two at one time, the later listed", []gh.Commit{c("a", -time.Hour), c("b", -time.Hour), c("c", time.Hour)}, "b"},
		{"all after the comment", []gh.Commit{c("a", time.Minute), c("b", time.Hour)}, ""},
		{"undated commits are not seen", []gh.Commit{c("a", -time.Hour), {SHA: "b"}, c("c", time.Hour)}, "a"},
		{"none", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := seenHead(tc.commits, t0); got != tc.want {
				t.Errorf("seenHead = %q, want %q", got, tc.want)
			}
		})
	}
}

// operations are the GitHub operations called since the last ResetCalls.
func operations(srv *githubtest.Server) string {
	var ops []string
	for _, c := range srv.Calls() {
		if c.API() {
			ops = append(ops, c.Operation)
		}
	}
	return strings.Join(ops, " ")
}

// TestIssueCommentFreeze runs the freeze end to end through the handler,
// with the clock at a Saturday inside staging's weekend freeze.
func TestIssueCommentFreeze(t *testing.T) {
	w := newCommentWorld(t, freezeConfig)
	w.cs.Now = func() time.Time { return saturday }
	w.srv.SetPermission("octo-org", "web", "alice", "admin")

	t.Run("write is refused and nothing more is read", func(t *testing.T) {
		w.srv.ResetCalls()
		id := w.comment(t, "created", "octocat", "User", "/deploy staging", true)
		body := w.replies(id)[0].Body
		if !strings.Contains(body, "❄️ **staging** is frozen until Mon 08:00 CEST (Europe/Berlin) by the freeze window `Fri 16:00 - Mon 08:00 Europe/Berlin`") {
			t.Errorf("reply:\n%s", body)
		}
		if len(w.eng.deploys) != 0 {
			t.Errorf("deploys %+v in a freeze", w.eng.deploys)
		}
		ops := operations(w.srv)
		if strings.Contains(ops, "pulls/") || strings.Contains(ops, "repos/get-commit") || strings.Contains(ops, "reactions/") {
			t.Errorf("a frozen /deploy called %s", ops)
		}
	})
	t.Run("admin deploys through it", func(t *testing.T) {
		id := w.comment(t, "created", "alice", "User", "/deploy staging", true)
		body := w.replies(id)[0].Body
		if !strings.Contains(body, "Deploying `9762dd7` (`feature`) to **staging**. ❄️ Freeze overridden: **staging** is frozen until Mon 08:00 CEST (Europe/Berlin)") {
			t.Errorf("reply:\n%s", body)
		}
		if len(w.eng.deploys) != 1 || w.eng.deploys[0].Release.SHA != shaHead {
			t.Errorf("deploys %+v", w.eng.deploys)
		}
	})
	t.Run("rollback is not frozen", func(t *testing.T) {
		id := w.comment(t, "created", "octocat", "User", "/rollback staging", true)
		if body := w.replies(id)[0].Body; strings.Contains(body, "frozen") || !strings.Contains(body, "Nothing to roll back") {
			t.Errorf("reply:\n%s", body)
		}
	})
	t.Run("status shows the freeze", func(t *testing.T) {
		id := w.comment(t, "created", "octocat", "User", "/status", true)
		body := w.replies(id)[0].Body
		var staging, qa string
		for _, line := range strings.Split(body, "\n") {
			switch {
			case strings.HasPrefix(line, "| **staging**"):
				staging = line
			case strings.HasPrefix(line, "| **qa**"):
				qa = line
			}
		}
		if !strings.Contains(staging, "❄️ frozen until Mon 08:00 CEST (Europe/Berlin) by the freeze window `Fri 16:00 - Mon 08:00 Europe/Berlin`") {
			t.Errorf("staging's row: %s", staging)
		}
		if strings.Contains(qa, "frozen") {
			t.Errorf("qa's row: %s", qa)
		}
	})
}

// TestIssueCommentHeadMoved: a /deploy written before the pull request's
// newest commit deploys nothing and names both heads; one written after
// deploys the head. The pull request's commits are listed only when the
// head is newer than the comment.
func TestIssueCommentHeadMoved(t *testing.T) {
	w := newCommentWorld(t, freezeConfig)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	w.srv.SetCommit("octo-org", "web", githubtest.Commit{SHA: shaHead, Date: t0})
	w.srv.PushToPullRequest("octo-org", "web", 7, githubtest.Commit{SHA: shaNext, Date: t0.Add(10 * time.Minute)})

	w.srv.ResetCalls()
	id := w.commentAt(t, "created", "octocat", "User", "/deploy", true, t0.Add(5*time.Minute))
	body := w.replies(id)[0].Body
	if !strings.Contains(body, "its head is now `e2a0572`, and you saw `9762dd7`") || !strings.Contains(body, "comment again") {
		t.Errorf("reply:\n%s", body)
	}
	if len(w.eng.deploys) != 0 {
		t.Errorf("deploys %+v for a stale comment", w.eng.deploys)
	}
	if ops := operations(w.srv); !strings.Contains(ops, "repos/get-commit pulls/list-commits") {
		t.Errorf("calls %s: want the head's commit, then the list", ops)
	}

	w.srv.ResetCalls()
	w.commentAt(t, "created", "octocat", "User", "/deploy", true, t0.Add(15*time.Minute))
	if len(w.eng.deploys) != 1 || w.eng.deploys[0].Release.SHA != shaNext {
		t.Errorf("deploys %+v, want the new head", w.eng.deploys)
	}
	if ops := operations(w.srv); !strings.Contains(ops, "repos/get-commit") || strings.Contains(ops, "pulls/list-commits") {
		t.Errorf("calls %s: want the head's commit and no list", ops)
	}

	// A named ref reads no head at all.
	w.srv.ResetCalls()
	w.commentAt(t, "created", "octocat", "User", "/deploy qa "+shaHead, true, t0.Add(5*time.Minute))
	if len(w.eng.deploys) != 2 || w.eng.deploys[1].Release.SHA != shaHead {
		t.Errorf("deploys %+v, want the named ref", w.eng.deploys)
	}
	if ops := operations(w.srv); strings.Contains(ops, "pulls/") {
		t.Errorf("a /deploy of a named ref called %s", ops)
	}
}
