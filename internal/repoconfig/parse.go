package repoconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// maxFileSize bounds the work one repository's file can cause; a real
// configuration is a few hundred bytes.
const maxFileSize = 256 << 10

// The keys each level accepts, in the order SPEC §3 shows them (the order
// error messages list them in).
var (
	topKeys        = []string{"default_environment", "app", "environments", "preview", "notify"}
	appKeys        = []string{"build", "run", "port_env", "release", "env"}
	envKeys        = []string{"branch", "driver", "instances", "require_checks", "deployers", "allow_branches", "url", "env", "secrets", "freeze", "rollout", "health", "analysis", "aws"}
	rolloutKeys    = []string{"canary", "batch", "max_unavailable", "by_zone", "bake"}
	healthKeys     = []string{"path", "interval", "healthy_after", "timeout"}
	analysisKeys   = []string{"interval", "min_requests", "max_error_rate", "max_latency_p99", "prometheus"}
	prometheusKeys = []string{"url", "checks"}
	checkKeys      = []string{"name", "query", "max", "min"}
	fleetKeys      = []string{"region", "target_group_arn", "instance_tags", "install", "release", "alarms"}
	previewKeys    = []string{"driver", "forks", "ttl", "env", "secrets", "aws"}
	previewAWSKeys = []string{"install", "launch_template", "listener_arn", "domain", "hosted_zone_id"}
	notifyKeys     = []string{"slack", "webhooks"}
	slackKeys      = []string{"channel", "only"}
)

// fleetRequired and previewAWSRequired are the keys of an environment's
// aws: and of preview.aws: that driver aws cannot do without.
var (
	fleetRequired      = fleetKeys[:4]
	previewAWSRequired = previewAWSKeys[1:4]
)

// homes says where a key belongs, for an unknown key that is a real key at
// another level (canary: written straight under an environment). A key of
// two levels names both (interval: health: or analysis:); keys valid at
// most levels (driver, aws, path) and too general to point anywhere (name,
// max, min) are left out.
var homes = func() map[string]string {
	m := map[string]string{}
	add := func(where string, keys []string) {
		for _, k := range keys {
			if m[k] != "" {
				m[k] += " or " + where
			} else {
				m[k] = where
			}
		}
	}
	add("the top level", []string{"default_environment", "environments"})
	add("app:", appKeys)
	add("an environment (environments.NAME:)", []string{"branch", "instances", "require_checks", "deployers", "allow_branches", "url", "env", "secrets", "rollout", "health", "analysis"})
	add("rollout:", rolloutKeys)
	add("health:", []string{"interval", "healthy_after", "timeout"})
	add("analysis:", analysisKeys)
	add("analysis.prometheus:", prometheusKeys)
	add("a check in analysis.prometheus.checks:", []string{"query"})
	add("an environment's aws:", fleetKeys)
	add("preview:", []string{"forks", "ttl", "env", "secrets"})
	add("preview.aws:", previewAWSKeys)
	add("notify:", notifyKeys)
	add("notify.slack:", slackKeys)
	return m
}()

// Parse reads a .github/shipbot.yml. defaultBranch is the repository's
// default branch, which an environment named production deploys from unless
// the file says otherwise. An empty file, or one of only comments, gives
// Default(defaultBranch). The error, when there is one, is Errors: every
// problem found, each naming its line and key.
func Parse(data []byte, defaultBranch string) (*Config, error) {
	p := &parser{defaultBranch: defaultBranch, portEnv: defaultPortEnv}
	root := p.document(data)
	cfg := Default(defaultBranch)
	if root != nil {
		p.config(root, cfg)
	}
	if len(p.errs) > 0 {
		return nil, p.sorted()
	}
	return cfg, nil
}

// Bounds on what one file can cost: aliases and merge keys can make a small
// file stand for a huge one.
const (
	maxValues = 50_000 // keys and list items walked, aliases followed
	maxErrors = 100    // a person stops reading long before
)

