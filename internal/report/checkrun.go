package report

import (
	"fmt"
	"strings"
)

// CheckRunOutput is the shipbot/ENV check run for a deploy: its status and
// conclusion, and the output GitHub shows.
type CheckRunOutput struct {
	Status     string // queued, in_progress, completed
	Conclusion string // when completed: success, failure, cancelled, neutral; "" while running
	Title      string // the same line as the deployment status description
	Summary    string // Markdown, at most MaxCheckRunText bytes
	Text       string // Markdown table of batches, at most MaxCheckRunText bytes; "" before a plan
}

// Bounds that keep the check run readable; GitHub's limits are far above.
const (
	maxTableRows    = 30  // rows of the batch table, "… N more batches" rows included
	maxCellNames    = 5   // instances named in one table cell
	maxListedNames  = 10  // instances named in a sentence (rolled back, left behind)
	maxListedChecks = 30  // checks named while waiting on them
	maxNotes        = 20  // plan notes shown
	maxNote         = 500 // characters of one note, of a reason
	maxName         = 100 // characters of one instance or zone name in the table
)

// CheckRun is the check run for d.
func CheckRun(d Deploy) CheckRunOutput {
	status, conclusion := checkState(d.State)
	return CheckRunOutput{
		Status:     status,
		Conclusion: conclusion,
		Title:      headline(d),
		Summary:    clip(summary(d), MaxCheckRunText),
		Text:       clip(batchTable(d), MaxCheckRunText),
	}
}

func checkState(s State) (status, conclusion string) {
	switch s {
	case StateQueued, StateWaitingForChecks, StateLocked, StateFrozen:
		return "queued", ""
	case StateInProgress:
		return "in_progress", ""
	case StateSuccess:
		return "completed", "success"
	case StateFailure, StateError: // an error deployed nothing: the commit is not shipped
		return "completed", "failure"
	case StateCancelled:
		return "completed", "cancelled"
	default: // superseded, inactive: no verdict on the commit
		return "completed", "neutral"
	}
}

var stateIcon = map[State]string{
	StateQueued:           "⏳",
	StateWaitingForChecks: "⏳",
	StateLocked:           "🔒",
	StateFrozen:           "❄️",
	StateSuperseded:       "⏭️",
	StateInProgress:       "🚀",
	StateSuccess:          "✅",
	StateFailure:          "❌",
	StateError:            "⚠️",
	StateCancelled:        "⏹️",
	StateInactive:         "💤",
}

// summary is the check run's summary: the headline, what happened in
// sentences, then the facts (environment, release, trigger, times, page).
func summary(d Deploy) string {
	var b strings.Builder
	b.WriteString("### ")
	if icon := stateIcon[d.State]; icon != "" {
		b.WriteString(icon + " ")
	}
	b.WriteString(md(headline(d)))
	b.WriteString("\n\n")

	if p := detail(d); len(p) > 0 {
		b.WriteString(strings.Join(p, "\n\n"))
		b.WriteString("\n\n")
	}

	env := md(d.Env)
	if d.EnvironmentURL != "" && !(d.State == StateInactive && d.Kind == KindPreview) {
		env += " · " + link(hostPath(d.EnvironmentURL), d.EnvironmentURL)
	}
	fact(&b, "Environment", env)
	rel := code(Short(d.SHA))
	if ref := oneLine(d.Ref); ref != "" && ref != d.SHA && !strings.HasPrefix(d.SHA, ref) {
		rel += " from " + code(ref)
	}
	if d.Previous != "" {
		rel += ", replacing " + code(Short(d.Previous))
	}
	fact(&b, "Release", rel)
	fact(&b, "Triggered by", trigger(d))
	fact(&b, "Started", FormatTime(d.StartedAt))
	if fin := FormatTime(d.FinishedAt); fin != "" {
		if t := elapsed(d); t > 0 {
			fin += ", after " + FormatDuration(t)
		}
		fact(&b, "Finished", fin)
	}
	if d.LogURL != "" {
		fact(&b, "Deploy page", link(hostPath(d.LogURL), d.LogURL))
	}

	if len(d.Notes) > 0 {
		b.WriteString("\n#### Notes\n\n")
		for i, n := range d.Notes {
			if i == maxNotes {
				fmt.Fprintf(&b, "- … and %s\n", plural(len(d.Notes)-i, "more note", "more notes"))
				break
			}
			b.WriteString("- " + md(fit(oneLine(n), maxNote)) + "\n")
		}
	}
	return b.String()
}

