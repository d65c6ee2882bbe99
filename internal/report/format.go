package report

import (
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits GitHub puts on what we write. Rendering stays inside them so that
// nothing is cut blindly on the way out.
const (
	// MaxDescription is the most characters a deployment status description
	// may have.
	MaxDescription = 140
	// MaxCheckRunText is the most characters a check run's output summary
	// or text may have. Rendering counts bytes, which is never fewer.
	MaxCheckRunText = 65535
	// MaxCommentBody is the most characters a comment may have.
	MaxCommentBody = 65536
)

// TimeLayout is how times are shown: always UTC, to the second.
const TimeLayout = "2006-01-02 15:04:05 UTC"

// Short is a release as people read it: a SHA's first 7 characters; any
// shorter name (a tag, "v1") whole.
func Short(release string) string {
	if utf8.RuneCountInString(release) <= 7 {
		return release
	}
	return string([]rune(release)[:7])
}

// FormatDuration is a duration as people read it: "850ms" under a second,
// whole seconds above ("41s", "4m12s", "1h5m", "2h").
func FormatDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	}
	// Duration.String says "4m0s" and "2h0m0s"; people say "4m" and "2h".
	s := d.Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// FormatTime is t in UTC in TimeLayout; "" for the zero time.
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(TimeLayout)
}

// oneLine collapses all white space, newlines included, to single spaces:
// descriptions, titles and table cells are one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// fit cuts s to at most n characters. A cut ends in "…", after the last
// whole word when one ends in the second half, else mid-word.
func fit(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	r := []rune(s)
	cut := n - 1 // room for the ellipsis; r[cut] is the first rune dropped
	i := cut
	for i > 0 && !unicode.IsSpace(r[i]) {
		i--
	}
	kept := string(r[:cut])
	if i >= cut/2 {
		if w := strings.TrimRightFunc(string(r[:i]), trailing); w != "" {
			kept = w
		}
	}
	return kept + "…"
}

// trailing is what a cut should not leave dangling before the ellipsis.
func trailing(r rune) bool { return unicode.IsSpace(r) || strings.ContainsRune(",;:·—-(", r) }

// squeeze is prefix+mid+suffix in at most n characters, cutting mid so that
// the prefix and suffix (the state, the release) survive.
func squeeze(prefix, mid, suffix string, n int) string {
	budget := n - utf8.RuneCountInString(prefix) - utf8.RuneCountInString(suffix)
	if budget < 12 {
		return fit(prefix+mid+suffix, n)
	}
	return prefix + fit(mid, budget) + suffix
}

// plural is "1 batch" or "3 batches".
func plural(n int, one, many string) string {
	if n == 1 {
		return strconv.Itoa(n) + " " + one
	}
	return strconv.Itoa(n) + " " + many
}

// mention is @login, whether or not login came with its @.
func mention(login string) string { return "@" + strings.TrimPrefix(oneLine(login), "@") }

// --- Markdown ---

// md is free text made safe for Markdown: one line, and no "<" that could
// open an HTML comment and hide the rest of the page.
func md(s string) string { return strings.ReplaceAll(oneLine(s), "<", "&lt;") }

// code is s as an inline code span, fenced with enough backticks for any
// backticks inside it.
func code(s string) string {
	s = oneLine(s)
	if s == "" {
		return ""
	}
	longest, run := 0, 0
	for _, c := range s {
		if c == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	if longest == 0 {
		return "`" + s + "`"
	}
	fence := strings.Repeat("`", longest+1)
	return fence + " " + s + " " + fence
}

// cell is Markdown made safe for a table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

var urlEscaper = strings.NewReplacer(" ", "%20", "(", "%28", ")", "%29", "<", "%3C", ">", "%3E", "\n", "", "\r", "")

var labelEscaper = strings.NewReplacer("[", `\[`, "]", `\]`)

// link is a Markdown link; the URL is escaped so no character ends it early.
func link(label, url string) string {
	return "[" + labelEscaper.Replace(md(label)) + "](" + urlEscaper.Replace(url) + ")"
}

// hostPath is a URL without its scheme, as a link's label.
func hostPath(url string) string {
	for _, p := range []string{"https://", "http://"} {
		if strings.HasPrefix(url, p) {
			return strings.TrimSuffix(strings.TrimPrefix(url, p), "/")
		}
	}
	return url
}

// clip cuts Markdown to at most n bytes at a line boundary, saying so. It
// is the last guard; the renderers bound every list before it is needed.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const note = "\n\n… (cut to fit GitHub's limit)"
	cut := n - len(note)
	if nl := strings.LastIndexByte(s[:cut], '\n'); nl > cut/2 {
		cut = nl
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + note
}

// Delivery is an environment's delivery figures over its last Days days,
// as internal/dora computes them.
type Delivery struct {
	Days, Deploys int
	Failures      int // failed changes: failed or rolled back
	Restores      int
	Restore       time.Duration // median time to restore, when Restores > 0
	LeadTimes     int
	LeadTime      time.Duration // median commit-to-success time, when LeadTimes > 0
}

// DeliverySummary says d in a line: how many deploys, the share that failed
// or were rolled back, the median lead time from commit to success, and
// the median time to restore, the last two only when there were any.
func DeliverySummary(d Delivery) string {
	s := plural(d.Deploys, "deploy", "deploys") + " in " + strconv.Itoa(d.Days) + " days"
	if d.Failures > 0 {
		s += " · " + strconv.Itoa(d.Failures*100/d.Deploys) + "% failed or rolled back"
	} else {
		s += " · none failed"
	}
	if d.LeadTimes > 0 {
		s += " · commit to live in " + FormatDuration(d.LeadTime) + " (median)"
	}
	if d.Restores > 0 {
		s += " · restored in " + FormatDuration(d.Restore) + " (median)"
	}
	return s
}
