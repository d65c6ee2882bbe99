package dora

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin without the host's zoneinfo

	"github.com/shipbot/shipbot/internal/store/record"
)

// now is the end of every window in these tests: the 30 days are
// May 1 00:00 to May 30 15:00 UTC.
var now = time.Date(2026, 5, 30, 15, 0, 0, 0, time.UTC)

func at(month time.Month, day, hour, minute int) time.Time {
	return time.Date(2026, month, day, hour, minute, 0, 0, time.UTC)
}

var seq int

func rel(sha, result string, t time.Time) record.Release {
	seq++
	return record.Release{DeployID: fmt.Sprintf("d%d", seq), SHA: sha, Result: result, At: t}
}

const (
	ok       = record.ResultSuccess
	failed   = record.ResultFailure
	rolledBk = record.ResultRolledBack
)

// perDay is a window's day counts by day of May (1 to 30).
type perDay map[int][2]int // day → {deploys, failures}

func TestCompute(t *testing.T) {
	for _, tt := range []struct {
		name      string
		releases  []record.Release
		committed map[string]time.Time
		want      Metrics // Start, End and Days are checked apart
		days      perDay
		cfr       float64 // -1: undefined
	}{
		{
			name: "empty",
			cfr:  -1,
		},
		{
			name: "three successes, lead times 2h, 24h, 1h",
			releases: []record.Release{
				rel("c", ok, at(5, 3, 18, 0)),
				rel("a", ok, at(5, 2, 10, 0)),
				rel("b", ok, at(5, 3, 12, 0)),
			},
			committed: map[string]time.Time{"a": at(5, 2, 8, 0), "b": at(5, 2, 12, 0), "c": at(5, 3, 17, 0)},
			want:      Metrics{Deploys: 3, LeadTimes: 3, LeadTime: 2 * time.Hour},
			days:      perDay{2: {1, 0}, 3: {2, 0}},
			cfr:       0,
		},
		{
			name: "all failures: rate 1, nothing restored, failing since the first",
			releases: []record.Release{
				rel("a", failed, at(5, 10, 9, 0)),
				rel("b", failed, at(5, 11, 9, 0)),
				rel("c", rolledBk, at(5, 12, 9, 0)),
			},
			committed: map[string]time.Time{"a": at(5, 10, 8, 0)},
			want:      Metrics{Deploys: 3, Failures: 3, FailingSince: at(5, 10, 9, 0)},
			days:      perDay{10: {1, 1}, 11: {1, 1}, 12: {1, 1}},
			cfr:       1,
		},
		{
			name: "two restores: a failure run of two, and a rollback; a rolled-back SHA has no new lead time",
			releases: []record.Release{
				rel("a", ok, at(5, 5, 10, 0)),
				rel("b", failed, at(5, 6, 9, 0)),
				rel("b", failed, at(5, 6, 9, 30)),
				rel("c", ok, at(5, 6, 10, 0)),  // restores from 9:00: 1h
				rel("d", ok, at(5, 20, 12, 0)), // committed May 19 20:00: 16h
				rel("e", rolledBk, at(5, 21, 8, 0)),
				rel("d", ok, at(5, 21, 8, 45)), // the rollback: restores in 45m; d succeeded before
			},
			committed: map[string]time.Time{
				"a": at(5, 5, 9, 0), "b": at(5, 6, 8, 0), "c": at(5, 6, 6, 0),
				"d": at(5, 19, 20, 0), "e": at(5, 21, 7, 0),
			},
			// lead times 1h, 4h, 16h; restores 1h and 45m, median their mean
			want: Metrics{Deploys: 7, Failures: 3, LeadTimes: 3, LeadTime: 4 * time.Hour,
				Restores: 2, TimeToRestore: 52*time.Minute + 30*time.Second},
			days: perDay{5: {1, 0}, 6: {3, 2}, 20: {1, 0}, 21: {2, 1}},
			cfr:  3.0 / 7,
		},
		{
			name: "a restore spanning the window's start, an open failure at the end, a release after now",
			releases: []record.Release{
				rel("x", ok, at(4, 20, 12, 0)),
				rel("y", failed, at(4, 30, 22, 0)), // before the window: not a deploy in it
				rel("x", ok, at(5, 1, 1, 0)),       // in it: restores in 3h; x is no new lead time
				rel("z", ok, at(5, 29, 12, 0)),     // lead time 6h
				rel("w", failed, at(5, 30, 14, 0)),
				rel("v", ok, at(5, 30, 16, 0)), // after now: not seen
			},
			committed: map[string]time.Time{"x": at(4, 20, 11, 0), "z": at(5, 29, 6, 0), "v": at(5, 30, 15, 30)},
			want: Metrics{Deploys: 3, Failures: 1, LeadTimes: 1, LeadTime: 6 * time.Hour,
				Restores: 1, TimeToRestore: 3 * time.Hour, FailingSince: at(5, 30, 14, 0)},
			days: perDay{1: {1, 0}, 29: {1, 0}, 30: {1, 1}},
			cfr:  1.0 / 3,
		},
		{
			name: "lead times: even count, a missing commit time, a commit dated after its success",
			releases: []record.Release{
				rel("a", ok, at(5, 10, 12, 0)), // 2h
				rel("b", ok, at(5, 11, 12, 0)), // no commit time
				rel("c", ok, at(5, 12, 12, 0)), // committed after: skipped
				rel("d", ok, at(5, 13, 12, 0)), // 5h
				rel("e", failed, at(5, 14, 12, 0)),
				rel("e", ok, at(5, 14, 13, 0)), // 3h, the failed attempt included; restore 1h
				rel("f", ok, at(4, 14, 13, 0)), // before the window
			},
			committed: map[string]time.Time{
				"a": at(5, 10, 10, 0), "c": at(5, 12, 13, 0), "d": at(5, 13, 7, 0), "e": at(5, 14, 10, 0), "f": at(4, 14, 12, 0),
			},
			want: Metrics{Deploys: 6, Failures: 1, LeadTimes: 3, LeadTime: 3 * time.Hour, Restores: 1, TimeToRestore: time.Hour},
			days: perDay{10: {1, 0}, 11: {1, 0}, 12: {1, 0}, 13: {1, 0}, 14: {2, 1}},
			cfr:  1.0 / 6,
		},
		{
			name: "even count of lead times: the mean of the middle two",
			releases: []record.Release{
				rel("a", ok, at(5, 2, 12, 0)),
				rel("b", ok, at(5, 3, 12, 0)),
			},
			committed: map[string]time.Time{"a": at(5, 2, 11, 0), "b": at(5, 3, 8, 0)},
			want:      Metrics{Deploys: 2, LeadTimes: 2, LeadTime: 150 * time.Minute},
			days:      perDay{2: {1, 0}, 3: {1, 0}},
			cfr:       0,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := History{Env: record.EnvKey{Repo: "o/r", Name: "production"}, Releases: tt.releases, CommittedAt: tt.committed}
			before := slices.Clone(tt.releases)
			m := Compute(h, Window{}, now)
			if !reflect.DeepEqual(before, tt.releases) {
				t.Errorf("Compute reordered the caller's releases")
			}
			if want := at(5, 1, 0, 0); !m.Start.Equal(want) || !m.End.Equal(now) {
				t.Errorf("window %v to %v, want %v to %v", m.Start, m.End, want, now)
			}
			if len(m.Days) != 30 {
				t.Fatalf("%d days, want 30", len(m.Days))
			}
			for i, d := range m.Days {
				if want := at(5, i+1, 0, 0); !d.Start.Equal(want) {
					t.Errorf("day %d starts %v, want %v", i, d.Start, want)
				}
				w := tt.days[i+1]
				if d.Deploys != w[0] || d.Failures != w[1] {
					t.Errorf("May %d: %d deploys, %d failures; want %d, %d", i+1, d.Deploys, d.Failures, w[0], w[1])
				}
			}
			got := m
			got.Start, got.End, got.Days = time.Time{}, time.Time{}, nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("metrics\n got %+v\nwant %+v", got, tt.want)
			}
			if want := float64(tt.want.Deploys) / 30; m.DeploysPerDay() != want {
				t.Errorf("DeploysPerDay = %v, want %v", m.DeploysPerDay(), want)
			}
			rate, defined := m.ChangeFailureRate()
			switch {
			case tt.cfr < 0 && defined:
				t.Errorf("ChangeFailureRate = %v, want undefined", rate)
			case tt.cfr >= 0 && (!defined || rate != tt.cfr):
				t.Errorf("ChangeFailureRate = %v (defined %v), want %v", rate, defined, tt.cfr)
			}
		})
	}
}

