package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/shipbot/shipbot/internal/store/record"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Embedded is the single-process store: a bbolt file of its own (the queue
// keeps another). Every write is one transaction, committed (fsync) before
// it returns.
//
// Deploy lock expiry uses the monotonic clock while the process runs, so a
// wall-clock step cannot stretch or cut a lease. The file also keeps each
// lock's wall-clock expiry and TTL; on open, what is left of a lock is
// min(expiry - now, TTL), so a clock that went back while the process was
// down cannot make a lock outlive its TTL.
type Embedded struct {
	db *bolt.DB

	// mu guards closed and deadlines, and is held across every transaction
	// that reads or writes a deploy lock, so the file and deadlines agree.
	mu        sync.Mutex
	closed    bool
	deadlines map[string]deadline // EnvKey.String() -> the live lock's end
	// claimsSwept is when Claim last dropped expired claims.
	claimsSwept time.Time
}

type deadline struct {
	token int64
	at    time.Time // carries a monotonic reading
}

// lockRecord is a deploy lock as the file keeps it.
type lockRecord struct {
	Token   int64  `json:"token"`
	Holder  string `json:"holder"`
	Expires int64  `json:"expires"` // wall clock, unix ns
	TTL     int64  `json:"ttl"`     // ns
}

// Buckets. Those marked "per env" hold one nested bucket per
// EnvKey.String() (per repository for repos).
var (
	bucketDeploys     = []byte("deploys")      // id -> Deploy
	bucketDeployIndex = []byte("deploy-index") // per env: CreatedAt µs + id -> nothing
	bucketRepos       = []byte("repos")        // per repo: env name -> nothing
	bucketFences      = []byte("fences")       // env -> last token (uint64)
	bucketLocks       = []byte("locks")        // env -> lockRecord
	bucketPending     = []byte("pending")      // env -> slot
	bucketRunning     = []byte("running")      // env -> slot
	bucketReleases    = []byte("releases")     // per env: "order" seq -> Release, "ids" id -> seq
	bucketEnvLocks    = []byte("env-locks")    // env -> EnvLock
	bucketPreviews    = []byte("previews")     // repo NUL number -> Preview
	// and the claims' and installations' (claims_embedded.go)
	// and the audit log's (audit_embedded.go)

	bucketOrder = []byte("order")
	bucketIDs   = []byte("ids")
)

// OpenEmbedded opens (creating it if needed) the store file at path. A
// second process (or a second OpenEmbedded) on the same file fails after a
// second instead of waiting for the first to let go.
func OpenEmbedded(path string) (*Embedded, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("store: open %s: %w: the file is in use by another process (two bots on one DATA_DIR?)", path, record.ErrUnavailable)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w: %w", path, record.ErrUnavailable, err)
	}
	e := &Embedded{db: db, deadlines: make(map[string]deadline)}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketDeploys, bucketDeployIndex, bucketRepos, bucketFences, bucketLocks, bucketPending, bucketRunning, bucketReleases, bucketEnvLocks, bucketPreviews, bucketAudit, bucketAuditRepos, bucketClaims, bucketInstallations} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		now := time.Now()
		return tx.Bucket(bucketLocks).ForEach(func(k, v []byte) error {
			var rec lockRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("lock %s: %w", k, err)
			}
			left := min(time.Duration(rec.Expires-now.UnixNano()), time.Duration(rec.TTL))
			if left > 0 {
				e.deadlines[string(k)] = deadline{token: rec.Token, at: now.Add(left)}
			}
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w: %w", path, record.ErrUnavailable, err)
	}
	return e, nil
}

// Close waits for transactions in flight and releases the file.
func (e *Embedded) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	return e.db.Close()
}

var errClosed = errors.New("store: closed")

// update runs fn in a write transaction. An error fn returns is the
// caller's (validation, not found, lock lost) and comes back as is; any
// other failure is the file's, and unavailable.
func (e *Embedded) update(ctx context.Context, op string, fn func(tx *bolt.Tx) error) error {
	return e.tx(ctx, op, true, fn)
}

func (e *Embedded) view(ctx context.Context, op string, fn func(tx *bolt.Tx) error) error {
	return e.tx(ctx, op, false, fn)
}

