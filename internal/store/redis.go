package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shipbot/shipbot/internal/store/record"
)

// Redis keeps the store in Redis, shared by every process pointed at it.
// Values are JSON; whatever must be atomic and compares more than one key
// is a Lua script, and a deploy record (which the caller's Go code changes)
// is rewritten under WATCH/MULTI. Keys live under "<prefix>:store:":
//
//	deploy:<id>          string: the Deploy
//	deploys:<env>        zset: deploy ids by CreatedAt (unix µs)
//	repos                set: repositories seen
//	envs:<repo>          set: environment names seen in the repository
//	fence:<env>          counter: the last fencing token handed out
//	lock:<env>           string "<token>:<holder>#<attempt>", expiring (PX) with the lease
//	pending:<env>        hash id, at (µs): the deploy next in line
//	running:<env>        hash id, at, token: the deploy rolling out
//	releases:<env>       zset: release deploy ids by record order
//	successes:<env>      zset: the successful ones among them
//	release:<env>        hash: deploy id -> Release
//	release-seq:<env>    counter: record order
//	envlock:<env>        string: the EnvLock
//	previews             hash: "<repo>#<number>" -> Preview
//	audit:...            the audit log (audit_redis.go)
//
// <env> is EnvKey.String(). Lock expiry is Redis' own clock, so processes
// with skewed clocks still agree on who holds a lock.
type Redis struct {
	client  *redis.Client
	base    string
	scripts redisScripts
}

// NewRedis builds a store on client with keys under prefix (e.g. "shipbot",
// the queue's prefix: the two keep apart by their own sub-prefixes). It does
// not talk to Redis, so a process can start while Redis is down. The caller
// keeps ownership of client.
func NewRedis(client *redis.Client, prefix string) *Redis {
	return &Redis{client: client, base: prefix + ":store:", scripts: newRedisScripts()}
}

func (r *Redis) key(parts ...string) string { return r.base + strings.Join(parts, ":") }

// txRetries bounds how often a WATCHed write starts over because another
// process wrote the same deploy in between.
const txRetries = 100

// errAbort carries an error of the caller's (or a validation error) out of
// a WATCH callback, so it is not taken for Redis failing.
type errAbort struct{ err error }

func (e errAbort) Error() string { return e.err.Error() }

func (r *Redis) PutDeploy(ctx context.Context, d record.Deploy) error {
	return putDeploy(ctx, r.writeDeploy, d)
}

// UpdateDeploy reads the deploy, lets fn change it and writes it back,
// unless another write came in between, in which case it starts over: fn
// may run more than once and must only change d. An error from fn is
// returned as is and nothing is written. fn may not change ID or Env.
func (r *Redis) UpdateDeploy(ctx context.Context, id string, fn func(*record.Deploy) error) (record.Deploy, error) {
	return updateDeploy(ctx, r.writeDeploy, id, fn)
}

// applyUpdate runs an UpdateDeploy callback on a copy of d.
func applyUpdate(d record.Deploy, fn func(*record.Deploy) error) (record.Deploy, error) {
	d.Batches = slices.Clone(d.Batches)
	id, env := d.ID, d.Env
	if err := fn(&d); err != nil {
		return record.Deploy{}, err
	}
	if d.ID != id || d.Env != env {
		return record.Deploy{}, fmt.Errorf("store: update deploy %s: the id and environment of a deploy cannot change", id)
	}
	return d, nil
}

