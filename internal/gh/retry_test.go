package gh_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/githubtest"
)

const deploymentsPath = "/repos/{owner}/{repo}/deployments"

// attempts counts the calls to one operation.
func attempts(srv *githubtest.Server, op string) int {
	n := 0
	for _, c := range srv.Calls() {
		if c.Operation == op {
			n++
		}
	}
	return n
}

func TestRetries5xxThenSucceeds(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.Fault("POST", deploymentsPath, githubtest.Fault{Status: 502, Times: 1})
	d, err := e.in.CreateDeployment(e.ctx, owner, repo, gh.DeploymentRequest{SHA: sha, Environment: "staging"})
	if err != nil {
		t.Fatal(err)
	}
	if d.ID == 0 {
		t.Fatal("no deployment")
	}
	if n := attempts(e.srv, "repos/create-deployment"); n != 2 {
		t.Errorf("%d attempts, want 2 (502, then 201)", n)
	}
	if n := len(e.srv.Deployments(owner, repo)); n != 1 {
		t.Errorf("%d deployments, want 1", n)
	}
	if got := metricValue(t, e, "shipbot_github_requests_total", map[string]string{"installation": "1", "method": "POST", "status": "502"}); got != 1 {
		t.Errorf("502s counted = %v, want 1", got)
	}
}

func TestRetriesDroppedConnection(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.Fault("GET", "/repos/{owner}/{repo}", githubtest.Fault{DropConnection: true, Times: 1})
	if _, err := e.in.DefaultBranch(e.ctx, owner, repo); err != nil {
		t.Fatal(err)
	}
}

func TestGivesUpAfterBoundedAttempts(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.Fault("POST", deploymentsPath, githubtest.Fault{Status: 503})
	_, err := e.in.CreateDeployment(e.ctx, owner, repo, gh.DeploymentRequest{SHA: sha, Environment: "staging"})
	var ge *gh.Error
	if !errors.As(err, &ge) || ge.Status != 503 || ge.Permanent() {
		t.Fatalf("err = %v, want a retryable 503 *gh.Error", err)
	}
	if n := attempts(e.srv, "repos/create-deployment"); n != 4 {
		t.Errorf("%d attempts, want 4", n)
	}
	var p interface{ Permanent() bool }
	if !errors.As(err, &p) || p.Permanent() {
		t.Error("the worker's interface{ Permanent() bool } does not see a retryable error")
	}
}

func TestSecondaryRateLimitHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	// Mint the token first so only the limited call is timed.
	if _, err := e.in.DefaultBranch(e.ctx, owner, repo); err != nil {
		t.Fatal(err)
	}
	e.srv.Fault("POST", "/repos/{owner}/{repo}/check-runs", githubtest.Fault{Status: 403, RetryAfter: 2 * time.Second, Times: 1})
	start := time.Now()
	if _, err := e.in.CreateCheckRun(e.ctx, owner, repo, gh.CheckRun{Name: "shipbot/staging", HeadSHA: sha, Status: "queued"}); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 1900*time.Millisecond {
		t.Errorf("retried after %v; Retry-After asked for 2s", waited)
	}
	if n := attempts(e.srv, "checks/create"); n != 2 {
		t.Errorf("%d attempts, want 2", n)
	}
}

func TestPrimaryRateLimitWaitsForReset(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	if _, err := e.in.DefaultBranch(e.ctx, owner, repo); err != nil {
		t.Fatal(err)
	}
	reset := time.Now().Add(time.Second).Truncate(time.Second).Add(time.Second)
	e.srv.Fault("GET", "/repos/{owner}/{repo}", githubtest.Fault{Status: 403, RateLimitReset: reset, Times: 1})
	if _, err := e.in.DefaultBranch(e.ctx, owner, repo); err != nil {
		t.Fatal(err)
	}
	if now := time.Now(); now.Before(reset) {
		t.Errorf("retried at %v, before x-ratelimit-reset %v", now, reset)
	}
}

