package command

import (
	"maps"
	"slices"
	"strings"
)

// usage is each command's synopsis and what it does, in help order.
var usage = []struct{ synopsis, does string }{
	{"/deploy [ENV] [REF]", "deploys this pull request's head commit (or REF: a SHA, branch or tag) to ENV, or to the default environment"},
	{"/rollback [ENV] [to REF]", "puts back the release before the current one (or the release REF) in ENV, or in production"},
	{"/lock ENV [reason…]", "stops deploys to ENV until /unlock; merges queue up behind the lock"},
	{"/unlock ENV", "releases the lock on ENV; queued deploys go ahead"},
	{"/status [ENV]", "shows the current release, lock, queue and last deploys of each environment (or ENV)"},
	{"/help", "shows this list"},
}

// HelpText is the Markdown reply to /help and to an unknown command: the
// commands, and who may use them in each environment. envs is in the order
// to list them (the configuration's); perms says, per environment, who may
// deploy, roll back, lock and unlock there, in words ("people with write
// permission or higher"). The text depends only on its arguments.
func HelpText(envs []string, perms map[string]string) string {
	var b strings.Builder
	b.WriteString("Commands go one per line, at the start of a line, in a comment on a pull request:\n\n")
	b.WriteString("| command | what it does |\n| --- | --- |\n")
	for _, u := range usage {
		b.WriteString("| " + code(u.synopsis) + " | " + u.does + " |\n")
	}
	b.WriteString("\nAnyone who can comment may use `/status` and `/help`. ")
	seen := map[string]bool{}
	var listed []string
	for _, e := range envs {
		if k := strings.ToLower(e); !seen[k] {
			seen[k] = true
			listed = append(listed, e)
		}
	}
	if len(listed) == 0 {
		b.WriteString("No environments are configured in `.github/shipbot.yml` yet.\n")
		return b.String()
	}
	b.WriteString("Who may use `/deploy`, `/rollback`, `/lock` and `/unlock` in each environment:\n\n")
	for _, e := range listed {
		who := strings.Join(strings.Fields(permFor(perms, e)), " ")
		if who == "" {
			who = "no one (no deployers configured)"
		}
		b.WriteString("- " + code(e) + ": " + who + "\n")
	}
	return b.String()
}

// code is s as a Markdown code span, whatever backticks it holds.
func code(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.Contains(s, "`") {
		return fence + " " + s + " " + fence
	}
	return fence + s + fence
}

// permFor is perms[env], or the entry whose key matches env ignoring case
// (environment names ignore case); the first in sorted order if several do,
// so the text never depends on map order.
func permFor(perms map[string]string, env string) string {
	if who, ok := perms[env]; ok {
		return who
	}
	keys := slices.Sorted(maps.Keys(perms))
	for _, k := range keys {
		if strings.EqualFold(k, env) {
			return perms[k]
		}
	}
	return ""
}
