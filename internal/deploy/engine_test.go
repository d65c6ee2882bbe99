package deploy

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shipbot/shipbot/internal/dora"
	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/store"
	"github.com/shipbot/shipbot/internal/store/record"
)

// notes records what the engine tells the outside, as lines.
type notes struct {
	mu    sync.Mutex
	lines []string
	next  int64
}

func (n *notes) add(format string, args ...any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lines = append(n.lines, fmt.Sprintf(format, args...))
}

func (n *notes) Created(_ context.Context, d DeployInfo) (int64, int64, error) {
	n.add("created %s %s", d.ID, d.SHA)
	if d.State != "" && d.State != record.StateQueued {
		n.add("created %s as %s %s%v", d.ID, d.State, d.LockedBy, d.WaitingOn)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.next++
	return n.next, n.next + 1000, nil
}

func (n *notes) Update(_ context.Context, d DeployInfo, ev Event) error {
	if ev.Kind == Planned || ev.Kind == BatchStarted {
		n.add("%s %s %s %d", ev.Kind, d.ID, "", ev.Batch)
	}
	if d.GitHubDeploymentID == 0 {
		n.add("update without a deployment id: %s", d.ID)
	}
	return nil
}

func (n *notes) Finished(_ context.Context, d DeployInfo, res Result) error {
	n.add("finished %s %s", d.ID, res.Outcome)
	return nil
}

func (n *notes) Superseded(_ context.Context, d DeployInfo) error {
	n.add("superseded %s by %s", d.ID, d.SupersededBy)
	return nil
}

func (n *notes) Waiting(_ context.Context, d DeployInfo) error {
	n.add("waiting %s %s %s", d.ID, d.State, d.LockedBy)
	return nil
}

func (n *notes) Phrase(r record.Reason) string { return report.Reason(r) }

func (n *notes) has(line string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Contains(n.lines, line)
}

func (n *notes) count(prefix string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, l := range n.lines {
		if len(l) >= len(prefix) && l[:len(prefix)] == prefix {
			c++
		}
	}
	return c
}

type engineCase struct {
	st    *store.Embedded
	fleet *fakeFleet
	notes *notes
	eng   *Engine
	env   record.EnvKey
	tgt   Target
}

func newEngineCase(t *testing.T) *engineCase {
	t.Helper()
	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ro := repoconfig.Rollout{Canary: 1, Batch: count(1), MaxUnavailable: count(1)}
	c := &engineCase{st: st, fleet: newFakeFleet(t.Errorf, 1, production(4)...), notes: &notes{},
		env: record.EnvKey{Repo: "acme/web", Name: "production"}}
	c.tgt = Target{Repo: "acme/web", Environment: testEnvironment(ro)}
	c.eng, err = NewEngine(EngineOptions{
		Store: st, Drivers: map[repoconfig.Driver]Driver{repoconfig.DriverLocal: c.fleet}, Notifier: c.notes,
		LockTTL: 30 * time.Second, Holder: "test",
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *engineCase) request(id, sha string) Request {
	return Request{ID: id, Target: c.tgt, Release: Release{Repo: "acme/web", InstallationID: 42, SHA: sha, Ref: "main"}, Kind: record.KindPush, Creator: "octocat"}
}

func (c *engineCase) lockFree(t *testing.T) {
	t.Helper()
	l, ok, err := c.st.AcquireLock(context.Background(), c.env, "probe", time.Second)
	if err != nil || !ok {
		t.Fatalf("lock of %s not free after the deploy: ok %t err %v", c.env, ok, err)
	}
	_ = c.st.ReleaseLock(context.Background(), l)
	if id, ok, _ := c.st.Running(context.Background(), c.env); ok {
		t.Fatalf("running slot still holds %s", id)
	}
}

func TestEngineDeploys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c := newEngineCase(t)
		if err := c.st.RecordRelease(ctx, c.env, record.Release{DeployID: "old", SHA: prevSHA, Result: record.ResultSuccess, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := c.eng.Deploy(ctx, c.request("d1", newRelease)); err != nil {
			t.Fatal(err)
		}
		d, err := c.st.GetDeploy(ctx, "d1")
		if err != nil {
			t.Fatal(err)
		}
		if d.State != record.StateSuccess || d.Previous != prevSHA || len(d.Batches) != 4 || d.GitHubDeploymentID == 0 || d.CheckRunID == 0 {
			t.Fatalf("record: state %s previous %s batches %d ids %d/%d", d.State, d.Previous, len(d.Batches), d.GitHubDeploymentID, d.CheckRunID)
		}
		cur, err := c.st.CurrentRelease(ctx, c.env)
		if err != nil || cur.SHA != newRelease || len(cur.Batches) != 4 {
			t.Fatalf("current release %+v, %v", cur, err)
		}
		if !c.notes.has("finished d1 success") || c.notes.count("created") != 1 || c.notes.count("update without") != 0 {
			t.Fatalf("notes: %q", c.notes.lines)
		}
		c.lockFree(t)

		// The same job again (at-least-once) changes nothing.
		if err := c.eng.Deploy(ctx, c.request("d1", newRelease)); err != nil {
			t.Fatal(err)
		}
		if c.notes.count("created") != 1 || c.notes.count("finished") != 1 {
			t.Fatalf("a repeated job announced or ran again: %q", c.notes.lines)
		}
	})
}

func TestEngineSupersedesQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c := newEngineCase(t)
		// Someone else holds the lock: both deploys queue.
		l, _, err := c.st.AcquireLock(ctx, c.env, "other", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.eng.Deploy(ctx, c.request("older", prevSHA)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // CreatedAt orders them
		if err := c.eng.Deploy(ctx, c.request("newer", newRelease)); err != nil {
			t.Fatal(err)
		}
		if !c.notes.has("superseded older by " + newRelease) {
			t.Fatalf("notes: %q", c.notes.lines)
		}
		if d, _ := c.st.GetDeploy(ctx, "older"); d.State != record.StateSuperseded {
			t.Fatalf("older: %s", d.State)
		}
		// An older one arriving late loses at once.
		if err := c.st.PutDeploy(ctx, record.Deploy{ID: "late", Env: c.env, SHA: "abcdef1", Kind: record.KindPush, State: record.StateQueued, CreatedAt: time.Now().Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if err := c.eng.Deploy(ctx, c.request("late", "abcdef1")); err != nil {
			t.Fatal(err)
		}
		if !c.notes.has("superseded late by " + newRelease) {
			t.Fatalf("notes: %q", c.notes.lines)
		}
		// The holder goes away; a retry of the newer job runs it.
		if err := c.st.ReleaseLock(ctx, l); err != nil {
			t.Fatal(err)
		}
		if err := c.eng.Deploy(ctx, c.request("newer", newRelease)); err != nil {
			t.Fatal(err)
		}
		if !c.notes.has("finished newer success") || c.notes.count("finished") != 1 {
			t.Fatalf("notes: %q", c.notes.lines)
		}
		c.lockFree(t)
	})
}

func TestEngineCarriesOnOrphan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c := newEngineCase(t)
		// A holder took the deploy and died: its lease expires with the
		// deploy in the running slot.
		if err := c.st.PutDeploy(ctx, record.Deploy{ID: "orphan", Env: c.env, SHA: newRelease, Kind: record.KindPush, State: record.StateRunning,
			StartedAt: time.Now(), Previous: prevSHA, InstallationID: 42, GitHubDeploymentID: 7, CheckRunID: 8}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.st.Enqueue(ctx, c.env, "orphan"); err != nil {
			t.Fatal(err)
		}
		l, _, err := c.st.AcquireLock(ctx, c.env, "dead", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, err := c.st.TakePending(ctx, c.env, l); !ok || err != nil {
			t.Fatalf("take: %t %v", ok, err)
		}
		time.Sleep(2 * time.Second)

		// The next job of the environment carries it on before its own.
		if err := c.eng.Deploy(ctx, c.request("next", newRelease)); err != nil {
			t.Fatal(err)
		}
		if !c.notes.has("finished orphan success") || !c.notes.has("finished next success") {
			t.Fatalf("notes: %q", c.notes.lines)
		}
		c.lockFree(t)
	})
}

func TestEngineLockLostStopsTheRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c := newEngineCase(t)
		// Cancelled mid-batch, Execute must stop before anything else
		// leaves rotation: the fake fleet's safety checks fail the test.
		c.eng.o.LockTTL = 3 * time.Second
		// The lock vanishes mid-rollout (as after a store failover).
		st := &losingStore{Embedded: c.st, after: 2}
		c.eng.o.Store = st
		err := c.eng.Deploy(ctx, c.request("d1", newRelease))
		if !errors.Is(err, ErrLockLost) {
			t.Fatalf("err %v, want ErrLockLost", err)
		}
		if c.notes.count("finished") != 0 {
			t.Fatalf("a cancelled run was reported finished: %q", c.notes.lines)
		}
		// The retried job carries it on.
		st.after = 1 << 30
		if err := c.eng.Deploy(ctx, c.request("d1", newRelease)); err != nil {
			t.Fatal(err)
		}
		if !c.notes.has("finished d1 success") {
			t.Fatalf("notes: %q", c.notes.lines)
		}
	})
}

