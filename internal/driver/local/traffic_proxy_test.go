package local

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/shipbot/shipbot/internal/deploy"
)

// sinceThen reads the figures of release from `from` to now (the request
// just answered was recorded before its answer left the proxy).
func sinceThen(tr *traffic, release string, from time.Time) deploy.Traffic {
	return read(tr, release, from, time.Now())
}

// waitFor polls cond for up to 5 s: for what the proxy records after the
// client has seen the end of its request.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after 5s", what)
		}
	}
}

func TestProxyCountsEachRequestForTheReleaseThatAnswered(t *testing.T) {
	p, url := startProxy(t)
	hanging := make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			hanging <- struct{}{}
			<-r.Context().Done()
			return
		}
		code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/status/"))
		w.WriteHeader(code)
	}))
	defer app.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	appB, goneB := backendOf(t, p, app, "app"), backendOf(t, p, gone, "gone")
	gone.Close() // refuses connections from now on
	p.add(goneB)
	p.add(appB)
	from := time.Now()

	// Requests that find the dead instance first are sent again to the
	// live one, and count for its release only.
	send := func(method, path string, n, want int) {
		t.Helper()
		for range n {
			req, _ := http.NewRequest(method, url+path, strings.NewReader("x"))
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Fatalf("%s %s: %d, want %d", method, path, resp.StatusCode, want)
			}
		}
	}
	send("GET", "/status/200", 10, 200)
	send("GET", "/status/503", 5, 503)
	send("POST", "/status/201", 3, 201)
	send("GET", "/status/404", 2, 404)
	if got := sinceThen(p.traffic, "app", from); got.Requests != 20 || got.Errors != 5 || got.P99 <= 0 {
		t.Errorf("app: %+v, want 20 requests, 5 errors (the 503s), a p99", got)
	}
	if got := sinceThen(p.traffic, "gone", from); got != (deploy.Traffic{}) {
		t.Errorf("gone: %+v; want nothing: every request it refused was answered by app", got)
	}

	// Only the dead one left: every request fails, against its release.
	p.remove(appB)
	send("GET", "/status/200", 4, 502)
	if got := sinceThen(p.traffic, "gone", from); got.Requests != 4 || got.Errors != 4 {
		t.Errorf("gone: %+v, want 4 requests, 4 errors", got)
	}
	if n := goneB.traffic.codes[codeFailed].Load(); n != 4 {
		t.Errorf("gone: %d failed, want 4", n)
	}

	// None in rotation: the proxy's own 503 is no release's.
	p.remove(goneB)
	send("GET", "/status/200", 1, 503)

	// A client that goes away is counted, as canceled, not as an error.
	p.add(appB)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-hanging; cancel() }()
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/hang", nil)
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("the hanging request got an answer")
	}
	waitFor(t, "counted the canceled request", func() bool { return appB.traffic.codes[codeCanceled].Load() == 1 })
	if got := sinceThen(p.traffic, "app", from); got.Requests != 21 || got.Errors != 5 {
		t.Errorf("app: %+v, want 21 requests, still 5 errors", got)
	}
	if n := appB.inflight.Load() + goneB.inflight.Load(); n != 0 {
		t.Errorf("%d requests still counted in flight", n)
	}
}

