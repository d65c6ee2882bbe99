package deploy

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/shipbot/shipbot/internal/logctx"
	"github.com/shipbot/shipbot/internal/store/record"
)

// Freeze is a freeze window holding a deploy: a push while one of its
// environment's windows is open waits until the freeze lifts. The caller
// (the push handler, the sweep of waiting deploys) decides that a window
// is open; the engine records the hold, says it and keeps only the newest
// held deploy of an environment. Nothing in the engine's run path looks at
// freezes: a /rollback, or a deploy released, is never frozen here.
type Freeze struct {
	Window string    // the window as written in the configuration
	Zone   string    // its IANA time zone
	Until  time.Time // when the freeze lifts
	Since  time.Time // when it began to hold the deploy
}

// heldScan is how many of an environment's newest deploys are looked at
// for other held ones: each held push supersedes the older ones at once,
// so there is rarely more than one.
const heldScan = 20

// reason is why a deploy held by f waits, with the checks not green either.
func (f Freeze) reason(checks []string) record.Reason {
	return record.Reason{Kind: record.ReasonFrozen, Text: f.Window, TimeZone: f.Zone, Until: f.Until, At: f.Since, Checks: checks}
}

// freezeOf is the freeze a recorded deploy waits for; nil when none holds it.
func freezeOf(d record.Deploy) *Freeze {
	if d.State != record.StateWaiting || d.Why == nil || d.Why.Kind != record.ReasonFrozen {
		return nil
	}
	return &Freeze{Window: d.Why.Text, Zone: d.Why.TimeZone, Until: d.Why.Until, Since: d.Why.At}
}

// waitReason is why a deploy waits for req's freeze and checks; ok false
// when it waits for nothing.
func waitReason(req Request) (record.Reason, bool) {
	switch {
	case req.Frozen != nil:
		return req.Frozen.reason(req.WaitingOn), true
	case len(req.WaitingOn) > 0:
		return record.Reason{Kind: record.ReasonWaitingForChecks, Checks: req.WaitingOn}, true
	}
	return record.Reason{}, false
}

// waitAgain judges a deploy that waits again, for what req says it waits
// on now (the sweep after a check turned green, the freeze lifting, a
// window that moved; or a repeated job): nothing left → it is released as
// by ChecksPassed; a different reason → the record and GitHub are told;
// the same → nothing is written.
func (e *Engine) waitAgain(ctx context.Context, req Request, d record.Deploy) error {
	why, waits := waitReason(req)
	if !waits {
		return e.ChecksPassed(ctx, req.Target, d.ID)
	}
	if f := freezeOf(d); f != nil && req.Frozen != nil && f.Window == req.Frozen.Window && f.Until.Equal(req.Frozen.Until) {
		why.At = f.Since // the same freeze: it began to hold when it did
	}
	said := e.o.Notifier.Phrase(why)
	changed := false
	d, err := e.o.Store.UpdateDeploy(ctx, d.ID, func(x *record.Deploy) error {
		if x.State != record.StateWaiting || x.Reason == said {
			return nil
		}
		x.WaitingOn, changed = req.WaitingOn, true
		if req.Frozen != nil {
			x.FrozenUntil = req.Frozen.Until
		}
		e.because(x, why)
		return nil
	})
	if err != nil {
		return fmt.Errorf("deploy %s: record why it waits: %w", d.ID, err)
	}
	if changed {
		if err := e.o.Notifier.Waiting(ctx, e.info(req.Target, d)); err != nil {
			return fmt.Errorf("deploy %s: report why it waits: %w", d.ID, err)
		}
	}
	if req.Frozen != nil {
		_, err = e.supersedeHeld(ctx, req.Target, d)
	}
	return err
}

// supersedeHeld keeps one held deploy per environment: of the waiting
// deploys a freeze held (d among them), the newest stays and the others
// are superseded by it, so that when the freeze lifts exactly one runs.
// It reports whether d itself was superseded (a newer held push exists).
func (e *Engine) supersedeHeld(ctx context.Context, t Target, d record.Deploy) (bool, error) {
	ds, err := e.o.Store.ListDeploys(ctx, d.Env, heldScan)
	if err != nil {
		return false, fmt.Errorf("deploy %s: list the deploys of %s: %w", d.ID, d.Env, err)
	}
	held := slices.DeleteFunc(ds, func(x record.Deploy) bool {
		return x.State != record.StateWaiting || x.FrozenUntil.IsZero() || x.ID == d.ID
	})
	held = append(held, d)
	newest := held[0]
	for _, x := range held[1:] {
		if x.CreatedAt.After(newest.CreatedAt) || x.CreatedAt.Equal(newest.CreatedAt) && x.ID > newest.ID {
			newest = x
		}
	}
	for _, x := range held {
		if x.ID == newest.ID {
			continue
		}
		if err := e.supersedeWaiting(ctx, t, x.ID, newest); err != nil {
			return false, err
		}
	}
	return newest.ID != d.ID, nil
}

// supersedeWaiting marks the waiting deploy id superseded by newer and
// tells the Notifier; a deploy no longer waiting is left as it is.
func (e *Engine) supersedeWaiting(ctx context.Context, t Target, id string, newer record.Deploy) error {
	changed := false
	d, err := e.o.Store.UpdateDeploy(ctx, id, func(x *record.Deploy) error {
		if x.State != record.StateWaiting {
			return nil
		}
		x.State, x.FinishedAt, changed = record.StateSuperseded, e.o.Now(), true
		e.because(x, record.Reason{Kind: record.ReasonSuperseded, Release: newer.SHA})
		return nil
	})
	if err != nil {
		return fmt.Errorf("deploy %s: mark superseded: %w", id, err)
	}
	if !changed {
		return nil
	}
	logctx.From(ctx).Info("held deploy superseded by a newer held push", "deploy", id, "by", newer.ID)
	info := e.info(t, d)
	info.SupersededBy = newer.SHA
	if err := e.o.Notifier.Superseded(ctx, info); err != nil {
		return fmt.Errorf("deploy %s: report superseded: %w", id, err)
	}
	return nil
}