// losingStore says the lease is lost on the after-th renewal.
type losingStore struct {
	*store.Embedded
	mu    sync.Mutex
	n     int
	after int
}

func (s *losingStore) RenewLock(ctx context.Context, l record.Lease, ttl time.Duration) error {
	s.mu.Lock()
	s.n++
	lose := s.n == s.after
	s.mu.Unlock()
	if lose {
		_ = s.Embedded.ReleaseLock(ctx, l)
		return record.ErrLockLost
	}
	return s.Embedded.RenewLock(ctx, l, ttl)
}

func (c *engineCase) state(t *testing.T, id string) record.Deploy {
	t.Helper()
	d, err := c.st.GetDeploy(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// A /lock holds pushes: the deploy is announced as locked and runs after
// the unlock, through Resume; one queued before the lock is marked locked.
func TestEngineLockHoldsDeploysUntilResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c := newEngineCase(t)
		if _, _, err := c.st.LockEnvironment(ctx, c.env, "alice", "incident 42"); err != nil {
			t.Fatal(err)
		}
		if err := c.eng.Deploy(ctx, c.request("d1", newRelease)); err != nil {
			t.Fatal(err)
		}
		if d := c.state(t, "d1"); d.State != record.StateLocked || d.Reason != "waiting for /unlock: locked by alice (incident 42)" {
			t.Fatalf("locked deploy: state %s reason %q", d.State, d.Reason)
		}
		if !c.notes.has("created d1 as locked alice[]") || c.notes.count("finished") != 0 {
			t.Fatalf("notes %v", c.notes.lines)
		}
		// A repeated job changes nothing while locked.
		if err := c.eng.Deploy(ctx, c.request("d1", newRelease)); err != nil {
			t.Fatal(err)
		}
		if c.notes.count("created d1") != 2 || c.notes.count("finished") != 0 {
			t.Fatalf("repeat wrote again: %v", c.notes.lines)
		}
		if _, _, err := c.st.UnlockEnvironment(ctx, c.env); err != nil {
			t.Fatal(err)
		}
		if err := c.eng.Resume(ctx, c.tgt); err != nil {
			t.Fatal(err)
		}
		if d := c.state(t, "d1"); d.State != record.StateSuccess {
			t.Fatalf("after unlock: %s %q", d.State, d.Reason)
		}
		c.lockFree(t)
	})
}

