package main

import (
	"context"
	"io"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shipbot/shipbot/fixtures"
	"github.com/shipbot/shipbot/internal/store"
	"github.com/shipbot/shipbot/internal/store/record"
)

// benchAnalysisInterval is analysis.interval in the analysis benchmarks;
// bake is its default, three intervals.
const benchAnalysisInterval = 2 * time.Second

// benchAnalysisConfig is production on 2 instances (canary 1, then 1),
// judged every benchAnalysisInterval with min_requests 20, the default
// max_error_rate (1%) and a p99 limit of 100ms.
var benchAnalysisConfig = analysisConfig("", "    analysis:\n      interval: "+benchAnalysisInterval.String()+
	"\n      min_requests: 20\n      max_latency_p99: 100ms\n")

// answer is one request of answerLog's traffic: when its answer came and
// the release that gave it (the version in its body).
type answer struct {
	at      time.Time
	version string
	ok      bool
}

// answerLog sends GET url at a fixed rate, each request on its own
// goroutine, and keeps every answer.
type answerLog struct {
	mu      sync.Mutex
	answers []answer
	stop    chan struct{}
	done    chan struct{}
}

func startAnswerLog(url string, perSecond int) *answerLog {
	l := &answerLog{stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: 5 * time.Second}
	go func() {
		defer close(l.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				a := answer{}
				if resp, err := client.Get(url); err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					a.ok = resp.StatusCode == http.StatusOK
					a.version = bodyVersion(string(body))
				}
				a.at = time.Now()
				l.mu.Lock()
				l.answers = append(l.answers, a)
				l.mu.Unlock()
			}()
		}
	}()
	return l
}

// bodyVersion is the sample app's version in an answer: "sample-app v2"
// or "checkout failed: release v2 fails …".
func bodyVersion(body string) string {
	first, _, _ := strings.Cut(body, "\n")
	if v, ok := strings.CutPrefix(first, "sample-app "); ok {
		return v
	}
	if _, rest, ok := strings.Cut(first, "release "); ok {
		v, _, _ := strings.Cut(rest, " ")
		return v
	}
	return ""
}

// nth is when the n-th answer from version came, or the zero time.
func (l *answerLog) nth(version string, n int) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ats []time.Time
	for _, a := range l.answers {
		if a.version == version {
			ats = append(ats, a.at)
		}
	}
	slices.SortFunc(ats, time.Time.Compare)
	if len(ats) < n {
		return time.Time{}
	}
	return ats[n-1]
}

func (l *answerLog) finish() {
	close(l.stop)
	<-l.done
}

// deployRecord reads the deploy of a final deployment status from the
// bot's Redis: its id is the last element of the status's log_url.
func deployRecord(tb testing.TB, redisURL, logURL string) record.Deploy {
	tb.Helper()
	d, err := store.NewRedis(redisClient(tb, redisURL), "shipbot").GetDeploy(context.Background(), path.Base(logURL))
	if err != nil {
		tb.Fatalf("deploy of %s: %v", logURL, err)
	}
	return d
}

// startAnalysedProduction is a bot whose production (benchAnalysisConfig)
// runs a first, healthy release, with 10 req/s of traffic on it.
func startAnalysedProduction(b *testing.B) (*deployFixture, *answerLog) {
	b.Helper()
	f := newDeployFixture(b)
	f.config = benchAnalysisConfig
	f.pushRelease(b, 0, "v0", fixtures.Behaviour{})
	d := f.finished(b, releaseSHA(0))
	if d.LastState() != "success" {
		b.Fatalf("first deploy: %v\n%s", states(d), f.bot.logs)
	}
	return f, startAnswerLog(d.Statuses[len(d.Statuses)-1].EnvironmentURL+"/", 10)
}