func (r *Redis) writeDeploy(ctx context.Context, op, id string, next func(old *record.Deploy) (record.Deploy, error)) (record.Deploy, error) {
	key := r.key("deploy", id)
	for attempt := range txRetries {
		var out record.Deploy
		var kept *redis.IntCmd
		err := r.client.Watch(ctx, func(tx *redis.Tx) error {
			var old *record.Deploy
			raw, err := tx.Get(ctx, key).Bytes()
			switch {
			case errors.Is(err, redis.Nil):
			case err != nil:
				return err
			default:
				old = new(record.Deploy)
				if err := json.Unmarshal(raw, old); err != nil {
					return errAbort{fmt.Errorf("store: deploy %s: %w", id, err)}
				}
			}
			d, err := next(old)
			if err == nil {
				err = validateDeploy(&d)
			}
			if err != nil {
				return errAbort{err}
			}
			normalizeDeploy(&d)
			blob, err := json.Marshal(d)
			if err != nil {
				return errAbort{err}
			}
			env := d.Env.String()
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, key, blob, 0)
				p.ZAdd(ctx, r.key("deploys", env), redis.Z{Score: float64(micros(d.CreatedAt)), Member: d.ID})
				p.SAdd(ctx, r.key("repos"), d.Env.Repo)
				p.SAdd(ctx, r.key("envs", d.Env.Repo), d.Env.Name)
				kept = p.ZCard(ctx, r.key("deploys", env))
				return nil
			})
			out = d
			return err
		}, key)
		var abort errAbort
		switch {
		case errors.As(err, &abort):
			return record.Deploy{}, abort.err
		case errors.Is(err, redis.TxFailedErr):
			// Someone wrote the deploy in between; back off a little, more
			// each time, so a crowd of writers spreads out.
			time.Sleep(time.Duration(rand.Int64N(int64(attempt+1) * int64(time.Millisecond))))
			continue
		case err != nil:
			return record.Deploy{}, r.fail(op, err)
		}
		if kept.Val() > record.DeploysKept {
			env := out.Env.String()
			keys := []string{r.key("deploys", env), r.key("pending", env), r.key("running", env)}
			if err := r.scripts.trimDeploys.Run(ctx, r.client, keys, record.DeploysKept, r.key("deploy", "")).Err(); err != nil {
				return record.Deploy{}, r.fail(op+": trim", err)
			}
		}
		return out, nil
	}
	return record.Deploy{}, fmt.Errorf("store: %s %s: %d writers in a row got in first", op, id, txRetries)
}

func (r *Redis) GetDeploy(ctx context.Context, id string) (record.Deploy, error) {
	raw, err := r.client.Get(ctx, r.key("deploy", id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return record.Deploy{}, fmt.Errorf("%w: deploy %s", record.ErrNotFound, id)
	}
	if err != nil {
		return record.Deploy{}, r.fail("get deploy", err)
	}
	var d record.Deploy
	if err := json.Unmarshal(raw, &d); err != nil {
		return record.Deploy{}, fmt.Errorf("store: deploy %s: %w", id, err)
	}
	return d, nil
}

// ListDeploys returns up to n deploys of env, newest (by CreatedAt) first.
func (r *Redis) ListDeploys(ctx context.Context, env record.EnvKey, n int) ([]record.Deploy, error) {
	if err := env.Validate(); err != nil || n <= 0 {
		return nil, err
	}
	ids, err := r.client.ZRangeArgs(ctx, redis.ZRangeArgs{Key: r.key("deploys", env.String()), Start: 0, Stop: n - 1, Rev: true}).Result()
	if err != nil {
		return nil, r.fail("list deploys", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return mgetJSON[record.Deploy](ctx, r, "deploy", ids, "list deploys")
}

// mgetJSON reads the JSON records kind:<id> for ids in one MGET, in ids'
// order. A record gone between listing its id and this read (trimmed,
// deleted) is left out; one that does not decode is an error naming it.
func mgetJSON[T any](ctx context.Context, r *Redis, kind string, ids []string, op string) ([]T, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = r.key(kind, id)
	}
	vals, err := r.client.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, r.fail(op, err)
	}
	out := make([]T, 0, len(vals))
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue
		}
		var rec T
		if err := json.Unmarshal([]byte(s), &rec); err != nil {
			return nil, fmt.Errorf("store: %s %s: %w", kind, ids[i], err)
		}
		out = append(out, rec)
	}
	return out, nil
}

