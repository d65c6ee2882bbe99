package deploy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/report"
)

const (
	oldRelease = "0ld0ld0ld0ld0ld0ld0ld0ld0ld0ld0ld0ld0ld0"
	newRelease = "abc1234def5678abc1234def5678abc1234def56"
)

// Instances in the tests: serving on the old release, already on the new
// one, unhealthy, out of rotation.
func ok(id, zone string) Instance {
	return Instance{ID: id, Zone: zone, Release: oldRelease, Healthy: true, InRotation: true}
}
func cur(id, zone string) Instance {
	return Instance{ID: id, Zone: zone, Release: newRelease, Healthy: true, InRotation: true}
}
func down(id, zone string) Instance {
	return Instance{ID: id, Zone: zone, Release: oldRelease, Healthy: false, InRotation: true}
}
func out(id, zone string) Instance {
	return Instance{ID: id, Zone: zone, Release: oldRelease, Healthy: true, InRotation: false}
}

func count(n int) repoconfig.Amount       { return repoconfig.Amount{Count: n} }
func percent(p float64) repoconfig.Amount { return repoconfig.Amount{Percent: p} }

// ids is a plan's batches as instance ids, the shape the table compares.
func ids(p Plan) [][]string {
	var out [][]string
	for _, b := range p.Batches {
		var row []string
		for _, inst := range b.Instances {
			row = append(row, inst.ID)
		}
		out = append(out, row)
	}
	return out
}