// A deploy queued behind a running one, then /locked, waits as locked
// (GitHub told once) while the running one finishes.
func TestEngineLockTakenWhileQueuedMarksThePendingDeploy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c := newEngineCase(t)
		// Hold the deploy lock as another process would while it runs.
		l, ok, err := c.st.AcquireLock(ctx, c.env, "other", time.Minute)
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		if err := c.eng.Deploy(ctx, c.request("d1", newRelease)); err != nil {
			t.Fatal(err)
		}
		if d := c.state(t, "d1"); d.State != record.StateQueued {
			t.Fatalf("queued behind the holder: %s", d.State)
		}
		if _, _, err := c.st.LockEnvironment(ctx, c.env, "bob", ""); err != nil {
			t.Fatal(err)
		}
		if err := c.st.ReleaseLock(ctx, l); err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second pass must not tell GitHub again
			if err := c.eng.Resume(ctx, c.tgt); err != nil {
				t.Fatal(err)
			}
		}
		if d := c.state(t, "d1"); d.State != record.StateLocked || d.Reason != "waiting for /unlock: locked by bob" {
			t.Fatalf("state %s reason %q", d.State, d.Reason)
		}
		if c.notes.count("waiting d1 locked bob") != 1 {
			t.Fatalf("notes %v", c.notes.lines)
		}
		if _, _, err := c.st.UnlockEnvironment(ctx, c.env); err != nil {
			t.Fatal(err)
		}
		if err := c.eng.Resume(ctx, c.tgt); err != nil {
			t.Fatal(err)
		}
		if d := c.state(t, "d1"); d.State != record.StateSuccess {
			t.Fatalf("after unlock: %s", d.State)
		}
		c.lockFree(t)
	})
}