// AcquireLock takes env's deploy lock for ttl if nobody holds it (the holder
// included: it is not reentrant). ok is false when someone does.
func (r *Redis) AcquireLock(ctx context.Context, env record.EnvKey, holder string, ttl time.Duration) (record.Lease, bool, error) {
	if err := validateAcquire(env, holder, ttl); err != nil {
		return record.Lease{}, false, err
	}
	e := env.String()
	token, err := r.scripts.acquire.Run(ctx, r.client, []string{r.key("lock", e), r.key("fence", e)}, holder, ttl.Milliseconds(), attemptID()).Int64()
	if err != nil {
		return record.Lease{}, false, r.fail("acquire lock", err)
	}
	if token == 0 {
		return record.Lease{}, false, nil
	}
	return record.Lease{Env: env, Holder: holder, Token: token}, true, nil
}

// attemptID names one AcquireLock call (acquireLua).
func attemptID() string { return strconv.FormatUint(rand.Uint64(), 16) }

// RenewLock makes the lease last ttl from now. ErrLockLost when it expired
// or was released.
func (r *Redis) RenewLock(ctx context.Context, l record.Lease, ttl time.Duration) error {
	if err := validateAcquire(l.Env, l.Holder, ttl); err != nil {
		return err
	}
	if err := validateLease(l, l.Env); err != nil {
		return err
	}
	ok, err := r.scripts.renew.Run(ctx, r.client, []string{r.key("lock", l.Env.String())}, l.Token, ttl.Milliseconds()).Int()
	if err != nil {
		return r.fail("renew lock", err)
	}
	if ok == 0 {
		return fmt.Errorf("%w: %s (token %d)", record.ErrLockLost, l.Env, l.Token)
	}
	return nil
}

// ReleaseLock frees the lock if l still holds it, and does nothing if not.
func (r *Redis) ReleaseLock(ctx context.Context, l record.Lease) error {
	if err := validateLease(l, l.Env); err != nil {
		return nil // nothing this lease could hold
	}
	if err := r.scripts.release.Run(ctx, r.client, []string{r.key("lock", l.Env.String())}, l.Token).Err(); err != nil {
		return r.fail("release lock", err)
	}
	return nil
}

// Enqueue makes deployID env's pending deploy unless a newer one (by
// CreatedAt) is pending or running; it returns the ids that are no longer
// queued because of it: the one it replaced, or deployID itself when it
// lost. The running deploy is never superseded. Enqueueing the pending or
// running deploy again changes nothing. The deploy must exist (PutDeploy).
func (r *Redis) Enqueue(ctx context.Context, env record.EnvKey, deployID string) ([]string, error) {
	d, err := r.GetDeploy(ctx, deployID)
	if err != nil {
		return nil, err
	}
	if d.Env != env {
		return nil, fmt.Errorf("store: enqueue deploy %s: it belongs to %s, not %s", deployID, d.Env, env)
	}
	e := env.String()
	res, err := r.scripts.enqueue.Run(ctx, r.client, []string{r.key("pending", e), r.key("running", e)}, deployID, micros(d.CreatedAt)).StringSlice()
	if err != nil {
		return nil, r.fail("enqueue", err)
	}
	if len(res) == 0 {
		return nil, nil
	}
	return res, nil
}

// CancelPending takes deployID out of env's pending slot; false if it was
// not there (already taken, superseded or cancelled).
func (r *Redis) CancelPending(ctx context.Context, env record.EnvKey, deployID string) (bool, error) {
	if err := env.Validate(); err != nil {
		return false, err
	}
	n, err := r.scripts.cancel.Run(ctx, r.client, []string{r.key("pending", env.String())}, deployID).Int()
	if err != nil {
		return false, r.fail("cancel pending", err)
	}
	return n == 1, nil
}

// Pending is the deploy next in line for env.
func (r *Redis) Pending(ctx context.Context, env record.EnvKey) (string, bool, error) {
	return r.slotID(ctx, "pending", env)
}

