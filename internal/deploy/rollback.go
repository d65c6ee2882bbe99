package deploy

import (
	"context"
	"slices"

	"github.com/shipbot/shipbot/internal/store/record"
)

// fail handles batch b's failure f: cancellation ends the run as it is;
// otherwise the touched instances go back to Previous, or with no Previous
// (or in a repair) the failed ones stay out of rotation.
func (r *run) fail(ctx context.Context, b Batch, f *stepError, touched bool, surged []Instance) {
	r.emit(Event{Kind: BatchFailed, Batch: b.Index, Instance: f.instance, Step: f.step, Err: f, Reason: f.failure()})
	if ctx.Err() != nil {
		why := inBatch(record.ReasonCancelledDuring, b)
		why.Step, why.Release = f.step, r.in.Release.SHA
		r.end(OutcomeCancelled, why)
		return
	}
	r.res.FailedInstance = f.instance
	failed := inBatch(record.ReasonBatchFailed, b)
	failed.Cause = f.failure()
	r.say("", failed)

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
		r.end(OutcomeFailure, then(failed, record.Reason{Kind: record.ReasonNothingChanged}))
	case r.in.Previous == "" || r.in.Repair:
		// Nothing to put back (a first deploy), or nothing to put back to
		// (a repair: the instances it touched ran releases nobody wants).
		next := record.Reason{Kind: record.ReasonNoEarlierRelease, Path: r.env.Health.Path}
		if r.in.Repair {
			next.Kind, next.Duration = record.ReasonRepairLeftOut, RepairRetryAfter
		}
		if touched && (f.step == StepAdmit || f.step == StepBake) && f.instance != "" {
			if err := r.leaveOut(ctx, b, f.instance); err != nil {
				next.Instance, next.Err = f.instance, err.Error()
			}
		}
		next.Left = r.placements(touchedIDs)
		r.end(OutcomeFailure, r.followed(failed, next, b, surged))
	default:
		r.rollBack(ctx, b, undo, touchedIDs, surged, failed)
	}
}

// leaveOut takes a failed instance of a first deploy or a repair out of
// rotation, as there is nothing to put back on it.
func (r *run) leaveOut(ctx context.Context, b Batch, id string) error {
	for _, inst := range b.Instances {
		if inst.ID != id {
			continue
		}
		r.emit(Event{Kind: InstanceStep, Batch: b.Index, Instance: id, Step: StepDrain})
		if err := r.in.Driver.Drain(ctx, r.in.Target, inst); err != nil {
			return err
		}
		r.state[id].out = true
	}
	return nil
}

// rollBack puts the undo batches back on Previous, in order, after the
// failure of batch fb (failed).
func (r *run) rollBack(ctx context.Context, fb Batch, undo []Batch, touchedIDs []string, surged []Instance, failed record.Reason) {
	prev := Release{Repo: r.in.Release.Repo, InstallationID: r.in.Release.InstallationID, SHA: r.in.Previous}
	r.emit(Event{Kind: RollingBack, Batch: fb.Index})
	r.say("", record.Reason{Kind: record.ReasonRollingBack, Instances: touchedIDs, Previous: prev.SHA})
	// stopped ends the run saying where the instances were left.
	stopped := func(o Outcome, why record.Reason, surged []Instance) {
		why.Previous, why.Path, why.Left = prev.SHA, r.env.Health.Path, r.placements(touchedIDs)
		r.end(o, r.followed(failed, why, fb, surged))
	}
	cancelled := record.Reason{Kind: record.ReasonRollbackCancelled}

	if err := r.in.Driver.Prepare(ctx, r.in.Target, prev, r.logOr()); err != nil {
		r.emit(Event{Kind: RolledBack, Batch: fb.Index, Err: err})
		if ctx.Err() != nil {
			stopped(OutcomeCancelled, cancelled, surged)
			return
		}
		stopped(OutcomeFailure, record.Reason{Kind: record.ReasonRollbackBuildFailed, Err: err.Error()}, surged)
		return
	}
	for _, ub := range undo {
		if f := r.undo(ctx, ub, prev); f != nil {
			r.emit(Event{Kind: RolledBack, Batch: ub.Index, Instance: f.instance, Step: f.step, Err: f})
			if ctx.Err() != nil {
				stopped(OutcomeCancelled, cancelled, surged)
				return
			}
			again := inBatch(record.ReasonRollbackFailed, ub)
			again.Cause = f.failure()
			stopped(OutcomeFailure, again, surged)
			return
		}
		if ub.Index == fb.Index {
			surged = r.retire(ctx, fb, surged)
		}
	}
	r.emit(Event{Kind: RolledBack, Batch: fb.Index})
	back := record.Reason{Kind: record.ReasonRolledBack, Instances: slices.Clone(r.res.RolledBack), Previous: prev.SHA}
	r.end(OutcomeFailure, r.followed(failed, back, fb, surged))
}

// undo puts batch ub back on prev by the same procedure, recording it.
func (r *run) undo(ctx context.Context, ub Batch, prev Release) *stepError {
	br := BatchResult{Index: ub.Index, Rollback: true, Instances: instanceIDs(ub.Instances), Started: r.now()}
	back, f := r.procedure(ctx, ub, prev, &br, false)
	br.Finished = r.now()
	if f != nil {
		br.Failure = f.failure()
	}
	r.res.Batches = append(r.res.Batches, br)
	r.res.RolledBack = append(r.res.RolledBack, instanceIDs(back)...)
	return f
}

// placements is where each instance is now: what it runs and whether it
// is in rotation.
func (r *run) placements(ids []string) []record.Placement {
	out := make([]record.Placement, len(ids))
	for i, id := range ids {
		st := r.state[id]
		out[i] = record.Placement{Instance: id, Release: st.release, Out: st.out, Lost: st.lost, Failing: st.broken}
	}
	return out
}

// followed is the failure of batch b followed by what came of it (next),
// and by which extra instances started for b still run.
func (r *run) followed(failed, next record.Reason, b Batch, surged []Instance) record.Reason {
	if len(surged) == 0 {
		return then(failed, next)
	}
	left := inBatch(record.ReasonSurgeLeft, b)
	left.Instances, left.Release = instanceIDs(surged), r.in.Release.SHA
	return then(failed, next, left)
}

// inBatch is a reason of kind about batch b.
func inBatch(kind record.ReasonKind, b Batch) record.Reason {
	return record.Reason{Kind: kind, Batch: b.Index, Canary: b.Canary}
}

// then is why followed by more.
func then(why record.Reason, more ...record.Reason) record.Reason {
	why.Then = append(slices.Clip(why.Then), more...)
	return why
}
