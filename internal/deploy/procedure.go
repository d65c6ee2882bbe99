package deploy

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/shipbot/shipbot/internal/store/record"
)

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
	p := &pass{r: r, b: b, rel: rel, br: br, forward: forward, live: b.Instances, step: StepDrain, mark: r.now()}
	for _, step := range []func(context.Context) bool{p.drain, p.install, p.health, p.admit, p.confirm} {
		if !step(ctx) {
			return p.finish(ctx)
		}
	}
	if !forward {
		return p.finish(ctx)
	}
	r.emit(Event{Kind: BatchHealthy, Batch: b.Index})
	if f := p.bake(ctx); f != nil {
		return nil, f
	}
	return p.live, nil
}

// pass is one procedure over one batch. Each step runs on the instances
// still live, records its duration and reports whether to go on.
type pass struct {
	r       *run
	b       Batch
	rel     Release
	br      *BatchResult
	forward bool
	live    []Instance // the instances still going through the steps
	failed  *stepError // the first failure
	step    string     // the step under way, for a cancellation that fails none
	mark    time.Time  // when the last step ended
	since   time.Time  // when admit began: the batch's window of traffic starts
}

// lap is the time since the last step ended, which ends this one.
func (p *pass) lap() time.Duration {
	now := p.r.now()
	d := now.Sub(p.mark)
	p.mark = now
	return d
}

func (p *pass) drain(ctx context.Context) bool {
	p.r.stepEvents(p.b.Index, p.live, StepDrain)
	errs := each(ctx, p.live, func(ctx context.Context, inst Instance) error {
		return p.r.in.Driver.Drain(ctx, p.r.in.Target, inst)
	})
	for k, err := range errs {
		if err == nil {
			p.r.state[p.live[k].ID].out = true
		}
	}
	p.br.Drain = p.lap()
	return p.keep(ctx, StepDrain, errs)
}

func (p *pass) install(ctx context.Context) bool {
	r := p.r
	r.stepEvents(p.b.Index, p.live, StepInstall)
	errs := each(ctx, p.live, func(ctx context.Context, inst Instance) error {
		if r.log == nil {
			return r.in.Driver.Install(ctx, r.in.Target, inst, p.rel, io.Discard)
		}
		w := &lineWriter{out: r.log, prefix: inst.ID + " | "}
		err := r.in.Driver.Install(ctx, r.in.Target, inst, p.rel, w)
		w.flush()
		return err
	})
	for k, err := range errs {
		st := r.state[p.live[k].ID]
		if err != nil {
			st.lost = true
		} else {
			st.release, st.lost = p.rel.SHA, false
		}
	}
	p.br.Install = p.lap()
	return p.keep(ctx, StepInstall, errs)
}

func (p *pass) health(ctx context.Context) bool {
	p.r.stepEvents(p.b.Index, p.live, StepHealth)
	errs := p.r.awaitHealthy(ctx, p.live)
	p.br.Health = p.lap()
	return p.keep(ctx, StepHealth, errs)
}

// admit puts the instances back into rotation; its time runs on through
// confirm.
func (p *pass) admit(ctx context.Context) bool {
	p.since = p.r.now()
	p.r.stepEvents(p.b.Index, p.live, StepAdmit)
	errs := each(ctx, p.live, func(ctx context.Context, inst Instance) error {
		return p.r.in.Driver.Admit(ctx, p.r.in.Target, inst)
	})
	for k, err := range errs {
		if err == nil {
			p.r.state[p.live[k].ID].out = false
		}
	}
	if !p.keep(ctx, StepAdmit, errs) {
		p.br.Admit = p.r.now().Sub(p.mark)
		return false
	}
	return true
}

// confirm checks the instances once in rotation: each answers now that it
// takes traffic, before anything else leaves rotation.
func (p *pass) confirm(ctx context.Context) bool {
	errs := p.r.checkAll(ctx, p.live)
	for k, err := range errs {
		if err != nil {
			errs[k] = &confirmError{err}
		}
	}
	p.br.Admit = p.lap()
	return p.keep(ctx, StepAdmit, errs)
}

