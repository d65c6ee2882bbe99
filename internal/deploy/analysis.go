package deploy

import (
	"context"
	"errors"
	"math"
	"strings"
	"time"

	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/store/record"
)

// Traffic is what one release of an environment answered over a window,
// as a TrafficMeter measured it (SPEC §6.8).
type Traffic struct {
	Requests int64         // requests sent to the release's instances, answered or not
	Errors   int64         // of Requests, 5xx answers and failed requests (no answer, reset, timeout)
	P99      time.Duration // the 99th percentile time to the answer's headers; 0 with no requests
	// SecondSlowest is the second slowest request's time to its headers;
	// 0 with fewer than 2 requests. Below 100 requests the p99 is the
	// slowest request itself, and one slow request (a cold start, a
	// stalled scheduler) is an outlier: p99 then breaks its limit only
	// when this does too.
	SecondSlowest time.Duration
}

// ErrorRate is Errors over Requests; 0 with no requests.
func (t Traffic) ErrorRate() float64 {
	if t.Requests == 0 {
		return 0
	}
	return float64(t.Errors) / float64(t.Requests)
}

// TrafficMeter is implemented by drivers that measure each release's
// traffic themselves (local: its proxy). Drivers without it skip the
// error-rate and p99 limits of analysis.
type TrafficMeter interface {
	// Traffic is what the environment's instances running release
	// answered between from (inclusive) and to (exclusive). A window with
	// no requests is a zero Traffic, not an error.
	Traffic(ctx context.Context, t Target, release string, from, to time.Time) (Traffic, error)
}

// Alarm is one CloudWatch alarm's state.
type Alarm struct {
	Name   string
	State  string    // OK, ALARM or INSUFFICIENT_DATA
	Since  time.Time // when it entered State
	Reason string    // the state reason CloudWatch gives
}

// AlarmState values.
const (
	AlarmOK               = "OK"
	AlarmFiring           = "ALARM"
	AlarmInsufficientData = "INSUFFICIENT_DATA"
)

// AlarmWatcher is implemented by drivers that can read an environment's
// alarms (aws: aws.alarms through CloudWatch DescribeAlarms).
type AlarmWatcher interface {
	// Alarms returns the state of each named alarm, in the order of names;
	// a name with no alarm is an error that names it.
	Alarms(ctx context.Context, t Target, names []string) ([]Alarm, error)
}

// Querier evaluates a PromQL expression against the Prometheus at url, at
// the instant at, and returns its one number. A result that is not one
// number (an empty vector, several series, NaN) is an error that says so.
type Querier interface {
	Query(ctx context.Context, url, query string, at time.Time) (float64, error)
}

// unreadableAfter is how many reads of one source may fail in a row before
// the rollout halts; fewer are retried at the next interval.
const unreadableAfter = 3

// analyzer judges the batches of one rollout by their traffic (SPEC §6.8).
// Only the goroutine running Execute uses it.
type analyzer struct {
	r      *run
	cfg    *repoconfig.Analysis
	meter  TrafficMeter // nil: the driver does not measure traffic
	alarms AlarmWatcher // nil: no aws.alarms, or a driver that cannot read them
	names  []string     // aws.alarms
	start  time.Time    // the rollout started
	failed map[string]int
}

func (r *run) newAnalyzer() *analyzer {
	cfg := r.env.Analysis
	if cfg == nil || r.in.SkipBake {
		return nil
	}
	a := &analyzer{r: r, cfg: cfg, start: r.res.Started, failed: make(map[string]int)}
	a.meter, _ = r.in.Driver.(TrafficMeter)
	if aws := r.env.AWS; aws != nil && len(aws.Alarms) > 0 {
		a.names = aws.Alarms
		a.alarms, _ = r.in.Driver.(AlarmWatcher)
	}
	return a
}

// verdict is one judgement: the figures, and the limit broken, if any.
type verdict struct {
	figures record.Analysis
	broken  *record.Reason
}

