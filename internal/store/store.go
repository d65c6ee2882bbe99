// Package store is what shipbot remembers about deploys: the deploy lock of
// each environment, the deploy records, the pending and running slots that
// give one deploy per environment with supersession, the release history,
// environment locks (/lock), previews, which repositories and
// environments it has seen, the audit log (audit.go: append-only,
// newest first, 400 days), claims that let one of several deliveries of
// the same thing act, and the App's installations (claims.go).
//
// Two implementations keep the same contract and pass one conformance
// suite: Redis, which several processes may share, and Embedded, a bbolt
// file for a single process. Consumers (the engine, handlers, the
// dashboard) declare the small interfaces they need over these types.
//
// Deploy records are history, the slots are scheduling: Enqueue,
// TakePending and FinishRunning move deploy ids between the slots and never
// touch a record's State; the engine does that with UpdateDeploy.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shipbot/shipbot/internal/store/record"
)

var (
	kinds   = []string{record.KindPush, record.KindComment, record.KindRollback, record.KindPreview, record.KindRepair}
	states  = []string{record.StateQueued, record.StateWaiting, record.StateLocked, record.StateRunning, record.StateSuccess, record.StateFailure, record.StateError, record.StateSuperseded, record.StateCancelled}
	results = []string{record.ResultSuccess, record.ResultFailure, record.ResultRolledBack}
)

// writeDeployFunc is the primitive each store implements for deploy
// records: read the record (nil when absent), let next decide what to
// write, write it atomically. PutDeploy and UpdateDeploy are the same on
// both stores on top of it.
type writeDeployFunc func(ctx context.Context, op, id string, next func(old *record.Deploy) (record.Deploy, error)) (record.Deploy, error)

func putDeploy(ctx context.Context, write writeDeployFunc, d record.Deploy) error {
	if d.CreatedAt.IsZero() {
		d.CreatedAt = time.Now()
	}
	_, err := write(ctx, "put deploy", d.ID, func(old *record.Deploy) (record.Deploy, error) {
		if old != nil && old.Env != d.Env {
			return record.Deploy{}, fmt.Errorf("store: deploy %s belongs to %s, not %s", d.ID, old.Env, d.Env)
		}
		return d, nil
	})
	return err
}

func updateDeploy(ctx context.Context, write writeDeployFunc, id string, fn func(*record.Deploy) error) (record.Deploy, error) {
	return write(ctx, "update deploy", id, func(old *record.Deploy) (record.Deploy, error) {
		if old == nil {
			return record.Deploy{}, fmt.Errorf("%w: deploy %s", record.ErrNotFound, id)
		}
		return applyUpdate(*old, fn)
	})
}

// successesFunc lists an environment's successful releases, newest first
// (n < 0: all kept); the release queries below are the same on both stores
// on top of it.
type successesFunc func(ctx context.Context, env record.EnvKey, n int) ([]record.Release, error)

func currentRelease(ctx context.Context, env record.EnvKey, list successesFunc) (record.Release, error) {
	if err := env.Validate(); err != nil {
		return record.Release{}, err
	}
	rs, err := list(ctx, env, 1)
	if err != nil {
		return record.Release{}, err
	}
	if len(rs) == 0 {
		return record.Release{}, fmt.Errorf("%w: no successful release in %s", record.ErrNotFound, env)
	}
	return rs[0], nil
}

func previousReleaseOf(ctx context.Context, env record.EnvKey, list successesFunc) (record.Release, error) {
	if err := env.Validate(); err != nil {
		return record.Release{}, err
	}
	rs, err := list(ctx, env, -1)
	if err != nil {
		return record.Release{}, err
	}
	if p, ok := previousRelease(rs); ok {
		return p, nil
	}
	return record.Release{}, fmt.Errorf("%w: no successful release before the current one in %s", record.ErrNotFound, env)
}

func findReleaseOf(ctx context.Context, env record.EnvKey, ref string, list successesFunc) (record.Release, error) {
	if err := env.Validate(); err != nil {
		return record.Release{}, err
	}
	rs, err := list(ctx, env, -1)
	if err != nil {
		return record.Release{}, err
	}
	return findRelease(env, rs, ref)
}

func validateDeploy(d *record.Deploy) error {
	switch {
	case d.ID == "" || len(d.ID) > 200:
		return fmt.Errorf("store: deploy id %q: want 1 to 200 bytes", d.ID)
	case !oneOf(d.Kind, kinds):
		return fmt.Errorf("store: deploy %s: kind %q is not one of %s", d.ID, d.Kind, strings.Join(kinds, ", "))
	case !oneOf(d.State, states):
		return fmt.Errorf("store: deploy %s: state %q is not one of %s", d.ID, d.State, strings.Join(states, ", "))
	}
	if err := d.Env.Validate(); err != nil {
		return fmt.Errorf("store: deploy %s: %w", d.ID, err)
	}
	return nil
}

func validateRelease(r *record.Release) error {
	switch {
	case r.DeployID == "":
		return errors.New("store: release without a deploy id")
	case r.SHA == "":
		return fmt.Errorf("store: release %s: no SHA", r.DeployID)
	case !oneOf(r.Result, results):
		return fmt.Errorf("store: release %s: result %q is not one of %s", r.DeployID, r.Result, strings.Join(results, ", "))
	}
	return nil
}

