package report

import (
	"fmt"
	"strings"
)

// SlackDeploy is what a deploy's Slack message is rendered from: the same
// snapshot the GitHub texts use, and what only Slack shows (Slack is read
// away from GitHub, so the message carries the repository, the commit's
// title and the links back).
type SlackDeploy struct {
	Deploy
	Repo          string // owner/name
	Title         string // the release's commit title (its message's first line); "" when not known
	CommitURL     string // the release's commit on GitHub; "" when not known
	PRURL         string // pull request Deploy.PR on GitHub; "" when none
	DeploymentURL string // the GitHub deployment (its environment's deployments page)
}

// SlackMessage is a Slack message: Block Kit blocks, and the plain text
// Slack shows where blocks cannot be (notifications, screen readers,
// old clients). It marshals to the fields chat.postMessage takes.
type SlackMessage struct {
	Text   string       `json:"text"`
	Blocks []SlackBlock `json:"blocks"`
}

// SlackBlock is one Block Kit block. Only the two kinds shipbot uses are
// modelled: "section" (Text, and Fields shown two to a row) and "context"
// (Elements, small grey text under a section).
type SlackBlock struct {
	Type     string      `json:"type"`
	Text     *SlackText  `json:"text,omitempty"`
	Fields   []SlackText `json:"fields,omitempty"`
	Elements []SlackText `json:"elements,omitempty"`
}

// SlackText is a Block Kit text object, always "mrkdwn" here.
type SlackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// Block Kit's limits, which rendering stays within.
const (
	maxSlackSection = 3000 // characters of a section's text
	maxSlackField   = 2000 // characters of one field
	maxSlackTitle   = 200  // characters of a commit title, far below what a field holds
	maxSlackBar     = 20   // batches drawn as a bar; a longer plan is told in words only
)

func mrkdwn(s string) SlackText { return SlackText{Type: "mrkdwn", Text: s} }

// slackEscaper escapes the three characters Slack reads as markup, so that
// text from people (commit titles, /lock reasons, instance names) can open
// no link and mention no one ("<!channel>").
var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// sx is text from the snapshot made safe for Slack: one line, escaped.
func sx(s string) string { return slackEscaper.Replace(oneLine(s)) }

// slackURLEscaper keeps a URL inside <url|label>: a "|" or ">" would end it.
var slackURLEscaper = strings.NewReplacer("|", "%7C", ">", "%3E", "<", "%3C", " ", "%20", "\n", "", "\r", "")

// slackLink is <url|label>, or the label alone without a URL.
func slackLink(label, url string) string {
	if url == "" {
		return sx(label)
	}
	return "<" + slackURLEscaper.Replace(url) + "|" + sx(label) + ">"
}

// slackCode is a release or ref in code style; Slack has no escape for a
// backtick inside one, so a ref holding one is shown plain.
func slackCode(s string) string {
	s = oneLine(s)
	if s == "" || strings.Contains(s, "`") {
		return sx(s)
	}
	return "`" + sx(s) + "`"
}

// SlackDeployMessage is the one message a deploy has in the channel, posted
// when it is queued or starts and edited in place as it moves: what
// happened in a line, the release, who, the progress, and the links.
func SlackDeployMessage(s SlackDeploy) SlackMessage {
	title := slackTitle(s.Deploy)
	where := ""
	if r := sx(s.Repo); r != "" {
		where = " · " + r
	}
	line := slackLine(s.Deploy)
	top := stateIcon[s.State] + " *" + title + "*" + where + "\n" + line
	if more := slackDetail(s.Deploy); more != "" {
		top += "\n" + more
	}

	blocks := []SlackBlock{{Type: "section", Text: &SlackText{Type: "mrkdwn", Text: fit(top, maxSlackSection)}}}
	if f := slackFields(s); len(f) > 0 {
		blocks = append(blocks, SlackBlock{Type: "section", Fields: f})
	}
	if l := slackLinks(s); l != "" {
		blocks = append(blocks, SlackBlock{Type: "context", Elements: []SlackText{mrkdwn(l)}})
	}

	text := stateIcon[s.State] + " " + title + where + " — " + line
	return SlackMessage{Text: text, Blocks: blocks}
}

// slackLine is where the deploy is, in one line: the line GitHub shows as
// the deployment status, with a bar of batches while it runs. A queued
// deploy says what it waits for instead, the title having said the rest.
func slackLine(d Deploy) string {
	switch {
	case d.State == StateQueued && d.Kind != KindPreview:
		return "Waiting for " + sx(d.Env) + " to be free: one deploy runs per environment at a time."
	case d.State == StateInProgress && !rollingBack(d) && len(d.Batches) > 0 && len(d.Batches) <= maxSlackBar:
		bar := strings.Repeat("▰", current(d.Batches)) + strings.Repeat("▱", len(d.Batches)-current(d.Batches))
		return bar + " " + sx(headline(d))
	}
	return sx(headline(d))
}

// slackTitle is what happened to the deploy, in a few words naming the
// environment. Superseded and cancelled are told apart from failed: neither
// is something to fix.
func slackTitle(d Deploy) string {
	env := sx(d.Env)
	switch d.State {
	case StateQueued, StateWaitingForChecks:
		if d.Kind == KindPreview {
			return "Preview queued"
		}
		return "Queued for " + env
	case StateLocked:
		return "Waiting: " + env + " is locked"
	case StateFrozen:
		return "Waiting: " + env + " is frozen"
	case StateSuperseded:
		return "Skipped on " + env
	case StateInProgress:
		switch {
		case rollingBack(d):
			return "Rolling back " + env
		case d.Kind == KindPreview:
			return "Building the preview"
		case d.Kind == KindRollback:
			return "Rolling " + env + " back"
		}
		return "Deploying to " + env
	case StateSuccess:
		switch d.Kind {
		case KindPreview:
			return "Preview ready"
		case KindRollback:
			return "Rolled " + env + " back"
		}
		return "Deployed to " + env
	case StateFailure:
		if d.Kind == KindPreview {
			return "Preview failed"
		}
		return "Failed on " + env
	case StateError:
		return "Not deployed to " + env
	case StateCancelled:
		return "Cancelled on " + env
	case StateInactive:
		if d.Kind == KindPreview {
			return "Preview torn down"
		}
		return "No longer live on " + env
	}
	return sx(string(d.State)) + " on " + env
}

