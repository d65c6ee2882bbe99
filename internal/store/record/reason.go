package record

import "time"

// Reason is something the engine has to tell people — why a deploy failed,
// waits or was refused, a decision of its plan, a line of its log — as
// data: what happened (Kind) and the facts that say it (which batch,
// instance, step, releases, how many, how long, the error a driver gave).
// The engine emits reasons and never words; internal/report phrases them
// (report.Reason), so every sentence is built in one place, and the
// deploy record keeps the reason as well as its phrase.
//
// Each kind reads only some of the fields; its constant says which. Adding
// a kind is one constant below (and in ReasonKinds), one phrasing in
// internal/report, and the fields it needs, added here when no existing
// one fits.
type Reason struct {
	Kind ReasonKind `json:"kind"`

	// Where.
	Env       string   `json:"env,omitempty"`        // the environment's name
	Batch     int      `json:"batch,omitempty"`      // the batch's index in the plan, 0-based
	Canary    bool     `json:"canary,omitempty"`     // Batch is the canary
	Zone      string   `json:"zone,omitempty"`       // a zone ("" is a zone too: no zone)
	InsteadOf string   `json:"instead_of,omitempty"` // another zone, the one Zone replaced
	Instance  string   `json:"instance,omitempty"`
	Instances []string `json:"instances,omitempty"`
	Step      string   `json:"step,omitempty"`     // a step of a batch: drain, install, health, admit, bake, …
	Release   string   `json:"release,omitempty"`  // the release concerned (a full SHA)
	Previous  string   `json:"previous,omitempty"` // the release rolled back to
	Path      string   `json:"path,omitempty"`     // the health check's path
	Setting   string   `json:"setting,omitempty"`  // a configuration key, e.g. "health.timeout"
	Checks    []string `json:"checks,omitempty"`   // required checks
	By        string   `json:"by,omitempty"`       // a GitHub login
	Repo      string   `json:"repo,omitempty"`     // OWNER/NAME, where a reason names the repository (bot secrets set …)

	// When.
	At       time.Time `json:"at,omitzero"`         // when it happened (a freeze began to hold a deploy)
	Until    time.Time `json:"until,omitzero"`      // when a wait ends (a freeze lifts)
	TimeZone string    `json:"time_zone,omitempty"` // the IANA time zone Until is said in; "" for UTC

	// How many, how long.
	Count    int           `json:"count,omitempty"`       // how many there are (instances, passes in a row, a setting's value)
	Want     int           `json:"want,omitempty"`        // how many were asked for (canary, batch size, healthy_after)
	Limit    int           `json:"limit,omitempty"`       // the bound met or broken (max_unavailable)
	Of       int           `json:"of,omitempty"`          // out of how many (the fleet)
	Duration time.Duration `json:"duration_ns,omitempty"` // a configured span (timeout, bake, interval)
	Elapsed  time.Duration `json:"elapsed_ns,omitempty"`  // how far into Duration it happened

	// Measured (analysis): a figure of the new release, the previous
	// release's over the same window, and the limit it broke. Shares are
	// 0 to 1, latencies in seconds.
	Value    float64  `json:"value,omitempty"`
	Baseline *float64 `json:"baseline,omitempty"` // nil: nothing to compare with
	Bound    float64  `json:"bound,omitempty"`
	Below    bool     `json:"below,omitempty"` // the bound is a minimum (broken below it)
	URL      string   `json:"url,omitempty"`   // where a figure is read from (a Prometheus)

	// Words from elsewhere, shown as they are.
	Err  string `json:"err,omitempty"`  // the error a driver or the system returned
	Text string `json:"text,omitempty"` // words a person or another component gave (a /lock reason, a failed check)

	// Reasons within reasons.
	Cause *Reason     `json:"cause,omitempty"` // ReasonBatchFailed, ReasonRollbackFailed: the step failure; elsewhere, an Err the engine describes itself
	Left  []Placement `json:"left,omitempty"`  // where a rollout that stopped left the instances it touched
	// Found are the instances a drift repair found on another release than
	// the environment's current one, each with the release it ran then.
	Found []Placement `json:"found,omitempty"`
	Then  []Reason    `json:"then,omitempty"` // what followed, said after this reason, in order
}

