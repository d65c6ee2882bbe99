package gh_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/githubtest"
)

// A create GitHub applied whose answer was lost: without a marker the
// transport sends it again and GitHub has two deployments (what the
// marker exists for); with one, the retry finds the first and uses it.
func TestCreateDeploymentAnswerLostAfterApplied(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault githubtest.Fault
	}{
		{name: "connection dropped", fault: githubtest.AppliedTimeout(1)},
		{name: "502 after applying", fault: githubtest.Fault{Applied: true, Status: http.StatusBadGateway, Times: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.srv.Fault("POST", deploymentsPath, tc.fault)
			d, err := e.in.CreateDeployment(e.ctx, owner, repo, gh.DeploymentRequest{SHA: sha, Environment: "staging", Marker: "push-1"})
			if err != nil {
				t.Fatal(err)
			}
			deps := e.srv.Deployments(owner, repo)
			if len(deps) != 1 || deps[0].ID != d.ID {
				t.Fatalf("GitHub has %d deployments (%+v), want exactly the one returned (%d)", len(deps), deps, d.ID)
			}
			var payload map[string]string
			if err := json.Unmarshal(deps[0].Payload, &payload); err != nil || payload[gh.DeploymentMarker] != "push-1" {
				t.Errorf("payload = %s, want the marker", deps[0].Payload)
			}
			if n := attempts(e.srv, "repos/create-deployment"); n != 1 {
				t.Errorf("%d creates sent, want 1", n)
			}
			if n := attempts(e.srv, "repos/list-deployments"); n != 1 {
				t.Errorf("%d lookups, want 1", n)
			}

			// The same without a marker: the retry doubles the deployment.
			e.srv.Fault("POST", deploymentsPath, tc.fault)
			if _, err := e.in.CreateDeployment(e.ctx, owner, repo, gh.DeploymentRequest{SHA: sha, Environment: "production"}); err != nil {
				t.Fatal(err)
			}
			prod := 0
			for _, d := range e.srv.Deployments(owner, repo) {
				if d.Environment == "production" {
					prod++
				}
			}
			if prod != 2 {
				t.Errorf("without a marker GitHub has %d production deployments; this test no longer shows what the marker prevents", prod)
			}
		})
	}
}

// A create that failed before GitHub applied it is sent again after the
// lookup found nothing.
func TestCreateDeploymentRetriesWhenNothingLanded(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.Fault("POST", deploymentsPath, githubtest.BadGateway(2))
	d, err := e.in.CreateDeployment(e.ctx, owner, repo, gh.DeploymentRequest{SHA: sha, Environment: "staging", Marker: "push-2"})
	if err != nil {
		t.Fatal(err)
	}
	if deps := e.srv.Deployments(owner, repo); len(deps) != 1 || deps[0].ID != d.ID {
		t.Fatalf("GitHub has %+v, want one deployment %d", deps, d.ID)
	}
	if n, l := attempts(e.srv, "repos/create-deployment"), attempts(e.srv, "repos/list-deployments"); n != 3 || l != 2 {
		t.Errorf("%d creates and %d lookups, want 3 and 2", n, l)
	}
}

func TestFindDeploymentMatchesTheMarkerOnly(t *testing.T) {
	e := newEnv(t, nil)
	for _, m := range []string{"a", "b", ""} {
		if _, err := e.in.CreateDeployment(e.ctx, owner, repo, gh.DeploymentRequest{SHA: sha, Environment: "staging", Marker: m}); err != nil {
			t.Fatal(err)
		}
	}
	deps := e.srv.Deployments(owner, repo)
	for _, tc := range []struct {
		marker, env string
		want        int64
	}{
		{"a", "staging", deps[0].ID},
		{"b", "staging", deps[1].ID},
		{"a", "production", 0},
		{"c", "staging", 0},
	} {
		d, found, err := e.in.FindDeployment(e.ctx, owner, repo, sha, tc.env, tc.marker)
		if err != nil || found != (tc.want != 0) || d.ID != tc.want {
			t.Errorf("FindDeployment(%s, %s) = %d, %v, %v; want %d", tc.env, tc.marker, d.ID, found, err, tc.want)
		}
	}
}

// An attempt whose answer does not come is given up after AttemptTimeout
// and retried, instead of holding the job until its context ends.
func TestAttemptTimeoutRetries(t *testing.T) {
	e := newEnv(t, nil)
	c, err := gh.New(gh.Options{
		AppID: e.srv.AppID, PrivateKey: e.srv.PrivateKeyPEM, BaseURL: e.srv.URL, Registerer: prometheus.NewRegistry(),
		Retry: gh.RetryPolicy{BaseDelay: 5 * time.Millisecond, MaxDelay: 20 * time.Millisecond, AttemptTimeout: 300 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	in := c.Installation(e.srv.InstallationID)
	if _, err := in.DefaultBranch(e.ctx, owner, repo); err != nil { // mint the token first
		t.Fatal(err)
	}
	e.srv.Fault("GET", "/repos/{owner}/{repo}", githubtest.Fault{Latency: 10 * time.Second, Times: 1})
	ctx, cancel := context.WithTimeout(e.ctx, 8*time.Second)
	defer cancel()
	if _, err := in.DefaultBranch(ctx, owner, repo); err != nil {
		t.Fatalf("DefaultBranch = %v, want the second attempt's answer", err)
	}
	// And a create whose answer comes too late was applied: found, not doubled.
	e.srv.Fault("POST", deploymentsPath, githubtest.Fault{Applied: true, Latency: 10 * time.Second, Times: 1})
	d, err := in.CreateDeployment(ctx, owner, repo, gh.DeploymentRequest{SHA: sha, Environment: "staging", Marker: "late"})
	if err != nil {
		t.Fatal(err)
	}
	if deps := e.srv.Deployments(owner, repo); len(deps) != 1 || deps[0].ID != d.ID {
		t.Errorf("GitHub has %+v, want one deployment %d", deps, d.ID)
	}
}
