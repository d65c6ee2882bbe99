package record

import "time"

// AuditEntry is one line of the audit log: who did what to which
// environment, when, and how it ended (SPEC §5, "Audit log"). Entries are
// append-only; the store assigns ID and, when it is zero, At. The JSON is
// the export's format, one entry a line.
type AuditEntry struct {
	// ID names the entry and orders the log: IDs sort as their entries were
	// made (At, then the order of appends within one microsecond). The
	// store assigns it.
	ID string    `json:"id"`
	At time.Time `json:"at"` // kept to the microsecond, in UTC
	// Actor is the GitHub login that caused the action (the commenter, the
	// pusher), ActorShipbot for what the bot does on its own, or ActorCLI
	// of the OS user who ran a `bot` command (`bot secrets`).
	Actor string `json:"actor"`
	// Repo is owner/name; "" only for actions of the bot as a whole (a
	// redelivery it asked for of a delivery that named no repository).
	Repo    string `json:"repo,omitempty"`
	Env     string `json:"environment,omitempty"` // "" when the action has none
	Action  string `json:"action"`                // Action*
	Outcome string `json:"outcome"`               // Outcome*
	// Text is the reason or the detail, already phrased for people by the
	// caller (internal/report); at most MaxAuditText bytes are kept. It
	// never holds a secret's value, only its name.
	Text string `json:"text,omitempty"`
	Link string `json:"link,omitempty"` // the deploy page, the comment, the commit
}

// ActorShipbot is the Actor of what the bot does by itself (a drift repair,
// an automatic rollback, a redelivery it asked for).
const ActorShipbot = "shipbot"

// ActorCLI is the Actor of what an OS user did with the bot's command
// line: "cli:" and the user's name. The prefix keeps it apart from GitHub
// logins, which cannot hold a colon.
func ActorCLI(user string) string { return "cli:" + user }

// Audit actions.
const (
	ActionDeployQueued        = "deploy.queued"
	ActionDeployStarted       = "deploy.started"
	ActionDeployFinished      = "deploy.finished"
	ActionRollback            = "rollback"
	ActionLock                = "lock"
	ActionUnlock              = "unlock"
	ActionCommandRefused      = "command.refused"
	ActionConfigError         = "config.error"
	ActionFreezeHeld          = "freeze.held"
	ActionFreezeOverridden    = "freeze.overridden"
	ActionSecretSet           = "secret.set"
	ActionSecretUnset         = "secret.unset"
	ActionDriftFound          = "drift.found"    // a repair begins: the instances found and their releases
	ActionDriftRepaired       = "drift.repaired" // how it ended: success, failure or error, and why
	ActionRedeliveryRequested = "redelivery.requested"
	// The App was installed, uninstalled, or given or refused repositories
	// (installation and installation_repositories events).
	ActionInstallationCreated = "installation.created"
	ActionInstallationDeleted = "installation.deleted"
	ActionReposAdded          = "installation.repositories_added"
	ActionReposRemoved        = "installation.repositories_removed"
	// A preview torn down without its pull request closing: the App lost
	// access to its repository.
	ActionPreviewTornDown = "preview.torn_down"
	// The local driver's keeper (the process that owns the proxies and
	// instances) died and a new one restored what it ran.
	ActionKeeperRestored = "keeper.restored"
)

// Audit outcomes.
const (
	OutcomeSuccess   = "success"
	OutcomeFailure   = "failure"   // tried and failed (a halted rollout, a failed repair)
	OutcomeError     = "error"     // could not run (config, driver, GitHub)
	OutcomeRefused   = "refused"   // not allowed (permission, freeze, a stale comment)
	OutcomeHeld      = "held"      // waits (a freeze window, an environment lock)
	OutcomeCancelled = "cancelled" // superseded or cancelled before it ran
)

// AuditActions lists every Action*, for validation and for a page's filter.
func AuditActions() []string {
	return []string{
		ActionDeployQueued, ActionDeployStarted, ActionDeployFinished, ActionRollback,
		ActionLock, ActionUnlock, ActionCommandRefused, ActionConfigError, ActionFreezeHeld, ActionFreezeOverridden,
		ActionSecretSet, ActionSecretUnset, ActionDriftFound, ActionDriftRepaired, ActionRedeliveryRequested,
		ActionInstallationCreated, ActionInstallationDeleted, ActionReposAdded, ActionReposRemoved, ActionPreviewTornDown,
		ActionKeeperRestored,
	}
}

// AuditOutcomes lists every Outcome*.
func AuditOutcomes() []string {
	return []string{OutcomeSuccess, OutcomeFailure, OutcomeError, OutcomeRefused, OutcomeHeld, OutcomeCancelled}
}

// Bounds of the audit log.
const (
	// AuditRetention is how long entries are kept at least (SPEC §5: 400
	// days); each append removes some of those older than this.
	AuditRetention = 400 * 24 * time.Hour
	// MaxAuditText bounds AuditEntry.Text; a longer one keeps its start.
	MaxAuditText = 4 << 10
	// AuditPageDefault and AuditPageMax bound a page of ListAudit.
	AuditPageDefault = 50
	AuditPageMax     = 1000
)

// AuditFilter picks entries of the audit log. Zero fields do not filter.
type AuditFilter struct {
	Repo  string // owner/name
	Env   string
	Actor string
	// Since is inclusive, Before exclusive, both compared at the
	// microsecond.
	Since  time.Time
	Before time.Time
	// Limit is a page's size for ListAudit (0: AuditPageDefault, at most
	// AuditPageMax) and the most entries EachAudit gives (0: all).
	Limit int
	// Cursor is an AuditPage.Next: the entries older than the last one of
	// the page before. "" starts at the newest.
	Cursor string
}

// AuditPage is one page of the audit log, newest first.
type AuditPage struct {
	Entries []AuditEntry
	// Next is the Cursor of the following page; "" on the last page.
	Next string
}
