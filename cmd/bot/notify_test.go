package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shipbot/shipbot/fixtures"
	"github.com/shipbot/shipbot/internal/cdevents"
	"github.com/shipbot/shipbot/internal/slack/slackfake"
)

const eventsSecret = "events-secret-0123456789abcdef"

// receiver is a notify.webhooks endpoint: it checks each delivery's
// signature and keeps the events by id, and can be down (503).
type receiver struct {
	t   *testing.T
	srv *httptest.Server

	mu         sync.Mutex
	down       bool
	refused    int                 // deliveries answered 503
	bodies     map[string][32]byte // event id → hash of the first body delivered
	types      map[string]string   // event id → type
	order      []string            // event ids, in the order first delivered
	deliveries int
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{t: t, bodies: map[string][32]byte{}, types: map[string]string{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) setDown(down bool) {
	rc.mu.Lock()
	rc.down = down
	rc.mu.Unlock()
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.down {
		rc.refused++
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	rc.deliveries++
	if err := cdevents.Verify(eventsSecret, body, r.Header.Get(cdevents.SignatureHeader)); err != nil {
		rc.t.Errorf("receiver: a delivery with a bad signature: %v", err)
	}
	if ct := r.Header.Get("Content-Type"); ct != cdevents.ContentType {
		rc.t.Errorf("receiver: Content-Type %q, want %s", ct, cdevents.ContentType)
	}
	var e struct{ ID, Type, Source string }
	if err := json.Unmarshal(body, &e); err != nil || e.ID == "" {
		rc.t.Errorf("receiver: not a CloudEvent (%v): %s", err, body)
		return
	}
	sum := sha256.Sum256(body)
	if prev, ok := rc.bodies[e.ID]; ok {
		if prev != sum {
			rc.t.Errorf("receiver: event %s delivered again with a different body", e.ID)
		}
		return
	}
	rc.bodies[e.ID], rc.types[e.ID] = sum, e.Type
	rc.order = append(rc.order, e.ID)
}

// events are the types of the distinct events received, in order.
func (rc *receiver) events() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, id := range rc.order {
		out = append(out, rc.types[id])
	}
	return out
}

// TestNotifyBeyondGitHub is SPEC §5 "Beyond GitHub" end to end, with a
// real bot, real Redis, githubtest and the local driver, a strict fake
// Slack and a webhook receiver that checks signatures. Three pushes (a
// success, a success while Slack answers 500 and the receiver is down, a
// release that never turns healthy): one Slack message per deploy, edited
// as it moved, the last one with a thread reply; service.deployed,
// service.upgraded and incident.detected, each once; audit entries for
// each deploy; and the DORA gauges.
func TestNotifyBeyondGitHub(t *testing.T) {
	t.Parallel()
	sl := slackfake.New(t, "#deploys")
	rc := newReceiver(t)
	f := newDeployFixtureEnv(t, map[string]string{
		"SLACK_BOT_TOKEN": slackfake.Token, "SLACK_API_URL": sl.URL, "EVENTS_SECRET": eventsSecret, "DASHBOARD_TOKEN": dashboardToken,
	}, withOutboxBackoff(func(int) time.Duration { return 300 * time.Millisecond }))
	f.config = "environments:\n  production:\n    instances: 2\n    require_checks: none\n    rollout:\n      canary: 1\n      batch: 1\n" +
		"    health:\n      interval: 100ms\n      healthy_after: 1\n      timeout: 3s\n" +
		"notify:\n  slack:\n    channel: \"#deploys\"\n  webhooks:\n    - " + rc.srv.URL + "/cd\n"

	diag := func() string {
		var b strings.Builder
		for _, m := range sl.Messages() {
			fmt.Fprintf(&b, "slack message %s (reply to %q): %q\n", m.TS, m.ThreadTS, m.Texts)
		}
		for _, l := range strings.Split(f.bot.logs.String(), "\n") {
			if strings.Contains(l, "shipbot.slack") || strings.Contains(l, "slack:") || strings.Contains(l, "shipbot.cdevent") {
				b.WriteString(l + "\n")
			}
		}
		return b.String()
	}
	// Both releases that ship were committed an hour before their push.
	committed := time.Now().Add(-time.Hour).Truncate(time.Second)
	f.pushCommitted(t, "push-1", "0000000000000000000000000000000000000000", shaV1, "v1", true, committed)
	if got := states(f.finished(t, shaV1)); got[len(got)-1] != "success" {
		t.Fatalf("v1: %v\n%s", got, f.bot.logs)
	}
	waitFor(t, 15*time.Second, "the first deploy's Slack message to show its success", func() bool {
		m := sl.Messages()
		return len(m) == 1 && strings.Contains(m[0].Text(), "Deployed")
	}, diag)

	// Slack answers 500 and the receiver is down for the whole of the
	// second deploy: it takes as long as the first, and both catch up.
	sl.Fail(http.StatusInternalServerError)
	rc.setDown(true)
	start := time.Now()
	f.pushCommitted(t, "push-2", shaV1, shaV2, "v2", true, committed)
	if got := states(f.finished(t, shaV2)); got[len(got)-1] != "success" {
		t.Fatalf("v2 with Slack down: %v\n%s", got, f.bot.logs)
	}
	t.Logf("the second deploy took %s with Slack down (%d calls refused)", time.Since(start).Round(time.Millisecond), sl.Failed())
	time.Sleep(time.Second)
	if sl.Failed() == 0 {
		t.Error("nothing was sent to Slack while it was down")
	}
	sl.Fail(0)
	rc.setDown(false)
	waitFor(t, 20*time.Second, "the second deploy's Slack message to catch up", func() bool {
		m := sl.Messages()
		return len(m) == 2 && strings.Contains(m[1].Text(), "Deployed") && strings.Contains(m[1].Text(), shaV2[:7])
	}, diag)

	// A release that never answers /healthz is halted at the canary.
	f.push(t, "push-3", shaV2, shaV3, "v3", false)
	if got := states(f.finished(t, shaV3)); got[len(got)-1] != "failure" {
		t.Fatalf("v3: %v\n%s", got, f.bot.logs)
	}
	waitFor(t, 20*time.Second, "the failure's message and its thread reply", func() bool {
		m := sl.Messages()
		return len(m) == 4 && m[3].ThreadTS == m[2].TS && strings.Contains(m[2].Text(), "Failed on production")
	}, diag)
	waitFor(t, 20*time.Second, "three events", func() bool { return len(rc.events()) == 3 }, diag)

	msgs := sl.Messages()
	for i, m := range msgs[:3] {
		if m.ThreadTS != "" {
			t.Errorf("message %d is a reply, want one top-level message per deploy", i)
		}
		t.Logf("deploy %d: posted, then %d edits; now %q", i+1, len(m.Texts)-1, m.Text())
	}
	if len(msgs[0].Texts) < 3 || len(msgs[2].Texts) < 3 {
		t.Errorf("the messages were not edited as the deploys moved: %d and %d versions", len(msgs[0].Texts), len(msgs[2].Texts))
	}
	if reply := msgs[3].Text(); !strings.Contains(reply, "canary") || !strings.Contains(reply, shaV3[:7]) {
		t.Errorf("the thread reply does not say what failed where: %q", reply)
	}
	if n := sl.Calls("chat.postMessage"); n != 4 {
		t.Errorf("%d chat.postMessage calls, want 3 messages and 1 reply", n)
	}

	want := []string{cdevents.TypeServiceDeployed, cdevents.TypeServiceUpgraded, cdevents.TypeIncidentDetected}
	if got := rc.events(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("events %v, want %v", got, want)
	}
	rc.mu.Lock()
	t.Logf("receiver: %d deliveries accepted, %d refused while down", rc.deliveries, rc.refused)
	if rc.refused == 0 {
		t.Error("the receiver refused nothing: the event of the second deploy was not tried while it was down")
	}
	rc.mu.Unlock()

	// A pull request's preview: created, modified by a push, deleted when
	// the pull request closes.
	for sha, version := range map[string]string{fixtures.HeadSHAOpened: "p1", fixtures.HeadSHASynchronized: "p2"} {
		if err := f.srv.SetTree(deployOwner, deployRepo, sha, sampleRelease(t, version, true)); err != nil {
			t.Fatal(err)
		}
	}
	f.postPR(t, "pr-opened", "pull_request.opened")
	f.previewDone(t, fixtures.HeadSHAOpened)
	f.postPR(t, "pr-sync", "pull_request.synchronize")
	f.previewDone(t, fixtures.HeadSHASynchronized)
	f.postPR(t, "pr-closed", "pull_request.closed.unmerged")
	waitFor(t, 20*time.Second, "the preview's three events", func() bool { return len(rc.events()) == 6 })
	want = append(want, cdevents.TypeEnvironmentCreated, cdevents.TypeEnvironmentModified, cdevents.TypeEnvironmentDeleted)
	if got := rc.events(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("events %v, want %v", got, want)
	}
	if n := len(sl.Messages()); n != 4 {
		t.Errorf("%d Slack messages after the preview, want still 4: previews are not announced by default", n)
	}

	// The audit log has each deploy queued, started and finished.
	counts := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(dashboardGet(t, f.bot.url+"/audit.jsonl?repo="+deployOwner+"/"+deployRepo)), "\n") {
		var e struct{ Action, Outcome string }
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit.jsonl line %q: %v", line, err)
		}
		counts[e.Action+"/"+e.Outcome]++
	}
	if counts["deploy.queued/success"] != 3 || counts["deploy.started/success"] != 3 || counts["deploy.finished/success"] != 2 || counts["deploy.finished/failure"] != 1 {
		t.Errorf("audit entries %v, want each of 3 deploys queued, started and finished (2 successes, 1 failure)", counts)
	}

	// Delivery metrics, computed here: 3 deploys in the 30-day window, 1
	// of them failed; the lead time is the median (here the mean) of the
	// two successes' finish minus their commit time.
	var leadWant float64
	for _, sha := range []string{shaV1, shaV2} {
		dep := f.finished(t, sha)
		final := dep.Statuses[len(dep.Statuses)-1]
		leadWant += final.CreatedAt.Sub(committed).Seconds() / 2
	}
	if home := dashboardGet(t, f.bot.url+"/"); !strings.Contains(home, "3 deploys in 30 days · 33% failed or rolled back · commit to live in 1h") {
		t.Errorf("the dashboard home does not show the delivery figures with the lead time")
	}
	metrics := getBody(t, f.bot.url+"/metrics")
	lead, ok := gaugeValue(metrics, `shipbot_dora_lead_time_seconds{environment="production",repo="octo-org/hello-world"}`)
	if !ok || lead < leadWant-2 || lead > leadWant+2 {
		t.Errorf("lead time gauge %v (present %t), want %.0f s ± 2 s (from the success statuses)", lead, ok, leadWant)
	}
	for _, want := range []string{
		`shipbot_dora_deploys_per_day{environment="production",repo="octo-org/hello-world"} 0.1`,
		`shipbot_dora_change_failure_rate{environment="production",repo="octo-org/hello-world"} 0.3333333333333333`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// gaugeValue is the value of the series named exactly so in a /metrics
// page.
func gaugeValue(metrics, series string) (float64, bool) {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// pushCommitted is push with the head commit dated committed, as GitHub's
// push payload dates it (head_commit.timestamp), for the lead time.
func (f *deployFixture) pushCommitted(t *testing.T, delivery, before, sha, version string, healthy bool, committed time.Time) {
	t.Helper()
	if err := f.srv.SetTree(deployOwner, deployRepo, sha, sampleRelease(t, version, healthy)); err != nil {
		t.Fatal(err)
	}
	f.srv.SetFile(deployOwner, deployRepo, sha, ".github/shipbot.yml", []byte(f.config))
	f.srv.SetBranch(deployOwner, deployRepo, "main", sha)
	body := fixturePayload("push", f.srv.InstallationID, func(p map[string]any) {
		p["ref"], p["before"], p["after"], p["deleted"] = fixtures.DefaultRef, before, sha, false
		hc := p["head_commit"].(map[string]any)
		hc["id"], hc["timestamp"] = sha, committed.Format(time.RFC3339)
	})
	if status, resp := f.bot.post(t, delivery2(delivery, body)); status != 202 {
		t.Fatalf("push %s: %d %s", delivery, status, resp)
	}
}

// waitFor polls cond until it holds or d passes; then it fails, showing
// what more says.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool, more ...func() string) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, m := range more {
				b.WriteString(m() + "\n")
			}
			t.Fatalf("waited %s for %s\n%s", d, what, b.String())
		}
	}
}