// A deploy waiting for checks is announced and not queued; ChecksPassed
// runs it, ChecksFailed ends it as a failure naming the check.
func TestEngineWaitsForChecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c := newEngineCase(t)
		req := c.request("d1", newRelease)
		req.WaitingOn = []string{"ci/test"}
		if err := c.eng.Deploy(ctx, req); err != nil {
			t.Fatal(err)
		}
		if d := c.state(t, "d1"); d.State != record.StateWaiting || !slices.Equal(d.WaitingOn, []string{"ci/test"}) {
			t.Fatalf("waiting: %s %v", d.State, d.WaitingOn)
		}
		if _, ok, _ := c.st.Pending(ctx, c.env); ok {
			t.Fatal("a deploy waiting for checks is pending")
		}
		if !c.notes.has("created d1 as waiting [ci/test]") {
			t.Fatalf("notes %v", c.notes.lines)
		}
		if err := c.eng.ChecksPassed(ctx, c.tgt, "d1"); err != nil {
			t.Fatal(err)
		}
		if d := c.state(t, "d1"); d.State != record.StateSuccess || len(d.WaitingOn) != 0 {
			t.Fatalf("after checks: %s %v", d.State, d.WaitingOn)
		}

		req = c.request("d2", "2222222222222222222222222222222222222222")
		req.WaitingOn = []string{"ci/test", "lint"}
		if err := c.eng.Deploy(ctx, req); err != nil {
			t.Fatal(err)
		}
		reason := "required check lint failed on 2222222"
		for range 2 { // repeated: reported again, state unchanged
			if err := c.eng.ChecksFailed(ctx, c.tgt, "d2", reason); err != nil {
				t.Fatal(err)
			}
		}
		if d := c.state(t, "d2"); d.State != record.StateFailure || d.Reason != reason {
			t.Fatalf("failed checks: %s %q", d.State, d.Reason)
		}
		if c.notes.count("finished d2 failure") != 2 {
			t.Fatalf("notes %v", c.notes.lines)
		}
		// A late pass after the failure runs nothing.
		if err := c.eng.ChecksPassed(ctx, c.tgt, "d2"); err != nil {
			t.Fatal(err)
		}
		if d := c.state(t, "d2"); d.State != record.StateFailure {
			t.Fatalf("late pass: %s", d.State)
		}
		if cur, _ := c.st.CurrentRelease(ctx, c.env); cur.SHA != newRelease {
			t.Fatalf("current release %s", cur.SHA)
		}
		c.lockFree(t)
	})
}

// peekNotes looks at the deploy record whenever a batch turns healthy.
type peekNotes struct {
	*notes
	st   *store.Embedded
	seen []record.Deploy
}

func (p *peekNotes) Update(ctx context.Context, d DeployInfo, ev Event) error {
	if ev.Kind == BatchHealthy {
		rec, err := p.st.GetDeploy(ctx, d.ID)
		if err != nil {
			return err
		}
		p.seen = append(p.seen, rec)
	}
	return p.notes.Update(ctx, d, ev)
}

// While a rollout runs, its record holds the plan and each batch's
// progress, for the deploy page.
func TestEngineRecordsProgressWhileRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c := newEngineCase(t)
		peek := &peekNotes{notes: c.notes, st: c.st}
		eng, err := NewEngine(EngineOptions{Store: c.st, Drivers: map[repoconfig.Driver]Driver{repoconfig.DriverLocal: c.fleet},
			Notifier: peek, LockTTL: 30 * time.Second, Holder: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if err := eng.Deploy(ctx, c.request("d1", newRelease)); err != nil {
			t.Fatal(err)
		}
		if len(peek.seen) != 4 {
			t.Fatalf("saw %d healthy batches, want 4", len(peek.seen))
		}
		mid := peek.seen[1] // batch 1 just turned healthy
		if mid.State != record.StateRunning || len(mid.Batches) != 4 {
			t.Fatalf("mid-rollout record: state %s, %d batches", mid.State, len(mid.Batches))
		}
		for i, b := range mid.Batches {
			done := !b.Finished.IsZero()
			if started := !b.Started.IsZero(); started != (i <= 1) || done != (i <= 1) || len(b.Instances) == 0 {
				t.Fatalf("batch %d mid-rollout: started %v finished %v instances %v", i, b.Started, b.Finished, b.Instances)
			}
		}
		if d := c.state(t, "d1"); d.State != record.StateSuccess || len(d.Batches) != 4 {
			t.Fatalf("final: %s %d", d.State, len(d.Batches))
		}
	})
}

