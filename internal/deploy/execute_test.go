package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/report"
)

// prevSHA is the release the fleet runs before the rollout and the one a
// failed rollout goes back to; newRelease (plan_test.go) is the one shipped.
const prevSHA = "9f8e7d6c5b4a39f8e7d6c5b4a39f8e7d6c5b4a3f"

func onPrev(id, zone string) Instance {
	return Instance{ID: id, Zone: zone, Release: prevSHA, Healthy: true, InRotation: true}
}
func onNext(id, zone string) Instance {
	return Instance{ID: id, Zone: zone, Release: newRelease, Healthy: true, InRotation: true}
}

// fresh is an instance of a first deploy: running nothing, out of rotation.
func fresh(id, zone string) Instance { return Instance{ID: id, Zone: zone} }

// production is n serving instances on prevSHA in one zone, production-1….
func production(n int) []Instance {
	var list []Instance
	for i := 1; i <= n; i++ {
		list = append(list, onPrev(fmt.Sprintf("production-%d", i), "us-east-1a"))
	}
	return list
}

func defaultRollout() repoconfig.Rollout {
	return repoconfig.Rollout{Canary: 1, Batch: percent(25), MaxUnavailable: percent(25)}
}

func testEnvironment(ro repoconfig.Rollout) *repoconfig.Environment {
	return &repoconfig.Environment{
		Name:    "production",
		Driver:  repoconfig.DriverLocal,
		Rollout: ro,
		Health:  repoconfig.Health{Path: "/healthz", Interval: 2 * time.Second, HealthyAfter: 2, Timeout: 2 * time.Minute},
	}
}

func testInput(env *repoconfig.Environment, d Driver, previous string) ExecInput {
	return ExecInput{
		Target:   Target{Repo: "acme/web", Environment: env},
		Release:  Release{Repo: "acme/web", InstallationID: 42, SHA: newRelease, Ref: "main"},
		Previous: previous,
		Driver:   d,
		Phrase:   report.Reason,
	}
}

// said is how a rollout ended, in the words people read.
func said(res Result) string { return report.Reason(res.Reason) }

// short is a release as the tables write it: a SHA's first 7 characters.
func short(release string) string { return report.Short(release) }

// where is an instance's state as the tables write it: "abc1234 serving",
// "9f8e7d6 out" (out of rotation), "abc1234 sick" (in rotation, failing).
func where(inst Instance) string {
	rel := short(inst.Release)
	if rel == "" {
		rel = "-"
	}
	switch {
	case !inst.InRotation:
		return rel + " out"
	case !inst.Healthy:
		return rel + " sick"
	}
	return rel + " serving"
}

type execCase struct {
	name        string
	members     []Instance
	rollout     *repoconfig.Rollout // nil: canary 1, batch 25%, max_unavailable 25%
	health      func(*repoconfig.Health)
	surge       bool // the driver implements Surger
	firstDeploy bool // Previous is ""
	faults      map[string]fault
	buildErr    error
	listErr     error

	outcome    Outcome
	reason     string            // the whole Reason
	final      map[string]string // id → where(); every other instance must be as it was
	rolledBack []string
	calls      []string // the drain, install, admit, surge and retire calls in order, when given
	batches    [][]string
}

