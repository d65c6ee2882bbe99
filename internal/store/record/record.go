// Package record holds the records shipbot keeps about deploys (Deploy,
// Release, the deploy Lease, EnvLock, Preview) and the errors of the stores
// that keep them, with no storage library attached: the engine speaks in
// these types without knowing whether Redis or a bbolt file holds them.
// internal/store implements the stores.
package record

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
	if err := ValidateRepo(k.Repo); err != nil {
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

// ValidateRepo reports whether repo is owner/name.
func ValidateRepo(repo string) error {
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
	// KindRepair: the engine bringing instances found on another release
	// back to the environment's current one (drift, SPEC §6.7). Nothing
	// is deployed: no GitHub deployment, no release in the history.
	KindRepair = "repair"
)

// PreviewEnv is the environment name preview secrets are kept under
// (`bot secrets set OWNER/REPO preview NAME`).
const PreviewEnv = "preview"

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
	ResultRolledBack = "rolled-back" // succeeded and was current, then a /rollback replaced it
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
	// (what failed and where; what superseded it), as internal/report
	// phrased Why when it was written.
	Reason string `json:"reason,omitempty"`
	// Why is Reason as data, for saying it again; nil in records written
	// before reasons were data, and for reasons given as words (a preview's).
	Why                *Reason `json:"why,omitempty"`
	GitHubDeploymentID int64   `json:"github_deployment_id,omitempty"`
	CheckRunID         int64   `json:"check_run_id,omitempty"`
	InstallationID     int64   `json:"installation_id,omitempty"`
	// CreatedAt orders deploys: the newest queued one of an environment is
	// the one that runs (Enqueue). PutDeploy sets it when zero.
	CreatedAt  time.Time     `json:"created_at"`
	StartedAt  time.Time     `json:"started_at"`
	FinishedAt time.Time     `json:"finished_at"`
	Batches    []BatchTiming `json:"batches,omitempty"`
	// Previous is the SHA the environment ran before, which a failed
	// rollout puts back.
	Previous string `json:"previous,omitempty"`
	// PreviousDeploy is the DeployID of the release that was current when
	// the deploy started (Previous's); a successful rollback marks it
	// ResultRolledBack. "" when there was none, and in records written
	// before it was kept.
	PreviousDeploy string `json:"previous_deploy,omitempty"`
	// LogTail is the end of the deploy's log, at most MaxLogTail bytes.
	LogTail string `json:"log_tail,omitempty"`
	// WaitingOn are the required checks not green yet (StateWaiting).
	WaitingOn []string `json:"waiting_on,omitempty"`
	// FrozenUntil is when the freeze window that held the deploy (a push
	// while it was open) lifts or lifted; zero when none held it. While
	// the freeze holds it, the deploy is StateWaiting and Why is a
	// ReasonFrozen. The wait for required checks counts from here.
	FrozenUntil time.Time `json:"frozen_until,omitzero"`
	// Slack is the deploy's one message in notify.slack's channel, once
	// one was posted (or is being posted): every later job of the deploy
	// edits it, whichever worker runs it. nil when none.
	Slack *SlackPost `json:"slack,omitempty"`
	// CommittedAt is when the SHA was committed, as the event that asked
	// for the deploy said (a push's head commit, a pull request head's
	// committer date); zero when unknown. Its release keeps it, for the
	// lead time of the delivery metrics.
	CommittedAt time.Time `json:"committed_at,omitzero"`
}

