package dora

import (
	"fmt"
	"html/template"
	"strings"
)

// Chart geometry, in SVG user units: one bar per day, failures stacked
// under successes so a bad day shows red at the foot of its bar.
const (
	barWidth    = 6
	barGap      = 2
	chartHeight = 48
	// minBar keeps a day with one deploy visible beside a day with fifty.
	minBar = 2
)

// Colours from GitHub's own palette, so the chart sits well beside its
// deployment badges.
const (
	colourSuccess = "#2da44e"
	colourFailure = "#cf222e"
	colourAxis    = "#d0d7de"
)

// Chart draws days as an inline SVG bar chart, one bar per day, its
// height the day's deploys and its red part the failures, scaled to the
// busiest day. Each bar has a <title> ("May 3: 4 deploys, 1 failed") that
// browsers show on hover; no script is needed. The markup is built only
// from numbers and dates, so it is safe to place in a page as is.
func Chart(days []Day) template.HTML {
	peak, deploys, failures := 0, 0, 0
	for _, d := range days {
		peak = max(peak, d.Deploys)
		deploys += d.Deploys
		failures += d.Failures
	}
	width := max(len(days)*(barWidth+barGap)-barGap, 1)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="dora-chart" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`,
		width, chartHeight+1, width, chartHeight+1, template.HTMLEscapeString(summary(len(days), deploys, failures)))
	fmt.Fprintf(&b, `<line x1="0" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="1"/>`, chartHeight, width, chartHeight, colourAxis)
	for i, d := range days {
		x := i * (barWidth + barGap)
		fmt.Fprintf(&b, `<g><title>%s</title>`, template.HTMLEscapeString(dayTitle(d)))
		total := barHeight(d.Deploys, peak)
		failed := barHeight(d.Failures, peak)
		switch {
		case d.Failures == d.Deploys:
			failed = total // rounding must not leave a green sliver on an all-red day
		case failed >= total:
			failed = total - 1 // nor paint a day with successes all red
		}
		if ok := total - failed; ok > 0 {
			fmt.Fprintf(&b, `<rect class="success" x="%d" y="%d" width="%d" height="%d" fill="%s"/>`, x, chartHeight-total, barWidth, ok, colourSuccess)
		}
		if failed > 0 {
			fmt.Fprintf(&b, `<rect class="failure" x="%d" y="%d" width="%d" height="%d" fill="%s"/>`, x, chartHeight-failed, barWidth, failed, colourFailure)
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// barHeight scales n against the busiest day; any n > 0 gets at least
// minBar.
func barHeight(n, peak int) int {
	if n <= 0 || peak <= 0 {
		return 0
	}
	return max(n*chartHeight/peak, minBar)
}

func dayTitle(d Day) string {
	s := d.Start.Format("Jan 2") + ": " + plural(d.Deploys, "deploy", "deploys")
	if d.Failures > 0 {
		s += fmt.Sprintf(", %d failed", d.Failures)
	}
	return s
}

func summary(days, deploys, failures int) string {
	return fmt.Sprintf("Deploys per day over %s: %s, %d failed", plural(days, "day", "days"), plural(deploys, "deploy", "deploys"), failures)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
