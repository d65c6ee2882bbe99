package deploy

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/store"
	"github.com/shipbot/shipbot/internal/store/record"
)

// repairCase is an engine over a fake fleet whose environment's current
// release is newRelease.
type repairCase struct {
	*engineCase
}

// newRepairCase: members as the fleet has them, rollout ro, and
// newRelease current. surge makes the driver able to start extra instances.
func newRepairCase(t *testing.T, ro repoconfig.Rollout, surge bool, members ...Instance) *repairCase {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c := &engineCase{st: st, fleet: newFakeFleet(t.Errorf, ro.MaxUnavailable.Of(len(members)), members...), notes: &notes{},
		env: record.EnvKey{Repo: "acme/web", Name: "production"}}
	c.tgt = Target{Repo: "acme/web", Environment: testEnvironment(ro)}
	var drv Driver = c.fleet
	if surge {
		drv = surgingFleet{c.fleet}
	}
	c.eng, err = NewEngine(EngineOptions{
		Store: st, Drivers: map[repoconfig.Driver]Driver{repoconfig.DriverLocal: drv}, Notifier: c.notes,
		LockTTL: 30 * time.Second, Holder: "test", PublicURL: "https://shipbot.example.com",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutDeploy(ctx, record.Deploy{ID: "d0", Env: c.env, SHA: newRelease, Kind: record.KindPush, State: record.StateSuccess, InstallationID: 42}); err != nil {
		t.Fatal(err)
	}
	if err := st.RecordRelease(ctx, c.env, record.Release{DeployID: "d0", SHA: newRelease, Ref: "main", Result: record.ResultSuccess, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return &repairCase{c}
}

// audit is the audit log's entries of action, oldest first.
func (c *repairCase) audit(t *testing.T, action string) []record.AuditEntry {
	t.Helper()
	page, err := c.st.ListAudit(context.Background(), record.AuditFilter{Repo: c.env.Repo, Env: c.env.Name, Limit: record.AuditPageMax})
	if err != nil {
		t.Fatal(err)
	}
	var out []record.AuditEntry
	for _, e := range page.Entries {
		if e.Action == action {
			out = append(out, e)
		}
	}
	slices.Reverse(out)
	return out
}

func (c *repairCase) repair(t *testing.T) RepairResult {
	t.Helper()
	res, err := c.eng.Repair(context.Background(), c.tgt)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func foundIDs(found []record.Placement) []string {
	var ids []string
	for _, p := range found {
		ids = append(ids, p.Instance)
	}
	return ids
}

// TestRepairWithinMaxUnavailable: the instances on another release (two on
// the previous one, one launched with none and not in rotation) are brought
// to the current release one at a time, as max_unavailable 1 allows; the
// ones already on it are not touched; GitHub hears nothing, the release
// history is unchanged, and the record and the audit log say what was done.
func TestRepairWithinMaxUnavailable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ro := repoconfig.Rollout{Canary: 1, Batch: count(2), MaxUnavailable: count(1)}
		c := newRepairCase(t, ro, false,
			onNext("production-1", "a"), onPrev("production-2", "a"), onNext("production-3", "a"), onPrev("production-4", "a"),
			fresh("production-5", "a"))
		res := c.repair(t)
		if res.Outcome != OutcomeSuccess || res.Held != "" || res.Current != newRelease {
			t.Fatalf("repair: %+v", res)
		}
		if got, want := foundIDs(res.Found), []string{"production-2", "production-4", "production-5"}; !slices.Equal(got, want) {
			t.Errorf("found %v, want %v", got, want)
		}
		for id, inst := range c.fleet.state() {
			if inst.Release != newRelease || !inst.Healthy || !inst.InRotation {
				t.Errorf("%s after the repair: %s", id, where(inst))
			}
		}
		for _, id := range []string{"production-1", "production-3"} {
			if calls := c.fleet.callsOf("drain", "install"); slices.ContainsFunc(calls, func(s string) bool { return strings.Fields(s)[1] == id }) {
				t.Errorf("%s was on the current release and was touched: %v", id, calls)
			}
		}
		if n := c.fleet.mostOut(); n != 1 {
			t.Errorf("at most %d instances out of rotation at once, want 1 (max_unavailable)", n)
		}
		if first := c.fleet.callsOf("install")[0]; !strings.HasPrefix(first, "install production-5 ") {
			t.Errorf("first install %q: the instance serving nothing goes first", first)
		}

		d := c.state(t, res.ID)
		if d.Kind != record.KindRepair || d.State != record.StateSuccess || len(d.Batches) != 3 || d.Creator != record.ActorShipbot || d.InstallationID != 42 {
			t.Fatalf("record: kind %s state %s batches %d creator %s installation %d", d.Kind, d.State, len(d.Batches), d.Creator, d.InstallationID)
		}
		want := "repaired production-2 (from 9f8e7d6), production-4 (from 9f8e7d6) and production-5 (from no release) to abc1234, production's current release"
		if d.Reason != want {
			t.Errorf("reason %q\nwant   %q", d.Reason, want)
		}
		if !strings.HasPrefix(d.LogTail, "shipbot: found 3 instances of production on another release than abc1234") {
			t.Errorf("log does not begin with what was found:\n%s", d.LogTail)
		}
		found, repaired := c.audit(t, record.ActionDriftFound), c.audit(t, record.ActionDriftRepaired)
		if len(found) != 1 || len(repaired) != 1 || repaired[0].Outcome != record.OutcomeSuccess || repaired[0].Text != want ||
			repaired[0].Actor != record.ActorShipbot || repaired[0].Link != "https://shipbot.example.com/deploys/"+res.ID {
			t.Errorf("audit: found %+v repaired %+v", found, repaired)
		}
		if len(c.notes.lines) != 0 {
			t.Errorf("the notifier (GitHub) heard of a repair: %q", c.notes.lines)
		}
		if rels, _ := c.st.Releases(context.Background(), c.env, 10); len(rels) != 1 {
			t.Errorf("%d releases in the history, want the 1 there was: a repair deploys nothing", len(rels))
		}
		c.lockFree(t)

		// Nothing drifted any more: nothing runs, nothing is written.
		if again := c.repair(t); again.ID != "" || len(again.Found) != 0 {
			t.Errorf("second repair: %+v", again)
		}
		if ds, _ := c.st.ListDeploys(context.Background(), c.env, 10); len(ds) != 2 {
			t.Errorf("%d deploy records, want d0 and the one repair", len(ds))
		}
	})
}

// TestRepairKeepsOneServing: the only instance serving is on another
// release (the other is on the current one but sick, and a repair leaves
// it alone). Without surge the repair refuses before touching anything;
// with surge an extra instance serves while it is repaired.
func TestRepairKeepsOneServing(t *testing.T) {
	ro := repoconfig.Rollout{Canary: 1, Batch: count(1), MaxUnavailable: count(1)}
	members := func() []Instance {
		sick := onNext("production-2", "a")
		sick.Healthy = false
		return []Instance{onPrev("production-1", "a"), sick}
	}
	t.Run("no surge", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newRepairCase(t, ro, false, members()...)
			res := c.repair(t)
			if res.Outcome != OutcomeError || len(res.Found) != 1 {
				t.Fatalf("repair: %+v", res)
			}
			if calls := c.fleet.callsOf("drain", "install"); len(calls) != 0 {
				t.Errorf("touched the fleet: %v", calls)
			}
			d := c.state(t, res.ID)
			if d.State != record.StateError || !strings.Contains(d.Reason, "would leave none serving") || !strings.Contains(d.Reason, "the repair of production-1 (from 9f8e7d6)") {
				t.Errorf("record: %s %q", d.State, d.Reason)
			}
			if a := c.audit(t, record.ActionDriftRepaired); len(a) != 1 || a[0].Outcome != record.OutcomeError {
				t.Errorf("audit: %+v", a)
			}
		})
	})
	t.Run("surge", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			c := newRepairCase(t, ro, true, members()...)
			res := c.repair(t)
			if res.Outcome != OutcomeSuccess {
				t.Fatalf("repair: %+v %s", res, c.state(t, res.ID).Reason)
			}
			st := c.fleet.state()
			if p1 := st["production-1"]; p1.Release != newRelease || !p1.Healthy || !p1.InRotation {
				t.Errorf("production-1: %s", where(p1))
			}
			if c.fleet.surges != 1 || len(c.fleet.callsOf("retire")) != 1 {
				t.Errorf("surges %d, calls %v", c.fleet.surges, c.fleet.callsOf("surge", "retire"))
			}
			if calls := c.fleet.callsTo("production-2"); slices.ContainsFunc(calls, func(s string) bool { return !strings.HasPrefix(s, "check ") }) {
				t.Errorf("production-2 is on the current release; the repair touched it: %v", calls)
			}
		})
	})
}

