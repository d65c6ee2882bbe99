package notify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/store/record"
)

const sha = "2222222222222222222222222222222222222222"

func newNotifier(t *testing.T) (*Notifier, *githubtest.Server) {
	t.Helper()
	srv := githubtest.New(t)
	if srv == nil {
		t.Skip("githubtest unavailable")
	}
	srv.AddRepo("octo-org", "web", githubtest.RepoOptions{})
	c, err := gh.New(gh.Options{AppID: srv.AppID, PrivateKey: srv.PrivateKeyPEM, BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(Options{
		Installation:   func(id int64) GitHub { return c.Installation(id) },
		PublicURL:      "https://bot.example.com/",
		EnvironmentURL: func(repo, env string) string { return "http://127.0.0.1:9999" },
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, srv
}

// plan is n batches of one instance each.
func plan(n int) *deploy.Plan {
	p := &deploy.Plan{Release: sha}
	for i := range n {
		p.Batches = append(p.Batches, deploy.Batch{Index: i, Canary: i == 0, Instances: []deploy.Instance{{ID: fmt.Sprintf("production-%d", i+1)}}})
	}
	return p
}

// rollout drives the notifier through a rollout of b batches, failing at
// batch failAt (-1: none), and returns the deployment.
func rollout(t *testing.T, b, failAt int) (githubtest.Deployment, *githubtest.Server) {
	t.Helper()
	n, srv := newNotifier(t)
	ctx := context.Background()
	info := deploy.DeployInfo{ID: "d1", Repo: "octo-org/web", InstallationID: srv.InstallationID, Environment: "production",
		SHA: sha, Ref: "main", Creator: "octocat", Kind: record.KindPush, CreatedAt: time.Unix(1e9, 0)}
	var err error
	info.GitHubDeploymentID, info.CheckRunID, err = n.Created(ctx, info)
	if err != nil {
		t.Fatal(err)
	}
	p := plan(b)
	at := time.Unix(1e9, 0)
	ev := func(kind deploy.EventKind, batch int, why *record.Reason) {
		at = at.Add(time.Second)
		e := deploy.Event{Kind: kind, Plan: p, Batch: batch, At: at, Reason: why, Instance: fmt.Sprintf("production-%d", batch+1)}
		if why != nil {
			e.Err = errors.New(string(why.Kind))
		}
		if err := n.Update(ctx, info, e); err != nil {
			t.Fatal(err)
		}
	}
	ev(deploy.Planned, 0, nil)
	res := deploy.Result{Outcome: deploy.OutcomeSuccess, Release: deploy.Release{SHA: sha}, Started: time.Unix(1e9, 0),
		Reason: record.Reason{Kind: record.ReasonDeployed, Release: sha, Of: b, Env: "production"}}
	for i := range b {
		ev(deploy.BatchStarted, i, nil)
		ev(deploy.InstanceStep, i, nil)
		if i == failAt {
			health := &record.Reason{Kind: record.ReasonHealthTimeout, Instance: "production-1", Path: "/healthz", Want: 2, Duration: 2 * time.Minute, Release: sha, Count: 1}
			ev(deploy.BatchFailed, i, health)
			ev(deploy.RollingBack, i, nil)
			ev(deploy.RolledBack, i, nil)
			res.Outcome, res.FailedInstance, res.RolledBack = deploy.OutcomeFailure, "production-1", []string{"production-1"}
			res.Batches = append(res.Batches, deploy.BatchResult{Index: i, Failure: health})
			break
		}
		ev(deploy.BatchHealthy, i, nil)
		ev(deploy.Baking, i, nil)
		res.Batches = append(res.Batches, deploy.BatchResult{Index: i, Started: at, Finished: at})
	}
	res.Finished = at.Add(time.Second)
	if err := n.Finished(ctx, info, res); err != nil {
		t.Fatal(err)
	}
	deps := srv.Deployments("octo-org", "web")
	if len(deps) != 1 {
		t.Fatalf("%d deployments", len(deps))
	}
	return deps[0], srv
}

func TestWritesWithinBudget(t *testing.T) {
	for b := 1; b <= 9; b++ {
		t.Run(fmt.Sprintf("%d batches", b), func(t *testing.T) {
			dep, srv := rollout(t, b, -1)
			var states []string
			for _, s := range dep.Statuses {
				states = append(states, s.State)
			}
			if strings.Join(states, ",") != "queued,in_progress,success" {
				t.Fatalf("statuses %v", states)
			}
			last := dep.Statuses[len(dep.Statuses)-1]
			if last.LogURL != "https://bot.example.com/deploys/d1" || last.EnvironmentURL != "http://127.0.0.1:9999" {
				t.Errorf("final status urls: %q %q", last.LogURL, last.EnvironmentURL)
			}
			if !dep.ProductionEnvironment {
				t.Errorf("not marked production")
			}
			runs := srv.CheckRuns("octo-org", "web")
			if len(runs) != 1 || runs[0].Status != "completed" || runs[0].Conclusion != "success" || runs[0].Name != "shipbot/production" {
				t.Fatalf("check runs %+v", runs)
			}
			if w, budget := srv.CountWrites(), 5+(b+1)/2; w > budget {
				t.Errorf("%d writes, budget %d", w, budget)
			}
		})
	}
}

func TestFailureSaysWhy(t *testing.T) {
	dep, srv := rollout(t, 4, 0)
	last := dep.Statuses[len(dep.Statuses)-1]
	if last.State != "failure" || !strings.Contains(last.Description, "healthz") {
		t.Fatalf("final status %s %q", last.State, last.Description)
	}
	runs := srv.CheckRuns("octo-org", "web")
	if runs[0].Conclusion != "failure" {
		t.Fatalf("check run %s/%s", runs[0].Status, runs[0].Conclusion)
	}
}

func TestSupersededIsInactive(t *testing.T) {
	n, srv := newNotifier(t)
	ctx := context.Background()
	info := deploy.DeployInfo{ID: "old", Repo: "octo-org/web", InstallationID: srv.InstallationID, Environment: "production", SHA: sha, Kind: record.KindPush}
	var err error
	if info.GitHubDeploymentID, info.CheckRunID, err = n.Created(ctx, info); err != nil {
		t.Fatal(err)
	}
	info.SupersededBy = "3333333333333333333333333333333333333333"
	if err := n.Superseded(ctx, info); err != nil {
		t.Fatal(err)
	}
	dep := srv.Deployments("octo-org", "web")[0]
	last := dep.Statuses[len(dep.Statuses)-1]
	if last.State != "inactive" || !strings.Contains(last.Description, "3333333") {
		t.Fatalf("final status %s %q", last.State, last.Description)
	}
}
