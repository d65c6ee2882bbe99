package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/shipbot/shipbot/internal/logctx"
	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/store/record"
)

// Store is what the engine needs to remember deploys, schedule them one at
// a time per environment and keep the release history.
type Store interface {
	PutDeploy(ctx context.Context, d record.Deploy) error
	GetDeploy(ctx context.Context, id string) (record.Deploy, error)
	ListDeploys(ctx context.Context, env record.EnvKey, n int) ([]record.Deploy, error)
	UpdateDeploy(ctx context.Context, id string, fn func(*record.Deploy) error) (record.Deploy, error)
	Enqueue(ctx context.Context, env record.EnvKey, deployID string) ([]string, error)
	Pending(ctx context.Context, env record.EnvKey) (string, bool, error)
	Running(ctx context.Context, env record.EnvKey) (string, bool, error)
	TakePending(ctx context.Context, env record.EnvKey, l record.Lease) (string, bool, error)
	FinishRunning(ctx context.Context, env record.EnvKey, l record.Lease, deployID string) error
	AcquireLock(ctx context.Context, env record.EnvKey, holder string, ttl time.Duration) (record.Lease, bool, error)
	RenewLock(ctx context.Context, l record.Lease, ttl time.Duration) error
	ReleaseLock(ctx context.Context, l record.Lease) error
	RecordRelease(ctx context.Context, env record.EnvKey, rel record.Release) error
	CurrentRelease(ctx context.Context, env record.EnvKey) (record.Release, error)
	EnvironmentLock(ctx context.Context, env record.EnvKey) (record.EnvLock, bool, error)
	AppendAudit(ctx context.Context, e record.AuditEntry) (record.AuditEntry, error)
}

// DeployInfo is what the outside is told about a deploy: enough to name it
// on GitHub and to find what was written there before.
type DeployInfo struct {
	ID             string
	Repo           string // owner/name
	InstallationID int64
	Environment    string
	Production     bool
	// EnvironmentURL is the environment's configured url; "" lets the
	// notifier use the driver's.
	EnvironmentURL string
	SHA            string
	Ref            string
	Creator        string
	Kind           string // record.Kind*
	Previous       string
	// State is the deploy's record.State* when it is announced or waits:
	// queued, waiting (for Frozen, WaitingOn) or locked (by LockedBy).
	State     string
	WaitingOn []string
	// Frozen is the freeze window holding a waiting deploy; nil when none.
	Frozen *Freeze
	// LockedBy and LockReason are the /lock holding the environment.
	LockedBy   string
	LockReason string
	// SupersededBy is the SHA that replaced a superseded deploy.
	SupersededBy       string
	GitHubDeploymentID int64
	CheckRunID         int64
	CreatedAt          time.Time
	StartedAt          time.Time
	// Notify is the repository's notify: configuration (Slack, webhooks).
	Notify repoconfig.Notify

	// Reannounce: an earlier call may have announced the deploy without
	// recording what it created (it died in between, or GitHub's answer
	// was lost); Created looks for that before creating anything.
	Reannounce bool
}

// Notifier tells the outside (GitHub) about a deploy. Every method may be
// called again for the same deploy after a crash.
type Notifier interface {
	// Created announces a queued deploy and returns what it created.
	Created(ctx context.Context, d DeployInfo) (ghDeploymentID, checkRunID int64, err error)
	// Update is one event of the deploy's rollout, in order. Finished
	// events are not passed here: Finished is.
	Update(ctx context.Context, d DeployInfo, ev Event) error
	// Finished is the rollout's end.
	Finished(ctx context.Context, d DeployInfo, res Result) error
	// Superseded says the deploy will never run: a newer one
	// (d.SupersededBy) replaced it.
	Superseded(ctx context.Context, d DeployInfo) error
	// Waiting says a queued deploy now waits, or waits for something else,
	// for d.State's reason: a /lock on the environment (d.LockedBy), a
	// freeze window (d.Frozen) or required checks (d.WaitingOn).
	Waiting(ctx context.Context, d DeployInfo) error
	// Phrase says a reason in the words the outside is told it
	// (report.Reason), for what the engine keeps for people to read: the
	// deploy record's Reason and the deploy log.
	Phrase(r record.Reason) string
}

