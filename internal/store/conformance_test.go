package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shipbot/shipbot/internal/store"
	"github.com/shipbot/shipbot/internal/store/record"
	"github.com/shipbot/shipbot/internal/testenv/redistest"
)

// api is everything both implementations offer; the suite runs against it,
// and the assertions below keep the two method sets the same.
type api interface {
	AcquireLock(ctx context.Context, env record.EnvKey, holder string, ttl time.Duration) (record.Lease, bool, error)
	RenewLock(ctx context.Context, l record.Lease, ttl time.Duration) error
	ReleaseLock(ctx context.Context, l record.Lease) error

	PutDeploy(ctx context.Context, d record.Deploy) error
	GetDeploy(ctx context.Context, id string) (record.Deploy, error)
	ListDeploys(ctx context.Context, env record.EnvKey, n int) ([]record.Deploy, error)
	UpdateDeploy(ctx context.Context, id string, fn func(*record.Deploy) error) (record.Deploy, error)

	Enqueue(ctx context.Context, env record.EnvKey, deployID string) ([]string, error)
	CancelPending(ctx context.Context, env record.EnvKey, deployID string) (bool, error)
	Pending(ctx context.Context, env record.EnvKey) (string, bool, error)
	TakePending(ctx context.Context, env record.EnvKey, l record.Lease) (string, bool, error)
	Running(ctx context.Context, env record.EnvKey) (string, bool, error)
	FinishRunning(ctx context.Context, env record.EnvKey, l record.Lease, deployID string) error

	RecordRelease(ctx context.Context, env record.EnvKey, r record.Release) error
	Releases(ctx context.Context, env record.EnvKey, n int) ([]record.Release, error)
	CurrentRelease(ctx context.Context, env record.EnvKey) (record.Release, error)
	PreviousRelease(ctx context.Context, env record.EnvKey) (record.Release, error)
	FindRelease(ctx context.Context, env record.EnvKey, ref string) (record.Release, error)

	LockEnvironment(ctx context.Context, env record.EnvKey, by, reason string) (record.EnvLock, bool, error)
	UnlockEnvironment(ctx context.Context, env record.EnvKey) (record.EnvLock, bool, error)
	EnvironmentLock(ctx context.Context, env record.EnvKey) (record.EnvLock, bool, error)

	PutPreview(ctx context.Context, p record.Preview) error
	GetPreview(ctx context.Context, repo string, number int) (record.Preview, error)
	DeletePreview(ctx context.Context, repo string, number int) error
	ListPreviews(ctx context.Context) ([]record.Preview, error)

	ListEnvironments(ctx context.Context, repo string) ([]record.EnvKey, error)
	ListRepos(ctx context.Context) ([]string, error)

	Claim(ctx context.Context, key, holder string, ttl time.Duration) (string, error)
	ReleaseClaim(ctx context.Context, key, holder string) error
	UpdateInstallation(ctx context.Context, id int64, fn func(*record.Installation) error) (record.Installation, error)
	GetInstallation(ctx context.Context, id int64) (record.Installation, error)
	DeleteInstallation(ctx context.Context, id int64) error
	ListInstallations(ctx context.Context) ([]record.Installation, error)

	AppendAudit(ctx context.Context, e record.AuditEntry) (record.AuditEntry, error)
	ListAudit(ctx context.Context, f record.AuditFilter) (record.AuditPage, error)
	EachAudit(ctx context.Context, f record.AuditFilter, fn func(record.AuditEntry) error) error
}

var (
	_ api = (*store.Redis)(nil)
	_ api = (*store.Embedded)(nil)
)

// fixture is one store under test plus what the suite may do to it.
type fixture struct {
	s api
	// restart takes the store away and brings it back with its data (Redis
	// SIGKILLed and started again; the embedded file closed and reopened)
	// and returns the store to use from then on. Nil when the target
	// cannot (miniredis keeps nothing).
	restart func(t *testing.T) api
	// outage makes the store unreachable for the rest of the case.
	outage func(t *testing.T)
	// sleep lets d pass for the store too: miniredis expires keys only
	// when told time moved.
	sleep func(d time.Duration)
}

// opener makes a fresh, empty store for one case.
type opener func(t *testing.T) *fixture

// target's start runs inside the target's own subtest, so a missing
// redis-server skips (or, in CI, fails) the Redis target alone.
type target struct {
	name  string
	start func(t *testing.T) opener
}

var targets = []target{
	{name: "redis", start: func(t *testing.T) opener {
		srv := redistest.Real(t)
		var prefixes atomic.Int64
		return func(t *testing.T) *fixture {
			s := store.NewRedis(srv.Client(t), fmt.Sprintf("test%d", prefixes.Add(1)))
			return &fixture{
				s:       s,
				restart: func(*testing.T) api { srv.Restart(); return s },
				outage:  srv.Outage,
			}
		}
	}},

	{name: "embedded", start: func(*testing.T) opener {
		return func(t *testing.T) *fixture {
			path := filepath.Join(t.TempDir(), "store.db")
			s, err := store.OpenEmbedded(path)
			if err != nil {
				t.Fatal(err)
			}
			f := &fixture{s: s}
			t.Cleanup(func() { s.Close() })
			f.restart = func(t *testing.T) api {
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if s, err = store.OpenEmbedded(path); err != nil {
					t.Fatal(err)
				}
				f.s = s
				return s
			}
			f.outage = func(*testing.T) { s.Close() }
			return f
		}
	}},

	// miniredis is only a faster extra; real Redis above is the reference.
	{name: "miniredis", start: func(t *testing.T) opener {
		if err := redistest.MiniLacks(probeScripts); err != nil {
			t.Skipf("miniredis lacks something the Redis store relies on: %v", err)
		}
		return func(t *testing.T) *fixture {
			m := redistest.Mini(t)
			return &fixture{s: store.NewRedis(m.Client(t), "test"), outage: m.Outage, sleep: m.Sleep}
		}
	}},
}

