package main

import (
	"os"
	"strconv"
	"testing"
)

// BenchmarkChaos is TestChaos's long run (issue #15): 20 rollouts (or
// SHIPBOT_CHAOS_ROUNDS) on real Redis with two workers and two webs, each
// with one or two faults drawn from Redis restarted, Redis down while the
// push is delivered, a worker SIGKILLed, and GitHub answering 502 or
// dropping the answer of a write it applied (deployments, deployment
// statuses, check runs created and updated). The invariants of runChaos
// are checked after every rollout; the benchmark fails on any violation.
//
// Metrics per iteration: rounds, violations (0), each fault kind's count,
// github-faults-served (GitHub answers a fault replaced), success, failure
// and error (how the rounds ended) and wall-s (the rounds, without the
// build of the bot).
//
//	go test -run '^$' -bench Chaos -benchtime 1x -timeout 30m ./cmd/bot/
func BenchmarkChaos(b *testing.B) {
	rounds := 20
	if s := os.Getenv("SHIPBOT_CHAOS_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("SHIPBOT_CHAOS_ROUNDS=%q is not a positive number", s)
		}
		rounds = n
	}
	for range b.N {
		rep := runChaos(b, rounds)
		for _, v := range rep.violations {
			b.Error(v)
		}
		b.ReportMetric(float64(rep.rounds), "rounds")
		b.ReportMetric(float64(len(rep.violations)), "violations")
		for _, k := range chaosKinds {
			b.ReportMetric(float64(rep.faults[k]), k)
		}
		b.ReportMetric(float64(rep.served), "github-faults-served")
		for _, o := range []string{"success", "failure", "error"} {
			b.ReportMetric(float64(rep.outcomes[o]), o)
		}
		b.ReportMetric(rep.wall.Seconds(), "wall-s")
		b.ReportMetric(0, "ns/op")
	}
}
