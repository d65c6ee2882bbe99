package deploy

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/store/record"
)

const (
	heldSHA1 = "1111111111111111111111111111111111111111"
	heldSHA2 = "2222222222222222222222222222222222222222"
	heldSHA3 = "3333333333333333333333333333333333333333"
)

// weekend is the freeze a push on Friday evening meets.
func weekend(now time.Time) *Freeze {
	return &Freeze{Window: "Fri 16:00 - Mon 08:00 Europe/Berlin", Zone: "Europe/Berlin", Until: now.Add(62 * time.Hour), Since: now}
}

// A push in a freeze window is held (announced, not queued); a newer held
// push supersedes it at once; judging again changes nothing while nothing
// changed; when the freeze lifts the newest runs, and only it.
func TestEngineHoldsFrozenPushes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c := newEngineCase(t)
		f := weekend(time.Now())

		req1 := c.request("d1", heldSHA1)
		req1.Frozen = f
		if err := c.eng.Deploy(ctx, req1); err != nil {
			t.Fatal(err)
		}
		d1 := c.state(t, "d1")
		if d1.State != record.StateWaiting || d1.Why == nil || d1.Why.Kind != record.ReasonFrozen || !d1.FrozenUntil.Equal(f.Until) {
			t.Fatalf("held: %s %+v until %s", d1.State, d1.Why, d1.FrozenUntil)
		}
		if _, ok, _ := c.st.Pending(ctx, c.env); ok {
			t.Fatal("a held deploy is pending")
		}
		if c.notes.count("created d1") != 2 || c.notes.count("waiting") != 0 {
			t.Fatalf("announced with more than one status: %q", c.notes.lines)
		}

		time.Sleep(time.Minute)
		req2 := c.request("d2", heldSHA2)
		req2.Frozen = weekend(time.Now())
		req2.Frozen.Until = f.Until
		req2.WaitingOn = []string{"ci/test"}
		if err := c.eng.Deploy(ctx, req2); err != nil {
			t.Fatal(err)
		}
		if d := c.state(t, "d1"); d.State != record.StateSuperseded || d.Reason != "superseded by "+heldSHA2 {
			t.Fatalf("older held push: %s %q", d.State, d.Reason)
		}
		if !c.notes.has("superseded d1 by " + heldSHA2) {
			t.Fatalf("notes %q", c.notes.lines)
		}
		d2 := c.state(t, "d2")
		if want := "frozen until Mon"; d2.State != record.StateWaiting || len(d2.Reason) < len(want) || d2.Reason[:len(want)] != want ||
			!slices.Equal(d2.WaitingOn, []string{"ci/test"}) || !slices.Equal(d2.Why.Checks, []string{"ci/test"}) {
			t.Fatalf("held and waiting for checks: %s %q %v", d2.State, d2.Reason, d2.WaitingOn)
		}

		// The sweep a minute later: the same freeze, the same checks.
		time.Sleep(time.Minute)
		again := req2
		again.Frozen = weekend(time.Now())
		again.Frozen.Until = f.Until
		lines := len(c.notes.lines)
		if err := c.eng.Deploy(ctx, again); err != nil {
			t.Fatal(err)
		}
		if len(c.notes.lines) != lines || c.state(t, "d2").Reason != d2.Reason {
			t.Fatalf("judging again with nothing changed told the outside: %q", c.notes.lines[lines:])
		}

		// The freeze lifted, the check still runs: said once.
		thawed := req2
		thawed.Frozen = nil
		for range 2 {
			if err := c.eng.Deploy(ctx, thawed); err != nil {
				t.Fatal(err)
			}
		}
		if d := c.state(t, "d2"); d.State != record.StateWaiting || d.Why.Kind != record.ReasonWaitingForChecks || !d.FrozenUntil.Equal(f.Until) {
			t.Fatalf("thawed: %s %+v", d.State, d.Why)
		}
		if c.notes.count("waiting d2") != 1 {
			t.Fatalf("notes %q", c.notes.lines)
		}

		if err := c.eng.ChecksPassed(ctx, c.tgt, "d2"); err != nil {
			t.Fatal(err)
		}
		if d := c.state(t, "d2"); d.State != record.StateSuccess {
			t.Fatalf("released: %s %q", d.State, d.Reason)
		}
		if d := c.state(t, "d1"); d.State != record.StateSuperseded {
			t.Fatalf("the superseded push ran: %s", d.State)
		}
		if cur, _ := c.st.CurrentRelease(ctx, c.env); cur.SHA != heldSHA2 {
			t.Fatalf("current release %s", cur.SHA)
		}
		c.lockFree(t)
	})
}

// Two held pushes that missed each other (recorded at the same moment by
// two workers): when the freeze lifts and the older one is released first,
// it is superseded by the newer, and only the newer runs.
func TestEngineReleasesOnlyTheNewestHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c := newEngineCase(t)
		f := weekend(time.Now())
		for i, sha := range []string{heldSHA1, heldSHA2} {
			d := record.Deploy{
				ID: []string{"d1", "d2"}[i], Env: c.env, SHA: sha, Kind: record.KindPush, State: record.StateWaiting,
				InstallationID: 42, CreatedAt: time.Now().Add(time.Duration(i) * time.Second), FrozenUntil: f.Until,
			}
			why := f.reason(nil)
			d.Why = &why
			if err := c.st.PutDeploy(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.eng.Deploy(ctx, Request{ID: "d1", Target: c.tgt, Release: Release{Repo: "acme/web", InstallationID: 42, SHA: heldSHA1}, Kind: record.KindPush}); err != nil {
			t.Fatal(err)
		}
		if d := c.state(t, "d1"); d.State != record.StateSuperseded {
			t.Fatalf("the older held push: %s", d.State)
		}
		if d := c.state(t, "d2"); d.State != record.StateWaiting {
			t.Fatalf("the newer held push: %s", d.State)
		}
		if err := c.eng.ChecksPassed(ctx, c.tgt, "d2"); err != nil {
			t.Fatal(err)
		}
		if d := c.state(t, "d2"); d.State != record.StateSuccess {
			t.Fatalf("the newer held push after the freeze: %s", d.State)
		}
		if cur, _ := c.st.CurrentRelease(ctx, c.env); cur.SHA != heldSHA2 {
			t.Fatalf("current release %s", cur.SHA)
		}
	})
}

// The engine never holds a deploy on its own: a /rollback (or anything
// asked without Frozen) runs in an environment whose window is open.
func TestEngineNeverFreezesOnItsOwn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c := newEngineCase(t)
		always, err := repoconfig.ParseFreezeWindow("Mon 00:00 - Sun 23:59")
		if err != nil {
			t.Fatal(err)
		}
		env := *c.tgt.Environment
		env.Freeze = repoconfig.Freeze{always}
		c.tgt.Environment = &env
		req := c.request("rb", heldSHA3)
		req.Kind = record.KindRollback
		if err := c.eng.Deploy(ctx, req); err != nil {
			t.Fatal(err)
		}
		if d := c.state(t, "rb"); d.State != record.StateSuccess {
			t.Fatalf("rollback in an open window: %s %q", d.State, d.Reason)
		}
	})
}
