package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shipbot/shipbot/internal/logctx"
	"github.com/shipbot/shipbot/internal/store/record"
)

// RepairRetryAfter is how long a repair that failed holds back the next
// repair of the same instances to the same release. Without it an instance
// whose install keeps failing would be drained and installed again at
// every sweep, and the audit log filled with the same failure.
const RepairRetryAfter = 30 * time.Minute

// RepairHold says why a repair that was needed did not run now; the next
// sweep looks again.
type RepairHold string

const (
	// HeldBusy: the environment's deploy lock was taken (a rollout, or a
	// repair by another process), or a deploy is queued or running. A
	// rollout brings every instance to its release anyway; a repair never
	// runs beside one.
	HeldBusy RepairHold = "busy"
	// HeldLocked: a /lock holds the environment. Whoever locked it may be
	// working on its instances by hand.
	HeldLocked RepairHold = "locked"
	// HeldBackoff: the same repair failed less than RepairRetryAfter ago.
	HeldBackoff RepairHold = "backoff"
)

// RepairResult is what one Repair found and did.
type RepairResult struct {
	// Current is the environment's current release; "" when it has none,
	// and then there is nothing to repair to.
	Current string
	// Found are the instances on another release than Current, each with
	// the release it ran; none: nothing to do.
	Found []record.Placement
	// Held is why a repair that was needed did not run now; "" when it
	// ran or none was needed.
	Held RepairHold
	// ID is the repair's record (its page is /deploys/{ID}); "" when none ran.
	ID string
	// Outcome is how the repair ended; "" when none ran.
	Outcome Outcome
	// Reason says how it ended, as the record keeps it.
	Reason record.Reason
}

// Repair brings the instances of t's environment that run another release
// than its current one (the last successful release in the store) back to
// it, by the procedure of a rollout (SPEC §6.7): the planner batches them
// within max_unavailable and never takes out the last serving instance;
// each goes out of rotation, gets the release, passes its health checks
// and comes back in. An instance not in rotation (one an autoscaler just
// launched) is installed before it is ever registered.
//
// A repair is not a deploy. It creates no GitHub deployment, records no
// release, runs no release phase and no bake, and a failure rolls nothing
// back: the instances already repaired stay, the failed one is left out of
// rotation, and the record and the audit log say where each is. It keeps a
// record of kind repair (its batches and log on the dashboard) and writes
// drift.found and drift.repaired audit entries.
//
// It runs only while the environment's deploy lock is free, and holds it
// throughout, so it never runs beside a rollout or another repair: a lock
// taken, a deploy queued or running, or a /lock is a hold (RepairResult.Held)
// and the next call looks again. A deploy queued while the repair held the
// lock runs right after it, as it would after any holder. Listing the
// instances without the lock first keeps the usual call, with nothing
// drifted, to one listing.
func (e *Engine) Repair(ctx context.Context, t Target) (RepairResult, error) {
	if t.Environment == nil {
		return RepairResult{}, errors.New("repair: no environment")
	}
	env := record.EnvKey{Repo: t.Repo, Name: t.Environment.Name}
	cur, found, err := e.drift(ctx, t, env)
	res := RepairResult{Current: cur.SHA, Found: found}
	if err != nil || len(found) == 0 {
		return res, err
	}
	if res.Held, err = e.repairHeld(ctx, env, cur.SHA, found); err != nil || res.Held != "" {
		return res, err
	}
	lease, ok, err := e.o.Store.AcquireLock(ctx, env, e.o.Holder, e.o.LockTTL)
	if err != nil {
		return res, fmt.Errorf("repair %s: deploy lock: %w", env, err)
	}
	if !ok {
		res.Held = HeldBusy
		return res, nil
	}
	res, err = e.repairHolding(ctx, t, env, lease)
	// A new context: the lock must go back even when ctx ended.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	if rerr := e.o.Store.ReleaseLock(rctx, lease); rerr != nil && err == nil {
		err = fmt.Errorf("repair %s: release the deploy lock: %w", env, rerr)
	}
	cancel()
	if err != nil {
		return res, err
	}
	// A deploy queued meanwhile found the lock taken and left itself to
	// the holder (runAll): run it now.
	if _, more, err := e.o.Store.Pending(ctx, env); err != nil || !more {
		return res, err
	}
	return res, e.runAll(ctx, t, env)
}

