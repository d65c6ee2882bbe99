package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/store/record"
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
	// BatchFailed: a step failed; Instance and Step say where, Reason why.
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
	// Judged: the analysis judged the baking batch (Event.Analysis); a
	// broken limit follows as BatchFailed.
	Judged
)

var eventNames = [...]string{"", "planned", "batch started", "instance step", "batch healthy", "baking", "batch failed", "rolling back", "rolled back", "finished", "judged"}

func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// The steps of a batch, as Event.Step and record.Reason.Step.
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
	// Err is the failure of a BatchFailed or failed RolledBack event, for
	// errors.Is and operators' logs.
	Err error
	// Reason is the step that failed of a BatchFailed event, for people
	// (report.Reason).
	Reason *record.Reason
	// Analysis is what a Judged event's judgement saw.
	Analysis *record.Analysis
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
	Failure           *record.Reason // the step that failed; nil when the batch succeeded
	// Analysis is the batch's last judgement by its traffic (SPEC §6.8);
	// nil without analysis.
	Analysis *record.Analysis
}

// Result is how a rollout ended.
type Result struct {
	Outcome  Outcome
	Release  Release
	Previous string
	Batches  []BatchResult
	// Reason is what a person needs to act on, as data (report.Reason
	// says it): for a failure the batch, instance, step and release, and
	// what was rolled back or left where.
	Reason         record.Reason
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
	// Phrase says the engine's reasons in words for Log (report.Reason):
	// the engine knows what happened, not how to say it. Nil leaves the
	// engine's own lines out of Log.
	Phrase func(record.Reason) string
	// Now and Sleep are the clock (default: the real one). Every wait of
	// the engine goes through Sleep; the only other bound is a real-time
	// health.timeout on the health step's context, so that one check that
	// hangs cannot hold a batch forever.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// Querier evaluates the environment's analysis.prometheus checks; nil
	// makes each check unreadable.
	Querier Querier
	// SkipBake leaves out the bake and the analysis of every batch (a
	// /rollback to a release that ran before); health checks stay.
	SkipBake bool
	// SkipRelease leaves out the release phase (a /rollback: a
	// down-migration is the user's to run, not ours).
	SkipRelease bool
	// Repair is a drift repair (Engine.Repair): Release is the
	// environment's current release, and only the instances on another
	// release are planned (PlanInput.OnlyDrifted). It implies SkipBake
	// and SkipRelease (the release ran here before; the health checks
	// stay), and a failure rolls nothing back: the instances already
	// repaired stay in rotation on Release, the failed one is left out of
	// rotation, and the reason says where each is.
	Repair bool
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
//     is a failure, and with analysis every analysis.interval the batch is
//     judged by its traffic since it went into rotation (analysis.go); a
//     broken limit fails the batch like a failed check. SkipBake (a
//     /rollback) leaves out bake and analysis.
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
	if in.Repair {
		in.SkipBake, in.SkipRelease = true, true
	}
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
	notes  []record.Reason       // things that went wrong without failing the rollout
	judge  *analyzer             // nil without analysis
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
	if why := r.validate(); why != nil {
		r.end(OutcomeError, *why)
		return
	}
	if ctx.Err() != nil {
		r.end(OutcomeCancelled, record.Reason{Kind: record.ReasonCancelledBeforeStart})
		return
	}
	if !r.makePlan(ctx) || !r.build(ctx) || !r.releasePhase(ctx) {
		return
	}
	r.state = make(map[string]*instState)
	for _, b := range r.plan.Batches {
		for _, inst := range b.Instances {
			r.state[inst.ID] = &instState{release: inst.Release, out: !inst.InRotation, broken: !inst.Healthy}
		}
	}
	r.judge = r.newAnalyzer()
	for i := range r.plan.Batches {
		if !r.forward(ctx, i) {
			return
		}
	}
	total := len(r.plan.Skipped)
	for _, b := range r.plan.Batches {
		total += len(b.Instances)
	}
	r.end(OutcomeSuccess, record.Reason{Kind: record.ReasonDeployed, Release: r.in.Release.SHA, Of: total, Env: r.env.Name, Count: len(r.plan.Skipped)})
}

