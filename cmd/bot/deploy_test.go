package main

import (
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/fixtures"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/testenv"
)

const (
	deployOwner = "octo-org"
	deployRepo  = "hello-world"
)

// sampleRelease writes a release of the sample app with the given version
// and health to a fresh directory, for githubtest to serve as the tarball
// of a SHA.
func sampleRelease(t testing.TB, version string, healthy bool) string {
	t.Helper()
	dst := t.TempDir()
	if err := fixtures.WriteSampleApp(dst, version, healthy); err != nil {
		t.Fatal(err)
	}
	return dst
}

// deployFixture is a bot on real Redis with githubtest holding the sample app.
type deployFixture struct {
	srv      *githubtest.Server
	bot      *runningBot
	redisURL string
	config   string // .github/shipbot.yml on main; "" for none (the defaults)
}

func newDeployFixture(t testing.TB, opts ...buildOption) *deployFixture {
	t.Helper()
	return newDeployFixtureEnv(t, nil, opts...)
}

// newDeployFixtureEnv is newDeployFixture with more of the bot's
// environment.
func newDeployFixtureEnv(t testing.TB, extra map[string]string, opts ...buildOption) *deployFixture {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the sample app")
	}
	srv := githubtest.New(t, githubtest.WithSpec(restDescription(t)))
	srv.AddRepo(deployOwner, deployRepo, githubtest.RepoOptions{DefaultBranch: "main"})
	r := testenv.StartRedis(t)
	env := map[string]string{
		"REDIS_URL": r.URL(), "GITHUB_API_URL": srv.URL, "APP_ID": strconv.FormatInt(srv.AppID, 10),
		"PRIVATE_KEY": string(srv.PrivateKeyPEM), "PUBLIC_URL": "https://shipbot.example.com",
	}
	maps.Copy(env, extra)
	b := startBotWith(t, env, opts)
	return &deployFixture{srv: srv, bot: b, redisURL: r.URL()}
}

// push makes sha the head of main with the given release and delivers the push.
func (f *deployFixture) push(t testing.TB, delivery, before, sha, version string, healthy bool) {
	t.Helper()
	if err := f.srv.SetTree(deployOwner, deployRepo, sha, sampleRelease(t, version, healthy)); err != nil {
		t.Fatal(err)
	}
	if f.config != "" {
		f.srv.SetFile(deployOwner, deployRepo, sha, ".github/shipbot.yml", []byte(f.config))
	}
	f.srv.SetBranch(deployOwner, deployRepo, "main", sha)
	if status, body := f.bot.post(t, delivery2(delivery, pushOnMain(f.srv.InstallationID, before, sha))); status != 202 {
		t.Fatalf("push %s: %d %s", delivery, status, body)
	}
}

func delivery2(id string, body []byte) delivery { return delivery{event: "push", id: id, body: body} }

