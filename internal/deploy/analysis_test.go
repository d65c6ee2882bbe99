package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shipbot/shipbot/internal/repoconfig"
)

// behaviour is how one release answers real traffic in meteredFleet.
type behaviour struct {
	errorShare float64
	p99        time.Duration
	// outlier: the p99 is one slow request; the others answer as fast as
	// the previous release's.
	outlier bool
}

// meteredFleet is a fakeFleet whose instances take perInstance requests a
// second each while in rotation, answered as their release behaves: the
// figures a TrafficMeter would read. It also answers Prometheus queries
// and alarms, from what the test sets.
type meteredFleet struct {
	*fakeFleet
	perInstance float64
	now         func() time.Time

	mu       sync.Mutex
	behave   map[string]behaviour // by release
	before   behaviour            // the previous release before the rollout started (the window before it)
	start    time.Time
	reads    int
	queries  map[string]float64 // by query text
	queryErr error
	alarms   []Alarm
	alarmErr error
}

func newMetered(f *fakeFleet, perInstance float64, behave map[string]behaviour) *meteredFleet {
	return &meteredFleet{fakeFleet: f, perInstance: perInstance, now: time.Now, behave: behave, queries: map[string]float64{}}
}

func (m *meteredFleet) Traffic(ctx context.Context, t Target, release string, from, to time.Time) (Traffic, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	b := m.behave[release]
	n := 0
	if !to.After(m.start) && release == prevSHA {
		// The window before the rollout: the whole fleet served the previous release.
		n, b = len(m.fakeFleet.order), m.before
	} else {
		for _, inst := range m.fakeFleet.state() {
			if inst.Release == release && inst.InRotation {
				n++
			}
		}
	}
	req := int64(m.perInstance * float64(n) * to.Sub(from).Seconds())
	if req == 0 {
		return Traffic{}, nil
	}
	p99, second := b.p99, b.p99
	if b.outlier {
		// One slow request: the p99 only while it is the slowest rank.
		second = m.behave[prevSHA].p99
		if req >= 100 {
			p99 = second
		}
	}
	return Traffic{Requests: req, Errors: int64(float64(req) * b.errorShare), P99: p99, SecondSlowest: second}, nil
}

func (m *meteredFleet) Query(ctx context.Context, url, query string, at time.Time) (float64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.queryErr != nil {
		return 0, m.queryErr
	}
	v, ok := m.queries[query]
	if !ok {
		return 0, fmt.Errorf("query returned no data: %s", query)
	}
	return v, nil
}

func (m *meteredFleet) Alarms(ctx context.Context, t Target, names []string) ([]Alarm, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.alarmErr != nil {
		return nil, m.alarmErr
	}
	return append([]Alarm(nil), m.alarms...), nil
}

func analysisEnv(a *repoconfig.Analysis, bake time.Duration) *repoconfig.Environment {
	env := testEnvironment(repoconfig.Rollout{Canary: 1, Batch: count(2), MaxUnavailable: count(2), Bake: bake})
	env.Analysis = a
	return env
}

func limits() *repoconfig.Analysis {
	return &repoconfig.Analysis{Interval: 10 * time.Second, MinRequests: 20, MaxErrorRate: 0.01, MaxLatencyP99: 300 * time.Millisecond}
}

// analyse runs a rollout of newRelease over 5 instances on prevSHA under
// analysis, with the fleet's traffic as behave says.
func analyse(t *testing.T, a *repoconfig.Analysis, behave map[string]behaviour, setup func(*meteredFleet, *ExecInput)) (Result, []Event, *meteredFleet) {
	t.Helper()
	m := newMetered(newFakeFleet(t.Errorf, 2, production(5)...), 5, behave)
	m.before = behave[prevSHA]
	in := testInput(analysisEnv(a, 3*a.Interval), m, prevSHA)
	in.Querier = m
	var events []Event
	in.Report = func(ev Event) { events = append(events, ev) }
	m.start = time.Now()
	if setup != nil {
		setup(m, &in)
	}
	res := Execute(context.Background(), in)
	return res, events, m
}

func judgements(events []Event) []Event {
	var out []Event
	for _, ev := range events {
		if ev.Kind == Judged {
			out = append(out, ev)
		}
	}
	return out
}