// Days are calendar days where the window's location is: the day daylight
// saving starts has 23 hours and is still one day.
func TestComputeDaysInLocation(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err) // the tzdata is embedded in the test binary by the import below
	}
	in := func(day, hour, minute int) time.Time { return time.Date(2026, 3, day, hour, minute, 0, 0, berlin) }
	h := History{Releases: []record.Release{
		rel("a", ok, in(27, 23, 59)), // the day before the window
		rel("b", ok, in(28, 0, 0)),
		rel("c", failed, in(29, 23, 30)), // 21:30 UTC: still the 29th in Berlin
		rel("d", ok, in(30, 0, 30)),      // 22:30 UTC on the 29th, the 30th in Berlin
	}}
	m := Compute(h, Window{Days: 3, Location: berlin}, in(30, 12, 0).UTC())
	if !m.Start.Equal(in(28, 0, 0)) || m.End.Location() != berlin {
		t.Errorf("window starts %v (end in %v), want %v in Berlin", m.Start, m.End.Location(), in(28, 0, 0))
	}
	want := []Day{{in(28, 0, 0), 1, 0}, {in(29, 0, 0), 1, 1}, {in(30, 0, 0), 1, 0}}
	if len(m.Days) != len(want) {
		t.Fatalf("days %+v, want %+v", m.Days, want)
	}
	for i := range want {
		if !m.Days[i].Start.Equal(want[i].Start) || m.Days[i].Deploys != want[i].Deploys || m.Days[i].Failures != want[i].Failures {
			t.Errorf("day %d = %+v, want %+v", i, m.Days[i], want[i])
		}
	}
	if m.Restores != 1 || m.TimeToRestore != time.Hour {
		t.Errorf("restores %d, median %v; want 1, 1h", m.Restores, m.TimeToRestore)
	}
}