// validate returns why the input cannot be followed, or nil.
func (r *run) validate() *record.Reason {
	env := r.in.Target.Environment
	if env == nil {
		return &record.Reason{Kind: record.ReasonNoEnvironment}
	}
	r.env = env
	if r.in.Driver == nil {
		return &record.Reason{Kind: record.ReasonNoDriver, Env: env.Name}
	}
	h, bad := env.Health, record.Reason{Env: env.Name}
	switch {
	case h.Path == "":
		bad.Kind, bad.Setting = record.ReasonSettingEmpty, "health.path"
	case h.Interval <= 0:
		bad.Kind, bad.Setting, bad.Duration = record.ReasonSettingNotPositive, "health.interval", h.Interval
	case h.HealthyAfter < 1:
		bad.Kind, bad.Setting, bad.Count = record.ReasonSettingBelowOne, "health.healthy_after", h.HealthyAfter
	case h.Timeout <= 0:
		bad.Kind, bad.Setting, bad.Duration = record.ReasonSettingNotPositive, "health.timeout", h.Timeout
	case env.Rollout.Bake < 0:
		bad.Kind, bad.Setting, bad.Duration = record.ReasonSettingNegative, "rollout.bake", env.Rollout.Bake
	case env.Analysis != nil && env.Analysis.Interval <= 0:
		bad.Kind, bad.Setting, bad.Duration = record.ReasonSettingNotPositive, "analysis.interval", env.Analysis.Interval
	default:
		return nil
	}
	return &bad
}

// makePlan lists the instances and plans the batches. It ends the run and
// reports false when there is no plan, or nothing to do.
func (r *run) makePlan(ctx context.Context) bool {
	found, err := r.in.Driver.Instances(ctx, r.in.Target)
	if err != nil {
		if ctx.Err() != nil {
			r.end(OutcomeCancelled, record.Reason{Kind: record.ReasonCancelledBeforeStart})
			return false
		}
		r.end(OutcomeError, record.Reason{Kind: record.ReasonListFailed, Env: r.env.Name, Err: err.Error()})
		return false
	}
	surger, canSurge := r.in.Driver.(Surger)
	plan, err := PlanRollout(PlanInput{Instances: found, Release: r.in.Release.SHA, Rollout: r.env.Rollout, CanSurge: canSurge, OnlyDrifted: r.in.Repair})
	if err != nil {
		var pe *PlanError
		if !errors.As(err, &pe) { // PlanRollout returns nothing else
			pe = &PlanError{Kind: err, Reason: record.Reason{Kind: record.ReasonText, Text: err.Error()}}
		}
		r.end(OutcomeError, pe.Reason)
		return false
	}
	r.surger, r.plan = surger, &plan
	r.emit(Event{Kind: Planned})
	for _, note := range plan.Notes {
		r.say("plan", note)
	}
	if len(plan.Batches) == 0 {
		r.end(OutcomeSuccess, record.Reason{Kind: record.ReasonAlreadyCurrent, Of: len(plan.Skipped), Env: r.env.Name, Release: r.in.Release.SHA})
		return false
	}
	return true
}

// build prepares the release once, before any instance is touched. It ends
// the run and reports false when that fails.
func (r *run) build(ctx context.Context) bool {
	rel := r.in.Release
	r.say("", record.Reason{Kind: record.ReasonBuilding, Release: rel.SHA})
	err := r.in.Driver.Prepare(ctx, r.in.Target, rel, r.logOr())
	switch {
	case err == nil:
		return true
	case ctx.Err() != nil:
		r.end(OutcomeCancelled, record.Reason{Kind: record.ReasonBuildCancelled, Release: rel.SHA})
	default:
		r.end(OutcomeFailure, record.Reason{Kind: record.ReasonBuildFailed, Release: rel.SHA, Err: err.Error()})
	}
	return false
}

