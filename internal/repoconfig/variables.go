package repoconfig

import (
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// varName is what a name in env: or secrets: may be: the environment
// variable names POSIX guarantees, which every shell and runtime can read
// (a lower-case or dashed name cannot be read as $NAME in sh).
var varName = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)

// scopeVars reads the env: and secrets: of a block that has both (an
// environment, preview:); secretsEnv is the environment a secret's value
// is set for on the bot (bot secrets set OWNER/REPO ENV NAME).
func (p *parser) scopeVars(f map[string]entry, path, secretsEnv string) (map[string]string, []string) {
	var env map[string]string
	var lines map[string]int
	if e, ok := f["env"]; ok {
		env, lines = p.env(join(path, "env"), e.val)
	}
	var secrets []string
	if e, ok := f["secrets"]; ok {
		secrets = p.secrets(join(path, "secrets"), e.val, lines, secretsEnv)
	}
	return env, secrets
}

// env reads an env: mapping of variable names to values, and where each
// name is written (for the check against secrets:). Values are text as
// written: 4 is "4", true is "true", 1.50 is "1.50". It is nil when empty.
func (p *parser) env(path string, n *yaml.Node) (map[string]string, map[string]int) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		p.errf(n.Line, path, "expected a mapping of variable names to values, like {LOG_FORMAT: json}, got %s", describe(n))
		return nil, nil
	}
	entries, _ := p.mapping(n, path, nil)
	vars := make(map[string]string, len(entries))
	lines := make(map[string]int, len(entries))
	for _, e := range entries {
		kpath := join(path, e.name)
		if !p.checkVarName(kpath, e.key.Line, e.name, "LOG_FORMAT", "env") {
			continue
		}
		if v, ok := p.varValue(kpath, e.val); ok {
			vars[e.name], lines[e.name] = v, e.key.Line
		}
	}
	if len(vars) == 0 {
		return nil, lines
	}
	return vars, lines
}

// varValue is one env: value: any single value, read as the text written.
func (p *parser) varValue(path string, n *yaml.Node) (string, bool) {
	switch {
	case isNull(n):
		p.errf(n.Line, path, "has no value: write one, or \"\" for an empty value")
	case n.Kind != yaml.ScalarNode:
		p.errf(n.Line, path, "expected a single value, got %s: a variable holds text, so put the value in quotes if the brackets are part of it", describe(n))
	case strings.ContainsRune(n.Value, 0):
		p.errf(n.Line, path, "the value holds a NUL character (\\0), which no process's environment can carry: remove it")
	default:
		return n.Value, true
	}
	return "", false
}

// secrets reads a secrets: list of names, each once and none also in the
// same block's env: (envLines, name → line).
func (p *parser) secrets(path string, n *yaml.Node, envLines map[string]int, secretsEnv string) []string {
	n = deref(n)
	switch n.Kind {
	case yaml.SequenceNode:
	case yaml.MappingNode:
		p.errf(n.Line, path, "expected a list of names, got a mapping: a value in this file could be read by anyone who can read the repository, so list only the names, like [DATABASE_URL], and set each value with bot secrets set OWNER/REPO %s NAME", secretsEnv)
		return nil
	default:
		example := n.Value
		if !varName.MatchString(example) {
			example = "DATABASE_URL"
		}
		p.errf(n.Line, path, "expected a list of names: for one secret, write [%s]", example)
		return nil
	}
	if !p.spend(n.Line, len(n.Content)) {
		return nil
	}
	names := make([]string, 0, len(n.Content))
	seen := map[string]int{}
	for i, item := range n.Content {
		ipath, item := fmt.Sprintf("%s[%d]", path, i), deref(item)
		name, ok := p.secretName(ipath, item)
		if !ok {
			continue
		}
		if j, dup := seen[name]; dup {
			p.errf(item.Line, ipath, "%s is listed twice (first as secrets[%d]): list each secret once", name, j)
			continue
		}
		seen[name] = i
		if line, inEnv := envLines[name]; inEnv {
			p.errf(item.Line, ipath, "%s is also set in env on line %d: a variable comes from env or from secrets, so remove it from one of them", name, line)
			continue
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		return nil
	}
	return names
}

// secretName is one item of a secrets: list.
func (p *parser) secretName(path string, n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		p.errf(n.Line, path, "expected a secret's name, got %s: list names only, like [DATABASE_URL, STRIPE_KEY]", describe(n))
		return "", false
	}
	if isNull(n) || n.Value == "" {
		p.errf(n.Line, path, "empty: name the secret, like DATABASE_URL, or remove the item")
		return "", false
	}
	return n.Value, p.checkVarName(path, n.Line, n.Value, "DATABASE_URL", "secrets")
}

// checkVarName reports what is wrong with name, a variable written in
// env: or secrets: (the key named by from), and reports whether it is
// good. example is a name to show when name cannot be mended into one.
func (p *parser) checkVarName(path string, line int, name, example, from string) bool {
	switch {
	case name == "":
		p.errf(line, path, "a variable needs a name, like %s", example)
	case !varName.MatchString(name):
		if mended := mendVarName(name); varName.MatchString(mended) {
			example = mended
		}
		p.errf(line, path, "%s is not a variable name: use capital letters, digits and _, not starting with a digit, like %s", quote(name), example)
	case name == p.portEnv:
		p.errf(line, path, "%s is the port variable (app.port_env), which the driver sets to each instance's own port: remove it from %s", name, from)
	default:
		return true
	}
	return false
}

// mendVarName is name as the variable it most likely means: log-level is
// LOG_LEVEL.
func mendVarName(name string) string {
	return strings.ToUpper(strings.NewReplacer("-", "_", ".", "_", " ", "_").Replace(strings.TrimSpace(name)))
}
