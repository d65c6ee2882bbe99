package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/fixtures"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/report"
)

func (f *deployFixture) postPR(t *testing.T, id, name string) {
	t.Helper()
	d := delivery{event: "pull_request", id: id, body: fixturePayload(name, f.srv.InstallationID, nil)}
	if status, body := f.bot.post(t, d); status != 202 {
		t.Fatalf("%s: %d %s", name, status, body)
	}
}

// previewDeployments are the deployments of pr-42.
func (f *deployFixture) previewDeployments() []githubtest.Deployment {
	var out []githubtest.Deployment
	for _, d := range f.srv.Deployments(deployOwner, deployRepo) {
		if d.Environment == "pr-42" {
			out = append(out, d)
		}
	}
	return out
}

// previewDone waits for the preview deployment of sha to reach a final
// state and for the comment to name sha in that state.
func (f *deployFixture) previewDone(t *testing.T, sha string) githubtest.Deployment {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	var dep githubtest.Deployment
	for time.Now().Before(deadline) {
		for _, d := range f.previewDeployments() {
			if d.SHA == sha {
				dep = d
			}
		}
		switch dep.LastState() {
		case "success", "failure", "error":
			if cs := f.botComments(); len(cs) == 1 && strings.Contains(cs[0].Body, report.Short(sha)) && !strings.Contains(cs[0].Body, "building") {
				return dep
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("preview of %s did not finish within 3m (statuses %v)\n%s", sha, states(dep), f.bot.logs)
	return dep
}

// botComments are the bot's comments on #42.
func (f *deployFixture) botComments() []githubtest.Comment {
	var out []githubtest.Comment
	for _, c := range f.srv.Comments(deployOwner, deployRepo, fixtures.PRNumber) {
		if c.UserType == "Bot" {
			out = append(out, c)
		}
	}
	return out
}

// TestPreviewLifecycle: a PR opened gets a preview serving its head, a push
// to it updates the preview and edits the one comment within 4 GitHub
// writes, and closing it tears the preview down.
func TestPreviewLifecycle(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	f.srv.SetBranch(deployOwner, deployRepo, "main", fixtures.BaseSHA)
	if err := f.srv.SetTree(deployOwner, deployRepo, fixtures.HeadSHAOpened, sampleRelease(t, "v1", true)); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.SetTree(deployOwner, deployRepo, fixtures.HeadSHASynchronized, sampleRelease(t, "v2", true)); err != nil {
		t.Fatal(err)
	}

	// Opened.
	f.postPR(t, "pr-opened", "pull_request.opened")
	dep := f.previewDone(t, fixtures.HeadSHAOpened)
	if got := states(dep); strings.Join(got, ",") != "in_progress,success" {
		t.Fatalf("preview statuses %v, want in_progress, success\n%s", got, f.bot.logs)
	}
	if !dep.TransientEnvironment || dep.Ref != fixtures.HeadSHAOpened {
		t.Errorf("deployment: transient %t ref %q", dep.TransientEnvironment, dep.Ref)
	}
	final := dep.Statuses[len(dep.Statuses)-1]
	url := final.EnvironmentURL
	if url == "" {
		t.Fatal("the preview deployment has no environment_url")
	}
	if !strings.HasPrefix(final.LogURL, "https://shipbot.example.com/deploys/") {
		t.Errorf("log_url %q", final.LogURL)
	}
	if body := getBody(t, url); !strings.Contains(body, "sample-app v1") {
		t.Errorf("preview serves %q, want v1", body)
	}
	cs := f.botComments()
	if len(cs) != 1 {
		t.Fatalf("%d bot comments on the PR, want 1", len(cs))
	}
	comment := cs[0]
	if !strings.Contains(comment.Body, report.PreviewMarker) || !strings.Contains(comment.Body, url) {
		t.Errorf("the comment lacks the marker or the link %s:\n%s", url, comment.Body)
	}

	// Synchronize: the update that is measured.
	f.srv.ResetCalls()
	f.postPR(t, "pr-sync", "pull_request.synchronize")
	dep2 := f.previewDone(t, fixtures.HeadSHASynchronized)
	time.Sleep(300 * time.Millisecond) // let any stray write land
	writes := f.srv.CountWrites()
	t.Logf("GitHub writes for a preview update: %d (budget 4)", writes)
	if writes > 4 {
		for _, c := range f.srv.Calls() {
			if c.Write() {
				t.Logf("write: %s %s", c.Method, c.Path)
			}
		}
		t.Errorf("%d GitHub writes for a preview update, budget 4", writes)
	}
	if got := dep2.LastState(); got != "success" {
		t.Fatalf("updated preview %v\n%s", states(dep2), f.bot.logs)
	}
	if u := dep2.Statuses[len(dep2.Statuses)-1].EnvironmentURL; u != url {
		t.Errorf("the preview moved from %s to %s", url, u)
	}
	if body := getBody(t, url); !strings.Contains(body, "sample-app v2") {
		t.Errorf("preview serves %q after the push, want v2", body)
	}
	cs = f.botComments()
	if len(cs) != 1 || cs[0].ID != comment.ID {
		t.Fatalf("want the same one comment edited, have %d comments", len(cs))
	}
	if cs[0].Edits == 0 || !strings.Contains(cs[0].Body, report.Short(fixtures.HeadSHASynchronized)) {
		t.Errorf("the comment was not edited to the new head:\n%s", cs[0].Body)
	}

	// Closed.
	f.postPR(t, "pr-closed", "pull_request.closed.unmerged")
	deadline := time.Now().Add(time.Minute)
	for {
		deps := f.previewDeployments()
		inactive := len(deps) >= 2
		for _, d := range deps {
			inactive = inactive && d.LastState() == "inactive"
		}
		cs = f.botComments()
		if inactive && len(cs) == 1 && strings.Contains(strings.ToLower(cs[0].Body), "torn down") {
			break
		}
		if time.Now().After(deadline) {
			for _, d := range deps {
				t.Logf("deployment %d %s: %v", d.ID, d.SHA, states(d))
			}
			t.Fatalf("preview not torn down within 1m (%d comments)\n%s", len(cs), f.bot.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if cs[0].ID != comment.ID {
		t.Errorf("the torn-down state went to a new comment")
	}
	client := &http.Client{Timeout: 2 * time.Second}
	if resp, err := client.Get(url); err == nil {
		resp.Body.Close()
		t.Errorf("the preview URL still answers after close: %s", resp.Status)
	}
}