type parser struct {
	defaultBranch string
	errs          Errors
	values        int  // keys and list items walked so far
	exhausted     bool // values passed maxValues: stop walking

	// portEnv and appRelease are app:'s, which the environments and
	// preview are checked against (app: is read first); portEnv is ""
	// when app.port_env is broken, and already reported.
	portEnv    string
	appRelease string
}

// spend counts n more values walked and reports whether the walk may go on.
func (p *parser) spend(line, n int) bool {
	if p.exhausted {
		return false
	}
	p.values += n
	if p.values > maxValues {
		p.exhausted = true
		p.errf(line, "", "the file stands for more than %d values once its aliases are followed; write it out plainly", maxValues)
		return false
	}
	return true
}

// sorted is the errors by line, without repeats (one anchor merged twice
// into a mapping reports its problems once), cut to maxErrors.
func (p *parser) sorted() Errors {
	slices.SortStableFunc(p.errs, func(a, b *Error) int { return a.Line - b.Line })
	var out Errors
	seen := map[Error]bool{}
	for _, e := range p.errs {
		if !seen[*e] {
			seen[*e] = true
			out = append(out, e)
		}
	}
	if len(out) > maxErrors {
		more := len(out) - maxErrors
		out = append(out[:maxErrors], &Error{Line: out[maxErrors].Line, Msg: fmt.Sprintf("and %d more problems from this line on", more)})
	}
	return out
}

// errf records a problem. Every Error prints as one line, so line breaks
// and other control characters that reach a message from the file (a key,
// a template) are escaped.
func (p *parser) errf(line int, path, format string, args ...any) {
	p.errs = append(p.errs, &Error{Line: max(line, 1), Path: oneLine(path), Msg: oneLine(fmt.Sprintf(format, args...))})
}

func oneLine(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) && !strings.ContainsAny(s, "\u2028\u2029") {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// document checks the bytes and parses them down to the top-level mapping;
// nil means defaults (or an error already recorded).
func (p *parser) document(data []byte) *yaml.Node {
	if len(data) > maxFileSize {
		p.errf(1, "", "the file is %d bytes; the limit is %d KiB", len(data), maxFileSize>>10)
		return nil
	}
	if !p.checkText(data) {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			p.syntaxError(data, err)
		}
		return nil
	}
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p.syntaxError(data, err)
			return nil
		}
		// A trailing "---" with nothing after it is harmless.
		if len(next.Content) == 1 && isNull(next.Content[0]) {
			continue
		}
		p.errf(next.Line, "", "a second YAML document starts here: shipbot reads a single document, so remove the --- or merge what follows into the first")
		return nil
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := deref(doc.Content[0])
	if isNull(root) {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		p.errf(root.Line, "", "the file must be a mapping of keys (%s), not %s", strings.Join(topKeys, ", "), describe(root))
		return nil
	}
	return root
}

// checkText finds what the YAML reader would reject without a line number:
// bytes that are not UTF-8 and characters YAML does not allow.
func (p *parser) checkText(data []byte) bool {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			p.errf(lineAt(data, i), "", "the file is not valid UTF-8 (byte 0x%02X); save it as UTF-8", data[i])
			return false
		case r == '\t', r == '\n', r == '\r', r == 0x85, r == 0xFEFF,
			r >= 0x20 && r <= 0x7E, r >= 0xA0 && r <= 0xD7FF,
			r >= 0xE000 && r <= 0xFFFD, r >= 0x10000:
		default:
			p.errf(lineAt(data, i), "", "the file contains the control character %U, which YAML does not allow; remove it", r)
			return false
		}
		i += size
	}
	return true
}

// splitLines splits after each line break as YAML counts them: \r\n, \r,
// \n, U+0085, U+2028 and U+2029, so that line numbers agree with yaml.v3's.
func splitLines(data []byte) [][]byte {
	var lines [][]byte
	start := 0
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		i += size
		switch r {
		case '\r':
			if i < len(data) && data[i] == '\n' {
				i++
			}
		case '\n', 0x85, 0x2028, 0x2029:
		default:
			continue
		}
		lines = append(lines, data[start:i])
		start = i
	}
	if start < len(data) {
		lines = append(lines, data[start:])
	}
	return lines
}

