// Package store is what shipbot remembers about deploys: the deploy lock of
// each environment, the deploy records, the pending and running slots that
// give one deploy per environment with supersession, the release history,
// environment locks (/lock), previews, and which repositories and
// environments it has seen.
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
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// EnvKey names one environment of one repository.
type EnvKey struct {
	Repo string `json:"repo"` // owner/name
	Name string `json:"name"` // the environment, as in .github/shipbot.yml
}

// String is "owner/name:environment". Repository names cannot hold a colon,
// so the first one separates the two (ParseEnvKey).
func (k EnvKey) String() string { return k.Repo + ":" + k.Name }

// ParseEnvKey is the inverse of EnvKey.String.
func ParseEnvKey(s string) (EnvKey, error) {
	repo, name, _ := strings.Cut(s, ":")
	k := EnvKey{Repo: repo, Name: name}
	return k, k.Validate()
}

// Validate reports what is wrong with k, if anything.
func (k EnvKey) Validate() error {
	if err := validateRepo(k.Repo); err != nil {
		return err
	}
	switch {
	case k.Name == "":
		return fmt.Errorf("store: environment of %s: empty name", k.Repo)
	case len(k.Name) > 255: // GitHub's limit for an environment name
		return fmt.Errorf("store: environment %.40q...: longer than 255 bytes", k.Name)
	case !utf8.ValidString(k.Name) || strings.IndexFunc(k.Name, unicode.IsControl) >= 0:
		return fmt.Errorf("store: environment %q: not printable text", k.Name)
	}
	return nil
}

func validateRepo(repo string) error {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") ||
		strings.ContainsAny(repo, ": \t\r\n") || len(repo) > 256 {
		return fmt.Errorf("store: repository %q: want owner/name", repo)
	}
	return nil
}

// Deploy kinds.
const (
	KindPush     = "push"     // a push to an environment's branch
	KindComment  = "comment"  // /deploy
	KindRollback = "rollback" // /rollback, or the engine putting a release back
	KindPreview  = "preview"  // a pull request's preview environment
)

// Deploy states.
const (
	StateQueued     = "queued"     // created, not yet running
	StateWaiting    = "waiting"    // waits for required checks
	StateLocked     = "locked"     // waits for /unlock
	StateRunning    = "running"    // rolling out
	StateSuccess    = "success"    // done, every batch healthy
	StateFailure    = "failure"    // a batch failed; touched instances were put back
	StateError      = "error"      // could not run (config, driver, GitHub)
	StateSuperseded = "superseded" // a newer deploy replaced it before it ran
	StateCancelled  = "cancelled"  // stopped by a person or a closed PR
)

// Release results.
const (
	ResultSuccess    = "success"
	ResultFailure    = "failure"
	ResultRolledBack = "rolled-back" // was current, then a rollback replaced it
)

var (
	kinds   = []string{KindPush, KindComment, KindRollback, KindPreview}
	states  = []string{StateQueued, StateWaiting, StateLocked, StateRunning, StateSuccess, StateFailure, StateError, StateSuperseded, StateCancelled}
	results = []string{ResultSuccess, ResultFailure, ResultRolledBack}
)

// Bounds on what is kept.
const (
	// MaxLogTail bounds Deploy.LogTail; a longer log keeps its end.
	MaxLogTail = 64 << 10
	// DeploysKept is how many deploy records are kept per environment; a
	// write beyond it deletes the oldest, except a pending or running one.
	DeploysKept = 200
	// ReleasesKept is how many releases are kept per environment: the newest
	// ReleasesKept of any result, and besides them the newest ReleasesKept
	// successes, so a run of failures cannot push the last good release,
	// which /rollback needs, out of the history.
	ReleasesKept = 100
)

// Deploy is one attempt to put a SHA on an environment.
type Deploy struct {
	ID  string `json:"id"`
	Env EnvKey `json:"env"`
	SHA string `json:"sha"`
	// Ref is the branch or tag the SHA came from, for people.
	Ref     string `json:"ref,omitempty"`
	Creator string `json:"creator,omitempty"` // GitHub login
	Kind    string `json:"kind"`              // Kind*
	State   string `json:"state"`             // State*
	// Reason says why the deploy is in its State, in a sentence for people
	// (what failed and where; what superseded it).
	Reason             string `json:"reason,omitempty"`
	GitHubDeploymentID int64  `json:"github_deployment_id,omitempty"`
	CheckRunID         int64  `json:"check_run_id,omitempty"`
	InstallationID     int64  `json:"installation_id,omitempty"`
	// CreatedAt orders deploys: the newest queued one of an environment is
	// the one that runs (Enqueue). PutDeploy sets it when zero.
	CreatedAt  time.Time     `json:"created_at"`
	StartedAt  time.Time     `json:"started_at"`
	FinishedAt time.Time     `json:"finished_at"`
	Batches    []BatchTiming `json:"batches,omitempty"`
	// Previous is the SHA the environment ran before, which a failed
	// rollout puts back.
	Previous string `json:"previous,omitempty"`
	// LogTail is the end of the deploy's log, at most MaxLogTail bytes.
	LogTail string `json:"log_tail,omitempty"`
}

// BatchTiming is how one batch of a rollout went.
type BatchTiming struct {
	Index     int       `json:"index"`
	Instances []string  `json:"instances"`
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished"`
	// Each step's duration, summed over the batch's instances where they
	// ran one after another.
	Drain   time.Duration `json:"drain_ns"`
	Install time.Duration `json:"install_ns"`
	Health  time.Duration `json:"health_ns"`
	Admit   time.Duration `json:"admit_ns"`
	Bake    time.Duration `json:"bake_ns"`
	Err     string        `json:"err,omitempty"`
}