// TestRepairHeld: a deploy lock held by a rollout (or another repair), a
// /lock, or a queued deploy each hold the repair: nothing is touched and
// nothing recorded; it runs once they are gone.
func TestRepairHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		ro := repoconfig.Rollout{Canary: 1, Batch: count(1), MaxUnavailable: count(1)}
		c := newRepairCase(t, ro, false, onNext("production-1", "a"), onPrev("production-2", "a"))

		l, _, err := c.st.AcquireLock(ctx, c.env, "rollout", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if res := c.repair(t); res.Held != HeldBusy || res.ID != "" || len(res.Found) != 1 {
			t.Errorf("with the deploy lock held: %+v", res)
		}
		if err := c.st.ReleaseLock(ctx, l); err != nil {
			t.Fatal(err)
		}

		if _, _, err := c.st.LockEnvironment(ctx, c.env, "alice", "incident 42"); err != nil {
			t.Fatal(err)
		}
		if res := c.repair(t); res.Held != HeldLocked || res.ID != "" {
			t.Errorf("with a /lock: %+v", res)
		}
		if _, _, err := c.st.UnlockEnvironment(ctx, c.env); err != nil {
			t.Fatal(err)
		}

		if calls := c.fleet.callsOf("drain", "install", "admit"); len(calls) != 0 {
			t.Fatalf("a held repair touched the fleet: %v", calls)
		}
		if a := c.audit(t, record.ActionDriftFound); len(a) != 0 {
			t.Fatalf("a held repair was audited: %+v", a)
		}
		if res := c.repair(t); res.Outcome != OutcomeSuccess {
			t.Fatalf("once free: %+v", res)
		}
		c.lockFree(t)
	})
}

