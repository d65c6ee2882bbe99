package report

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// DeploymentStatus is a deployment status to create.
type DeploymentStatus struct {
	State          string // GitHub's: queued, in_progress, success, failure, error, inactive
	Description    string // at most MaxDescription characters, one line
	EnvironmentURL string // "" when there is nothing to view (a torn-down preview)
	LogURL         string
}

// CheckRunName is the check run that reports deploys to env.
func CheckRunName(env string) string { return "shipbot/" + env }

// Status is the deployment status for d.
func Status(d Deploy) DeploymentStatus {
	st := DeploymentStatus{
		State:          githubState(d.State),
		Description:    headline(d),
		EnvironmentURL: d.EnvironmentURL,
		LogURL:         d.LogURL,
	}
	if d.State == StateInactive && d.Kind == KindPreview {
		st.EnvironmentURL = "" // torn down: no "View deployment" button to a dead link
	}
	return st
}

// githubState maps a deploy's state onto GitHub's deployment states.
func githubState(s State) string {
	switch s {
	case StateQueued, StateWaitingForChecks, StateLocked, StateFrozen:
		return "queued"
	case StateInProgress:
		return "in_progress"
	case StateSuccess:
		return "success"
	case StateFailure:
		return "failure"
	case StateInactive, StateSuperseded:
		return "inactive"
	default: // StateError, StateCancelled (stopped part-way: not a result), and anything unknown
		return "error"
	}
}

// Progress is the progress line of a rollout, e.g. "batch 2 of 4 · 3/12
// instances on abc1234": the batch under way (the first not done) and how
// many instances run the release. It is the only place that line is built.
func Progress(d Deploy) string {
	rel := Short(d.SHA)
	counts := fmt.Sprintf("%d/%d instances on %s", d.Done, d.Total, rel)
	n := len(d.Batches)
	if n == 0 {
		if d.Total > 0 && d.Done >= d.Total {
			return "nothing to do · " + counts
		}
		return "planning the rollout of " + rel
	}
	cur := current(d.Batches)
	if cur == n {
		return fmt.Sprintf("%d of %s done · %s", n, plural(n, "batch", "batches"), counts)
	}
	return fmt.Sprintf("batch %d of %d · %s", cur+1, n, counts)
}

// current is the position of the first batch not done; len(bs) when all are.
func current(bs []Batch) int {
	for i, b := range bs {
		if b.State != BatchDone {
			return i
		}
	}
	return len(bs)
}

// headline is a deploy in one line: the status description and the check
// run's title.
func headline(d Deploy) string {
	rel := Short(d.SHA)
	env := oneLine(d.Env)
	var s string
	switch d.State {
	case StateQueued:
		if d.Kind == KindPreview {
			s = "Queued: preview of " + rel
		} else {
			s = "Queued to deploy " + rel + " to " + env
		}
	case StateWaitingForChecks:
		s = waitingLine("Waiting for checks: ", d.WaitingOn)
	case StateFrozen:
		s = frozenLine(d)
	case StateLocked:
		s = "Queued behind the lock on " + env
		if d.LockedBy != "" {
			s += " held by " + mention(d.LockedBy)
		}
		if r := oneLine(d.LockReason); r != "" {
			s = squeeze(s+": ", r, "", MaxDescription)
		}
	case StateSuperseded:
		s = "Superseded by a newer deploy"
		if d.SupersededBy != "" {
			s = "Superseded by " + Short(d.SupersededBy)
		}
	case StateInProgress:
		switch {
		case rollingBack(d):
			to := "Rolling back: "
			if d.Previous != "" {
				to = "Rolling back to " + Short(d.Previous) + ": "
			}
			s = squeeze(to, or(cause(d), "a batch failed"), "", MaxDescription)
		case d.Kind == KindPreview && len(d.Batches) == 0:
			s = "Building preview of " + rel
		default:
			s = Progress(d)
		}
	case StateSuccess:
		took := ""
		if t := elapsed(d); t > 0 {
			took = " in " + FormatDuration(t)
		}
		switch d.Kind {
		case KindPreview:
			s = "Preview of " + rel + " ready" + took
		case KindRollback:
			s = fmt.Sprintf("%d/%d instances back on %s%s", d.Done, d.Total, rel, took)
		default:
			s = fmt.Sprintf("%d/%d instances on %s%s", d.Done, d.Total, rel, took)
		}
	case StateFailure:
		c := or(cause(d), "the deploy failed")
		// A cause that names the release (analysis: "error rate 34% on
		// abc1234 vs …") needs no " on abc1234" after it.
		on := " on " + rel
		if strings.Contains(c, rel) {
			on = ""
		}
		switch {
		case d.Kind == KindPreview:
			s = squeeze("Preview of "+rel+" failed: ", c, "", MaxDescription)
		case len(d.RolledBack) > 0 && len(notRolledBack(d)) > 0:
			s = squeeze("Partly rolled back: ", c, on, MaxDescription)
		case len(d.RolledBack) > 0:
			s = squeeze("Rolled back: ", c, on, MaxDescription)
		default:
			s = squeeze("Failed: ", c, on, MaxDescription)
		}
	case StateError:
		s = squeeze("Not deployed: ", or(cause(d), "the rollout could not start"), "", MaxDescription)
	case StateCancelled:
		s = "Cancelled at " + Progress(d)
	case StateInactive:
		switch {
		case d.Kind == KindPreview:
			s = "Preview torn down"
		case d.SupersededBy != "":
			s = "Replaced by " + Short(d.SupersededBy)
		default:
			s = "No longer the live deploy"
		}
	default:
		s = "Unknown state " + string(d.State)
	}
	return fit(oneLine(s), MaxDescription)
}

// waitingLine names as many of the checks as fit after prefix, then how
// many more.
func waitingLine(prefix string, checks []string) string {
	names := make([]string, 0, len(checks))
	for _, c := range checks {
		if c = oneLine(c); c != "" {
			names = append(names, c)
		}
	}
	if len(names) == 0 {
		return strings.TrimSuffix(prefix, "checks: ") + "required checks"
	}
	for k := len(names); k >= 1; k-- {
		s := prefix + strings.Join(names[:k], ", ")
		if k < len(names) {
			s += fmt.Sprintf(" and %d more", len(names)-k)
		}
		if utf8.RuneCountInString(s) <= MaxDescription {
			return s
		}
	}
	more := ""
	if len(names) > 1 {
		more = fmt.Sprintf(" and %d more", len(names)-1)
	}
	return squeeze(prefix, names[0], more, MaxDescription)
}

// cause is what failed, naming the instance when the reason does not.
func cause(d Deploy) string {
	r, inst := oneLine(d.Reason), oneLine(d.FailedInstance)
	switch {
	case inst == "" || strings.Contains(r, inst):
		return r
	case r == "":
		return inst + " failed"
	default:
		return inst + ": " + r
	}
}

// rollingBack reports whether a running deploy is putting instances back.
func rollingBack(d Deploy) bool {
	for _, b := range d.Batches {
		if b.State == BatchRollingBack || b.State == BatchRolledBack || b.State == BatchFailed {
			return true
		}
	}
	return false
}

// elapsed is how long the deploy ran; 0 when not known.
func elapsed(d Deploy) time.Duration {
	if d.StartedAt.IsZero() || d.FinishedAt.IsZero() {
		return 0
	}
	return max(d.FinishedAt.Sub(d.StartedAt), 0)
}

func or(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}
