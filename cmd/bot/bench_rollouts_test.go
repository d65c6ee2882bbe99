package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/testenv"
)

// BenchmarkRolloutsUnderLoad measures SPEC §11's "requests failed through
// the local driver's proxy during 20 back-to-back rollouts under fixed-rate
// load": a real `bot serve` (real Redis, githubtest validating every GitHub
// call, the local driver building and running the sample app) gets 20
// pushes to main one after the other, each pushed once the previous
// deployment is final; production has 4 instances (rolloutConfig: canary 1,
// then one at a time, healthy_after 1 every 100ms, no bake). Meanwhile a
// client sends GET / to production's proxy URL at a fixed rate (200 req/s,
// each request on its own goroutine, so a slow answer does not lower the
// rate), from before the first of the 20 pushes to after the last
// deployment is final: builds, rollouts and the gaps between them.
//
// Metrics per iteration (one iteration = 20 rollouts): failed (requests that
// got an error or a status other than 200; SPEC §11: 0, and the benchmark
// fails otherwise), max-gap-ms (the longest time between two successful
// answers; SPEC §11: ≤ 1000), sender-late-ms (the longest the load sender
// itself ran behind its schedule: when this is large the machine, not the
// bot, made the gap), p99-ms (of successful requests), req (sent) and
// rollout-s (the mean push → final deployment status, build included).
//
//	go test -run '^$' -bench RolloutsUnderLoad -benchtime 1x ./cmd/bot/
func BenchmarkRolloutsUnderLoad(b *testing.B) {
	const rollouts, rate = 20, 200
	if testing.Short() {
		b.Skip("builds and runs the sample app")
	}
	for i := range b.N {
		b.StopTimer()
		f := newDeployFixture(b)
		f.config = rolloutConfig("0s")
		f.push(b, "push-0", zeroSHA, shaN(0), "v0", true)
		d := f.finished(b, shaN(0))
		if d.LastState() != "success" {
			b.Fatalf("first deploy: statuses %v\n%s", states(d), f.bot.logs)
		}
		url := d.Statuses[len(d.Statuses)-1].EnvironmentURL
		if url == "" {
			b.Fatalf("no environment_url on the first deployment\n%s", f.bot.logs)
		}

		b.StartTimer()
		l := testenv.StartLoad(url+"/", rate)
		var took time.Duration
		for n := 1; n <= rollouts; n++ {
			start := time.Now()
			f.push(b, "push-"+strconv.Itoa(n), shaN(n-1), shaN(n), "v"+strconv.Itoa(n), true)
			if d := f.finished(b, shaN(n)); d.LastState() != "success" {
				l.Finish()
				b.Fatalf("rollout %d: statuses %v\n%s", n, states(d), f.bot.logs)
			}
			took += time.Since(start)
		}
		r := l.Finish()
		b.StopTimer()

		b.Logf("iteration %d: %d rollouts, %d sent, %d ok, %d failed, longest gap %s (sender at most %s late), p99 %s, answers %v",
			i, rollouts, r.Sent, r.OK, len(r.Failures), r.MaxGap.Round(time.Millisecond), r.Lateness.Round(time.Millisecond), r.P99.Round(100*time.Microsecond), r.Answers)
		if len(r.Failures) > 0 {
			b.Errorf("%d requests failed through the proxy; the first:\n%s", len(r.Failures), strings.Join(r.Failures[:min(10, len(r.Failures))], "\n"))
		}
		if want := "sample-app v" + strconv.Itoa(rollouts); r.Last != want {
			b.Errorf("the last answer was %q, want %q", r.Last, want)
		}
		b.ReportMetric(float64(len(r.Failures)), "failed")
		b.ReportMetric(float64(r.MaxGap)/float64(time.Millisecond), "max-gap-ms")
		b.ReportMetric(float64(r.Lateness)/float64(time.Millisecond), "sender-late-ms")
		b.ReportMetric(float64(r.P99)/float64(time.Millisecond), "p99-ms")
		b.ReportMetric(float64(r.Sent), "req")
		b.ReportMetric(took.Seconds()/rollouts, "rollout-s")
		b.ReportMetric(0, "ns/op")
	}
}

const zeroSHA = "0000000000000000000000000000000000000000"

// shaN is the commit of the n-th release: 40 hex digits.
func shaN(n int) string { return fmt.Sprintf("%040x", 0xbe00+n) }
