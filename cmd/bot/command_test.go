package main

import (
	"context"
	"github.com/shipbot/shipbot/internal/store"
	"github.com/shipbot/shipbot/internal/store/record"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/fixtures"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/report"
)

// commandsConfig keeps the end-to-end rollouts short: two instances each,
// quick health checks, no required checks.
const commandsConfig = `environments:
  production:
    instances: 2
    require_checks: none
    health:
      interval: 100ms
  staging:
    instances: 1
    allow_branches: true
    require_checks: none
    health:
      interval: 100ms
`

// comment posts login's comment body on PR #42 to GitHub and delivers its
// issue_comment webhook; it returns the comment's id.
func (f *deployFixture) comment(t *testing.T, login, body string) int64 {
	t.Helper()
	id := f.srv.AddComment(deployOwner, deployRepo, fixtures.PRNumber, login, body)
	f.deliverComment(t, "comment-"+strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", ""), id, login, body)
	return id
}

// deliverComment delivers the issue_comment webhook of comment id.
func (f *deployFixture) deliverComment(t *testing.T, deliveryID string, id int64, login, body string) {
	t.Helper()
	b := commentOnPR(f.srv.InstallationID, id, login, body)
	if status, out := f.bot.post(t, delivery{event: "issue_comment", id: deliveryID, body: b}); status != 202 {
		t.Fatalf("issue_comment: %d %s", status, out)
	}
}

// reply waits for the bot's reply to comment id.
func (f *deployFixture) reply(t *testing.T, id int64) githubtest.Comment {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if rs := f.replies(id); len(rs) > 0 {
			return rs[0]
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no reply to comment %d within 1m\n%s", id, f.bot.logs)
	return githubtest.Comment{}
}

func (f *deployFixture) replies(id int64) []githubtest.Comment {
	var out []githubtest.Comment
	for _, c := range f.botComments() {
		if strings.Contains(c.Body, report.ReplyMarker(id)) {
			out = append(out, c)
		}
	}
	return out
}

// reacted reports whether the bot reacted 👀 to comment id.
func (f *deployFixture) reacted(t *testing.T, id int64) bool {
	t.Helper()
	c, ok := f.srv.Comment(id)
	if !ok {
		t.Fatalf("comment %d is gone", id)
	}
	for _, r := range c.Reactions {
		if r.Content == "eyes" && strings.HasSuffix(r.User, "[bot]") {
			return true
		}
	}
	return false
}

// deployment waits for the deployment of sha to env to satisfy done.
func (f *deployFixture) deployment(t *testing.T, env, sha string, done func(githubtest.Deployment) bool) githubtest.Deployment {
	t.Helper()
	var dep githubtest.Deployment
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		for _, d := range f.srv.Deployments(deployOwner, deployRepo) {
			if d.Environment == env && d.SHA == sha {
				dep = d
			}
		}
		if dep.ID != 0 && done(dep) {
			return dep
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("deployment of %s to %s: statuses %v after 3m\n%s", report.Short(sha), env, states(dep), f.bot.logs)
	return dep
}

const commentJobsOK = `shipbot_jobs_total{event="issue_comment",result="ok"}`

// commentJobs is how many issue_comment jobs the bot has finished.
func (f *deployFixture) commentJobs(t *testing.T) float64 {
	t.Helper()
	return f.bot.metric(t, commentJobsOK)
}

func (f *deployFixture) waitCommentJobs(t *testing.T, n float64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for f.commentJobs(t) < n {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %v issue_comment jobs done after 1m\n%s", n, f.bot.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// requireCommands stops the test when the bot finished the job of comment
// id without replying: cmd/bot does not wire handlers.Commands (a build
// without the feature). It fails under CI, where that is a regression.
func (f *deployFixture) requireCommands(t *testing.T, id int64) {
	t.Helper()
	if len(f.replies(id)) > 0 {
		return
	}
	msg := "the bot answered no command: serve.go does not set deps.Commands"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func final(d githubtest.Deployment) bool {
	switch d.LastState() {
	case "success", "failure", "error":
		return true
	}
	return false
}

func deploymentCount(srv *githubtest.Server) int {
	return len(srv.Deployments(deployOwner, deployRepo))
}

// TestCommands drives every command through signed webhooks against one
// bot, githubtest and the local driver, checking what GitHub shows after
// each: the reply, the reaction, deployments and their statuses.
func TestCommands(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	f.config = commandsConfig
	f.srv.SetPermission(deployOwner, deployRepo, "octocat", "write")
	f.srv.SetPermission(deployOwner, deployRepo, "mona", "read")
	f.srv.SetPullRequest(deployOwner, deployRepo, githubtest.PullRequest{Number: fixtures.PRNumber, HeadSHA: fixtures.HeadSHAOpened, HeadRef: fixtures.HeadBranch})
	if err := f.srv.SetTree(deployOwner, deployRepo, fixtures.HeadSHAOpened, sampleRelease(t, "pr-42", true)); err != nil {
		t.Fatal(err)
	}

	// Production's first release, pushed to main.
	f.push(t, "push-v1", "0000000000000000000000000000000000000000", shaV1, "v1", true)
	if d := f.deployment(t, "production", shaV1, final); d.LastState() != "success" {
		t.Fatalf("first production deploy: %v\n%s", states(d), f.bot.logs)
	}

	help := f.comment(t, "octocat", "/help")
	f.waitCommentJobs(t, 1)
	f.requireCommands(t, help)

	t.Run("help", func(t *testing.T) {
		id := help
		body := f.reply(t, id).Body
		for _, want := range []string{"/deploy [ENV] [REF]", "/rollback [ENV] [to REF]", "`production`: people with write permission or higher"} {
			if !strings.Contains(body, want) {
				t.Errorf("the help reply lacks %q:\n%s", want, body)
			}
		}
		if !f.reacted(t, id) {
			t.Error("no 👀 on an accepted /help")
		}
	})

	t.Run("a read commenter deploys nothing by any spelling", func(t *testing.T) {
		before := deploymentCount(f.srv)
		id := f.comment(t, "mona", "/deploy staging\n/DEPLOY\n/Rollback production\n/rollback production to 1111111\n/lock production\n/unlock production")
		body := f.reply(t, id).Body
		if n := strings.Count(body, "You need write permission or higher"); n != 6 {
			t.Errorf("%d refusals naming the permission, want 6:\n%s", n, body)
		}
		if !strings.Contains(body, "you have read") {
			t.Errorf("the refusal does not say what the commenter has:\n%s", body)
		}
		if f.reacted(t, id) {
			t.Error("👀 on a comment whose commands were all refused")
		}
		if n := deploymentCount(f.srv); n != before {
			t.Errorf("%d deployments after the refusals, want %d", n, before)
		}
	})

	t.Run("an unknown environment lists the real ones", func(t *testing.T) {
		before := deploymentCount(f.srv)
		body := f.reply(t, f.comment(t, "octocat", "/deploy prod")).Body
		if !strings.Contains(body, "There is no environment `prod`. The environments are `production` and `staging`.") {
			t.Errorf("reply:\n%s", body)
		}
		if n := deploymentCount(f.srv); n != before {
			t.Errorf("%d deployments, want %d", n, before)
		}
	})

	t.Run("a branch deploy to production says to merge", func(t *testing.T) {
		before := deploymentCount(f.srv)
		body := f.reply(t, f.comment(t, "octocat", "/deploy production")).Body
		if !strings.Contains(body, "does not take pull request deploys (`allow_branches` is off): merge this pull request into `main`") {
			t.Errorf("reply:\n%s", body)
		}
		if n := deploymentCount(f.srv); n != before {
			t.Errorf("%d deployments, want %d", n, before)
		}
	})

	t.Run("deploy the PR to staging", func(t *testing.T) {
		id := f.comment(t, "octocat", "/deploy staging")
		body := f.reply(t, id).Body
		if !strings.Contains(body, "Deploying `"+report.Short(fixtures.HeadSHAOpened)+"` (`"+fixtures.HeadBranch+"`) to **staging**") ||
			!strings.Contains(body, "https://shipbot.example.com/deploys/comment-") {
			t.Errorf("reply:\n%s", body)
		}
		if !f.reacted(t, id) {
			t.Error("no 👀 on /deploy")
		}
		dep := f.deployment(t, "staging", fixtures.HeadSHAOpened, final)
		if got := strings.Join(states(dep), ","); got != "queued,in_progress,success" {
			t.Fatalf("staging deployment statuses %s\n%s", got, f.bot.logs)
		}
		if dep.ProductionEnvironment {
			t.Error("staging marked production")
		}
		last := dep.Statuses[len(dep.Statuses)-1]
		if !strings.Contains(getBody(t, last.EnvironmentURL), "sample-app pr-42") {
			t.Errorf("staging does not serve the PR head")
		}
		// The check run is completed just after the final status.
		waitFor(t, 10*time.Second, "the staging check run to complete", func() bool {
			return f.checkRun(t, fixtures.HeadSHAOpened, "shipbot/staging").Status == "completed"
		})
		if cr := f.checkRun(t, fixtures.HeadSHAOpened, "shipbot/staging"); cr.Conclusion != "success" {
			t.Errorf("check run shipbot/staging: %s/%s", cr.Status, cr.Conclusion)
		}

		// The same comment delivered again (a retried job): one reply,
		// one deployment.
		done := f.commentJobs(t)
		f.deliverComment(t, "comment-redelivered", id, "octocat", "/deploy staging")
		f.waitCommentJobs(t, done+1)
		n := 0
		for _, d := range f.srv.Deployments(deployOwner, deployRepo) {
			if d.Environment == "staging" {
				n++
			}
		}
		if rs := f.replies(id); len(rs) != 1 || n != 1 {
			t.Errorf("after a redelivery: %d replies, %d staging deployments; want 1 and 1", len(rs), n)
		}
	})

	t.Run("rollback with no earlier release is refused", func(t *testing.T) {
		before := deploymentCount(f.srv)
		body := f.reply(t, f.comment(t, "octocat", "/rollback staging")).Body
		if !strings.Contains(body, "**staging** has no release that succeeded and was not rolled back") {
			t.Errorf("reply:\n%s", body)
		}
		if n := deploymentCount(f.srv); n != before {
			t.Errorf("%d deployments, want %d", n, before)
		}
	})

	t.Run("a push waits for /unlock", func(t *testing.T) {
		id := f.comment(t, "octocat", "/lock production release freeze")
		if body := f.reply(t, id).Body; !strings.Contains(body, "Locked **production**") || !strings.Contains(body, "release freeze") {
			t.Errorf("lock reply:\n%s", body)
		}
		if !f.reacted(t, id) {
			t.Error("no 👀 on /lock")
		}

		f.push(t, "push-v2", shaV1, shaV2, "v2", true)
		held := f.deployment(t, "production", shaV2, func(d githubtest.Deployment) bool {
			return d.LastState() == "queued" && strings.Contains(d.Statuses[len(d.Statuses)-1].Description, "lock")
		})
		t.Logf("held deployment: %q", held.Statuses[len(held.Statuses)-1].Description)

		status := f.reply(t, f.comment(t, "octocat", "/status production")).Body
		for _, want := range []string{"**production**", "`" + report.Short(shaV1) + "`", "🔒 by @octocat (release freeze)", "locked `" + report.Short(shaV2) + "`"} {
			if !strings.Contains(status, want) {
				t.Errorf("/status lacks %q:\n%s", want, status)
			}
		}
		// Still held: nothing ran it while locked.
		for _, d := range f.srv.Deployments(deployOwner, deployRepo) {
			if d.SHA == shaV2 && d.LastState() != "queued" {
				t.Fatalf("the deploy of v2 ran under the lock: %v", states(d))
			}
		}

		unlock := f.reply(t, f.comment(t, "octocat", "/unlock production")).Body
		if !strings.Contains(unlock, "Unlocked **production**") || !strings.Contains(unlock, "The queued deploy goes ahead.") {
			t.Errorf("unlock reply:\n%s", unlock)
		}
		dep := f.deployment(t, "production", shaV2, final)
		if dep.LastState() != "success" {
			t.Fatalf("v2 after /unlock: %v\n%s", states(dep), f.bot.logs)
		}
		if !strings.Contains(getBody(t, dep.Statuses[len(dep.Statuses)-1].EnvironmentURL), "sample-app v2") {
			t.Error("production does not serve v2 after /unlock")
		}
	})

	t.Run("rollback puts the previous release back", func(t *testing.T) {
		before := 0
		for _, d := range f.srv.Deployments(deployOwner, deployRepo) {
			if d.SHA == shaV1 {
				before++
			}
		}
		id := f.comment(t, "octocat", "/rollback")
		body := f.reply(t, id).Body
		if !strings.Contains(body, "Rolling **production** back to `"+report.Short(shaV1)+"`") {
			t.Errorf("reply:\n%s", body)
		}
		var dep githubtest.Deployment
		deadline := time.Now().Add(3 * time.Minute)
		for time.Now().Before(deadline) {
			var v1 []githubtest.Deployment
			for _, d := range f.srv.Deployments(deployOwner, deployRepo) {
				if d.SHA == shaV1 && d.Environment == "production" {
					v1 = append(v1, d)
				}
			}
			if len(v1) > before && final(v1[len(v1)-1]) {
				dep = v1[len(v1)-1]
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if dep.LastState() != "success" {
			t.Fatalf("rollback deployment: %v\n%s", states(dep), f.bot.logs)
		}
		if !strings.Contains(getBody(t, dep.Statuses[len(dep.Statuses)-1].EnvironmentURL), "sample-app v1") {
			t.Error("production does not serve v1 after /rollback")
		}
	})

	// The audit log: who locked and unlocked, the commands refused and
	// why, and the rollback the engine ran.
	t.Run("audit log", func(t *testing.T) {
		page, err := store.NewRedis(redisClient(t, f.redisURL), "shipbot").ListAudit(context.Background(), record.AuditFilter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, e := range page.Entries {
			seen[e.Action+" by "+e.Actor] = true
			if e.Action == record.ActionCommandRefused && (e.Outcome != record.OutcomeRefused || !strings.HasPrefix(e.Text, "/")) {
				t.Errorf("a refused command's entry %+v does not say the command and why", e)
			}
		}
		for _, want := range []string{"lock by octocat", "unlock by octocat", "command.refused by mona", "rollback by octocat"} {
			if !seen[want] {
				t.Errorf("the audit log lacks %q; it has %v", want, seen)
			}
		}
	})
}

// TestCommandOnAnIssue: commands on a plain issue get one reply saying they
// work on pull requests.
func TestCommandOnAnIssue(t *testing.T) {
	f := newDeployFixture(t)
	f.srv.SetBranch(deployOwner, deployRepo, "main", shaV1)
	id := f.srv.AddComment(deployOwner, deployRepo, fixtures.PRNumber, "octocat", "/deploy staging")
	b := fixturePayload("issue_comment.created", f.srv.InstallationID, func(p map[string]any) {
		delete(p["issue"].(map[string]any), "pull_request")
		p["comment"].(map[string]any)["id"] = id
	})
	// Delivered twice, one after the other (a redelivery): one reply.
	for i, d := range []string{"issue-1", "issue-2"} {
		if status, out := f.bot.post(t, delivery{event: "issue_comment", id: d, body: b}); status != 202 {
			t.Fatalf("issue_comment: %d %s", status, out)
		}
		f.waitCommentJobs(t, float64(i+1))
	}
	f.requireCommands(t, id)
	rs := f.replies(id)
	if len(rs) != 1 || !strings.Contains(rs[0].Body, "Commands work on pull requests only") {
		t.Errorf("%d replies, want one saying commands work on pull requests: %v", len(rs), rs)
	}
	if n := deploymentCount(f.srv); n != 0 {
		t.Errorf("%d deployments from an issue comment", n)
	}
}