// bake watches the batch, in rotation, for rollout.bake, and judges it
// by its traffic when there is analysis.
func (p *pass) bake(ctx context.Context) *stepError {
	r := p.r
	if r.env.Rollout.Bake <= 0 || r.in.SkipBake {
		return nil
	}
	r.emit(Event{Kind: Baking, Batch: p.b.Index})
	k, err := r.watch(ctx, p.b, p.live, p.since, p.br)
	p.br.Bake = p.lap()
	if err == nil && r.judge != nil && p.br.Analysis != nil && !p.br.Analysis.Judged {
		why := inBatch(record.ReasonNotJudged, p.b)
		why.Release, why.Want = p.rel.SHA, r.env.Analysis.MinRequests
		if t := p.br.Analysis.Traffic; t != nil {
			why.Count = int(t.Requests)
		}
		r.notes = append(r.notes, why)
	}
	if err != nil {
		return r.stepErr(p.b, StepBake, idAt(p.live, k), p.rel, err)
	}
	return nil
}

// keep records the step's first failure and drops the instances that
// failed; it reports whether to go on.
func (p *pass) keep(ctx context.Context, step string, errs []error) bool {
	p.step = step
	k, err := first(errs)
	if err == nil {
		return ctx.Err() == nil
	}
	if p.failed == nil {
		p.failed = p.r.stepErr(p.b, step, p.live[k].ID, p.rel, err)
	}
	if p.forward || ctx.Err() != nil {
		return false
	}
	next := make([]Instance, 0, len(p.live))
	for k, inst := range p.live {
		if errs[k] == nil {
			next = append(next, inst)
		}
	}
	p.live = next
	return len(p.live) > 0
}

// finish is how the pass ended when it stopped or, rolling back, ran out
// of steps.
func (p *pass) finish(ctx context.Context) ([]Instance, *stepError) {
	if p.failed == nil && ctx.Err() != nil {
		// Stopped by cancellation with no step failing: the batch is not
		// done, and reporting it done would let the next batch leave
		// rotation while this one is still out.
		p.failed = &stepError{batch: p.b.Index, step: p.step, err: ctx.Err(),
			reason: record.Reason{Kind: record.ReasonStepCancelled, Step: p.step}}
	}
	if p.failed != nil && (p.forward || ctx.Err() != nil) {
		return nil, p.failed
	}
	return p.live, p.failed
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

// watch waits Rollout.Bake, checking the instances every health.interval
// and, with analysis, judging the batch's traffic since it went into
// rotation every analysis.interval and once more at the end. A failed
// check or a broken limit ends it; the last judgement goes into br.
func (r *run) watch(ctx context.Context, b Batch, insts []Instance, since time.Time, br *BatchResult) (int, error) {
	interval := r.env.Health.Interval
	start := r.now()
	end := start.Add(r.env.Rollout.Bake)
	nextCheck := start.Add(interval)
	judging := r.judge != nil
	var every time.Duration
	var nextJudge time.Time
	if judging {
		every = r.env.Analysis.Interval
		nextJudge = minTime(start.Add(every), end)
	}
	for {
		tick := end
		checkDue := nextCheck.Before(end)
		if checkDue && nextCheck.Before(tick) {
			tick = nextCheck
		}
		if judging && nextJudge.Before(tick) {
			tick = nextJudge
		}
		if err := r.sleepUntil(ctx, tick); err != nil {
			return -1, err
		}
		if checkDue && !nextCheck.After(tick) {
			if k, err := first(r.checkAll(ctx, insts)); err != nil {
				return k, &bakeError{into: r.now().Sub(start), bake: r.env.Rollout.Bake, err: err}
			}
			nextCheck = nextCheck.Add(interval)
		}
		if judging && !nextJudge.After(tick) {
			v := r.judge.judge(ctx, since)
			figures := v.figures
			br.Analysis = &figures
			r.emit(Event{Kind: Judged, Batch: b.Index, Analysis: &figures})
			r.sayJudged(b, figures)
			if v.broken != nil {
				return -1, &analysisError{why: *v.broken}
			}
			if !nextJudge.Before(end) {
				judging = false
			} else {
				nextJudge = minTime(nextJudge.Add(every), end)
			}
		}
		if !tick.Before(end) && !judging {
			return -1, nil
		}
	}
}

// sayJudged writes a judgement's figures to the deploy log.
func (r *run) sayJudged(b Batch, f record.Analysis) {
	why := inBatch(record.ReasonJudged, b)
	why.Release = r.in.Release.SHA
	if t := f.Traffic; t != nil {
		why.Count, why.Value, why.Duration = int(t.Requests), t.ErrorRate(), t.P99
		if !f.Judged {
			why.Kind, why.Want = record.ReasonNotJudged, f.MinRequests
		}
	}
	r.say("analysis", why)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
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
			err = &panicError{instance: inst.ID, value: p}
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
