package deploy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/shipbot/shipbot/internal/repoconfig"
)

// EventKind says what just happened in a rollout.
type EventKind int

const (
	// Planned: the plan is made (Event.Plan); nothing has been touched yet.
	Planned EventKind = iota + 1
	// BatchStarted: batch Event.Batch begins.
	BatchStarted
	// InstanceStep: Event.Step begins on Event.Instance. During a rollback
	// (after RollingBack) the steps put Result.Previous back.
	InstanceStep
	// BatchHealthy: the batch's instances run the release, healthy and back
	// in rotation.
	BatchHealthy
	// Baking: the batch's bake begins.
	Baking
	// BatchFailed: a step failed; Instance and Step say where, Err why.
	BatchFailed
	// RollingBack: the instances this deploy touched are being put back on
	// Result.Previous, batch by batch.
	RollingBack
	// RolledBack: the rollback ended; Err is nil only when every touched
	// instance is back. Batch is the failed batch, or the batch where the
	// rollback itself failed (with Instance and Step).
	RolledBack
	// Finished: always the last event; Event.Result is set.
	Finished
)

var eventNames = [...]string{"", "planned", "batch started", "instance step", "batch healthy", "baking", "batch failed", "rolling back", "rolled back", "finished"}

func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// The steps of a batch, as Event.Step and in failure reasons.
const (
	StepSurge   = "surge"   // start an extra instance (Surger) before the batch leaves rotation
	StepDrain   = "drain"   // out of rotation, in-flight requests finished
	StepInstall = "install" // the release onto the instance
	StepHealth  = "health"  // healthy_after consecutive passing checks
	StepAdmit   = "admit"   // back into rotation, and one passing check there
	StepBake    = "bake"    // checks every interval for rollout.bake
	StepRetire  = "retire"  // stop the extra instance again
)

// Event is one moment of a rollout, handed to ExecInput.Report.
type Event struct {
	Kind     EventKind
	Plan     *Plan // nil only for a Finished event when no plan could be made
	Batch    int   // index into Plan.Batches
	Instance string
	Step     string
	Err      error
	At       time.Time
	Result   *Result // Finished only
}

// Outcome is how a rollout ended, as the deployment status reports it.
type Outcome string

const (
	OutcomeSuccess Outcome = "success"
	// OutcomeFailure: a batch failed (or the build did); Result.Reason says
	// where and what was rolled back.
	OutcomeFailure Outcome = "failure"
	// OutcomeError: the rollout could not begin (no plan, driver
	// unreachable, settings that cannot be followed); nothing was touched.
	OutcomeError Outcome = "error"
	// OutcomeCancelled: ctx ended; nothing was rolled back, so that the job
	// resumes where it stopped.
	OutcomeCancelled Outcome = "cancelled"
)

// BatchResult is what one batch took; the release history keeps it.
type BatchResult struct {
	Index             int
	Rollback          bool // putting Result.Previous back after a failure
	Instances         []string
	Started, Finished time.Time
	Drain, Install    time.Duration
	Health, Admit     time.Duration // Admit includes the confirming check in rotation
	Bake              time.Duration
	Err               string // the failure, in words; "" when the batch succeeded
}

// Result is how a rollout ended.
type Result struct {
	Outcome  Outcome
	Release  Release
	Previous string
	Batches  []BatchResult
	// Reason is one sentence a person can act on: for a failure it names
	// the batch, instance, step and release, and what was rolled back or
	// left where.
	Reason         string
	FailedInstance string
	RolledBack     []string // instances put back on Previous, in the order they were
	Started        time.Time
	Finished       time.Time
}

