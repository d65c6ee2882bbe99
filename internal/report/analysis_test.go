package report

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/store/record"
)

func ptr[T any](v T) *T { return &v }

// judged is a batch's figures: requests and errors on the new release, its
// p99, and the baseline's.
func judged(req, errs int64, p99 time.Duration, judgedOK bool) *record.Analysis {
	return &record.Analysis{
		At: at(time.Minute), Since: t0, Judged: judgedOK, MinRequests: 20,
		Traffic:  &record.Traffic{Requests: req, Errors: errs, P99: p99},
		Baseline: &record.Traffic{Requests: 3 * req, Errors: 0, P99: 4 * time.Millisecond},
	}
}

// halted is a production rollout whose canary analysis broke a limit.
func halted(cause record.Reason, fig *record.Analysis) Deploy {
	return production(func(d *Deploy) {
		d.State, d.StartedAt, d.FinishedAt = StateFailure, t0, at(1*time.Minute+12*time.Second)
		d.Batches = fleet(BatchRolledBack)
		d.Batches[0].Analysis = fig
		cause.Release, cause.Previous = newSHA, oldSHA
		if cause.Kind == record.ReasonAlarmFiring || cause.Kind == record.ReasonSourceUnreadable {
			cause.Previous = ""
		}
		d.Reason = Reason(record.Reason{Kind: record.ReasonBatchFailed, Batch: 0, Canary: true, Cause: &cause,
			Then: []record.Reason{{Kind: record.ReasonRolledBack, Instances: ids(1, 1), Previous: oldSHA}}})
		d.RolledBack = ids(1, 1)
	})
}

// analysisScenarios are what GitHub shows of rollouts judged by their
// traffic (SPEC §6.8).
var analysisScenarios = []struct {
	name string
	d    Deploy
}{
	{"success", production(func(d *Deploy) {
		d.State, d.Done, d.StartedAt, d.FinishedAt = StateSuccess, 12, t0, at(4*time.Minute)
		d.Batches = fleet(BatchDone, BatchDone, BatchDone, BatchDone)
		for i := range d.Batches {
			d.Batches[i].Analysis = judged(int64(40*(i+1)), 0, 4200*time.Microsecond, true)
		}
	})},
	{"unjudged", production(func(d *Deploy) {
		d.State, d.Done, d.StartedAt, d.FinishedAt = StateSuccess, 12, t0, at(4*time.Minute)
		d.Batches = fleet(BatchDone, BatchDone, BatchDone, BatchDone)
		d.Batches[0].Analysis = judged(12, 0, 3*time.Millisecond, false)
		for i := 1; i < len(d.Batches); i++ {
			d.Batches[i].Analysis = judged(60, 0, 3*time.Millisecond, true)
		}
		d.Reason = Reason(record.Reason{Kind: record.ReasonDeployed, Release: newSHA, Of: 12, Env: "production",
			Then: []record.Reason{{Kind: record.ReasonNotJudged, Batch: 0, Canary: true, Release: newSHA, Count: 12, Want: 20}}})
	})},
	{"halted-error-rate", halted(record.Reason{Kind: record.ReasonErrorRateHigh, Value: 0.34, Baseline: ptr(0.002), Bound: 0.01, Count: 53},
		judged(53, 18, 5*time.Millisecond, true))},
	{"halted-latency", halted(record.Reason{Kind: record.ReasonLatencyHigh, Value: 0.5123, Baseline: ptr(0.0042), Bound: 0.3, Count: 48},
		judged(48, 0, 512300*time.Microsecond, true))},
	{"halted-prometheus", halted(record.Reason{Kind: record.ReasonCheckBroken, Text: "checkout errors", Value: 3.25, Baseline: ptr(0.0), Bound: 0.5},
		func() *record.Analysis {
			a := judged(50, 0, 4*time.Millisecond, true)
			a.Checks = []record.CheckFigure{{Name: "checkout errors", Value: ptr(3.25), Baseline: ptr(0.0)}}
			return a
		}())},
	{"halted-alarm", halted(record.Reason{Kind: record.ReasonAlarmFiring, Text: "web-5xx-rate", At: at(50 * time.Second),
		Err: "Threshold Crossed: 1 datapoint [12.0] was greater than the threshold (5.0)."},
		&record.Analysis{At: at(time.Minute), Since: t0, Judged: true,
			Alarms: []record.AlarmFigure{{Name: "web-5xx-rate", State: "ALARM"}, {Name: "web-p99", State: "OK"}}})},
	{"halted-unreadable", halted(record.Reason{Kind: record.ReasonSourceUnreadable, Setting: "analysis.prometheus", Text: "checkout errors",
		URL: "http://prometheus:9090", Count: 3, Err: `Post "http://prometheus:9090/api/v1/query": dial tcp 127.0.0.1:9090: connect: connection refused`},
		func() *record.Analysis {
			a := judged(50, 0, 4*time.Millisecond, true)
			a.Checks = []record.CheckFigure{{Name: "checkout errors", Err: "connection refused"}}
			return a
		}())},
}

func TestAnalysisGolden(t *testing.T) {
	for _, sc := range analysisScenarios {
		t.Run(sc.name, func(t *testing.T) {
			golden(t, filepath.Join("analysis", sc.name+".golden"), renderDeploy(sc.d))
		})
	}
}

func TestPercentAndLatency(t *testing.T) {
	for in, want := range map[float64]string{0: "0%", 0.34: "34%", 0.002: "0.2%", 0.01: "1%", 0.015: "1.5%", 0.0005: "0.05%", 1: "100%"} {
		if got := Percent(in); got != want {
			t.Errorf("Percent(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[time.Duration]string{0: "0ms", 4100 * time.Microsecond: "4.1ms", 812 * time.Millisecond: "812ms", 1250 * time.Millisecond: "1.25s", 2 * time.Second: "2s"} {
		if got := FormatLatency(in); got != want {
			t.Errorf("FormatLatency(%v) = %q, want %q", in, got, want)
		}
	}
}
