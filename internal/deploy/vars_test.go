package deploy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/store/record"
)

// releasingFleet is a fleet whose driver runs a release phase: it records
// each call, with the calls the fleet saw before it, and fails when told.
type releasingFleet struct {
	*fakeFleet
	fail     error
	releases []string // "abc1234 after N calls"
	log      string   // what Release writes to the log
}

func (f *releasingFleet) Release(ctx context.Context, t Target, r Release, log io.Writer) error {
	f.mu.Lock()
	f.releases = append(f.releases, r.SHA+" after "+strings.Join(f.calls, ", "))
	f.mu.Unlock()
	io.WriteString(log, f.log)
	return f.fail
}

func TestReleasePhase(t *testing.T) {
	ro := repoconfig.Rollout{Canary: 1, Batch: count(1), MaxUnavailable: count(1)}
	run := func(t *testing.T, f *releasingFleet, mutate func(*ExecInput)) (Result, string) {
		var log bytes.Buffer
		in := testInput(testEnvironment(ro), f, prevSHA)
		in.Target.App.Release = "./app migrate"
		in.Log = &log
		if mutate != nil {
			mutate(&in)
		}
		return Execute(context.Background(), in), log.String()
	}
	t.Run("once, after the build and before any instance", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &releasingFleet{fakeFleet: newFakeFleet(t.Errorf, 1, production(3)...), log: "migrated 3 tables\n"}
			res, log := run(t, f, nil)
			if res.Outcome != OutcomeSuccess {
				t.Fatalf("%s: %s", res.Outcome, said(res))
			}
			if len(f.releases) != 1 || !strings.HasPrefix(f.releases[0], newRelease+" after prepare") || strings.Contains(f.releases[0], "drain") {
				t.Fatalf("release phases %q, want one, after the build and before any drain", f.releases)
			}
			if !strings.Contains(log, "shipbot: release phase for abc1234: app.release ./app migrate\nmigrated 3 tables\n") {
				t.Errorf("the log does not show the release phase:\n%s", log)
			}
		})
	})
	t.Run("a failure touches nothing", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &releasingFleet{fakeFleet: newFakeFleet(t.Errorf, 1, production(3)...), fail: errors.New("./app migrate: exit status 1")}
			res, _ := run(t, f, nil)
			if res.Outcome != OutcomeFailure || res.Reason.Kind != record.ReasonReleasePhaseFailed || res.Reason.Setting != "app.release" || !strings.Contains(res.Reason.Err, "exit status 1") {
				t.Fatalf("%s: %+v", res.Outcome, res.Reason)
			}
			if slices.ContainsFunc(f.calls, func(c string) bool { return !strings.HasPrefix(c, "prepare") }) {
				t.Errorf("instances were touched after the release phase failed: %q", f.calls)
			}
		})
	})
	t.Run("none for a rollback, none unconfigured", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := &releasingFleet{fakeFleet: newFakeFleet(t.Errorf, 1, production(3)...)}
			if res, _ := run(t, f, func(in *ExecInput) { in.SkipRelease = true }); res.Outcome != OutcomeSuccess || len(f.releases) != 0 {
				t.Fatalf("rollback: %s, release phases %q", res.Outcome, f.releases)
			}
			f = &releasingFleet{fakeFleet: newFakeFleet(t.Errorf, 1, production(3)...)}
			if res, _ := run(t, f, func(in *ExecInput) { in.Target.App.Release = "" }); res.Outcome != OutcomeSuccess || len(f.releases) != 0 {
				t.Fatalf("no app.release: %s, release phases %q", res.Outcome, f.releases)
			}
		})
	})
}

// secretMap is a SecretSource over a map; an entry "!err" fails.
type secretMap map[string]string

func (m secretMap) Secret(_ context.Context, repo, env, name string) (string, error) {
	v, ok := m[repo+"/"+env+"/"+name]
	switch {
	case !ok:
		return "", ErrSecretNotSet
	case v == "!err":
		return "", errors.New("it no longer decrypts: SECRETS_KEY changed since it was set")
	}
	return v, nil
}

func TestResolveVars(t *testing.T) {
	src := secretMap{"o/r/production/DATABASE_URL": "postgres://u:hunter2@db/prod", "o/r/production/BROKEN": "!err"}
	vars, secrets, why := ResolveVars(context.Background(), src, "o/r", "production",
		map[string]string{"LOG_FORMAT": "json", "MODE": "app"}, map[string]string{"MODE": "env"}, []string{"DATABASE_URL"})
	if why != nil || vars["LOG_FORMAT"] != "json" || vars["MODE"] != "env" || secrets["DATABASE_URL"] != "postgres://u:hunter2@db/prod" {
		t.Fatalf("vars %v secrets %v why %+v", vars, secrets, why)
	}
	if got := AppEnv(vars, map[string]string{"MODE": "secret"}); !slices.Equal(got, []string{"LOG_FORMAT=json", "MODE=secret"}) {
		t.Errorf("AppEnv = %q, want sorted, the secret winning", got)
	}
	_, _, why = ResolveVars(context.Background(), src, "o/r", "production", nil, nil, []string{"DATABASE_URL", "STRIPE_KEY"})
	if why == nil || why.Kind != record.ReasonSecretMissing || why.Text != "STRIPE_KEY" || why.Repo != "o/r" || why.Env != "production" {
		t.Errorf("a secret never set: %+v", why)
	}
	_, _, why = ResolveVars(context.Background(), src, "o/r", "production", nil, nil, []string{"BROKEN"})
	if why == nil || why.Kind != record.ReasonSecretUnreadable || !strings.Contains(why.Err, "SECRETS_KEY changed") {
		t.Errorf("a secret that cannot be read: %+v", why)
	}
}

func TestMaskWriter(t *testing.T) {
	secrets := map[string]string{"A": "hunter2", "B": "hunter2-long", "EMPTY": ""}
	var out bytes.Buffer
	w := NewMaskWriter(&out, secrets)
	// A value split over writes, a longer value containing a shorter one,
	// and an unfinished last line.
	for _, p := range []string{"password=hun", "ter2\nkey=hunter2-", "long\ntail hunter", "2"} {
		w.Write([]byte(p))
	}
	w.Flush()
	if want := "password=••••\nkey=••••\ntail ••••"; out.String() != want {
		t.Errorf("masked %q, want %q", out.String(), want)
	}
	r := record.Reason{Err: "exit 1: hunter2", Cause: &record.Reason{Text: "saw hunter2-long"}}
	newMasker(secrets).Reason(&r)
	if r.Err != "exit 1: ••••" || r.Cause.Text != "saw ••••" {
		t.Errorf("reason masked to %+v / %+v", r, r.Cause)
	}
	var plain bytes.Buffer
	pw := NewMaskWriter(&plain, nil)
	pw.Write([]byte("no newline"))
	if plain.String() != "no newline" {
		t.Errorf("without secrets the writer holds back %q", plain.String())
	}
}
