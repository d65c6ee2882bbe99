package report

import (
	"maps"
	"slices"
	"strings"

	"github.com/shipbot/shipbot/internal/command"
)

// HelpText is the Markdown reply to /help and to an unknown command: the
// commands (specs, in the order to list them), and who may use them in each
// environment. envs is in the order to list them (the configuration's);
// perms says, per environment, who its deployers are, in words (Deployers
// says them). The text depends only on its arguments.
func HelpText(specs []command.Spec, envs []string, perms map[string]string) string {
	var b strings.Builder
	b.WriteString("Commands go one per line, at the start of a line, in a comment on a pull request:\n\n")
	b.WriteString("| command | what it does |\n| --- | --- |\n")
	for _, s := range specs {
		b.WriteString("| " + code(s.Synopsis) + " | " + s.Does + " |\n")
	}
	b.WriteString("\n")
	if anyone := commandsFor(specs, command.Anyone); anyone != "" {
		b.WriteString("Anyone who can comment may use " + anyone + ". ")
	}
	listed := distinct(envs)
	if len(listed) == 0 {
		b.WriteString("No environments are configured in `.github/shipbot.yml` yet.\n")
		return b.String()
	}
	b.WriteString("Who may use " + commandsFor(specs, command.Deployers) + " in each environment:\n\n")
	for _, e := range listed {
		who := oneLine(permFor(perms, e))
		if who == "" {
			who = "no one (no deployers configured)"
		}
		b.WriteString("- " + code(e) + ": " + who + "\n")
	}
	return b.String()
}

// Deployers says who an environment's deployers are, for the help text:
// the logins ("@alice, @bob"), or else everyone with at least permission
// least ("people with write permission or higher").
func Deployers(logins []string, least string) string {
	if len(logins) > 0 {
		ms := make([]string, len(logins))
		for i, l := range logins {
			ms[i] = "@" + strings.TrimPrefix(l, "@")
		}
		return strings.Join(ms, ", ")
	}
	if least == "admin" {
		return "people with admin permission"
	}
	return "people with " + least + " permission or higher"
}

// commandsFor lists the commands who may use: "`/status` and `/help`".
func commandsFor(specs []command.Spec, who command.Who) string {
	var names []string
	for _, s := range specs {
		if s.Who == who {
			names = append(names, code("/"+s.Name))
		}
	}
	return andList(names)
}

// distinct is envs without repeats; environment names ignore case.
func distinct(envs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range envs {
		if k := strings.ToLower(e); !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	return out
}

// permFor is perms[env], or the entry whose key matches env ignoring case
// (environment names ignore case); the first in sorted order if several do,
// so the text never depends on map order.
func permFor(perms map[string]string, env string) string {
	if who, ok := perms[env]; ok {
		return who
	}
	for _, k := range slices.Sorted(maps.Keys(perms)) {
		if strings.EqualFold(k, env) {
			return perms[k]
		}
	}
	return ""
}

// andList is "a", "a and b", "a, b and c".
func andList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}