// TestAnalysisHaltsABadCanary: a release failing 40% of its requests with
// a healthy /healthz is halted in its canary batch at the first judgement
// after min_requests, and rolled back; the reason names both error rates
// and the limit.
func TestAnalysisHaltsABadCanary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res, events, m := analyse(t, limits(), map[string]behaviour{
			prevSHA: {errorShare: 0.005, p99: 4 * time.Millisecond}, newRelease: {errorShare: 0.4, p99: 5 * time.Millisecond},
		}, nil)
		if res.Outcome != OutcomeFailure {
			t.Fatalf("%s: %s", res.Outcome, said(res))
		}
		want := "batch 1 (the canary): error rate 40% on abc1234 vs 0.5% on 9f8e7d6 (limit 1%); rolled back production-1 to 9f8e7d6"
		if got := said(res); got != want {
			t.Fatalf("reason:\n got %s\nwant %s", got, want)
		}
		if j := judgements(events); len(j) != 1 || j[0].Batch != 0 || j[0].At.Sub(res.Started) > 30*time.Second {
			t.Fatalf("want one judgement of the canary, at its first interval; got %d", len(j))
		}
		if b := res.Batches[0]; b.Analysis == nil || b.Analysis.Traffic.Requests < 20 || !b.Analysis.Judged {
			t.Fatalf("the canary's figures were not kept: %+v", b.Analysis)
		}
		for id, inst := range m.state() {
			if inst.Release != prevSHA || !inst.InRotation {
				t.Errorf("%s is on %s (in rotation %t) after the halt", id, short(inst.Release), inst.InRotation)
			}
		}
	})
}

// TestAnalysisPassesAGoodRelease: a healthy release under the same
// analysis goes through every batch, each judged at every interval.
func TestAnalysisPassesAGoodRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res, events, _ := analyse(t, limits(), map[string]behaviour{
			prevSHA: {errorShare: 0.002, p99: 4 * time.Millisecond}, newRelease: {errorShare: 0.002, p99: 4 * time.Millisecond},
		}, nil)
		if res.Outcome != OutcomeSuccess {
			t.Fatalf("%s: %s", res.Outcome, said(res))
		}
		// 3 batches (1, 2, 2), each baking 3 intervals: 3 judgements each.
		if j := judgements(events); len(j) != 9 {
			t.Fatalf("%d judgements, want 9", len(j))
		}
		for _, b := range res.Batches {
			if b.Analysis == nil || !b.Analysis.Judged || b.Analysis.Baseline == nil {
				t.Fatalf("batch %d: %+v", b.Index+1, b.Analysis)
			}
		}
		// The last batch has no instance left on the previous release: its
		// baseline is the window before the rollout.
		last := res.Batches[len(res.Batches)-1].Analysis
		if last.Baseline.Requests != int64(5*5*last.At.Sub(last.Since).Seconds()) {
			t.Errorf("last batch's baseline %d requests, want the whole fleet's before the rollout", last.Baseline.Requests)
		}
	})
}

// TestAnalysisBaselineRule: when the previous release fails as much as the
// new one (an outage elsewhere), no limit is broken.
func TestAnalysisBaselineRule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res, _, _ := analyse(t, limits(), map[string]behaviour{
			prevSHA: {errorShare: 0.4, p99: 4 * time.Millisecond}, newRelease: {errorShare: 0.4, p99: 4 * time.Millisecond},
		}, nil)
		if res.Outcome != OutcomeSuccess {
			t.Fatalf("%s: %s", res.Outcome, said(res))
		}
	})
}

// TestAnalysisLatency: a release 500ms slower than a 300ms limit is halted
// by its p99.
func TestAnalysisLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res, _, _ := analyse(t, limits(), map[string]behaviour{
			prevSHA: {p99: 4 * time.Millisecond}, newRelease: {p99: 504 * time.Millisecond},
		}, nil)
		want := "batch 1 (the canary): p99 latency 504ms on abc1234 vs 4ms on 9f8e7d6 (limit 300ms)"
		if res.Outcome != OutcomeFailure || !strings.HasPrefix(said(res), want) {
			t.Fatalf("%s: %s\nwant %s…", res.Outcome, said(res), want)
		}
	})
}