func (e *Embedded) tx(ctx context.Context, op string, write bool, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return e.fail(op, errClosed)
	}
	var inner error
	run := func(tx *bolt.Tx) error { inner = fn(tx); return inner }
	var err error
	if write {
		err = e.db.Update(run)
	} else {
		err = e.db.View(run)
	}
	if inner != nil {
		return inner
	}
	return e.fail(op, err)
}

// lockedUpdate is update with e.mu held throughout, for whatever reads or
// writes deploy locks; after is called, still under e.mu, once the
// transaction committed.
func (e *Embedded) lockedUpdate(ctx context.Context, op string, fn func(tx *bolt.Tx, now time.Time) error, after func()) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return e.fail(op, errClosed)
	}
	now := time.Now()
	var inner error
	err := e.db.Update(func(tx *bolt.Tx) error { inner = fn(tx, now); return inner })
	if inner != nil {
		return inner
	}
	if err != nil {
		return e.fail(op, err)
	}
	if after != nil {
		after()
	}
	return nil
}

func (e *Embedded) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("store: embedded %s: %w: %w", op, record.ErrUnavailable, err)
}

func (e *Embedded) PutDeploy(ctx context.Context, d record.Deploy) error {
	return putDeploy(ctx, e.writeDeploy, d)
}

// UpdateDeploy lets fn change the deploy inside one transaction. An error
// from fn is returned as is and nothing is written. fn may not change ID
// or Env.
func (e *Embedded) UpdateDeploy(ctx context.Context, id string, fn func(*record.Deploy) error) (record.Deploy, error) {
	return updateDeploy(ctx, e.writeDeploy, id, fn)
}

func (e *Embedded) writeDeploy(ctx context.Context, op, id string, next func(old *record.Deploy) (record.Deploy, error)) (record.Deploy, error) {
	var out record.Deploy
	err := e.update(ctx, op, func(tx *bolt.Tx) error {
		deploys := tx.Bucket(bucketDeploys)
		var old *record.Deploy
		if v := deploys.Get([]byte(id)); v != nil {
			old = new(record.Deploy)
			if err := json.Unmarshal(v, old); err != nil {
				return fmt.Errorf("store: deploy %s: %w", id, err)
			}
		}
		d, err := next(old)
		if err != nil {
			return err
		}
		if err := validateDeploy(&d); err != nil {
			return err
		}
		normalizeDeploy(&d)
		blob, err := json.Marshal(d)
		if err != nil {
			return err
		}
		index, err := tx.Bucket(bucketDeployIndex).CreateBucketIfNotExists([]byte(d.Env.String()))
		if err != nil {
			return err
		}
		if old != nil {
			if err := index.Delete(deployIndexKey(*old)); err != nil {
				return err
			}
		}
		if err := deploys.Put([]byte(d.ID), blob); err != nil {
			return err
		}
		if err := index.Put(deployIndexKey(d), nil); err != nil {
			return err
		}
		if err := registerEnv(tx, d.Env); err != nil {
			return err
		}
		out = d
		return trimDeploys(tx, d.Env, index)
	})
	if err != nil {
		return record.Deploy{}, err
	}
	return out, nil
}

// deployIndexKey orders by CreatedAt in µs (the resolution Redis keeps),
// then by id; the sign bit is flipped so times before 1970 sort first.
func deployIndexKey(d record.Deploy) []byte {
	k := binary.BigEndian.AppendUint64(nil, uint64(micros(d.CreatedAt))^(1<<63))
	return append(k, d.ID...)
}

func trimDeploys(tx *bolt.Tx, env record.EnvKey, index *bolt.Bucket) error {
	var keys [][]byte
	err := index.ForEach(func(k, _ []byte) error { keys = append(keys, bytes.Clone(k)); return nil })
	if err != nil {
		return err
	}
	extra := len(keys) - record.DeploysKept
	if extra <= 0 {
		return nil
	}
	p, _ := getSlot(tx, bucketPending, env)
	r, _ := getSlot(tx, bucketRunning, env)
	for _, k := range keys[:extra] {
		id := string(k[8:])
		if (p != nil && p.ID == id) || (r != nil && r.ID == id) {
			continue
		}
		if err := index.Delete(k); err != nil {
			return err
		}
		if err := tx.Bucket(bucketDeploys).Delete([]byte(id)); err != nil {
			return err
		}
	}
	return nil
}