// TestTrafficThroughARollout runs the sample app: v1 on both instances,
// then v2 on one; each request counts for the release that answered it,
// through Traffic and the Prometheus collector.
func TestTrafficThroughARollout(t *testing.T) {
	h := newHarness(t, "", nil)
	tgt := target(2)
	h.prepare(tgt, v1, v2)
	h.rollout(tgt, v1)
	url := h.d.URL(repo, "staging")
	ctx := context.Background()
	from := time.Now()
	traffic := func(r deploy.Release) deploy.Traffic {
		t.Helper()
		got, err := h.d.Traffic(ctx, tgt, r.SHA, from, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	// v1 alone, with some slow requests: they make its p99.
	expectVersion(t, url, "v1", 20)
	const slow = 150 * time.Millisecond
	errs := make(chan error, 10)
	for range 10 {
		go func() {
			code, body, err := get(fmt.Sprintf("%s/slow?ms=%d", url, slow.Milliseconds()))
			if err == nil && code != 200 {
				err = fmt.Errorf("%d %q", code, body)
			}
			errs <- err
		}()
	}
	for range 10 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := traffic(v1); got.Requests != 30 || got.Errors != 0 || float64(got.P99) < 0.95*float64(slow) {
		t.Errorf("v1 alone: %+v; want 30 requests, no error, a p99 of at least %s", got, slow)
	}

	// v2 on staging-1: the requests split between the releases.
	insts, err := h.d.Instances(ctx, tgt)
	if err != nil {
		t.Fatal(err)
	}
	h.update(tgt, insts[0], v2)
	answered := map[string]int64{}
	for range 40 {
		code, body, err := get(url + "/")
		if err != nil || code != 200 {
			t.Fatalf("%d %q %v", code, body, err)
		}
		answered[strings.Fields(body)[1]]++
	}
	if answered["v1"] == 0 || answered["v2"] == 0 {
		t.Fatalf("answers %v; want both releases to answer", answered)
	}
	if got := traffic(v1); got.Requests != 30+answered["v1"] || got.Errors != 0 {
		t.Errorf("v1: %+v, want %d requests, no error", got, 30+answered["v1"])
	}
	if got := traffic(v2); got.Requests != answered["v2"] || got.Errors != 0 || got.P99 <= 0 {
		t.Errorf("v2: %+v, want %d requests, no error, a p99", got, answered["v2"])
	}

	// v2's process dies (and is not restarted): requests that find it are
	// sent again to v1 and count for v1 ...
	f := h.d.fleets[fleetKey{Repo: repo, Env: "staging"}]
	f.mu.Lock()
	dead := f.slots["staging-1"].proc
	f.mu.Unlock()
	dead.stopping.Store(true)
	if err := syscall.Kill(-dead.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-dead.done
	expectVersion(t, url, "v1", 10)
	if got := traffic(v2); got.Requests != answered["v2"] {
		t.Errorf("v2: %d requests, want still %d: the retried ones are v1's", got.Requests, answered["v2"])
	}
	// ... and once v1 is out of rotation, they fail, against v2.
	if err := h.d.Drain(ctx, tgt, insts[1]); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if code, body, _ := get(url + "/"); code != 502 {
			t.Fatalf("%d %q; want 502 from the dead instance", code, body)
		}
	}
	if got := traffic(v2); got.Requests != answered["v2"]+5 || got.Errors != 5 {
		t.Errorf("v2: %+v, want %d requests, 5 errors", got, answered["v2"]+5)
	}
	if got := traffic(v1); got.Requests != 40+answered["v1"] || got.Errors != 0 {
		t.Errorf("v1: %+v, want %d requests, no error", got, 40+answered["v1"])
	}

	// Before any of it: nothing.
	if got, err := h.d.Traffic(ctx, tgt, v1.SHA, from.Add(-time.Hour), from.Add(-time.Minute)); err != nil || got != (deploy.Traffic{}) {
		t.Errorf("an hour before: %+v %v, want zero", got, err)
	}

	// The same on Prometheus.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h.d.Collector())
	want := fmt.Sprintf(`# HELP shipbot_proxy_requests_total %s
# TYPE shipbot_proxy_requests_total counter
shipbot_proxy_requests_total{code="200",environment="staging",release="%s",repo="acme/web"} %d
shipbot_proxy_requests_total{code="200",environment="staging",release="%s",repo="acme/web"} %d
shipbot_proxy_requests_total{code="failed",environment="staging",release="%s",repo="acme/web"} 5
`, requestsHelp, v1.SHA, 40+answered["v1"], v2.SHA, answered["v2"], v2.SHA)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "shipbot_proxy_requests_total"); err != nil {
		t.Error(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, mf := range families {
		if mf.GetName() != "shipbot_proxy_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			counts[label(m, "release")] = m.GetHistogram().GetSampleCount()
			if b := m.GetHistogram().GetBucket(); len(b) != len(promBounds) {
				t.Errorf("%d buckets, want %d", len(b), len(promBounds))
			}
		}
	}
	if counts[v1.SHA] != uint64(40+answered["v1"]) || counts[v2.SHA] != uint64(answered["v2"]+5) || len(counts) != 2 {
		t.Errorf("duration histogram counts %v; want %d for v1, %d for v2", counts, 40+answered["v1"], answered["v2"]+5)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestTrafficOfNoEnvironment(t *testing.T) {
	h := newHarness(t, "", nil)
	ctx := context.Background()
	tgt := target(1)
	tgt.Environment.Name = "production"
	if got, err := h.d.Traffic(ctx, tgt, v1.SHA, time.Now().Add(-time.Hour), time.Now()); err != nil || got != (deploy.Traffic{}) {
		t.Errorf("an environment never deployed: %+v %v; want zero, no error", got, err)
	}
	if h.d.fleets[fleetKey{Repo: repo, Env: "production"}] != nil {
		t.Error("reading its traffic started a proxy for it")
	}
	if _, err := h.d.Traffic(ctx, deploy.Target{Repo: repo}, v1.SHA, time.Now(), time.Now()); err == nil {
		t.Error("a target without an environment: no error")
	}
}