// judge looks at the new release's traffic since the batch went into
// rotation, each Prometheus check and each alarm, and says whether a limit
// is broken. A source that cannot be read unreadableAfter times in a row
// breaks the rollout too.
func (a *analyzer) judge(ctx context.Context, since time.Time) verdict {
	r := a.r
	now := r.now()
	v := verdict{figures: record.Analysis{At: now, Since: since, MinRequests: a.cfg.MinRequests}}
	rel, prev := r.in.Release.SHA, r.in.Previous
	// The baseline: the previous release over the same window while some
	// of its instances still serve; once none do, the same length of time
	// just before the rollout started.
	bFrom, bTo := since, now
	if !a.previousServing() {
		bFrom, bTo = a.start.Add(-now.Sub(since)), a.start
	}
	if a.meter != nil {
		v.broken = a.traffic(ctx, &v.figures, since, now, bFrom, bTo)
	} else {
		v.figures.Judged = true // nothing needs requests to be judged
	}
	if p := a.cfg.Prometheus; p != nil {
		for _, c := range p.Checks {
			if why := a.check(ctx, &v.figures, p.URL, c, now, bTo); why != nil && v.broken == nil {
				v.broken = why
			}
		}
	}
	if len(a.names) > 0 {
		if why := a.alarm(ctx, &v.figures); why != nil && v.broken == nil {
			v.broken = why
		}
	}
	if v.broken != nil {
		v.broken.Release = rel
		if v.broken.Kind != record.ReasonAlarmFiring && v.broken.Kind != record.ReasonSourceUnreadable {
			v.broken.Previous = prev
		}
	}
	return v
}

// previousServing reports whether an instance of this rollout still runs
// the previous release in rotation.
func (a *analyzer) previousServing() bool {
	prev := a.r.in.Previous
	if prev == "" {
		return false
	}
	for _, st := range a.r.state {
		if st.release == prev && !st.out {
			return true
		}
	}
	return false
}

// traffic reads the error rate and p99 of the new release and of the
// baseline, and judges them when there were MinRequests.
func (a *analyzer) traffic(ctx context.Context, f *record.Analysis, from, to, bFrom, bTo time.Time) *record.Reason {
	r := a.r
	t := r.in.Target
	cur, err := a.meter.Traffic(ctx, t, r.in.Release.SHA, from, to)
	if err != nil {
		return a.unreadable("traffic", record.Reason{Setting: "analysis", Text: "traffic"}, err)
	}
	a.readable("traffic")
	f.Traffic = &record.Traffic{Requests: cur.Requests, Errors: cur.Errors, P99: cur.P99}
	var base *Traffic
	if prev := r.in.Previous; prev != "" {
		// A baseline that cannot be read is no baseline: the limit alone
		// judges, which errs toward halting.
		if b, err := a.meter.Traffic(ctx, t, prev, bFrom, bTo); err == nil && b.Requests > 0 {
			base = &b
			f.Baseline = &record.Traffic{Requests: b.Requests, Errors: b.Errors, P99: b.P99}
		}
	}
	f.Judged = cur.Requests >= int64(a.cfg.MinRequests)
	if !f.Judged {
		return nil
	}
	if rate := cur.ErrorRate(); rate > a.cfg.MaxErrorRate && (base == nil || errorRateWorse(cur, *base)) {
		why := record.Reason{Kind: record.ReasonErrorRateHigh, Value: rate, Bound: a.cfg.MaxErrorRate, Count: int(cur.Requests)}
		if base != nil {
			b := base.ErrorRate()
			why.Baseline = &b
		}
		return &why
	}
	if lim := a.cfg.MaxLatencyP99; lim > 0 && cur.P99 > lim && !oneOutlier(cur, lim) && (base == nil || latencyWorse(cur.P99, base.P99)) {
		why := record.Reason{Kind: record.ReasonLatencyHigh, Value: cur.P99.Seconds(), Bound: lim.Seconds(), Count: int(cur.Requests)}
		if base != nil {
			b := base.P99.Seconds()
			why.Baseline = &b
		}
		return &why
	}
	return nil
}

// errorRateWorse reports whether cur's error rate is higher than base's
// beyond chance: a one-sided two-proportion z-test at 99% confidence. Two
// releases failing the same share of requests are not "worse", however
// high the share; a release failing 40% against 0.2% is, with a few dozen
// requests.
func errorRateWorse(cur, base Traffic) bool {
	p1, p2 := cur.ErrorRate(), base.ErrorRate()
	if p1 <= p2 {
		return false
	}
	n1, n2 := float64(cur.Requests), float64(base.Requests)
	p := float64(cur.Errors+base.Errors) / (n1 + n2)
	se := math.Sqrt(p * (1 - p) * (1/n1 + 1/n2))
	if se == 0 {
		return true // p1 > p2 with no variance at all: 0 against some
	}
	return (p1-p2)/se >= 2.326
}

// oneOutlier reports whether cur's p99 is over lim only because of its
// one slowest request: with fewer than 100 requests, the nearest-rank p99
// is that request.
func oneOutlier(cur Traffic, lim time.Duration) bool {
	return cur.Requests < 100 && cur.SecondSlowest <= lim
}

