package local

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkProxy measures the proxy in front of one sample-app instance:
//
//   - throughput: requests per second through the proxy from 8×GOMAXPROCS
//     parallel clients (client, proxy and app share the machine);
//   - latency: each iteration sends one GET through the proxy and one
//     straight to the instance, one after the other; the p50 and p99 of
//     each and the difference (what the proxy adds) are reported.
func BenchmarkProxy(b *testing.B) {
	h := newHarness(b, "", nil)
	tgt := target(1)
	h.prepare(tgt, v1)
	h.rollout(tgt, v1)
	proxied := h.d.URL(repo, "staging") + "/"
	f := h.d.fleets[fleetKey{Repo: repo, Env: "staging"}]
	f.mu.Lock()
	direct := "http://" + f.slots["staging-1"].proc.backend.addr + "/"
	f.mu.Unlock()

	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxIdleConns: 256}}
	do := func(u string) error {
		resp, err := c.Get(u)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(string(body), "sample-app v1") {
			return fmt.Errorf("%d %q %v", resp.StatusCode, body, err)
		}
		return nil
	}

	b.Run("throughput", func(b *testing.B) {
		b.SetParallelism(8)
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := do(proxied); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	})

	b.Run("latency", func(b *testing.B) {
		via := make([]time.Duration, 0, b.N)
		straight := make([]time.Duration, 0, b.N)
		for range b.N {
			t0 := time.Now()
			if err := do(proxied); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if err := do(direct); err != nil {
				b.Fatal(err)
			}
			via, straight = append(via, t1.Sub(t0)), append(straight, time.Since(t1))
		}
		slices.Sort(via)
		slices.Sort(straight)
		pct := func(d []time.Duration, p float64) float64 {
			return float64(d[int(float64(len(d)-1)*p)].Nanoseconds()) / 1e3
		}
		b.ReportMetric(pct(via, 0.5), "p50-proxy-µs")
		b.ReportMetric(pct(straight, 0.5), "p50-direct-µs")
		b.ReportMetric(pct(via, 0.99), "p99-proxy-µs")
		b.ReportMetric(pct(straight, 0.99), "p99-direct-µs")
		b.ReportMetric(pct(via, 0.99)-pct(straight, 0.99), "p99-added-µs")
	})
}
