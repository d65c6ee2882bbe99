package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/fixtures"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/store"
	"github.com/shipbot/shipbot/internal/store/record"
)

// freezeCommandsConfig freezes staging over whole days around today (%s
// and %s, UTC), so the window is open whenever the test runs, without a
// fake clock; qa is never frozen.
const freezeCommandsConfig = `environments:
  staging:
    instances: 1
    allow_branches: true
    require_checks: none
    health:
      interval: 100ms
    freeze:
      - %s - %s
  qa:
    instances: 1
    allow_branches: true
    require_checks: none
    health:
      interval: 100ms
`

// commentAt posts login's comment on PR #42 and delivers its webhook saying
// it was created at created; it returns the comment's id.
func (f *deployFixture) commentAt(t *testing.T, login, body string, created time.Time) int64 {
	t.Helper()
	id := f.srv.AddComment(deployOwner, deployRepo, fixtures.PRNumber, login, body)
	b := fixturePayload("issue_comment.created", f.srv.InstallationID, func(p map[string]any) {
		c := p["comment"].(map[string]any)
		c["id"], c["body"], c["created_at"] = id, body, created.UTC().Format(time.RFC3339)
		c["user"].(map[string]any)["login"], c["user"].(map[string]any)["type"] = login, "User"
		p["sender"].(map[string]any)["login"] = login
	})
	if status, out := f.bot.post(t, delivery{event: "issue_comment", id: fmt.Sprintf("comment-at-%d", id), body: b}); status != 202 {
		t.Fatalf("issue_comment: %d %s", status, out)
	}
	return id
}

// deploymentsOf counts the deployments of sha to env.
func (f *deployFixture) deploymentsOf(env, sha string) int {
	n := 0
	for _, d := range f.srv.Deployments(deployOwner, deployRepo) {
		if d.Environment == env && d.SHA == sha {
			n++
		}
	}
	return n
}