// finished waits for the deployment of sha to reach a final state.
func (f *deployFixture) finished(t testing.TB, sha string) githubtest.Deployment {
	t.Helper()
	var dep githubtest.Deployment
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		for _, d := range f.srv.Deployments(deployOwner, deployRepo) {
			if d.SHA == sha {
				dep = d
			}
		}
		switch dep.LastState() {
		case "success", "failure", "error":
			// The check run is completed right after the final status;
			// wait for it too, so that a count of writes that starts now
			// does not see it.
			if f.checkRunCompleted(sha) {
				return dep
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("deployment of %s did not finish within 3m (statuses %v)\n%s", sha, states(dep), f.bot.logs)
	return dep
}

func (f *deployFixture) checkRunCompleted(sha string) bool {
	for _, c := range f.srv.CheckRuns(deployOwner, deployRepo) {
		if c.HeadSHA == sha && c.Name == "shipbot/production" && c.Status == "completed" {
			return true
		}
	}
	return false
}

func states(d githubtest.Deployment) []string {
	var out []string
	for _, s := range d.Statuses {
		out = append(out, s.State)
	}
	return out
}

func (f *deployFixture) checkRun(t *testing.T, sha, name string) githubtest.CheckRun {
	t.Helper()
	// The check run is created just after the deployment's first status,
	// so a test that waited for that status may look a moment too early.
	var found []githubtest.CheckRun
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		found = found[:0]
		for _, c := range f.srv.CheckRuns(deployOwner, deployRepo) {
			if c.HeadSHA == sha && c.Name == name {
				found = append(found, c)
			}
		}
		if len(found) > 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one check run %s on %s, have %d", name, sha, len(found))
	}
	return found[0]
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

const (
	shaV1 = "1111111111111111111111111111111111111111"
	shaV2 = "2222222222222222222222222222222222222222"
	shaV3 = "3333333333333333333333333333333333333333"
)

// TestPushDeploysProduction: a push to main rolls the release out to
// production (default config: local driver, 4 instances, canary 1, batch
// 25%) canary first, and GitHub shows it within the write budget of SPEC §11.
func TestPushDeploysProduction(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)

	// The first release brings production up.
	f.push(t, "push-1", "0000000000000000000000000000000000000000", shaV1, "v1", true)
	if got := states(f.finished(t, shaV1)); strings.Join(got, ",") != "queued,in_progress,success" {
		t.Fatalf("first deploy statuses %v\n%s", got, f.bot.logs)
	}

	// The second is the one measured.
	f.srv.ResetCalls()
	f.push(t, "push-2", shaV1, shaV2, "v2", true)
	dep := f.finished(t, shaV2)
	// Let any stray write land before counting.
	time.Sleep(300 * time.Millisecond)

	if dep.Environment != "production" || !dep.ProductionEnvironment || dep.Ref != shaV2 {
		t.Errorf("deployment: environment %q production %t ref %q", dep.Environment, dep.ProductionEnvironment, dep.Ref)
	}
	if got := states(dep); strings.Join(got, ",") != "queued,in_progress,success" {
		t.Fatalf("statuses %v, want queued, in_progress, success\n%s", got, f.bot.logs)
	}
	final := dep.Statuses[len(dep.Statuses)-1]
	if final.EnvironmentURL == "" {
		t.Errorf("final status has no environment_url")
	}
	if !strings.HasPrefix(final.LogURL, "https://shipbot.example.com/deploys/") {
		t.Errorf("final status log_url %q", final.LogURL)
	}
	cr := f.checkRun(t, shaV2, "shipbot/production")
	if cr.Status != "completed" || cr.Conclusion != "success" {
		t.Errorf("check run: %s/%s %q", cr.Status, cr.Conclusion, cr.Title)
	}
	// Canary first: the first row of the batch table is the canary.
	t.Logf("check run %q\n%s", cr.Title, cr.Text)
	if rows := tableRows(cr.Text); len(rows) != 4 || !strings.Contains(strings.ToLower(rows[0]), "canary") {
		t.Errorf("check run table does not show 4 batches, canary first:\n%s", cr.Text)
	}
	const nBatches = 4 // 4 instances: canary 1, then 25% = 1 each
	writes := f.srv.CountWrites()
	budget := 5 + (nBatches+1)/2
	t.Logf("GitHub writes for a %d-batch rollout: %d (budget %d)", nBatches, writes, budget)
	if writes > budget {
		for _, c := range f.srv.Calls() {
			if c.Write() {
				t.Logf("write: %s %s", c.Method, c.Path)
			}
		}
		t.Errorf("%d GitHub writes, budget %d", writes, budget)
	}
	if body := getBody(t, final.EnvironmentURL); !strings.Contains(body, "sample-app v2") {
		t.Errorf("production serves %q, want v2", body)
	}
}

// TestUnhealthyReleaseRollsBack: a release whose /healthz fails halts at the
// canary, is put back, and the deployment fails with the reason while
// production keeps serving the old release.
func TestUnhealthyReleaseRollsBack(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	// A short health timeout keeps the test short; it also exercises a
	// configuration read from the default branch.
	f.config = "environments:\n  production:\n    health:\n      timeout: 10s\n"
	f.push(t, "push-1", "0000000000000000000000000000000000000000", shaV1, "v1", true)
	ok := f.finished(t, shaV1)
	if ok.LastState() != "success" {
		t.Fatalf("first deploy: %v\n%s", states(ok), f.bot.logs)
	}
	url := ok.Statuses[len(ok.Statuses)-1].EnvironmentURL

	f.srv.ResetCalls()
	f.push(t, "push-bad", shaV1, shaV3, "v3-broken", false)
	dep := f.finished(t, shaV3)
	time.Sleep(300 * time.Millisecond)
	if w := f.srv.CountWrites(); w > 5+(4+1)/2 {
		t.Errorf("%d GitHub writes for a failed 4-batch rollout, budget %d", w, 5+(4+1)/2)
	} else {
		t.Logf("GitHub writes for the failed rollout: %d", w)
	}
	if got := states(dep); strings.Join(got, ",") != "queued,in_progress,failure" {
		t.Fatalf("statuses %v, want queued, in_progress, failure\n%s", got, f.bot.logs)
	}
	final := dep.Statuses[len(dep.Statuses)-1]
	t.Logf("failure status: %q", final.Description)
	if !strings.Contains(final.Description, "healthz") {
		t.Errorf("failure status does not give the reason: %q", final.Description)
	}
	cr := f.checkRun(t, shaV3, "shipbot/production")
	if cr.Status != "completed" || cr.Conclusion != "failure" {
		t.Errorf("check run: %s/%s %q", cr.Status, cr.Conclusion, cr.Title)
	}
	for range 5 {
		if body := getBody(t, url); !strings.Contains(body, "sample-app v1") {
			t.Fatalf("production serves %q after the failed deploy, want v1", body)
		}
	}
}

// tableRows are the body rows of a Markdown table (header and separator
// left out).
func tableRows(md string) []string {
	var rows []string
	for _, l := range strings.Split(md, "\n") {
		if strings.HasPrefix(l, "|") {
			rows = append(rows, l)
		}
	}
	if len(rows) < 2 {
		return nil
	}
	return rows[2:]
}
