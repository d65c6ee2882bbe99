package handlers

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/store/record"
)

const weekendFreeze = "environments:\n  production:\n    require_checks: [ci/test]\n    freeze:\n      - Fri 16:00 - Mon 08:00 Europe/Berlin\n"

// freezeCase is a repository whose production is frozen over the weekend,
// and a clock the test sets.
type freezeCase struct {
	srv   *githubtest.Server
	c     *gh.Client
	now   time.Time
	wakes []time.Time
}

func newFreezeCase(t *testing.T) *freezeCase {
	t.Helper()
	srv := githubtest.New(t)
	srv.AddRepo("octo-org", "web", githubtest.RepoOptions{DefaultBranch: "main"})
	srv.SetBranch("octo-org", "web", "main", pushSHA)
	srv.SetFile("octo-org", "web", "main", ".github/shipbot.yml", []byte(weekendFreeze))
	c, err := gh.New(gh.Options{AppID: srv.AppID, PrivateKey: srv.PrivateKeyPEM, BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return &freezeCase{srv: srv, c: c}
}

func (f *freezeCase) deps(d *deployer, st Store) Deps {
	deps := Deps{Base: Base{GitHub: f.c, Engine: d}}
	if st != nil {
		deps.Store = st
	}
	deps.Now = func() time.Time { return f.now }
	deps.Wake = func(at time.Time) { f.wakes = append(f.wakes, at) }
	return deps
}

func berlin(t *testing.T, y int, m time.Month, d, h, min int) time.Time {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	return time.Date(y, m, d, h, min, 0, 0, loc)
}

// A push on Friday evening is held until Monday 08:00 Berlin time, with the
// check it also waits for, and asks to be woken then; on Monday it is not.
func TestPushInFreezeWindow(t *testing.T) {
	f := newFreezeCase(t)
	f.srv.AddCheckRun("octo-org", "web", githubtest.CheckRun{Name: "ci/test", HeadSHA: pushSHA, Status: "in_progress"})
	f.now = berlin(t, 2026, time.March, 6, 18, 0)
	d := &deployer{}
	if err := f.deps(d, nil).push(context.Background(), pushJob(t, f.srv.InstallationID, "refs/heads/main", pushSHA, false)); err != nil {
		t.Fatal(err)
	}
	if len(d.reqs) != 1 || d.reqs[0].Frozen == nil {
		t.Fatalf("requests %+v", d.reqs)
	}
	r := d.reqs[0]
	until := berlin(t, 2026, time.March, 9, 8, 0)
	if fr := r.Frozen; !fr.Until.Equal(until) || fr.Zone != "Europe/Berlin" || fr.Window != "Fri 16:00 - Mon 08:00 Europe/Berlin" || !fr.Since.Equal(f.now) {
		t.Fatalf("frozen %+v", fr)
	}
	if !slices.Equal(r.WaitingOn, []string{"ci/test"}) {
		t.Fatalf("waiting on %v", r.WaitingOn)
	}
	if len(f.wakes) != 1 || !f.wakes[0].Equal(until) {
		t.Fatalf("wakes %v", f.wakes)
	}

	f.now = until
	d = &deployer{}
	if err := f.deps(d, nil).push(context.Background(), pushJob(t, f.srv.InstallationID, "refs/heads/main", pushSHA, false)); err != nil {
		t.Fatal(err)
	}
	if len(d.reqs) != 1 || d.reqs[0].Frozen != nil {
		t.Fatalf("a push after the window: %+v", d.reqs)
	}
}

// A red check fails a push at once, freeze or not.
func TestPushInFreezeWindowRedCheck(t *testing.T) {
	f := newFreezeCase(t)
	f.srv.AddCheckRun("octo-org", "web", githubtest.CheckRun{Name: "ci/test", HeadSHA: pushSHA, Status: "completed", Conclusion: "failure"})
	f.now = berlin(t, 2026, time.March, 6, 18, 0)
	d := &deployer{}
	if err := f.deps(d, nil).push(context.Background(), pushJob(t, f.srv.InstallationID, "refs/heads/main", pushSHA, false)); err != nil {
		t.Fatal(err)
	}
	if len(d.reqs) != 1 || d.reqs[0].Frozen != nil || len(d.failed) != 1 {
		t.Fatalf("requests %+v failed %v", d.reqs, d.failed)
	}
}

// The sweep keeps a held push held while the window is open (asking the
// engine with the freeze, which writes nothing when nothing changed), and
// once it closed releases it when its checks are green — the hour's wait
// for checks counting from the window's end, not from the push.
func TestRecheckHeld(t *testing.T) {
	f := newFreezeCase(t)
	f.srv.AddCheckRun("octo-org", "web", githubtest.CheckRun{Name: "ci/test", HeadSHA: pushSHA, Status: "completed", Conclusion: "success"})
	const pending = "4444444444444444444444444444444444444444"
	f.srv.AddCheckRun("octo-org", "web", githubtest.CheckRun{Name: "ci/test", HeadSHA: pending, Status: "in_progress"})
	pushed, until := berlin(t, 2026, time.March, 6, 18, 0), berlin(t, 2026, time.March, 9, 8, 0)
	env := record.EnvKey{Repo: "octo-org/web", Name: "production"}
	st := openStore(t)
	for _, r := range []record.Deploy{
		{ID: "held", SHA: pushSHA},
		{ID: "held-pending", SHA: pending},
	} {
		r.Env, r.Kind, r.State, r.CreatedAt, r.FrozenUntil, r.InstallationID = env, record.KindPush, record.StateWaiting, pushed, until, f.srv.InstallationID
		r.Why = &record.Reason{Kind: record.ReasonFrozen, Until: until}
		if err := st.PutDeploy(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}

	f.now = berlin(t, 2026, time.March, 8, 12, 0)
	d := &deployer{}
	if err := f.deps(d, st).RecheckWaiting(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(d.passed) != 0 || len(d.failed) != 0 || len(d.reqs) != 2 {
		t.Fatalf("in the window: passed %v failed %v requests %d", d.passed, d.failed, len(d.reqs))
	}
	for _, r := range d.reqs {
		if r.Frozen == nil || !r.Frozen.Until.Equal(until) || r.ID == "" || r.Release.SHA == "" {
			t.Fatalf("request %+v", r)
		}
	}
	if len(f.wakes) == 0 || !f.wakes[0].Equal(until) {
		t.Fatalf("wakes %v", f.wakes)
	}

	f.now = until.Add(time.Second)
	d = &deployer{}
	if err := f.deps(d, st).RecheckWaiting(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.passed, []string{"held"}) || len(d.failed) != 0 {
		t.Fatalf("after the window: passed %v failed %v", d.passed, d.failed)
	}
	if len(d.reqs) != 1 || d.reqs[0].ID != "held-pending" || d.reqs[0].Frozen != nil || !slices.Equal(d.reqs[0].WaitingOn, []string{"ci/test"}) {
		t.Fatalf("the one still waiting for checks: %+v", d.reqs)
	}
}