func registerEnv(tx *bolt.Tx, env record.EnvKey) error {
	b, err := tx.Bucket(bucketRepos).CreateBucketIfNotExists([]byte(env.Repo))
	if err != nil {
		return err
	}
	return b.Put([]byte(env.Name), nil)
}

func (e *Embedded) GetDeploy(ctx context.Context, id string) (record.Deploy, error) {
	var d record.Deploy
	err := e.view(ctx, "get deploy", func(tx *bolt.Tx) error {
		return getDeploy(tx, id, &d)
	})
	return d, err
}

func getDeploy(tx *bolt.Tx, id string, d *record.Deploy) error {
	v := tx.Bucket(bucketDeploys).Get([]byte(id))
	if v == nil {
		return fmt.Errorf("%w: deploy %s", record.ErrNotFound, id)
	}
	if err := json.Unmarshal(v, d); err != nil {
		return fmt.Errorf("store: deploy %s: %w", id, err)
	}
	return nil
}

// ListDeploys returns up to n deploys of env, newest (by CreatedAt) first.
func (e *Embedded) ListDeploys(ctx context.Context, env record.EnvKey, n int) ([]record.Deploy, error) {
	if err := env.Validate(); err != nil || n <= 0 {
		return nil, err
	}
	var out []record.Deploy
	err := e.view(ctx, "list deploys", func(tx *bolt.Tx) error {
		index := tx.Bucket(bucketDeployIndex).Bucket([]byte(env.String()))
		if index == nil {
			return nil
		}
		c := index.Cursor()
		for k, _ := c.Last(); k != nil && len(out) < n; k, _ = c.Prev() {
			var d record.Deploy
			if err := getDeploy(tx, string(k[8:]), &d); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// held reports whether token is env's live deploy lock. Call under e.mu.
func (e *Embedded) held(tx *bolt.Tx, env string, token int64, now time.Time) bool {
	d, ok := e.deadlines[env]
	return ok && d.token == token && now.Before(d.at) && tx.Bucket(bucketLocks).Get([]byte(env)) != nil
}

// AcquireLock takes env's deploy lock for ttl if nobody holds it (the holder
// included: it is not reentrant). ok is false when someone does.
func (e *Embedded) AcquireLock(ctx context.Context, env record.EnvKey, holder string, ttl time.Duration) (record.Lease, bool, error) {
	if err := validateAcquire(env, holder, ttl); err != nil {
		return record.Lease{}, false, err
	}
	key := env.String()
	var lease record.Lease
	var until time.Time
	err := e.lockedUpdate(ctx, "acquire lock", func(tx *bolt.Tx, now time.Time) error {
		if d, ok := e.deadlines[key]; ok && now.Before(d.at) {
			return nil
		}
		fences := tx.Bucket(bucketFences)
		var token uint64
		if v := fences.Get([]byte(key)); len(v) == 8 {
			token = binary.BigEndian.Uint64(v)
		}
		token++
		if err := fences.Put([]byte(key), binary.BigEndian.AppendUint64(nil, token)); err != nil {
			return err
		}
		lease = record.Lease{Env: env, Holder: holder, Token: int64(token)}
		until = now.Add(ttl)
		return putLock(tx, key, lease, now, ttl)
	}, func() {
		if lease.Token != 0 {
			e.deadlines[key] = deadline{token: lease.Token, at: until}
		}
	})
	if err != nil || lease.Token == 0 {
		return record.Lease{}, false, err
	}
	return lease, true, nil
}

func putLock(tx *bolt.Tx, key string, l record.Lease, now time.Time, ttl time.Duration) error {
	blob, err := json.Marshal(lockRecord{Token: l.Token, Holder: l.Holder, Expires: now.Add(ttl).UnixNano(), TTL: int64(ttl)})
	if err != nil {
		return err
	}
	return tx.Bucket(bucketLocks).Put([]byte(key), blob)
}

// RenewLock makes the lease last ttl from now. ErrLockLost when it expired
// or was released.
func (e *Embedded) RenewLock(ctx context.Context, l record.Lease, ttl time.Duration) error {
	if err := validateAcquire(l.Env, l.Holder, ttl); err != nil {
		return err
	}
	if err := validateLease(l, l.Env); err != nil {
		return err
	}
	key := l.Env.String()
	var until time.Time
	return e.lockedUpdate(ctx, "renew lock", func(tx *bolt.Tx, now time.Time) error {
		if !e.held(tx, key, l.Token, now) {
			return fmt.Errorf("%w: %s (token %d)", record.ErrLockLost, l.Env, l.Token)
		}
		until = now.Add(ttl)
		return putLock(tx, key, l, now, ttl)
	}, func() { e.deadlines[key] = deadline{token: l.Token, at: until} })
}

// ReleaseLock frees the lock if l still holds it, and does nothing if not.
func (e *Embedded) ReleaseLock(ctx context.Context, l record.Lease) error {
	if err := validateLease(l, l.Env); err != nil {
		return nil // nothing this lease could hold
	}
	key := l.Env.String()
	released := false
	return e.lockedUpdate(ctx, "release lock", func(tx *bolt.Tx, now time.Time) error {
		if !e.held(tx, key, l.Token, now) {
			return nil
		}
		released = true
		return tx.Bucket(bucketLocks).Delete([]byte(key))
	}, func() {
		if released {
			delete(e.deadlines, key)
		}
	})
}

// Enqueue makes deployID env's pending deploy unless a newer one (by
// CreatedAt) is pending or running; it returns the ids that are no longer
// queued because of it: the one it replaced, or deployID itself when it
// lost. The running deploy is never superseded. Enqueueing the pending or
// running deploy again changes nothing. The deploy must exist (PutDeploy).
func (e *Embedded) Enqueue(ctx context.Context, env record.EnvKey, deployID string) ([]string, error) {
	if err := env.Validate(); err != nil {
		return nil, err
	}
	var superseded []string
	err := e.update(ctx, "enqueue", func(tx *bolt.Tx) error {
		var d record.Deploy
		if err := getDeploy(tx, deployID, &d); err != nil {
			return err
		}
		if d.Env != env {
			return fmt.Errorf("store: enqueue deploy %s: it belongs to %s, not %s", deployID, d.Env, env)
		}
		pending, err := getSlot(tx, bucketPending, env)
		if err != nil {
			return err
		}
		running, err := getSlot(tx, bucketRunning, env)
		if err != nil {
			return err
		}
		var next *slot
		next, superseded = enqueue(pending, running, deployID, micros(d.CreatedAt))
		if next == nil {
			return nil
		}
		return putSlot(tx, bucketPending, env, next)
	})
	return superseded, err
}

func getSlot(tx *bolt.Tx, bucket []byte, env record.EnvKey) (*slot, error) {
	v := tx.Bucket(bucket).Get([]byte(env.String()))
	if v == nil {
		return nil, nil
	}
	s := new(slot)
	if err := json.Unmarshal(v, s); err != nil {
		return nil, fmt.Errorf("store: %s slot of %s: %w", bucket, env, err)
	}
	return s, nil
}

func putSlot(tx *bolt.Tx, bucket []byte, env record.EnvKey, s *slot) error {
	blob, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put([]byte(env.String()), blob)
}

// CancelPending takes deployID out of env's pending slot; false if it was
// not there (already taken, superseded or cancelled).
func (e *Embedded) CancelPending(ctx context.Context, env record.EnvKey, deployID string) (bool, error) {
	if err := env.Validate(); err != nil {
		return false, err
	}
	cancelled := false
	err := e.update(ctx, "cancel pending", func(tx *bolt.Tx) error {
		pending, err := getSlot(tx, bucketPending, env)
		if err != nil || pending == nil || pending.ID != deployID {
			return err
		}
		cancelled = true
		return tx.Bucket(bucketPending).Delete([]byte(env.String()))
	})
	return cancelled, err
}

// Pending is the deploy next in line for env.
func (e *Embedded) Pending(ctx context.Context, env record.EnvKey) (string, bool, error) {
	return e.slotID(ctx, bucketPending, env)
}

// Running is the deploy in env's running slot. A deploy there while nobody
// holds the lock is an orphan of a holder that died.
func (e *Embedded) Running(ctx context.Context, env record.EnvKey) (string, bool, error) {
	return e.slotID(ctx, bucketRunning, env)
}

func (e *Embedded) slotID(ctx context.Context, bucket []byte, env record.EnvKey) (string, bool, error) {
	if err := env.Validate(); err != nil {
		return "", false, err
	}
	var s *slot
	err := e.view(ctx, string(bucket), func(tx *bolt.Tx) error {
		var err error
		s, err = getSlot(tx, bucket, env)
		return err
	})
	if err != nil || s == nil {
		return "", false, err
	}
	return s.ID, true, nil
}

// TakePending moves env's pending deploy to the running slot, if the lease
// is still env's lock (checked in the same transaction). ok is false when
// nothing is pending; ErrBusy when the running slot is taken; ErrLockLost
// when the lease is not current.
func (e *Embedded) TakePending(ctx context.Context, env record.EnvKey, l record.Lease) (string, bool, error) {
	if err := validateLease(l, env); err != nil {
		return "", false, err
	}
	var id string
	err := e.lockedUpdate(ctx, "take pending", func(tx *bolt.Tx, now time.Time) error {
		if !e.held(tx, env.String(), l.Token, now) {
			return fmt.Errorf("%w: %s (token %d)", record.ErrLockLost, env, l.Token)
		}
		running, err := getSlot(tx, bucketRunning, env)
		if err != nil {
			return err
		}
		if running != nil {
			return fmt.Errorf("%w: %s runs deploy %s", record.ErrBusy, env, running.ID)
		}
		pending, err := getSlot(tx, bucketPending, env)
		if err != nil || pending == nil {
			return err
		}
		if err := tx.Bucket(bucketPending).Delete([]byte(env.String())); err != nil {
			return err
		}
		id = pending.ID
		return putSlot(tx, bucketRunning, env, &slot{ID: pending.ID, At: pending.At, Token: l.Token})
	}, nil)
	if err != nil || id == "" {
		return "", false, err
	}
	return id, true, nil
}

// FinishRunning empties env's running slot if it holds deployID, under a
// current lease (not necessarily the one that took it: a new holder
// finishes an orphan). A slot holding anything else is left alone, so a
// repeated call is harmless.
func (e *Embedded) FinishRunning(ctx context.Context, env record.EnvKey, l record.Lease, deployID string) error {
	if err := validateLease(l, env); err != nil {
		return err
	}
	return e.lockedUpdate(ctx, "finish running", func(tx *bolt.Tx, now time.Time) error {
		if !e.held(tx, env.String(), l.Token, now) {
			return fmt.Errorf("%w: %s (token %d)", record.ErrLockLost, env, l.Token)
		}
		running, err := getSlot(tx, bucketRunning, env)
		if err != nil || running == nil || running.ID != deployID {
			return err
		}
		return tx.Bucket(bucketRunning).Delete([]byte(env.String()))
	}, nil)
}

// RecordRelease adds rel as env's newest release or, when a release of the
// same DeployID is recorded, replaces that one where it stands (a repeated
// step records once; a release can later be marked rolled-back).
func (e *Embedded) RecordRelease(ctx context.Context, env record.EnvKey, rel record.Release) error {
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
	return e.update(ctx, "record release", func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketReleases).CreateBucketIfNotExists([]byte(env.String()))
		if err != nil {
			return err
		}
		order, err := b.CreateBucketIfNotExists(bucketOrder)
		if err != nil {
			return err
		}
		ids, err := b.CreateBucketIfNotExists(bucketIDs)
		if err != nil {
			return err
		}
		seq := bytes.Clone(ids.Get([]byte(rel.DeployID)))
		if seq == nil {
			n, err := order.NextSequence()
			if err != nil {
				return err
			}
			seq = binary.BigEndian.AppendUint64(nil, n)
			if err := ids.Put([]byte(rel.DeployID), seq); err != nil {
				return err
			}
		}
		if err := order.Put(seq, blob); err != nil {
			return err
		}
		if err := registerEnv(tx, env); err != nil {
			return err
		}
		return trimReleases(order, ids)
	})
}

// trimReleases keeps the newest ReleasesKept releases and the newest
// ReleasesKept successes, as recordReleaseLua does.
func trimReleases(order, ids *bolt.Bucket) error {
	type entry struct {
		seq     []byte
		id      string
		success bool
	}
	var all []entry // oldest first
	successes := 0
	err := order.ForEach(func(k, v []byte) error {
		var r record.Release
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		all = append(all, entry{seq: bytes.Clone(k), id: r.DeployID, success: r.Result == record.ResultSuccess})
		if r.Result == record.ResultSuccess {
			successes++
		}
		return nil
	})
	if err != nil {
		return err
	}
	drop := func(x entry) error {
		if err := order.Delete(x.seq); err != nil {
			return err
		}
		return ids.Delete([]byte(x.id))
	}
	extraSuccesses := successes - record.ReleasesKept
	kept := all[:0:0]
	for _, x := range all {
		if x.success && extraSuccesses > 0 {
			extraSuccesses--
			if err := drop(x); err != nil {
				return err
			}
			continue
		}
		kept = append(kept, x)
	}
	for _, x := range kept[:max(len(kept)-record.ReleasesKept, 0)] {
		if !x.success {
			if err := drop(x); err != nil {
				return err
			}
		}
	}
	return nil
}

// releases reads up to n (all: -1) of env's releases, newest first, only
// successes if successOnly.
func (e *Embedded) releases(ctx context.Context, env record.EnvKey, n int, successOnly bool) ([]record.Release, error) {
	var out []record.Release
	err := e.view(ctx, "releases", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketReleases).Bucket([]byte(env.String()))
		if b == nil {
			return nil
		}
		c := b.Bucket(bucketOrder).Cursor()
		for k, v := c.Last(); k != nil && (n < 0 || len(out) < n); k, v = c.Prev() {
			var r record.Release
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("store: release in %s: %w", env, err)
			}
			if !successOnly || r.Result == record.ResultSuccess {
				out = append(out, r)
			}
		}
		return nil
	})
	return out, err
}