// slackDetail is a sentence the headline leaves out, for the states whose
// meaning is not obvious from it: why a skipped or cancelled deploy is not
// a failure, and what a failure left behind.
func slackDetail(d Deploy) string {
	switch d.State {
	case StateSuperseded:
		return "A newer deploy to " + sx(d.Env) + " was queued before this one started. Nothing was changed."
	case StateCancelled:
		s := "Stopped part-way"
		if r := sx(fit(oneLine(d.Reason), maxNote)); r != "" {
			s += " because " + strings.TrimSuffix(r, ".")
		}
		if len(d.RolledBack) == 0 {
			return s + "; nothing was rolled back."
		}
		return s + "; " + plural(len(d.RolledBack), "instance was", "instances were") + " put back."
	case StateFailure:
		if left := notRolledBack(d); len(left) > 0 && d.Kind != KindPreview {
			return fmt.Sprintf("⚠️ *Not rolled back:* %s still on %s.", plural(len(left), "instance", "instances"), slackCode(Short(d.SHA)))
		}
	case StateError:
		if d.Previous != "" {
			return "Nothing was changed; " + sx(d.Env) + " is still on " + slackCode(Short(d.Previous)) + "."
		}
		return "Nothing was changed."
	}
	return ""
}

// slackFields are the facts: release, who, and the release before.
// Progress is the message's second line, not a field.
func slackFields(s SlackDeploy) []SlackText {
	var out []SlackText
	add := func(name, value string) {
		if value != "" {
			out = append(out, mrkdwn(fit("*"+name+"*\n"+value, maxSlackField)))
		}
	}
	add("Release", slackRelease(s))
	add("Triggered by", slackTrigger(s))
	if d := s.Deploy; d.Previous != "" && d.State != StateSuperseded {
		add("Previous release", slackCode(Short(d.Previous)))
	}
	return out
}

// slackRelease is the short SHA (linked to its commit), the commit's title
// and what was asked for when that was a branch or tag.
func slackRelease(s SlackDeploy) string {
	rel := slackCode(Short(s.SHA))
	if s.CommitURL != "" {
		rel = slackLink(Short(s.SHA), s.CommitURL)
	}
	if t := oneLine(s.Title); t != "" {
		rel += " " + sx(fit(t, maxSlackTitle))
	}
	if ref := oneLine(s.Ref); ref != "" && ref != s.SHA && !strings.HasPrefix(s.SHA, ref) {
		rel += "\nfrom " + slackCode(ref)
	}
	return rel
}

// slackTrigger says who started the deploy and how, with the pull request
// it came from as a link.
func slackTrigger(s SlackDeploy) string {
	var how string
	switch s.Kind {
	case KindPush:
		how = "push"
	case KindComment:
		how = "`/deploy`"
	case KindRollback:
		how = "`/rollback`"
	case KindPreview:
		how = "pull request"
	default:
		how = sx(string(s.Kind))
	}
	if s.Creator != "" {
		how += " by " + sx(mention(s.Creator))
	}
	if s.PR > 0 {
		pr := fmt.Sprintf("#%d", s.PR)
		if s.PRURL != "" {
			pr = slackLink(pr, s.PRURL)
		}
		how += " on " + pr
	}
	return how
}

// slackLinks is the line of links under the message: the deploy page, the
// GitHub deployment and the environment.
func slackLinks(s SlackDeploy) string {
	var l []string
	if s.LogURL != "" {
		l = append(l, slackLink("Deploy page", s.LogURL))
	}
	if s.DeploymentURL != "" {
		l = append(l, slackLink("GitHub deployment", s.DeploymentURL))
	}
	if s.EnvironmentURL != "" && s.State != StateInactive {
		l = append(l, slackLink(hostPath(s.EnvironmentURL), s.EnvironmentURL))
	}
	return strings.Join(l, " · ")
}

// SlackThreadReply is the one reply a deploy gets in its message's thread
// when it fails (StateFailure) or could not begin (StateError): what went
// wrong, where, and what was put back. ok is false for every other state,
// which gets no reply.
func SlackThreadReply(s SlackDeploy) (msg SlackMessage, ok bool) {
	d := s.Deploy
	if d.State != StateFailure && d.State != StateError {
		return SlackMessage{}, false
	}
	var p []string
	if d.State == StateError {
		p = append(p, "⚠️ *Why it was not deployed:* "+sx(fit(or(cause(d), "the rollout could not start"), maxNote))+".")
		p = append(p, slackDetail(d))
	} else {
		p = append(p, "❌ "+slackMrkdwn.whatFailed(d))
		if d.Kind != KindPreview {
			p = append(p, slackMrkdwn.putBack(d)...)
		}
	}
	if s.LogURL != "" {
		p = append(p, "The log is on the "+slackLink("deploy page", s.LogURL)+".")
	}
	text := fit(strings.Join(p, "\n"), maxSlackSection)
	return SlackMessage{Text: text, Blocks: []SlackBlock{{Type: "section", Text: &SlackText{Type: "mrkdwn", Text: text}}}}, true
}