// drift is the environment's current release and the instances on
// another; none without a current release.
func (e *Engine) drift(ctx context.Context, t Target, env record.EnvKey) (record.Release, []record.Placement, error) {
	cur, err := e.o.Store.CurrentRelease(ctx, env)
	if errors.Is(err, record.ErrNotFound) {
		return record.Release{}, nil, nil
	}
	if err != nil {
		return cur, nil, fmt.Errorf("repair %s: read the current release: %w", env, err)
	}
	drv := e.o.Drivers[t.Environment.Driver]
	if drv == nil {
		return cur, nil, fmt.Errorf("repair %s: this process has no %s driver", env, t.Environment.Driver)
	}
	insts, err := drv.Instances(ctx, t)
	if err != nil {
		return cur, nil, fmt.Errorf("repair %s: list the instances: %w", env, err)
	}
	var found []record.Placement
	for _, inst := range insts {
		if inst.Release != cur.SHA {
			found = append(found, record.Placement{Instance: inst.ID, Release: inst.Release, Out: !inst.InRotation, Failing: inst.InRotation && !inst.Healthy})
		}
	}
	return cur, found, nil
}

// repairHeld is why a repair of found to sha must not run now, if
// anything holds it: a /lock, a deploy queued or running, or the same
// repair having failed less than RepairRetryAfter ago.
func (e *Engine) repairHeld(ctx context.Context, env record.EnvKey, sha string, found []record.Placement) (RepairHold, error) {
	if _, locked, err := e.o.Store.EnvironmentLock(ctx, env); err != nil || locked {
		return HeldLocked, err
	}
	if busy, err := e.deploying(ctx, env); err != nil || busy {
		return HeldBusy, err
	}
	ds, err := e.o.Store.ListDeploys(ctx, env, 20)
	if err != nil {
		return "", fmt.Errorf("repair %s: read the last repair: %w", env, err)
	}
	i := slices.IndexFunc(ds, func(d record.Deploy) bool { return d.Kind == record.KindRepair })
	if i < 0 {
		return "", nil
	}
	last := ds[i]
	failed := last.State == record.StateFailure || last.State == record.StateError
	if !failed || last.SHA != sha || last.Why == nil || e.o.Now().Sub(last.FinishedAt) >= RepairRetryAfter {
		return "", nil
	}
	// An instance the failed repair did not know of (one just launched)
	// is repaired now, and the others with it.
	for _, p := range found {
		if !slices.ContainsFunc(last.Why.Found, func(q record.Placement) bool { return q.Instance == p.Instance }) {
			return "", nil
		}
	}
	return HeldBackoff, nil
}

// deploying reports whether a deploy of env is queued or running.
func (e *Engine) deploying(ctx context.Context, env record.EnvKey) (bool, error) {
	if _, ok, err := e.o.Store.Running(ctx, env); err != nil || ok {
		return ok, err
	}
	_, ok, err := e.o.Store.Pending(ctx, env)
	return ok, err
}

// repairHolding is Repair once it holds the lease: it looks again (a
// rollout may have ended between the first look and the lock), then
// repairs, renewing the lease; losing it stops the repair where it is.
func (e *Engine) repairHolding(ctx context.Context, t Target, env record.EnvKey, lease record.Lease) (RepairResult, error) {
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.renew(runCtx, lease, cancel)
	}()
	defer func() { <-done }()
	defer cancel(nil) // stops renew before the wait

	if busy, err := e.deploying(runCtx, env); err != nil || busy {
		return RepairResult{Held: HeldBusy}, err
	}
	cur, found, err := e.drift(runCtx, t, env)
	res := RepairResult{Current: cur.SHA, Found: found}
	if err != nil || len(found) == 0 {
		return res, err
	}
	d, err := e.startRepair(runCtx, env, cur, found)
	if err != nil {
		return res, err
	}
	logctx.From(ctx).Info("repairing drift", "environment", env.String(), "repair", d.ID, "release", cur.SHA, "instances", len(found))
	run, logTail := e.execute(runCtx, t, env, d)
	d, err = e.endRepair(context.WithoutCancel(ctx), d, run, logTail)
	res.ID, res.Outcome, res.Reason = d.ID, run.Outcome, reasonOf(d)
	if err == nil && run.Outcome == OutcomeCancelled {
		if cause := context.Cause(runCtx); cause != nil {
			err = fmt.Errorf("repair %s stopped: %w", d.ID, cause)
		}
	}
	return res, err
}

