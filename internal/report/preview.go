package report

import (
	"strings"
)

// PreviewMarker starts the one comment per pull request that shows its
// preview; the bot finds the comment again by it and edits it in place.
const PreviewMarker = "<!-- shipbot:preview -->"

var previewWords = map[PreviewState]string{
	PreviewBuilding: "⏳ building",
	PreviewReady:    "✅ ready",
	PreviewFailed:   "❌ failed",
}

// PreviewComment is the body of a pull request's preview comment: the
// marker, then one row with the link, the commit, the state and when it
// last changed; after close, that the preview is torn down, with no link.
func PreviewComment(p Preview) string {
	var b strings.Builder
	b.WriteString(PreviewMarker + "\n")
	updated := FormatTime(p.UpdatedAt)

	if p.State == PreviewTornDown {
		b.WriteString("**Preview torn down.**")
		if p.SHA != "" {
			b.WriteString(" It last ran " + code(Short(p.SHA)) + ".")
		}
		if r := md(fit(oneLine(p.Reason), maxNote)); r != "" {
			b.WriteString(" " + capital(strings.TrimSuffix(r, ".")) + ".")
		}
		b.WriteString("\n")
		if updated != "" {
			b.WriteString("\n<sub>Updated " + updated + "</sub>\n")
		}
		return clip(b.String(), MaxCommentBody)
	}

	where := "—"
	if p.URL != "" {
		where = link(hostPath(p.URL), p.URL)
	}
	state, ok := previewWords[p.State]
	if !ok {
		state = md(string(p.State))
	}
	if p.LogURL != "" {
		state += " · " + link("log", p.LogURL)
	}
	b.WriteString("| Preview | Commit | State | Updated |\n| --- | --- | --- | --- |\n")
	b.WriteString("| " + strings.Join([]string{cell(where), cell(or(code(Short(p.SHA)), "—")), cell(state), or(updated, "—")}, " | ") + " |\n")

	if p.State == PreviewFailed {
		r := strings.TrimSuffix(md(fit(oneLine(p.Reason), maxNote)), ".")
		b.WriteString("\n**Preview failed:** " + or(r, "the build or its health checks failed") + ". Push a fix to try again.\n")
	}
	return clip(b.String(), MaxCommentBody)
}

// capital is s with its first letter upper-case.
func capital(s string) string {
	if s == "" {
		return s
	}
	r := []rune(s)
	return strings.ToUpper(string(r[0])) + string(r[1:])
}