// probeScripts runs every script of the Redis store once.
func probeScripts(ctx context.Context, client *redis.Client) error {
	s := store.NewRedis(client, "probe")
	env := record.EnvKey{Repo: "probe/probe", Name: "probe"}
	steps := []func() error{
		func() error { return s.PutDeploy(ctx, deploy("d", env, time.Now())) },
		func() error {
			_, err := s.UpdateDeploy(ctx, "d", func(*record.Deploy) error { return nil })
			return err
		},
		func() error { _, err := s.ListDeploys(ctx, env, 1); return err },
		func() error { _, err := s.Enqueue(ctx, env, "d"); return err },
		func() error {
			l, _, err := s.AcquireLock(ctx, env, "probe", time.Second)
			if err == nil {
				err = s.RenewLock(ctx, l, time.Second)
			}
			if err == nil {
				_, _, err = s.TakePending(ctx, env, l)
			}
			if err == nil {
				err = s.FinishRunning(ctx, env, l, "d")
			}
			if err == nil {
				err = s.ReleaseLock(ctx, l)
			}
			return err
		},
		func() error { return s.RecordRelease(ctx, env, release("d", "abcdef0", record.ResultSuccess)) },
		func() error { _, err := s.Releases(ctx, env, 1); return err },
		func() error { _, _, err := s.LockEnvironment(ctx, env, "probe", ""); return err },
		func() error { _, _, err := s.UnlockEnvironment(ctx, env); return err },
		func() error {
			_, err := s.AppendAudit(ctx, record.AuditEntry{Actor: "probe", Repo: env.Repo, Action: record.ActionLock, Outcome: record.OutcomeSuccess,
				At: time.Now().Add(-record.AuditRetention - time.Hour)})
			if err == nil {
				_, err = s.AppendAudit(ctx, record.AuditEntry{Actor: "probe", Action: record.ActionLock, Outcome: record.OutcomeSuccess})
			}
			return err
		},
		func() error { _, err := s.ListAudit(ctx, record.AuditFilter{Repo: env.Repo}); return err },
		func() error { _, err := s.Claim(ctx, "probe", "probe", time.Second); return err },
		func() error { return s.ReleaseClaim(ctx, "probe", "probe") },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
	}
	return nil
}

// TestConformance is the contract both implementations meet, run against
// each.
func TestConformance(t *testing.T) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			// The stores share nothing: each target runs beside the
			// others (their cases wait on fsyncs, timeouts and servers
			// more than they compute).
			t.Parallel()
			open := tg.start(t)
			for _, c := range slices.Concat(conformanceCases, auditCases, claimCases) {
				t.Run(c.name, func(t *testing.T) {
					f := open(t)
					if f.sleep == nil {
						f.sleep = time.Sleep
					}
					if c.needsRestart && f.restart == nil {
						t.Skip("this target keeps nothing across a restart")
					}
					c.run(t, f)
				})
			}
		})
	}
}

var (
	prod    = record.EnvKey{Repo: "octo/app", Name: "production"}
	staging = record.EnvKey{Repo: "octo/app", Name: "staging"}
	other   = record.EnvKey{Repo: "octo/other", Name: "production"}
	// t0 is a fixed moment deploys are created around, so ordering is
	// explicit rather than a race with the clock.
	t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
)

type conformanceCase struct {
	name         string
	needsRestart bool
	run          func(t *testing.T, f *fixture)
}