// TestEngineRecordsCommitTime: the commit's timestamp a request carries
// reaches the recorded release, and from the release history the delivery
// metrics' lead-time gauge.
func TestEngineRecordsCommitTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c := newEngineCase(t)
		committed := time.Now().Add(-90 * time.Minute)
		req := c.request("d1", newRelease)
		req.Release.CommittedAt = committed
		if err := c.eng.Deploy(ctx, req); err != nil {
			t.Fatal(err)
		}
		rels, err := c.st.Releases(ctx, c.env, 10)
		if err != nil || len(rels) != 1 {
			t.Fatalf("releases %+v, %v", rels, err)
		}
		if r := rels[0]; r.Result != record.ResultSuccess || !r.CommittedAt.Equal(committed) {
			t.Fatalf("release %s %s committed at %v; want success committed at %v", r.DeployID, r.Result, r.CommittedAt, committed)
		}

		col := dora.NewCollector(func(ctx context.Context) ([]dora.History, error) {
			rels, err := c.st.Releases(ctx, c.env, 1000)
			return []dora.History{dora.HistoryOf(c.env, rels)}, err
		}, dora.Options{Now: time.Now})
		want := fmt.Sprintf(`
# HELP shipbot_dora_lead_time_seconds Median time from a commit's timestamp to its first successful release, over the last 30 days.
# TYPE shipbot_dora_lead_time_seconds gauge
shipbot_dora_lead_time_seconds{environment="production",repo="acme/web"} %g
`, rels[0].At.Sub(committed).Seconds())
		if err := testutil.CollectAndCompare(col, strings.NewReader(want), "shipbot_dora_lead_time_seconds"); err != nil {
			t.Fatal(err)
		}
	})
}

// TestEngineRollbackMarksReplacedRelease: a successful rollback marks the
// release it replaced rolled back, which counts as a failed change and is
// no longer a release to go back to; repeating the job changes nothing.
func TestEngineRollbackMarksReplacedRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c := newEngineCase(t)
		if err := c.st.RecordRelease(ctx, c.env, record.Release{DeployID: "old", SHA: prevSHA, Result: record.ResultSuccess, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := c.eng.Deploy(ctx, c.request("d1", newRelease)); err != nil {
			t.Fatal(err)
		}
		if d := c.state(t, "d1"); d.PreviousDeploy != "old" {
			t.Fatalf("d1 replaced %q; want old", d.PreviousDeploy)
		}
		time.Sleep(time.Minute)
		rb := c.request("r1", prevSHA)
		rb.Kind = record.KindRollback
		for range 2 { // the second: a repeated job
			if err := c.eng.Deploy(ctx, rb); err != nil {
				t.Fatal(err)
			}
		}
		if d := c.state(t, "r1"); d.State != record.StateSuccess || d.PreviousDeploy != "d1" {
			t.Fatalf("rollback %s, replaced %q", d.State, d.PreviousDeploy)
		}
		rels, err := c.st.Releases(ctx, c.env, 10)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rels {
			got = append(got, r.DeployID+" "+r.Result)
		}
		if want := []string{"r1 success", "d1 rolled-back", "old success"}; !slices.Equal(got, want) {
			t.Fatalf("releases %q; want %q", got, want)
		}
		if cur, err := c.st.CurrentRelease(ctx, c.env); err != nil || cur.DeployID != "r1" {
			t.Fatalf("current release %+v, %v; want r1", cur, err)
		}
		if _, err := c.st.PreviousRelease(ctx, c.env); !errors.Is(err, record.ErrNotFound) {
			t.Fatalf("previous release: %v; want none: the rolled-back one is not one to go back to", err)
		}
		m := dora.Compute(dora.HistoryOf(c.env, rels), dora.Window{}, time.Now())
		if m.Deploys != 3 || m.Failures != 1 || m.Restores != 1 || m.TimeToRestore != rels[0].At.Sub(rels[1].At) {
			t.Fatalf("metrics: %d deploys, %d failed, %d restores in %v", m.Deploys, m.Failures, m.Restores, m.TimeToRestore)
		}
		c.lockFree(t)
	})
}