// releasePhase runs the environment's release command once, after the
// build and before any instance is touched (SPEC §6.2), within
// ReleaseTimeout. It ends the run and reports false when that fails.
func (r *run) releasePhase(ctx context.Context) bool {
	releaser, ok := r.in.Driver.(Releaser)
	setting, command := "app.release", r.in.Target.App.Release
	if r.env.Driver == repoconfig.DriverAWS {
		setting, command = "aws.release", ""
		if r.env.AWS != nil {
			command = r.env.AWS.Release
		}
	}
	if !ok || r.in.SkipRelease || command == "" {
		return true
	}
	rel := r.in.Release
	r.say("", record.Reason{Kind: record.ReasonReleasePhase, Setting: setting, Release: rel.SHA, Text: command})
	rctx, cancel := context.WithTimeout(ctx, ReleaseTimeout)
	defer cancel()
	err := releaser.Release(rctx, r.in.Target, rel, r.logOr())
	switch {
	case err == nil:
		return true
	case ctx.Err() != nil:
		r.end(OutcomeCancelled, record.Reason{Kind: record.ReasonCancelledBeforeStart})
	default:
		if errors.Is(rctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %s: %w", ReleaseTimeout, err)
		}
		r.end(OutcomeFailure, record.Reason{Kind: record.ReasonReleasePhaseFailed, Setting: setting, Release: rel.SHA, Duration: ReleaseTimeout, Err: err.Error()})
	}
	return false
}

// forward runs batch i of the plan, and on failure the rollback; it reports
// whether to go on.
func (r *run) forward(ctx context.Context, i int) bool {
	b := r.plan.Batches[i]
	rel := r.in.Release
	br := BatchResult{Index: i, Instances: instanceIDs(b.Instances), Started: r.now()}
	r.emit(Event{Kind: BatchStarted, Batch: i})
	starting := inBatch(record.ReasonBatchStarting, b)
	starting.Instances, starting.Release = br.Instances, rel.SHA
	r.say("", starting)

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
		br.Failure = f.failure()
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
		return nil, r.stepErr(b, StepSurge, "", rel, errCannotSurge)
	}
	var surged []Instance
	for range b.Surge {
		r.emit(Event{Kind: InstanceStep, Batch: b.Index, Step: StepSurge})
		inst, err := r.surger.Surge(ctx, r.in.Target, rel, r.logOr())
		if err != nil {
			r.retire(ctx, b, surged)
			return nil, r.stepErr(b, StepSurge, "", rel, err)
		}
		started := inBatch(record.ReasonSurged, b)
		started.Instance, started.Release = inst.ID, rel.SHA
		r.say("", started)
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
			r.notes = append(r.notes, withErr(record.Reason{Kind: record.ReasonRetireFailed, Instance: surged[k].ID}, err))
			left = append(left, surged[k])
		}
	}
	return left
}

// end is how the run ended, followed by what went wrong on the way.
func (r *run) end(o Outcome, why record.Reason) {
	why = then(why, r.notes...)
	r.res.Outcome, r.res.Reason = o, why
	r.say(string(o), why)
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

// say writes the engine's line about why to the deploy log, after tag
// (the plan, an outcome) when there is one.
func (r *run) say(tag string, why record.Reason) {
	if r.log == nil || r.in.Phrase == nil {
		return
	}
	line := "shipbot: "
	if tag != "" {
		line += tag + ": "
	}
	r.log.Write([]byte(line + r.in.Phrase(why) + "\n"))
}

func (r *run) logOr() io.Writer {
	if r.log == nil {
		return io.Discard
	}
	return r.log
}

func instanceIDs(insts []Instance) []string {
	out := make([]string, len(insts))
	for k, inst := range insts {
		out[k] = inst.ID
	}
	return out
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