// TestAnalysisOneSlowRequest: below 100 requests the p99 is the slowest
// request; when it alone is over the limit (a cold start), the batch is not
// halted for it. A release as slow as its p99 says is, and a lone outlier
// in 100 requests or more (where the p99 is not the slowest) is judged by
// the p99.
func TestAnalysisOneSlowRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := limits()
		a.Interval = 2 * time.Second // 10-20 requests a judgement, never 100
		res, _, _ := analyse(t, a, map[string]behaviour{
			prevSHA: {p99: 4 * time.Millisecond}, newRelease: {p99: 900 * time.Millisecond, outlier: true},
		}, nil)
		if res.Outcome != OutcomeSuccess {
			t.Fatalf("one slow request halted the rollout: %s: %s", res.Outcome, said(res))
		}
		res, _, _ = analyse(t, a, map[string]behaviour{
			prevSHA: {p99: 4 * time.Millisecond}, newRelease: {p99: 900 * time.Millisecond},
		}, nil)
		if res.Outcome != OutcomeFailure || !strings.Contains(said(res), "p99 latency 900ms") {
			t.Fatalf("a slow release: %s: %s", res.Outcome, said(res))
		}
	})
	for _, tc := range []struct {
		tr   Traffic
		want bool
	}{
		{Traffic{Requests: 40, P99: time.Second, SecondSlowest: 10 * time.Millisecond}, true},
		{Traffic{Requests: 40, P99: time.Second, SecondSlowest: 400 * time.Millisecond}, false},
		{Traffic{Requests: 100, P99: time.Second, SecondSlowest: 10 * time.Millisecond}, false},
	} {
		if got := oneOutlier(tc.tr, 300*time.Millisecond); got != tc.want {
			t.Errorf("oneOutlier(%+v) = %t, want %t", tc.tr, got, tc.want)
		}
	}
}

// TestAnalysisTooFewRequests: below min_requests the batch is not judged
// (a failing release goes through), and the result says so.
func TestAnalysisTooFewRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := limits()
		a.MinRequests = 1000
		res, _, _ := analyse(t, a, map[string]behaviour{newRelease: {errorShare: 0.4}}, nil)
		if res.Outcome != OutcomeSuccess {
			t.Fatalf("%s: %s", res.Outcome, said(res))
		}
		if !strings.Contains(said(res), "batch 1 (the canary) was not judged: 150 requests on abc1234, fewer than min_requests 1000") {
			t.Fatalf("the result does not say the canary was not judged: %s", said(res))
		}
	})
}

// TestAnalysisPrometheus: a check over the new release's query breaks its
// max only when the previous release's value is lower; an unreadable
// Prometheus is retried, and halts at the third failure in a row.
func TestAnalysisPrometheus(t *testing.T) {
	check := func(max float64) *repoconfig.Analysis {
		a := limits()
		a.Prometheus = &repoconfig.Prometheus{URL: "http://prometheus.test:9090", Checks: []repoconfig.PrometheusCheck{{
			Name: "checkout errors", Query: `sum(rate(checkout_errors_total{release="{{.SHA}}",env="{{.Environment}}"}[1m]))`, Max: &max,
		}}}
		return a
	}
	q := func(sha string) string {
		return `sum(rate(checkout_errors_total{release="` + sha + `",env="production"}[1m]))`
	}
	ok := map[string]behaviour{}
	t.Run("rising", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			res, _, _ := analyse(t, check(0.5), ok, func(m *meteredFleet, _ *ExecInput) {
				m.queries[q(newRelease)], m.queries[q(prevSHA)] = 3.25, 0
			})
			want := `batch 1 (the canary): Prometheus check "checkout errors" 3.25 on abc1234 vs 0 on 9f8e7d6 (max 0.5)`
			if res.Outcome != OutcomeFailure || !strings.HasPrefix(said(res), want) {
				t.Fatalf("%s: %s\nwant %s…", res.Outcome, said(res), want)
			}
		})
	})
	t.Run("flat", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			res, _, _ := analyse(t, check(0.5), ok, func(m *meteredFleet, _ *ExecInput) {
				m.queries[q(newRelease)], m.queries[q(prevSHA)] = 0, 0
			})
			if res.Outcome != OutcomeSuccess {
				t.Fatalf("%s: %s", res.Outcome, said(res))
			}
			if v := res.Batches[0].Analysis.Checks[0].Value; v == nil || *v != 0 {
				t.Fatalf("the check's value was not kept: %+v", res.Batches[0].Analysis.Checks)
			}
		})
	})
	t.Run("unreachable", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			res, events, _ := analyse(t, check(0.5), ok, func(m *meteredFleet, _ *ExecInput) {
				m.queryErr = errors.New(`Post "http://prometheus.test:9090/api/v1/query": connection refused`)
			})
			want := `batch 1 (the canary): could not read Prometheus check "checkout errors" at http://prometheus.test:9090 3 times in a row`
			if res.Outcome != OutcomeFailure || !strings.HasPrefix(said(res), want) {
				t.Fatalf("%s: %s\nwant %s…", res.Outcome, said(res), want)
			}
			if j := judgements(events); len(j) != 3 {
				t.Fatalf("halted after %d reads, want 3", len(j))
			}
		})
	})
	t.Run("one failure is retried", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			m := newMetered(newFakeFleet(t.Errorf, 2, production(5)...), 5, ok)
			m.queries[q(newRelease)], m.queries[q(prevSHA)] = 0, 0
			fails := 0
			flaky := querierFunc(func(ctx context.Context, url, query string, at time.Time) (float64, error) {
				if fails < 2 {
					fails++
					return 0, errors.New("timeout")
				}
				return m.Query(ctx, url, query, at)
			})
			in := testInput(analysisEnv(check(0.5), 30*time.Second), m, prevSHA)
			in.Querier = flaky
			if res := Execute(context.Background(), in); res.Outcome != OutcomeSuccess {
				t.Fatalf("%s: %s", res.Outcome, said(res))
			}
		})
	})
}