func TestPlanRollout(t *testing.T) {
	tests := []struct {
		name      string
		in        PlanInput
		want      [][]string  // batches as ids
		wantZones []string    // Batch.Zone per batch, when checked
		wantSurge map[int]int // batch index → Surge; others 0
		skipped   []string
		notes     []string // substrings, each in some note
		noNotes   bool
		err       string // the whole message, when an error is wanted
		errKind   error
	}{
		{
			name: "orders by zone then id",
			in: PlanInput{
				Instances: []Instance{ok("b-2", "us-east-1b"), ok("a-2", "us-east-1a"), ok("b-1", "us-east-1b"), ok("a-1", "us-east-1a")},
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 1, Batch: count(2), MaxUnavailable: count(2)},
			},
			want:    [][]string{{"a-1"}, {"a-2", "b-1"}, {"b-2"}},
			noNotes: true,
		},
		{
			name: "broken instances first within a zone",
			in: PlanInput{
				Instances: []Instance{ok("a-1", "a"), down("a-2", "a"), out("a-3", "a"), ok("b-1", "b"), down("b-2", "b")},
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 1, Batch: count(1), MaxUnavailable: count(1)},
			},
			want:  [][]string{{"a-2"}, {"a-3"}, {"a-1"}, {"b-2"}, {"b-1"}},
			notes: []string{"3 instances are unhealthy or out of rotation; each zone's are replaced first"},
		},
		{
			name: "skips instances already on the release, healthy and in rotation",
			in: PlanInput{
				Instances: []Instance{cur("a-1", "a"), ok("a-2", "a"), cur("b-1", "b")},
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 1, Batch: count(1), MaxUnavailable: count(1)},
			},
			want:    [][]string{{"a-2"}},
			skipped: []string{"a-1", "b-1"},
		},
		{
			name: "an instance on the release but unhealthy or out of rotation is not skipped",
			in: PlanInput{
				Instances: []Instance{
					{ID: "a-1", Zone: "a", Release: newRelease, Healthy: false, InRotation: true},
					{ID: "a-2", Zone: "a", Release: newRelease, Healthy: true, InRotation: false},
					cur("a-3", "a"),
				},
				Release: newRelease,
				Rollout: repoconfig.Rollout{Canary: 1, Batch: count(1), MaxUnavailable: count(1)},
			},
			want:    [][]string{{"a-1"}, {"a-2"}},
			skipped: []string{"a-3"},
		},
		{
			name: "an instance with an unknown release is updated",
			in: PlanInput{
				Instances: []Instance{{ID: "a-1", Zone: "a", Healthy: true, InRotation: true}, cur("a-2", "a")},
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 1, Batch: count(1), MaxUnavailable: count(1)},
			},
			want:    [][]string{{"a-1"}},
			skipped: []string{"a-2"},
		},
		{
			name: "canary defaults to 1",
			in: PlanInput{
				Instances: []Instance{ok("a-1", "a"), ok("a-2", "a"), ok("a-3", "a"), ok("a-4", "a")},
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Batch: count(3), MaxUnavailable: count(3)},
			},
			want: [][]string{{"a-1"}, {"a-2", "a-3", "a-4"}},
		},
		{
			name: "percentages are of the whole fleet, skipped instances included",
			// 8 instances, 4 already updated: 25% is 2 (of 8), not 1 (of 4).
			in: PlanInput{
				Instances: []Instance{
					cur("a-1", "a"), cur("a-2", "a"), cur("a-3", "a"), cur("a-4", "a"),
					ok("a-5", "a"), ok("a-6", "a"), ok("a-7", "a"), ok("a-8", "a"),
				},
				Release: newRelease,
				Rollout: repoconfig.Rollout{Canary: 1, Batch: percent(25), MaxUnavailable: percent(25)},
			},
			want:    [][]string{{"a-5"}, {"a-6", "a-7"}, {"a-8"}},
			skipped: []string{"a-1", "a-2", "a-3", "a-4"},
		},
		{
			name: "the default 25% of 12 with canary 1",
			in: PlanInput{
				Instances: fleet("a", 12),
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 1, Batch: percent(25), MaxUnavailable: percent(25)},
			},
			want: [][]string{{"a-01"}, {"a-02", "a-03", "a-04"}, {"a-05", "a-06", "a-07"}, {"a-08", "a-09", "a-10"}, {"a-11", "a-12"}},
		},
		{
			name: "batches are capped to max_unavailable",
			in: PlanInput{
				Instances: fleet("a", 8),
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 1, Batch: percent(50), MaxUnavailable: percent(25)},
			},
			want:  [][]string{{"a-01"}, {"a-02", "a-03"}, {"a-04", "a-05"}, {"a-06", "a-07"}, {"a-08"}},
			notes: []string{"batches capped to max_unavailable: 2 instances at a time, not 4 (of 8 instances)"},
		},
		{
			name: "a canary bigger than max_unavailable is an error",
			in: PlanInput{
				Instances: fleet("a", 8),
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 3, Batch: percent(25), MaxUnavailable: percent(25)},
				CanSurge:  true,
			},
			err:     "canary 3 exceeds max_unavailable 2 of 8 instances: lower canary or raise max_unavailable",
			errKind: ErrRolloutConfig,
		},
		{
			name: "a canary equal to max_unavailable is fine",
			in: PlanInput{
				Instances: fleet("a", 8),
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 2, Batch: count(2), MaxUnavailable: percent(25)},
			},
			want: [][]string{{"a-01", "a-02"}, {"a-03", "a-04"}, {"a-05", "a-06"}, {"a-07", "a-08"}},
		},
		{
			name: "a negative canary is an error",
			in: PlanInput{
				Instances: fleet("a", 2),
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: -1},
			},
			err:     "canary -1 is not a number of instances: use 1 or more",
			errKind: ErrRolloutConfig,
		},
		{
			name: "by_zone cuts batches at zone boundaries",
			in: PlanInput{
				Instances: append(fleet("a", 3), fleet("b", 3)...),
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 1, Batch: count(4), MaxUnavailable: count(4), ByZone: true},
			},
			want:      [][]string{{"a-01"}, {"a-02", "a-03"}, {"b-01", "b-02", "b-03"}},
			wantZones: []string{"a", "a", "b"},
			noNotes:   true,
		},
		{
			name: "by_zone caps the canary to the first zone",
			in: PlanInput{
				Instances: append(fleet("us-east-1a", 1), fleet("us-east-1b", 3)...),
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 2, Batch: count(2), MaxUnavailable: count(2), ByZone: true},
				CanSurge:  true,
			},
			want:  [][]string{{"us-east-1a-01"}, {"us-east-1b-01", "us-east-1b-02"}, {"us-east-1b-03"}},
			notes: []string{"canary capped to zone us-east-1a (1 instance), not 2"},
		},
		{
			name: "without by_zone batches span zones",
			in: PlanInput{
				Instances: append(fleet("a", 1), fleet("b", 3)...),
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 2, Batch: count(2), MaxUnavailable: count(2)},
			},
			want:      [][]string{{"a-01", "b-01"}, {"b-02", "b-03"}},
			wantZones: []string{"", "b"},
			noNotes:   true,
		},
		{
			name: "a canary bigger than what is left to update is cut to it",
			in: PlanInput{
				Instances: []Instance{cur("a-1", "a"), ok("a-2", "a")},
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 2, Batch: count(2), MaxUnavailable: count(2), ByZone: true},
			},
			want:    [][]string{{"a-2"}},
			skipped: []string{"a-1"},
			noNotes: true,
		},
		{
			name: "a single serving instance surges when the driver can",
			in: PlanInput{
				Instances: []Instance{ok("web-1", "local")},
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 1, Batch: percent(25), MaxUnavailable: percent(25)},
				CanSurge:  true,
			},
			want:      [][]string{{"web-1"}},
			wantSurge: map[int]int{0: 1},
			notes:     []string{"batch 1 (the canary) starts 1 extra instance on abc1234 and puts it in rotation before taking out web-1, the last healthy instance in rotation"},
		},
		{
			name: "a single serving instance is an error when the driver cannot surge",
			in: PlanInput{
				Instances: []Instance{ok("i-0abc", "us-east-1a")},
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 1, Batch: percent(25), MaxUnavailable: percent(25)},
			},
			err:     "only 1 healthy instance is in rotation; updating it would leave none serving, and this driver cannot start an extra instance first: add an instance",
			errKind: ErrNoneServing,
		},
		{
			name: "one serving and one broken in the same zone: the broken one goes first, no surge",
			in: PlanInput{
				Instances: []Instance{ok("a-1", "a"), down("a-2", "a")},
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 1, Batch: count(1), MaxUnavailable: count(1)},
			},
			want: [][]string{{"a-2"}, {"a-1"}},
		},
		{
			name: "starts with another zone rather than take out the last serving instance",
			in: PlanInput{
				Instances: []Instance{ok("a-1", "us-east-1a"), down("b-1", "us-east-1b"), out("c-1", "us-east-1c")},
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 1, Batch: count(1), MaxUnavailable: count(1), ByZone: true},
			},
			want:  [][]string{{"b-1"}, {"a-1"}, {"c-1"}}, // b moves to the front; the rest keep name order
			notes: []string{"started with zone us-east-1b instead of us-east-1a, so the canary does not take out the last healthy instance in rotation"},
		},
		{
			name: "a canary holding every serving instance asks to lower it",
			in: PlanInput{
				Instances: fleet("a", 2),
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 2, Batch: count(2), MaxUnavailable: count(2)},
			},
			err:     "only 2 healthy instances are in rotation; updating them together would leave none serving, and this driver cannot start an extra instance first: lower canary below 2 or add an instance",
			errKind: ErrNoneServing,
		},
		{
			name: "a canary holding every serving instance surges once, later batches need none",
			in: PlanInput{
				Instances: []Instance{ok("a-1", "a"), down("a-2", "a"), down("a-3", "a")},
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 3, Batch: count(3), MaxUnavailable: count(3)},
				CanSurge:  true,
			},
			want:      [][]string{{"a-2", "a-3", "a-1"}},
			wantSurge: map[int]int{0: 1},
		},
		{
			name: "an instance already updated keeps serving, so no surge",
			in: PlanInput{
				Instances: []Instance{cur("a-1", "a"), ok("a-2", "a")},
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 1, Batch: count(1), MaxUnavailable: count(1)},
			},
			want:    [][]string{{"a-2"}},
			skipped: []string{"a-1"},
		},
		{
			name: "nothing serving: nothing to protect, so it goes ahead",
			in: PlanInput{
				Instances: []Instance{down("a-1", "a"), out("a-2", "a")},
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 2, Batch: count(2), MaxUnavailable: count(2)},
			},
			want:  [][]string{{"a-1", "a-2"}},
			notes: []string{"no instance is healthy and in rotation, so nothing is serving to protect"},
		},
		{
			name: "everything already on the release: no batches",
			in: PlanInput{
				Instances: []Instance{cur("a-1", "a"), cur("b-1", "b")},
				Release:   newRelease,
				Rollout:   repoconfig.Rollout{Canary: 1},
			},
			skipped: []string{"a-1", "b-1"},
			notes:   []string{"all 2 instances already run abc1234, healthy and in rotation: nothing to do"},
		},
		{
			name:    "no instances is an error",
			in:      PlanInput{Release: newRelease, Rollout: repoconfig.Rollout{Canary: 1}, CanSurge: true},
			err:     "no instances found: there is nothing to deploy to; check the environment's instances (local driver) or instance_tags (aws driver)",
			errKind: ErrNoInstances,
		},
		{
			name:    "no release is an error",
			in:      PlanInput{Instances: fleet("a", 1), CanSurge: true},
			err:     "no release given: a plan needs the SHA to deploy",
			errKind: ErrInvalidInput,
		},
		{
			name:    "an id twice is an error",
			in:      PlanInput{Instances: []Instance{ok("a-1", "a"), ok("a-1", "b")}, Release: newRelease},
			err:     "instance a-1 is listed twice",
			errKind: ErrInvalidInput,
		},
		{
			name:    "an instance without an id is an error",
			in:      PlanInput{Instances: []Instance{ok("", "a")}, Release: newRelease},
			err:     `an instance in zone "a" has no id`,
			errKind: ErrInvalidInput,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := PlanRollout(tt.in)
			if tt.err != "" {
				if err == nil {
					t.Fatalf("want error %q, got plan %v", tt.err, ids(p))
				}
				var pe *PlanError
				if !errors.As(err, &pe) {
					t.Fatalf("error %v is no *PlanError", err)
				}
				if got := report.Reason(pe.Reason); got != tt.err {
					t.Errorf("error:\n got %q\nwant %q", got, tt.err)
				}
				if !errors.Is(err, tt.errKind) {
					t.Errorf("errors.Is(%v, %v) = false", err, tt.errKind)
				}
				var perm interface{ Permanent() bool }
				if !errors.As(err, &perm) || !perm.Permanent() {
					t.Errorf("a plan error must be permanent: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got := ids(p); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("batches:\n got %v\nwant %v", got, tt.want)
			}
			var skipped []string
			for _, inst := range p.Skipped {
				skipped = append(skipped, inst.ID)
			}
			if !slices.Equal(skipped, tt.skipped) {
				t.Errorf("skipped: got %v, want %v", skipped, tt.skipped)
			}
			for i, b := range p.Batches {
				if b.Index != i || b.Canary != (i == 0) {
					t.Errorf("batch %d: Index %d, Canary %t", i, b.Index, b.Canary)
				}
				if b.Surge != tt.wantSurge[i] {
					t.Errorf("batch %d: Surge %d, want %d", i, b.Surge, tt.wantSurge[i])
				}
				if tt.wantZones != nil && b.Zone != tt.wantZones[i] {
					t.Errorf("batch %d: Zone %q, want %q", i, b.Zone, tt.wantZones[i])
				}
			}
			if p.Release != tt.in.Release {
				t.Errorf("Release %q, want %q", p.Release, tt.in.Release)
			}
			notes := report.PlanNotes(p.Notes)
			for _, want := range tt.notes {
				if !slices.ContainsFunc(notes, func(n string) bool { return strings.Contains(n, want) }) {
					t.Errorf("no note contains %q; notes: %q", want, notes)
				}
			}
			if tt.noNotes && len(notes) > 0 {
				t.Errorf("want no notes, got %q", notes)
			}
			checkPlan(t, tt.in, p, nil)
		})
	}
}