// Releases returns up to n releases of env, newest first.
func (e *Embedded) Releases(ctx context.Context, env record.EnvKey, n int) ([]record.Release, error) {
	if err := env.Validate(); err != nil || n <= 0 {
		return nil, err
	}
	return e.releases(ctx, env, n, false)
}

// successes lists env's successful releases, newest first; n < 0: all.
func (e *Embedded) successes(ctx context.Context, env record.EnvKey, n int) ([]record.Release, error) {
	return e.releases(ctx, env, n, true)
}

// CurrentRelease is env's newest successful release.
func (e *Embedded) CurrentRelease(ctx context.Context, env record.EnvKey) (record.Release, error) {
	return currentRelease(ctx, env, e.successes)
}

// PreviousRelease is what /rollback puts back: the newest success before
// the current one that runs another SHA.
func (e *Embedded) PreviousRelease(ctx context.Context, env record.EnvKey) (record.Release, error) {
	return previousReleaseOf(ctx, env, e.successes)
}

// FindRelease is the newest successful release of env whose SHA is ref or
// starts with it (7 hex digits at least).
func (e *Embedded) FindRelease(ctx context.Context, env record.EnvKey, ref string) (record.Release, error) {
	return findReleaseOf(ctx, env, ref, e.successes)
}

// LockEnvironment locks env for by with reason; if it is locked already,
// it returns that lock and false and changes nothing.
func (e *Embedded) LockEnvironment(ctx context.Context, env record.EnvKey, by, reason string) (record.EnvLock, bool, error) {
	if err := env.Validate(); err != nil {
		return record.EnvLock{}, false, err
	}
	var l record.EnvLock
	created := false
	err := e.update(ctx, "lock environment", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEnvLocks)
		if v := b.Get([]byte(env.String())); v != nil {
			return json.Unmarshal(v, &l)
		}
		l, created = record.EnvLock{By: by, Reason: reason, At: time.Now().UTC()}, true
		blob, err := json.Marshal(l)
		if err != nil {
			return err
		}
		if err := b.Put([]byte(env.String()), blob); err != nil {
			return err
		}
		return registerEnv(tx, env)
	})
	if err != nil {
		return record.EnvLock{}, false, err
	}
	return l, created, nil
}

