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

	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/store/record"
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
	Skipped []Instance // already on the release, healthy and in rotation (any, with OnlyDrifted): not touched
	// Notes are the plan's decisions worth knowing, for people
	// (report.PlanNotes says them).
	Notes []record.Reason
}

// PlanInput is everything a plan depends on; PlanRollout reads nothing else.
type PlanInput struct {
	Instances []Instance
	Release   string
	Rollout   repoconfig.Rollout
	CanSurge  bool // the driver can start an extra instance (local: yes; aws fleets: no)
	// OnlyDrifted plans a drift repair: only the instances on another
	// release than Release are updated; those already on it are left
	// alone whatever their health or rotation (a repair is about
	// releases, and an instance someone took out of rotation on the
	// current release is theirs to put back).
	OnlyDrifted bool
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

// PlanError is why no plan could be made. Planning is deterministic, so
// retrying the same input cannot help: it is permanent.
type PlanError struct {
	Kind   error         // one of the Err* values above
	Reason record.Reason // why, for people (report.Reason says it)
}

func (e *PlanError) Error() string   { return fmt.Sprintf("%v (%s)", e.Kind, e.Reason.Kind) }
func (e *PlanError) Unwrap() error   { return e.Kind }
func (e *PlanError) Permanent() bool { return true }

func planError(kind error, why record.Reason) error {
	return &PlanError{Kind: kind, Reason: why}
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
	if err := checkInput(in); err != nil {
		return Plan{}, err
	}
	canary, maxUnavailable, err := canaryOf(in)
	if err != nil {
		return Plan{}, err
	}
	total := len(in.Instances)
	plan := Plan{Release: in.Release}
	batchSize := in.Rollout.Batch.Of(total)
	if batchSize > maxUnavailable {
		plan.note(record.Reason{Kind: record.ReasonNoteBatchesCapped, Limit: maxUnavailable, Want: batchSize, Of: total})
		batchSize = maxUnavailable
	}

	f := plan.sortFleet(in)
	if len(f.names) == 0 {
		plan.note(record.Reason{Kind: record.ReasonNoteAllCurrent, Of: total, Release: in.Release})
		return plan, nil
	}
	switch {
	case f.serving == 0:
		plan.note(record.Reason{Kind: record.ReasonNoteNothingServing})
	case f.broken > 0:
		plan.note(record.Reason{Kind: record.ReasonNoteBrokenFirst, Count: f.broken})
	}
	batches := plan.cutZones(in, f, canary, batchSize)
	if err := plan.surge(in, batches); err != nil {
		return Plan{}, err
	}
	plan.Batches = batches
	return plan, nil
}

// checkInput refuses what no fleet can look like.
func checkInput(in PlanInput) error {
	if len(in.Instances) == 0 {
		return planError(ErrNoInstances, record.Reason{Kind: record.ReasonNoInstances})
	}
	if in.Release == "" {
		return planError(ErrInvalidInput, record.Reason{Kind: record.ReasonNoRelease})
	}
	seen := make(map[string]bool, len(in.Instances))
	for _, inst := range in.Instances {
		if inst.ID == "" {
			return planError(ErrInvalidInput, record.Reason{Kind: record.ReasonInstanceWithoutID, Zone: inst.Zone})
		}
		if seen[inst.ID] {
			return planError(ErrInvalidInput, record.Reason{Kind: record.ReasonInstanceTwice, Instance: inst.ID})
		}
		seen[inst.ID] = true
	}
	return nil
}

// canaryOf is the canary's size and max_unavailable, when they agree.
func canaryOf(in PlanInput) (canary, maxUnavailable int, err error) {
	total := len(in.Instances)
	canary = in.Rollout.Canary
	if canary < 0 {
		return 0, 0, planError(ErrRolloutConfig, record.Reason{Kind: record.ReasonCanaryInvalid, Want: canary})
	}
	if canary == 0 {
		canary = 1
	}
	maxUnavailable = in.Rollout.MaxUnavailable.Of(total)
	if canary > maxUnavailable {
		return 0, 0, planError(ErrRolloutConfig, record.Reason{Kind: record.ReasonCanaryOverMaxUnavailable, Want: canary, Limit: maxUnavailable, Of: total})
	}
	return canary, maxUnavailable, nil
}

// zoned is the instances to update, by zone.
type zoned struct {
	zones   map[string][]Instance // each zone's, broken first, then by id
	names   []string              // the zones, in name order
	serving int                   // in the whole fleet
	broken  int                   // of the instances to update
}

// sortFleet puts aside the instances already on the release (p.Skipped)
// and sorts the others by zone.
func (p *Plan) sortFleet(in PlanInput) zoned {
	f := zoned{zones: map[string][]Instance{}}
	for _, inst := range in.Instances {
		if inst.serving() {
			f.serving++
		}
		if inst.Release == in.Release && (inst.serving() || in.OnlyDrifted) {
			p.Skipped = append(p.Skipped, inst)
			continue
		}
		if !inst.serving() {
			f.broken++ // to be replaced first: only those the plan updates
		}
		f.zones[inst.Zone] = append(f.zones[inst.Zone], inst)
	}
	slices.SortFunc(p.Skipped, byZoneThenID)
	for name, list := range f.zones {
		slices.SortFunc(list, brokenFirst)
		f.names = append(f.names, name)
	}
	slices.Sort(f.names)
	return f
}

// cutZones cuts the batches taking the zones in name order; if the canary
// would take out every serving instance, it tries starting with each other
// zone before surge or failure.
func (p *Plan) cutZones(in PlanInput, f zoned, canary, size int) []Batch {
	var batches []Batch
	var capped *record.Reason
	for first := range f.names {
		order := make([]string, 0, len(f.names))
		order = append(order, f.names[first])
		order = append(order, f.names[:first]...)
		order = append(order, f.names[first+1:]...)
		b, c := cut(order, f.zones, canary, size, in.Rollout.ByZone)
		if first == 0 {
			batches, capped = b, c
		}
		if len(leavesNoneServing(in.Instances, b)) == 0 {
			if first > 0 {
				batches, capped = b, c
				p.note(record.Reason{Kind: record.ReasonNoteZoneFirst, Zone: order[0], InsteadOf: f.names[0]})
			}
			break
		}
	}
	if capped != nil {
		p.note(*capped)
	}
	return batches
}

// surge asks for an extra instance in each batch that would otherwise
// take out the last serving one, or fails when the driver cannot start one.
func (p *Plan) surge(in PlanInput, batches []Batch) error {
	for _, i := range leavesNoneServing(in.Instances, batches) {
		b := &batches[i]
		var ids []string
		for _, inst := range b.Instances {
			if inst.serving() {
				ids = append(ids, inst.ID)
			}
		}
		if !in.CanSurge {
			return planError(ErrNoneServing, record.Reason{Kind: record.ReasonNoneLeftServing, Count: len(ids)})
		}
		b.Surge = 1
		p.note(record.Reason{Kind: record.ReasonNoteSurge, Batch: b.Index, Canary: b.Canary, Release: in.Release, Instances: ids})
	}
	return nil
}

// cut splits the instances to update into batches, taking zones in order:
// the canary first, then batches of size; with byZone no batch spans two
// zones. It returns the note to give when the canary was cut short by its
// zone.
func cut(order []string, zones map[string][]Instance, canary, size int, byZone bool) ([]Batch, *record.Reason) {
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

	var note *record.Reason
	if byZone {
		firstZone := zones[order[0]]
		if canary > len(firstZone) && len(order) > 1 {
			note = &record.Reason{Kind: record.ReasonNoteCanaryCapped, Zone: order[0], Count: len(firstZone), Want: canary}
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

func (p *Plan) note(why record.Reason) {
	p.Notes = append(p.Notes, why)
}
