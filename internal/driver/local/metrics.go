package local

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// promBounds are the upper bounds of the buckets of
// shipbot_proxy_request_duration_seconds: from a fast loopback answer to
// a slow page.
var promBounds = [...]time.Duration{
	1 * time.Millisecond,
	2500 * time.Microsecond,
	5 * time.Millisecond,
	10 * time.Millisecond,
	25 * time.Millisecond,
	50 * time.Millisecond,
	100 * time.Millisecond,
	250 * time.Millisecond,
	500 * time.Millisecond,
	1 * time.Second,
	2500 * time.Millisecond,
	5 * time.Second,
	10 * time.Second,
}

// promBucketOf is the first Prometheus bucket that holds d; len(promBounds)
// is +Inf.
func promBucketOf(d time.Duration) int {
	for i, le := range promBounds {
		if d <= le {
			return i
		}
	}
	return len(promBounds)
}

// Collector exposes what the proxies of the environments measured, as
// running totals since each release's figures were made (they are read on
// scrape; recording a request looks up no label):
//
//   - shipbot_proxy_requests_total{repo,environment,release,code}: requests
//     sent to the environment's instances, by the release (full SHA) of the
//     instance that answered, or of the last one tried when a request was
//     retried on another, and the code the client got: the status code
//     ("200", "503"), "failed" when the instance gave no answer (refused,
//     reset, timed out; the client got a 502) or "canceled" when the client
//     went away before the answer's headers.
//   - shipbot_proxy_request_duration_seconds{repo,environment,release}: the
//     time from the proxy sending a request to the answer's headers, or to
//     the failure.
//
// Requests the proxy answers itself (no instance in rotation) are in
// neither. Previews are measured but not exported. A release's series go
// away once no process runs it and it had no request for two hours (they
// start again from 0 if it comes back); a restart of the bot starts them
// all again from 0. The collector is not registered anywhere: the caller
// registers it.
func (d *Driver) Collector() prometheus.Collector {
	return &collector{
		d: d,
		requests: prometheus.NewDesc("shipbot_proxy_requests_total", requestsHelp,
			[]string{"repo", "environment", "release", "code"}, nil),
		duration: prometheus.NewDesc("shipbot_proxy_request_duration_seconds", durationHelp,
			[]string{"repo", "environment", "release"}, nil),
	}
}

const (
	requestsHelp = "Requests the local driver's proxy sent to an environment's instances, by the release of the instance that answered (the last one tried, if retried) and the code the client got: the status code, failed (no answer from the instance; the client got a 502) or canceled (the client went away first)."
	durationHelp = "Time from the local driver's proxy sending a request to an environment's instance to the answer's headers, or to the failure, by release."
)

type collector struct {
	d                  *Driver
	requests, duration *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.requests
	ch <- c.duration
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	var figs []releaseFigures
	if c.d.remote != nil {
		var err error
		if figs, err = c.d.remote.figures(); err != nil {
			c.d.log.Warn("the keeper's traffic figures cannot be read", "err", err)
			return
		}
	} else {
		figs = c.d.figures()
	}
	for _, f := range figs {
		for code, n := range f.Codes {
			ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(n), f.Repo, f.Env, f.Release, code)
		}
		if f.Count == 0 {
			continue
		}
		buckets := make(map[float64]uint64, len(f.Buckets))
		for i, n := range f.Buckets {
			buckets[promBounds[i].Seconds()] = n
		}
		ch <- prometheus.MustNewConstHistogram(c.duration, f.Count, f.Sum, buckets, f.Repo, f.Env, f.Release)
	}
}

// releaseFigures are the running totals of one release in one
// environment: what Collect exports, read where the proxies run (the
// keeper's, when the bot has one).
type releaseFigures struct {
	Repo, Env, Release string
	Codes              map[string]uint64 // by codeLabel
	Buckets            []uint64          // cumulative, by promBounds
	Count              uint64
	Sum                float64 // seconds
}

// figures are the running totals of every release of every environment.
func (d *Driver) figures() []releaseFigures {
	d.forgetIdleTraffic(time.Now())
	d.mu.Lock()
	fleets := make([]*fleet, 0, len(d.fleets))
	for k, f := range d.fleets {
		if k.PR == 0 {
			fleets = append(fleets, f)
		}
	}
	d.mu.Unlock()
	var out []releaseFigures
	for _, f := range fleets {
		f.mu.Lock()
		env := f.name
		f.mu.Unlock()
		if env == "" {
			env = f.key.Env
		}
		for _, rt := range f.proxy.traffic.list() {
			out = append(out, figuresOf(rt, f.key.Repo, env))
		}
	}
	return out
}

func figuresOf(rt *releaseTraffic, repo, env string) releaseFigures {
	f := releaseFigures{Repo: repo, Env: env, Release: rt.release, Codes: map[string]uint64{}}
	for code := range rt.codes {
		if n := rt.codes[code].Load(); n > 0 {
			f.Codes[codeLabel(code)] = n
		}
	}
	f.Buckets = make([]uint64, len(promBounds))
	for i := range promBounds {
		f.Count += rt.latency[i].Load()
		f.Buckets[i] = f.Count
	}
	f.Count += rt.latency[len(promBounds)].Load()
	f.Sum = time.Duration(rt.latencySum.Load()).Seconds()
	return f
}

func codeLabel(code int) string {
	switch code {
	case codeFailed:
		return "failed"
	case codeCanceled:
		return "canceled"
	}
	return strconv.Itoa(code)
}