// lineAt is the 1-based line of the byte at offset off.
func lineAt(data []byte, off int) int {
	lines := splitLines(data[:off])
	if n := len(lines); n > 0 && !endsLine(lines[n-1]) {
		return n
	}
	return len(lines) + 1
}

func endsLine(line []byte) bool {
	r, _ := utf8.DecodeLastRune(line)
	return r == '\n' || r == '\r' || r == 0x85 || r == 0x2028 || r == 0x2029
}

var (
	syntaxLine    = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownAnchor = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)
)

// syntaxError turns a yaml.v3 error ("yaml: line 3: did not find expected
// key") into an Error; yaml.v3 leaves the line out for the first line, and
// for an unknown alias it is found by searching the text.
func (p *parser) syntaxError(data []byte, err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if m := syntaxLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if strings.HasPrefix(msg, "did not find expected") {
			line = problemLine(data, err.Error(), line)
		}
	} else if m := unknownAnchor.FindStringSubmatch(msg); m != nil {
		if i := bytes.Index(data, []byte("*"+m[1])); i >= 0 {
			line = lineAt(data, i)
		}
		msg = fmt.Sprintf("*%s refers to no anchor: define &%s before it", m[1], m[1])
	}
	p.errf(line, "", "YAML syntax error: %s", msg)
}

// problemLine finds the line a parser error is really about. For errors
// like "did not find expected key" yaml.v3 reports where the enclosing
// block began (and counts from 0), often several lines above the line
// whose indentation is wrong. The first failing prefix of the file ends on
// the line that broke it: each prefix that contains that line fails the
// same way, and none before it does, so a binary search finds it.
func problemLine(data []byte, full string, reported int) int {
	lines := splitLines(data)
	if len(lines) > maxRefineLines {
		return reported
	}
	fails := func(k int) bool {
		err := parseAll(bytes.Join(lines[:k], nil))
		return err != nil && err.Error() == full
	}
	lo, hi := 1, len(lines) // fails(hi) holds: it is the whole file
	for lo < hi {
		mid := (lo + hi) / 2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// maxRefineLines bounds problemLine's work; configuration files are tens of
// lines long.
const maxRefineLines = 5000

// parseAll parses every document, returning the first error.
func parseAll(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// entry is one key of a mapping.
type entry struct {
	name     string
	key, val *yaml.Node // val is never an alias
}

func (e entry) line() int { return e.val.Line }

// maxMergeDepth bounds merge keys (<<) that pull in mappings that merge
// others; an anchor may even contain itself.
const maxMergeDepth = 8

// mapping checks that n is a mapping and returns its entries in order, with
// merge keys (<<: *defaults) expanded and keys written out winning over
// merged ones. Duplicate keys are errors, and so are keys not in valid,
// unless valid is nil (environment names).
func (p *parser) mapping(n *yaml.Node, path string, valid []string) ([]entry, bool) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		if valid == nil {
			p.errf(n.Line, path, "expected a mapping of names to settings, got %s", describe(n))
		} else {
			p.errf(n.Line, path, "expected a mapping with keys like %s, got %s", strings.Join(valid, ", "), describe(n))
		}
		return nil, false
	}
	entries := p.entries(n, path, 0)
	if valid != nil {
		for _, e := range entries {
			if !slices.Contains(valid, e.name) {
				p.errf(e.key.Line, join(path, e.name), "%s", unknownKey(e.name, valid))
			}
		}
	}
	return entries, true
}

func (p *parser) entries(n *yaml.Node, path string, depth int) []entry {
	if !p.spend(n.Line, len(n.Content)/2) {
		return nil
	}
	var out, merged []entry
	first := map[string]int{} // name → line, for keys written out
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.errf(k.Line, here(path), "a key must be a plain name, not %s", describe(k))
			continue
		}
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			merged = append(merged, p.merge(v, path, depth)...)
			continue
		}
		if line, dup := first[k.Value]; dup {
			p.errf(k.Line, join(path, k.Value), "written twice (first on line %d); keep one", line)
			continue
		}
		first[k.Value] = k.Line
		out = append(out, entry{name: k.Value, key: k, val: v})
	}
	for _, e := range merged {
		if _, ok := first[e.name]; !ok {
			first[e.name] = e.key.Line
			out = append(out, e)
		}
	}
	return out
}