// Release is one finished deploy in an environment's history.
type Release struct {
	// DeployID identifies the release: recording the same DeployID again
	// replaces the entry where it stands.
	DeployID string        `json:"deploy_id"`
	SHA      string        `json:"sha"`
	Ref      string        `json:"ref,omitempty"`
	By       string        `json:"by,omitempty"`
	At       time.Time     `json:"at"`
	Result   string        `json:"result"` // Result*
	Batches  []BatchTiming `json:"batches,omitempty"`
}

// Lease is a held deploy lock. Token is its fencing token: every
// acquisition of an environment's lock gets a larger one than all before
// it, and the store checks it atomically wherever a lease is required, so a
// holder that stalled past its TTL cannot act after someone else took over.
type Lease struct {
	Env    EnvKey
	Holder string
	Token  int64
}

// EnvLock is a person's /lock on an environment.
type EnvLock struct {
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// Preview is a pull request's preview environment.
type Preview struct {
	Repo          string    `json:"repo"`
	Number        int       `json:"number"`
	SHA           string    `json:"sha"`
	URL           string    `json:"url,omitempty"`
	DeploymentIDs []int64   `json:"deployment_ids,omitempty"`
	CommentID     int64     `json:"comment_id,omitempty"`
	UpdatedAt     time.Time `json:"updated_at"`
	Closed        bool      `json:"closed,omitempty"`
}

var (
	// ErrNotFound: no such record.
	ErrNotFound = errors.New("store: not found")
	// ErrLockLost: the lease is no longer the environment's deploy lock: it
	// expired (whether or not someone took the lock since) or was released.
	ErrLockLost = errors.New("store: deploy lock lost")
	// ErrBusy: TakePending found a deploy still in the running slot. Under a
	// current lease that deploy is an orphan of a holder whose lock expired;
	// carry it on or finish it (FinishRunning) first.
	ErrBusy = errors.New("store: a deploy is still running in this environment")
	// ErrAmbiguous: a SHA prefix matches releases of different SHAs.
	ErrAmbiguous = errors.New("store: ambiguous SHA prefix")
	// ErrUnavailable wraps every failure to reach the store (Redis down, the
	// embedded file closed), so callers can answer 503 or retry.
	ErrUnavailable = errors.New("store: unavailable")
)

func validateDeploy(d *Deploy) error {
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

func validateRelease(r *Release) error {
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

func validateLease(l Lease, env EnvKey) error {
	if l.Env != env {
		return fmt.Errorf("store: lease is for %s, not %s", l.Env, env)
	}
	if l.Token <= 0 {
		return fmt.Errorf("%w: %s: not a lease from AcquireLock", ErrLockLost, env)
	}
	return env.Validate()
}

func validateAcquire(env EnvKey, holder string, ttl time.Duration) error {
	if holder == "" {
		return fmt.Errorf("store: lock %s: empty holder", env)
	}
	if ttl < time.Millisecond {
		return fmt.Errorf("store: lock %s: ttl %v is under a millisecond", env, ttl)
	}
	return env.Validate()
}

func validatePreview(repo string, number int) error {
	if err := validateRepo(repo); err != nil {
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
func normalizeDeploy(d *Deploy) {
	d.CreatedAt, d.StartedAt, d.FinishedAt = d.CreatedAt.UTC(), d.StartedAt.UTC(), d.FinishedAt.UTC()
	d.Batches = normalizeBatches(d.Batches)
	d.LogTail = logTail(d.LogTail, MaxLogTail)
}

func normalizeBatches(bs []BatchTiming) []BatchTiming {
	if bs == nil {
		return nil
	}
	out := make([]BatchTiming, len(bs))
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
func previousRelease(successes []Release) (Release, bool) {
	if len(successes) == 0 {
		return Release{}, false
	}
	for _, r := range successes[1:] {
		if r.SHA != successes[0].SHA {
			return r, true
		}
	}
	return Release{}, false
}

// findRelease picks the newest success whose SHA is ref or starts with it.
func findRelease(env EnvKey, successes []Release, ref string) (Release, error) {
	ref = strings.ToLower(ref)
	if len(ref) < 7 || len(ref) > 64 || strings.Trim(ref, "0123456789abcdef") != "" {
		return Release{}, fmt.Errorf("%w: %q is not a SHA or a prefix of 7 or more hex digits", ErrNotFound, ref)
	}
	var found *Release
	for i, r := range successes {
		if !strings.HasPrefix(strings.ToLower(r.SHA), ref) {
			continue
		}
		if found == nil {
			found = &successes[i]
		} else if !strings.EqualFold(found.SHA, r.SHA) {
			return Release{}, fmt.Errorf("%w: %s matches %s and %s in %s", ErrAmbiguous, ref, found.SHA, r.SHA, env)
		}
	}
	if found == nil {
		return Release{}, fmt.Errorf("%w: no successful release of %s in %s", ErrNotFound, ref, env)
	}
	return *found, nil
}

func normalizeRelease(r *Release) {
	r.At = r.At.UTC()
	r.Batches = normalizeBatches(r.Batches)
}

func previewField(repo string, number int) string { return fmt.Sprintf("%s#%d", repo, number) }