// Placement is where a rollout that stopped left one instance it touched.
type Placement struct {
	Instance string `json:"instance"`
	Release  string `json:"release,omitempty"` // what it runs; "" for nothing
	Out      bool   `json:"out,omitempty"`     // out of rotation
	Lost     bool   `json:"lost,omitempty"`    // an install failed on it: what it runs is unknown
	Failing  bool   `json:"failing,omitempty"` // in rotation, and its last health check failed
}

// ReasonKind is what a Reason says. Its value is stored: never change one.
type ReasonKind string

// Why a plan cannot be made (deploy.PlanError); nothing is touched.
const (
	ReasonNoInstances              ReasonKind = "no_instances"                // -
	ReasonNoRelease                ReasonKind = "no_release"                  // -
	ReasonInstanceWithoutID        ReasonKind = "instance_without_id"         // Zone
	ReasonInstanceTwice            ReasonKind = "instance_twice"              // Instance
	ReasonCanaryInvalid            ReasonKind = "canary_invalid"              // Want (the canary)
	ReasonCanaryOverMaxUnavailable ReasonKind = "canary_over_max_unavailable" // Want (canary), Limit (max_unavailable), Of
	ReasonNoneLeftServing          ReasonKind = "none_left_serving"           // Count (serving instances the batch would take out)
)

// The decisions of a plan worth knowing (deploy.Plan.Notes).
const (
	ReasonNoteBatchesCapped  ReasonKind = "note_batches_capped"  // Limit (max_unavailable), Want (batch), Of
	ReasonNoteAllCurrent     ReasonKind = "note_all_current"     // Of, Release
	ReasonNoteNothingServing ReasonKind = "note_nothing_serving" // -
	ReasonNoteBrokenFirst    ReasonKind = "note_broken_first"    // Count (instances not serving)
	ReasonNoteZoneFirst      ReasonKind = "note_zone_first"      // Zone (started with), InsteadOf
	ReasonNoteCanaryCapped   ReasonKind = "note_canary_capped"   // Zone, Count (its instances), Want (canary)
	ReasonNoteSurge          ReasonKind = "note_surge"           // Batch, Canary, Release, Instances (the last serving)
)

// Why a rollout ended before any batch; nothing is touched.
const (
	ReasonNoEnvironment        ReasonKind = "no_environment"         // -
	ReasonNoDriver             ReasonKind = "no_driver"              // Env
	ReasonSettingEmpty         ReasonKind = "setting_empty"          // Env, Setting
	ReasonSettingNotPositive   ReasonKind = "setting_not_positive"   // Env, Setting, Duration (its value)
	ReasonSettingBelowOne      ReasonKind = "setting_below_one"      // Env, Setting, Count (its value)
	ReasonSettingNegative      ReasonKind = "setting_negative"       // Env, Setting, Duration (its value)
	ReasonCancelledBeforeStart ReasonKind = "cancelled_before_start" // -
	ReasonListFailed           ReasonKind = "list_failed"            // Env, Err
	ReasonBuildCancelled       ReasonKind = "build_cancelled"        // Release
	ReasonBuildFailed          ReasonKind = "build_failed"           // Release, Err
	ReasonSecretMissing        ReasonKind = "secret_missing"         // Repo, Env ("preview" for previews), Text (the secret's name)
	ReasonSecretUnreadable     ReasonKind = "secret_unreadable"      // Repo, Env, Text (the secret's name), Err
	ReasonReleasePhaseFailed   ReasonKind = "release_phase_failed"   // Release, Setting (app.release or aws.release), Duration (the bound), Err
)

// How a rollout ended (deploy.Result.Reason), followed by Then.
const (
	ReasonAlreadyCurrent  ReasonKind = "already_current"  // Of, Env, Release
	ReasonDeployed        ReasonKind = "deployed"         // Release, Of, Env, Count (already on it)
	ReasonBatchFailed     ReasonKind = "batch_failed"     // Batch, Canary, Cause (the step failure)
	ReasonCancelledDuring ReasonKind = "cancelled_during" // Batch, Canary, Step, Release
)

