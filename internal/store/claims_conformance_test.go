package store_test

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/store/record"
)

var claimCases = []conformanceCase{
	{name: "ClaimHasOneHolderAmongMany", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		const n = 16
		holders := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := f.s.Claim(ctx, "comment:octo/app#7", "job-"+string(rune('a'+i)), time.Hour)
				if err != nil {
					t.Error(err)
				}
				holders[i] = got
			}()
		}
		wg.Wait()
		won := 0
		for i, h := range holders {
			if h != holders[0] {
				t.Fatalf("claimers saw different holders: %q and %q", holders[0], h)
			}
			if h == "job-"+string(rune('a'+i)) {
				won++
			}
		}
		if won != 1 {
			t.Errorf("%d claimers got the claim, want 1 (holders %v)", won, holders)
		}
		// The holder claiming again (its job retried) still has it.
		if got, err := f.s.Claim(ctx, "comment:octo/app#7", holders[0], time.Hour); err != nil || got != holders[0] {
			t.Errorf("the holder claiming again = %q, %v; want %q", got, err, holders[0])
		}
		if got, _ := f.s.Claim(ctx, "comment:octo/app#8", "job-z", time.Hour); got != "job-z" {
			t.Errorf("another name = %q, want its own holder", got)
		}
	}},

	{name: "ClaimExpiresAndIsReleasedOnlyByItsHolder", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		if got, _ := f.s.Claim(ctx, "k", "a", 200*time.Millisecond); got != "a" {
			t.Fatalf("Claim = %q, want a", got)
		}
		if err := f.s.ReleaseClaim(ctx, "k", "b"); err != nil {
			t.Fatal(err)
		}
		if got, _ := f.s.Claim(ctx, "k", "b", time.Hour); got != "a" {
			t.Fatalf("after another holder's release Claim = %q, want a", got)
		}
		f.sleep(300 * time.Millisecond)
		if got, _ := f.s.Claim(ctx, "k", "b", time.Hour); got != "b" {
			t.Fatalf("after expiry Claim = %q, want b", got)
		}
		if err := f.s.ReleaseClaim(ctx, "k", "b"); err != nil {
			t.Fatal(err)
		}
		if got, _ := f.s.Claim(ctx, "k", "c", time.Hour); got != "c" {
			t.Fatalf("after release Claim = %q, want c", got)
		}
		for _, bad := range []struct{ key, holder string }{{"", "a"}, {"k", ""}} {
			if _, err := f.s.Claim(ctx, bad.key, bad.holder, time.Hour); err == nil {
				t.Errorf("Claim(%q, %q) succeeded", bad.key, bad.holder)
			}
		}
	}},

	{name: "ClaimSurvivesRestart", needsRestart: true, run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		if got, _ := f.s.Claim(ctx, "k", "a", time.Hour); got != "a" {
			t.Fatalf("Claim = %q", got)
		}
		s := f.restart(t)
		if got, err := s.Claim(ctx, "k", "b", time.Hour); err != nil || got != "a" {
			t.Errorf("after restart Claim = %q, %v; want a", got, err)
		}
	}},

	{name: "Installations", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		if all, err := f.s.ListInstallations(ctx); err != nil || len(all) != 0 {
			t.Fatalf("ListInstallations of an empty store = %v, %v", all, err)
		}
		if _, err := f.s.GetInstallation(ctx, 7); !errors.Is(err, record.ErrNotFound) {
			t.Errorf("GetInstallation of none = %v, want ErrNotFound", err)
		}
		at := t0
		got, err := f.s.UpdateInstallation(ctx, 7, func(in *record.Installation) error {
			if in.ID != 7 || in.Account != "" {
				t.Errorf("a new installation starts as %+v", in)
			}
			in.Account, in.Selection, in.Repos, in.UpdatedAt = "octo", "selected", []string{"octo/web", "octo/app", "octo/web"}, at
			return nil
		})
		want := record.Installation{ID: 7, Account: "octo", Selection: "selected", Repos: []string{"octo/app", "octo/web"}, UpdatedAt: at}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("UpdateInstallation = %+v, %v; want %+v", got, err, want)
		}
		if _, err := f.s.UpdateInstallation(ctx, 3, func(in *record.Installation) error {
			in.Account = "acme"
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		// Concurrent changes of one installation all land.
		var wg sync.WaitGroup
		for _, r := range []string{"octo/a", "octo/b", "octo/c", "octo/d"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := f.s.UpdateInstallation(ctx, 7, func(in *record.Installation) error {
					in.Repos = append(in.Repos, r)
					return nil
				}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if in, _ := f.s.GetInstallation(ctx, 7); len(in.Repos) != 6 {
			t.Errorf("after four concurrent additions Repos = %v, want 6", in.Repos)
		}
		boom := errors.New("boom")
		if _, err := f.s.UpdateInstallation(ctx, 7, func(in *record.Installation) error { in.Repos = nil; return boom }); !errors.Is(err, boom) {
			t.Errorf("an update that fails = %v, want its error", err)
		}
		if _, err := f.s.UpdateInstallation(ctx, 7, func(in *record.Installation) error { in.ID = 8; return nil }); err == nil {
			t.Error("an update changed the id")
		}
		if _, err := f.s.UpdateInstallation(ctx, 7, func(in *record.Installation) error { in.Repos = []string{"not a repo"}; return nil }); err == nil {
			t.Error("an update stored a repository that is not owner/name")
		}
		all, err := f.s.ListInstallations(ctx)
		if err != nil || len(all) != 2 || all[0].Account != "acme" || all[1].Account != "octo" || len(all[1].Repos) != 6 {
			t.Errorf("ListInstallations = %+v, %v", all, err)
		}
		for range 2 {
			if err := f.s.DeleteInstallation(ctx, 7); err != nil {
				t.Fatal(err)
			}
		}
		if all, _ := f.s.ListInstallations(ctx); len(all) != 1 || all[0].ID != 3 {
			t.Errorf("after delete ListInstallations = %+v", all)
		}
		if _, err := f.s.UpdateInstallation(ctx, 0, func(*record.Installation) error { return nil }); err == nil {
			t.Error("installation 0 was accepted")
		}
	}},
}
