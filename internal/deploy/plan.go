// Package deploy is shipbot's engine: it decides how a release reaches an
// environment (the plan, its batches, the safety rules of SPEC §6) and drives
// a rollout through the drivers, locks and stores it declares. It knows
// nothing of GitHub, Redis or AWS.
package deploy

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/shipbot/shipbot/internal/repoconfig"
)

// Instance is one running copy of the application as a driver sees it at the
// moment of planning.
type Instance struct {
	ID         string
	Zone       string
	Release    string // SHA it runs now; "" when unknown / fresh
	Healthy    bool   // passing health checks now
	InRotation bool   // receiving traffic now
}

// serving reports whether the instance is answering customers now.
func (i Instance) serving() bool { return i.Healthy && i.InRotation }

// Batch is a group of instances updated together: out of rotation, install,
// healthy, back in rotation.
type Batch struct {
	Index     int        // 0-based
	Canary    bool       // the first batch, and only it
	Zone      string     // the zone when all instances share one, else ""
	Instances []Instance // the instances taken out, updated and put back in this batch
	// Surge is how many extra instances to start on the new release and put in
	// rotation BEFORE this batch's instances leave rotation, removed after the
	// batch is healthy again. 0 normally; 1 when the batch holds every
	// instance still serving and the driver can start one.
	Surge int
}

// Plan is how one release reaches one environment's instances.
type Plan struct {
	Batches []Batch
	Release string
	Skipped []Instance // already on the release, healthy and in rotation: not touched
	Notes   []string   // sentences for people explaining the plan's decisions
}

// PlanInput is everything a plan depends on; PlanRollout reads nothing else.
type PlanInput struct {
	Instances []Instance
	Release   string
	Rollout   repoconfig.Rollout
	CanSurge  bool // the driver can start an extra instance (local: yes; aws fleets: no)
}

// The kinds of PlanError, for errors.Is.
var (
	// ErrNoInstances: the environment has no instances to deploy to.
	ErrNoInstances = errors.New("no instances found")
	// ErrRolloutConfig: the rollout settings contradict each other for this fleet.
	ErrRolloutConfig = errors.New("rollout settings cannot be followed")
	// ErrNoneServing: the plan would take out the last healthy instance in
	// rotation and the driver cannot start an extra one first.
	ErrNoneServing = errors.New("rollout would leave no instance serving")
	// ErrInvalidInput: the caller passed something no fleet can look like
	// (no release, an instance without an id, an id twice).
	ErrInvalidInput = errors.New("invalid plan input")
)

// PlanError says in plain words why no plan could be made. Planning is
// deterministic, so retrying the same input cannot help: it is permanent.
type PlanError struct {
	Kind error // one of the Err* values above
	Msg  string
}

func (e *PlanError) Error() string   { return e.Msg }
func (e *PlanError) Unwrap() error   { return e.Kind }
func (e *PlanError) Permanent() bool { return true }

