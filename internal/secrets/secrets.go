// Package secrets owns the values of the secrets a repository's
// environments name in .github/shipbot.yml: sealed with AES-256-GCM under
// SECRETS_KEY and kept in Redis (REDIS_URL) or, with the embedded store, in
// DATA_DIR/secrets.json. It is what `bot secrets` writes and the deploy
// engine reads (deploy.SecretSource). A value leaves this package only as
// the return of Secret: never in an error, a listing or a log.
package secrets

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shipbot/shipbot/internal/deploy"
)

// MaxValueLen bounds a value: it becomes an environment variable, and
// Linux refuses one string of the environment over 128 KiB.
const MaxValueLen = 64 << 10

// Options says where secrets live and the key they are sealed with.
type Options struct {
	// Redis, when set, holds the secrets under Prefix (REDIS_URL).
	Redis  *redis.Client
	Prefix string // the store's and the queue's prefix; "" is "shipbot"
	// DataDir holds secrets.json when Redis is nil (the embedded store).
	DataDir string
	// Key is SECRETS_KEY decoded (config.Config.SecretsKey); nil when it is
	// unset, which lists and removes secrets but neither sets nor reads one.
	Key []byte
}

// Store is the secrets of every repository. It reads its backing store on
// every call, so a secret set by `bot secrets` is seen by a running bot at
// once.
type Store struct {
	b      backend
	sealer *sealer // nil: no SECRETS_KEY
	now    func() time.Time
}

var _ deploy.SecretSource = (*Store)(nil)

// Open returns the store o describes. It touches neither Redis nor the
// disk: a store that is down is an error of the call that needs it.
func Open(o Options) (*Store, error) {
	s := &Store{now: time.Now}
	if o.Key != nil {
		sl, err := newSealer(o.Key)
		if err != nil {
			return nil, err
		}
		s.sealer = sl
	}
	switch {
	case o.Redis != nil:
		prefix := o.Prefix
		if prefix == "" {
			prefix = "shipbot"
		}
		s.b = &redisBackend{client: o.Redis, base: prefix + ":secrets:"}
	case o.DataDir != "":
		s.b = newFileBackend(o.DataDir)
	default:
		return nil, fmt.Errorf("secrets: Options needs Redis or DataDir")
	}
	return s, nil
}

// Info is what may be shown of a secret: never its value.
type Info struct {
	ID
	SetAt time.Time
}

// entry is a secret as stored. Repo and Env keep the spelling they were
// set with, for listings; lookups ignore their case.
type entry struct {
	Repo   string    `json:"repo"`
	Env    string    `json:"env"`
	Name   string    `json:"name"`
	Sealed []byte    `json:"sealed"`
	SetAt  time.Time `json:"set_at"`
}

func (e entry) id() ID { return ID{Repo: e.Repo, Env: e.Env, Name: e.Name} }

// backend keeps entries; every method reads or writes the backing store
// afresh. Entries are found by ID.key().
type backend interface {
	put(ctx context.Context, e entry) error
	get(ctx context.Context, id ID) (entry, bool, error)
	remove(ctx context.Context, id ID) (bool, error)
	list(ctx context.Context, repo string) ([]entry, error)
	// some reports whether any secret of any repository is stored.
	some(ctx context.Context) (bool, error)
	// where is where the secrets are, for errors.
	where() string
}

// Set seals value under SECRETS_KEY and stores it, replacing any earlier
// value of id.
func (s *Store) Set(ctx context.Context, id ID, value string) error {
	if err := id.Check(); err != nil {
		return err
	}
	if s.sealer == nil {
		return fmt.Errorf("SECRETS_KEY is not set: make one with `openssl rand -base64 32` and set it both here and on the bot, which needs it to read %s", id.Name)
	}
	switch {
	case value == "":
		return fmt.Errorf("the value for %s is empty: pipe the value into `bot secrets set %s %s %s` on standard input, or remove the secret with `bot secrets unset`", id.Name, id.Repo, id.Env, id.Name)
	case len(value) > MaxValueLen:
		return fmt.Errorf("the value for %s is over the %d KiB a secret may hold: keep large files out of the environment and pass a path or URL instead", id.Name, MaxValueLen>>10)
	}
	return s.b.put(ctx, entry{
		Repo: id.Repo, Env: id.Env, Name: id.Name,
		Sealed: s.sealer.seal(id, value),
		SetAt:  s.now().UTC().Truncate(time.Second),
	})
}

// Unset removes id; one that was never set is an error saying so.
func (s *Store) Unset(ctx context.Context, id ID) error {
	if err := id.Check(); err != nil {
		return err
	}
	ok, err := s.b.remove(ctx, id)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s is not set: nothing was removed; `bot secrets list %s` shows the secrets that are", id, id.Repo)
	}
	return nil
}

// List is repo's secrets, of environment env only unless env is "",
// ordered by environment and name.
func (s *Store) List(ctx context.Context, repo, env string) ([]Info, error) {
	if err := CheckRepo(repo); err != nil {
		return nil, err
	}
	if env != "" {
		if err := CheckEnv(env); err != nil {
			return nil, err
		}
	}
	entries, err := s.b.list(ctx, repo)
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, e := range entries {
		if env == "" || strings.EqualFold(e.Env, env) {
			out = append(out, Info{ID: e.id(), SetAt: e.SetAt})
		}
	}
	slices.SortFunc(out, func(a, b Info) int {
		if c := strings.Compare(strings.ToLower(a.Env), strings.ToLower(b.Env)); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// Secret is the value of name for repo's environment env
// (deploy.SecretSource): deploy.ErrSecretNotSet when it was never set, and
// an error saying what to do when it cannot be read.
func (s *Store) Secret(ctx context.Context, repo, env, name string) (string, error) {
	id := ID{Repo: repo, Env: env, Name: name}
	e, ok, err := s.b.get(ctx, id)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", deploy.ErrSecretNotSet
	}
	if s.sealer == nil {
		return "", fmt.Errorf("%s is set but SECRETS_KEY is not: set SECRETS_KEY on the bot to the key the secret was set with", id)
	}
	v, err := s.sealer.open(id, e.Sealed)
	if err != nil {
		return "", fmt.Errorf("%s no longer decrypts, so SECRETS_KEY changed since it was set: set it again with `bot secrets set %s %s %s`", id, repo, env, name)
	}
	return v, nil
}

// CheckKey is for start-up: SECRETS_KEY is required once any secret is set
// (SPEC §2), so a bot without it while secrets are stored is told so at
// once rather than at its next deploy.
func (s *Store) CheckKey(ctx context.Context) error {
	if s.sealer != nil {
		return nil
	}
	some, err := s.b.some(ctx)
	if err != nil || !some {
		return err
	}
	return fmt.Errorf("SECRETS_KEY is not set but secrets are stored in %s: set it to the key they were set with (a new key means setting every secret again with `bot secrets set`)", s.b.where())
}