var conformanceCases = []conformanceCase{
	// Deploy lock.

	{name: "LockExcludesUntilReleased", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		a := mustAcquire(t, f.s, prod, "a", time.Minute)
		if _, ok, err := f.s.AcquireLock(ctx, prod, "b", time.Minute); ok || err != nil {
			t.Fatalf("second AcquireLock = %v, %v; want held", ok, err)
		}
		if _, ok, err := f.s.AcquireLock(ctx, prod, "a", time.Minute); ok || err != nil {
			t.Fatalf("AcquireLock by the holder again = %v, %v; the lock is not reentrant", ok, err)
		}
		// Another environment has its own lock.
		mustAcquire(t, f.s, staging, "b", time.Minute)
		if err := f.s.ReleaseLock(ctx, a); err != nil {
			t.Fatal(err)
		}
		b := mustAcquire(t, f.s, prod, "b", time.Minute)
		if b.Token <= a.Token {
			t.Errorf("token after release %d, want more than %d", b.Token, a.Token)
		}
		if b.Holder != "b" || b.Env != prod {
			t.Errorf("lease = %+v", b)
		}
		// Releasing again, or with the old lease, changes nothing.
		if err := f.s.ReleaseLock(ctx, a); err != nil {
			t.Fatal(err)
		}
		if err := f.s.RenewLock(ctx, b, time.Minute); err != nil {
			t.Errorf("the new holder lost its lock to an old lease's release: %v", err)
		}
		if err := f.s.RenewLock(ctx, a, time.Minute); !errors.Is(err, record.ErrLockLost) {
			t.Errorf("RenewLock of a released lease = %v, want ErrLockLost", err)
		}
	}},

	{name: "ExpiredLockLetsAnotherInWithHigherToken", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		a := mustAcquire(t, f.s, prod, "a", 100*time.Millisecond)
		f.sleep(200 * time.Millisecond)
		b := mustAcquire(t, f.s, prod, "b", time.Minute)
		if b.Token <= a.Token {
			t.Errorf("token %d after expiry, want more than %d", b.Token, a.Token)
		}
		if err := f.s.RenewLock(ctx, a, time.Minute); !errors.Is(err, record.ErrLockLost) {
			t.Errorf("RenewLock by the expired holder = %v, want ErrLockLost", err)
		}
		if err := f.s.ReleaseLock(ctx, a); err != nil {
			t.Errorf("ReleaseLock by the expired holder = %v, want a no-op", err)
		}
		if _, ok, _ := f.s.AcquireLock(ctx, prod, "c", time.Minute); ok {
			t.Error("the expired holder's ReleaseLock freed the new holder's lock")
		}
		if err := f.s.RenewLock(ctx, b, time.Minute); err != nil {
			t.Errorf("new holder's RenewLock: %v", err)
		}
	}},

	{name: "ExpiredLockIsLostEvenIfNobodyTookIt", run: func(t *testing.T, f *fixture) {
		a := mustAcquire(t, f.s, prod, "a", 100*time.Millisecond)
		f.sleep(200 * time.Millisecond)
		if err := f.s.RenewLock(context.Background(), a, time.Minute); !errors.Is(err, record.ErrLockLost) {
			t.Errorf("RenewLock after expiry = %v, want ErrLockLost", err)
		}
	}},

	{name: "RenewKeepsLockPastItsFirstTTL", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		a := mustAcquire(t, f.s, prod, "a", 300*time.Millisecond)
		for range 5 {
			f.sleep(100 * time.Millisecond)
			if err := f.s.RenewLock(ctx, a, 300*time.Millisecond); err != nil {
				t.Fatal(err)
			}
		}
		if _, ok, _ := f.s.AcquireLock(ctx, prod, "b", time.Minute); ok {
			t.Error("lock taken from a holder that kept renewing")
		}
	}},

	{name: "ConcurrentAcquirersOneWins", run: func(t *testing.T, f *fixture) {
		const n = 16
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				_, ok, err := f.s.AcquireLock(context.Background(), prod, fmt.Sprintf("w%d", i), time.Minute)
				if err != nil {
					t.Error(err)
				}
				if ok {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Errorf("%d acquirers won, want 1", wins.Load())
		}
	}},

	{name: "LockArgumentsAreChecked", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		for name, call := range map[string]func() error{
			"empty holder": func() error { _, _, err := f.s.AcquireLock(ctx, prod, "", time.Second); return err },
			"no ttl":       func() error { _, _, err := f.s.AcquireLock(ctx, prod, "a", 0); return err },
			"bad env": func() error {
				_, _, err := f.s.AcquireLock(ctx, record.EnvKey{Repo: "nope"}, "a", time.Second)
				return err
			},
		} {
			if err := call(); err == nil || errors.Is(err, record.ErrUnavailable) {
				t.Errorf("%s: err = %v, want a validation error", name, err)
			}
		}
	}},

	// Deploys.

	{name: "DeployRoundTrips", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		in := fullDeploy()
		if err := f.s.PutDeploy(ctx, in); err != nil {
			t.Fatal(err)
		}
		got, err := f.s.GetDeploy(ctx, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantDeploy(t, got, in)
		if _, err := f.s.GetDeploy(ctx, "missing"); !errors.Is(err, record.ErrNotFound) {
			t.Errorf("GetDeploy(missing) = %v, want ErrNotFound", err)
		}
	}},

	{name: "PutDeployDefaultsCreatedAt", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		d := deploy("d1", prod, time.Time{})
		before := time.Now()
		mustPut(t, f.s, d)
		got, err := f.s.GetDeploy(ctx, "d1")
		if err != nil {
			t.Fatal(err)
		}
		if got.CreatedAt.Before(before.Add(-time.Second)) || got.CreatedAt.After(time.Now().Add(time.Second)) {
			t.Errorf("CreatedAt = %v, want about now", got.CreatedAt)
		}
	}},

	{name: "DeployIsValidated", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		for name, d := range map[string]record.Deploy{
			"no id":       func() record.Deploy { d := deploy("", prod, t0); return d }(),
			"bad kind":    func() record.Deploy { d := deploy("x", prod, t0); d.Kind = "manual"; return d }(),
			"bad state":   func() record.Deploy { d := deploy("x", prod, t0); d.State = "done"; return d }(),
			"bad env":     deploy("x", record.EnvKey{Repo: "octo/app"}, t0),
			"bad repo":    deploy("x", record.EnvKey{Repo: "octo", Name: "prod"}, t0),
			"colon repo":  deploy("x", record.EnvKey{Repo: "octo/a:b", Name: "prod"}, t0),
			"control env": deploy("x", record.EnvKey{Repo: "octo/app", Name: "a\nb"}, t0),
		} {
			if err := f.s.PutDeploy(ctx, d); err == nil || errors.Is(err, record.ErrUnavailable) {
				t.Errorf("%s: PutDeploy = %v, want a validation error", name, err)
			}
		}
		mustPut(t, f.s, deploy("x", prod, t0))
		if err := f.s.PutDeploy(ctx, deploy("x", staging, t0)); err == nil {
			t.Error("PutDeploy moved a deploy to another environment")
		}
	}},

	{name: "LogTailKeepsTheEnd", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		var b strings.Builder
		for i := 0; b.Len() < 3*record.MaxLogTail; i++ {
			fmt.Fprintf(&b, "line %d: ünïcödé output\n", i)
		}
		d := deploy("d1", prod, t0)
		d.LogTail = b.String()
		mustPut(t, f.s, d)
		got, err := f.s.UpdateDeploy(ctx, "d1", func(d *record.Deploy) error {
			d.LogTail += "the last line\n"
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.LogTail) > record.MaxLogTail {
			t.Errorf("LogTail is %d bytes, want at most %d", len(got.LogTail), record.MaxLogTail)
		}
		if !strings.HasSuffix(got.LogTail, "the last line\n") || !strings.HasPrefix(got.LogTail, "line ") {
			t.Errorf("LogTail does not keep whole lines up to the end: %q ... %q", got.LogTail[:20], got.LogTail[len(got.LogTail)-20:])
		}
		stored, _ := f.s.GetDeploy(ctx, "d1")
		if stored.LogTail != got.LogTail {
			t.Error("UpdateDeploy returned another log than it stored")
		}
	}},

	{name: "ListDeploysNewestFirst", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		// Put out of order: CreatedAt decides, not the order of writes.
		for _, i := range []int{3, 1, 4, 2, 0} {
			mustPut(t, f.s, deploy(fmt.Sprintf("p%d", i), prod, t0.Add(time.Duration(i)*time.Second)))
		}
		mustPut(t, f.s, deploy("s0", staging, t0.Add(time.Hour)))
		got, err := f.s.ListDeploys(ctx, prod, 3)
		if err != nil {
			t.Fatal(err)
		}
		if ids := deployIDs(got); !slices.Equal(ids, []string{"p4", "p3", "p2"}) {
			t.Errorf("ListDeploys(prod, 3) = %v", ids)
		}
		all, _ := f.s.ListDeploys(ctx, prod, 100)
		if len(all) != 5 {
			t.Errorf("ListDeploys(prod, 100) has %d deploys, want 5", len(all))
		}
		if none, err := f.s.ListDeploys(ctx, other, 10); err != nil || len(none) != 0 {
			t.Errorf("ListDeploys(unknown env) = %v, %v", none, err)
		}
	}},

	{name: "UpdateDeployIsAtomic", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		mustPut(t, f.s, deploy("d1", prod, t0))
		const writers, each = 8, 10
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					_, err := f.s.UpdateDeploy(ctx, "d1", func(d *record.Deploy) error {
						d.CheckRunID++
						d.Batches = append(d.Batches, record.BatchTiming{Index: w*each + i})
						return nil
					})
					if err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		got, _ := f.s.GetDeploy(ctx, "d1")
		if got.CheckRunID != writers*each || len(got.Batches) != writers*each {
			t.Errorf("after %d updates: counter %d, %d batches", writers*each, got.CheckRunID, len(got.Batches))
		}
	}},

	{name: "UpdateDeployAbortsOnError", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		mustPut(t, f.s, deploy("d1", prod, t0))
		boom := errors.New("boom")
		_, err := f.s.UpdateDeploy(ctx, "d1", func(d *record.Deploy) error {
			d.State = record.StateFailure
			return boom
		})
		if !errors.Is(err, boom) {
			t.Errorf("UpdateDeploy = %v, want the callback's error", err)
		}
		if got, _ := f.s.GetDeploy(ctx, "d1"); got.State != record.StateQueued {
			t.Errorf("state %q after an aborted update", got.State)
		}
		for name, fn := range map[string]func(*record.Deploy) error{
			"id":    func(d *record.Deploy) error { d.ID = "d2"; return nil },
			"env":   func(d *record.Deploy) error { d.Env = staging; return nil },
			"state": func(d *record.Deploy) error { d.State = "bogus"; return nil },
		} {
			if _, err := f.s.UpdateDeploy(ctx, "d1", fn); err == nil {
				t.Errorf("UpdateDeploy changing %s succeeded", name)
			}
		}
		if _, err := f.s.UpdateDeploy(ctx, "missing", func(*record.Deploy) error { return nil }); !errors.Is(err, record.ErrNotFound) {
			t.Errorf("UpdateDeploy(missing) = %v, want ErrNotFound", err)
		}
		got, err := f.s.UpdateDeploy(ctx, "d1", func(d *record.Deploy) error {
			d.State, d.StartedAt = record.StateRunning, t0.Add(time.Minute)
			return nil
		})
		if err != nil || got.State != record.StateRunning || !got.StartedAt.Equal(t0.Add(time.Minute)) {
			t.Errorf("UpdateDeploy = %+v, %v", got, err)
		}
	}},

	{name: "DeploysAreBoundedButPendingIsKept", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		mustPut(t, f.s, deploy("oldest", prod, t0))
		if _, err := f.s.Enqueue(ctx, prod, "oldest"); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= record.DeploysKept+1; i++ {
			mustPut(t, f.s, deploy(fmt.Sprintf("d%03d", i), prod, t0.Add(time.Duration(i)*time.Second)))
		}
		all, err := f.s.ListDeploys(ctx, prod, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != record.DeploysKept+1 {
			t.Errorf("%d deploys kept, want %d and the pending one", len(all), record.DeploysKept)
		}
		if _, err := f.s.GetDeploy(ctx, "oldest"); err != nil {
			t.Errorf("the pending deploy was trimmed: %v", err)
		}
		if _, err := f.s.GetDeploy(ctx, "d001"); !errors.Is(err, record.ErrNotFound) {
			t.Errorf("GetDeploy(oldest beyond the limit) = %v, want ErrNotFound", err)
		}
	}},

	// Pending and running slots.

	{name: "NewestQueuedSupersedesNeverTheRunning", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		for i, id := range []string{"run", "a", "b", "c"} {
			mustPut(t, f.s, deploy(id, prod, t0.Add(time.Duration(i)*time.Second)))
		}
		wantSuperseded(t, f.s, prod, "run")
		l := mustAcquire(t, f.s, prod, "worker", time.Minute)
		if id, ok, err := f.s.TakePending(ctx, prod, l); err != nil || !ok || id != "run" {
			t.Fatalf("TakePending = %q, %v, %v", id, ok, err)
		}
		// Three quick deploys while "run" runs: each replaces the last.
		wantSuperseded(t, f.s, prod, "a")
		wantSuperseded(t, f.s, prod, "b", "a")
		wantSuperseded(t, f.s, prod, "c", "b")
		wantSlot(t, f.s.Pending, prod, "c")
		wantSlot(t, f.s.Running, prod, "run")
		// Repeating a step changes nothing.
		wantSuperseded(t, f.s, prod, "c")
		wantSuperseded(t, f.s, prod, "run")
		wantSlot(t, f.s.Pending, prod, "c")
		wantSlot(t, f.s.Running, prod, "run")
		// Other environments have their own slots.
		wantSlot(t, f.s.Pending, staging, "")

		// Cancelling takes only the named deploy out of the slot.
		for _, id := range []string{"b", "run"} {
			if ok, err := f.s.CancelPending(ctx, prod, id); ok || err != nil {
				t.Errorf("CancelPending(%s) = %v, %v; it is not pending", id, ok, err)
			}
		}
		if ok, err := f.s.CancelPending(ctx, prod, "c"); !ok || err != nil {
			t.Errorf("CancelPending(c) = %v, %v", ok, err)
		}
		wantSlot(t, f.s.Pending, prod, "")
		wantSlot(t, f.s.Running, prod, "run")
		if err := f.s.FinishRunning(ctx, prod, l, "run"); err != nil {
			t.Fatal(err)
		}
		if id, ok, err := f.s.TakePending(ctx, prod, l); ok || err != nil {
			t.Errorf("TakePending after cancel = %q, %v, %v; want nothing", id, ok, err)
		}
	}},

	{name: "OlderDeployLosesToNewerQueuedOrRunning", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		// "late" was created first but is enqueued last, as a deploy that
		// waited longer for its checks would be.
		mustPut(t, f.s, deploy("late", prod, t0))
		mustPut(t, f.s, deploy("run", prod, t0.Add(time.Second)))
		mustPut(t, f.s, deploy("mid", prod, t0.Add(2*time.Second)))
		mustPut(t, f.s, deploy("new", prod, t0.Add(3*time.Second)))
		wantSuperseded(t, f.s, prod, "run")
		l := mustAcquire(t, f.s, prod, "worker", time.Minute)
		if _, _, err := f.s.TakePending(ctx, prod, l); err != nil {
			t.Fatal(err)
		}
		wantSuperseded(t, f.s, prod, "late", "late") // older than the running deploy
		wantSuperseded(t, f.s, prod, "new")
		wantSuperseded(t, f.s, prod, "mid", "mid") // older than the queued one
		wantSlot(t, f.s.Pending, prod, "new")
		if _, err := f.s.Enqueue(ctx, staging, "new"); err == nil {
			t.Error("Enqueue into another environment than the deploy's succeeded")
		}
		if _, err := f.s.Enqueue(ctx, prod, "missing"); !errors.Is(err, record.ErrNotFound) {
			t.Errorf("Enqueue(missing) = %v, want ErrNotFound", err)
		}
	}},

	{name: "ConcurrentEnqueuesSupersedeEachOnce", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		const n = 12
		for i := range n {
			mustPut(t, f.s, deploy(fmt.Sprintf("d%02d", i), prod, t0.Add(time.Duration(i)*time.Second)))
		}
		var mu sync.Mutex
		count := map[string]int{}
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				sup, err := f.s.Enqueue(ctx, prod, fmt.Sprintf("d%02d", i))
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				for _, id := range sup {
					count[id]++
				}
				mu.Unlock()
			})
		}
		wg.Wait()
		wantSlot(t, f.s.Pending, prod, fmt.Sprintf("d%02d", n-1))
		for i := range n - 1 {
			if id := fmt.Sprintf("d%02d", i); count[id] != 1 {
				t.Errorf("%s superseded %d times, want once", id, count[id])
			}
		}
		if c := count[fmt.Sprintf("d%02d", n-1)]; c != 0 {
			t.Errorf("the newest deploy was superseded %d times", c)
		}
	}},

	{name: "TakePendingNeedsTheCurrentLease", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		mustPut(t, f.s, deploy("d1", prod, t0))
		mustPut(t, f.s, deploy("d2", prod, t0.Add(time.Second)))
		l := mustAcquire(t, f.s, prod, "worker", 100*time.Millisecond)
		if id, ok, err := f.s.TakePending(ctx, prod, l); err != nil || ok {
			t.Fatalf("TakePending with nothing queued = %q, %v, %v", id, ok, err)
		}
		wantSuperseded(t, f.s, prod, "d1")
		f.sleep(200 * time.Millisecond)
		if _, _, err := f.s.TakePending(ctx, prod, l); !errors.Is(err, record.ErrLockLost) {
			t.Fatalf("TakePending with an expired lease = %v, want ErrLockLost", err)
		}
		wantSlot(t, f.s.Pending, prod, "d1")
		l = mustAcquire(t, f.s, prod, "worker", time.Minute)
		if _, _, err := f.s.TakePending(ctx, staging, l); err == nil {
			t.Error("TakePending with another environment's lease succeeded")
		}
		if id, ok, err := f.s.TakePending(ctx, prod, l); err != nil || !ok || id != "d1" {
			t.Fatalf("TakePending = %q, %v, %v", id, ok, err)
		}
		wantSlot(t, f.s.Pending, prod, "")
		wantSlot(t, f.s.Running, prod, "d1")
		wantSuperseded(t, f.s, prod, "d2")
		if _, _, err := f.s.TakePending(ctx, prod, l); !errors.Is(err, record.ErrBusy) {
			t.Fatalf("TakePending while d1 runs = %v, want ErrBusy", err)
		}
		if err := f.s.FinishRunning(ctx, prod, l, "d1"); err != nil {
			t.Fatal(err)
		}
		if err := f.s.FinishRunning(ctx, prod, l, "d1"); err != nil {
			t.Errorf("repeated FinishRunning: %v", err)
		}
		wantSlot(t, f.s.Running, prod, "")
		if id, ok, err := f.s.TakePending(ctx, prod, l); err != nil || !ok || id != "d2" {
			t.Fatalf("TakePending after finish = %q, %v, %v", id, ok, err)
		}
		if err := f.s.ReleaseLock(ctx, l); err != nil {
			t.Fatal(err)
		}
		if err := f.s.FinishRunning(ctx, prod, l, "d2"); !errors.Is(err, record.ErrLockLost) {
			t.Errorf("FinishRunning after ReleaseLock = %v, want ErrLockLost", err)
		}
	}},

	{name: "NewHolderFinishesAnOrphan", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		mustPut(t, f.s, deploy("orphan", prod, t0))
		mustPut(t, f.s, deploy("next", prod, t0.Add(time.Second)))
		wantSuperseded(t, f.s, prod, "orphan")
		dead := mustAcquire(t, f.s, prod, "dead worker", 100*time.Millisecond)
		if _, _, err := f.s.TakePending(ctx, prod, dead); err != nil {
			t.Fatal(err)
		}
		wantSuperseded(t, f.s, prod, "next")
		f.sleep(200 * time.Millisecond)
		l := mustAcquire(t, f.s, prod, "new worker", time.Minute)
		wantSlot(t, f.s.Running, prod, "orphan")
		if _, _, err := f.s.TakePending(ctx, prod, l); !errors.Is(err, record.ErrBusy) {
			t.Fatalf("TakePending over an orphan = %v, want ErrBusy", err)
		}
		if err := f.s.FinishRunning(ctx, prod, dead, "orphan"); !errors.Is(err, record.ErrLockLost) {
			t.Errorf("FinishRunning by the dead holder = %v, want ErrLockLost", err)
		}
		if err := f.s.FinishRunning(ctx, prod, l, "next"); err != nil {
			t.Fatal(err)
		}
		wantSlot(t, f.s.Running, prod, "orphan") // not the one named
		if err := f.s.FinishRunning(ctx, prod, l, "orphan"); err != nil {
			t.Fatal(err)
		}
		if id, ok, err := f.s.TakePending(ctx, prod, l); err != nil || !ok || id != "next" {
			t.Fatalf("TakePending = %q, %v, %v", id, ok, err)
		}
	}},

	// Releases.

	{name: "ReleaseHistory", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		if _, err := f.s.CurrentRelease(ctx, prod); !errors.Is(err, record.ErrNotFound) {
			t.Errorf("CurrentRelease with no history = %v, want ErrNotFound", err)
		}
		a := release("d1", "aaaaaaa1111111111111111111111111111111111", record.ResultSuccess)
		a.Batches = fullDeploy().Batches
		b := release("d2", "bbbbbbb2222222222222222222222222222222222", record.ResultSuccess)
		bad := release("d3", "ccccccc3333333333333333333333333333333333", record.ResultFailure)
		for _, r := range []record.Release{a, b, bad} {
			mustRecord(t, f.s, prod, r)
		}
		mustRecord(t, f.s, staging, release("s1", "ddddddd4444444444444444444444444444444444", record.ResultSuccess))
		got, err := f.s.Releases(ctx, prod, 10)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, []record.Release{bad, b, a}) {
			t.Errorf("Releases = %+v", got)
		}
		if got, _ := f.s.Releases(ctx, prod, 1); len(got) != 1 || got[0].DeployID != "d3" {
			t.Errorf("Releases(1) = %+v", got)
		}
		wantRelease(t, "current", f.s.CurrentRelease, prod, "d2")
		wantRelease(t, "previous", f.s.PreviousRelease, prod, "d1")

		// Find by full SHA, by prefix, in any case; failures are not found.
		for ref, want := range map[string]string{a.SHA: "d1", "bbbbbbb": "d2", "BBBBBBB2": "d2"} {
			if r, err := f.s.FindRelease(ctx, prod, ref); err != nil || r.DeployID != want {
				t.Errorf("FindRelease(%s) = %s, %v; want %s", ref, r.DeployID, err, want)
			}
		}
		for _, ref := range []string{"ccccccc", "bbbbbb", "main", "ddddddd"} {
			if _, err := f.s.FindRelease(ctx, prod, ref); !errors.Is(err, record.ErrNotFound) {
				t.Errorf("FindRelease(%s) = %v, want ErrNotFound", ref, err)
			}
		}
		mustRecord(t, f.s, prod, release("d4", "bbbbbbb9999999999999999999999999999999999", record.ResultSuccess))
		if _, err := f.s.FindRelease(ctx, prod, "bbbbbbb"); !errors.Is(err, record.ErrAmbiguous) {
			t.Errorf("FindRelease(shared prefix) = %v, want ErrAmbiguous", err)
		}
		if err := f.s.RecordRelease(ctx, prod, release("d5", "eeeeeee", "maybe")); err == nil {
			t.Error("RecordRelease with an unknown result succeeded")
		}
	}},

	{name: "RollbackMovesFurtherBack", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		a := release("d1", "aaaaaaa", record.ResultSuccess)
		b := release("d2", "bbbbbbb", record.ResultSuccess)
		c := release("d3", "ccccccc", record.ResultSuccess)
		for _, r := range []record.Release{a, b, c} {
			mustRecord(t, f.s, prod, r)
		}
		// /rollback: c is marked rolled-back where it stands, and the
		// rollback deploy records b's SHA as the newest release.
		c.Result = record.ResultRolledBack
		mustRecord(t, f.s, prod, c)
		mustRecord(t, f.s, prod, release("d4", "bbbbbbb", record.ResultSuccess))
		got, _ := f.s.Releases(ctx, prod, 10)
		if ids := releaseIDs(got); !slices.Equal(ids, []string{"d4", "d3", "d2", "d1"}) {
			t.Errorf("Releases = %v; re-recording d3 must not move it", ids)
		}
		if got[1].Result != record.ResultRolledBack {
			t.Errorf("d3 result %q", got[1].Result)
		}
		wantRelease(t, "current", f.s.CurrentRelease, prod, "d4")
		// Not d2: it runs the SHA that is current again.
		wantRelease(t, "previous", f.s.PreviousRelease, prod, "d1")
		if _, err := f.s.FindRelease(ctx, prod, "ccccccc"); !errors.Is(err, record.ErrNotFound) {
			t.Errorf("FindRelease(rolled back) = %v, want ErrNotFound", err)
		}
	}},

	{name: "ReleasesAreBoundedButKeepTheLastGood", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		good := release("good", "aaaaaaa", record.ResultSuccess)
		mustRecord(t, f.s, prod, good)
		for i := range record.ReleasesKept + 20 {
			mustRecord(t, f.s, prod, release(fmt.Sprintf("f%03d", i), fmt.Sprintf("%07x", i+0xf000000), record.ResultFailure))
		}
		all, err := f.s.Releases(ctx, prod, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != record.ReleasesKept+1 {
			t.Errorf("%d releases kept, want the newest %d and the last success", len(all), record.ReleasesKept)
		}
		if all[0].DeployID != fmt.Sprintf("f%03d", record.ReleasesKept+19) || all[len(all)-1].DeployID != "good" {
			t.Errorf("kept %s ... %s", all[0].DeployID, all[len(all)-1].DeployID)
		}
		wantRelease(t, "current", f.s.CurrentRelease, prod, "good")
		for i := range record.ReleasesKept + 1 {
			mustRecord(t, f.s, prod, release(fmt.Sprintf("s%03d", i), fmt.Sprintf("%07x", i+0xb000000), record.ResultSuccess))
		}
		all, _ = f.s.Releases(ctx, prod, 1000)
		if len(all) != record.ReleasesKept || all[0].DeployID != fmt.Sprintf("s%03d", record.ReleasesKept) {
			t.Errorf("%d releases kept, newest %s; want %d", len(all), all[0].DeployID, record.ReleasesKept)
		}
		if _, err := f.s.FindRelease(ctx, prod, "aaaaaaa"); !errors.Is(err, record.ErrNotFound) {
			t.Errorf("a success beyond the limit is still found: %v", err)
		}
	}},

	// Environment locks, previews, what was seen.

	{name: "EnvironmentLock", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		if _, ok, err := f.s.EnvironmentLock(ctx, prod); ok || err != nil {
			t.Fatalf("EnvironmentLock before /lock = %v, %v", ok, err)
		}
		before := time.Now()
		l, ok, err := f.s.LockEnvironment(ctx, prod, "octocat", "incident 42")
		if err != nil || !ok || l.By != "octocat" || l.Reason != "incident 42" || l.At.Before(before.Add(-time.Second)) {
			t.Fatalf("LockEnvironment = %+v, %v, %v", l, ok, err)
		}
		again, ok, err := f.s.LockEnvironment(ctx, prod, "hubot", "me too")
		if err != nil || ok || again != l {
			t.Errorf("second LockEnvironment = %+v, %v, %v; want the first lock, unchanged", again, ok, err)
		}
		if got, ok, _ := f.s.EnvironmentLock(ctx, prod); !ok || got != l {
			t.Errorf("EnvironmentLock = %+v, %v", got, ok)
		}
		if _, ok, _ := f.s.EnvironmentLock(ctx, staging); ok {
			t.Error("staging locked too")
		}
		if was, ok, err := f.s.UnlockEnvironment(ctx, prod); err != nil || !ok || was != l {
			t.Errorf("UnlockEnvironment = %+v, %v, %v", was, ok, err)
		}
		if _, ok, err := f.s.UnlockEnvironment(ctx, prod); ok || err != nil {
			t.Errorf("second UnlockEnvironment = %v, %v", ok, err)
		}
		if _, ok, _ := f.s.EnvironmentLock(ctx, prod); ok {
			t.Error("still locked after unlock")
		}
	}},

	{name: "Previews", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		p := fullPreview()
		q := record.Preview{Repo: "octo/app", Number: 7, SHA: "bbbbbbb", UpdatedAt: t0}
		r := record.Preview{Repo: "octo/aaa", Number: 100, SHA: "ccccccc", UpdatedAt: t0, Closed: true}
		for _, x := range []record.Preview{p, q, r} {
			if err := f.s.PutPreview(ctx, x); err != nil {
				t.Fatal(err)
			}
		}
		got, err := f.s.GetPreview(ctx, p.Repo, p.Number)
		if err != nil || !reflect.DeepEqual(got, p) {
			t.Errorf("GetPreview = %+v, %v; want %+v", got, err, p)
		}
		all, err := f.s.ListPreviews(ctx)
		if err != nil || !reflect.DeepEqual(all, []record.Preview{r, q, p}) {
			t.Errorf("ListPreviews = %+v, %v", all, err)
		}
		p.SHA, p.URL = "ddddddd", ""
		if err := f.s.PutPreview(ctx, p); err != nil {
			t.Fatal(err)
		}
		if got, _ := f.s.GetPreview(ctx, p.Repo, p.Number); !reflect.DeepEqual(got, p) {
			t.Errorf("after update GetPreview = %+v", got)
		}
		for range 2 {
			if err := f.s.DeletePreview(ctx, p.Repo, p.Number); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := f.s.GetPreview(ctx, p.Repo, p.Number); !errors.Is(err, record.ErrNotFound) {
			t.Errorf("GetPreview after delete = %v, want ErrNotFound", err)
		}
		if all, _ := f.s.ListPreviews(ctx); len(all) != 2 {
			t.Errorf("ListPreviews after delete = %+v", all)
		}
		if err := f.s.PutPreview(ctx, record.Preview{Repo: "octo/app"}); err == nil {
			t.Error("PutPreview without a number succeeded")
		}
	}},

	{name: "EnvironmentsSeen", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		if repos, err := f.s.ListRepos(ctx); err != nil || len(repos) != 0 {
			t.Fatalf("ListRepos of an empty store = %v, %v", repos, err)
		}
		mustPut(t, f.s, deploy("d1", staging, t0))
		mustRecord(t, f.s, prod, release("d2", "aaaaaaa", record.ResultSuccess))
		if _, _, err := f.s.LockEnvironment(ctx, record.EnvKey{Repo: "octo/app", Name: "dev"}, "octocat", ""); err != nil {
			t.Fatal(err)
		}
		mustPut(t, f.s, deploy("d3", other, t0))
		repos, err := f.s.ListRepos(ctx)
		if err != nil || !slices.Equal(repos, []string{"octo/app", "octo/other"}) {
			t.Errorf("ListRepos = %v, %v", repos, err)
		}
		envs, err := f.s.ListEnvironments(ctx, "octo/app")
		want := []record.EnvKey{{Repo: "octo/app", Name: "dev"}, prod, staging}
		if err != nil || !slices.Equal(envs, want) {
			t.Errorf("ListEnvironments = %v, %v; want %v", envs, err, want)
		}
		if envs, err := f.s.ListEnvironments(ctx, "octo/none"); err != nil || len(envs) != 0 {
			t.Errorf("ListEnvironments(unknown) = %v, %v", envs, err)
		}
	}},

	// Restarts and outages.

	{name: "EverythingSurvivesRestart", needsRestart: true, run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		in := fullDeploy()
		mustPut(t, f.s, in)
		mustPut(t, f.s, deploy("run", prod, t0.Add(time.Hour)))
		mustPut(t, f.s, deploy("next", prod, t0.Add(2*time.Hour)))
		rels := []record.Release{release("r1", "aaaaaaa", record.ResultSuccess), release("r2", "bbbbbbb", record.ResultFailure)}
		for _, r := range rels {
			mustRecord(t, f.s, prod, r)
		}
		held := mustAcquire(t, f.s, prod, "worker", 30*time.Second)
		wantSuperseded(t, f.s, prod, "run")
		if _, _, err := f.s.TakePending(ctx, prod, held); err != nil {
			t.Fatal(err)
		}
		wantSuperseded(t, f.s, prod, "next")
		const ttl = 1500 * time.Millisecond
		expiring := mustAcquire(t, f.s, staging, "worker", ttl)
		expires := time.Now().Add(ttl)
		envLock, _, err := f.s.LockEnvironment(ctx, staging, "octocat", "freeze")
		if err != nil {
			t.Fatal(err)
		}
		p := fullPreview()
		if err := f.s.PutPreview(ctx, p); err != nil {
			t.Fatal(err)
		}

		s := f.restart(t)

		// The locks are still held, for what is left of their TTL.
		if _, ok, err := s.AcquireLock(ctx, staging, "other", time.Minute); ok || err != nil {
			t.Fatalf("AcquireLock(staging) right after restart = %v, %v; the lock should still be held", ok, err)
		}
		if _, ok, err := s.AcquireLock(ctx, prod, "other", time.Minute); ok || err != nil {
			t.Fatalf("AcquireLock(production) after restart = %v, %v", ok, err)
		}
		got, err := s.GetDeploy(ctx, in.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantDeploy(t, got, in)
		if list, _ := s.ListDeploys(ctx, prod, 10); !slices.Equal(deployIDs(list), []string{"next", "run", in.ID}) {
			t.Errorf("ListDeploys after restart = %v", deployIDs(list))
		}
		if got, _ := s.Releases(ctx, prod, 10); !reflect.DeepEqual(got, []record.Release{rels[1], rels[0]}) {
			t.Errorf("Releases after restart = %+v", got)
		}
		wantRelease(t, "current", s.CurrentRelease, prod, "r1")
		wantSlot(t, s.Running, prod, "run")
		wantSlot(t, s.Pending, prod, "next")
		if got, ok, _ := s.EnvironmentLock(ctx, staging); !ok || got != envLock {
			t.Errorf("EnvironmentLock after restart = %+v, %v", got, ok)
		}
		if got, err := s.GetPreview(ctx, p.Repo, p.Number); err != nil || !reflect.DeepEqual(got, p) {
			t.Errorf("GetPreview after restart = %+v, %v", got, err)
		}
		if envs, _ := s.ListEnvironments(ctx, "octo/app"); len(envs) != 2 {
			t.Errorf("ListEnvironments after restart = %v", envs)
		}

		// The holder carries on with its lease and fencing token.
		if err := s.RenewLock(ctx, held, time.Minute); err != nil {
			t.Fatalf("RenewLock after restart: %v", err)
		}
		if err := s.FinishRunning(ctx, prod, held, "run"); err != nil {
			t.Fatal(err)
		}
		if id, ok, err := s.TakePending(ctx, prod, held); err != nil || !ok || id != "next" {
			t.Errorf("TakePending after restart = %q, %v, %v", id, ok, err)
		}

		// The staging lock ends when its TTL said, and the next token is
		// still higher.
		f.sleep(time.Until(expires) + 100*time.Millisecond)
		l := mustAcquire(t, s, staging, "other", time.Minute)
		if l.Token <= expiring.Token {
			t.Errorf("token after restart %d, want more than %d", l.Token, expiring.Token)
		}
	}},

	{name: "UnreachableStoreIsUnavailable", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		mustPut(t, f.s, deploy("d1", prod, t0))
		l := mustAcquire(t, f.s, prod, "worker", time.Minute)
		f.outage(t)
		for name, call := range map[string]func() error{
			"PutDeploy": func() error { return f.s.PutDeploy(ctx, deploy("d2", prod, t0)) },
			"GetDeploy": func() error { _, err := f.s.GetDeploy(ctx, "d1"); return err },
			"UpdateDeploy": func() error {
				_, err := f.s.UpdateDeploy(ctx, "d1", func(*record.Deploy) error { return nil })
				return err
			},
			"AcquireLock":  func() error { _, _, err := f.s.AcquireLock(ctx, staging, "w", time.Second); return err },
			"RenewLock":    func() error { return f.s.RenewLock(ctx, l, time.Second) },
			"Enqueue":      func() error { _, err := f.s.Enqueue(ctx, prod, "d1"); return err },
			"TakePending":  func() error { _, _, err := f.s.TakePending(ctx, prod, l); return err },
			"Releases":     func() error { _, err := f.s.Releases(ctx, prod, 1); return err },
			"LockEnv":      func() error { _, _, err := f.s.LockEnvironment(ctx, prod, "a", ""); return err },
			"ListPreviews": func() error { _, err := f.s.ListPreviews(ctx); return err },
			"ListRepos":    func() error { _, err := f.s.ListRepos(ctx); return err },
			"AppendAudit": func() error {
				_, err := f.s.AppendAudit(ctx, record.AuditEntry{Actor: "a", Action: record.ActionLock, Outcome: record.OutcomeSuccess})
				return err
			},
			"ListAudit": func() error { _, err := f.s.ListAudit(ctx, record.AuditFilter{}); return err },
			"EachAudit": func() error {
				return f.s.EachAudit(ctx, record.AuditFilter{}, func(record.AuditEntry) error { return nil })
			},
		} {
			if err := call(); !errors.Is(err, record.ErrUnavailable) {
				t.Errorf("%s = %v, want ErrUnavailable", name, err)
			}
		}
	}},
}