func TestExecute(t *testing.T) {
	p, n := short(prevSHA), short(newRelease)
	bake := func(d time.Duration) *repoconfig.Rollout {
		ro := defaultRollout()
		ro.Bake = d
		return &ro
	}
	tests := []execCase{
		{
			name:    "rolls out canary first then batches",
			members: append(production(6), onPrev("production-7", "us-east-1b"), onPrev("production-8", "us-east-1b")),
			outcome: OutcomeSuccess,
			reason:  "abc1234 is on all 8 instances of production",
			batches: [][]string{{"production-1"}, {"production-2", "production-3"}, {"production-4", "production-5"}, {"production-6", "production-7"}, {"production-8"}},
		},
		{
			name: "one zone at a time with by_zone",
			members: []Instance{
				onPrev("a-1", "us-east-1a"), onPrev("a-2", "us-east-1a"), onPrev("b-1", "us-east-1b"),
				onPrev("b-2", "us-east-1b"), onPrev("c-1", "us-east-1c"), onPrev("c-2", "us-east-1c"),
			},
			rollout: &repoconfig.Rollout{Canary: 1, Batch: count(2), MaxUnavailable: count(2), ByZone: true, Bake: 10 * time.Second},
			outcome: OutcomeSuccess,
			reason:  "abc1234 is on all 6 instances of production",
			batches: [][]string{{"a-1"}, {"a-2"}, {"b-1", "b-2"}, {"c-1", "c-2"}},
		},
		{
			name:    "no instances is an error and touches nothing",
			outcome: OutcomeError,
			reason:  "no instances found: there is nothing to deploy to; check the environment's instances (local driver) or instance_tags (aws driver)",
		},
		{
			name:    "the last serving instance without surge is an error before touching anything",
			members: production(1),
			outcome: OutcomeError,
			reason:  "only 1 healthy instance is in rotation; updating it would leave none serving, and this driver cannot start an extra instance first: add an instance",
		},
		{
			name:    "a driver that cannot list the instances is an error",
			members: production(2),
			listErr: errors.New("dial unix /run/shipbot/local.sock: connection refused"),
			outcome: OutcomeError,
			reason:  "could not list the instances of production: dial unix /run/shipbot/local.sock: connection refused; nothing was touched",
		},
		{
			name:    "health settings that cannot be followed are an error",
			members: production(2),
			health:  func(h *repoconfig.Health) { h.HealthyAfter = 0 },
			outcome: OutcomeError,
			reason:  "the settings of production cannot be followed: health.healthy_after 0 is below 1; nothing was touched",
		},
		{
			name:     "a failed build touches nothing",
			members:  production(4),
			buildErr: errors.New("go build -o app .: exit status 1"),
			outcome:  OutcomeFailure,
			reason:   "build of abc1234 failed: go build -o app .: exit status 1; nothing was touched",
		},
		{
			name:       "a canary that never turns healthy is rolled back",
			members:    production(4),
			faults:     map[string]fault{"production-1": {neverHealthyOn: newRelease}},
			outcome:    OutcomeFailure,
			reason:     "batch 1 (the canary): instance production-1 did not pass /healthz 2 times within 2m0s on abc1234 (last check: GET /healthz: 503 Service Unavailable); rolled back production-1 to 9f8e7d6",
			final:      map[string]string{"production-1": p + " serving"},
			rolledBack: []string{"production-1"},
			calls:      []string{"drain production-1", "install production-1 " + n, "drain production-1", "install production-1 " + p, "admit production-1"},
		},
		{
			name:       "an install error puts every touched instance back, newest batch first",
			members:    production(4),
			faults:     map[string]fault{"production-3": {installFails: newRelease}},
			outcome:    OutcomeFailure,
			reason:     "batch 3: install of abc1234 on instance production-3 failed: production-3: install script exited with status 1; rolled back production-3, production-2 and production-1 to 9f8e7d6",
			final:      map[string]string{"production-1": p + " serving", "production-2": p + " serving", "production-3": p + " serving"},
			rolledBack: []string{"production-3", "production-2", "production-1"},
			calls: []string{
				"drain production-1", "install production-1 " + n, "admit production-1",
				"drain production-2", "install production-2 " + n, "admit production-2",
				"drain production-3", "install production-3 " + n,
				"drain production-3", "install production-3 " + p, "admit production-3",
				"drain production-2", "install production-2 " + p, "admit production-2",
				"drain production-1", "install production-1 " + p, "admit production-1",
			},
		},
		{
			name:       "an instance turning sick during the bake is a failure",
			members:    production(4),
			rollout:    bake(30 * time.Second),
			faults:     map[string]fault{"production-2": {sickOn: newRelease, sickAfter: 4}},
			outcome:    OutcomeFailure,
			reason:     "batch 2: instance production-2 failed /healthz 4s into the 30s bake of abc1234: GET /healthz: 500 Internal Server Error; rolled back production-2 and production-1 to 9f8e7d6",
			final:      map[string]string{"production-1": p + " serving", "production-2": p + " serving"},
			rolledBack: []string{"production-2", "production-1"},
		},
		{
			name:       "an instance that will not go back into rotation is a failure",
			members:    production(4),
			faults:     map[string]fault{"production-1": {admitFails: newRelease}},
			outcome:    OutcomeFailure,
			reason:     "batch 1 (the canary): could not put instance production-1 back into rotation on abc1234: production-1: target did not turn healthy in rotation; rolled back production-1 to 9f8e7d6",
			final:      map[string]string{"production-1": p + " serving"},
			rolledBack: []string{"production-1"},
		},
		{
			name:    "a rollback that fails says which instance is left on what",
			members: production(4),
			// The install of the new release fails; the previous one
			// installs but never warms up.
			faults:  map[string]fault{"production-2": {installFails: newRelease, warmup: 1000}},
			outcome: OutcomeFailure,
			reason: "batch 2: install of abc1234 on instance production-2 failed: production-2: install script exited with status 1; " +
				"rolling back to 9f8e7d6 failed too, in batch 2: instance production-2 did not pass /healthz 2 times within 2m0s on 9f8e7d6 (last check: GET /healthz: 503 Service Unavailable (starting)); " +
				"so production-2 is out of rotation on 9f8e7d6; production-1 is in rotation on abc1234",
			final: map[string]string{"production-1": n + " serving", "production-2": p + " out"},
		},
		{
			name:    "a rollback puts back the rest of a batch when one instance cannot go back",
			members: production(4),
			rollout: &repoconfig.Rollout{Canary: 1, Batch: count(2), MaxUnavailable: count(2)},
			faults:  map[string]fault{"production-2": {installFails: newRelease, warmup: 1000}},
			outcome: OutcomeFailure,
			reason: "batch 2: install of abc1234 on instance production-2 failed: production-2: install script exited with status 1; " +
				"rolling back to 9f8e7d6 failed too, in batch 2: instance production-2 did not pass /healthz 2 times within 2m0s on 9f8e7d6 (last check: GET /healthz: 503 Service Unavailable (starting)); " +
				"so production-2 is out of rotation on 9f8e7d6; production-3 is in rotation on 9f8e7d6; production-1 is in rotation on abc1234",
			final:      map[string]string{"production-1": n + " serving", "production-2": p + " out", "production-3": p + " serving"},
			rolledBack: []string{"production-3"},
		},
		{
			name:    "a drain that fails again while rolling back is reported, not retried forever",
			members: production(4),
			faults:  map[string]fault{"production-2": {drainFails: true}},
			outcome: OutcomeFailure,
			reason: "batch 2: could not take instance production-2 out of rotation: production-2: deregistering from rotation timed out; " +
				"rolling back to 9f8e7d6 failed too, in batch 2: could not take instance production-2 out of rotation: production-2: deregistering from rotation timed out; " +
				"so production-2 is in rotation on 9f8e7d6; production-1 is in rotation on abc1234",
			final: map[string]string{"production-1": n + " serving"},
		},
		{
			name:        "a first deploy leaves the failed canary out of rotation",
			members:     []Instance{fresh("production-1", "a"), fresh("production-2", "a"), fresh("production-3", "a"), fresh("production-4", "a")},
			firstDeploy: true,
			faults:      map[string]fault{"production-1": {neverHealthyOn: newRelease}},
			outcome:     OutcomeFailure,
			reason:      "batch 1 (the canary): instance production-1 did not pass /healthz 2 times within 2m0s on abc1234 (last check: GET /healthz: 503 Service Unavailable); this was the first deploy here, so there is no earlier release to roll back to: production-1 is out of rotation on abc1234",
			final:       map[string]string{"production-1": n + " out"},
		},
		{
			name:        "a first deploy takes an instance sick during the bake out of rotation",
			members:     []Instance{fresh("production-1", "a"), fresh("production-2", "a"), fresh("production-3", "a"), fresh("production-4", "a")},
			firstDeploy: true,
			rollout:     bake(30 * time.Second),
			faults:      map[string]fault{"production-2": {sickOn: newRelease, sickAfter: 4}},
			outcome:     OutcomeFailure,
			reason:      "batch 2: instance production-2 failed /healthz 4s into the 30s bake of abc1234: GET /healthz: 500 Internal Server Error; this was the first deploy here, so there is no earlier release to roll back to: production-2 is out of rotation on abc1234; production-1 is in rotation on abc1234",
			final:       map[string]string{"production-1": n + " serving", "production-2": n + " out"},
		},
		{
			name:    "a single instance surges first and retires the extra one after",
			members: production(1),
			surge:   true,
			rollout: bake(10 * time.Second),
			outcome: OutcomeSuccess,
			reason:  "abc1234 is on the only instance of production",
			calls:   []string{"surge surge-1 " + n, "drain production-1", "install production-1 " + n, "admit production-1", "retire surge-1"},
		},
		{
			name:    "an extra instance that will not stop is said, not a failure",
			members: production(1),
			surge:   true,
			faults:  map[string]fault{"surge-1": {retireFails: true}},
			outcome: OutcomeSuccess,
			reason:  "abc1234 is on the only instance of production; the extra instance surge-1 could not be stopped: surge-1: process did not exit",
			final:   map[string]string{"surge-1": n + " serving"},
		},
		{
			name:       "a failed surged canary keeps the extra instance until it is rolled back",
			members:    production(1),
			surge:      true,
			faults:     map[string]fault{"production-1": {neverHealthyOn: newRelease}},
			outcome:    OutcomeFailure,
			reason:     "batch 1 (the canary): instance production-1 did not pass /healthz 2 times within 2m0s on abc1234 (last check: GET /healthz: 503 Service Unavailable); rolled back production-1 to 9f8e7d6",
			final:      map[string]string{"production-1": p + " serving"},
			rolledBack: []string{"production-1"},
			calls: []string{"surge surge-1 " + n, "drain production-1", "install production-1 " + n,
				"drain production-1", "install production-1 " + p, "admit production-1", "retire surge-1"},
		},
		{
			name:    "an extra instance that will not start fails before touching anything",
			members: production(1),
			surge:   true,
			faults:  map[string]fault{"surge-1": {neverHealthyOn: newRelease}},
			outcome: OutcomeFailure,
			reason:  "batch 1 (the canary): could not start an extra instance on abc1234: surge-1 did not turn healthy: GET /healthz: 503 Service Unavailable; nothing had been changed, so there is nothing to roll back",
			calls:   []string{"surge surge-1 " + n},
		},
		{
			name:    "slow drains and slow starts still succeed",
			members: production(4),
			faults: map[string]fault{
				"production-2": {drainTakes: 20 * time.Second},
				"production-3": {warmup: 3},
			},
			outcome: OutcomeSuccess,
			reason:  "abc1234 is on all 4 instances of production",
		},
		{
			name: "broken instances are replaced first",
			members: []Instance{
				onPrev("production-1", "a"), {ID: "production-2", Zone: "a", Release: prevSHA, InRotation: true},
				onPrev("production-3", "a"), {ID: "production-4", Zone: "a", Release: prevSHA, Healthy: true},
			},
			outcome: OutcomeSuccess,
			reason:  "abc1234 is on all 4 instances of production",
			batches: [][]string{{"production-2"}, {"production-4"}, {"production-1"}, {"production-3"}},
		},
		{
			name:    "a resumed job skips the instances already on the release",
			members: []Instance{onNext("production-1", "a"), onNext("production-2", "a"), onPrev("production-3", "a"), onPrev("production-4", "a")},
			outcome: OutcomeSuccess,
			reason:  "abc1234 is on all 4 instances of production (2 already were)",
			batches: [][]string{{"production-3"}, {"production-4"}},
		},
		{
			name: "a job resumed after a crash mid-batch finishes the instance it left out of rotation",
			members: []Instance{
				onNext("production-1", "a"),
				{ID: "production-2", Zone: "a", Release: newRelease, Healthy: true},
				onPrev("production-3", "a"), onPrev("production-4", "a"),
			},
			outcome: OutcomeSuccess,
			reason:  "abc1234 is on all 4 instances of production (1 already was)",
			batches: [][]string{{"production-2"}, {"production-3"}, {"production-4"}},
		},
		{
			name:    "nothing to do when every instance runs the release",
			members: []Instance{onNext("production-1", "a"), onNext("production-2", "a"), onNext("production-3", "a")},
			outcome: OutcomeSuccess,
			reason:  "nothing to do: all 3 instances of production already run abc1234, healthy and in rotation",
			calls:   []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { runExecCase(t, tt) })
		})
	}
}

