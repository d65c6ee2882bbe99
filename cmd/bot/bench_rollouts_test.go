package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
		l := startFixedLoad(url+"/", rate)
		var took time.Duration
		for n := 1; n <= rollouts; n++ {
			start := time.Now()
			f.push(b, "push-"+strconv.Itoa(n), shaN(n-1), shaN(n), "v"+strconv.Itoa(n), true)
			if d := f.finished(b, shaN(n)); d.LastState() != "success" {
				l.finish()
				b.Fatalf("rollout %d: statuses %v\n%s", n, states(d), f.bot.logs)
			}
			took += time.Since(start)
		}
		r := l.finish()
		b.StopTimer()

		b.Logf("iteration %d: %d rollouts, %d sent, %d ok, %d failed, longest gap %s (sender at most %s late), p99 %s, answers %v",
			i, rollouts, r.sent, r.ok, len(r.failures), r.maxGap.Round(time.Millisecond), r.lateness.Round(time.Millisecond), r.p99.Round(100*time.Microsecond), r.answers)
		if len(r.failures) > 0 {
			b.Errorf("%d requests failed through the proxy; the first:\n%s", len(r.failures), strings.Join(r.failures[:min(10, len(r.failures))], "\n"))
		}
		if want := "sample-app v" + strconv.Itoa(rollouts); r.last != want {
			b.Errorf("the last answer was %q, want %q", r.last, want)
		}
		b.ReportMetric(float64(len(r.failures)), "failed")
		b.ReportMetric(float64(r.maxGap)/float64(time.Millisecond), "max-gap-ms")
		b.ReportMetric(float64(r.lateness)/float64(time.Millisecond), "sender-late-ms")
		b.ReportMetric(float64(r.p99)/float64(time.Millisecond), "p99-ms")
		b.ReportMetric(float64(r.sent), "req")
		b.ReportMetric(took.Seconds()/rollouts, "rollout-s")
		b.ReportMetric(0, "ns/op")
	}
}

const zeroSHA = "0000000000000000000000000000000000000000"

// shaN is the commit of the n-th release: 40 hex digits.
func shaN(n int) string { return fmt.Sprintf("%040x", 0xbe00+n) }

// fixedLoad sends GETs to a URL at a fixed rate, each on its own goroutine
// so that a slow answer does not slow the rate, and records failures and
// the times of successes.
type fixedLoad struct {
	url      string
	client   *http.Client
	stop     chan struct{}
	done     chan struct{}
	sent     atomic.Int64
	lateness time.Duration // written by the sender goroutine only

	mu       sync.Mutex
	okAt     []time.Time
	took     []time.Duration
	failures []string
	answers  map[string]int // first line of the body, counted
	last     string         // first line of the latest successful answer
	lastAt   time.Time
}

func startFixedLoad(url string, perSecond int) *fixedLoad {
	l := &fixedLoad{
		url:     url,
		client:  &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		answers: map[string]int{},
	}
	l.okAt = append(l.okAt, time.Now()) // a gap counts from the start
	go l.send(time.Second / time.Duration(perSecond))
	return l
}

func (l *fixedLoad) send(every time.Duration) {
	defer close(l.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(every)
	defer tick.Stop()
	var prev time.Time
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		if !prev.IsZero() {
			l.lateness = max(l.lateness, now.Sub(prev)-every)
		}
		prev = now
		l.sent.Add(1)
		wg.Go(func() { l.one(now) })
	}
}

func (l *fixedLoad) one(sent time.Time) {
	resp, err := l.client.Get(l.url)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
		l.failures = append(l.failures, fmt.Sprintf("%s (sent %s): %v", now.Format("15:04:05.000"), sent.Format("15:04:05.000"), err))
		return
	case resp.StatusCode != 200:
		l.failures = append(l.failures, fmt.Sprintf("%s (sent %s): %d %q", now.Format("15:04:05.000"), sent.Format("15:04:05.000"), resp.StatusCode, body))
		return
	}
	l.okAt = append(l.okAt, now)
	l.took = append(l.took, now.Sub(sent))
	first, _, _ := strings.Cut(string(body), "\n")
	l.answers[first]++
	if sent.After(l.lastAt) {
		l.last, l.lastAt = first, sent
	}
}

type fixedLoadResult struct {
	sent, ok    int
	failures    []string
	maxGap, p99 time.Duration
	lateness    time.Duration
	answers     map[string]int
	last        string
}

// finish stops sending, waits for the requests in flight and sums up.
func (l *fixedLoad) finish() fixedLoadResult {
	close(l.stop)
	<-l.done
	end := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	at := append(slices.Clone(l.okAt), end)
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	var gap time.Duration
	for i := 1; i < len(at); i++ {
		gap = max(gap, at[i].Sub(at[i-1]))
	}
	took := slices.Clone(l.took)
	slices.Sort(took)
	var p99 time.Duration
	if len(took) > 0 {
		p99 = took[(len(took)-1)*99/100]
	}
	return fixedLoadResult{sent: int(l.sent.Load()), ok: len(l.okAt) - 1, failures: l.failures, maxGap: gap, p99: p99,
		lateness: l.lateness, answers: l.answers, last: l.last}
}