func deploy(id string, env record.EnvKey, created time.Time) record.Deploy {
	return record.Deploy{ID: id, Env: env, SHA: "0123456789abcdef0123456789abcdef01234567", Ref: "main",
		Creator: "octocat", Kind: record.KindPush, State: record.StateQueued, CreatedAt: created}
}

// fullDeploy sets every field, with values that a careless encoding would
// lose: int64s past 2^53, nanoseconds, non-UTC zones, bytes outside ASCII.
func fullDeploy() record.Deploy {
	zone := time.FixedZone("CET", 3600)
	return record.Deploy{
		ID:                 "dep-1",
		Env:                prod,
		SHA:                "0123456789abcdef0123456789abcdef01234567",
		Ref:                "refs/heads/main",
		Creator:            "octocat",
		Kind:               record.KindComment,
		State:              record.StateFailure,
		Reason:             "batch 2 of 3: i-0abc health timed out after 30s",
		GitHubDeploymentID: 1<<53 + 1,
		CheckRunID:         9007199254740993,
		InstallationID:     42,
		CreatedAt:          time.Date(2025, 3, 1, 12, 0, 0, 123456789, zone),
		StartedAt:          time.Date(2025, 3, 1, 12, 0, 1, 5, time.UTC),
		FinishedAt:         time.Date(2025, 3, 1, 12, 5, 0, 0, time.UTC),
		Batches: []record.BatchTiming{
			{Index: 0, Instances: []string{"i-0abc"}, Started: t0, Finished: t0.Add(time.Minute),
				Drain: 1500 * time.Millisecond, Install: 20 * time.Second, Health: 3 * time.Second, Admit: time.Second, Bake: 90*time.Hour + 1},
			{Index: 1, Instances: []string{"i-0def", "i-0123"}, Started: t0.Add(time.Minute), Err: "i-0def: health: timed out"},
		},
		Previous: "fedcba9876543210fedcba9876543210fedcba98",
		LogTail:  "building…\n✓ ok\n\x1b[31mred\x1b[0m\n",
	}
}