// A step of a batch that failed (the Cause of ReasonBatchFailed and
// ReasonRollbackFailed; deploy.BatchResult.Failure).
const (
	ReasonHealthTimeout    ReasonKind = "health_timeout"    // Instance, Path, Want (healthy_after), Duration (timeout), Release; Err or Cause (the last check), else Count (passes in a row)
	ReasonConfirmFailed    ReasonKind = "confirm_failed"    // Instance, Path, Release, Err or Cause
	ReasonBakeFailed       ReasonKind = "bake_failed"       // Instance, Path, Elapsed, Duration (bake), Release, Err or Cause
	ReasonSurgeFailed      ReasonKind = "surge_failed"      // Release, Err
	ReasonSurgeUnsupported ReasonKind = "surge_unsupported" // Release
	ReasonDrainFailed      ReasonKind = "drain_failed"      // Instance, Err or Cause
	ReasonInstallFailed    ReasonKind = "install_failed"    // Instance, Release, Err or Cause
	ReasonAdmitFailed      ReasonKind = "admit_failed"      // Instance, Release, Err or Cause
	ReasonStepStopped      ReasonKind = "step_stopped"      // Step, Release, Err (a wait that ended early)
	ReasonStepCancelled    ReasonKind = "step_cancelled"    // Step
	ReasonDriverPanicked   ReasonKind = "driver_panicked"   // Instance, Text (what it panicked with); a Cause

	// Analysis (SPEC §6.8) broke a limit while the batch baked.
	ReasonErrorRateHigh    ReasonKind = "error_rate_high"   // Release, Previous, Value, Baseline, Bound (max_error_rate), Count (requests)
	ReasonLatencyHigh      ReasonKind = "latency_high"      // Release, Previous, Value, Baseline, Bound (max_latency_p99), Count (requests)
	ReasonCheckBroken      ReasonKind = "check_broken"      // Text (the check's name), Release, Previous, Value, Baseline, Bound, Below
	ReasonAlarmFiring      ReasonKind = "alarm_firing"      // Text (the alarm), At (since), Err (CloudWatch's state reason), Release
	ReasonSourceUnreadable ReasonKind = "source_unreadable" // Setting (analysis.prometheus, aws.alarms, analysis), Text (check or alarm), URL, Count (reads in a row), Err
)

// What a failure did next (the Then of ReasonBatchFailed and of ends).
const (
	ReasonNothingChanged      ReasonKind = "nothing_changed"       // -
	ReasonNoEarlierRelease    ReasonKind = "no_earlier_release"    // Left, Path; Instance and Err when it could not be taken out of rotation
	ReasonRolledBack          ReasonKind = "rolled_back"           // Instances, Previous
	ReasonRollbackCancelled   ReasonKind = "rollback_cancelled"    // Previous, Left, Path
	ReasonRollbackBuildFailed ReasonKind = "rollback_build_failed" // Previous, Err, Left, Path
	ReasonRollbackFailed      ReasonKind = "rollback_failed"       // Previous, Batch, Canary, Cause (the step failure), Left, Path
	ReasonSurgeLeft           ReasonKind = "surge_left"            // Batch, Canary, Instances (the extra ones), Release
	ReasonRetireFailed        ReasonKind = "retire_failed"         // Instance, Err or Cause
)

// The engine's lines in the deploy log.
const (
	ReasonBuilding      ReasonKind = "building"       // Release
	ReasonReleasePhase  ReasonKind = "release_phase"  // Setting (app.release or aws.release), Text (its command), Release
	ReasonBatchStarting ReasonKind = "batch_starting" // Batch, Canary, Instances, Release
	ReasonSurged        ReasonKind = "surged"         // Batch, Canary, Instance, Release
	ReasonRollingBack   ReasonKind = "rolling_back"   // Instances, Previous
	// ReasonNotJudged: a batch's analysis saw too few requests on the new
	// release to judge its error rate and p99.
	ReasonNotJudged ReasonKind = "not_judged" // Batch, Canary, Release, Count (requests), Want (min_requests); Value (error rate) and Duration (p99) when Count > 0
	// ReasonJudged: one judgement of a batch, its new release's figures.
	ReasonJudged ReasonKind = "judged" // Batch, Canary, Release, Count (requests), Value (error rate), Duration (p99)
)