// TestFreezeAndStaleComments drives SPEC §4's two /deploy rules through
// signed webhooks, githubtest and the local driver: in an open freeze
// window a write user's /deploy is refused and deploys nothing, an admin's
// deploys and says the freeze was overridden, /rollback runs; a /deploy
// written before the PR's newest commit is refused and deploys nothing,
// one written after deploys the head.
func TestFreezeAndStaleComments(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	today := time.Now().UTC()
	from, to := today.AddDate(0, 0, -1).Format("2006-01-02"), today.AddDate(0, 0, 1).Format("2006-01-02")
	f.config = fmt.Sprintf(freezeCommandsConfig, from, to)
	// main holds the configuration and v1; no push is delivered, so no
	// deploy starts but the ones the comments ask for.
	if err := f.srv.SetTree(deployOwner, deployRepo, shaV1, sampleRelease(t, "v1", true)); err != nil {
		t.Fatal(err)
	}
	f.srv.SetFile(deployOwner, deployRepo, shaV1, ".github/shipbot.yml", []byte(f.config))
	f.srv.SetBranch(deployOwner, deployRepo, "main", shaV1)
	f.srv.SetPermission(deployOwner, deployRepo, "octocat", "write")
	f.srv.SetPermission(deployOwner, deployRepo, "alice", "admin")
	f.srv.SetPullRequest(deployOwner, deployRepo, githubtest.PullRequest{Number: fixtures.PRNumber, HeadSHA: fixtures.HeadSHAOpened, HeadRef: fixtures.HeadBranch})
	f.srv.SetCommit(deployOwner, deployRepo, githubtest.Commit{SHA: fixtures.HeadSHAOpened, Date: today.Add(-2 * time.Hour)})
	if err := f.srv.SetTree(deployOwner, deployRepo, fixtures.HeadSHAOpened, sampleRelease(t, "pr-42", true)); err != nil {
		t.Fatal(err)
	}
	// The freeze lifts when the day after its last begins.
	lifts := report.FreezeEnd(report.Freeze{Until: time.Date(today.Year(), today.Month(), today.Day()+2, 0, 0, 0, 0, time.UTC), Days: true})
	window := "`" + from + " - " + to + "`"

	refused := f.comment(t, "octocat", "/deploy staging")
	f.waitCommentJobs(t, 1)
	f.requireCommands(t, refused)

	t.Run("a write user's /deploy is refused in the freeze", func(t *testing.T) {
		body := f.reply(t, refused).Body
		if want := "❄️ **staging** is frozen until " + lifts + " by the freeze window " + window; !strings.Contains(body, want) {
			t.Errorf("the reply lacks %q:\n%s", want, body)
		}
		if !strings.Contains(body, "nothing was deployed") || !strings.Contains(body, "`/rollback staging` is never frozen") {
			t.Errorf("reply:\n%s", body)
		}
		if f.reacted(t, refused) {
			t.Error("👀 on a refused /deploy")
		}
		if n := deploymentCount(f.srv); n != 0 {
			t.Errorf("%d deployments after a frozen /deploy, want none", n)
		}
	})

	t.Run("an admin's /deploy overrides the freeze", func(t *testing.T) {
		id := f.comment(t, "alice", "/deploy staging")
		body := f.reply(t, id).Body
		if !strings.Contains(body, "Deploying `"+report.Short(fixtures.HeadSHAOpened)+"` (`"+fixtures.HeadBranch+"`) to **staging**. ❄️ Freeze overridden: **staging** is frozen until "+lifts) ||
			!strings.Contains(body, "your admin permission deploys through it") {
			t.Errorf("reply:\n%s", body)
		}
		if !f.reacted(t, id) {
			t.Error("no 👀 on an admin's /deploy")
		}
		if d := f.deployment(t, "staging", fixtures.HeadSHAOpened, final); d.LastState() != "success" {
			t.Fatalf("the admin's deploy: %v\n%s", states(d), f.bot.logs)
		}

		// A second release in the frozen environment, by name, to roll back from.
		id = f.comment(t, "alice", "/deploy staging main")
		if body := f.reply(t, id).Body; !strings.Contains(body, "Freeze overridden") {
			t.Errorf("reply:\n%s", body)
		}
		if d := f.deployment(t, "staging", shaV1, final); d.LastState() != "success" {
			t.Fatalf("the admin's deploy of main: %v\n%s", states(d), f.bot.logs)
		}

		// The audit log has both overrides, by alice.
		page, err := store.NewRedis(redisClient(t, f.redisURL), "shipbot").ListAudit(context.Background(), record.AuditFilter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range page.Entries {
			if e.Action == record.ActionFreezeOverridden {
				n++
				if e.Actor != "alice" || e.Env != "staging" || !strings.Contains(e.Text, "Freeze overridden") {
					t.Errorf("override entry %+v", e)
				}
			}
		}
		if n != 2 {
			t.Errorf("%d freeze.overridden entries in the audit log, want 2\n%s", n, f.bot.logs)
		}
	})

	t.Run("/rollback runs in the freeze", func(t *testing.T) {
		before := f.deploymentsOf("staging", fixtures.HeadSHAOpened)
		id := f.comment(t, "octocat", "/rollback staging")
		body := f.reply(t, id).Body
		if !strings.Contains(body, "Rolling **staging** back to `"+report.Short(fixtures.HeadSHAOpened)+"`") || strings.Contains(body, "frozen") {
			t.Errorf("reply:\n%s", body)
		}
		deadline := time.Now().Add(3 * time.Minute)
		for f.deploymentsOf("staging", fixtures.HeadSHAOpened) == before && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if d := f.deployment(t, "staging", fixtures.HeadSHAOpened, final); d.LastState() != "success" || f.deploymentsOf("staging", fixtures.HeadSHAOpened) != before+1 {
			t.Fatalf("the rollback: %v\n%s", states(d), f.bot.logs)
		}
	})

	t.Run("/status lists the open window", func(t *testing.T) {
		body := f.reply(t, f.comment(t, "octocat", "/status")).Body
		var staging, qa string
		for _, line := range strings.Split(body, "\n") {
			switch {
			case strings.HasPrefix(line, "| **staging**"):
				staging = line
			case strings.HasPrefix(line, "| **qa**"):
				qa = line
			}
		}
		if !strings.Contains(staging, "❄️ frozen until "+lifts+" by the freeze window "+window) || strings.Contains(qa, "frozen") {
			t.Errorf("/status:\n%s", body)
		}
	})

	// The PR receives a commit, made half an hour ago.
	newHead := fixtures.HeadSHASynchronized
	if err := f.srv.SetTree(deployOwner, deployRepo, newHead, sampleRelease(t, "pr-42-v2", true)); err != nil {
		t.Fatal(err)
	}
	f.srv.PushToPullRequest(deployOwner, deployRepo, fixtures.PRNumber, githubtest.Commit{SHA: newHead, Date: time.Now().Add(-30 * time.Minute)})

	t.Run("a comment written before the newest commit deploys nothing", func(t *testing.T) {
		done := f.commentJobs(t)
		id := f.commentAt(t, "octocat", "/deploy qa", time.Now().Add(-time.Hour))
		body := f.reply(t, id).Body
		if want := "its head is now `" + report.Short(newHead) + "`, and you saw `" + report.Short(fixtures.HeadSHAOpened) + "`"; !strings.Contains(body, want) ||
			!strings.Contains(body, "comment again") {
			t.Errorf("the reply lacks %q:\n%s", want, body)
		}
		f.waitCommentJobs(t, done+1)
		for _, d := range f.srv.Deployments(deployOwner, deployRepo) {
			if d.Environment == "qa" {
				t.Errorf("a stale comment deployed %s to qa", report.Short(d.SHA))
			}
		}
	})

	t.Run("a comment written after it deploys the head", func(t *testing.T) {
		id := f.comment(t, "octocat", "/deploy qa")
		if body := f.reply(t, id).Body; !strings.Contains(body, "Deploying `"+report.Short(newHead)+"`") {
			t.Errorf("reply:\n%s", body)
		}
		d := f.deployment(t, "qa", newHead, final)
		if d.LastState() != "success" {
			t.Fatalf("qa deploy: %v\n%s", states(d), f.bot.logs)
		}
		if !strings.Contains(getBody(t, d.Statuses[len(d.Statuses)-1].EnvironmentURL), "sample-app pr-42-v2") {
			t.Error("qa does not serve the new head")
		}
	})
}