// latencyWorse reports whether cur's p99 is above base's by more than the
// figures' own error (±5% each) and a margin: 20%.
func latencyWorse(cur, base time.Duration) bool {
	return float64(cur) > float64(base)*1.2
}

// check evaluates one Prometheus check for the new release and, when its
// query names the release, for the previous one as a baseline (at the
// baseline window's end: now while the previous release still serves, the
// rollout's start once it does not).
func (a *analyzer) check(ctx context.Context, f *record.Analysis, url string, c repoconfig.PrometheusCheck, now, baseAt time.Time) *record.Reason {
	r := a.r
	key := "prometheus:" + c.Name
	fig := record.CheckFigure{Name: c.Name}
	defer func() { f.Checks = append(f.Checks, fig) }()
	fail := func(err error) *record.Reason {
		fig.Err = err.Error()
		return a.unreadable(key, record.Reason{Setting: "analysis.prometheus", Text: c.Name, URL: url}, err)
	}
	if r.in.Querier == nil {
		return fail(errNoQuerier)
	}
	q, err := a.render(c, r.in.Release.SHA)
	if err != nil {
		return fail(err)
	}
	val, err := r.in.Querier.Query(ctx, url, q, now)
	if err != nil {
		return fail(err)
	}
	a.readable(key)
	fig.Value = &val
	var base *float64
	if prev := r.in.Previous; prev != "" {
		if bq, err := a.render(c, prev); err == nil && bq != q {
			if b, err := r.in.Querier.Query(ctx, url, bq, baseAt); err == nil {
				base = &b
				fig.Baseline = &b
			}
		}
	}
	why := record.Reason{Kind: record.ReasonCheckBroken, Text: c.Name, Value: val, Baseline: base}
	switch {
	case c.Max != nil && val > *c.Max && (base == nil || val > *base):
		why.Bound = *c.Max
	case c.Min != nil && val < *c.Min && (base == nil || val < *base):
		why.Bound, why.Below = *c.Min, true
	default:
		return nil
	}
	return &why
}

// render fills a check's query in for sha.
func (a *analyzer) render(c repoconfig.PrometheusCheck, sha string) (string, error) {
	r := a.r
	return c.Render(repoconfig.QueryData{SHA: sha, Previous: r.in.Previous, Environment: r.env.Name, Repo: r.in.Target.Repo})
}

// alarm reads aws.alarms. One that went into ALARM after the rollout
// started breaks the limit; one that was in ALARM before is an outage the
// previous release had too, shown and not held against the new one.
func (a *analyzer) alarm(ctx context.Context, f *record.Analysis) *record.Reason {
	const key = "alarms"
	if a.alarms == nil {
		err := errNoAlarms
		for _, n := range a.names {
			f.Alarms = append(f.Alarms, record.AlarmFigure{Name: n, Err: err.Error()})
		}
		return a.unreadable(key, record.Reason{Setting: "aws.alarms", Text: strings.Join(a.names, ", ")}, err)
	}
	states, err := a.alarms.Alarms(ctx, a.r.in.Target, a.names)
	if err != nil {
		for _, n := range a.names {
			f.Alarms = append(f.Alarms, record.AlarmFigure{Name: n, Err: err.Error()})
		}
		return a.unreadable(key, record.Reason{Setting: "aws.alarms", Text: strings.Join(a.names, ", ")}, err)
	}
	a.readable(key)
	var broken *record.Reason
	for _, s := range states {
		f.Alarms = append(f.Alarms, record.AlarmFigure{Name: s.Name, State: s.State})
		if s.State == AlarmFiring && !s.Since.Before(a.start) && broken == nil {
			broken = &record.Reason{Kind: record.ReasonAlarmFiring, Text: s.Name, At: s.Since, Err: s.Reason}
		}
	}
	return broken
}

// unreadable counts a failed read of a source and, at unreadableAfter in a
// row, returns the reason to halt.
func (a *analyzer) unreadable(key string, why record.Reason, err error) *record.Reason {
	a.failed[key]++
	if a.failed[key] < unreadableAfter {
		return nil
	}
	why.Kind, why.Count, why.Err = record.ReasonSourceUnreadable, a.failed[key], err.Error()
	return &why
}

func (a *analyzer) readable(key string) { delete(a.failed, key) }

var (
	errNoQuerier = errors.New("no Prometheus client is configured on the bot")
	errNoAlarms  = errors.New("the driver cannot read CloudWatch alarms")
)