// Drift repair (SPEC §6.7): instances found on another release than the
// environment's current one, brought back to it (deploy.Engine.Repair).
const (
	ReasonDriftFound    ReasonKind = "drift_found"     // Env, Release (the current one), Found
	ReasonRepaired      ReasonKind = "repaired"        // Env, Release, Found
	ReasonRepairFailed  ReasonKind = "repair_failed"   // Env, Release, Found, Cause (how the repair ended)
	ReasonRepairLeftOut ReasonKind = "repair_left_out" // Left, Path, Duration (when it is tried again); Instance and Err when it could not be taken out of rotation
)

// Why a deploy waits or did not run (Deploy.Reason while queued).
const (
	ReasonWaitingForChecks ReasonKind = "waiting_for_checks" // Checks
	ReasonLocked           ReasonKind = "locked"             // By, Text (the /lock reason)
	ReasonSuperseded       ReasonKind = "superseded"         // Release (the newer one)
	// ReasonFrozen: a push while a freeze window of its environment is
	// open waits until the freeze lifts; Checks are the required checks
	// not green yet, said with it.
	ReasonFrozen ReasonKind = "frozen" // Until, TimeZone, At (when it began to hold), Text (the window as written), Checks
	// ReasonText is words phrased elsewhere, shown as they are: a failed
	// required check as the checks handler says it, and the reason of a
	// record written before reasons were data.
	ReasonText ReasonKind = "text" // Text
)

// ReasonKinds is every kind the engine emits, in the order declared above:
// what internal/report must be able to phrase.
func ReasonKinds() []ReasonKind {
	return []ReasonKind{
		ReasonNoInstances, ReasonNoRelease, ReasonInstanceWithoutID, ReasonInstanceTwice,
		ReasonCanaryInvalid, ReasonCanaryOverMaxUnavailable, ReasonNoneLeftServing,

		ReasonNoteBatchesCapped, ReasonNoteAllCurrent, ReasonNoteNothingServing, ReasonNoteBrokenFirst,
		ReasonNoteZoneFirst, ReasonNoteCanaryCapped, ReasonNoteSurge,

		ReasonNoEnvironment, ReasonNoDriver, ReasonSettingEmpty, ReasonSettingNotPositive, ReasonSettingBelowOne,
		ReasonSettingNegative, ReasonCancelledBeforeStart, ReasonListFailed, ReasonBuildCancelled, ReasonBuildFailed,
		ReasonSecretMissing, ReasonSecretUnreadable, ReasonReleasePhaseFailed,

		ReasonAlreadyCurrent, ReasonDeployed, ReasonBatchFailed, ReasonCancelledDuring,

		ReasonHealthTimeout, ReasonConfirmFailed, ReasonBakeFailed, ReasonSurgeFailed, ReasonSurgeUnsupported,
		ReasonDrainFailed, ReasonInstallFailed, ReasonAdmitFailed, ReasonStepStopped, ReasonStepCancelled,
		ReasonDriverPanicked, ReasonErrorRateHigh, ReasonLatencyHigh, ReasonCheckBroken, ReasonAlarmFiring,
		ReasonSourceUnreadable,

		ReasonNothingChanged, ReasonNoEarlierRelease, ReasonRolledBack, ReasonRollbackCancelled,
		ReasonRollbackBuildFailed, ReasonRollbackFailed, ReasonSurgeLeft, ReasonRetireFailed,

		ReasonBuilding, ReasonReleasePhase, ReasonBatchStarting, ReasonSurged, ReasonRollingBack, ReasonNotJudged, ReasonJudged,

		ReasonDriftFound, ReasonRepaired, ReasonRepairFailed, ReasonRepairLeftOut,

		ReasonWaitingForChecks, ReasonLocked, ReasonSuperseded, ReasonFrozen, ReasonText,
	}
}

// TextReason is the Reason of words phrased elsewhere; none for "".
func TextReason(text string) *Reason {
	if text == "" {
		return nil
	}
	return &Reason{Kind: ReasonText, Text: text}
}
