package testenv

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Load sends GETs to a URL at a fixed rate, each on its own goroutine so
// that a slow answer does not lower the rate, and records failures and
// the times of successes: the client of SPEC §11's "no request fails and no
// gap over 1 s during rollouts".
type Load struct {
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
	slow     []string
	answers  map[string]int
	last     string
	lastAt   time.Time
}

// SlowAnswer is how long an answer may take before LoadResult.Slow lists it.
const SlowAnswer = 300 * time.Millisecond

// StartLoad starts sending perSecond GETs a second to url.
func StartLoad(url string, perSecond int) *Load {
	l := &Load{
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

func (l *Load) send(every time.Duration) {
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

func (l *Load) one(sent time.Time) {
	resp, err := l.client.Get(l.url)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	code := 0
	if resp != nil {
		code = resp.StatusCode
	}
	if now.Sub(sent) > SlowAnswer {
		l.slow = append(l.slow, fmt.Sprintf("sent %s took %s: %d %v", sent.Format("15:04:05.000"), now.Sub(sent).Round(time.Millisecond), code, err))
	}
	switch {
	case err != nil:
		l.failures = append(l.failures, fmt.Sprintf("%s (sent %s): %v", now.Format("15:04:05.000"), sent.Format("15:04:05.000"), err))
		return
	case code != http.StatusOK:
		l.failures = append(l.failures, fmt.Sprintf("%s (sent %s): %d %q", now.Format("15:04:05.000"), sent.Format("15:04:05.000"), code, body))
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

// LoadResult is what a Load saw.
type LoadResult struct {
	Sent, OK int
	Failures []string // requests that got an error or a status other than 200
	Slow     []string // answers that took longer than SlowAnswer
	// MaxGap is the longest time between two successes (from the start to
	// the end of the load included).
	MaxGap time.Duration
	P99    time.Duration // of successful requests
	// Lateness is the longest the sender itself ran behind its schedule:
	// when it is large the machine, not the server, made a gap.
	Lateness time.Duration
	Answers  map[string]int // first line of the body, counted
	Last     string         // first line of the answer to the latest request sent
}

// Finish stops sending, waits for the requests in flight and sums up.
func (l *Load) Finish() LoadResult {
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
	return LoadResult{Sent: int(l.sent.Load()), OK: len(l.okAt) - 1, Failures: l.failures, Slow: l.slow, MaxGap: gap, P99: p99,
		Lateness: l.lateness, Answers: l.answers, Last: l.last}
}