// fleet is n serving instances on the old release in one zone, ids zone-01….
func fleet(zone string, n int) []Instance {
	var out []Instance
	for i := 1; i <= n; i++ {
		out = append(out, ok(fmt.Sprintf("%s-%02d", zone, i), zone))
	}
	return out
}

// genInput builds a fleet and rollout settings from raw bytes, so the fuzzer
// and the seeded loop explore the same space: up to 40 instances in 1–4
// zones, each byte one instance's zone, health, rotation and release.
func genInput(data []byte, canary, batch, maxUnavailable, flags uint8) PlanInput {
	data = data[:min(len(data), 40)]
	zones := int(flags>>4&3) + 1
	releases := []string{oldRelease, newRelease, "", "another"}
	in := PlanInput{Release: newRelease, CanSurge: flags&2 != 0}
	for i, b := range data {
		in.Instances = append(in.Instances, Instance{
			// Ids scrambled so id order differs from input order.
			ID:         fmt.Sprintf("i-%02d", (i*7+3)%41),
			Zone:       fmt.Sprintf("zone-%c", 'a'+int(b&3)%zones),
			Healthy:    b&4 != 0,
			InRotation: b&8 != 0,
			Release:    releases[b>>4&3],
		})
	}
	amount := func(v uint8, pct bool) repoconfig.Amount {
		if pct {
			return percent(float64(v%100) + 1)
		}
		return count(int(v % 12)) // 0 resolves to 1
	}
	in.Rollout = repoconfig.Rollout{
		Canary:         int(canary % 6), // 0: the default, 1
		Batch:          amount(batch, flags&4 != 0),
		MaxUnavailable: amount(maxUnavailable, flags&8 != 0),
		ByZone:         flags&1 != 0,
	}
	return in
}