func fullPreview() record.Preview {
	return record.Preview{Repo: "octo/app", Number: 12, SHA: "aaaaaaa", URL: "https://pr-12.preview.example.com",
		DeploymentIDs: []int64{1<<53 + 1, 7}, CommentID: 99, UpdatedAt: t0.Add(time.Nanosecond)}
}

func release(id, sha, result string) record.Release {
	return record.Release{DeployID: id, SHA: sha, Ref: "main", By: "octocat", At: t0, Result: result}
}

// wantDeploy compares what was read with what was written, once the
// written times are in UTC as the store keeps them.
func wantDeploy(t *testing.T, got, in record.Deploy) {
	t.Helper()
	in.CreatedAt, in.StartedAt, in.FinishedAt = in.CreatedAt.UTC(), in.StartedAt.UTC(), in.FinishedAt.UTC()
	if !got.CreatedAt.Equal(in.CreatedAt) {
		t.Errorf("CreatedAt %v, want %v", got.CreatedAt, in.CreatedAt)
	}
	if !reflect.DeepEqual(got, in) {
		t.Errorf("deploy read back differs:\n got %+v\nwant %+v", got, in)
	}
}

func mustPut(t *testing.T, s api, d record.Deploy) {
	t.Helper()
	if err := s.PutDeploy(context.Background(), d); err != nil {
		t.Fatalf("PutDeploy %s: %v", d.ID, err)
	}
}