func runExecCase(t *testing.T, tt execCase) {
	ro := defaultRollout()
	if tt.rollout != nil {
		ro = *tt.rollout
	}
	f := newFakeFleet(t.Errorf, ro.MaxUnavailable.Of(len(tt.members)), tt.members...)
	for id, fl := range tt.faults {
		f.fault(id, fl)
	}
	if tt.buildErr != nil {
		f.failBuild(newRelease, tt.buildErr)
	}
	f.listErr = tt.listErr
	before := f.state()
	var d Driver = f
	if tt.surge {
		d = surgingFleet{f}
	}
	env := testEnvironment(ro)
	if tt.health != nil {
		tt.health(&env.Health)
	}
	prev := prevSHA
	if tt.firstDeploy {
		prev = ""
	}

	res := Execute(context.Background(), testInput(env, d, prev))

	if res.Outcome != tt.outcome {
		t.Errorf("Outcome = %q, want %q (reason: %s)", res.Outcome, tt.outcome, said(res))
	}
	if said(res) != tt.reason {
		t.Errorf("Reason =\n  %s\nwant\n  %s", said(res), tt.reason)
	}
	if !slices.Equal(res.RolledBack, tt.rolledBack) {
		t.Errorf("RolledBack = %q, want %q", res.RolledBack, tt.rolledBack)
	}
	if res.Release.SHA != newRelease || res.Previous != prev {
		t.Errorf("Result names release %q, previous %q", res.Release.SHA, res.Previous)
	}
	if res.Finished.Before(res.Started) {
		t.Errorf("Finished %v before Started %v", res.Finished, res.Started)
	}

	after := f.state()
	for id, inst := range after {
		want, ok := tt.final[id]
		switch {
		case ok:
		case strings.HasPrefix(id, "surge-"):
			t.Errorf("extra instance %s is still running", id)
		case tt.outcome == OutcomeSuccess:
			want = short(newRelease) + " serving"
		default:
			want = where(before[id]) // untouched
		}
		if got := where(inst); got != want {
			t.Errorf("%s is %q, want %q", id, got, want)
		}
	}

	touching := f.callsOf("drain", "install", "admit", "surge", "retire")
	if tt.calls != nil && !slices.Equal(touching, tt.calls) && !(len(touching) == 0 && len(tt.calls) == 0) {
		t.Errorf("calls:\n  %s\nwant\n  %s", strings.Join(touching, "\n  "), strings.Join(tt.calls, "\n  "))
	}
	if tt.outcome == OutcomeError && len(touching) > 0 {
		t.Errorf("an error outcome touched instances: %q", touching)
	}
	for _, inst := range before {
		if inst.Release == newRelease && inst.Healthy && inst.InRotation {
			if calls := f.callsTo(inst.ID); len(calls) > 0 {
				t.Errorf("%s already ran the release but was touched: %q", inst.ID, calls)
			}
		}
	}
	if tt.batches != nil {
		var got [][]string
		for _, b := range res.Batches {
			if !b.Rollback {
				got = append(got, b.Instances)
			}
		}
		if !reflect.DeepEqual(got, tt.batches) {
			t.Errorf("batches = %q, want %q", got, tt.batches)
		}
	}
	for _, b := range res.Batches {
		if b.Failure != nil && tt.outcome == OutcomeSuccess {
			t.Errorf("batch %d has Failure %q in a %s", b.Index, report.Reason(*b.Failure), tt.outcome)
		}
	}
}