// EngineOptions configure an Engine.
type EngineOptions struct {
	Store    Store
	Drivers  map[repoconfig.Driver]Driver
	Notifier Notifier
	// Querier evaluates analysis.prometheus checks (internal/promquery);
	// nil makes every such check unreadable, which halts the rollout.
	Querier Querier
	// Secrets reads the values of an environment's secrets
	// (internal/secrets); nil: a deploy that needs one fails saying it is
	// not set.
	Secrets SecretSource
	// LockTTL is how long the deploy lock of an environment outlives a
	// holder that stops renewing it; default 30s.
	LockTTL time.Duration
	// Holder names this process in the lock (hostname-pid).
	Holder string
	// Now is the clock; default time.Now.
	Now func() time.Time
	// PublicURL is where the bot's deploy pages are (PUBLIC_URL): the
	// audit log links each deploy's entries to PublicURL/deploys/{id}.
	PublicURL string
}

// Engine runs deploys: one at a time per environment, the newest queued
// one next, each through Execute, with its record, release history and
// GitHub reporting.
type Engine struct {
	o EngineOptions
}

// NewEngine returns an engine.
func NewEngine(o EngineOptions) (*Engine, error) {
	if o.Store == nil || o.Notifier == nil {
		return nil, errors.New("deploy engine: Store and Notifier are required")
	}
	if o.Holder == "" {
		return nil, errors.New("deploy engine: Holder is empty: name the process holding deploy locks")
	}
	if o.LockTTL <= 0 {
		o.LockTTL = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Engine{o: o}, nil
}

// Request asks for a release on an environment.
type Request struct {
	// ID identifies the deploy; the same ID again (a repeated job) is the
	// same deploy. Empty: one is made from the environment, SHA and time.
	ID      string
	Target  Target
	Release Release
	Kind    string // record.Kind*
	Creator string
	// WaitingOn are required checks not green yet: the deploy is recorded
	// and announced as waiting for them, and queued only by ChecksPassed.
	WaitingOn []string
	// Frozen is the open freeze window holding the deploy (a push in a
	// window): it is recorded and announced as waiting until the freeze
	// lifts, with WaitingOn said too, and supersedes the older deploys
	// the freeze holds in the environment. The caller judges freezes: the
	// engine never holds a deploy on its own.
	Frozen *Freeze
}

// ErrLockLost is returned when the deploy lock was lost mid-rollout; the
// rollout stopped where it was and the next holder carries it on.
var ErrLockLost = errors.New("deploy lock lost mid-rollout")

// Deploy records the request as a queued deploy, tells the Notifier,
// enqueues it (superseding older queued ones) and, if this process gets the
// environment's lock, runs every pending deploy of the environment until
// none is left. Every step is safe to repeat: a job retried after a crash
// calls Deploy again with the same request ID.
//
// A deploy that waits (req.Frozen, req.WaitingOn) is recorded and
// announced, and only queued when nothing holds it any more. A request
// for a deploy that still waits — the sweep judging it again, or a
// repeated job — says what it waits for now: GitHub is told when that
// changed, and the deploy is released when it waits for nothing.
func (e *Engine) Deploy(ctx context.Context, req Request) error {
	if req.Target.Environment == nil {
		return errors.New("deploy: request without an environment")
	}
	env := record.EnvKey{Repo: req.Target.Repo, Name: req.Target.Environment.Name}
	id := req.ID
	if id == "" {
		id = fmt.Sprintf("%s:%s:%d", env, req.Release.SHA, e.o.Now().UnixNano())
	}
	d, err := e.o.Store.GetDeploy(ctx, id)
	reannounce := err == nil // recorded before: an earlier call may have announced it
	if errors.Is(err, record.ErrNotFound) {
		d = record.Deploy{
			ID: id, Env: env, SHA: req.Release.SHA, Ref: req.Release.Ref, Creator: req.Creator,
			Kind: req.Kind, State: record.StateQueued, InstallationID: req.Release.InstallationID,
			CreatedAt: e.o.Now(), CommittedAt: req.Release.CommittedAt,
		}
		if why, waits := waitReason(req); waits {
			d.State, d.WaitingOn = record.StateWaiting, req.WaitingOn
			if req.Frozen != nil {
				d.FrozenUntil = req.Frozen.Until
			}
			e.because(&d, why)
		}
		if err := e.o.Store.PutDeploy(ctx, d); err != nil {
			return fmt.Errorf("deploy %s: record: %w", id, err)
		}
		action, outcome, text := record.ActionDeployQueued, record.OutcomeSuccess, ""
		if d.State == record.StateWaiting {
			outcome, text = record.OutcomeHeld, d.Reason
			if req.Frozen != nil {
				action = record.ActionFreezeHeld
			}
		}
		e.audit(ctx, action, outcome, d, text)
		d, err = e.o.Store.GetDeploy(ctx, id)
	}
	if err != nil {
		return fmt.Errorf("deploy %s: read record: %w", id, err)
	}
	switch d.State {
	case record.StateQueued, record.StateLocked, record.StateWaiting:
	default:
		return e.runAll(ctx, req.Target, env) // past queueing: a repeated job
	}
	if d.GitHubDeploymentID == 0 {
		if d, err = e.announce(ctx, req.Target, env, d, reannounce); err != nil {
			return err
		}
	}
	if d.State == record.StateWaiting {
		// ChecksPassed or ChecksFailed goes on, or a request judging again.
		return e.waitAgain(ctx, req, d)
	}
	return e.enqueue(ctx, req.Target, env, id)
}

// announce tells the Notifier of a new deploy and records what it created.
func (e *Engine) announce(ctx context.Context, t Target, env record.EnvKey, d record.Deploy, reannounce bool) (record.Deploy, error) {
	info := e.info(t, d)
	info.Reannounce = reannounce
	if d.State == record.StateQueued {
		// A /lock already holds the environment: say so from the start
		// rather than with a second status a moment later.
		lk, locked, err := e.o.Store.EnvironmentLock(ctx, env)
		if err != nil {
			return d, fmt.Errorf("deploy %s: read the lock of %s: %w", d.ID, env, err)
		}
		if locked {
			info.State, info.LockedBy, info.LockReason = record.StateLocked, lk.By, lk.Reason
		}
	}
	ghID, crID, err := e.o.Notifier.Created(ctx, info)
	if err != nil {
		return d, fmt.Errorf("deploy %s: announce: %w", d.ID, err)
	}
	d, err = e.o.Store.UpdateDeploy(ctx, d.ID, func(x *record.Deploy) error {
		x.GitHubDeploymentID, x.CheckRunID = ghID, crID
		if x.State == record.StateQueued && info.State == record.StateLocked {
			x.State = record.StateLocked
			e.because(x, lockReason(info.LockedBy, info.LockReason))
		}
		return nil
	})
	if err != nil {
		return d, fmt.Errorf("deploy %s: record GitHub ids: %w", d.ID, err)
	}
	return d, nil
}

// enqueue puts deploy id in the environment's pending slot, superseding
// older queued ones, and runs what is pending if this process gets the lock.
func (e *Engine) enqueue(ctx context.Context, t Target, env record.EnvKey, id string) error {
	superseded, err := e.o.Store.Enqueue(ctx, env, id)
	if err != nil {
		return fmt.Errorf("deploy %s: enqueue: %w", id, err)
	}
	for _, old := range superseded {
		if err := e.supersede(ctx, t, env, old, id); err != nil {
			return err
		}
	}
	return e.runAll(ctx, t, env)
}

// ChecksPassed queues a deploy that waited for required checks, and runs
// it if this process gets the environment's lock. A deploy no longer
// waiting (a repeated event) is left as it is.
func (e *Engine) ChecksPassed(ctx context.Context, t Target, id string) error {
	d, err := e.o.Store.GetDeploy(ctx, id)
	if err != nil {
		return fmt.Errorf("deploy %s: read: %w", id, err)
	}
	env := d.Env
	if d.State == record.StateWaiting && !d.FrozenUntil.IsZero() {
		// Only the newest deploy a freeze held runs when it lifts.
		if gone, err := e.supersedeHeld(ctx, t, d); err != nil || gone {
			return err
		}
	}
	if d.State == record.StateWaiting {
		d, err = e.o.Store.UpdateDeploy(ctx, id, func(x *record.Deploy) error {
			if x.State == record.StateWaiting {
				x.State, x.WaitingOn, x.Reason, x.Why = record.StateQueued, nil, "", nil
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("deploy %s: mark queued: %w", id, err)
		}
	}
	switch d.State {
	case record.StateQueued, record.StateLocked:
		return e.enqueue(ctx, t, env, id)
	}
	return nil
}

// ChecksFailed ends a deploy that waited for required checks as a failure
// naming what failed (reason, in the words of the caller, which knows the
// checks). Nothing was touched.
func (e *Engine) ChecksFailed(ctx context.Context, t Target, id, reason string) error {
	var was string
	why := record.Reason{Kind: record.ReasonText, Text: reason}
	d, err := e.o.Store.UpdateDeploy(ctx, id, func(x *record.Deploy) error {
		was = x.State
		if x.State == record.StateWaiting {
			x.State, x.FinishedAt = record.StateFailure, e.o.Now()
			e.because(x, why)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("deploy %s: mark failed: %w", id, err)
	}
	if was != record.StateWaiting && !(was == record.StateFailure && d.Reason == reason) {
		return nil // not waiting any more; a repeat after the failure is reported again below
	}
	res := Result{Outcome: OutcomeFailure, Release: releaseOf(d), Reason: why, Finished: d.FinishedAt}
	if err := e.o.Notifier.Finished(ctx, e.info(t, d), res); err != nil {
		return fmt.Errorf("deploy %s: report the failed checks: %w", id, err)
	}
	return nil
}

// Resume runs what is pending in t's environment unless a /lock holds it:
// what /unlock calls.
func (e *Engine) Resume(ctx context.Context, t Target) error {
	if t.Environment == nil {
		return errors.New("resume: no environment")
	}
	return e.runAll(ctx, t, record.EnvKey{Repo: t.Repo, Name: t.Environment.Name})
}

// lockReason is why a deploy waits for the /lock by, given for why.
func lockReason(by, why string) record.Reason {
	return record.Reason{Kind: record.ReasonLocked, By: by, Text: why}
}

// because sets why d is in its state: the reason, and its words.
func (e *Engine) because(d *record.Deploy, why record.Reason) {
	d.Reason, d.Why = e.o.Notifier.Phrase(why), &why
}

// reasonOf is why a recorded deploy is in its state, as data; a record
// written before reasons were data keeps only its words.
func reasonOf(d record.Deploy) record.Reason {
	if d.Why != nil {
		return *d.Why
	}
	return record.Reason{Kind: record.ReasonText, Text: d.Reason}
}

// supersede marks deploy old superseded (by the newest queued deploy, which
// is by unless by itself lost) and tells the Notifier.
func (e *Engine) supersede(ctx context.Context, t Target, env record.EnvKey, old, by string) error {
	if old == by {
		pending, ok, err := e.o.Store.Pending(ctx, env)
		if err != nil {
			return fmt.Errorf("deploy %s: read pending: %w", old, err)
		}
		if !ok {
			if pending, ok, err = e.o.Store.Running(ctx, env); err != nil || !ok {
				return err
			}
		}
		by = pending
	}
	newer, err := e.o.Store.GetDeploy(ctx, by)
	if err != nil {
		return fmt.Errorf("deploy %s: read the deploy superseding it: %w", old, err)
	}
	d, err := e.o.Store.UpdateDeploy(ctx, old, func(x *record.Deploy) error {
		x.State = record.StateSuperseded
		e.because(x, record.Reason{Kind: record.ReasonSuperseded, Release: newer.SHA})
		x.FinishedAt = e.o.Now()
		return nil
	})
	if err != nil {
		return fmt.Errorf("deploy %s: mark superseded: %w", old, err)
	}
	info := e.info(t, d)
	info.SupersededBy = newer.SHA
	if err := e.o.Notifier.Superseded(ctx, info); err != nil {
		return fmt.Errorf("deploy %s: report superseded: %w", old, err)
	}
	return nil
}

// runAll takes the environment's lock and runs what is pending; it gives
// the lock back and looks again, so that a deploy enqueued just before the
// release is not left waiting for nobody.
func (e *Engine) runAll(ctx context.Context, t Target, env record.EnvKey) error {
	for {
		lease, ok, err := e.o.Store.AcquireLock(ctx, env, e.o.Holder, e.o.LockTTL)
		if err != nil {
			return fmt.Errorf("deploy lock of %s: %w", env, err)
		}
		if !ok {
			return nil // the holder runs it
		}
		held, err := e.drain(ctx, t, env, lease)
		// A new context: the lock must go back even when ctx ended.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if rerr := e.o.Store.ReleaseLock(rctx, lease); rerr != nil && err == nil {
			err = fmt.Errorf("release the deploy lock of %s: %w", env, rerr)
		}
		cancel()
		if err != nil {
			return err
		}
		if held {
			// An /unlock between the look and the release found the deploy
			// lock taken and left the queue to us: look again.
			if _, still, err := e.o.Store.EnvironmentLock(ctx, env); err != nil || still {
				return err
			}
		}
		if _, more, err := e.o.Store.Pending(ctx, env); err != nil || !more {
			return err
		}
	}
}

// drain runs the orphan in the running slot, if any, then every pending
// deploy, while renewing the lease; losing the lease cancels the run. It
// stops before a pending deploy while a /lock holds the environment
// (held), marking that deploy locked.
func (e *Engine) drain(ctx context.Context, t Target, env record.EnvKey, lease record.Lease) (held bool, err error) {
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.renew(runCtx, lease, cancel)
	}()
	defer wg.Wait()
	defer cancel(nil) // stops renew before the Wait

	if id, ok, err := e.o.Store.Running(runCtx, env); err != nil {
		return false, fmt.Errorf("read the running deploy of %s: %w", env, err)
	} else if ok {
		logctx.From(ctx).Info("carrying on a deploy whose holder stopped", "deploy", id, "environment", env.String())
		if err := e.run(runCtx, t, env, lease, id); err != nil {
			return false, err
		}
	}
	for {
		if held, err := e.heldByLock(runCtx, t, env); err != nil || held {
			return held, err
		}
		id, ok, err := e.o.Store.TakePending(runCtx, env, lease)
		if err != nil {
			if cause := context.Cause(runCtx); cause != nil {
				return false, cause
			}
			return false, fmt.Errorf("take the pending deploy of %s: %w", env, err)
		}
		if !ok {
			return false, nil
		}
		if err := e.run(runCtx, t, env, lease, id); err != nil {
			return false, err
		}
	}
}

// heldByLock reports whether a /lock holds the environment; the pending
// deploy, if any, is then marked locked and GitHub told why it waits.
func (e *Engine) heldByLock(ctx context.Context, t Target, env record.EnvKey) (bool, error) {
	lk, locked, err := e.o.Store.EnvironmentLock(ctx, env)
	if err != nil {
		return false, fmt.Errorf("read the lock of %s: %w", env, err)
	}
	if !locked {
		return false, nil
	}
	id, ok, err := e.o.Store.Pending(ctx, env)
	if err != nil || !ok {
		return true, err
	}
	why := lockReason(lk.By, lk.Reason)
	said := e.o.Notifier.Phrase(why)
	changed := false
	d, err := e.o.Store.UpdateDeploy(ctx, id, func(x *record.Deploy) error {
		if x.State == record.StateQueued || (x.State == record.StateLocked && x.Reason != said) {
			x.State, changed = record.StateLocked, true
			e.because(x, why)
		}
		return nil
	})
	if err != nil {
		return true, fmt.Errorf("deploy %s: mark locked: %w", id, err)
	}
	if changed {
		logctx.From(ctx).Info("deploy waits for /unlock", "deploy", id, "environment", env.String(), "locked_by", lk.By)
		info := e.info(t, d)
		info.LockedBy, info.LockReason = lk.By, lk.Reason
		if err := e.o.Notifier.Waiting(ctx, info); err != nil {
			return true, fmt.Errorf("deploy %s: report the lock: %w", id, err)
		}
	}
	return true, nil
}

// renew keeps the lease alive every LockTTL/3 until ctx ends, and cancels
// ctx with ErrLockLost when the store says the lease is gone.
func (e *Engine) renew(ctx context.Context, lease record.Lease, cancel context.CancelCauseFunc) {
	t := time.NewTicker(e.o.LockTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := e.o.Store.RenewLock(ctx, lease, e.o.LockTTL)
		switch {
		case err == nil:
		case errors.Is(err, record.ErrLockLost):
			logctx.From(ctx).Error("deploy lock lost: stopping the rollout where it is", "environment", lease.Env.String())
			cancel(ErrLockLost)
			return
		case ctx.Err() == nil:
			logctx.From(ctx).Warn("could not renew the deploy lock; trying again", "environment", lease.Env.String(), "err", err)
		}
	}
}

// terminal reports whether a deploy state is an end.
func terminal(state string) bool {
	switch state {
	case record.StateSuccess, record.StateFailure, record.StateError, record.StateSuperseded, record.StateCancelled:
		return true
	}
	return false
}

// run executes the deploy in the running slot and finishes it.
func (e *Engine) run(ctx context.Context, t Target, env record.EnvKey, lease record.Lease, id string) error {
	d, err := e.o.Store.GetDeploy(ctx, id)
	if err != nil {
		return fmt.Errorf("deploy %s: read: %w", id, err)
	}
	if terminal(d.State) {
		return e.endAgain(ctx, t, env, lease, d)
	}
	if d, err = e.start(ctx, env, d); err != nil {
		return err
	}
	res, logTail := e.execute(ctx, t, env, d)
	if res.Outcome == OutcomeCancelled {
		if cause := context.Cause(ctx); cause != nil {
			return fmt.Errorf("deploy %s stopped: %w", id, cause)
		}
		return fmt.Errorf("deploy %s stopped: %s", id, e.o.Notifier.Phrase(res.Reason))
	}
	// The rest must happen even if the job's context ends now.
	return e.finish(context.WithoutCancel(ctx), t, env, lease, d, res, logTail)
}

// endAgain says again how a deploy that finished before a crash ended (the
// last step may not have reached GitHub) and frees the running slot.
func (e *Engine) endAgain(ctx context.Context, t Target, env record.EnvKey, lease record.Lease, d record.Deploy) error {
	if d.State != record.StateSuperseded {
		res := Result{Outcome: outcomeOf(d.State), Release: releaseOf(d), Previous: d.Previous, Reason: reasonOf(d), Started: d.StartedAt, Finished: d.FinishedAt}
		if err := e.o.Notifier.Finished(ctx, e.info(t, d), res); err != nil {
			return fmt.Errorf("deploy %s: report the end: %w", d.ID, err)
		}
	}
	return e.o.Store.FinishRunning(ctx, env, lease, d.ID)
}

// start marks the deploy running, with the release it replaces, unless a
// holder that stopped already had.
func (e *Engine) start(ctx context.Context, env record.EnvKey, d record.Deploy) (record.Deploy, error) {
	if d.State == record.StateRunning && !d.StartedAt.IsZero() {
		return d, nil
	}
	cur, err := e.o.Store.CurrentRelease(ctx, env)
	if err != nil && !errors.Is(err, record.ErrNotFound) {
		return d, fmt.Errorf("deploy %s: read the current release: %w", d.ID, err)
	}
	d, err = e.o.Store.UpdateDeploy(ctx, d.ID, func(x *record.Deploy) error {
		x.State, x.StartedAt = record.StateRunning, e.o.Now()
		x.Previous, x.PreviousDeploy = cur.SHA, cur.DeployID
		return nil
	})
	if err != nil {
		return d, fmt.Errorf("deploy %s: mark running: %w", d.ID, err)
	}
	e.audit(ctx, record.ActionDeployStarted, record.OutcomeSuccess, d, "")
	return d, nil
}

// execute rolls the deploy out, handing its events to the Notifier and its
// progress to the record; it returns the result and the deploy log.
func (e *Engine) execute(ctx context.Context, t Target, env record.EnvKey, d record.Deploy) (Result, string) {
	drv := e.o.Drivers[t.Environment.Driver]
	if drv == nil {
		// Execute says so as an error outcome; nothing is touched.
		logctx.From(ctx).Warn("no driver for the environment", "deploy", d.ID, "environment", env.String(), "driver", string(t.Environment.Driver))
	}
	var why *record.Reason
	if t.Environment != nil {
		t.Vars, t.Secrets, why = ResolveVars(ctx, e.o.Secrets, t.Repo, t.Environment.Name, t.App.Env, t.Environment.Env, t.Environment.Secrets)
	}
	if why != nil {
		// Nothing was touched: the deploy fails before its plan.
		now := e.o.Now()
		return Result{Outcome: OutcomeFailure, Release: releaseOf(d), Previous: d.Previous, Reason: *why, Started: now, Finished: now}, ""
	}
	var tell Notifier = e.o.Notifier
	if d.Kind == record.KindRepair {
		tell = nil // nothing was deployed: GitHub hears nothing of a repair
	}
	updates := newUpdater(ctx, tell, e.info(t, d), func(ctx context.Context, ev Event) { e.progress(ctx, d.ID, ev) })
	var logBuf bytes.Buffer
	mask := newMasker(t.Secrets)
	logw := NewMaskWriter(&syncWriter{w: &logBuf}, t.Secrets)
	res := Execute(ctx, ExecInput{
		Target:   t,
		Release:  releaseOf(d),
		Previous: d.Previous,
		Driver:   drv,
		Report: func(ev Event) {
			if ev.Kind != Finished {
				updates.send(ev)
			}
		},
		Log:     logw,
		Phrase:  e.o.Notifier.Phrase,
		Now:     e.o.Now,
		Querier: e.o.Querier,
		// A rollback puts back a release that ran before: no bake, no
		// analysis (SPEC §4), the health checks stay.
		SkipBake: d.Kind == record.KindRollback,
		// Nor a release phase: a down-migration is the user's to run.
		SkipRelease: d.Kind == record.KindRollback,
		Repair:      d.Kind == record.KindRepair,
	})
	updates.close()
	logw.Flush()
	mask.Reason(&res.Reason)
	for i := range res.Batches {
		mask.Reason(res.Batches[i].Failure)
	}
	return res, logBuf.String()
}

// finish keeps the result — the release in the history, the deploy's
// record — tells the Notifier and frees the running slot.
func (e *Engine) finish(ctx context.Context, t Target, env record.EnvKey, lease record.Lease, d record.Deploy, res Result, logTail string) error {
	timings := e.timingsOf(res.Batches)
	if res.Outcome == OutcomeSuccess && d.Kind == record.KindRollback {
		if err := e.markRolledBack(ctx, env, d); err != nil {
			return fmt.Errorf("deploy %s: mark the release it replaced rolled back: %w", d.ID, err)
		}
	}
	if res.Outcome == OutcomeSuccess || res.Outcome == OutcomeFailure {
		result := record.ResultSuccess
		if res.Outcome == OutcomeFailure {
			result = record.ResultFailure
		}
		if err := e.o.Store.RecordRelease(ctx, env, record.Release{
			DeployID: d.ID, SHA: d.SHA, Ref: d.Ref, By: d.Creator, At: res.Finished, Result: result, Batches: timings,
			CommittedAt: d.CommittedAt,
		}); err != nil {
			return fmt.Errorf("deploy %s: record the release: %w", d.ID, err)
		}
	}
	d, err := e.o.Store.UpdateDeploy(ctx, d.ID, func(x *record.Deploy) error {
		x.State = stateOf(res.Outcome)
		e.because(x, res.Reason)
		x.FinishedAt = res.Finished
		x.Batches = timings
		x.LogTail = logTail
		return nil
	})
	if err != nil {
		return fmt.Errorf("deploy %s: record the result: %w", d.ID, err)
	}
	logctx.From(ctx).Info("deploy finished", "deploy", d.ID, "environment", env.String(), "outcome", string(res.Outcome), "reason", d.Reason)
	action := record.ActionDeployFinished
	if d.Kind == record.KindRollback {
		action = record.ActionRollback
	}
	e.audit(ctx, action, auditOutcome(res.Outcome), d, d.Reason)
	if err := e.o.Notifier.Finished(ctx, e.info(t, d), res); err != nil {
		return fmt.Errorf("deploy %s: report the end: %w", d.ID, err)
	}
	return e.o.Store.FinishRunning(ctx, env, lease, d.ID)
}

// markRolledBack marks the release a successful rollback d replaced
// (PreviousDeploy) as rolled back: it went out and had to be undone, a
// failed change for the delivery metrics and no longer a release /rollback
// goes back to. It runs before d's own release is recorded, while the
// replaced one is still the current release; repeated after a crash, it
// finds that one marked already, or d current, and changes nothing.
func (e *Engine) markRolledBack(ctx context.Context, env record.EnvKey, d record.Deploy) error {
	if d.PreviousDeploy == "" {
		return nil
	}
	cur, err := e.o.Store.CurrentRelease(ctx, env)
	switch {
	case errors.Is(err, record.ErrNotFound):
		return nil
	case err != nil:
		return err
	case cur.DeployID != d.PreviousDeploy:
		return nil
	}
	cur.Result = record.ResultRolledBack
	return e.o.Store.RecordRelease(ctx, env, cur)
}

// audit appends an entry for deploy d to the audit log. The log must not
// stop a rollout: a failed append is logged and the deploy goes on.
func (e *Engine) audit(ctx context.Context, action, outcome string, d record.Deploy, text string) {
	actor := d.Creator
	if actor == "" {
		actor = record.ActorShipbot
	}
	entry := record.AuditEntry{
		Actor: actor, Repo: d.Env.Repo, Env: d.Env.Name, Action: action, Outcome: outcome, Text: text,
		Link: strings.TrimSuffix(e.o.PublicURL, "/") + "/deploys/" + d.ID,
	}
	if _, err := e.o.Store.AppendAudit(ctx, entry); err != nil {
		logctx.From(ctx).Warn("audit log: the entry was not written", "deploy", d.ID, "action", action, "err", err)
	}
}

// auditOutcome is a rollout's outcome as the audit log says it.
func auditOutcome(o Outcome) string {
	switch o {
	case OutcomeSuccess:
		return record.OutcomeSuccess
	case OutcomeFailure:
		return record.OutcomeFailure
	case OutcomeCancelled:
		return record.OutcomeCancelled
	default:
		return record.OutcomeError
	}
}

func (e *Engine) info(t Target, d record.Deploy) DeployInfo {
	info := DeployInfo{
		ID: d.ID, Repo: d.Env.Repo, InstallationID: d.InstallationID, Environment: d.Env.Name,
		SHA: d.SHA, Ref: d.Ref, Creator: d.Creator, Kind: d.Kind, Previous: d.Previous,
		GitHubDeploymentID: d.GitHubDeploymentID, CheckRunID: d.CheckRunID,
		CreatedAt: d.CreatedAt, StartedAt: d.StartedAt, State: d.State, WaitingOn: d.WaitingOn,
		Frozen: freezeOf(d), Notify: t.Notify,
	}
	if t.Environment != nil {
		info.Production = t.Environment.Production
		info.EnvironmentURL = t.Environment.URL
	}
	return info
}

func releaseOf(d record.Deploy) Release {
	return Release{Repo: d.Env.Repo, InstallationID: d.InstallationID, SHA: d.SHA, Ref: d.Ref, CommittedAt: d.CommittedAt}
}

func stateOf(o Outcome) string {
	switch o {
	case OutcomeSuccess:
		return record.StateSuccess
	case OutcomeFailure:
		return record.StateFailure
	case OutcomeCancelled:
		return record.StateCancelled
	default:
		return record.StateError
	}
}

func outcomeOf(state string) Outcome {
	switch state {
	case record.StateSuccess:
		return OutcomeSuccess
	case record.StateFailure:
		return OutcomeFailure
	case record.StateCancelled:
		return OutcomeCancelled
	default:
		return OutcomeError
	}
}

func (e *Engine) timingsOf(bs []BatchResult) []record.BatchTiming {
	if len(bs) == 0 {
		return nil
	}
	out := make([]record.BatchTiming, len(bs))
	for i, b := range bs {
		out[i] = record.BatchTiming{
			Index: b.Index, Instances: b.Instances, Started: b.Started, Finished: b.Finished,
			Drain: b.Drain, Install: b.Install, Health: b.Health, Admit: b.Admit, Bake: b.Bake,
			Analysis: b.Analysis,
		}
		e.failed(&out[i], b.Failure)
	}
	return out
}

// failed sets why the batch failed: the reason, and its words.
func (e *Engine) failed(b *record.BatchTiming, why *record.Reason) {
	if why != nil {
		b.Err, b.Failure = e.o.Notifier.Phrase(*why), why
	}
}

// progress keeps the running deploy's batches in its record as they go
// (the plan, then each batch's start, end or error), so that the deploy
// page shows a rollout while it runs. The final record replaces them with
// the result's timings. A failed write costs only the live view.
func (e *Engine) progress(ctx context.Context, id string, ev Event) {
	switch ev.Kind {
	case Planned, BatchStarted, BatchHealthy, BatchFailed, Judged:
	default:
		return
	}
	_, err := e.o.Store.UpdateDeploy(ctx, id, func(x *record.Deploy) error {
		if ev.Kind == Planned {
			if ev.Plan == nil {
				return nil
			}
			x.Batches = make([]record.BatchTiming, len(ev.Plan.Batches))
			for i, b := range ev.Plan.Batches {
				ids := make([]string, len(b.Instances))
				for j, inst := range b.Instances {
					ids[j] = inst.ID
				}
				x.Batches[i] = record.BatchTiming{Index: b.Index, Instances: ids}
			}
			return nil
		}
		if ev.Batch < 0 || ev.Batch >= len(x.Batches) {
			return nil
		}
		b := &x.Batches[ev.Batch]
		switch ev.Kind {
		case BatchStarted:
			b.Started = ev.At
		case BatchHealthy:
			b.Finished = ev.At
		case BatchFailed:
			e.failed(b, ev.Reason)
		case Judged:
			b.Analysis = ev.Analysis
		}
		return nil
	})
	if err != nil {
		logctx.From(ctx).Warn("could not record the rollout's progress", "deploy", id, "err", err)
	}
}

// updater hands a run's events to the Notifier (none: only to record) in
// order on its own goroutine, so GitHub's latency never holds a batch
// (ExecInput.Report must be cheap).
type updater struct {
	ch   chan Event
	done chan struct{}
}

func newUpdater(ctx context.Context, n Notifier, info DeployInfo, record func(context.Context, Event)) *updater {
	u := &updater{ch: make(chan Event, 1024), done: make(chan struct{})}
	go func() {
		defer close(u.done)
		uctx := context.WithoutCancel(ctx)
		for ev := range u.ch {
			record(uctx, ev)
			if n == nil {
				continue
			}
			if err := n.Update(uctx, info, ev); err != nil {
				logctx.From(ctx).Warn("could not report a rollout event", "deploy", info.ID, "event", ev.Kind.String(), "err", err)
			}
		}
	}()
	return u
}

func (u *updater) send(ev Event) { u.ch <- ev }

// close waits until every event sent was handed over.
func (u *updater) close() {
	close(u.ch)
	<-u.done
}

// syncWriter bounds the deploy log kept in memory; Execute serializes its
// writes, the mutex keeps that true whatever it does.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w.Len() > record.MaxLogTail*2 {
		// Keep the tail only: the store keeps no more than MaxLogTail.
		keep := append([]byte(nil), s.w.Bytes()[s.w.Len()-record.MaxLogTail:]...)
		s.w.Reset()
		s.w.Write(keep)
	}
	return s.w.Write(p)
}