// startRepair records the repair as running, with what it found, and
// says so in the audit log.
func (e *Engine) startRepair(ctx context.Context, env record.EnvKey, cur record.Release, found []record.Placement) (record.Deploy, error) {
	now := e.o.Now()
	d := record.Deploy{
		ID: repairID(env, now), Env: env, SHA: cur.SHA, Ref: cur.Ref,
		Creator: record.ActorShipbot, Kind: record.KindRepair, State: record.StateRunning,
		CreatedAt: now, StartedAt: now, CommittedAt: cur.CommittedAt,
	}
	// The installation the release came through fetches it again (the
	// local driver builds it when its build is gone).
	if cur.DeployID != "" {
		if was, err := e.o.Store.GetDeploy(ctx, cur.DeployID); err == nil {
			d.InstallationID = was.InstallationID
		}
	}
	e.because(&d, record.Reason{Kind: record.ReasonDriftFound, Env: env.Name, Release: cur.SHA, Found: found})
	if err := e.o.Store.PutDeploy(ctx, d); err != nil {
		return d, fmt.Errorf("repair %s: record: %w", env, err)
	}
	e.audit(ctx, record.ActionDriftFound, record.OutcomeSuccess, d, d.Reason)
	return d, nil
}

// repairID names a repair as the handlers name deploys, in characters a
// URL path keeps as they are (the page is /deploys/{id}); owners hold no
// dot, so the repository's dot is where its name begins.
func repairID(env record.EnvKey, at time.Time) string {
	return fmt.Sprintf("repair-%s-%s-%d", strings.Replace(env.Repo, "/", ".", 1), strings.ToLower(env.Name), at.UnixNano())
}

// endRepair keeps how the repair ended in its record and the audit log.
func (e *Engine) endRepair(ctx context.Context, d record.Deploy, run Result, logTail string) (record.Deploy, error) {
	found := d.Why.Found
	why := run.Reason
	switch {
	case run.Outcome == OutcomeSuccess && len(run.Batches) > 0:
		why = record.Reason{Kind: record.ReasonRepaired, Env: d.Env.Name, Release: d.SHA, Found: found}
	case run.Outcome == OutcomeFailure || run.Outcome == OutcomeError:
		why = record.Reason{Kind: record.ReasonRepairFailed, Env: d.Env.Name, Release: d.SHA, Found: found, Cause: &run.Reason}
	}
	timings := e.timingsOf(run.Batches)
	first := "shipbot: " + d.Reason + "\n"
	d, err := e.o.Store.UpdateDeploy(ctx, d.ID, func(x *record.Deploy) error {
		x.State = stateOf(run.Outcome)
		e.because(x, why)
		// Which instances it found stays with the record, whatever the
		// end: the next repair's hold compares with them.
		x.Why.Found = found
		x.FinishedAt = run.Finished
		x.Batches = timings
		x.LogTail = first + logTail
		return nil
	})
	if err != nil {
		return d, fmt.Errorf("repair %s: record the result: %w", d.ID, err)
	}
	logctx.From(ctx).Info("repair finished", "repair", d.ID, "environment", d.Env.String(), "outcome", string(run.Outcome), "reason", d.Reason)
	e.audit(ctx, record.ActionDriftRepaired, auditOutcome(run.Outcome), d, d.Reason)
	return d, nil
}