// TestExecuteCancelled: a cancelled rollout is not a failure and is not
// rolled back; the resumed job carries on where it stopped.
func TestExecuteCancelled(t *testing.T) {
	tests := []struct {
		name     string
		faults   map[string]fault
		cancelOn func(Event) bool
		reason   string
		final    map[string]string // after the cancelled run
	}{
		{
			name:     "before anything",
			cancelOn: func(ev Event) bool { return ev.Kind == Planned },
			reason:   "cancelled while building abc1234; nothing was touched",
			final:    map[string]string{},
		},
		{
			name:     "during an install",
			cancelOn: func(ev Event) bool { return ev.Kind == InstanceStep && ev.Step == StepInstall && ev.Batch == 1 },
			reason:   "cancelled during batch 2 (install) of abc1234; nothing was rolled back: a resumed job re-plans and carries on from here",
			final:    map[string]string{"production-1": "abc1234 serving", "production-2": "9f8e7d6 out"},
		},
		{
			name:     "during a bake",
			cancelOn: func(ev Event) bool { return ev.Kind == Baking && ev.Batch == 2 },
			reason:   "cancelled during batch 3 (bake) of abc1234; nothing was rolled back: a resumed job re-plans and carries on from here",
			final:    map[string]string{"production-1": "abc1234 serving", "production-2": "abc1234 serving", "production-3": "abc1234 serving"},
		},
		{
			name:     "while rolling back",
			faults:   map[string]fault{"production-2": {installFails: newRelease}},
			cancelOn: func(ev Event) bool { return ev.Kind == RollingBack },
			reason: "batch 2: install of abc1234 on instance production-2 failed: production-2: install script exited with status 1; " +
				"cancelled while rolling back to 9f8e7d6: production-2 is out of rotation after a failed install; production-1 is in rotation on abc1234",
			final: map[string]string{"production-1": "abc1234 serving", "production-2": "- out"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ro := defaultRollout()
				ro.Bake = 10 * time.Second
				f := newFakeFleet(t.Errorf, 1, production(4)...)
				f.lat = latencies{drain: time.Second, install: 5 * time.Second, admit: time.Second}
				for id, fl := range tt.faults {
					f.fault(id, fl)
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				in := testInput(testEnvironment(ro), f, prevSHA)
				in.Report = func(ev Event) {
					if tt.cancelOn(ev) {
						cancel()
					}
				}
				res := Execute(ctx, in)
				if res.Outcome != OutcomeCancelled || said(res) != tt.reason {
					t.Errorf("got %s: %s\nwant cancelled: %s", res.Outcome, said(res), tt.reason)
				}
				if rb := f.callsOf("install"); slices.ContainsFunc(rb, func(c string) bool { return strings.HasSuffix(c, short(prevSHA)) }) {
					t.Errorf("a cancelled rollout rolled back: %q", rb)
				}
				st := f.state()
				for id, want := range tt.final {
					if got := where(st[id]); got != want {
						t.Errorf("after cancel %s is %q, want %q", id, got, want)
					}
				}
				if tt.faults != nil {
					return
				}

				// The job resumes: the instances already done are skipped.
				done := map[string]int{}
				for id, w := range tt.final {
					if w == "abc1234 serving" {
						done[id] = len(f.callsTo(id))
					}
				}
				res = Execute(context.Background(), testInput(testEnvironment(ro), f, prevSHA))
				if res.Outcome != OutcomeSuccess {
					t.Fatalf("resumed: %s: %s", res.Outcome, said(res))
				}
				for id, n := range done {
					if calls := f.callsTo(id)[n:]; len(calls) > 0 {
						t.Errorf("resumed job touched %s again: %q", id, calls)
					}
				}
				for id, inst := range f.state() {
					if where(inst) != "abc1234 serving" {
						t.Errorf("after resuming %s is %q", id, where(inst))
					}
				}
			})
		})
	}
}

