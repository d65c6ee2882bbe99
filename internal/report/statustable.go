package report

import (
	"strings"
	"time"
)

// EnvStatus is what /status shows of one environment.
type EnvStatus struct {
	Env string
	// The current release: the newest successful deploy; SHA "" for none.
	SHA, Ref, By string
	At           time.Time

	Locked     bool
	LockedBy   string
	LockReason string
	LockedAt   time.Time

	// Freeze is the environment's open freeze window; nil when none is
	// open. It shows in the Lock column: like a lock, it holds deploys.
	Freeze *Freeze

	Running *DeployLine  // the deploy rolling out now, if any
	Queued  []DeployLine // deploys waiting: for the environment, a /lock or checks
	Last    []DeployLine // the last deploys, newest first
}

// DeployLine is one deploy in the /status table.
type DeployLine struct {
	SHA, Ref, By string
	Kind         Kind
	State        string // the deploy record's state: queued, waiting, locked, running, success, failure, ...
	At           time.Time
}

// maxStatusDeploys bounds the deploys listed in one cell.
const maxStatusDeploys = 5

var deployStateIcons = map[string]string{
	"queued": "⏸️", "waiting": "⏸️", "locked": "🔒", "running": "⏳", "success": "✅", "failure": "❌",
	"error": "⚠️", "superseded": "↷", "cancelled": "✖️",
}

// StatusTable is the /status table: for each environment its release, who
// deployed it and when, the lock and its holder, what is queued and the
// last deploys. Environments appear in the order given.
func StatusTable(envs []EnvStatus) string {
	if len(envs) == 0 {
		return "No environments are configured in " + code(".github/shipbot.yml") + ".\n"
	}
	var b strings.Builder
	b.WriteString("| Environment | Release | Deployed | Lock | Queue | Last deploys |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, e := range envs {
		rel := "none yet"
		if e.SHA != "" {
			rel = release(e.SHA, e.Ref)
		}
		var who []string
		if e.SHA != "" && e.By != "" {
			who = append(who, mention(e.By))
		}
		if t := FormatTime(e.At); e.SHA != "" && t != "" {
			who = append(who, t)
		}
		deployed := or(strings.Join(who, " · "), "—")
		var holds []string
		if e.Locked {
			holds = append(holds, "🔒 "+lockHolder(e.LockedBy, e.LockReason)+since(e.LockedAt))
		}
		if e.Freeze != nil {
			holds = append(holds, "❄️ "+frozen(*e.Freeze))
		}
		var queue []string
		if e.Running != nil {
			queue = append(queue, "⏳ rolling out "+deployLine(*e.Running, false))
		}
		for i, q := range e.Queued {
			if i == maxStatusDeploys {
				queue = append(queue, plural(len(e.Queued)-i, "more", "more"))
				break
			}
			queue = append(queue, deployStateIcons[q.State]+" "+q.State+" "+deployLine(q, false))
		}
		var last []string
		for i, d := range e.Last {
			if i == maxStatusDeploys {
				break
			}
			icon := deployStateIcons[d.State]
			if icon == "" {
				icon = md(d.State)
			}
			last = append(last, icon+" "+deployLine(d, true))
		}
		row := []string{envName(e.Env), rel, deployed, or(strings.Join(holds, "<br>"), "—"), or(strings.Join(queue, "<br>"), "—"), or(strings.Join(last, "<br>"), "—")}
		for i := range row {
			row[i] = cell(row[i])
		}
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}
	return clip(b.String(), MaxCommentBody/2)
}

// deployLine is `abc1234` (main) rollback by @alice, with its time when
// withTime.
func deployLine(d DeployLine, withTime bool) string {
	s := release(d.SHA, d.Ref)
	if d.Kind != "" && d.Kind != KindPush {
		s += " " + md(string(d.Kind))
	}
	if d.By != "" {
		s += " by " + mention(d.By)
	}
	if withTime {
		if t := FormatTime(d.At); t != "" {
			s += " · " + t
		}
	}
	return s
}