func TestRateLimitLongerThanTheCapGoesBackToTheCaller(t *testing.T) {
	e := newEnv(t, nil) // MaxWait 10s
	e.srv.Fault("POST", deploymentsPath, githubtest.Fault{Status: 429, RetryAfter: time.Hour})
	start := time.Now()
	_, err := e.in.CreateDeployment(e.ctx, owner, repo, gh.DeploymentRequest{SHA: sha, Environment: "staging"})
	if time.Since(start) > 5*time.Second {
		t.Errorf("waited %v for an hour-long rate limit; it should return at once", time.Since(start))
	}
	var ge *gh.Error
	if !errors.As(err, &ge) || ge.Permanent() || ge.RetryAfter < 59*time.Minute {
		t.Fatalf("err = %#v, want a retryable error with RetryAfter ≈ 1h", err)
	}
	if n := attempts(e.srv, "repos/create-deployment"); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
}

func Test422IsPermanentAndKeepsGitHubsMessage(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.Fault("POST", deploymentsPath, githubtest.Fault{Status: 422, Message: "Environment name is reserved"})
	_, err := e.in.CreateDeployment(e.ctx, owner, repo, gh.DeploymentRequest{SHA: sha, Environment: "staging"})
	var ge *gh.Error
	if !errors.As(err, &ge) {
		t.Fatalf("err = %v, want *gh.Error", err)
	}
	if ge.Status != 422 || !ge.Permanent() {
		t.Errorf("status %d, permanent %v; want a permanent 422", ge.Status, ge.Permanent())
	}
	if !strings.Contains(err.Error(), "Environment name is reserved") || !strings.Contains(err.Error(), "acme/web") {
		t.Errorf("message %q lacks GitHub's message or the repository", err)
	}
	if n := attempts(e.srv, "repos/create-deployment"); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
	t.Logf("the caller sees: %v", err)
}

func TestPermanentStatuses(t *testing.T) {
	for _, tc := range []struct {
		status    int
		permanent bool
	}{{401, true}, {403, true}, {404, true}, {422, true}, {500, false}} {
		e := newEnv(t, nil)
		e.srv.Fault("GET", "/repos/{owner}/{repo}", githubtest.Fault{Status: tc.status})
		_, err := e.in.DefaultBranch(e.ctx, owner, repo)
		var ge *gh.Error
		if !errors.As(err, &ge) || ge.Status != tc.status || ge.Permanent() != tc.permanent {
			t.Errorf("%d: err = %v, want permanent %v", tc.status, err, tc.permanent)
		}
		want := 1
		if !tc.permanent {
			want = 4
		}
		if n := attempts(e.srv, "repos/get"); n != want {
			t.Errorf("%d: %d attempts, want %d", tc.status, n, want)
		}
	}
}

func TestRetryWaitHonoursContext(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.Fault("GET", "/repos/{owner}/{repo}", githubtest.Fault{Status: 429, RetryAfter: 5 * time.Second})
	ctx, cancel := context.WithTimeout(e.ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := e.in.DefaultBranch(ctx, owner, repo)
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("err = %v after %v; want a prompt context error", err, time.Since(start))
	}
	var ge *gh.Error
	if !errors.As(err, &ge) || ge.Permanent() {
		t.Errorf("err = %v, want a retryable *gh.Error", err)
	}
}

func TestBadCredentialsSayWhatToDo(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.Fault("POST", "/app/installations/{installation_id}/access_tokens", githubtest.Fault{Status: 401, Message: "Bad credentials"})
	_, err := e.in.DefaultBranch(e.ctx, owner, repo)
	var ge *gh.Error
	if !errors.As(err, &ge) || ge.Status != 401 || !ge.Permanent() || !strings.Contains(err.Error(), "PRIVATE_KEY") {
		t.Errorf("err = %v, want a permanent 401 naming PRIVATE_KEY", err)
	}
}

func TestTokenMintingIsRetried(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.Fault("POST", "/app/installations/{installation_id}/access_tokens", githubtest.Fault{Status: 502, Times: 1})
	if _, err := e.in.DefaultBranch(e.ctx, owner, repo); err != nil {
		t.Fatal(err)
	}
	if n := attempts(e.srv, "apps/create-installation-access-token"); n != 2 {
		t.Errorf("%d token mints, want 2 (502, then 201)", n)
	}
}