// UnlockEnvironment removes env's lock and returns it; false if there was
// none.
func (e *Embedded) UnlockEnvironment(ctx context.Context, env record.EnvKey) (record.EnvLock, bool, error) {
	if err := env.Validate(); err != nil {
		return record.EnvLock{}, false, err
	}
	var l record.EnvLock
	found := false
	err := e.update(ctx, "unlock environment", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEnvLocks)
		v := b.Get([]byte(env.String()))
		if v == nil {
			return nil
		}
		if err := json.Unmarshal(v, &l); err != nil {
			return err
		}
		found = true
		return b.Delete([]byte(env.String()))
	})
	if err != nil || !found {
		return record.EnvLock{}, false, err
	}
	return l, true, nil
}

// EnvironmentLock is env's lock; false if it is not locked.
func (e *Embedded) EnvironmentLock(ctx context.Context, env record.EnvKey) (record.EnvLock, bool, error) {
	if err := env.Validate(); err != nil {
		return record.EnvLock{}, false, err
	}
	var l record.EnvLock
	found := false
	err := e.view(ctx, "environment lock", func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketEnvLocks).Get([]byte(env.String()))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &l)
	})
	if err != nil || !found {
		return record.EnvLock{}, false, err
	}
	return l, true, nil
}

// previewKey sorts by repository, then number.
func previewKey(repo string, number int) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(repo), 0), uint64(number))
}

