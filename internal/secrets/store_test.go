package secrets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/testenv/redistest"
)

// backing is one way of keeping secrets: open returns a Store over the same
// data each time it is called, as `bot secrets` and `bot serve` each open
// their own; raw is everything stored, for looking for a plaintext.
type backing struct {
	open func(t *testing.T, key []byte) *Store
	raw  func(t *testing.T) string
}

func fileBacking(t *testing.T) backing {
	dir := filepath.Join(t.TempDir(), "data") // not there yet: the first write makes it
	return backing{
		open: func(t *testing.T, key []byte) *Store {
			s, err := Open(Options{DataDir: dir, Key: key})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		raw: func(t *testing.T) string {
			b, err := os.ReadFile(filepath.Join(dir, fileName))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			return string(b)
		},
	}
}

func redisBacking(t *testing.T, target *redistest.Target) backing {
	prefix := fmt.Sprintf("t%d", time.Now().UnixNano()) // cases share one server
	return backing{
		open: func(t *testing.T, key []byte) *Store {
			s, err := Open(Options{Redis: target.Client(t), Prefix: prefix, Key: key})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		raw: func(t *testing.T) string {
			c := target.Client(t)
			keys, err := c.Keys(context.Background(), prefix+":*").Result()
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for _, k := range keys {
				m, err := c.HGetAll(context.Background(), k).Result()
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintln(&b, k, m)
			}
			return b.String()
		},
	}
}

// TestStores runs every case against the file store and real Redis.
func TestStores(t *testing.T) {
	target := redistest.Real(t)
	for _, c := range storeCases {
		t.Run("file/"+c.name, func(t *testing.T) { c.run(t, fileBacking(t)) })
		t.Run("redis/"+c.name, func(t *testing.T) { c.run(t, redisBacking(t, target)) })
	}
}

var storeCases = []struct {
	name string
	run  func(t *testing.T, b backing)
}{
	{"set and read", testSetAndRead},
	{"never set", testNeverSet},
	{"set replaces", testSetReplaces},
	{"list", testList},
	{"unset", testUnset},
	{"without SECRETS_KEY", testNoKey},
	{"key changed", testKeyChanged},
	{"key required once a secret is set", testCheckKey},
	{"moved value does not open", testMovedValue},
	{"bad input", testBadInput},
	{"concurrent writers", testConcurrentWriters},
}

var ctx = context.Background()

func set(t *testing.T, s *Store, id ID, v string) {
	t.Helper()
	if err := s.Set(ctx, id, v); err != nil {
		t.Fatalf("Set %s: %v", id, err)
	}
}

func testSetAndRead(t *testing.T, b backing) {
	const v = "postgres://web:hunter2@db/web"
	set(t, b.open(t, testKey(1)), prodDB, v)
	// Another Store, as a running bot has: it reads what was just set.
	got, err := b.open(t, testKey(1)).Secret(ctx, prodDB.Repo, prodDB.Env, prodDB.Name)
	if err != nil || got != v {
		t.Fatalf("Secret = %q, %v", got, err)
	}
	got, err = b.open(t, testKey(1)).Secret(ctx, "Octo-Org/Web", "PRODUCTION", "DATABASE_URL")
	if err != nil || got != v {
		t.Fatalf("Secret with other case = %q, %v", got, err)
	}
	if raw := b.raw(t); strings.Contains(raw, "hunter2") || !strings.Contains(raw, "DATABASE_URL") {
		t.Fatalf("stored: want the name and never the value:\n%s", raw)
	}
}

func testNeverSet(t *testing.T, b backing) {
	s := b.open(t, testKey(1))
	set(t, s, prodDB, "v")
	for _, id := range []ID{
		{Repo: prodDB.Repo, Env: "staging", Name: prodDB.Name},
		{Repo: "octo-org/api", Env: prodDB.Env, Name: prodDB.Name},
		{Repo: prodDB.Repo, Env: prodDB.Env, Name: "STRIPE_KEY"},
	} {
		if _, err := s.Secret(ctx, id.Repo, id.Env, id.Name); !errors.Is(err, deploy.ErrSecretNotSet) {
			t.Errorf("Secret %s = %v, want ErrSecretNotSet", id, err)
		}
	}
}

func testSetReplaces(t *testing.T, b backing) {
	s := b.open(t, testKey(1))
	s.now = func() time.Time { return time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC) }
	set(t, s, prodDB, "old")
	s.now = func() time.Time { return time.Date(2026, 5, 2, 9, 30, 0, 0, time.UTC) }
	set(t, s, ID{Repo: "Octo-Org/web", Env: "Production", Name: prodDB.Name}, "new")
	if got, err := s.Secret(ctx, prodDB.Repo, prodDB.Env, prodDB.Name); err != nil || got != "new" {
		t.Fatalf("Secret = %q, %v", got, err)
	}
	l, err := s.List(ctx, prodDB.Repo, "")
	if err != nil || len(l) != 1 || !l[0].SetAt.Equal(time.Date(2026, 5, 2, 9, 30, 0, 0, time.UTC)) || l[0].Env != "Production" {
		t.Fatalf("List = %+v, %v: want the one secret, set the second time", l, err)
	}
}

func testList(t *testing.T, b backing) {
	s := b.open(t, testKey(1))
	for _, id := range []ID{
		{Repo: "octo-org/web", Env: "staging", Name: "STRIPE_KEY"},
		{Repo: "octo-org/web", Env: "production", Name: "STRIPE_KEY"},
		{Repo: "octo-org/web", Env: "production", Name: "DATABASE_URL"},
		{Repo: "octo-org/web", Env: "preview", Name: "PREVIEW_DATABASE_URL"},
		{Repo: "octo-org/api", Env: "production", Name: "API_TOKEN"},
	} {
		set(t, s, id, "value-of-"+id.Name)
	}
	names := func(l []Info) string {
		var out []string
		for _, i := range l {
			out = append(out, i.Env+"/"+i.Name)
		}
		return strings.Join(out, " ")
	}
	l, err := s.List(ctx, "octo-org/web", "")
	if want := "preview/PREVIEW_DATABASE_URL production/DATABASE_URL production/STRIPE_KEY staging/STRIPE_KEY"; err != nil || names(l) != want {
		t.Fatalf("List = %q, %v, want %q", names(l), err, want)
	}
	l, err = s.List(ctx, "Octo-Org/Web", "Production")
	if want := "production/DATABASE_URL production/STRIPE_KEY"; err != nil || names(l) != want {
		t.Fatalf("List production = %q, %v, want %q", names(l), err, want)
	}
	if l, err := s.List(ctx, "octo-org/none", ""); err != nil || len(l) != 0 {
		t.Fatalf("List of a repository without secrets = %v, %v", l, err)
	}
	for _, i := range l {
		if i.SetAt.IsZero() || time.Since(i.SetAt) > time.Minute {
			t.Fatalf("SetAt = %v", i.SetAt)
		}
	}
}

func testUnset(t *testing.T, b backing) {
	s := b.open(t, testKey(1))
	other := ID{Repo: prodDB.Repo, Env: "staging", Name: prodDB.Name}
	set(t, s, prodDB, "v")
	set(t, s, other, "w")
	if err := b.open(t, nil).Unset(ctx, ID{Repo: "OCTO-ORG/web", Env: "production", Name: "DATABASE_URL"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Secret(ctx, prodDB.Repo, prodDB.Env, prodDB.Name); !errors.Is(err, deploy.ErrSecretNotSet) {
		t.Fatalf("after unset: %v", err)
	}
	if v, err := s.Secret(ctx, other.Repo, other.Env, other.Name); err != nil || v != "w" {
		t.Fatalf("the other environment's secret: %q, %v", v, err)
	}
	err := s.Unset(ctx, prodDB)
	if want := "DATABASE_URL for octo-org/web production is not set: nothing was removed; `bot secrets list octo-org/web` shows the secrets that are"; err == nil || err.Error() != want {
		t.Fatalf("second Unset = %v, want %q", err, want)
	}
}

func testNoKey(t *testing.T, b backing) {
	set(t, b.open(t, testKey(1)), prodDB, "v")
	s := b.open(t, nil)
	err := s.Set(ctx, prodDB, "v")
	if want := "SECRETS_KEY is not set: make one with `openssl rand -base64 32` and set it both here and on the bot, which needs it to read DATABASE_URL"; err == nil || err.Error() != want {
		t.Fatalf("Set without a key = %v, want %q", err, want)
	}
	_, err = s.Secret(ctx, prodDB.Repo, prodDB.Env, prodDB.Name)
	if want := "DATABASE_URL for octo-org/web production is set but SECRETS_KEY is not: set SECRETS_KEY on the bot to the key the secret was set with"; err == nil || err.Error() != want {
		t.Fatalf("Secret without a key = %v, want %q", err, want)
	}
	if _, err := s.Secret(ctx, prodDB.Repo, "staging", prodDB.Name); !errors.Is(err, deploy.ErrSecretNotSet) {
		t.Fatalf("Secret never set, without a key = %v, want ErrSecretNotSet", err)
	}
	if l, err := s.List(ctx, prodDB.Repo, ""); err != nil || len(l) != 1 {
		t.Fatalf("List without a key = %v, %v", l, err)
	}
}

func testKeyChanged(t *testing.T, b backing) {
	set(t, b.open(t, testKey(1)), prodDB, "v")
	_, err := b.open(t, testKey(2)).Secret(ctx, prodDB.Repo, prodDB.Env, prodDB.Name)
	if want := "DATABASE_URL for octo-org/web production no longer decrypts, so SECRETS_KEY changed since it was set: set it again with `bot secrets set octo-org/web production DATABASE_URL`"; err == nil || err.Error() != want {
		t.Fatalf("Secret under another key = %v, want %q", err, want)
	}
	if errors.Is(err, deploy.ErrSecretNotSet) {
		t.Fatal("a value that does not decrypt is not 'never set'")
	}
}

// testMovedValue copies a sealed value to another name, as someone with
// write access to the store could: it must not open there.
func testMovedValue(t *testing.T, b backing) {
	s := b.open(t, testKey(1))
	set(t, s, prodDB, "production-password")
	e, ok, err := s.b.get(ctx, prodDB)
	if err != nil || !ok {
		t.Fatalf("get: %v, %v", ok, err)
	}
	e.Env = "preview"
	if err := s.b.put(ctx, e); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Secret(ctx, prodDB.Repo, "preview", prodDB.Name); err == nil || !strings.Contains(err.Error(), "no longer decrypts") {
		t.Fatalf("a production value moved to preview: %v", err)
	}
}

func testBadInput(t *testing.T, b backing) {
	s := b.open(t, testKey(1))
	for _, tc := range []struct {
		id    ID
		value string
		want  string
	}{
		{ID{"octo-org", "production", "X"}, "v", `"octo-org" is not a repository: write it as OWNER/REPO, e.g. octo-org/web`},
		{ID{"octo/web/x", "production", "X"}, "v", `"octo/web/x" is not a repository`},
		{ID{"octo/..", "production", "X"}, "v", `"octo/.." is not a repository`},
		{ID{"octo/web", "prod uction", "X"}, "v", `"prod uction" is not an environment name: use letters, digits, '.', '_' and '-', as in .github/shipbot.yml, e.g. production, or preview for previews`},
		{ID{"octo/web", "a/b", "X"}, "v", `"a/b" is not an environment name`},
		{ID{"octo/web", "", "X"}, "v", `"" is not an environment name`},
		{ID{"octo/web", "production", "database_url"}, "v", `"database_url" is not a secret name: use capital letters, digits and '_', not starting with a digit, e.g. DATABASE_URL`},
		{ID{"octo/web", "production", "1X"}, "v", `"1X" is not a secret name`},
		{ID{"octo/web", "production", "X-Y"}, "v", `"X-Y" is not a secret name`},
		{ID{"octo/web", "production", "X"}, "", "the value for X is empty: pipe the value into `bot secrets set octo/web production X` on standard input, or remove the secret with `bot secrets unset`"},
		{ID{"octo/web", "production", "X"}, strings.Repeat("v", MaxValueLen+1), "the value for X is over the 64 KiB a secret may hold: keep large files out of the environment and pass a path or URL instead"},
	} {
		err := s.Set(ctx, tc.id, tc.value)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Set %+v = %v, want %q", tc.id, err, tc.want)
		}
	}
	if l, err := s.List(ctx, "octo/web", ""); err != nil || len(l) != 0 {
		t.Fatalf("refused values were stored: %v, %v", l, err)
	}
	if err := s.Set(ctx, ID{"octo/web", "production", "X"}, strings.Repeat("v", MaxValueLen)); err != nil {
		t.Fatalf("a value of exactly MaxValueLen: %v", err)
	}
}

// testConcurrentWriters: writers with their own Store each, as several `bot
// secrets` runs would be, lose no entry.
func testConcurrentWriters(t *testing.T, b backing) {
	const writers, each = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		s := b.open(t, testKey(1))
		wg.Go(func() {
			for i := range each {
				errs <- s.Set(ctx, ID{Repo: "octo-org/web", Env: "production", Name: fmt.Sprintf("W%d_%d", w, i)}, fmt.Sprintf("%d-%d", w, i))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	s := b.open(t, testKey(1))
	l, err := s.List(ctx, "octo-org/web", "")
	if err != nil || len(l) != writers*each {
		t.Fatalf("List: %d entries, %v; want %d", len(l), err, writers*each)
	}
	if v, err := s.Secret(ctx, "octo-org/web", "production", "W3_7"); err != nil || v != "3-7" {
		t.Fatalf("Secret W3_7 = %q, %v", v, err)
	}
}

func testCheckKey(t *testing.T, b backing) {
	if err := b.open(t, nil).CheckKey(ctx); err != nil {
		t.Fatalf("no secrets, no key: %v", err)
	}
	set(t, b.open(t, testKey(1)), prodDB, "v")
	if err := b.open(t, testKey(1)).CheckKey(ctx); err != nil {
		t.Fatalf("with the key: %v", err)
	}
	err := b.open(t, nil).CheckKey(ctx)
	if err == nil || !strings.HasPrefix(err.Error(), "SECRETS_KEY is not set but secrets are stored in ") ||
		!strings.HasSuffix(err.Error(), ": set it to the key they were set with (a new key means setting every secret again with `bot secrets set`)") {
		t.Fatalf("a secret set, no key: %v", err)
	}
	if err := b.open(t, nil).Unset(ctx, prodDB); err != nil {
		t.Fatal(err)
	}
	if err := b.open(t, nil).CheckKey(ctx); err != nil {
		t.Fatalf("the last secret unset, no key: %v", err)
	}
}