func eventLine(ev Event) string {
	switch ev.Kind {
	case Planned, Finished:
		return ev.Kind.String()
	}
	s := fmt.Sprintf("%s %d", ev.Kind, ev.Batch)
	if ev.Step != "" {
		s += " " + ev.Step
	}
	if ev.Instance != "" {
		s += " " + ev.Instance
	}
	return s
}

func TestExecuteEvents(t *testing.T) {
	steps := func(batch int, id string, steps ...string) []string {
		var out []string
		for _, s := range steps {
			out = append(out, fmt.Sprintf("instance step %d %s %s", batch, s, id))
		}
		return out
	}
	join := func(parts ...any) []string {
		var out []string
		for _, p := range parts {
			switch p := p.(type) {
			case string:
				out = append(out, p)
			case []string:
				out = append(out, p...)
			}
		}
		return out
	}
	tests := []struct {
		name   string
		faults map[string]fault
		want   []string
	}{
		{
			name: "success",
			want: join("planned",
				"batch started 0", steps(0, "production-1", "drain", "install", "health", "admit"), "batch healthy 0", "baking 0",
				"batch started 1", steps(1, "production-2", "drain", "install", "health", "admit"), "batch healthy 1", "baking 1",
				"finished"),
		},
		{
			name:   "failure and rollback",
			faults: map[string]fault{"production-2": {neverHealthyOn: newRelease}},
			want: join("planned",
				"batch started 0", steps(0, "production-1", "drain", "install", "health", "admit"), "batch healthy 0", "baking 0",
				"batch started 1", steps(1, "production-2", "drain", "install", "health"),
				"batch failed 1 health production-2", "rolling back 1",
				steps(1, "production-2", "drain", "install", "health", "admit"),
				steps(0, "production-1", "drain", "install", "health", "admit"),
				"rolled back 1", "finished"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ro := repoconfig.Rollout{Canary: 1, Batch: count(1), MaxUnavailable: count(1), Bake: 10 * time.Second}
				f := newFakeFleet(t.Errorf, 1, production(2)...)
				for id, fl := range tt.faults {
					f.fault(id, fl)
				}
				in := testInput(testEnvironment(ro), f, prevSHA)
				var got []string
				var last time.Time
				in.Report = func(ev Event) {
					got = append(got, eventLine(ev))
					if ev.Plan == nil {
						t.Errorf("%s: no plan", eventLine(ev))
					}
					if ev.At.Before(last) {
						t.Errorf("%s: At went back from %v to %v", eventLine(ev), last, ev.At)
					}
					last = ev.At
					if (ev.Kind == Finished) != (ev.Result != nil) {
						t.Errorf("%s: Result %v", eventLine(ev), ev.Result)
					}
					if ev.Kind == BatchFailed && (ev.Err == nil || !strings.Contains(ev.Err.Error(), ev.Instance)) {
						t.Errorf("batch failed: Err %v does not name %s", ev.Err, ev.Instance)
					}
				}
				Execute(context.Background(), in)
				if !slices.Equal(got, tt.want) {
					t.Errorf("events:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
				}
			})
		})
	}
}

