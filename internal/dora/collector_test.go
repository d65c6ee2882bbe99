package dora

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shipbot/shipbot/internal/store/record"
)

func TestCollector(t *testing.T) {
	prod := History{
		Env: record.EnvKey{Repo: "acme/web", Name: "production"},
		Releases: []record.Release{
			rel("a", ok, at(5, 5, 10, 0)),
			rel("b", failed, at(5, 6, 9, 0)),
			rel("c", ok, at(5, 6, 10, 0)),
			rel("d", ok, at(5, 7, 10, 0)),
		},
		// lead times 1h, 2h, 4h: median 2h; one restore of 1h; 1 of 4 failed
		CommittedAt: map[string]time.Time{"a": at(5, 5, 9, 0), "c": at(5, 6, 8, 0), "d": at(5, 7, 6, 0)},
	}
	staging := History{
		Env:      record.EnvKey{Repo: "acme/web", Name: "staging"},
		Releases: []record.Release{rel("a", ok, at(5, 4, 10, 0)), rel("a", ok, at(4, 4, 10, 0))},
	}
	quiet := History{Env: record.EnvKey{Repo: "acme/api", Name: "production"}}
	var sawDeadline bool
	c := NewCollector(func(ctx context.Context) ([]History, error) {
		_, sawDeadline = ctx.Deadline()
		return []History{prod, staging, quiet}, nil
	}, Options{Now: func() time.Time { return now }})

	const want = `
# HELP shipbot_dora_change_failure_rate Share of deploys that failed or were rolled back, 0 to 1, over the last 30 days.
# TYPE shipbot_dora_change_failure_rate gauge
shipbot_dora_change_failure_rate{environment="production",repo="acme/web"} 0.25
shipbot_dora_change_failure_rate{environment="staging",repo="acme/web"} 0
# HELP shipbot_dora_deploys_per_day Deploys (releases, whatever their result) per day over the last 30 days.
# TYPE shipbot_dora_deploys_per_day gauge
shipbot_dora_deploys_per_day{environment="production",repo="acme/api"} 0
shipbot_dora_deploys_per_day{environment="production",repo="acme/web"} 0.13333333333333333
shipbot_dora_deploys_per_day{environment="staging",repo="acme/web"} 0.03333333333333333
# HELP shipbot_dora_lead_time_seconds Median time from a commit's timestamp to its first successful release, over the last 30 days.
# TYPE shipbot_dora_lead_time_seconds gauge
shipbot_dora_lead_time_seconds{environment="production",repo="acme/web"} 7200
# HELP shipbot_dora_time_to_restore_seconds Median time from a failed or rolled-back release to the next success, over the last 30 days.
# TYPE shipbot_dora_time_to_restore_seconds gauge
shipbot_dora_time_to_restore_seconds{environment="production",repo="acme/web"} 3600
# HELP shipbot_dora_up Whether the release history could be read at the last scrape.
# TYPE shipbot_dora_up gauge
shipbot_dora_up 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if !sawDeadline {
		t.Errorf("the Source was called without a deadline: a stuck store would stall the scrape")
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}

func TestCollectorSourceFails(t *testing.T) {
	c := NewCollector(func(context.Context) ([]History, error) {
		return nil, errors.New("store: unavailable")
	}, Options{})
	const want = `
# HELP shipbot_dora_up Whether the release history could be read at the last scrape.
# TYPE shipbot_dora_up gauge
shipbot_dora_up 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c); n != 1 {
		t.Errorf("%d series, want only shipbot_dora_up", n)
	}
}

func TestCollectorWindow(t *testing.T) {
	h := History{Env: record.EnvKey{Repo: "acme/web", Name: "production"},
		Releases: []record.Release{rel("a", ok, at(5, 25, 10, 0)), rel("b", ok, at(5, 10, 10, 0))}}
	c := NewCollector(func(context.Context) ([]History, error) { return []History{h}, nil },
		Options{Window: Window{Days: 7}, Now: func() time.Time { return now }})
	const want = `
# HELP shipbot_dora_deploys_per_day Deploys (releases, whatever their result) per day over the last 7 days.
# TYPE shipbot_dora_deploys_per_day gauge
shipbot_dora_deploys_per_day{environment="production",repo="acme/web"} 0.14285714285714285
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "shipbot_dora_deploys_per_day"); err != nil {
		t.Fatal(err)
	}
}