// Running is the deploy in env's running slot. A deploy there while nobody
// holds the lock is an orphan of a holder that died.
func (r *Redis) Running(ctx context.Context, env record.EnvKey) (string, bool, error) {
	return r.slotID(ctx, "running", env)
}

func (r *Redis) slotID(ctx context.Context, which string, env record.EnvKey) (string, bool, error) {
	if err := env.Validate(); err != nil {
		return "", false, err
	}
	id, err := r.client.HGet(ctx, r.key(which, env.String()), "id").Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, r.fail(which, err)
	}
	return id, true, nil
}

// TakePending moves env's pending deploy to the running slot, if the lease
// is still env's lock (checked in the same step). ok is false when nothing
// is pending; ErrBusy when the running slot is taken; ErrLockLost when the
// lease is not current.
func (r *Redis) TakePending(ctx context.Context, env record.EnvKey, l record.Lease) (string, bool, error) {
	if err := validateLease(l, env); err != nil {
		return "", false, err
	}
	e := env.String()
	keys := []string{r.key("lock", e), r.key("pending", e), r.key("running", e)}
	res, err := r.scripts.take.Run(ctx, r.client, keys, l.Token).Slice()
	if err != nil {
		return "", false, r.fail("take pending", err)
	}
	code, _ := res[0].(int64)
	id := ""
	if len(res) > 1 {
		id, _ = res[1].(string)
	}
	switch code {
	case -1:
		return "", false, fmt.Errorf("%w: %s (token %d)", record.ErrLockLost, env, l.Token)
	case -2:
		return "", false, fmt.Errorf("%w: %s runs deploy %s", record.ErrBusy, env, id)
	case 0:
		return "", false, nil
	}
	return id, true, nil
}

// FinishRunning empties env's running slot if it holds deployID, under a
// current lease (not necessarily the one that took it: a new holder
// finishes an orphan). A slot holding anything else is left alone, so a
// repeated call is harmless.
func (r *Redis) FinishRunning(ctx context.Context, env record.EnvKey, l record.Lease, deployID string) error {
	if err := validateLease(l, env); err != nil {
		return err
	}
	e := env.String()
	ok, err := r.scripts.finish.Run(ctx, r.client, []string{r.key("lock", e), r.key("running", e)}, l.Token, deployID).Int()
	if err != nil {
		return r.fail("finish running", err)
	}
	if ok == 0 {
		return fmt.Errorf("%w: %s (token %d)", record.ErrLockLost, env, l.Token)
	}
	return nil
}

// RecordRelease adds rel as env's newest release or, when a release of the
// same DeployID is recorded, replaces that one where it stands (a repeated
// step records once; a release can later be marked rolled-back).
func (r *Redis) RecordRelease(ctx context.Context, env record.EnvKey, rel record.Release) error {
	if err := env.Validate(); err != nil {
		return err
	}
	if err := validateRelease(&rel); err != nil {
		return err
	}
	normalizeRelease(&rel)
	blob, err := json.Marshal(rel)
	if err != nil {
		return err
	}
	e := env.String()
	keys := []string{r.key("releases", e), r.key("successes", e), r.key("release", e), r.key("release-seq", e), r.key("repos"), r.key("envs", env.Repo)}
	success := 0
	if rel.Result == record.ResultSuccess {
		success = 1
	}
	err = r.scripts.recordRelease.Run(ctx, r.client, keys, rel.DeployID, blob, success, record.ReleasesKept, env.Repo, env.Name).Err()
	if err != nil {
		return r.fail("record release", err)
	}
	return nil
}

// Releases returns up to n releases of env, newest first.
func (r *Redis) Releases(ctx context.Context, env record.EnvKey, n int) ([]record.Release, error) {
	if err := env.Validate(); err != nil || n <= 0 {
		return nil, err
	}
	return r.releases(ctx, "releases", env, n)
}

// successes lists env's successful releases, newest first; n < 0: all.
func (r *Redis) successes(ctx context.Context, env record.EnvKey, n int) ([]record.Release, error) {
	return r.releases(ctx, "successes", env, n)
}

