package main

import (
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/githubtest"
)

// checkSuitePayload is the check_suite completed fixture for sha.
func checkSuitePayload(srv *githubtest.Server, sha, conclusion string) []byte {
	return fixturePayload("check_suite.completed", srv.InstallationID, func(p map[string]any) {
		cs := p["check_suite"].(map[string]any)
		cs["head_sha"], cs["conclusion"], cs["head_branch"] = sha, conclusion, "main"
	})
}

// TestRequiredChecks: with require_checks (all, the default) a push whose
// CI is still running waits, saying for what; CI going green releases it,
// CI going red fails it naming the check, and nothing is deployed.
func TestRequiredChecks(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	f.config = "environments:\n  production:\n    instances: 2\n    require_checks: [ci/test]\n"

	// Green: waits, then deploys after the check_suite event.
	run := f.srv.AddCheckRun(deployOwner, deployRepo, githubtest.CheckRun{Name: "ci/test", HeadSHA: shaV1, Status: "in_progress"})
	f.push(t, "push-1", "0000000000000000000000000000000000000000", shaV1, "v1", true)
	dep := f.waitState(t, shaV1, "queued")
	if d := dep.Statuses[len(dep.Statuses)-1].Description; !strings.Contains(d, "ci/test") {
		t.Fatalf("queued status does not say what it waits for: %q", d)
	}
	// Still waiting a moment later: nothing ran.
	time.Sleep(500 * time.Millisecond)
	if dep, _ := deploymentOf(f.srv, shaV1); strings.Join(states(dep), ",") != "queued" {
		t.Fatalf("deployed before the checks passed: %v", states(dep))
	}
	f.srv.CompleteCheckRun(run, "success")
	if status, body := f.bot.post(t, delivery{event: "check_suite", id: "suite-1", body: checkSuitePayload(f.srv, shaV1, "success")}); status != 202 {
		t.Fatalf("check_suite: %d %s", status, body)
	}
	if got := states(f.finished(t, shaV1)); strings.Join(got, ",") != "queued,in_progress,success" {
		t.Fatalf("statuses after green checks %v\n%s", got, f.bot.logs)
	}

	// Red: fails naming the check; production keeps v1.
	run = f.srv.AddCheckRun(deployOwner, deployRepo, githubtest.CheckRun{Name: "ci/test", HeadSHA: shaV2, Status: "in_progress"})
	f.push(t, "push-2", shaV1, shaV2, "v2", true)
	f.waitState(t, shaV2, "queued")
	f.srv.CompleteCheckRun(run, "failure")
	if status, body := f.bot.post(t, delivery{event: "check_suite", id: "suite-2", body: checkSuitePayload(f.srv, shaV2, "failure")}); status != 202 {
		t.Fatalf("check_suite: %d %s", status, body)
	}
	dep = f.finished(t, shaV2)
	if got := strings.Join(states(dep), ","); got != "queued,failure" {
		t.Fatalf("statuses after red checks %s\n%s", got, f.bot.logs)
	}
	if d := dep.Statuses[len(dep.Statuses)-1].Description; !strings.Contains(d, "ci/test") {
		t.Fatalf("failure does not name the check: %q", d)
	}
	cr := f.checkRun(t, shaV2, "shipbot/production")
	if cr.Conclusion != "failure" || !strings.Contains(cr.Title+cr.Summary, "ci/test") {
		t.Fatalf("check run: %s %q %q", cr.Conclusion, cr.Title, cr.Summary)
	}

	// Already red at push time: fails at once.
	f.srv.AddCheckRun(deployOwner, deployRepo, githubtest.CheckRun{Name: "ci/test", HeadSHA: shaV3, Status: "completed", Conclusion: "timed_out"})
	f.push(t, "push-3", shaV2, shaV3, "v3", true)
	if got := strings.Join(states(f.finished(t, shaV3)), ","); got != "queued,failure" {
		t.Fatalf("statuses of a red commit %s", got)
	}
}

// waitState waits until the newest deployment of sha has last state want.
func (f *deployFixture) waitState(t *testing.T, sha, want string) githubtest.Deployment {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var dep githubtest.Deployment
	for time.Now().Before(deadline) {
		if d, ok := deploymentOf(f.srv, sha); ok && d.LastState() == want {
			return d
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("deployment of %s never reached %s (statuses %v)\n%s", sha, want, states(dep), f.bot.logs)
	return dep
}