func planError(kind error, format string, args ...any) error {
	return &PlanError{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// PlanRollout decides the batches that put in.Release on every instance of
// the fleet, following SPEC §6.1. It is pure: the same input gives the same
// plan whatever the order of in.Instances, and nothing is touched on error.
//
// Decisions worth knowing:
//   - Percentages (batch, max_unavailable) are of the whole fleet, skipped
//     instances included: "25%" means the same batch size on a first deploy
//     and on a re-run that finds half the fleet already updated, and
//     max_unavailable is about the fleet's capacity, which the skipped
//     instances are part of.
//   - max_unavailable caps every batch, the canary included, counting each
//     instance the batch handles whatever its state; instances already down
//     outside the batch are not counted (the bot did not take them out, and
//     they are replaced first).
//   - Zones are taken in name order, each one's broken instances (unhealthy
//     or out of rotation) first, then by id: replacing a broken instance costs
//     no capacity. Only the canary can ever take out the last serving
//     instance (after it, its own instances serve), so when it would, the
//     plan first tries starting with another zone; failing that it asks for a
//     surge of 1, or fails when the driver cannot surge.
func PlanRollout(in PlanInput) (Plan, error) {
	total := len(in.Instances)
	if total == 0 {
		return Plan{}, planError(ErrNoInstances, "no instances found: there is nothing to deploy to; check the environment's instances (local driver) or instance_tags (aws driver)")
	}
	if in.Release == "" {
		return Plan{}, planError(ErrInvalidInput, "no release given: a plan needs the SHA to deploy")
	}
	seen := make(map[string]bool, total)
	for _, inst := range in.Instances {
		if inst.ID == "" {
			return Plan{}, planError(ErrInvalidInput, "an instance in zone %q has no id", inst.Zone)
		}
		if seen[inst.ID] {
			return Plan{}, planError(ErrInvalidInput, "instance %s is listed twice", inst.ID)
		}
		seen[inst.ID] = true
	}

	ro := in.Rollout
	canary := ro.Canary
	if canary < 0 {
		return Plan{}, planError(ErrRolloutConfig, "canary %d is not a number of instances: use 1 or more", canary)
	}
	if canary == 0 {
		canary = 1
	}
	maxUnavailable := ro.MaxUnavailable.Of(total)
	if canary > maxUnavailable {
		return Plan{}, planError(ErrRolloutConfig, "canary %d exceeds max_unavailable %d of %d instances: lower canary or raise max_unavailable", canary, maxUnavailable, total)
	}

	plan := Plan{Release: in.Release}
	batchSize := ro.Batch.Of(total)
	if batchSize > maxUnavailable {
		plan.note("batches capped to max_unavailable: %s at a time, not %d (of %s)", instances(maxUnavailable), batchSize, instances(total))
		batchSize = maxUnavailable
	}

	serving, broken := 0, 0
	zones := map[string][]Instance{}
	for _, inst := range in.Instances {
		if inst.serving() {
			serving++
		} else {
			broken++
		}
		if inst.Release == in.Release && inst.serving() {
			plan.Skipped = append(plan.Skipped, inst)
			continue
		}
		zones[inst.Zone] = append(zones[inst.Zone], inst)
	}
	slices.SortFunc(plan.Skipped, byZoneThenID)
	zoneNames := make([]string, 0, len(zones))
	for name, list := range zones {
		slices.SortFunc(list, brokenFirst)
		zoneNames = append(zoneNames, name)
	}
	slices.Sort(zoneNames)

	if len(zoneNames) == 0 {
		plan.note("all %s already run %s, healthy and in rotation: nothing to do", instances(total), short(in.Release))
		return plan, nil
	}
	switch {
	case serving == 0:
		plan.note("no instance is healthy and in rotation, so nothing is serving to protect: batches go ahead without keeping one serving")
	case broken > 0:
		plan.note("%s unhealthy or out of rotation; each zone's are replaced first, which costs no capacity", isAre(broken))
	}

	// Try the zones in name order; if the canary would take out every serving
	// instance, try starting with each other zone before surging or failing.
	var batches []Batch
	var capNote string
	for first := range zoneNames {
		order := make([]string, 0, len(zoneNames))
		order = append(order, zoneNames[first])
		order = append(order, zoneNames[:first]...)
		order = append(order, zoneNames[first+1:]...)
		b, cn := cut(order, zones, canary, batchSize, ro.ByZone)
		if first == 0 {
			batches, capNote = b, cn
		}
		if len(leavesNoneServing(in.Instances, b)) == 0 {
			if first > 0 {
				batches, capNote = b, cn
				plan.note("started with zone %s instead of %s, so the canary does not take out the last healthy instance in rotation", zoneLabel(order[0]), zoneLabel(zoneNames[0]))
			}
			break
		}
	}
	if capNote != "" {
		plan.note("%s", capNote)
	}

	for _, i := range leavesNoneServing(in.Instances, batches) {
		b := &batches[i]
		var ids []string
		for _, inst := range b.Instances {
			if inst.serving() {
				ids = append(ids, inst.ID)
			}
		}
		if !in.CanSurge {
			n := len(ids)
			fix := "add an instance"
			if n > 1 {
				// A canary of 1 leaves the others serving.
				fix = fmt.Sprintf("lower canary below %d or add an instance", n)
			}
			return Plan{}, planError(ErrNoneServing, "only %s in rotation; updating %s would leave none serving, and this driver cannot start an extra instance first: %s",
				pluralize(n, "healthy instance is", "healthy instances are"), itThem(n), fix)
		}
		b.Surge = 1
		plan.note("%s starts 1 extra instance on %s and puts it in rotation before taking out %s, the last healthy %s in rotation", batchLabel(*b), short(in.Release), strings.Join(ids, ", "), word(len(ids), "instance", "instances"))
	}
	plan.Batches = batches
	return plan, nil
}

// cut splits the instances to update into batches, taking zones in order:
// the canary first, then batches of size; with byZone no batch spans two
// zones. It returns the note to give when the canary was cut short by its
// zone.
func cut(order []string, zones map[string][]Instance, canary, size int, byZone bool) ([]Batch, string) {
	var batches []Batch
	add := func(list []Instance) {
		b := Batch{Index: len(batches), Canary: len(batches) == 0, Instances: list, Zone: list[0].Zone}
		for _, inst := range list {
			if inst.Zone != b.Zone {
				b.Zone = ""
			}
		}
		batches = append(batches, b)
	}
	chunk := func(list []Instance, n int) []Instance {
		n = min(n, len(list))
		add(slices.Clone(list[:n]))
		return list[n:]
	}

	var note string
	if byZone {
		firstZone := zones[order[0]]
		if canary > len(firstZone) && len(order) > 1 {
			note = fmt.Sprintf("canary capped to zone %s (%s), not %d: by_zone keeps every batch within one zone", zoneLabel(order[0]), instances(len(firstZone)), canary)
		}
		for i, name := range order {
			list := zones[name]
			if i == 0 {
				list = chunk(list, canary)
			}
			for len(list) > 0 {
				list = chunk(list, size)
			}
		}
		return batches, note
	}

	var all []Instance
	for _, name := range order {
		all = append(all, zones[name]...)
	}
	all = chunk(all, canary)
	for len(all) > 0 {
		all = chunk(all, size)
	}
	return batches, note
}

// leavesNoneServing simulates the rollout and returns the indexes of batches
// that, while out of rotation, would leave no healthy instance in rotation
// although one was serving before. After a batch succeeds its instances are
// healthy, in rotation, on the new release; instances down before do not
// count as serving until their batch has run.
func leavesNoneServing(fleet []Instance, batches []Batch) []int {
	up := make(map[string]bool, len(fleet))
	serving := 0
	for _, inst := range fleet {
		if inst.serving() {
			up[inst.ID] = true
			serving++
		}
	}
	if serving == 0 {
		return nil // nothing to protect
	}
	var out []int
	for i, b := range batches {
		outside := serving
		for _, inst := range b.Instances {
			if up[inst.ID] {
				outside--
			}
		}
		if outside == 0 {
			out = append(out, i)
		}
		for _, inst := range b.Instances {
			if !up[inst.ID] {
				up[inst.ID] = true
				serving++
			}
		}
	}
	return out
}

func byZoneThenID(a, b Instance) int {
	return cmp.Or(cmp.Compare(a.Zone, b.Zone), cmp.Compare(a.ID, b.ID))
}

// brokenFirst orders one zone's instances: those not serving first, then by id.
func brokenFirst(a, b Instance) int {
	if a.serving() != b.serving() {
		if a.serving() {
			return 1
		}
		return -1
	}
	return cmp.Compare(a.ID, b.ID)
}

func (p *Plan) note(format string, args ...any) {
	p.Notes = append(p.Notes, fmt.Sprintf(format, args...))
}

// short is a release as people read it: a SHA's first 7 characters.
func short(release string) string {
	if len(release) > 7 {
		return release[:7]
	}
	return release
}

// word is one or many by n; pluralize prefixes n.
func word(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func pluralize(n int, one, many string) string { return fmt.Sprintf("%d %s", n, word(n, one, many)) }

func instances(n int) string { return pluralize(n, "instance", "instances") }
func isAre(n int) string     { return pluralize(n, "instance is", "instances are") }

func itThem(n int) string {
	if n == 1 {
		return "it"
	}
	return "them together"
}

func zoneLabel(zone string) string {
	if zone == "" {
		return `"" (no zone)`
	}
	return zone
}

func batchLabel(b Batch) string {
	if b.Canary {
		return fmt.Sprintf("batch %d (the canary)", b.Index+1)
	}
	return fmt.Sprintf("batch %d", b.Index+1)
}