// CurrentRelease is env's newest successful release.
func (r *Redis) CurrentRelease(ctx context.Context, env record.EnvKey) (record.Release, error) {
	return currentRelease(ctx, env, r.successes)
}

// PreviousRelease is what /rollback puts back: the newest success before
// the current one that runs another SHA.
func (r *Redis) PreviousRelease(ctx context.Context, env record.EnvKey) (record.Release, error) {
	return previousReleaseOf(ctx, env, r.successes)
}

// FindRelease is the newest successful release of env whose SHA is ref or
// starts with it (7 hex digits at least).
func (r *Redis) FindRelease(ctx context.Context, env record.EnvKey, ref string) (record.Release, error) {
	return findReleaseOf(ctx, env, ref, r.successes)
}

// releases reads up to n (all: -1) releases from one of env's two indexes,
// newest first, in one script so a concurrent trim cannot tear the read.
func (r *Redis) releases(ctx context.Context, index string, env record.EnvKey, n int) ([]record.Release, error) {
	e := env.String()
	blobs, err := r.scripts.listReleases.Run(ctx, r.client, []string{r.key(index, e), r.key("release", e)}, n).StringSlice()
	if err != nil {
		return nil, r.fail("releases", err)
	}
	out := make([]record.Release, 0, len(blobs))
	for _, b := range blobs {
		var rel record.Release
		if err := json.Unmarshal([]byte(b), &rel); err != nil {
			return nil, fmt.Errorf("store: release in %s: %w", env, err)
		}
		out = append(out, rel)
	}
	return out, nil
}

// LockEnvironment locks env for by with reason; if it is locked already,
// it returns that lock and false and changes nothing.
func (r *Redis) LockEnvironment(ctx context.Context, env record.EnvKey, by, reason string) (record.EnvLock, bool, error) {
	if err := env.Validate(); err != nil {
		return record.EnvLock{}, false, err
	}
	blob, err := json.Marshal(record.EnvLock{By: by, Reason: reason, At: time.Now().UTC()})
	if err != nil {
		return record.EnvLock{}, false, err
	}
	keys := []string{r.key("envlock", env.String()), r.key("repos"), r.key("envs", env.Repo)}
	res, err := r.scripts.lockEnv.Run(ctx, r.client, keys, blob, env.Repo, env.Name).Slice()
	if err != nil {
		return record.EnvLock{}, false, r.fail("lock environment", err)
	}
	created, _ := res[0].(int64)
	s, _ := res[1].(string)
	var l record.EnvLock
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return record.EnvLock{}, false, fmt.Errorf("store: lock of %s: %w", env, err)
	}
	return l, created == 1, nil
}

// UnlockEnvironment removes env's lock and returns it; false if there was
// none.
func (r *Redis) UnlockEnvironment(ctx context.Context, env record.EnvKey) (record.EnvLock, bool, error) {
	if err := env.Validate(); err != nil {
		return record.EnvLock{}, false, err
	}
	s, err := r.scripts.unlockEnv.Run(ctx, r.client, []string{r.key("envlock", env.String())}).Text()
	return r.envLock(env, s, err, "unlock environment")
}

// EnvironmentLock is env's lock; false if it is not locked.
func (r *Redis) EnvironmentLock(ctx context.Context, env record.EnvKey) (record.EnvLock, bool, error) {
	if err := env.Validate(); err != nil {
		return record.EnvLock{}, false, err
	}
	s, err := r.client.Get(ctx, r.key("envlock", env.String())).Result()
	return r.envLock(env, s, err, "environment lock")
}

func (r *Redis) envLock(env record.EnvKey, s string, err error, op string) (record.EnvLock, bool, error) {
	if errors.Is(err, redis.Nil) {
		return record.EnvLock{}, false, nil
	}
	if err != nil {
		return record.EnvLock{}, false, r.fail(op, err)
	}
	var l record.EnvLock
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return record.EnvLock{}, false, fmt.Errorf("store: lock of %s: %w", env, err)
	}
	return l, true, nil
}