// merge expands the value of a merge key: a mapping or a list of them.
func (p *parser) merge(v *yaml.Node, path string, depth int) []entry {
	if depth >= maxMergeDepth {
		p.errf(v.Line, here(path), "merge keys (<<) nest more than %d deep", maxMergeDepth)
		return nil
	}
	switch v.Kind {
	case yaml.MappingNode:
		return p.entries(v, path, depth+1)
	case yaml.SequenceNode:
		var out []entry
		seen := map[string]bool{}
		for _, item := range v.Content {
			item = deref(item)
			if item.Kind != yaml.MappingNode {
				p.errf(item.Line, here(path), "<< merges mappings, like <<: *defaults; got %s", describe(item))
				continue
			}
			// The first mapping listed wins, as in YAML's merge key.
			for _, e := range p.entries(item, path, depth+1) {
				if !seen[e.name] {
					seen[e.name] = true
					out = append(out, e)
				}
			}
		}
		return out
	default:
		p.errf(v.Line, here(path), "<< merges mappings, like <<: *defaults; got %s", describe(v))
		return nil
	}
}

// fields is mapping for a level of known keys, by name, leaving out keys
// whose value is empty: an empty key counts as not written.
func (p *parser) fields(n *yaml.Node, path string, valid []string) (map[string]entry, bool) {
	entries, ok := p.mapping(n, path, valid)
	if !ok {
		return nil, false
	}
	m := make(map[string]entry, len(entries))
	for _, e := range entries {
		if slices.Contains(valid, e.name) && !isNull(e.val) {
			m[e.name] = e
		}
	}
	return m, true
}

func unknownKey(name string, valid []string) string {
	msg := "unknown key"
	if s := closest(name, valid); s != "" {
		msg += "; did you mean " + s + "?"
	} else if home, ok := homes[name]; ok {
		msg += "; " + name + " belongs under " + home
	}
	return msg + " (valid keys here: " + strings.Join(valid, ", ") + ")"
}

// closest is the valid key name is most likely a typo of, or "".
func closest(name string, valid []string) string {
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "", " ", "").Replace(strings.ToLower(s))
	}
	for _, v := range valid {
		if norm(v) == norm(name) {
			return v
		}
	}
	best, bestDist := "", 0
	for _, v := range valid {
		limit := 1
		switch {
		case len(v) > 8:
			limit = 3
		case len(v) > 4:
			limit = 2
		}
		if d := editDistance(name, v); d <= limit && (best == "" || d < bestDist) {
			best, bestDist = v, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance, counting an adjacent swap as one
// edit (the commonest typo).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// join adds a key to a path, quoting a key that is not a plain name.
func join(path, key string) string {
	if !plainKey.MatchString(key) {
		key = quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// here is path for a problem inside the mapping at path, which may be the
// top level.
func here(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_./@-]+$`)

// deref follows an alias to the node it names.
func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names a node for "got ..." in a message.
func describe(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case isNull(n):
		return "nothing"
	default:
		return quote(n.Value)
	}
}

// quote quotes a value from the file for a message, shortened if long.
func quote(s string) string {
	const limit = 40
	if utf8.RuneCountInString(s) > limit {
		s = string([]rune(s)[:limit]) + "…"
	}
	return strconv.Quote(s)
}
