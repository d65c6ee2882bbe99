// Package dora computes delivery metrics (the DORA four) from an
// environment's release history: deploys per day, median lead time from
// commit to success, change failure rate, and median time to restore
// (SPEC §5, "Beyond GitHub"). It owns the arithmetic, the Prometheus
// collector that exposes the figures as gauges, and the small inline SVG
// chart the dashboard shows. It reads record.Release and nothing else of
// the store: callers hand the history in.
//
// # Definitions
//
// The window is the last Days calendar days in Location, today included,
// up to now: a release counts in it when its At (when it finished) falls
// there. Every release is a deploy; one whose Result is failure or
// rolled-back is a failed change.
//
//   - Deploys per day is the releases in the window over Days.
//   - Lead time is, for each success that is the first success of its SHA
//     in the environment, At minus the commit's timestamp. A SHA that
//     succeeded before (a rollback putting it back, a redeploy) has no new
//     lead time. The timestamps are History.CommittedAt, per SHA
//     (HistoryOf gathers them from the releases' CommittedAt); a success
//     whose SHA is missing there, or whose commit is dated after the
//     success (a skewed clock), has no lead time.
//   - Change failure rate is failed changes over deploys; undefined with no
//     deploys.
//   - Time to restore runs from a failed change to the next success. A run
//     of failed changes before one success is one restore, measured from
//     the first of them: the environment was not right again until the
//     success. A restore counts in the window when its success does, even
//     if the failure was before the window's start; a failure with no
//     success after it yet is Metrics.FailingSince, not a restore.
//
// Medians of an even count are the mean of the two middle values.
package dora

import (
	"slices"
	"time"

	"github.com/shipbot/shipbot/internal/store/record"
)

// DefaultDays is the window when Window.Days is 0.
const DefaultDays = 30

// History is one environment's releases, in any order. Give all the store
// keeps, not just the window's: a restore or a lead time looks back past
// the window's start.
type History struct {
	Env      record.EnvKey
	Releases []record.Release
	// CommittedAt is the commit timestamp of each SHA, where known.
	CommittedAt map[string]time.Time
}

// HistoryOf is env's History from its releases, with CommittedAt the
// commit timestamps they carry: per SHA the earliest recorded, as a push
// and a /deploy of one commit may date it differently (author and
// committer dates).
func HistoryOf(env record.EnvKey, releases []record.Release) History {
	h := History{Env: env, Releases: releases}
	for _, r := range releases {
		if r.CommittedAt.IsZero() {
			continue
		}
		if h.CommittedAt == nil {
			h.CommittedAt = map[string]time.Time{}
		}
		if c, ok := h.CommittedAt[r.SHA]; !ok || r.CommittedAt.Before(c) {
			h.CommittedAt[r.SHA] = r.CommittedAt
		}
	}
	return h
}

// Window is the span the figures cover.
type Window struct {
	Days     int            // calendar days, today included; 0 means DefaultDays
	Location *time.Location // where days begin and end; nil means UTC
}

func (w Window) days() int {
	if w.Days <= 0 {
		return DefaultDays
	}
	return w.Days
}

func (w Window) location() *time.Location {
	if w.Location == nil {
		return time.UTC
	}
	return w.Location
}

// Day is one calendar day of the window.
type Day struct {
	Start    time.Time // midnight beginning the day, in the window's Location
	Deploys  int       // releases that finished that day
	Failures int       // of which failed or were rolled back
}

// Metrics are one environment's figures over a window.
type Metrics struct {
	Start, End time.Time // the window: midnight of its first day, and now
	Days       []Day     // oldest first, one per calendar day

	Deploys  int // releases in the window
	Failures int // of which failed or were rolled back

	LeadTimes int           // how many successes had a lead time
	LeadTime  time.Duration // their median; 0 when LeadTimes is 0

	Restores      int           // failed changes followed by a success in the window
	TimeToRestore time.Duration // their median; 0 when Restores is 0

	// FailingSince is when the environment's last failed change happened
	// if no success has followed it by now; zero otherwise.
	FailingSince time.Time
}

// DeploysPerDay is Deploys averaged over the window's days.
func (m Metrics) DeploysPerDay() float64 {
	if len(m.Days) == 0 {
		return 0
	}
	return float64(m.Deploys) / float64(len(m.Days))
}

// ChangeFailureRate is Failures over Deploys, a share from 0 to 1; ok is
// false when there were no deploys.
func (m Metrics) ChangeFailureRate() (rate float64, ok bool) {
	if m.Deploys == 0 {
		return 0, false
	}
	return float64(m.Failures) / float64(m.Deploys), true
}

// Compute works out h's figures over the window w ending at now.
func Compute(h History, w Window, now time.Time) Metrics {
	loc := w.location()
	now = now.In(loc)
	n := w.days()
	first := time.Date(now.Year(), now.Month(), now.Day()-n+1, 0, 0, 0, 0, loc)
	m := Metrics{Start: first, End: now, Days: make([]Day, n)}
	for i := range m.Days {
		m.Days[i].Start = time.Date(first.Year(), first.Month(), first.Day()+i, 0, 0, 0, 0, loc)
	}
	inWindow := func(t time.Time) bool { return !t.Before(m.Start) && !t.After(m.End) }

	rs := slices.Clone(h.Releases)
	slices.SortStableFunc(rs, func(a, b record.Release) int { return a.At.Compare(b.At) })

	var leads, restores []time.Duration
	succeeded := map[string]bool{}
	var brokenSince time.Time
	for _, r := range rs {
		if r.At.After(m.End) {
			break
		}
		failed := Failed(r)
		if inWindow(r.At) {
			d := &m.Days[dayIndex(first, r.At.In(loc))]
			d.Deploys++
			m.Deploys++
			if failed {
				d.Failures++
				m.Failures++
			}
		}
		switch {
		case failed:
			if brokenSince.IsZero() {
				brokenSince = r.At
			}
		case r.Result == record.ResultSuccess:
			if !brokenSince.IsZero() && inWindow(r.At) {
				restores = append(restores, r.At.Sub(brokenSince))
			}
			brokenSince = time.Time{}
			if c, ok := h.CommittedAt[r.SHA]; ok && !succeeded[r.SHA] && inWindow(r.At) && !c.After(r.At) {
				leads = append(leads, r.At.Sub(c))
			}
			succeeded[r.SHA] = true
		}
	}
	m.FailingSince = brokenSince
	m.LeadTimes, m.LeadTime = len(leads), median(leads)
	m.Restores, m.TimeToRestore = len(restores), median(restores)
	return m
}

// Failed reports whether r counts as a failed change: it failed, or it
// went out and was rolled back.
func Failed(r record.Release) bool {
	return r.Result == record.ResultFailure || r.Result == record.ResultRolledBack
}

// dayIndex is how many calendar days t's date is after first's, counted
// on dates so that a day of 23 or 25 hours (daylight saving) is one day.
func dayIndex(first, t time.Time) int {
	a := time.Date(first.Year(), first.Month(), first.Day(), 0, 0, 0, 0, time.UTC)
	b := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return int(b.Sub(a) / (24 * time.Hour))
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	mid := len(ds) / 2
	if len(ds)%2 == 1 {
		return ds[mid]
	}
	return ds[mid-1] + (ds[mid]-ds[mid-1])/2
}