// PutPreview stores p, replacing the preview of the same pull request.
func (r *Redis) PutPreview(ctx context.Context, p record.Preview) error {
	if err := validatePreview(p.Repo, p.Number); err != nil {
		return err
	}
	p.UpdatedAt = p.UpdatedAt.UTC()
	blob, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := r.client.HSet(ctx, r.key("previews"), previewField(p.Repo, p.Number), blob).Err(); err != nil {
		return r.fail("put preview", err)
	}
	return nil
}

func (r *Redis) GetPreview(ctx context.Context, repo string, number int) (record.Preview, error) {
	if err := validatePreview(repo, number); err != nil {
		return record.Preview{}, err
	}
	s, err := r.client.HGet(ctx, r.key("previews"), previewField(repo, number)).Result()
	if errors.Is(err, redis.Nil) {
		return record.Preview{}, fmt.Errorf("%w: preview %s", record.ErrNotFound, previewField(repo, number))
	}
	if err != nil {
		return record.Preview{}, r.fail("get preview", err)
	}
	var p record.Preview
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return record.Preview{}, fmt.Errorf("store: preview %s: %w", previewField(repo, number), err)
	}
	return p, nil
}

// DeletePreview forgets a preview; nothing happens if there is none.
func (r *Redis) DeletePreview(ctx context.Context, repo string, number int) error {
	if err := validatePreview(repo, number); err != nil {
		return err
	}
	if err := r.client.HDel(ctx, r.key("previews"), previewField(repo, number)).Err(); err != nil {
		return r.fail("delete preview", err)
	}
	return nil
}

// ListPreviews returns every preview, by repository and number.
func (r *Redis) ListPreviews(ctx context.Context) ([]record.Preview, error) {
	all, err := r.client.HVals(ctx, r.key("previews")).Result()
	if err != nil {
		return nil, r.fail("list previews", err)
	}
	out := make([]record.Preview, 0, len(all))
	for _, s := range all {
		var p record.Preview
		if err := json.Unmarshal([]byte(s), &p); err != nil {
			return nil, fmt.Errorf("store: preview: %w", err)
		}
		out = append(out, p)
	}
	sortPreviews(out)
	return out, nil
}

func sortPreviews(ps []record.Preview) {
	slices.SortFunc(ps, func(a, b record.Preview) int {
		if c := strings.Compare(a.Repo, b.Repo); c != 0 {
			return c
		}
		return a.Number - b.Number
	})
}

// ListRepos returns the repositories with any deploy, release or
// environment lock, sorted.
func (r *Redis) ListRepos(ctx context.Context) ([]string, error) {
	repos, err := r.client.SMembers(ctx, r.key("repos")).Result()
	if err != nil {
		return nil, r.fail("list repos", err)
	}
	slices.Sort(repos)
	return repos, nil
}

// ListEnvironments returns repo's environments with any deploy, release or
// environment lock, sorted by name.
func (r *Redis) ListEnvironments(ctx context.Context, repo string) ([]record.EnvKey, error) {
	if err := record.ValidateRepo(repo); err != nil {
		return nil, err
	}
	names, err := r.client.SMembers(ctx, r.key("envs", repo)).Result()
	if err != nil {
		return nil, r.fail("list environments", err)
	}
	slices.Sort(names)
	out := make([]record.EnvKey, len(names))
	for i, n := range names {
		out[i] = record.EnvKey{Repo: repo, Name: n}
	}
	return out, nil
}