// SlackPost is a deploy's Slack message (internal/outbox).
type SlackPost struct {
	// Channel is the channel's ID as Slack answered the post, which
	// chat.update needs.
	Channel string `json:"channel"`
	TS      string `json:"ts,omitempty"` // the message's timestamp; "" until posted
	// Seq is the newest rendering the message shows: an update carrying
	// an older one is dropped.
	Seq int64 `json:"seq,omitempty"`
	// BusyUntil is set while one job sends the message (posts or edits
	// it) with rendering BusySeq; another job may send only after it, so
	// that Slack sees the renderings in order.
	BusyUntil time.Time `json:"busy_until,omitzero"`
	BusySeq   int64     `json:"busy_seq,omitempty"`
	Replied   bool      `json:"replied,omitempty"` // the failure's thread reply was posted
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
	// Err is the batch's failure in words, as internal/report phrased
	// Failure; "" when the batch succeeded.
	Err     string  `json:"err,omitempty"`
	Failure *Reason `json:"failure,omitempty"`
	// Analysis is what the batch's analysis saw the last time it judged
	// (SPEC §6.8); nil when the environment has none, or it never judged.
	Analysis *Analysis `json:"analysis,omitempty"`
}

// Analysis is one judgement of a batch by its traffic: the new release's
// figures since the batch went into rotation, the previous release's over
// the same window, and each Prometheus check and alarm.
type Analysis struct {
	At    time.Time `json:"at"`    // when it judged
	Since time.Time `json:"since"` // the start of the window: the batch went into rotation
	// Judged is false when the new release had fewer than MinRequests
	// requests: its error rate and p99 were shown, not judged.
	Judged      bool `json:"judged"`
	MinRequests int  `json:"min_requests,omitempty"`
	// Traffic is the new release's; nil when the driver does not measure
	// traffic. Baseline is the previous release's over the same window
	// (its instances still serving, or the window before the rollout);
	// nil when there is none to compare with.
	Traffic  *Traffic      `json:"traffic,omitempty"`
	Baseline *Traffic      `json:"baseline,omitempty"`
	Checks   []CheckFigure `json:"checks,omitempty"`
	Alarms   []AlarmFigure `json:"alarms,omitempty"`
}

// Traffic is a release's requests over a window.
type Traffic struct {
	Requests int64         `json:"requests"`
	Errors   int64         `json:"errors"` // 5xx answers and failed requests
	P99      time.Duration `json:"p99_ns"`
}

// ErrorRate is Errors over Requests; 0 with no requests.
func (t Traffic) ErrorRate() float64 {
	if t.Requests == 0 {
		return 0
	}
	return float64(t.Errors) / float64(t.Requests)
}

// CheckFigure is one Prometheus check's value at a judgement.
type CheckFigure struct {
	Name     string   `json:"name"`
	Value    *float64 `json:"value,omitempty"`    // nil when it could not be read (Err)
	Baseline *float64 `json:"baseline,omitempty"` // the same query for the previous release; nil: none
	Err      string   `json:"err,omitempty"`
}

// AlarmFigure is one CloudWatch alarm's state at a judgement.
type AlarmFigure struct {
	Name  string `json:"name"`
	State string `json:"state,omitempty"` // OK, ALARM, INSUFFICIENT_DATA; "" when it could not be read (Err)
	Err   string `json:"err,omitempty"`
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
	// CommittedAt is the deploy's CommittedAt: when SHA was committed;
	// zero when unknown.
	CommittedAt time.Time `json:"committed_at,omitzero"`
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
	// Creating is the marker (gh.DeploymentMarker's value) of the GitHub
	// deployment a run set out to create for CreatingSHA and had not
	// recorded yet. A later run for the same SHA looks for that deployment
	// on GitHub before creating one: the first run may have died between
	// GitHub's answer and this record. "" when nothing is being created.
	Creating    string `json:"creating,omitempty"`
	CreatingSHA string `json:"creating_sha,omitempty"`
}

// Installation is one installation of the App, as its installation and
// installation_repositories events told it (SPEC §4): the account and the
// repositories the App may act on. Repos holds what the events named; for
// an installation on all of an account's repositories (Selection "all")
// GitHub names them at creation only.
type Installation struct {
	ID        int64     `json:"id"`
	Account   string    `json:"account"`
	Selection string    `json:"selection,omitempty"` // "all" or "selected", as GitHub says
	Repos     []string  `json:"repos,omitempty"`     // owner/name, sorted
	UpdatedAt time.Time `json:"updated_at"`
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