// checkPlan asserts the properties every plan (or plan error) must have.
// rng, when set, shuffles the input to check that order does not matter.
func checkPlan(t *testing.T, in PlanInput, p Plan, rng *rand.Rand) {
	t.Helper()
	got, err := PlanRollout(in)
	if err != nil {
		t.Fatalf("checkPlan: unexpected error %v", err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Fatalf("two runs on the same input differ:\n%+v\n%+v", got, p)
	}
	checkResult(t, in, p, nil, rng)
}

func checkResult(t *testing.T, in PlanInput, p Plan, err error, rng *rand.Rand) {
	t.Helper()
	total := len(in.Instances)
	canary := max(in.Rollout.Canary, 1)
	maxU := in.Rollout.MaxUnavailable.Of(max(total, 1))
	size := min(in.Rollout.Batch.Of(total), maxU)
	serving := 0
	var onRelease []string
	for _, inst := range in.Instances {
		if inst.serving() {
			serving++
			if inst.Release == in.Release {
				onRelease = append(onRelease, inst.ID)
			}
		}
	}

	// Deterministic, whatever the order of the input.
	if rng != nil {
		shuffled := in
		shuffled.Instances = slices.Clone(in.Instances)
		rng.Shuffle(len(shuffled.Instances), reflect.Swapper(shuffled.Instances))
		p2, err2 := PlanRollout(shuffled)
		if !reflect.DeepEqual(p, p2) || fmt.Sprint(err) != fmt.Sprint(err2) {
			t.Fatalf("input order changed the result:\n%+v %v\n%+v %v", p, err, p2, err2)
		}
	}

	switch {
	case total == 0:
		if !errors.Is(err, ErrNoInstances) {
			t.Fatalf("empty fleet: want ErrNoInstances, got %v", err)
		}
		return
	case canary > maxU:
		if !errors.Is(err, ErrRolloutConfig) {
			t.Fatalf("canary %d > max_unavailable %d: want ErrRolloutConfig, got %v", canary, maxU, err)
		}
		return
	case errors.Is(err, ErrNoneServing):
		if in.CanSurge || serving == 0 || serving > canary || len(onRelease) > 0 {
			t.Fatalf("ErrNoneServing with CanSurge %t, %d serving, canary %d, %d already updated: %v", in.CanSurge, serving, canary, len(onRelease), err)
		}
		// With a canary of 1, only a lone serving instance can be the last one.
		if canary == 1 && total != 1 {
			t.Fatalf("ErrNoneServing with canary 1 and %d instances: another zone's broken instance could go first", total)
		}
		return
	case err != nil:
		t.Fatalf("unexpected error: %v", err)
	}

	if p.Release != in.Release {
		t.Fatalf("Release %q", p.Release)
	}
	// Skipped: exactly the instances already serving the release.
	var skipped []string
	for _, inst := range p.Skipped {
		skipped = append(skipped, inst.ID)
	}
	slices.Sort(onRelease)
	if !slices.Equal(slices.Sorted(slices.Values(skipped)), onRelease) {
		t.Fatalf("skipped %v, want %v", skipped, onRelease)
	}

	// Every other instance in exactly one batch, unchanged.
	byID := map[string]Instance{}
	for _, inst := range in.Instances {
		byID[inst.ID] = inst
	}
	placed := map[string]int{}
	for _, id := range skipped {
		placed[id]++
	}
	for i, b := range p.Batches {
		if b.Index != i || b.Canary != (i == 0) {
			t.Fatalf("batch %d: Index %d Canary %t", i, b.Index, b.Canary)
		}
		if len(b.Instances) == 0 {
			t.Fatalf("batch %d is empty", i)
		}
		for _, inst := range b.Instances {
			if byID[inst.ID] != inst {
				t.Fatalf("batch %d holds %+v, not the input's %+v", i, inst, byID[inst.ID])
			}
			placed[inst.ID]++
		}
	}
	for id := range byID {
		if placed[id] != 1 {
			t.Fatalf("instance %s placed %d times", id, placed[id])
		}
	}

	// Sizes: never more than max_unavailable; canary then batch sized.
	todo := total - len(skipped)
	for i, b := range p.Batches {
		n := len(b.Instances)
		if n > maxU {
			t.Fatalf("batch %d has %d instances, max_unavailable is %d", i, n, maxU)
		}
		limit := size
		if i == 0 {
			limit = canary
		}
		if n > limit {
			t.Fatalf("batch %d has %d instances, limit %d", i, n, limit)
		}
		if !in.Rollout.ByZone && i < len(p.Batches)-1 && n != limit {
			t.Fatalf("without by_zone only the last batch may be short: batch %d has %d of %d", i, n, limit)
		}
	}
	if len(p.Batches) > 0 && !in.Rollout.ByZone && len(p.Batches[0].Instances) != min(canary, todo) {
		t.Fatalf("canary has %d instances, want %d", len(p.Batches[0].Instances), min(canary, todo))
	}

	// Zones: Batch.Zone is the shared zone; by_zone batches stay in one zone
	// and each zone's batches are consecutive; within a zone broken first,
	// then by id.
	lastZone, doneZones := "", map[string]bool{}
	perZone := map[string][]Instance{}
	for i, b := range p.Batches {
		zone := b.Instances[0].Zone
		for _, inst := range b.Instances {
			if inst.Zone != zone {
				zone = ""
			}
			perZone[inst.Zone] = append(perZone[inst.Zone], inst)
		}
		if b.Zone != zone {
			t.Fatalf("batch %d: Zone %q, want %q", i, b.Zone, zone)
		}
		if in.Rollout.ByZone {
			if zone == "" {
				t.Fatalf("by_zone: batch %d spans zones", i)
			}
			if zone != lastZone {
				if doneZones[zone] {
					t.Fatalf("by_zone: zone %s comes back in batch %d", zone, i)
				}
				doneZones[lastZone] = true
				lastZone = zone
			}
		}
	}
	for zone, list := range perZone {
		if !slices.IsSortedFunc(list, brokenFirstRef) {
			t.Fatalf("zone %s not broken-first then by id: %+v", zone, list)
		}
	}

	// Simulate: while a batch is out, something serves (counting surge)
	// whenever something served at the start; surge only when needed.
	up := map[string]bool{}
	for _, inst := range in.Instances {
		if inst.Healthy && inst.InRotation {
			up[inst.ID] = true
		}
	}
	for i, b := range p.Batches {
		outside := 0
		inBatch := map[string]bool{}
		for _, inst := range b.Instances {
			inBatch[inst.ID] = true
		}
		for id := range up {
			if !inBatch[id] {
				outside++
			}
		}
		if b.Surge != 0 && (b.Surge != 1 || !in.CanSurge || outside > 0 || serving == 0) {
			t.Fatalf("batch %d: Surge %d with CanSurge %t, %d serving outside, %d at start", i, b.Surge, in.CanSurge, outside, serving)
		}
		if serving > 0 && outside+b.Surge == 0 {
			t.Fatalf("batch %d leaves nothing serving (started with %d)", i, serving)
		}
		for id := range inBatch {
			up[id] = true
		}
	}
}

// brokenFirstRef restates the ordering rule independently of the code under test.
func brokenFirstRef(a, b Instance) int {
	ra, rb := 1, 1
	if !(a.Healthy && a.InRotation) {
		ra = 0
	}
	if !(b.Healthy && b.InRotation) {
		rb = 0
	}
	if ra != rb {
		return ra - rb
	}
	return strings.Compare(a.ID, b.ID)
}

// TestPlanProperties is the seeded loop: many random fleets, each checked
// like the fuzzer checks them.
func TestPlanProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n := 10000
	if testing.Short() {
		n = 2000
	}
	for range n {
		data := make([]byte, 1+rng.IntN(40))
		for i := range data {
			data[i] = byte(rng.UintN(256))
		}
		in := genInput(data, byte(rng.UintN(256)), byte(rng.UintN(256)), byte(rng.UintN(256)), byte(rng.UintN(256)))
		p, err := PlanRollout(in)
		checkResult(t, in, p, err, rng)
		if t.Failed() {
			t.Fatalf("input: %+v", in)
		}
	}
}

func FuzzPlan(f *testing.F) {
	f.Add([]byte{0x0c}, uint8(1), uint8(1), uint8(1), uint8(0)) // one serving instance, no surge
	f.Add([]byte{0x0c}, uint8(1), uint8(1), uint8(1), uint8(2)) // one serving instance, surge
	f.Add([]byte{0x0c, 0x01, 0x1c, 0x0e}, uint8(2), uint8(25), uint8(50), uint8(0x3d))
	f.Add([]byte{0x00, 0x01, 0x02, 0x03}, uint8(0), uint8(0), uint8(0), uint8(0x30))
	f.Add(make([]byte, 40), uint8(5), uint8(24), uint8(49), uint8(0x3f))
	f.Add([]byte{}, uint8(1), uint8(1), uint8(1), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, canary, batch, maxUnavailable, flags uint8) {
		in := genInput(data, canary, batch, maxUnavailable, flags)
		p, err := PlanRollout(in)
		checkResult(t, in, p, err, rand.New(rand.NewPCG(uint64(len(data)), uint64(flags))))
	})
}