// fail wraps err, marking as ErrUnavailable everything that means Redis
// cannot serve us right now: network errors, timeouts, a closed client and
// the server's "try later" replies. Other server errors are bugs (a wrong
// type at a key, a script error) and stay plain. It mirrors queue's.
func (r *Redis) fail(op string, err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("store: redis %s: %w", op, err) // the caller gave up, Redis may be fine
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !errors.Is(err, redis.ErrClosed) {
		msg := strings.TrimPrefix(rerr.Error(), "ERR ")
		transient := false
		for _, p := range []string{"LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "OOM", "NOREPLICAS", "MISCONF"} {
			transient = transient || strings.HasPrefix(msg, p)
		}
		if !transient {
			return fmt.Errorf("store: redis %s: %w", op, err)
		}
	}
	return fmt.Errorf("store: redis %s: %w: %w", op, record.ErrUnavailable, err)
}

type redisScripts struct {
	acquire, renew, release       *redis.Script
	enqueue, cancel, take, finish *redis.Script
	trimDeploys                   *redis.Script
	recordRelease, listReleases   *redis.Script
	lockEnv, unlockEnv            *redis.Script
	appendAudit, auditRange       *redis.Script
}

func newRedisScripts() redisScripts {
	return redisScripts{
		acquire:       redis.NewScript(acquireLua),
		renew:         redis.NewScript(lockHelpers + renewLua),
		release:       redis.NewScript(lockHelpers + releaseLua),
		enqueue:       redis.NewScript(enqueueLua),
		cancel:        redis.NewScript(cancelLua),
		take:          redis.NewScript(lockHelpers + takeLua),
		finish:        redis.NewScript(lockHelpers + finishLua),
		trimDeploys:   redis.NewScript(trimDeploysLua),
		recordRelease: redis.NewScript(recordReleaseLua),
		listReleases:  redis.NewScript(listReleasesLua),
		lockEnv:       redis.NewScript(lockEnvLua),
		unlockEnv:     redis.NewScript(unlockEnvLua),
		appendAudit:   redis.NewScript(appendAuditLua),
		auditRange:    redis.NewScript(auditRangeLua),
	}
}

// The fence counter is never deleted or expired, so tokens keep growing
// across every holder, restart and release.
//
// KEYS: lock, fence. ARGV: holder, ttl ms. Returns the token, or 0 when
// the lock is held.
// KEYS: lock, fence. ARGV: holder, ttl ms, attempt. The attempt (random,
// one per AcquireLock call) makes the script safe to run twice: go-redis
// sends a command again after a network error, and when Redis had run the
// first one (killed before it answered, its AOF fsynced) the second found
// the lock taken by this very call and said "someone else holds it". The
// deploy then waited for a holder that did not exist (the chaos test found
// it). The value stays "token:holder…", which the other scripts parse.
const acquireLua = `
local v = redis.call('GET', KEYS[1])
if v then
  local t, a = string.match(v, '^(%d+):.*#([^#]*)$')
  if a and a == ARGV[3] then return tonumber(t) end
  return 0
end
local t = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], t .. ':' .. ARGV[1] .. '#' .. ARGV[3], 'PX', ARGV[2])
return t
`

// Tokens compare as decimal strings, both written by Go's strconv.
const lockHelpers = `
local function held(lock, token)
  local v = redis.call('GET', lock)
  return v and string.match(v, '^(%d+):') == token
end
`

// KEYS: lock. ARGV: token, ttl ms.
const renewLua = `
if not held(KEYS[1], ARGV[1]) then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`

// KEYS: lock. ARGV: token.
const releaseLua = `
if held(KEYS[1], ARGV[1]) then redis.call('DEL', KEYS[1]) end
return 1
`

// The same decision as enqueue() in store.go.
//
// KEYS: pending, running. ARGV: deploy id, its CreatedAt in unix µs.
// Returns the superseded ids.
const enqueueLua = `
local id, at = ARGV[1], tonumber(ARGV[2])
local rid = redis.call('HGET', KEYS[2], 'id')
local pid = redis.call('HGET', KEYS[1], 'id')
if rid == id or pid == id then return {} end
if rid and at < tonumber(redis.call('HGET', KEYS[2], 'at')) then return {id} end
if pid and at < tonumber(redis.call('HGET', KEYS[1], 'at')) then return {id} end
redis.call('HSET', KEYS[1], 'id', id, 'at', ARGV[2])
if pid then return {pid} end
return {}
`

