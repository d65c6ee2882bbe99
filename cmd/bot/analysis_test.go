package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/fixtures"
	"github.com/shipbot/shipbot/internal/testenv"
)

// analysisConfig is production on 2 instances (canary 1, then 1), quick
// health checks, the given bake ("": left out, so that with analysis it
// defaults to three intervals) and analysis block (indented under
// production).
func analysisConfig(bake, analysis string) string {
	if bake != "" {
		bake = "      bake: " + bake + "\n"
	}
	return "environments:\n  production:\n    instances: 2\n    rollout:\n      canary: 1\n      batch: 1\n      max_unavailable: 1\n" + bake +
		"    health:\n      interval: 100ms\n      healthy_after: 1\n      timeout: 20s\n" + analysis
}

// releaseSHA is the commit of the n-th release of pushRelease: 40 hex
// digits whose short form tells the releases apart (a000001…).
func releaseSHA(n int) string { return fmt.Sprintf("%07x%033x", 0xa000000+n, 0) }

// pushRelease makes releaseSHA(n) the head of main with a sample app
// release that behaves as b says and the configuration f.config, and
// delivers the push (before: releaseSHA(n-1)).
func (f *deployFixture) pushRelease(tb testing.TB, n int, version string, b fixtures.Behaviour) {
	tb.Helper()
	dir := tb.TempDir()
	if err := fixtures.WriteSampleAppWith(dir, version, b); err != nil {
		tb.Fatal(err)
	}
	sha := releaseSHA(n)
	if err := f.srv.SetTree(deployOwner, deployRepo, sha, dir); err != nil {
		tb.Fatal(err)
	}
	f.srv.SetFile(deployOwner, deployRepo, sha, ".github/shipbot.yml", []byte(f.config))
	f.srv.SetBranch(deployOwner, deployRepo, "main", sha)
	if status, body := f.bot.post(tb, delivery2("push-"+strconv.Itoa(n), pushOnMain(f.srv.InstallationID, releaseSHA(n-1), sha))); status != 202 {
		tb.Fatalf("push %d: %d %s", n, status, body)
	}
}

// serves checks that every one of a few requests to url is answered by
// version.
func serves(t *testing.T, url, version string) {
	t.Helper()
	for range 6 {
		if body := getBody(t, url); !strings.HasPrefix(body, "sample-app "+version+"\n") {
			t.Fatalf("production serves %q, want %s", body, version)
		}
	}
}