// ExecInput is everything a rollout depends on.
type ExecInput struct {
	Target   Target
	Release  Release
	Previous string // SHA to roll back to on failure; "" on a first deploy
	Driver   Driver // may also implement Surger
	// Report is called synchronously, in order, from the goroutine running
	// Execute; it must be cheap. May be nil.
	Report func(Event)
	// Log receives the build and install output and a line per step, for
	// the deploy page. May be nil.
	Log io.Writer
	// Now and Sleep are the clock (default: the real one). Every wait of
	// the engine goes through Sleep; the only other bound is a real-time
	// health.timeout on the health step's context, so that one check that
	// hangs cannot hold a batch forever.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

// Execute rolls in.Release out to in.Target following SPEC §6: it lists the
// instances, plans the batches (PlanRollout), prepares the release once, and
// runs each batch — surge if planned, drain, install, health, admit, a
// confirming check in rotation, bake, retire the surge — stopping at the
// first failure and putting every instance it touched back on in.Previous
// by the same procedure, newest batch first.
//
// Decisions worth knowing:
//   - The first health check runs as soon as the install returns; later ones
//     run every health.interval after it, so a batch's health step costs
//     (healthy_after−1)×interval plus the checks themselves. health.timeout
//     bounds the whole batch's health step; a check that would start at or
//     after it does not run.
//   - Steps of one batch run on all its instances at once; a step's failure
//     on one instance lets the others' finish, then stops the rollout.
//   - Every batch bakes, the last one too: success means the whole fleet
//     has run the release for rollout.bake. During the bake any failed check
//     is a failure.
//   - A rollback runs the same steps without surge or bake (the previous
//     release is the known-good one), over the plan's own batches in reverse,
//     so it never has more out of rotation than the rollout did. An
//     instance that cannot go back does not hold up the rest of its batch,
//     but the rollback stops after that batch, saying which instance is
//     left on what.
//   - Cancellation (ctx) is not a failure: nothing is rolled back, and a
//     resumed job re-plans, which skips the instances already done.
//   - A surge instance is retired only once its batch is healthy again (on
//     the release, or rolled back); if that never happens it keeps serving
//     and the reason says so.
func Execute(ctx context.Context, in ExecInput) Result {
	r := &run{in: in, now: in.Now, sleep: in.Sleep}
	if r.now == nil {
		r.now = time.Now
	}
	if r.sleep == nil {
		r.sleep = sleepCtx
	}
	if in.Log != nil {
		r.log = &logWriter{w: in.Log}
	}
	r.res = Result{Release: in.Release, Previous: in.Previous, Started: r.now()}
	r.rollout(ctx)
	r.res.Finished = r.now()
	res := r.res
	r.emit(Event{Kind: Finished, Result: &res})
	return res
}

// run is one Execute call's state; only the goroutine running Execute
// touches it.
type run struct {
	in     ExecInput
	env    *repoconfig.Environment
	surger Surger
	now    func() time.Time
	sleep  func(context.Context, time.Duration) error
	log    *logWriter // nil when in.Log is
	plan   *Plan
	res    Result
	state  map[string]*instState // by instance id, the instances the plan handles
	notes  []string              // things that went wrong without failing the rollout
}

// instState is what the engine knows of an instance it handles, for saying
// where a failed rollout left it.
type instState struct {
	release string
	out     bool // out of rotation
	broken  bool // its last health check failed
	lost    bool // an install failed: what it runs is unknown
}

func (r *run) rollout(ctx context.Context) {
	if msg := r.validate(); msg != "" {
		r.end(OutcomeError, msg)
		return
	}
	if ctx.Err() != nil {
		r.end(OutcomeCancelled, "cancelled before the rollout began; nothing was touched")
		return
	}
	t, rel := r.in.Target, r.in.Release
	found, err := r.in.Driver.Instances(ctx, t)
	if err != nil {
		if ctx.Err() != nil {
			r.end(OutcomeCancelled, "cancelled before the rollout began; nothing was touched")
			return
		}
		r.end(OutcomeError, fmt.Sprintf("could not list the instances of %s: %v; nothing was touched", r.env.Name, err))
		return
	}
	surger, canSurge := r.in.Driver.(Surger)
	plan, err := PlanRollout(PlanInput{Instances: found, Release: rel.SHA, Rollout: r.env.Rollout, CanSurge: canSurge})
	if err != nil {
		r.end(OutcomeError, err.Error())
		return
	}
	r.surger, r.plan = surger, &plan
	r.emit(Event{Kind: Planned})
	for _, note := range plan.Notes {
		r.logf("plan: %s", note)
	}
	if len(plan.Batches) == 0 {
		r.end(OutcomeSuccess, fmt.Sprintf("nothing to do: all %s of %s already run %s, healthy and in rotation", instances(len(plan.Skipped)), r.env.Name, short(rel.SHA)))
		return
	}

	r.logf("building %s", short(rel.SHA))
	if err := r.in.Driver.Prepare(ctx, t, rel, r.logOr()); err != nil {
		if ctx.Err() != nil {
			r.end(OutcomeCancelled, fmt.Sprintf("cancelled while building %s; nothing was touched", short(rel.SHA)))
			return
		}
		r.end(OutcomeFailure, fmt.Sprintf("build of %s failed: %v; nothing was touched", short(rel.SHA), err))
		return
	}

	r.state = make(map[string]*instState)
	for _, b := range plan.Batches {
		for _, inst := range b.Instances {
			r.state[inst.ID] = &instState{release: inst.Release, out: !inst.InRotation, broken: !inst.Healthy}
		}
	}
	for i := range plan.Batches {
		if !r.forward(ctx, i) {
			return
		}
	}
	total := len(plan.Skipped)
	for _, b := range plan.Batches {
		total += len(b.Instances)
	}
	reason := fmt.Sprintf("%s is on all %s of %s", short(rel.SHA), instances(total), r.env.Name)
	if total == 1 {
		reason = fmt.Sprintf("%s is on the only instance of %s", short(rel.SHA), r.env.Name)
	}
	if n := len(plan.Skipped); n > 0 {
		reason += fmt.Sprintf(" (%d already %s)", n, word(n, "was", "were"))
	}
	r.end(OutcomeSuccess, reason)
}

// validate returns why the input cannot be followed, or "".
func (r *run) validate() string {
	env := r.in.Target.Environment
	if env == nil {
		return "no environment configuration given: the rollout needs the environment's rollout and health settings"
	}
	r.env = env
	if r.in.Driver == nil {
		return fmt.Sprintf("no driver for %s: the rollout needs one to reach the instances", env.Name)
	}
	h, bad := env.Health, ""
	switch {
	case h.Path == "":
		bad = "health.path is empty"
	case h.Interval <= 0:
		bad = fmt.Sprintf("health.interval %s is not positive", h.Interval)
	case h.HealthyAfter < 1:
		bad = fmt.Sprintf("health.healthy_after %d is below 1", h.HealthyAfter)
	case h.Timeout <= 0:
		bad = fmt.Sprintf("health.timeout %s is not positive", h.Timeout)
	case env.Rollout.Bake < 0:
		bad = fmt.Sprintf("rollout.bake %s is negative", env.Rollout.Bake)
	}
	if bad != "" {
		return fmt.Sprintf("the settings of %s cannot be followed: %s; nothing was touched", env.Name, bad)
	}
	return ""
}

// forward runs batch i of the plan, and on failure the rollback; it reports
// whether to go on.
func (r *run) forward(ctx context.Context, i int) bool {
	b := r.plan.Batches[i]
	rel := r.in.Release
	br := BatchResult{Index: i, Instances: instanceIDs(b.Instances), Started: r.now()}
	r.emit(Event{Kind: BatchStarted, Batch: i})
	r.logf("%s: %s to %s", batchLabel(b), strings.Join(br.Instances, ", "), short(rel.SHA))

	surged, f := r.surge(ctx, b)
	touched := f == nil
	if f == nil {
		_, f = r.procedure(ctx, b, rel, &br, true)
	}
	if f == nil {
		surged = r.retire(ctx, b, surged)
	}
	br.Finished = r.now()
	if f != nil {
		br.Err = f.Error()
	}
	r.res.Batches = append(r.res.Batches, br)
	if f != nil {
		r.fail(ctx, b, f, touched, surged)
		return false
	}
	return true
}

// surge starts the extra instances batch b asks for. On failure it retires
// the ones it started: nothing has left rotation yet.
func (r *run) surge(ctx context.Context, b Batch) ([]Instance, *stepError) {
	if b.Surge == 0 {
		return nil, nil
	}
	rel := r.in.Release
	if r.surger == nil { // PlanRollout asks for a surge only when the driver can
		return nil, r.stepErr(b, StepSurge, "", rel, fmt.Errorf("the plan asks for an extra instance and this driver cannot start one"))
	}
	var surged []Instance
	for range b.Surge {
		r.emit(Event{Kind: InstanceStep, Batch: b.Index, Step: StepSurge})
		inst, err := r.surger.Surge(ctx, r.in.Target, rel, r.logOr())
		if err != nil {
			r.retire(ctx, b, surged)
			return nil, r.stepErr(b, StepSurge, "", rel, err)
		}
		r.logf("%s: started extra instance %s on %s", batchLabel(b), inst.ID, short(rel.SHA))
		surged = append(surged, inst)
	}
	return surged, nil
}

// retire stops the extra instances started for batch b and returns the
// ones still running. A failure to retire is noted, not a failed rollout:
// the batch is healthy, and the extra instance serves the same release.
func (r *run) retire(ctx context.Context, b Batch, surged []Instance) []Instance {
	if len(surged) == 0 {
		return nil
	}
	r.stepEvents(b.Index, surged, StepRetire)
	errs := each(ctx, surged, func(ctx context.Context, inst Instance) error {
		return r.surger.Retire(ctx, r.in.Target, inst)
	})
	var left []Instance
	for k, err := range errs {
		if err != nil {
			r.notes = append(r.notes, fmt.Sprintf("the extra instance %s could not be stopped: %v", surged[k].ID, err))
			left = append(left, surged[k])
		}
	}
	return left
}

// procedure is SPEC §6.2 for one batch and one release: drain, install,
// health, admit and a confirming check in rotation, then (forward only) the
// bake. It records each step's duration in br and returns the instances
// that went through every step.
//
// Forward, the first failure stops the batch: "if they're not healthy,
// stop". A rollback instead carries on with the batch's other instances,
// so that one instance that cannot go back does not keep the rest of its
// batch out of rotation; it still returns the first failure.
func (r *run) procedure(ctx context.Context, b Batch, rel Release, br *BatchResult, forward bool) ([]Instance, *stepError) {
	t, live := r.in.Target, b.Instances
	var failed *stepError
	// step is the phase under way, for a cancellation that fails none.
	step := StepDrain
	// keep records the phase's first failure and drops the instances that
	// failed; it reports whether to go on.
	keep := func(phase string, errs []error) bool {
		step = phase
		k, err := first(errs)
		if err == nil {
			return ctx.Err() == nil
		}
		if failed == nil {
			failed = r.stepErr(b, step, live[k].ID, rel, err)
		}
		if forward || ctx.Err() != nil {
			return false
		}
		next := make([]Instance, 0, len(live))
		for k, inst := range live {
			if errs[k] == nil {
				next = append(next, inst)
			}
		}
		live = next
		return len(live) > 0
	}
	finish := func() ([]Instance, *stepError) {
		if failed == nil && ctx.Err() != nil {
			// Stopped by cancellation with no step failing: the batch is
			// not done, and reporting it done would let the next batch
			// leave rotation while this one is still out.
			failed = &stepError{batch: b.Index, step: step, err: ctx.Err(),
				msg: fmt.Sprintf("cancelled during %s", step)}
		}
		if failed != nil && (forward || ctx.Err() != nil) {
			return nil, failed
		}
		return live, failed
	}

	start := r.now()
	r.stepEvents(b.Index, live, StepDrain)
	errs := each(ctx, live, func(ctx context.Context, inst Instance) error {
		return r.in.Driver.Drain(ctx, t, inst)
	})
	for k, err := range errs {
		if err == nil {
			r.state[live[k].ID].out = true
		}
	}
	mark := r.now()
	br.Drain = mark.Sub(start)
	if !keep(StepDrain, errs) {
		return finish()
	}

	start = mark
	r.stepEvents(b.Index, live, StepInstall)
	errs = each(ctx, live, func(ctx context.Context, inst Instance) error {
		if r.log == nil {
			return r.in.Driver.Install(ctx, t, inst, rel, io.Discard)
		}
		w := &lineWriter{out: r.log, prefix: inst.ID + " | "}
		err := r.in.Driver.Install(ctx, t, inst, rel, w)
		w.flush()
		return err
	})
	for k, err := range errs {
		st := r.state[live[k].ID]
		if err != nil {
			st.lost = true
		} else {
			st.release, st.lost = rel.SHA, false
		}
	}
	mark = r.now()
	br.Install = mark.Sub(start)
	if !keep(StepInstall, errs) {
		return finish()
	}

	start = mark
	r.stepEvents(b.Index, live, StepHealth)
	errs = r.awaitHealthy(ctx, live)
	mark = r.now()
	br.Health = mark.Sub(start)
	if !keep(StepHealth, errs) {
		return finish()
	}

	start = mark
	r.stepEvents(b.Index, live, StepAdmit)
	errs = each(ctx, live, func(ctx context.Context, inst Instance) error {
		return r.in.Driver.Admit(ctx, t, inst)
	})
	for k, err := range errs {
		if err == nil {
			r.state[live[k].ID].out = false
		}
	}
	if !keep(StepAdmit, errs) {
		br.Admit = r.now().Sub(start)
		return finish()
	}
	// Healthy there: the instance answers now that it takes traffic,
	// before anything else leaves rotation.
	errs = r.checkAll(ctx, live)
	for k, err := range errs {
		if err != nil {
			errs[k] = &confirmError{err}
		}
	}
	mark = r.now()
	br.Admit = mark.Sub(start)
	if !keep(StepAdmit, errs) || !forward {
		return finish()
	}
	r.emit(Event{Kind: BatchHealthy, Batch: b.Index})

	if r.env.Rollout.Bake > 0 {
		start = mark
		r.emit(Event{Kind: Baking, Batch: b.Index})
		k, err := r.bake(ctx, live)
		br.Bake = r.now().Sub(start)
		if err != nil {
			return nil, r.stepErr(b, StepBake, idAt(live, k), rel, err)
		}
	}
	return live, nil
}

// awaitHealthy checks every instance until each has passed HealthyAfter
// checks in a row: the first check at once, then one every Interval, all
// within Timeout. It returns each instance's error, nil for those that
// passed.
func (r *run) awaitHealthy(ctx context.Context, insts []Instance) []error {
	h := r.env.Health
	start := r.now()
	deadline := start.Add(h.Timeout)
	// The deadline above schedules checks on the injected clock; this one
	// stops a single check that hangs.
	cctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()

	result := make([]error, len(insts))
	passes := make([]int, len(insts))
	last := make([]error, len(insts))
	pending := make([]int, len(insts)) // indexes short of HealthyAfter
	for k := range pending {
		pending[k] = k
	}
	sub := make([]Instance, 0, len(insts))
	for round := 0; len(pending) > 0; round++ {
		if round > 0 {
			tick := start.Add(time.Duration(round) * h.Interval)
			if !tick.Before(deadline) {
				for _, k := range pending {
					result[k] = &healthTimeout{passes: passes[k], last: last[k]}
				}
				break
			}
			if err := r.sleepUntil(ctx, tick); err != nil {
				for _, k := range pending {
					result[k] = err
				}
				break
			}
		}
		sub = sub[:0]
		for _, k := range pending {
			sub = append(sub, insts[k])
		}
		errs := each(cctx, sub, r.check)
		next := pending[:0] // filters in place: writes never pass reads
		for j, k := range pending {
			st := r.state[insts[k].ID]
			if errs[j] == nil {
				passes[k]++
				st.broken = false
			} else {
				passes[k], last[k] = 0, errs[j]
				st.broken = true
			}
			if passes[k] < h.HealthyAfter {
				next = append(next, k)
			}
		}
		pending = next
	}
	return result
}

// bake waits Rollout.Bake, checking the instances every Interval; any
// failed check ends it.
func (r *run) bake(ctx context.Context, insts []Instance) (int, error) {
	interval := r.env.Health.Interval
	start := r.now()
	end := start.Add(r.env.Rollout.Bake)
	for tick := start.Add(interval); tick.Before(end); tick = tick.Add(interval) {
		if err := r.sleepUntil(ctx, tick); err != nil {
			return -1, err
		}
		if k, err := first(r.checkAll(ctx, insts)); err != nil {
			return k, &bakeError{into: r.now().Sub(start), bake: r.env.Rollout.Bake, err: err}
		}
	}
	return -1, r.sleepUntil(ctx, end)
}

// checkAll checks every instance once, at once.
func (r *run) checkAll(ctx context.Context, insts []Instance) []error {
	errs := each(ctx, insts, r.check)
	for k, err := range errs {
		if err != nil {
			r.state[insts[k].ID].broken = true
		}
	}
	return errs
}

func (r *run) check(ctx context.Context, inst Instance) error {
	return r.in.Driver.Check(ctx, r.in.Target, inst, r.env.Health.Path)
}

func (r *run) sleepUntil(ctx context.Context, t time.Time) error {
	if d := t.Sub(r.now()); d > 0 {
		return r.sleep(ctx, d)
	}
	return ctx.Err()
}

// fail handles batch b's failure f: cancellation ends the run as it is;
// otherwise the touched instances go back to Previous, or with no Previous
// the failed ones stay out of rotation.
func (r *run) fail(ctx context.Context, b Batch, f *stepError, touched bool, surged []Instance) {
	r.emit(Event{Kind: BatchFailed, Batch: b.Index, Instance: f.instance, Step: f.step, Err: f})
	rel := short(r.in.Release.SHA)
	if ctx.Err() != nil {
		r.end(OutcomeCancelled, fmt.Sprintf("cancelled during %s (%s) of %s; nothing was rolled back: a resumed job re-plans and carries on from here", batchLabel(b), f.step, rel))
		return
	}
	r.res.FailedInstance = f.instance
	reason := batchLabel(b) + ": " + f.msg
	r.logf("%s", reason)

	// What to undo: the failed batch (if it left rotation), then the
	// completed ones, newest first.
	var undo []Batch
	if touched {
		undo = append(undo, b)
	}
	for j := b.Index - 1; j >= 0; j-- {
		undo = append(undo, r.plan.Batches[j])
	}
	var touchedIDs []string
	for _, ub := range undo {
		touchedIDs = append(touchedIDs, instanceIDs(ub.Instances)...)
	}

	switch {
	case len(undo) == 0:
		r.end(OutcomeFailure, reason+"; nothing had been changed, so there is nothing to roll back")
	case r.in.Previous == "":
		reason += "; this was the first deploy here, so there is no earlier release to roll back to"
		if touched && (f.step == StepAdmit || f.step == StepBake) && f.instance != "" {
			reason += r.leaveOut(ctx, b, f.instance)
		}
		r.end(OutcomeFailure, reason+": "+r.describe(touchedIDs)+r.surgeNote(b, surged))
	default:
		r.rollBack(ctx, b, undo, touchedIDs, surged, reason)
	}
}

// leaveOut takes a failed instance of a first deploy out of rotation, as
// there is nothing to put back on it.
func (r *run) leaveOut(ctx context.Context, b Batch, id string) string {
	for _, inst := range b.Instances {
		if inst.ID != id {
			continue
		}
		r.emit(Event{Kind: InstanceStep, Batch: b.Index, Instance: id, Step: StepDrain})
		if err := r.in.Driver.Drain(ctx, r.in.Target, inst); err != nil {
			return fmt.Sprintf(" (and %s could not be taken out of rotation: %v)", id, err)
		}
		r.state[id].out = true
	}
	return ""
}

func (r *run) rollBack(ctx context.Context, failed Batch, undo []Batch, touchedIDs []string, surged []Instance, reason string) {
	prev := Release{Repo: r.in.Release.Repo, InstallationID: r.in.Release.InstallationID, SHA: r.in.Previous}
	r.emit(Event{Kind: RollingBack, Batch: failed.Index})
	r.logf("rolling back %s to %s", strings.Join(touchedIDs, ", "), short(prev.SHA))
	cancelled := func() {
		r.end(OutcomeCancelled, fmt.Sprintf("%s; cancelled while rolling back to %s: %s%s", reason, short(prev.SHA), r.describe(touchedIDs), r.surgeNote(failed, surged)))
	}

	if err := r.in.Driver.Prepare(ctx, r.in.Target, prev, r.logOr()); err != nil {
		r.emit(Event{Kind: RolledBack, Batch: failed.Index, Err: err})
		if ctx.Err() != nil {
			cancelled()
			return
		}
		r.end(OutcomeFailure, fmt.Sprintf("%s; rolling back failed too: build of %s failed: %v; so %s%s", reason, short(prev.SHA), err, r.describe(touchedIDs), r.surgeNote(failed, surged)))
		return
	}
	for _, ub := range undo {
		br := BatchResult{Index: ub.Index, Rollback: true, Instances: instanceIDs(ub.Instances), Started: r.now()}
		back, f := r.procedure(ctx, ub, prev, &br, false)
		br.Finished = r.now()
		if f != nil {
			br.Err = f.Error()
		}
		r.res.Batches = append(r.res.Batches, br)
		r.res.RolledBack = append(r.res.RolledBack, instanceIDs(back)...)
		if f != nil {
			r.emit(Event{Kind: RolledBack, Batch: ub.Index, Instance: f.instance, Step: f.step, Err: f})
			if ctx.Err() != nil {
				cancelled()
				return
			}
			r.end(OutcomeFailure, fmt.Sprintf("%s; rolling back to %s failed too, in %s: %s; so %s%s", reason, short(prev.SHA), batchLabel(ub), f.msg, r.describe(touchedIDs), r.surgeNote(failed, surged)))
			return
		}
		if ub.Index == failed.Index {
			surged = r.retire(ctx, failed, surged)
		}
	}
	r.emit(Event{Kind: RolledBack, Batch: failed.Index})
	r.end(OutcomeFailure, fmt.Sprintf("%s; rolled back %s to %s%s", reason, joinAnd(r.res.RolledBack), short(prev.SHA), r.surgeNote(failed, surged)))
}

// describe says, in words, what each instance runs and whether it is in
// rotation, grouping instances in the same state.
func (r *run) describe(ids []string) string {
	var order []string
	groups := map[string][]string{}
	for _, id := range ids {
		st := r.state[id]
		var d string
		switch {
		case st.lost && st.out:
			d = "out of rotation after a failed install"
		case st.lost:
			d = "in rotation after a failed install"
		case st.out:
			d = "out of rotation on " + releaseName(st.release)
		case st.broken:
			d = "in rotation on " + releaseName(st.release) + " but failing " + r.env.Health.Path
		default:
			d = "in rotation on " + releaseName(st.release)
		}
		if _, seen := groups[d]; !seen {
			order = append(order, d)
		}
		groups[d] = append(groups[d], id)
	}
	parts := make([]string, 0, len(order))
	for _, d := range order {
		g := groups[d]
		parts = append(parts, fmt.Sprintf("%s %s %s", joinAnd(g), word(len(g), "is", "are"), d))
	}
	return strings.Join(parts, "; ")
}

// surgeNote says which extra instances are still running after a failure.
func (r *run) surgeNote(b Batch, surged []Instance) string {
	if len(surged) == 0 {
		return ""
	}
	n := len(surged)
	return fmt.Sprintf("; the extra %s %s started for %s %s serving %s", word(n, "instance", "instances"), joinAnd(instanceIDs(surged)), batchLabel(b), word(n, "keeps", "keep"), short(r.in.Release.SHA))
}

func (r *run) end(o Outcome, reason string) {
	if len(r.notes) > 0 {
		reason += "; " + strings.Join(r.notes, "; ")
	}
	r.res.Outcome, r.res.Reason = o, reason
	r.logf("%s: %s", o, reason)
}

func (r *run) emit(ev Event) {
	if r.in.Report == nil {
		return
	}
	ev.Plan = r.plan
	ev.At = r.now()
	r.in.Report(ev)
}

func (r *run) stepEvents(batch int, insts []Instance, step string) {
	if r.in.Report == nil {
		return
	}
	for _, inst := range insts {
		r.emit(Event{Kind: InstanceStep, Batch: batch, Instance: inst.ID, Step: step})
	}
}

func (r *run) logf(format string, args ...any) {
	if r.log == nil {
		return
	}
	r.log.Write([]byte("shipbot: " + fmt.Sprintf(format, args...) + "\n"))
}

func (r *run) logOr() io.Writer {
	if r.log == nil {
		return io.Discard
	}
	return r.log
}

// stepErr builds the failure of step on instance id in words a person can
// act on.
func (r *run) stepErr(b Batch, step, id string, rel Release, err error) *stepError {
	sha, h := short(rel.SHA), r.env.Health
	var msg string
	switch e := err.(type) {
	case *healthTimeout:
		msg = fmt.Sprintf("instance %s did not pass %s %s within %s on %s", id, h.Path, pluralize(h.HealthyAfter, "time", "times"), h.Timeout, sha)
		if e.last != nil {
			msg += fmt.Sprintf(" (last check: %v)", e.last)
		} else {
			msg += fmt.Sprintf(" (only %d in a row)", e.passes)
		}
	case *confirmError:
		msg = fmt.Sprintf("instance %s failed %s right after going back into rotation on %s: %v", id, h.Path, sha, e.err)
	case *bakeError:
		msg = fmt.Sprintf("instance %s failed %s %s into the %s bake of %s: %v", id, h.Path, e.into, e.bake, sha, e.err)
	default:
		switch step {
		case StepSurge:
			msg = fmt.Sprintf("could not start an extra instance on %s: %v", sha, err)
		case StepDrain:
			msg = fmt.Sprintf("could not take instance %s out of rotation: %v", id, err)
		case StepInstall:
			msg = fmt.Sprintf("install of %s on instance %s failed: %v", sha, id, err)
		case StepAdmit:
			msg = fmt.Sprintf("could not put instance %s back into rotation on %s: %v", id, sha, err)
		default: // a wait that ended early
			msg = fmt.Sprintf("%s of %s stopped: %v", step, sha, err)
		}
	}
	return &stepError{batch: b.Index, instance: id, step: step, err: err, msg: msg}
}

// stepError is a batch step that failed, in words.
type stepError struct {
	batch    int
	instance string
	step     string
	err      error
	msg      string
}

func (e *stepError) Error() string { return e.msg }
func (e *stepError) Unwrap() error { return e.err }

// healthTimeout: an instance did not pass HealthyAfter checks in a row in time.
type healthTimeout struct {
	passes int
	last   error // the last failed check; nil if it only passed too few times
}

func (e *healthTimeout) Error() string {
	if e.last != nil {
		return "health timeout: " + e.last.Error()
	}
	return "health timeout"
}
func (e *healthTimeout) Unwrap() error { return e.last }

// confirmError: the check right after admission failed.
type confirmError struct{ err error }

func (e *confirmError) Error() string { return e.err.Error() }
func (e *confirmError) Unwrap() error { return e.err }

// bakeError: a check during the bake failed.
type bakeError struct {
	into, bake time.Duration
	err        error
}

func (e *bakeError) Error() string { return e.err.Error() }
func (e *bakeError) Unwrap() error { return e.err }

// each runs fn on every instance at once and returns each one's error. A
// driver that panics fails its instance, not the process.
func each(ctx context.Context, insts []Instance, fn func(context.Context, Instance) error) []error {
	errs := make([]error, len(insts))
	if len(insts) == 1 { // the common canary: no goroutine needed
		errs[0] = protect(ctx, insts[0], fn)
		return errs
	}
	var wg sync.WaitGroup
	for k, inst := range insts {
		wg.Go(func() { errs[k] = protect(ctx, inst, fn) })
	}
	wg.Wait()
	return errs
}

func protect(ctx context.Context, inst Instance, fn func(context.Context, Instance) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("driver panicked on %s: %v", inst.ID, p)
		}
	}()
	return fn(ctx, inst)
}