// KEYS: pending. ARGV: deploy id. Returns 1 if it was pending.
const cancelLua = `
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`

// KEYS: lock, pending, running. ARGV: token.
// Returns {-1} lease lost, {-2, running id}, {0} nothing pending, {1, id}.
const takeLua = `
if not held(KEYS[1], ARGV[1]) then return {-1} end
local rid = redis.call('HGET', KEYS[3], 'id')
if rid then return {-2, rid} end
local p = redis.call('HMGET', KEYS[2], 'id', 'at')
if not p[1] then return {0} end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[3], 'id', p[1], 'at', p[2], 'token', ARGV[1])
return {1, p[1]}
`

// KEYS: lock, running. ARGV: token, deploy id. Returns 0 lease lost.
const finishLua = `
if not held(KEYS[1], ARGV[1]) then return 0 end
if redis.call('HGET', KEYS[2], 'id') == ARGV[2] then redis.call('DEL', KEYS[2]) end
return 1
`

// Drops the oldest deploys beyond the limit, but not a pending or running
// one. The record keys are built here from ARGV[2]; fine on one Redis, not
// on a cluster.
//
// KEYS: deploys index, pending, running. ARGV: keep, record key prefix.
const trimDeploysLua = `
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
if extra <= 0 then return 0 end
local p = redis.call('HGET', KEYS[2], 'id')
local r = redis.call('HGET', KEYS[3], 'id')
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, extra - 1)) do
  if id ~= p and id ~= r then
    redis.call('ZREM', KEYS[1], id)
    redis.call('DEL', ARGV[2] .. id)
  end
end
return 1
`

// KEYS: releases, successes, release data, seq, repos, envs.
// ARGV: deploy id, release JSON, success (1/0), keep, repo, env name.
const recordReleaseLua = `
local id = ARGV[1]
local seq = redis.call('ZSCORE', KEYS[1], id)
if not seq then seq = redis.call('INCR', KEYS[4]) end
redis.call('ZADD', KEYS[1], seq, id)
redis.call('HSET', KEYS[3], id, ARGV[2])
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[2], seq, id)
else
  redis.call('ZREM', KEYS[2], id)
end
redis.call('SADD', KEYS[5], ARGV[5])
redis.call('SADD', KEYS[6], ARGV[6])
local keep = tonumber(ARGV[4])
local extra = redis.call('ZCARD', KEYS[2]) - keep
if extra > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, extra - 1)) do
    redis.call('ZREM', KEYS[2], old)
    redis.call('ZREM', KEYS[1], old)
    redis.call('HDEL', KEYS[3], old)
  end
end
extra = redis.call('ZCARD', KEYS[1]) - keep
if extra > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[1], 0, extra - 1)) do
    if not redis.call('ZSCORE', KEYS[2], old) then
      redis.call('ZREM', KEYS[1], old)
      redis.call('HDEL', KEYS[3], old)
    end
  end
end
return 1
`

// KEYS: index zset, release data. ARGV: n (-1: all). Newest first.
const listReleasesLua = `
local n = tonumber(ARGV[1])
local ids = redis.call('ZREVRANGE', KEYS[1], 0, n < 0 and -1 or n - 1)
local out = {}
for _, id in ipairs(ids) do
  local v = redis.call('HGET', KEYS[2], id)
  if v then out[#out + 1] = v end
end
return out
`

// KEYS: env lock, repos, envs. ARGV: lock JSON, repo, env name.
// Returns {1 if newly locked, the lock in force}.
const lockEnvLua = `
local v = redis.call('GET', KEYS[1])
if v then return {0, v} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
return {1, ARGV[1]}
`

// KEYS: env lock. Returns the lock removed, or nil.
const unlockEnvLua = `
local v = redis.call('GET', KEYS[1])
if v then redis.call('DEL', KEYS[1]) end
return v
`