// PutPreview stores p, replacing the preview of the same pull request.
func (e *Embedded) PutPreview(ctx context.Context, p record.Preview) error {
	if err := validatePreview(p.Repo, p.Number); err != nil {
		return err
	}
	p.UpdatedAt = p.UpdatedAt.UTC()
	blob, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return e.update(ctx, "put preview", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPreviews).Put(previewKey(p.Repo, p.Number), blob)
	})
}

func (e *Embedded) GetPreview(ctx context.Context, repo string, number int) (record.Preview, error) {
	if err := validatePreview(repo, number); err != nil {
		return record.Preview{}, err
	}
	var p record.Preview
	err := e.view(ctx, "get preview", func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketPreviews).Get(previewKey(repo, number))
		if v == nil {
			return fmt.Errorf("%w: preview %s", record.ErrNotFound, previewField(repo, number))
		}
		return json.Unmarshal(v, &p)
	})
	return p, err
}

// DeletePreview forgets a preview; nothing happens if there is none.
func (e *Embedded) DeletePreview(ctx context.Context, repo string, number int) error {
	if err := validatePreview(repo, number); err != nil {
		return err
	}
	return e.update(ctx, "delete preview", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPreviews).Delete(previewKey(repo, number))
	})
}

// ListPreviews returns every preview, by repository and number.
func (e *Embedded) ListPreviews(ctx context.Context) ([]record.Preview, error) {
	var out []record.Preview
	err := e.view(ctx, "list previews", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPreviews).ForEach(func(_, v []byte) error {
			var p record.Preview
			if err := json.Unmarshal(v, &p); err != nil {
				return err
			}
			out = append(out, p)
			return nil
		})
	})
	sortPreviews(out)
	return out, err
}

// ListRepos returns the repositories with any deploy, release or
// environment lock, sorted.
func (e *Embedded) ListRepos(ctx context.Context) ([]string, error) {
	var out []string
	err := e.view(ctx, "list repos", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRepos).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	slices.Sort(out)
	return out, err
}

// ListEnvironments returns repo's environments with any deploy, release or
// environment lock, sorted by name.
func (e *Embedded) ListEnvironments(ctx context.Context, repo string) ([]record.EnvKey, error) {
	if err := record.ValidateRepo(repo); err != nil {
		return nil, err
	}
	var out []record.EnvKey
	err := e.view(ctx, "list environments", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRepos).Bucket([]byte(repo))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			out = append(out, record.EnvKey{Repo: repo, Name: string(k)})
			return nil
		})
	})
	return out, err
}
