package notify

import (
	"context"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/store/record"
)

// A deploy announced again after its first announcement's ids were lost
// (the worker died before saving them, or GitHub's answer never came)
// gets back the deployment and check run it already has, and makes no
// second of either; one announced again that never reached GitHub gets
// them created.
func TestCreatedAgainReusesWhatTheFirstAttemptMade(t *testing.T) {
	n, srv := newNotifier(t)
	ctx := context.Background()
	info := deploy.DeployInfo{ID: "push-d1-production", Repo: "octo-org/web", InstallationID: srv.InstallationID, Environment: "production",
		SHA: sha, Ref: "main", Creator: "octocat", Kind: record.KindPush, CreatedAt: time.Unix(1e9, 0)}
	depID, crID, err := n.Created(ctx, info)
	if err != nil {
		t.Fatal(err)
	}
	if calls := operationCount(srv, "repos/list-deployments") + operationCount(srv, "checks/list-for-ref"); calls != 0 {
		t.Errorf("a first announcement read %d times; it has nothing to look for", calls)
	}

	// The record lost both ids: the job runs again.
	info.Reannounce = true
	depID2, crID2, err := n.Created(ctx, info)
	if err != nil {
		t.Fatal(err)
	}
	if depID2 != depID || crID2 != crID {
		t.Errorf("announced again: deployment %d, check run %d; want the first's %d, %d", depID2, crID2, depID, crID)
	}
	if deps := srv.Deployments("octo-org", "web"); len(deps) != 1 {
		t.Errorf("%d deployments, want 1", len(deps))
	}
	if runs := srv.CheckRuns("octo-org", "web"); len(runs) != 1 {
		t.Errorf("%d check runs, want 1", len(runs))
	}

	// Another deploy of the same SHA to the same environment is not taken
	// for this one: its marker differs.
	other := info
	other.ID = "comment-7-production"
	depID3, _, err := n.Created(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if depID3 == depID {
		t.Error("a redeploy of the same SHA reused another deploy's deployment")
	}
	if deps := srv.Deployments("octo-org", "web"); len(deps) != 2 {
		t.Errorf("%d deployments after a second deploy, want 2", len(deps))
	}
}

// The create of a deploy times out after GitHub applied it and the job is
// retried: one deployment, and the rollout's statuses land on it.
func TestCreatedAfterATimeoutThatLanded(t *testing.T) {
	n, srv := newNotifier(t)
	info := deploy.DeployInfo{ID: "push-d2-production", Repo: "octo-org/web", InstallationID: srv.InstallationID, Environment: "production",
		SHA: sha, Ref: "main", Creator: "octocat", Kind: record.KindPush, CreatedAt: time.Unix(1e9, 0)}
	srv.Fault("POST", "/repos/{owner}/{repo}/deployments", githubtest.Fault{Applied: true, Latency: time.Minute, Times: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, _, err := n.Created(ctx, info)
	cancel()
	if err == nil {
		t.Fatal("the first announcement succeeded; the fault should have held its answer past the job's deadline")
	}
	if deps := srv.Deployments("octo-org", "web"); len(deps) != 1 {
		t.Fatalf("GitHub has %d deployments after the timed-out create, want the 1 it applied", len(deps))
	}

	info.Reannounce = true
	ctx = context.Background()
	depID, crID, err := n.Created(ctx, info)
	if err != nil {
		t.Fatal(err)
	}
	info.GitHubDeploymentID, info.CheckRunID = depID, crID
	if err := n.Update(ctx, info, deploy.Event{Kind: deploy.Planned, Plan: plan(1), At: time.Unix(1e9, 0)}); err != nil {
		t.Fatal(err)
	}
	if err := n.Update(ctx, info, deploy.Event{Kind: deploy.BatchStarted, Plan: plan(1), At: time.Unix(1e9+1, 0)}); err != nil {
		t.Fatal(err)
	}
	res := deploy.Result{Outcome: deploy.OutcomeSuccess, Release: deploy.Release{SHA: sha}, Started: time.Unix(1e9, 0), Finished: time.Unix(1e9+5, 0),
		Reason: record.Reason{Kind: record.ReasonDeployed, Release: sha, Of: 1, Env: "production"}}
	if err := n.Finished(ctx, info, res); err != nil {
		t.Fatal(err)
	}
	deps := srv.Deployments("octo-org", "web")
	if len(deps) != 1 || deps[0].ID != depID {
		t.Fatalf("deployments %+v, want the one applied (%d)", deps, depID)
	}
	if got := deps[0].LastState(); got != "success" {
		t.Errorf("the deployment ended %q, want success: the deploy carried on with it", got)
	}
	if runs := srv.CheckRuns("octo-org", "web"); len(runs) != 1 || runs[0].Conclusion != "success" {
		t.Errorf("check runs %+v, want one, successful", runs)
	}
}

func operationCount(srv *githubtest.Server, op string) int {
	n := 0
	for _, c := range srv.Calls() {
		if c.Operation == op {
			n++
		}
	}
	return n
}