// TestHistoryOf: the commit timestamps come from the releases, the
// earliest per SHA; a release without one adds none; and a rolled-back
// release is a failed change with its lead time counted once.
func TestHistoryOf(t *testing.T) {
	env := record.EnvKey{Repo: "acme/web", Name: "production"}
	committed := func(r record.Release, c time.Time) record.Release { r.CommittedAt = c; return r }
	rels := []record.Release{
		committed(rel("a", ok, at(5, 10, 10, 0)), at(5, 10, 9, 0)),        // lead 1h
		committed(rel("b", rolledBk, at(5, 11, 10, 0)), at(5, 11, 9, 30)), // a failed change
		committed(rel("a", ok, at(5, 11, 11, 0)), at(5, 10, 9, 0)),        // the rollback: no new lead time
		committed(rel("c", ok, at(5, 12, 12, 0)), at(5, 12, 9, 0)),        // a /deploy dated it 9:00…
		committed(rel("c", ok, at(5, 12, 13, 0)), at(5, 12, 10, 0)),       // …and the push 10:00
		rel("d", ok, at(5, 13, 10, 0)),                                    // no timestamp: no lead time
	}
	h := HistoryOf(env, rels)
	want := map[string]time.Time{"a": at(5, 10, 9, 0), "b": at(5, 11, 9, 30), "c": at(5, 12, 9, 0)}
	if h.Env != env || len(h.Releases) != len(rels) || len(h.CommittedAt) != len(want) {
		t.Fatalf("HistoryOf = %+v", h)
	}
	for sha, c := range want {
		if !h.CommittedAt[sha].Equal(c) {
			t.Errorf("CommittedAt[%s] = %v, want %v", sha, h.CommittedAt[sha], c)
		}
	}
	m := Compute(h, Window{}, now)
	if m.Deploys != 6 || m.Failures != 1 || m.LeadTimes != 2 || m.LeadTime != 2*time.Hour || m.Restores != 1 || m.TimeToRestore != time.Hour {
		t.Fatalf("Compute: %d deploys, %d failed, %d lead times of %v, %d restores in %v", m.Deploys, m.Failures, m.LeadTimes, m.LeadTime, m.Restores, m.TimeToRestore)
	}
	if h := HistoryOf(env, []record.Release{rel("x", ok, now)}); h.CommittedAt != nil {
		t.Errorf("no timestamps: CommittedAt = %v, want nil", h.CommittedAt)
	}
}