// TestExecuteTimeIsTheFloor: in simulated time, where each driver call
// takes a known time, a rollout takes exactly the sum over its batches of
// surge + the slowest drain + install + (healthy_after−1)×interval and the
// first check + admit and its confirming check + bake + retire, after
// listing and building: the engine adds no wait of its own (SPEC §11,
// rollout time ÷ floor = 1.0).
func TestExecuteTimeIsTheFloor(t *testing.T) {
	lat := latencies{list: 100 * time.Millisecond, prepare: 40 * time.Second, drain: 3 * time.Second, install: 20 * time.Second,
		check: 50 * time.Millisecond, admit: time.Second, surge: 15 * time.Second, retire: 2 * time.Second}
	tests := []struct {
		name    string
		members []Instance
		rollout repoconfig.Rollout
		surge   bool
		faults  map[string]fault
		batches int
	}{
		{
			name: "12 instances in 3 zones",
			members: func() []Instance {
				var list []Instance
				for i := 1; i <= 12; i++ {
					list = append(list, onPrev(fmt.Sprintf("production-%02d", i), fmt.Sprintf("us-east-1%c", 'a'+(i-1)/4)))
				}
				return list
			}(),
			rollout: repoconfig.Rollout{Canary: 1, Batch: count(3), MaxUnavailable: count(3), ByZone: true, Bake: 30 * time.Second},
			faults:  map[string]fault{"production-06": {drainTakes: 10 * time.Second}},
			batches: 6, // by zone: a 1+3, b 3+1, c 3+1
		},
		{
			name:    "one instance with a surge",
			members: production(1),
			rollout: repoconfig.Rollout{Canary: 1, Batch: count(1), MaxUnavailable: count(1), Bake: 7 * time.Second},
			surge:   true,
			batches: 1,
		},
		{
			name:    "no bake",
			members: production(4),
			rollout: repoconfig.Rollout{Canary: 1, Batch: count(2), MaxUnavailable: count(2)},
			batches: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFakeFleet(t.Errorf, tt.rollout.MaxUnavailable.Of(len(tt.members)), tt.members...)
				f.lat = lat
				for id, fl := range tt.faults {
					f.fault(id, fl)
				}
				var d Driver = f
				if tt.surge {
					d = surgingFleet{f}
				}
				env := testEnvironment(tt.rollout)
				env.Health.HealthyAfter = 3
				h := env.Health
				res := Execute(context.Background(), testInput(env, d, prevSHA))
				if res.Outcome != OutcomeSuccess {
					t.Fatalf("%s: %s", res.Outcome, said(res))
				}

				floor := lat.list + lat.prepare
				for _, b := range res.Batches {
					drain := lat.drain
					for _, id := range b.Instances {
						drain = max(drain, tt.faults[id].drainTakes)
					}
					type steps struct{ Drain, Install, Health, Admit, Bake time.Duration }
					want := steps{
						Drain:   drain,
						Install: lat.install,
						Health:  time.Duration(h.HealthyAfter-1)*h.Interval + lat.check,
						Admit:   lat.admit + lat.check,
						Bake:    tt.rollout.Bake,
					}
					if got := (steps{b.Drain, b.Install, b.Health, b.Admit, b.Bake}); got != want {
						t.Errorf("batch %d took %+v, want %+v", b.Index, got, want)
					}
					total := want.Drain + want.Install + want.Health + want.Admit + want.Bake
					if tt.surge {
						total += lat.surge + lat.retire
					}
					if took := b.Finished.Sub(b.Started); took != total {
						t.Errorf("batch %d took %s in all, want %s", b.Index, took, total)
					}
					floor += total
				}
				if len(res.Batches) != tt.batches {
					t.Errorf("%d batches, want %d", len(res.Batches), tt.batches)
				}
				took := res.Finished.Sub(res.Started)
				if took != floor {
					t.Errorf("rollout took %s, floor is %s: ratio %.4f", took, floor, float64(took)/float64(floor))
				}
				t.Logf("rollout %s, floor %s, ratio %.3f", took, floor, float64(took)/float64(floor))
			})
		})
	}
}

// manualClock is a clock that moves only when told: every wait of the
// engine (Sleep) and of the fleet (its latencies) advances it.
type manualClock struct {
	mu    sync.Mutex
	now   time.Time
	slept time.Duration // by the engine
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(max(d, 0))
}

func (c *manualClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.slept += d
	c.mu.Unlock()
	c.advance(d)
	return ctx.Err()
}

// TestExecuteInjectedClock: every wait goes through ExecInput.Sleep and every
// reading through ExecInput.Now, so a caller's clock is the only clock.
// Batches of one instance keep the fleet's calls serial on the shared clock.
func TestExecuteInjectedClock(t *testing.T) {
	clock := &manualClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	f := newFakeFleet(t.Errorf, 1, production(3)...)
	f.lat = latencies{drain: 3 * time.Second, install: 20 * time.Second, check: 50 * time.Millisecond, admit: time.Second}
	f.wait = func(ctx context.Context, d time.Duration) error { clock.advance(d); return ctx.Err() }
	ro := repoconfig.Rollout{Canary: 1, Batch: count(1), MaxUnavailable: count(1), Bake: 30 * time.Second}
	in := testInput(testEnvironment(ro), f, prevSHA)
	in.Now, in.Sleep = clock.Now, clock.Sleep

	realStart := time.Now()
	res := Execute(context.Background(), in)
	if res.Outcome != OutcomeSuccess {
		t.Fatalf("%s: %s", res.Outcome, said(res))
	}
	perBatch := 3*time.Second + 20*time.Second + (2*time.Second + 50*time.Millisecond) + (time.Second + 50*time.Millisecond) + 30*time.Second
	if took := res.Finished.Sub(res.Started); took != 3*perBatch {
		t.Errorf("rollout took %s on the injected clock, want %s", took, 3*perBatch)
	}
	// Waits: up to the second health check (2s less the first check's
	// 50ms), and the bake's 30s less its 14 checks' (at 2s, 4s, … 28s).
	wantSlept := 3 * ((2*time.Second - 50*time.Millisecond) + (30*time.Second - 14*50*time.Millisecond))
	if clock.slept != wantSlept {
		t.Errorf("engine slept %s, want %s", clock.slept, wantSlept)
	}
	if real := time.Since(realStart); real > 5*time.Second {
		t.Errorf("took %s of real time with an injected clock", real)
	}
}

func TestExecuteLog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ro := repoconfig.Rollout{Canary: 1, Batch: count(2), MaxUnavailable: count(2)}
		f := newFakeFleet(t.Errorf, 2, production(3)...)
		var log bytes.Buffer
		in := testInput(testEnvironment(ro), f, prevSHA)
		in.Log = &log
		if res := Execute(context.Background(), in); res.Outcome != OutcomeSuccess {
			t.Fatalf("%s: %s", res.Outcome, said(res))
		}
		for _, want := range []string{
			"shipbot: building abc1234\nbuilding abc1234\n",
			"shipbot: batch 1 (the canary): production-1 to abc1234\n",
			"production-1 | installing abc1234\nproduction-1 | running abc1234\n",
			"production-2 | installing abc1234\n",
			"production-3 | running abc1234\n",
			"shipbot: success: abc1234 is on all 3 instances of production\n",
		} {
			if !strings.Contains(log.String(), want) {
				t.Errorf("log lacks %q:\n%s", want, log.String())
			}
		}
	})
}

// panickyFleet is a fleet whose Install panics on one instance.
type panickyFleet struct {
	*fakeFleet
	on string
}

func (f panickyFleet) Install(ctx context.Context, t Target, inst Instance, r Release, log io.Writer) error {
	if inst.ID == f.on && r.SHA == newRelease {
		panic("index out of range")
	}
	return f.fakeFleet.Install(ctx, t, inst, r, log)
}

func TestExecuteDriverPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ro := repoconfig.Rollout{Canary: 1, Batch: count(2), MaxUnavailable: count(2)}
		f := newFakeFleet(t.Errorf, 2, production(3)...)
		res := Execute(context.Background(), testInput(testEnvironment(ro), panickyFleet{f, "production-3"}, prevSHA))
		want := "batch 2: install of abc1234 on instance production-3 failed: driver panicked on production-3: index out of range; rolled back production-2, production-3 and production-1 to 9f8e7d6"
		if res.Outcome != OutcomeFailure || said(res) != want {
			t.Errorf("got %s: %s\nwant failure: %s", res.Outcome, said(res), want)
		}
	})
}

// TestExecuteRandomFleets runs rollouts over many generated fleets, shapes
// and faults; the fake fleet checks the safety invariants throughout, and
// each run must end in a state its Result describes truthfully.
func TestExecuteRandomFleets(t *testing.T) {
	runs := 300
	if testing.Short() {
		runs = 50
	}
	for seed := range runs {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { randomRollout(t, uint64(seed)) })
		})
	}
}

func randomRollout(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	amount := func() repoconfig.Amount {
		if rng.IntN(2) == 0 {
			return count(1 + rng.IntN(4))
		}
		return percent(float64(10 + rng.IntN(60)))
	}
	n := 1 + rng.IntN(12)
	zones := 1 + rng.IntN(3)
	var members []Instance
	for i := range n {
		inst := onPrev(fmt.Sprintf("i-%02d", i), fmt.Sprintf("z%d", rng.IntN(zones)))
		switch rng.IntN(10) {
		case 0:
			inst.Release = newRelease
		case 1:
			inst.Healthy = false
		case 2:
			inst.InRotation = false
		}
		members = append(members, inst)
	}
	ro := repoconfig.Rollout{Canary: 1 + rng.IntN(2), Batch: amount(), MaxUnavailable: amount(), ByZone: rng.IntN(2) == 0}
	if rng.IntN(2) == 0 {
		ro.Bake = 10 * time.Second
	}
	maxU := ro.MaxUnavailable.Of(n)
	f := newFakeFleet(t.Errorf, maxU, members...)
	f.lat = latencies{drain: time.Second, install: 3 * time.Second, check: 10 * time.Millisecond, admit: time.Second}
	var sickID string // an instance that may turn sick after the rollout is done
	if rng.IntN(3) > 0 {
		id := members[rng.IntN(n)].ID
		faults := []fault{
			{installFails: newRelease},
			{neverHealthyOn: newRelease},
			{sickOn: newRelease, sickAfter: 2 + rng.IntN(6)},
			{admitFails: newRelease},
			{drainFails: true},
			{warmup: 1 + rng.IntN(4)},
			{drainTakes: 30 * time.Second},
			{installFails: newRelease, warmup: 1000}, // the rollback fails too
		}
		fl := faults[rng.IntN(len(faults))]
		if !members[slices.IndexFunc(members, func(m Instance) bool { return m.ID == id })].Healthy {
			fl.neverHealthyOn = prevSHA // keep it broken on its release
		}
		f.fault(id, fl)
		if fl.sickOn != "" {
			sickID = id
		}
	}
	var d Driver = f
	if rng.IntN(2) == 0 {
		d = surgingFleet{f}
	}
	prev := prevSHA
	if rng.IntN(5) == 0 {
		prev = ""
	}
	before := f.state()
	res := Execute(context.Background(), testInput(testEnvironment(ro), d, prev))
	after := f.state()
	t.Logf("n=%d rollout=%+v: %s: %s", n, ro, res.Outcome, said(res))

	if said(res) == "" {
		t.Error("no reason")
	}
	touched := f.callsOf("drain", "install", "admit")
	switch res.Outcome {
	case OutcomeSuccess:
		for id, inst := range after {
			if w := where(inst); w != "abc1234 serving" && (id != sickID || w != "abc1234 sick") {
				t.Errorf("success, but %s is %q", id, w)
			}
		}
	case OutcomeError:
		if len(touched) > 0 {
			t.Errorf("error outcome touched instances: %q", touched)
		}
	case OutcomeFailure:
		if res.FailedInstance != "" && !strings.Contains(said(res), res.FailedInstance) {
			t.Errorf("reason does not name the failed instance %s", res.FailedInstance)
		}
		for _, id := range res.RolledBack {
			if got := where(after[id]); got != short(prevSHA)+" serving" {
				t.Errorf("%s is listed as rolled back, but it is %q", id, got)
			}
		}
		if strings.Contains(said(res), "; rolled back ") {
			// A clean rollback: every instance it names is back, serving.
			for _, id := range res.RolledBack {
				if got := where(after[id]); got != short(prevSHA)+" serving" {
					t.Errorf("reason says %s was rolled back, but it is %q", id, got)
				}
			}
			for id, inst := range after {
				if !slices.Contains(res.RolledBack, id) && !strings.HasPrefix(id, "surge-") && where(inst) != where(before[id]) {
					t.Errorf("%s changed from %q to %q but is not listed as rolled back", id, where(before[id]), where(inst))
				}
			}
		}
	default:
		t.Errorf("outcome %q", res.Outcome)
	}
	if f.mostOut() > maxU {
		t.Errorf("%d out of rotation at once, max_unavailable %d", f.mostOut(), maxU)
	}
}