func validateLease(l record.Lease, env record.EnvKey) error {
	if l.Env != env {
		return fmt.Errorf("store: lease is for %s, not %s", l.Env, env)
	}
	if l.Token <= 0 {
		return fmt.Errorf("%w: %s: not a lease from AcquireLock", record.ErrLockLost, env)
	}
	return env.Validate()
}

func validateAcquire(env record.EnvKey, holder string, ttl time.Duration) error {
	if holder == "" {
		return fmt.Errorf("store: lock %s: empty holder", env)
	}
	if ttl < time.Millisecond {
		return fmt.Errorf("store: lock %s: ttl %v is under a millisecond", env, ttl)
	}
	return env.Validate()
}

func validatePreview(repo string, number int) error {
	if err := record.ValidateRepo(repo); err != nil {
		return err
	}
	if number <= 0 {
		return fmt.Errorf("store: preview %s#%d: not a pull request number", repo, number)
	}
	return nil
}

func oneOf(s string, set []string) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}

// normalizeDeploy makes d what a read gives back: times in UTC without
// monotonic readings, the log cut to MaxLogTail.
func normalizeDeploy(d *record.Deploy) {
	d.CreatedAt, d.StartedAt, d.FinishedAt = d.CreatedAt.UTC(), d.StartedAt.UTC(), d.FinishedAt.UTC()
	d.CommittedAt = d.CommittedAt.UTC()
	d.Batches = normalizeBatches(d.Batches)
	d.LogTail = logTail(d.LogTail, record.MaxLogTail)
}

func normalizeBatches(bs []record.BatchTiming) []record.BatchTiming {
	if bs == nil {
		return nil
	}
	out := make([]record.BatchTiming, len(bs))
	for i, b := range bs {
		b.Started, b.Finished = b.Started.UTC(), b.Finished.UTC()
		out[i] = b
	}
	return out
}

// logTail keeps the last max bytes of s, starting at a whole character and,
// when one begins soon enough, at a whole line.
func logTail(s string, max int) string {
	if len(s) <= max {
		return s
	}
	s = s[len(s)-max:]
	for i := 0; i < utf8.UTFMax && i < len(s); i++ {
		if utf8.RuneStart(s[i]) {
			s = s[i:]
			break
		}
	}
	if i := strings.IndexByte(s, '\n'); i >= 0 && i < 4<<10 {
		s = s[i+1:]
	}
	return s
}

// micros orders deploys: unix microseconds are exact in a Redis score and a
// Lua number (both doubles), nanoseconds are not.
func micros(t time.Time) int64 { return t.UnixMicro() }

// slot is the pending or the running deploy of an environment.
type slot struct {
	ID    string `json:"id"`
	At    int64  `json:"at"`              // the deploy's CreatedAt, unix µs
	Token int64  `json:"token,omitempty"` // running only: the lease that took it
}

// enqueue decides what Enqueue does, given the environment's slots (nil
// when empty): the new pending slot (nil: unchanged) and the ids that are
// no longer queued. The Redis script enqueueLua says the same in Lua.
func enqueue(pending, running *slot, id string, at int64) (next *slot, superseded []string) {
	switch {
	case running != nil && running.ID == id, pending != nil && pending.ID == id:
		return nil, nil // already there: a repeated step
	case running != nil && at < running.At:
		return nil, []string{id} // older than what already runs
	case pending != nil && at < pending.At:
		return nil, []string{id} // a newer one is already queued
	}
	next = &slot{ID: id, At: at}
	if pending != nil {
		superseded = []string{pending.ID}
	}
	return next, superseded
}

// previousRelease is the newest success before the current one (the first
// of successes, newest first) with another SHA: a redeploy of the current
// SHA, or an earlier rollback to it, is not something to roll back to.
func previousRelease(successes []record.Release) (record.Release, bool) {
	if len(successes) == 0 {
		return record.Release{}, false
	}
	for _, r := range successes[1:] {
		if r.SHA != successes[0].SHA {
			return r, true
		}
	}
	return record.Release{}, false
}

// findRelease picks the newest success whose SHA is ref or starts with it.
func findRelease(env record.EnvKey, successes []record.Release, ref string) (record.Release, error) {
	ref = strings.ToLower(ref)
	if len(ref) < 7 || len(ref) > 64 || strings.Trim(ref, "0123456789abcdef") != "" {
		return record.Release{}, fmt.Errorf("%w: %q is not a SHA or a prefix of 7 or more hex digits", record.ErrNotFound, ref)
	}
	var found *record.Release
	for i, r := range successes {
		if !strings.HasPrefix(strings.ToLower(r.SHA), ref) {
			continue
		}
		if found == nil {
			found = &successes[i]
		} else if !strings.EqualFold(found.SHA, r.SHA) {
			return record.Release{}, fmt.Errorf("%w: %s matches %s and %s in %s", record.ErrAmbiguous, ref, found.SHA, r.SHA, env)
		}
	}
	if found == nil {
		return record.Release{}, fmt.Errorf("%w: no successful release of %s in %s", record.ErrNotFound, ref, env)
	}
	return *found, nil
}

func normalizeRelease(r *record.Release) {
	r.At, r.CommittedAt = r.At.UTC(), r.CommittedAt.UTC()
	r.Batches = normalizeBatches(r.Batches)
}

func previewField(repo string, number int) string { return fmt.Sprintf("%s#%d", repo, number) }