// fact is one "- **Name:** value" line; nothing when value is empty.
func fact(b *strings.Builder, name, value string) {
	if value != "" {
		b.WriteString("- **" + name + ":** " + value + "\n")
	}
}

// trigger says who or what started the deploy.
func trigger(d Deploy) string {
	var s string
	switch d.Kind {
	case KindPush:
		s = "push"
		if d.Ref != "" {
			s += " to " + code(d.Ref)
		}
	case KindComment:
		s = code("/deploy")
	case KindRollback:
		s = code("/rollback")
	case KindPreview:
		s = "pull request"
	default:
		s = md(string(d.Kind))
	}
	if d.Kind == KindPreview && d.PR > 0 {
		s += fmt.Sprintf(" #%d", d.PR)
	}
	if d.Creator != "" {
		s += " by " + md(mention(d.Creator))
	}
	if d.Kind != KindPreview && d.PR > 0 {
		s += fmt.Sprintf(" on #%d", d.PR)
	}
	return s
}

// detail is what the headline cannot say: why it waits, what failed where
// and what was put back. Each element is a paragraph.
func detail(d Deploy) []string {
	env, rel := md(d.Env), code(Short(d.SHA))
	switch d.State {
	case StateQueued:
		return []string{fmt.Sprintf("Waiting for %s to be free: one deploy runs per environment at a time.", env)}
	case StateWaitingForChecks:
		if len(d.WaitingOn) == 0 {
			return []string{fmt.Sprintf("Waiting for the required checks on %s to pass; if one fails, so does this deploy.", rel)}
		}
		checks := make([]string, 0, len(d.WaitingOn))
		for _, c := range d.WaitingOn {
			checks = append(checks, code(c))
		}
		return []string{fmt.Sprintf("Waiting for %s on %s to pass: %s. If one fails, so does this deploy.",
			plural(len(checks), "required check", "required checks"), rel, list(checks, maxListedChecks))}
	case StateFrozen:
		return frozenDetail(d)
	case StateLocked:
		s := fmt.Sprintf("**%s is locked**", env)
		if d.LockedBy != "" {
			s += " by " + md(mention(d.LockedBy))
		}
		if r := md(fit(oneLine(d.LockReason), maxNote)); r != "" {
			s += ": " + r
		}
		return []string{s + ".", fmt.Sprintf("This deploy starts when someone allowed to deploy there comments %s.", code("/unlock "+oneLine(d.Env)))}
	case StateSuperseded:
		by := "A newer deploy"
		if d.SupersededBy != "" {
			by = "A newer deploy (" + code(Short(d.SupersededBy)) + ")"
		}
		return []string{fmt.Sprintf("%s to %s was queued before this one started, so this one was skipped. Nothing was changed.", by, env)}
	case StateInProgress:
		if rollingBack(d) {
			to := "the previous release"
			if d.Previous != "" {
				to = code(Short(d.Previous))
			}
			return []string{markdown.whatFailed(d), fmt.Sprintf("Putting every instance this deploy touched back on %s.", to)}
		}
	case StateFailure:
		return append([]string{markdown.whatFailed(d)}, markdown.putBack(d)...)
	case StateError:
		s := "Nothing was changed"
		if d.Previous != "" {
			s += fmt.Sprintf("; %s is still on %s", env, code(Short(d.Previous)))
		}
		return []string{s + "."}
	case StateCancelled:
		s := "**Cancelled**"
		if r := md(fit(oneLine(d.Reason), maxNote)); r != "" {
			s += ": " + r
		}
		s += fmt.Sprintf(". It stopped with %d/%d instances on %s", d.Done, d.Total, rel)
		if len(d.RolledBack) == 0 {
			s += "; nothing was rolled back."
		} else {
			s += fmt.Sprintf("; %s put back: %s.", plural(len(d.RolledBack), "instance was", "instances were"), markdown.names(d.RolledBack))
		}
		return []string{s}
	case StateInactive:
		switch {
		case d.Kind == KindPreview: // the headline says it all
		case d.SupersededBy != "":
			return []string{fmt.Sprintf("Replaced by %s, deployed to %s after this one.", code(Short(d.SupersededBy)), env)}
		}
	}
	return nil
}