// BenchmarkAnalysisDetection measures SPEC §11's "a canary whose release
// fails ≥ 30% of requests (healthz green) at 10 req/s: halted within 2
// analysis intervals after min_requests is reached". A real bot (real
// Redis, githubtest, the local driver and the sample app) runs production
// on 2 instances under 10 req/s; each iteration pushes a release that
// fails 30% of requests on purpose and waits for it to be halted.
//
// Metrics: detect-intervals (from the canary's min_requests-th answer to
// the judgement that halted it, in analysis intervals; target ≤ 2),
// worst-detect-s (the slowest of those, in seconds), from-first-s (from the
// canary's first answer to the halt) and canary-req (requests the canary
// had answered at the halting judgement).
//
//	go test -run '^$' -bench AnalysisDetection -benchtime 5x ./cmd/bot/
func BenchmarkAnalysisDetection(b *testing.B) {
	f, load := startAnalysedProduction(b)
	defer load.finish()
	time.Sleep(2 * benchAnalysisInterval) // a baseline before the first rollout

	var worst, total, totalFirst time.Duration
	var requests int64
	b.ResetTimer()
	for i := range b.N {
		version := "bad" + strconv.Itoa(i+1)
		f.pushRelease(b, i+1, version, fixtures.Behaviour{FailShare: 0.3})
		d := f.finished(b, releaseSHA(i+1))
		if d.LastState() != "failure" {
			b.Fatalf("%s: %v, want failure\n%s", version, states(d), f.bot.logs)
		}
		rec := deployRecord(b, f.redisURL, d.Statuses[len(d.Statuses)-1].LogURL)
		var halted *record.Analysis
		for _, bt := range rec.Batches {
			if bt.Failure != nil {
				halted = bt.Analysis
			}
		}
		if halted == nil || halted.Traffic == nil {
			b.Fatalf("%s failed without a judgement: %+v", version, rec.Batches)
		}
		reached := load.nth(version, halted.MinRequests)
		if reached.IsZero() {
			b.Fatalf("%s was halted before its %d-th answer: %+v", version, halted.MinRequests, halted)
		}
		took, fromFirst := halted.At.Sub(reached), halted.At.Sub(load.nth(version, 1))
		b.Logf("%s: halted %s after its %d-th answer, %s after its first (%d requests, %d errors; baseline %+v)", version, took.Round(time.Millisecond),
			halted.MinRequests, fromFirst.Round(time.Millisecond), halted.Traffic.Requests, halted.Traffic.Errors, halted.Baseline)
		worst = max(worst, took)
		total += took
		totalFirst += fromFirst
		requests += halted.Traffic.Requests
		// Production goes back to one release before the next push.
		time.Sleep(benchAnalysisInterval)
	}
	b.StopTimer()
	b.ReportMetric(float64(total)/float64(b.N)/float64(benchAnalysisInterval), "detect-intervals")
	b.ReportMetric(worst.Seconds(), "worst-detect-s")
	b.ReportMetric(totalFirst.Seconds()/float64(b.N), "from-first-s")
	b.ReportMetric(float64(requests)/float64(b.N), "canary-req")
	if worst > 2*benchAnalysisInterval {
		b.Errorf("a bad canary was halted %s after min_requests, over 2 intervals (%s)", worst, 2*benchAnalysisInterval)
	}
}

// BenchmarkAnalysisFalseHalts measures SPEC §11's "a good release under
// analysis: never halted, 0 false halts in 20 rollouts of a healthy release
// at 10 req/s", on the same production as BenchmarkAnalysisDetection
// (its p99 limit, 100ms, is what a slow moment of the machine could break).
//
// Metrics per iteration (20 rollouts): false-halts (target 0), judged (the
// judgements that had min_requests and so could have halted) and
// unjudged-batches.
//
//	go test -run '^$' -bench AnalysisFalseHalts -benchtime 1x ./cmd/bot/
func BenchmarkAnalysisFalseHalts(b *testing.B) {
	const rollouts = 20
	for range b.N {
		b.StopTimer()
		f, load := startAnalysedProduction(b)
		b.StartTimer()
		var halts, judged, unjudged int
		for n := 1; n <= rollouts; n++ {
			f.pushRelease(b, n, "v"+strconv.Itoa(n), fixtures.Behaviour{})
			d := f.finished(b, releaseSHA(n))
			final := d.Statuses[len(d.Statuses)-1]
			if d.LastState() != "success" {
				halts++
				b.Logf("rollout %d halted: %s", n, final.Description)
			}
			for _, bt := range deployRecord(b, f.redisURL, final.LogURL).Batches {
				switch {
				case bt.Analysis == nil || !bt.Analysis.Judged:
					unjudged++
				default:
					judged++
				}
			}
		}
		b.StopTimer()
		load.finish()
		b.Logf("%d rollouts: %d halted, %d batches judged, %d not judged", rollouts, halts, judged, unjudged)
		b.ReportMetric(float64(halts), "false-halts")
		b.ReportMetric(float64(judged), "judged-batches")
		b.ReportMetric(float64(unjudged), "unjudged-batches")
		if halts > 0 {
			b.Errorf("%d of %d rollouts of a healthy release were halted", halts, rollouts)
		}
	}
}
