package report

import (
	"time"

	"github.com/shipbot/shipbot/internal/store/record"
)

// Kind is what started a deploy.
type Kind string

const (
	KindPush     Kind = "push"     // a push to the environment's branch
	KindComment  Kind = "comment"  // /deploy on a pull request
	KindRollback Kind = "rollback" // /rollback: an earlier release through the same path
	KindPreview  Kind = "preview"  // a pull request's preview environment
)

// State is where a deploy is. It is finer than GitHub's deployment states:
// Status maps it onto those, CheckRun onto check-run status and conclusion.
type State string

const (
	StateQueued           State = "queued"             // waiting for the environment to be free
	StateWaitingForChecks State = "waiting_for_checks" // Deploy.WaitingOn are not green yet
	StateLocked           State = "locked"             // /lock holds the environment: LockedBy, LockReason
	StateFrozen           State = "frozen"             // a freeze window holds the deploy: Frozen; WaitingOn when checks are not green either
	StateSuperseded       State = "superseded"         // a newer deploy replaced it before it started: SupersededBy
	StateInProgress       State = "in_progress"        // the rollout is running (or rolling back)
	StateSuccess          State = "success"
	StateFailure          State = "failure"   // a batch failed; Reason, FailedInstance, RolledBack say what happened
	StateError            State = "error"     // could not begin; nothing was touched; Reason says why
	StateInactive         State = "inactive"  // no longer live: replaced (SupersededBy) or, for a preview, torn down
	StateCancelled        State = "cancelled" // stopped part-way; nothing was rolled back
)

// BatchState is where one batch of a rollout is.
type BatchState string

const (
	BatchPending     BatchState = "pending"
	BatchDraining    BatchState = "draining"   // out of rotation, in-flight requests finishing
	BatchInstalling  BatchState = "installing" // the release going onto the instances
	BatchChecking    BatchState = "checking"   // health checks before going back into rotation
	BatchAdmitting   BatchState = "admitting"  // back into rotation, confirming health there
	BatchBaking      BatchState = "baking"     // in rotation, watched for rollout.bake
	BatchDone        BatchState = "done"
	BatchFailed      BatchState = "failed"
	BatchRollingBack BatchState = "rolling_back" // being put back on Deploy.Previous
	BatchRolledBack  BatchState = "rolled_back"
)

// Deploy is a snapshot of one deploy of a release to an environment: all
// that the deployment status and the check run are rendered from. The engine
// fills it from its own state; rendering reads nothing else, so the same
// snapshot always renders to the same bytes and an unchanged text can be
// recognised and not sent again (SPEC §11).
//
// Times must be the moments things happened, never the time of rendering.
type Deploy struct {
	Env     string // environment name, e.g. "production"
	SHA     string // the release being deployed (full SHA; shown as its first 7 characters)
	Ref     string // what was asked for: branch, tag or ref; "" or the SHA itself when none
	Creator string // GitHub login of who triggered it (without "@")
	PR      int    // the pull request a comment or preview came from; 0 if none
	Kind    Kind
	State   State

	WaitingOn    []string    // StateWaitingForChecks: the required checks not green yet
	LockedBy     string      // StateLocked: login holding the /lock
	LockReason   string      // StateLocked: the reason given with /lock
	SupersededBy string      // StateSuperseded, StateInactive: the SHA that replaced this one
	Frozen       *HeldFreeze // StateFrozen: the freeze window holding the deploy

	EnvironmentURL string // where the environment is reached
	LogURL         string // the bot's page for this deploy (/deploys/{id})

	Batches []Batch // the plan, in order; empty until planned
	Total   int     // instances in the environment, including those already on SHA
	Done    int     // instances on SHA, healthy and in rotation

	Previous string // the release being replaced (and rolled back to on failure)

	// Reason is what went wrong, as a short clause without the release,
	// e.g. "production-3 failed /healthz" or "no instances found"; the
	// renderers add the release, the batch and what was rolled back.
	Reason         string
	FailedInstance string   // the instance where the failure happened, if any
	RolledBack     []string // instances put back on Previous, in order
	Notes          []string // sentences explaining the plan's decisions

	StartedAt, FinishedAt time.Time
}

// Batch is one batch of a rollout as it stands.
type Batch struct {
	Index     int // 0-based, as in the plan
	Canary    bool
	Zone      string // the zone when all its instances share one, else ""
	Instances []string
	State     BatchState
	// Started and Finished bound the batch; a running batch has no Finished
	// and shows no duration (an elapsed time would change every render).
	Started, Finished time.Time
	// Analysis is the batch's last judgement by its traffic; nil without
	// analysis, or before the first one. With any batch judged, the table
	// gets a Traffic column.
	Analysis *record.Analysis
}

// PreviewState is where a pull request's preview is.
type PreviewState string

const (
	PreviewBuilding PreviewState = "building"
	PreviewReady    PreviewState = "ready"
	PreviewFailed   PreviewState = "failed"
	PreviewTornDown PreviewState = "torn_down"
)

// Preview is a snapshot of a pull request's preview environment, all that
// its PR comment is rendered from.
type Preview struct {
	SHA       string // the commit the preview runs (or is building)
	URL       string // where it is reached; "" until known
	State     PreviewState
	Reason    string    // PreviewFailed: what failed; PreviewTornDown: why, e.g. "the pull request was closed"
	LogURL    string    // the bot's page for the preview's latest deploy
	UpdatedAt time.Time // when State last changed, not when rendered
}