// TestFakeFleetInvariants: the fake fleet reports what it must, and only
// that, so that a rollout test passing means the invariants held.
func TestFakeFleetInvariants(t *testing.T) {
	ctx := context.Background()
	tgt := Target{}
	tests := []struct {
		name string
		do   func(f *fakeFleet)
		want []string // substrings, one per report
	}{
		{
			name: "taking out the last serving instance",
			do: func(f *fakeFleet) {
				_ = f.Drain(ctx, tgt, Instance{ID: "production-1"})
				_ = f.Drain(ctx, tgt, Instance{ID: "production-2"})
			},
			want: []string{"drain production-2 took the last serving instance"},
		},
		{
			name: "more out of rotation than max_unavailable",
			do: func(f *fakeFleet) {
				f.maxUnavailable = 1
				f.insts["production-3"] = &fakeInstance{id: "production-3", release: prevSHA, running: true, inRotation: true}
				_ = f.Drain(ctx, tgt, Instance{ID: "production-1"})
				_ = f.Drain(ctx, tgt, Instance{ID: "production-2"})
			},
			want: []string{"after drain production-2: 2 instances are out of rotation at once, max_unavailable is 1"},
		},
		{
			name: "installing on an instance in rotation",
			do: func(f *fakeFleet) {
				_ = f.Install(ctx, tgt, Instance{ID: "production-1"}, Release{SHA: newRelease}, &bytes.Buffer{})
			},
			want: []string{"engine installed abc1234 on production-1 while it was in rotation"},
		},
		{
			name: "the fleet itself turning sick is not the engine's doing",
			do: func(f *fakeFleet) {
				f.fault("production-1", fault{sickOn: prevSHA})
				f.fault("production-2", fault{sickOn: prevSHA})
				_ = f.Check(ctx, tgt, Instance{ID: "production-1"}, "/healthz")
				_ = f.Drain(ctx, tgt, Instance{ID: "production-1"})
			},
		},
		{
			name: "a drain and admit within the limits",
			do: func(f *fakeFleet) {
				_ = f.Drain(ctx, tgt, Instance{ID: "production-1"})
				_ = f.Install(ctx, tgt, Instance{ID: "production-1"}, Release{SHA: newRelease}, &bytes.Buffer{})
				_ = f.Admit(ctx, tgt, Instance{ID: "production-1"})
				_ = f.Drain(ctx, tgt, Instance{ID: "production-2"})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			var mu sync.Mutex
			f := newFakeFleet(func(format string, args ...any) {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, fmt.Sprintf(format, args...))
			}, 2, production(2)...)
			tt.do(f)
			if len(got) != len(tt.want) {
				t.Fatalf("reports %q, want %d matching %q", got, len(tt.want), tt.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("report %q, want %q", got[i], tt.want[i])
				}
			}
		})
	}
}

// BenchmarkExecuteOverhead measures the engine's own time per batch (SPEC
// §11: ≤ 200 ms): 12 instances in 4 batches of 3 over the fake fleet with
// driver calls that take no time. "real clock" needs no wait at all
// (healthy_after 1, no bake); "waits skipped" runs the default health
// settings and a 30s bake on a clock whose Sleep moves time forward without
// waiting, so the bake's checks are counted too.
func BenchmarkExecuteOverhead(b *testing.B) {
	members := make([]Instance, 12)
	for i := range members {
		members[i] = onPrev(fmt.Sprintf("production-%02d", i+1), fmt.Sprintf("us-east-1%c", 'a'+i/6))
	}
	ro := repoconfig.Rollout{Canary: 3, Batch: count(3), MaxUnavailable: count(3)}
	for _, bc := range []struct {
		name  string
		setup func(*ExecInput)
	}{
		{"real clock", func(in *ExecInput) {
			in.Target.Environment.Health.HealthyAfter = 1
		}},
		{"waits skipped", func(in *ExecInput) {
			in.Target.Environment.Rollout.Bake = 30 * time.Second
			var skipped atomic.Int64
			in.Now = func() time.Time { return time.Now().Add(time.Duration(skipped.Load())) }
			in.Sleep = func(ctx context.Context, d time.Duration) error { skipped.Add(int64(d)); return ctx.Err() }
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			batches := 0
			for b.Loop() {
				b.StopTimer()
				f := newFakeFleet(b.Errorf, 3, members...)
				in := testInput(testEnvironment(ro), f, prevSHA)
				bc.setup(&in)
				b.StartTimer()
				res := Execute(context.Background(), in)
				if res.Outcome != OutcomeSuccess || len(res.Batches) != 4 {
					b.Fatalf("%s in %d batches: %s", res.Outcome, len(res.Batches), said(res))
				}
				batches += len(res.Batches)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(batches), "ns/batch")
		})
	}
}

// cancelOnCheck cancels the run right after the n-th passing health check of
// one instance returns: the moment a batch's health step has succeeded but
// the batch is not back in rotation yet.
type cancelOnCheck struct {
	*fakeFleet
	id     string
	n      int
	cancel context.CancelFunc
}

func (c *cancelOnCheck) Check(ctx context.Context, t Target, inst Instance, path string) error {
	err := c.fakeFleet.Check(ctx, t, inst, path)
	if err == nil && inst.ID == c.id {
		if c.n--; c.n == 0 {
			c.cancel()
		}
	}
	return err
}

func TestExecuteCancelledAsHealthPassesStopsBeforeTheNextBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ro := defaultRollout()
		ro.MaxUnavailable = repoconfig.Amount{Count: 1}
		f := newFakeFleet(t.Errorf, 1, production(4)...) // the fleet fails the test past max_unavailable
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		d := &cancelOnCheck{fakeFleet: f, id: "production-1", n: testEnvironment(ro).Health.HealthyAfter, cancel: cancel}
		in := testInput(testEnvironment(ro), d, prevSHA)
		res := Execute(ctx, in)
		if res.Outcome != OutcomeCancelled {
			t.Fatalf("got %s: %s; want cancelled", res.Outcome, said(res))
		}
		if calls := f.callsTo("production-2"); len(calls) > 0 {
			t.Fatalf("the next batch was touched after cancellation: %q", calls)
		}
	})
}