// first is the first error and its index, or -1 and nil.
func first(errs []error) (int, error) {
	for k, err := range errs {
		if err != nil {
			return k, err
		}
	}
	return -1, nil
}

func idAt(insts []Instance, k int) string {
	if k < 0 || k >= len(insts) {
		return ""
	}
	return insts[k].ID
}

func instanceIDs(insts []Instance) []string {
	out := make([]string, len(insts))
	for k, inst := range insts {
		out[k] = inst.ID
	}
	return out
}

// joinAnd is "a", "a and b", "a, b and c".
func joinAnd(list []string) string {
	switch len(list) {
	case 0:
		return ""
	case 1:
		return list[0]
	}
	return strings.Join(list[:len(list)-1], ", ") + " and " + list[len(list)-1]
}

func releaseName(sha string) string {
	if sha == "" {
		return "no release"
	}
	return short(sha)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// logWriter serialises writes to the deploy log. A log that cannot be
// written never fails a rollout, so it reports every write as done.
type logWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.w.Write(p)
	return len(p), nil
}

// lineWriter prefixes every line one instance's install writes with its id,
// so that installs running side by side read apart on the deploy page.
type lineWriter struct {
	out    *logWriter
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	done := 0
	for {
		i := bytes.IndexByte(w.buf[done:], '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[done : done+i+1])
		done += i + 1
	}
	w.buf = w.buf[:copy(w.buf, w.buf[done:])]
	return len(p), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(append(w.buf, '\n'))
		w.buf = w.buf[:0]
	}
}

func (w *lineWriter) emit(line []byte) {
	out := make([]byte, 0, len(w.prefix)+len(line))
	out = append(out, w.prefix...)
	w.out.Write(append(out, line...))
}