// TestCanaryAnalysis is SPEC §6.8 end to end: a real bot on real Redis,
// githubtest, the local driver running the sample app behind its proxy
// under 20 req/s of real traffic, and a real Prometheus scraping the bot's
// /metrics. Releases that answer /healthz but fail real requests, or
// answer them slowly, are halted at the canary and put back, with the
// metric, both values and the limit in the deployment status; a release no
// worse than the one it replaces ships; a Prometheus check halts what it
// sees and passes what it does not; and an unreadable Prometheus halts,
// naming its address.
func TestCanaryAnalysis(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	const judged = "    analysis:\n      interval: 1s\n      min_requests: 10\n      max_error_rate: 5%\n      max_latency_p99: 300ms\n"
	good := fixtures.Behaviour{}
	failing := fixtures.Behaviour{FailShare: 0.4}

	// v1: the first release, with nobody sending traffic yet: it ships, and
	// the check run says its batches were not judged.
	f.config = analysisConfig("", judged)
	f.pushRelease(t, 1, "v1", good)
	d := f.finished(t, releaseSHA(1))
	if d.LastState() != "success" {
		t.Fatalf("first deploy: %v\n%s", states(d), f.bot.logs)
	}
	url := d.Statuses[len(d.Statuses)-1].EnvironmentURL
	if cr := f.checkRun(t, releaseSHA(1), "shipbot/production"); !strings.Contains(cr.Text, "not judged") {
		t.Errorf("the check run of a deploy without traffic does not say it was not judged:\n%s", cr.Text)
	}
	load := testenv.StartLoad(url+"/", 20)
	finished := false
	defer func() {
		if !finished {
			load.Finish()
		}
	}()

	step := func(n int, version string, b fixtures.Behaviour, config, want string) (desc, text string) {
		t.Helper()
		f.config = config
		f.pushRelease(t, n, version, b)
		d := f.finished(t, releaseSHA(n))
		final := d.Statuses[len(d.Statuses)-1]
		cr := f.checkRun(t, releaseSHA(n), "shipbot/production")
		t.Logf("%s: %s %q\n%s", version, d.LastState(), final.Description, cr.Text)
		if d.LastState() != want {
			t.Fatalf("%s: deployment %v, want %s\n%s", version, states(d), want, f.bot.logs)
		}
		return final.Description, cr.Text
	}

	// v2: a good release under traffic ships, each batch's figures shown.
	_, text := step(2, "v2", good, analysisConfig("", judged), "success")
	if !strings.Contains(text, "| Traffic |") || !strings.Contains(text, "requests, 0% errors") {
		t.Errorf("the check run of a judged deploy has no traffic figures:\n%s", text)
	}
	serves(t, url, "v2")

	// v3 fails 40% of requests but answers /healthz: halted at the canary
	// by its error rate, compared with v2's.
	desc, text := step(3, "v3", failing, analysisConfig("", judged), "failure")
	// The share measured over a few dozen requests is near 40%, not exactly.
	if want := regexp.MustCompile(`error rate (\d+)% on a000003 vs 0% on a000002 \(limit 5%\)`); !want.MatchString(desc) {
		t.Errorf("the failure does not name the metric, both values and the limit (%s): %q", want, desc)
	} else if rate, _ := strconv.Atoi(want.FindStringSubmatch(desc)[1]); rate < 20 || rate > 60 {
		t.Errorf("v3's error rate read as %d%%, far from the 40%% it fails", rate)
	}
	haltedAtCanary(t, text)
	serves(t, url, "v2")

	// v4 answers 500ms late: halted by its p99.
	// The local proxy sends a slow instance less of the traffic, so the
	// canary may not reach min_requests; whichever batch is judged first
	// halts it.
	desc, _ = step(4, "v4", fixtures.Behaviour{Latency: 500 * time.Millisecond}, analysisConfig("", judged), "failure")
	if !strings.Contains(desc, "p99 latency") || !strings.Contains(desc, "(limit 300ms)") {
		t.Errorf("the failure does not name p99 latency and its limit: %q", desc)
	}
	serves(t, url, "v2")

	// The baseline rule: v5 fails 40% and ships without analysis; v6, as
	// bad as v5 and no worse, ships under analysis though its error rate is
	// over the limit, since the errors are not the new release's doing.
	step(5, "v5", failing, analysisConfig("", ""), "success")
	step(6, "v6", failing, analysisConfig("", judged), "success")
	step(7, "v7", good, analysisConfig("", judged), "success")

	// A Prometheus check on the bot's own /metrics, scraped by a real
	// Prometheus: the new release's 500s in the last 15 s, at most 0.
	// The error-rate limit is out of the way (50%), so that the check is
	// what judges.
	target := strings.TrimPrefix(f.bot.url, "http://")
	prom := testenv.StartPrometheus(t, target)
	prom.WaitScraped(target)
	promConfig := func(url string) string {
		return analysisConfig("5s", "    analysis:\n      interval: 1s\n      min_requests: 10\n      max_error_rate: 50%\n"+
			"      prometheus:\n        url: "+url+"\n        checks:\n          - name: proxy 500s\n"+
			"            query: sum(increase(shipbot_proxy_requests_total{release=\"{{.SHA}}\",code=\"500\"}[15s])) or vector(0)\n"+
			"            max: 0\n")
	}
	desc, text = step(8, "v8", failing, promConfig(prom.URL()), "failure")
	if !regexp.MustCompile(`Prometheus check "proxy 500s" [0-9.]+ on a000008 vs 0 on a000007 \(max 0\)`).MatchString(desc) {
		t.Errorf("the failure does not name the Prometheus check, both values and the bound: %q\n%s", desc, prom.Log())
	}
	haltedAtCanary(t, text)
	serves(t, url, "v7")
	step(9, "v9", good, promConfig(prom.URL()), "success")

	// A Prometheus that cannot be read, 3 times in a row, halts the rollout
	// naming its address.
	dead := "http://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	desc, text = step(10, "v10", good, promConfig(dead), "failure")
	if !strings.Contains(desc, `could not read Prometheus check "proxy 500s" at `+dead+" 3 times in a row") {
		t.Errorf("the failure does not name the Prometheus that cannot be read (%s): %q", dead, desc)
	}
	haltedAtCanary(t, text)
	serves(t, url, "v9")

	// The delivery metrics count the ten deploys, four of them failed.
	metrics := getBody(t, f.bot.url+"/metrics")
	for _, want := range []string{
		`shipbot_dora_change_failure_rate{environment="production",repo="octo-org/hello-world"} 0.4`,
		`shipbot_dora_deploys_per_day{environment="production",repo="octo-org/hello-world"} 0.333`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	finished = true
	r := load.Finish()
	t.Logf("load: %d sent, %d ok, %d failed, answers %v", r.Sent, r.OK, len(r.Failures), r.Answers)
}

// haltedAtCanary checks a check run's batch table: the canary rolled back,
// the other batch never started.
func haltedAtCanary(t *testing.T, text string) {
	t.Helper()
	rows := tableRows(text)
	if len(rows) != 2 || !strings.Contains(rows[0], "canary") || !strings.Contains(rows[0], "rolled back") || !strings.Contains(rows[1], "pending") {
		t.Errorf("the check run does not show the canary rolled back and batch 2 pending:\n%s", text)
	}
}