// TestRepairFailureRollsNothingBack: the second of three drifted instances
// fails its install. The first stays repaired and in rotation, the failed
// one is left out of rotation, the third is not touched; nothing goes back
// to an old release. The same repair is held for RepairRetryAfter, then
// tried again.
func TestRepairFailureRollsNothingBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ro := repoconfig.Rollout{Canary: 1, Batch: count(1), MaxUnavailable: count(1)}
		c := newRepairCase(t, ro, false, onPrev("production-1", "a"), onPrev("production-2", "a"), onPrev("production-3", "a"), onNext("production-4", "a"))
		c.fleet.fault("production-2", fault{installFails: newRelease})
		res := c.repair(t)
		if res.Outcome != OutcomeFailure {
			t.Fatalf("repair: %+v", res)
		}
		st := c.fleet.state()
		for id, want := range map[string]string{
			"production-1": "abc1234 serving", "production-2": "- out", "production-3": "9f8e7d6 serving", "production-4": "abc1234 serving",
		} {
			if got := where(st[id]); got != want {
				t.Errorf("%s: %s, want %s", id, got, want)
			}
		}
		if calls := c.fleet.callsOf("install"); slices.ContainsFunc(calls, func(s string) bool { return strings.HasSuffix(s, short(prevSHA)) }) {
			t.Errorf("something was put back on an old release: %v", calls)
		}
		if calls := c.fleet.callsTo("production-3"); len(calls) != 0 {
			t.Errorf("production-3 was touched after the failure: %v", calls)
		}
		d := c.state(t, res.ID)
		for _, want := range []string{"the repair of production-1 (from 9f8e7d6), production-2 (from 9f8e7d6) and production-3 (from 9f8e7d6)",
			"install of abc1234 on instance production-2 failed", "a repair rolls nothing back",
			"production-2 is out of rotation after a failed install", "production-1 is in rotation on abc1234", "tries again in 30m"} {
			if !strings.Contains(d.Reason, want) {
				t.Errorf("reason does not say %q:\n%s", want, d.Reason)
			}
		}
		if a := c.audit(t, record.ActionDriftRepaired); len(a) != 1 || a[0].Outcome != record.OutcomeFailure || a[0].Text != d.Reason {
			t.Errorf("audit: %+v", a)
		}
		c.lockFree(t)

		// The same instances again: held, until RepairRetryAfter passed.
		if again := c.repair(t); again.Held != HeldBackoff || again.ID != "" {
			t.Errorf("right after the failure: %+v", again)
		}
		time.Sleep(RepairRetryAfter)
		c.fleet.fault("production-2", fault{})
		if again := c.repair(t); again.Outcome != OutcomeSuccess || !slices.Equal(foundIDs(again.Found), []string{"production-2", "production-3"}) {
			t.Errorf("after %s: %+v", RepairRetryAfter, again)
		}
	})
}

// TestRepairThenQueuedDeploy: a deploy queued while a repair holds the
// lock finds it taken and leaves itself to the holder; the repair runs it
// once it is done, as any holder would.
func TestRepairThenQueuedDeploy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		ro := repoconfig.Rollout{Canary: 1, Batch: count(1), MaxUnavailable: count(1)}
		c := newRepairCase(t, ro, false, onNext("production-1", "a"), onPrev("production-2", "a"))
		done := make(chan RepairResult)
		go func() {
			res, err := c.eng.Repair(ctx, c.tgt)
			if err != nil {
				t.Error(err)
			}
			done <- res
		}()
		time.Sleep(time.Second) // the repair waits for health checks now
		const next = "0123456789abcdef0123456789abcdef01234567"
		if err := c.eng.Deploy(ctx, c.request("d1", next)); err != nil {
			t.Fatal(err)
		}
		if d := c.state(t, "d1"); d.State != record.StateQueued {
			t.Fatalf("d1 %s while the repair runs, want queued", d.State)
		}
		if res := <-done; res.Outcome != OutcomeSuccess {
			t.Fatalf("repair: %+v", res)
		}
		if d := c.state(t, "d1"); d.State != record.StateSuccess {
			t.Fatalf("d1 after the repair: %s %q", d.State, d.Reason)
		}
		for id, inst := range c.fleet.state() {
			if inst.Release != next {
				t.Errorf("%s on %s, want %s", id, short(inst.Release), short(next))
			}
		}
		c.lockFree(t)
	})
}

// TestRepairWithoutCurrentRelease: with no successful release there is
// nothing to repair to, and the fleet is not even listed.
func TestRepairWithoutCurrentRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newEngineCase(t)
		res, err := c.eng.Repair(context.Background(), c.tgt)
		if err != nil || res.Current != "" || len(res.Found) != 0 || res.ID != "" {
			t.Fatalf("repair: %+v %v", res, err)
		}
	})
}