type querierFunc func(ctx context.Context, url, query string, at time.Time) (float64, error)

func (f querierFunc) Query(ctx context.Context, url, query string, at time.Time) (float64, error) {
	return f(ctx, url, query, at)
}

// TestAnalysisAlarms: an alarm that goes into ALARM during the rollout
// halts it; one in ALARM since before it began is an outage the previous
// release shared, shown and not held against the new one.
func TestAnalysisAlarms(t *testing.T) {
	env := func() *repoconfig.Analysis { return limits() }
	for _, tc := range []struct {
		name  string
		since time.Duration // relative to the rollout's start
		fail  bool
	}{{"during", time.Second, true}, {"before", -time.Hour, false}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				m := newMetered(newFakeFleet(t.Errorf, 2, production(5)...), 5, map[string]behaviour{})
				e := analysisEnv(env(), 30*time.Second)
				e.AWS = &repoconfig.AWSFleet{Region: "us-east-1", Alarms: []string{"web-5xx-rate", "web-p99"}}
				in := testInput(e, m, prevSHA)
				start := time.Now()
				m.alarms = []Alarm{{Name: "web-5xx-rate", State: AlarmFiring, Since: start.Add(tc.since), Reason: "Threshold Crossed"}, {Name: "web-p99", State: AlarmOK}}
				res := Execute(context.Background(), in)
				if tc.fail {
					if res.Outcome != OutcomeFailure || !strings.Contains(said(res), "CloudWatch alarm web-5xx-rate went into ALARM") {
						t.Fatalf("%s: %s", res.Outcome, said(res))
					}
					return
				}
				if res.Outcome != OutcomeSuccess {
					t.Fatalf("%s: %s", res.Outcome, said(res))
				}
				if a := res.Batches[0].Analysis.Alarms; len(a) != 2 || a[0].State != AlarmFiring {
					t.Fatalf("alarms not shown: %+v", a)
				}
			})
		})
	}
}

// TestAnalysisSkippedOnRollback: a /rollback (SkipBake) neither bakes nor
// judges.
func TestAnalysisSkippedOnRollback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res, events, m := analyse(t, limits(), map[string]behaviour{newRelease: {errorShare: 0.9}}, func(_ *meteredFleet, in *ExecInput) { in.SkipBake = true })
		if res.Outcome != OutcomeSuccess || len(judgements(events)) != 0 || m.reads != 0 {
			t.Fatalf("%s: %s; %d judgements, %d reads", res.Outcome, said(res), len(judgements(events)), m.reads)
		}
		for _, b := range res.Batches {
			if b.Bake != 0 {
				t.Fatalf("batch %d baked %s", b.Index+1, b.Bake)
			}
		}
	})
}

// TestAnalysisWithoutMeter: a driver that does not measure traffic is
// judged by its Prometheus checks alone; error rate and p99 are skipped.
func TestAnalysisWithoutMeter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeFleet(t.Errorf, 2, production(5)...)
		in := testInput(analysisEnv(limits(), 30*time.Second), f, prevSHA)
		var events []Event
		in.Report = func(ev Event) { events = append(events, ev) }
		res := Execute(context.Background(), in)
		if res.Outcome != OutcomeSuccess {
			t.Fatalf("%s: %s", res.Outcome, said(res))
		}
		j := judgements(events)
		if len(j) == 0 || j[0].Analysis.Traffic != nil || !j[0].Analysis.Judged {
			t.Fatalf("judgements without a meter: %+v", j)
		}
	})
}
