package handlers

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/store/record"
)

func TestEvaluateChecks(t *testing.T) {
	const sha = "abcdef0123456789abcdef0123456789abcdef01"
	all := repoconfig.Checks{All: true}
	named := func(n ...string) repoconfig.Checks { return repoconfig.Checks{Names: n} }
	run := func(name, status, conclusion string) gh.CheckRunInfo {
		return gh.CheckRunInfo{Name: name, Status: status, Conclusion: conclusion}
	}
	status := func(ctx, state string) gh.CommitStatus { return gh.CommitStatus{Context: ctx, State: state} }
	tests := []struct {
		name        string
		req         repoconfig.Checks
		runs        []gh.CheckRunInfo
		statuses    []gh.CommitStatus
		wantWaiting []string
		wantFailed  string
	}{
		{name: "all, nothing on the commit: passes", req: all},
		{name: "all, green runs and statuses", req: all,
			runs:     []gh.CheckRunInfo{run("test", "completed", "success"), run("lint", "completed", "skipped"), run("docs", "completed", "neutral")},
			statuses: []gh.CommitStatus{status("ci/legacy", "success")}},
		{name: "all, one running", req: all,
			runs:        []gh.CheckRunInfo{run("test", "completed", "success"), run("lint", "in_progress", "")},
			wantWaiting: []string{"lint"}},
		{name: "all, a pending status", req: all, statuses: []gh.CommitStatus{status("ci/legacy", "pending")}, wantWaiting: []string{"ci/legacy"}},
		{name: "all, one red", req: all,
			runs:       []gh.CheckRunInfo{run("test", "completed", "failure"), run("lint", "queued", "")},
			wantFailed: "required check test failed on abcdef0", wantWaiting: []string{"lint"}},
		{name: "all, a red status", req: all, statuses: []gh.CommitStatus{status("ci/legacy", "error")},
			wantFailed: "required check ci/legacy failed on abcdef0"},
		{name: "all ignores shipbot's own runs", req: all,
			runs: []gh.CheckRunInfo{run("shipbot/production", "completed", "failure"), run("shipbot/staging", "in_progress", "")}},
		{name: "named, missing: waits", req: named("ci/test"), runs: []gh.CheckRunInfo{run("lint", "completed", "failure")},
			wantWaiting: []string{"ci/test"}},
		{name: "named, green; others red do not count", req: named("ci/test"),
			runs: []gh.CheckRunInfo{run("ci/test", "completed", "success"), run("lint", "completed", "failure")}},
		{name: "named, case-insensitive, as a status", req: named("CI/Legacy"), statuses: []gh.CommitStatus{status("ci/legacy", "success")}},
		{name: "named, timed out", req: named("ci/test"), runs: []gh.CheckRunInfo{run("ci/test", "completed", "timed_out")},
			wantFailed: "required check ci/test timed out on abcdef0"},
		{name: "named, a green re-run counts", req: named("ci/test"),
			runs: []gh.CheckRunInfo{run("ci/test", "completed", "failure"), run("ci/test", "completed", "success")}},
		{name: "stale is still waiting", req: named("ci/test"), runs: []gh.CheckRunInfo{run("ci/test", "completed", "stale")},
			wantWaiting: []string{"ci/test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := evaluateChecks(tt.req, sha, tt.runs, tt.statuses)
			if !slices.Equal(v.Waiting, tt.wantWaiting) || v.Failed != tt.wantFailed {
				t.Fatalf("got waiting %v failed %q; want %v %q", v.Waiting, v.Failed, tt.wantWaiting, tt.wantFailed)
			}
		})
	}
}

// The minute sweep judges waiting deploys without an event: still pending
// past the bound fails naming the check; green proceeds.
func TestRecheckWaiting(t *testing.T) {
	srv := githubtest.New(t)
	srv.AddRepo("octo-org", "web", githubtest.RepoOptions{DefaultBranch: "main"})
	srv.SetBranch("octo-org", "web", "main", pushSHA)
	const green = "3333333333333333333333333333333333333333"
	srv.AddCheckRun("octo-org", "web", githubtest.CheckRun{Name: "ci/test", HeadSHA: pushSHA, Status: "in_progress"})
	srv.AddCheckRun("octo-org", "web", githubtest.CheckRun{Name: "ci/test", HeadSHA: green, Status: "completed", Conclusion: "success"})
	c, err := gh.New(gh.Options{AppID: srv.AppID, PrivateKey: srv.PrivateKeyPEM, BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	env := record.EnvKey{Repo: "octo-org/web", Name: "production"}
	old := time.Now().Add(-2 * time.Hour)
	st := openStore(t)
	for _, r := range []record.Deploy{
		{ID: "slow", Env: env, SHA: pushSHA, State: record.StateWaiting, CreatedAt: old, InstallationID: srv.InstallationID},
		{ID: "fresh", Env: env, SHA: pushSHA, State: record.StateWaiting, CreatedAt: time.Now(), InstallationID: srv.InstallationID},
		{ID: "green", Env: env, SHA: green, State: record.StateWaiting, CreatedAt: old, InstallationID: srv.InstallationID},
		{ID: "done", Env: env, SHA: green, State: record.StateSuccess, CreatedAt: old, InstallationID: srv.InstallationID},
	} {
		r.Kind = record.KindPush
		if err := st.PutDeploy(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	d := &deployer{}
	deps := Deps{Base: Base{GitHub: c, Store: st, Engine: d}}
	if err := deps.RecheckWaiting(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.passed, []string{"green"}) {
		t.Fatalf("passed %v", d.passed)
	}
	if len(d.failed) != 1 || !strings.HasPrefix(d.failed[0], "slow: required checks did not finish within 1h0m0s: ci/test still pending on 2222222") {
		t.Fatalf("failed %v", d.failed)
	}
}
