package report

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/shipbot/shipbot/internal/store/record"
)

// The analysis's reasons (SPEC §6.8), phrased: a broken limit names the
// metric, both releases' values and the limit. phrasings lists them.

func errorRateHigh(r record.Reason, _ string) string {
	return "error rate " + Percent(r.Value) + " on " + Short(r.Release) + versus(r, Percent) + " (limit " + Percent(r.Bound) + ")"
}

func latencyHigh(r record.Reason, _ string) string {
	return "p99 latency " + Seconds(r.Value) + " on " + Short(r.Release) + versus(r, Seconds) + " (limit " + Seconds(r.Bound) + ")"
}

func checkBroken(r record.Reason, _ string) string {
	bound := "max"
	if r.Below {
		bound = "min"
	}
	return "Prometheus check " + strconv.Quote(r.Text) + " " + Number(r.Value) + " on " + Short(r.Release) + versus(r, Number) +
		" (" + bound + " " + Number(r.Bound) + ")"
}

func alarmFiring(r record.Reason, _ string) string {
	s := "CloudWatch alarm " + r.Text + " went into ALARM"
	if !r.At.IsZero() {
		s += " at " + r.At.UTC().Format("15:04:05 UTC")
	}
	s += " while " + Short(r.Release) + " was baking"
	if r.Err != "" {
		s += ": " + strings.TrimSuffix(oneLine(r.Err), ".")
	}
	return s
}

func sourceUnreadable(r record.Reason, _ string) string {
	var what string
	switch r.Setting {
	case "analysis.prometheus":
		what = "Prometheus check " + strconv.Quote(r.Text)
		if r.URL != "" {
			what += " at " + r.URL
		}
	case "aws.alarms":
		what = "CloudWatch alarms " + r.Text
	default:
		what = "the traffic figures of " + Short(r.Release)
	}
	return fmt.Sprintf("could not read %s %s in a row (%s): halted rather than go on unjudged; fix the source or remove it from %s",
		what, plural(r.Count, "time", "times"), oneLine(r.Err), r.Setting)
}

func notJudged(r record.Reason, _ string) string {
	return fmt.Sprintf("%s was not judged: %s on %s, fewer than min_requests %d", batchLabel(r), plural(r.Count, "request", "requests"), Short(r.Release), r.Want)
}

func judgedLine(r record.Reason, _ string) string {
	return fmt.Sprintf("%s: %s on %s, error rate %s, p99 %s", batchLabel(r), plural(r.Count, "request", "requests"), Short(r.Release), Percent(r.Value), FormatLatency(r.Duration))
}

// versus is " vs <baseline> on <previous>", or why there is none.
func versus(r record.Reason, say func(float64) string) string {
	switch {
	case r.Baseline != nil:
		return " vs " + say(*r.Baseline) + " on " + Short(r.Previous)
	case r.Previous == "":
		return ", with no earlier release to compare with"
	default:
		return ", with no traffic on " + Short(r.Previous) + " to compare with"
	}
}

// Percent says a share (0 to 1) as a percentage: "34%", "1.5%", "0.2%".
func Percent(share float64) string {
	v := share * 100
	switch {
	case v == 0:
		return "0%"
	case v >= 10:
		return fmt.Sprintf("%.0f%%", v)
	case v >= 1:
		return trimZero(fmt.Sprintf("%.1f", v)) + "%"
	default:
		return trimZero(fmt.Sprintf("%.2f", v)) + "%"
	}
}

// Seconds says a latency given in seconds.
func Seconds(s float64) string { return FormatLatency(time.Duration(s * float64(time.Second))) }

// FormatLatency says a latency: "4.1ms", "812ms", "1.25s".
func FormatLatency(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case d <= 0:
		return "0ms"
	case ms < 10:
		return trimZero(fmt.Sprintf("%.1f", ms)) + "ms"
	case ms < 1000:
		return fmt.Sprintf("%.0fms", ms)
	default:
		return trimZero(fmt.Sprintf("%.2f", ms/1000)) + "s"
	}
}

// Number says a query's value: up to 4 significant digits.
func Number(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 0):
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

func trimZero(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// Figures says one judgement of a batch in a line, for the check run's
// batch table and the deploy page: the new release's requests, error rate
// and p99 (or that there were too few to judge), each Prometheus check's
// value and each alarm's state.
func Figures(a *record.Analysis) string {
	if a == nil {
		return ""
	}
	var parts []string
	if t := a.Traffic; t != nil {
		s := plural(int(t.Requests), "request", "requests")
		if t.Requests > 0 {
			s += ", " + Percent(t.ErrorRate()) + " errors, p99 " + FormatLatency(t.P99)
		}
		if !a.Judged {
			s += fmt.Sprintf(" (not judged: fewer than %d)", a.MinRequests)
		}
		parts = append(parts, s)
	}
	for _, c := range a.Checks {
		switch {
		case c.Value != nil:
			parts = append(parts, c.Name+" "+Number(*c.Value))
		default:
			parts = append(parts, c.Name+" unreadable")
		}
	}
	for _, al := range a.Alarms {
		st := al.State
		if st == "" {
			st = "unreadable"
		}
		parts = append(parts, al.Name+" "+st)
	}
	return strings.Join(parts, "; ")
}