// markup is how a text is marked up where it is read: GitHub Markdown
// (check runs) or Slack mrkdwn. The sentences that both say are built once,
// for either.
type markup struct {
	text func(string) string // text from people, made safe
	code func(string) string // a release or ref in code style
	bold string              // what surrounds bold text
}

var (
	markdown    = markup{text: md, code: code, bold: "**"}
	slackMrkdwn = markup{text: sx, code: slackCode, bold: "*"}
)

// names lists instance names, at most maxListedNames of them.
func (m markup) names(ids []string) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = m.text(fit(oneLine(id), maxName))
	}
	return list(out, maxListedNames)
}

// whatFailed says what failed, where and on which release.
func (m markup) whatFailed(d Deploy) string {
	s := m.bold + "What failed:" + m.bold + " " + m.text(fit(or(cause(d), "the deploy failed"), maxNote))
	if i := failedBatch(d); i >= 0 {
		b := d.Batches[i]
		if b.Canary {
			s += ", in the canary"
		} else {
			s += fmt.Sprintf(", in batch %d of %d", i+1, len(d.Batches))
		}
		if z := m.text(b.Zone); z != "" {
			s += " (zone " + z + ")"
		}
	}
	return s + ", on " + m.code(Short(d.SHA)) + "."
}

// putBack says what the failure's rollback did, and loudly what it left
// on the failed release.
func (m markup) putBack(d Deploy) []string {
	var out []string
	to := "the previous release"
	if d.Previous != "" {
		to = m.code(Short(d.Previous))
	}
	if n := len(d.RolledBack); n > 0 {
		out = append(out, fmt.Sprintf("%sRolled back:%s %s to %s: %s.", m.bold, m.bold, plural(n, "instance", "instances"), to, m.names(d.RolledBack)))
	}
	left := notRolledBack(d)
	switch {
	case len(left) > 0:
		out = append(out, fmt.Sprintf("⚠️ %sNot rolled back%s, still on %s: %s.", m.bold, m.bold, m.code(Short(d.SHA)), m.names(left)))
	case len(d.RolledBack) == 0:
		out = append(out, "No instance had been changed, so nothing was rolled back.")
	default:
		out = append(out, fmt.Sprintf("Every instance this deploy touched runs %s again.", to))
	}
	return out
}

// notRolledBack is the instances of batches this deploy began that are not
// among those rolled back.
func notRolledBack(d Deploy) []string {
	back := make(map[string]bool, len(d.RolledBack))
	for _, id := range d.RolledBack {
		back[id] = true
	}
	var left []string
	for _, b := range d.Batches {
		if b.State == BatchPending {
			continue
		}
		for _, id := range b.Instances {
			if !back[id] {
				left = append(left, id)
			}
		}
	}
	return left
}

// failedBatch is the position of the batch where the failure happened; -1
// when none is known.
func failedBatch(d Deploy) int {
	if d.FailedInstance != "" {
		for i, b := range d.Batches {
			for _, id := range b.Instances {
				if id == d.FailedInstance {
					return i
				}
			}
		}
	}
	for i, b := range d.Batches {
		if b.State == BatchFailed {
			return i
		}
	}
	return -1
}

// names lists instance names as Markdown, at most limit of them.
// list is "a, b, c", or "a, b and 7 more" past limit items.
func list(items []string, limit int) string {
	if len(items) <= limit {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:limit], ", ") + fmt.Sprintf(" and %d more", len(items)-limit)
}