func mustRecord(t *testing.T, s api, env record.EnvKey, r record.Release) {
	t.Helper()
	if err := s.RecordRelease(context.Background(), env, r); err != nil {
		t.Fatalf("RecordRelease %s: %v", r.DeployID, err)
	}
}

func mustAcquire(t *testing.T, s api, env record.EnvKey, holder string, ttl time.Duration) record.Lease {
	t.Helper()
	l, ok, err := s.AcquireLock(context.Background(), env, holder, ttl)
	if err != nil || !ok {
		t.Fatalf("AcquireLock(%s, %s) = %v, %v", env, holder, ok, err)
	}
	return l
}

func wantSuperseded(t *testing.T, s api, env record.EnvKey, id string, want ...string) {
	t.Helper()
	got, err := s.Enqueue(context.Background(), env, id)
	if err != nil {
		t.Fatalf("Enqueue(%s): %v", id, err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Enqueue(%s) superseded %v, want %v", id, got, want)
	}
}

func wantSlot(t *testing.T, slot func(context.Context, record.EnvKey) (string, bool, error), env record.EnvKey, want string) {
	t.Helper()
	id, ok, err := slot(context.Background(), env)
	if err != nil {
		t.Fatal(err)
	}
	if id != want || ok != (want != "") {
		t.Errorf("slot of %s = %q, %v; want %q", env, id, ok, want)
	}
}

func wantRelease(t *testing.T, what string, get func(context.Context, record.EnvKey) (record.Release, error), env record.EnvKey, want string) {
	t.Helper()
	r, err := get(context.Background(), env)
	if err != nil || r.DeployID != want {
		t.Errorf("%s release = %s, %v; want %s", what, r.DeployID, err, want)
	}
}

func deployIDs(ds []record.Deploy) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

func releaseIDs(rs []record.Release) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.DeployID
	}
	return out
}
