package repoconfig

import (
	"bytes"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"gopkg.in/yaml.v3"
)

const (
	minHealthInterval = 100 * time.Millisecond // faster only loads the app
	maxHealthyAfter   = 100
	minPreviewTTL     = time.Hour
)

var (
	wholeNumber  = regexp.MustCompile(`^[+-]?[0-9]+$`)
	percentage   = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
	envVarName   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	envName      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	loginName    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,38}$`)
	awsRegion    = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	hostName     = regexp.MustCompile(`^(?i)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`)
	templateLine = regexp.MustCompile(`^template: [a-z]+:[0-9]+(:[0-9]+)?: `)
)

// Templates are rendered once while parsing, with these releases, to
// confirm they render.
const (
	sampleSHA      = "0123456789abcdef0123456789abcdef01234567"
	samplePrevious = "89abcdef0123456789abcdef0123456789abcdef"
)

// scalar is n's text; anything but a single value is an error. A null list
// item reads as "".
func (p *parser) scalar(path string, n *yaml.Node) (string, bool) {
	n = deref(n)
	if n.Kind != yaml.ScalarNode {
		p.errf(n.Line, path, "expected a single value, got %s", describe(n))
		return "", false
	}
	if isNull(n) {
		return "", true
	}
	return n.Value, true
}

// text is a scalar that must not be blank.
func (p *parser) text(path string, n *yaml.Node) (string, bool) {
	s, ok := p.scalar(path, n)
	if ok && strings.TrimSpace(s) == "" {
		p.errf(n.Line, path, "must not be empty")
		return "", false
	}
	return s, ok
}

func (p *parser) boolean(path string, n *yaml.Node) (bool, bool) {
	s, ok := p.scalar(path, n)
	if !ok {
		return false, false
	}
	switch s {
	case "true", "True", "TRUE":
		return true, true
	case "false", "False", "FALSE":
		return false, true
	}
	p.errf(n.Line, path, "%s is not true or false: write true or false", quote(s))
	return false, false
}

// count is a whole number from lo to hi (hi 0: no limit) of unit.
func (p *parser) count(path string, n *yaml.Node, lo, hi int, unit string) (int, bool) {
	s, ok := p.scalar(path, n)
	if !ok {
		return 0, false
	}
	if !wholeNumber.MatchString(s) {
		p.errf(n.Line, path, "%s is not a whole number", quote(s))
		return 0, false
	}
	// Out of int's range, Atoi gives the int of the same sign furthest
	// from zero, so a huge negative count is too small.
	v, err := strconv.Atoi(s)
	switch {
	case v < lo:
		p.errf(n.Line, path, "%s is too small: %s must be at least %d", s, lastKey(path), lo)
	case hi > 0 && (err != nil || v > hi):
		p.errf(n.Line, path, "%s is too many: at most %d %s", s, hi, plural(hi, unit))
	case err != nil:
		p.errf(n.Line, path, "%s is too large", s)
	default:
		return v, true
	}
	return 0, false
}

func plural(n int, unit string) string {
	switch {
	case n == 1:
		return unit
	case strings.HasSuffix(unit, "s"):
		return unit + "es"
	default:
		return unit + "s"
	}
}

func lastKey(path string) string {
	return path[strings.LastIndexByte(path, '.')+1:]
}

// amount is a count of instances ("3") or a percentage of them ("25%").
func (p *parser) amount(path string, n *yaml.Node, def Amount) (Amount, bool) {
	s, ok := p.scalar(path, n)
	if !ok {
		return def, false
	}
	if num, isPercent := strings.CutSuffix(s, "%"); isPercent && percentage.MatchString(num) {
		v, err := strconv.ParseFloat(num, 64)
		if err != nil || v < 1 || v > 100 {
			p.errf(n.Line, path, "%s is not a percentage from 1%% to 100%%", s)
			return def, false
		}
		return Amount{Percent: v}, true
	}
	if wholeNumber.MatchString(s) {
		v, err := strconv.Atoi(s)
		switch {
		case err != nil:
			p.errf(n.Line, path, "%s is too large", s)
		case v < 1:
			p.errf(n.Line, path, "%s is too small: %s must be at least 1, or a percentage like 25%%", s, lastKey(path))
		default:
			return Amount{Count: v}, true
		}
		return def, false
	}
	p.errf(n.Line, path, "%s is not a count or a percentage: use a whole number like 3 or a percentage like 25%%", quote(s))
	return def, false
}

// duration is Go's duration syntax (30s, 2m, 1h30m). A bare number other
// than 0 is refused: 30 could mean seconds or minutes.
func (p *parser) duration(path string, n *yaml.Node) (time.Duration, bool) {
	s, ok := p.scalar(path, n)
	if !ok {
		return 0, false
	}
	if wholeNumber.MatchString(s) && strings.Trim(s, "+-0") != "" {
		p.errf(n.Line, path, "%s has no unit: write %ss for seconds or %sm for minutes", s, s, s)
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		p.errf(n.Line, path, "%s is not a duration: use a number with a unit, like 30s, 2m or 1h30m", quote(s))
		return 0, false
	}
	return d, true
}

// prettyDuration drops the zero tails time.Duration prints: 2m, not 2m0s.
func prettyDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// passesTake is interval × n, false when that overflows.
func passesTake(interval time.Duration, n int) (time.Duration, bool) {
	if n > 0 && interval > math.MaxInt64/time.Duration(n) {
		return 0, false
	}
	return interval * time.Duration(n), true
}

// stringList reads a list of non-blank values, each path[i].
func (p *parser) stringList(path string, n *yaml.Node) ([]string, bool) {
	if !p.spend(n.Line, len(n.Content)) {
		return nil, false
	}
	out := make([]string, 0, len(n.Content))
	good := true
	for i, item := range n.Content {
		s, ok := p.text(fmt.Sprintf("%s[%d]", path, i), item)
		good = good && ok
		out = append(out, s)
	}
	return out, good
}

func (p *parser) checks(path string, n *yaml.Node, c *Checks) {
	n = deref(n)
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.Value {
		case "all":
			*c = Checks{All: true}
		case "none":
			*c = Checks{}
		default:
			p.errf(n.Line, path, "%s is not all, none or a list of check names: to require one check, write [%s]", quote(n.Value), n.Value)
		}
	case yaml.SequenceNode:
		if names, ok := p.stringList(path, n); ok {
			*c = Checks{Names: names}
		}
	default:
		p.errf(n.Line, path, "expected all, none or a list of check names, got %s", describe(n))
	}
}

func (p *parser) deployers(path string, n *yaml.Node, d *Deployers) {
	n = deref(n)
	switch n.Kind {
	case yaml.ScalarNode:
		perm, ok := ParsePermission(n.Value)
		switch {
		case !ok || perm.String() != n.Value:
			example := "alice, bob"
			if loginName.MatchString(n.Value) {
				example = n.Value
			}
			p.errf(n.Line, path, "%s is not a permission: use write, maintain or admin, or a list of logins like [%s]", quote(n.Value), example)
		case perm < PermWrite:
			p.errf(n.Line, path, "%s cannot deploy: deploying needs at least write (use write, maintain or admin, or list logins)", n.Value)
		default:
			*d = Deployers{Min: perm}
		}
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			p.errf(n.Line, path, "an empty list lets no one deploy: list logins, or give a permission like write")
			return
		}
		logins, ok := p.stringList(path, n)
		for i, login := range logins {
			ipath := fmt.Sprintf("%s[%d]", path, i)
			line := deref(n.Content[i]).Line
			switch {
			case login == "":
				// already reported
			case strings.HasPrefix(login, "@"):
				p.errf(line, ipath, "write the login without the @: %s", quote(strings.TrimPrefix(login, "@")))
				ok = false
			case strings.Contains(login, "/"):
				p.errf(line, ipath, "%s looks like a team; teams are not supported: list logins, or give a permission like write", quote(login))
				ok = false
			case !loginName.MatchString(login):
				p.errf(line, ipath, "%s is not a GitHub login", quote(login))
				ok = false
			}
		}
		if ok {
			*d = Deployers{Logins: logins}
		}
	default:
		p.errf(n.Line, path, "expected write, maintain, admin or a list of logins, got %s", describe(n))
	}
}

func (p *parser) url(path string, n *yaml.Node) (string, bool) {
	s, ok := p.scalar(path, n)
	if !ok {
		return "", false
	}
	u, err := url.Parse(s)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "":
		p.errf(n.Line, path, "%s is not an http(s) URL: write it like https://example.com", quote(s))
	case u.User != nil:
		p.errf(n.Line, path, "the URL holds a user name or password, which would show on GitHub: remove it")
	default:
		return s, true
	}
	return "", false
}

func (p *parser) region(path string, n *yaml.Node) (string, bool) {
	s, ok := p.text(path, n)
	if ok && !awsRegion.MatchString(s) {
		p.errf(n.Line, path, "%s is not an AWS region like us-east-1", quote(s))
		return "", false
	}
	return s, ok
}

// arn checks the shape only (arn:PARTITION:elasticloadbalancing:...); AWS
// itself judges the rest when the driver uses it.
func (p *parser) arn(path string, n *yaml.Node, what string) (string, bool) {
	s, ok := p.text(path, n)
	if !ok {
		return "", false
	}
	parts := strings.SplitN(s, ":", 4)
	if len(parts) < 4 || parts[0] != "arn" || parts[1] == "" || parts[2] != "elasticloadbalancing" {
		p.errf(n.Line, path, "%s is not a load balancer %s ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:...)", quote(s), what)
		return "", false
	}
	return s, true
}

func (p *parser) domain(path string, n *yaml.Node) (string, bool) {
	s, ok := p.text(path, n)
	if !ok {
		return "", false
	}
	if strings.Contains(s, "://") || strings.Contains(s, "/") {
		p.errf(n.Line, path, "%s is not a domain: give the domain alone, like preview.example.com", quote(s))
		return "", false
	}
	if len(s) > 253 || !hostName.MatchString(s) {
		p.errf(n.Line, path, "%s is not a domain name like preview.example.com", quote(s))
		return "", false
	}
	return s, true
}

// checkEnvironmentName says what is wrong with an environment name, or "".
// Names are typed in commands (/deploy NAME) and become GitHub environment
// names and check names (shipbot/NAME).
func checkEnvironmentName(name string) string {
	switch {
	case name == "":
		return "an environment needs a name"
	case len(name) > 255:
		return "the name is longer than GitHub's 255 characters"
	case !envName.MatchString(name):
		return fmt.Sprintf("%s is not a usable environment name: use letters, digits, '.', '-' and '_', starting with a letter or digit", quote(name))
	}
	return ""
}

// checkBranch says what is wrong with a branch name, or "". Empty is fine:
// no branch deploys automatically.
func checkBranch(b string) string {
	switch {
	case b == "":
		return ""
	case strings.HasPrefix(b, "refs/heads/"):
		return fmt.Sprintf("write the branch name, %s, not the ref %s", quote(strings.TrimPrefix(b, "refs/heads/")), quote(b))
	case strings.ContainsAny(b, "*?["):
		return fmt.Sprintf("%s is a pattern; name one branch", quote(b))
	}
	// git check-ref-format's rules, which GitHub enforces.
	bad := strings.HasPrefix(b, "-") || strings.HasPrefix(b, "/") || strings.HasSuffix(b, "/") ||
		strings.HasSuffix(b, ".") || strings.HasSuffix(b, ".lock") || b == "@" ||
		strings.Contains(b, "..") || strings.Contains(b, "//") || strings.Contains(b, "@{") ||
		strings.Contains(b, "/.") || strings.HasPrefix(b, ".") ||
		strings.ContainsFunc(b, func(r rune) bool { return r <= ' ' || r == 0x7f || strings.ContainsRune(`~^:\`, r) })
	if bad {
		return fmt.Sprintf("%s is not a valid branch name", quote(b))
	}
	return ""
}

func checkHealthPath(s string) string {
	u, err := url.Parse(s)
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || err != nil || strings.ContainsAny(s, " \t\r\n") || u.Fragment != "" {
		return fmt.Sprintf("%s is not a URL path: write it like /healthz", quote(s))
	}
	return ""
}

// What a command template that never uses {{.SHA}} is told. aws.release
// runs on an instance still on the previous release, so it too must be
// told the new one.
const (
	installNeedsSHA = "never uses {{.SHA}}: the command must say which release to install, e.g. install {{.SHA}}"
	releaseNeedsSHA = "never uses {{.SHA}}: it runs on an instance still on the previous release, so the command must say which release to prepare for, e.g. migrate {{.SHA}}"
)

// commandTemplate is a value reader for field: a command template held to
// checkTemplate's rule, told needsSHA when it lacks {{.SHA}}.
func (p *parser) commandTemplate(needsSHA string) func(path string, n *yaml.Node) (string, bool) {
	return func(path string, n *yaml.Node) (string, bool) {
		s, ok := p.text(path, n)
		if !ok {
			return "", false
		}
		if problem := checkTemplate(s, needsSHA); problem != "" {
			p.errf(n.Line, path, "%s", problem)
			return "", false
		}
		return s, true
	}
}

// checkInstall says what is wrong with an aws.install or
// preview.aws.install template, or "".
func checkInstall(s string) string { return checkTemplate(s, installNeedsSHA) }

// checkTemplate says what is wrong with a command template run through
// SSM (aws.install, aws.release, preview.aws.install), or "": needsSHA
// when it never uses {{.SHA}}. It may hold only text and {{.SHA}} actions:
// that is all a release needs, and it keeps rendering free of loops,
// functions and surprises. A test render confirms it.
func checkTemplate(s, needsSHA string) string {
	t, err := template.New("install").Option("missingkey=error").Parse(s)
	if err != nil {
		return "not a valid template: " + templateLine.ReplaceAllString(err.Error(), "")
	}
	if len(t.Templates()) > 1 {
		return "{{define}} and {{block}} are not allowed: the template may only use {{.SHA}}"
	}
	usesSHA := false
	for _, node := range t.Root.Nodes {
		switch node := node.(type) {
		case *parse.TextNode:
		case *parse.ActionNode:
			if !isSHA(node.Pipe) {
				return fmt.Sprintf("%s is not allowed: the template may only use {{.SHA}}", node)
			}
			usesSHA = true
		default:
			return fmt.Sprintf("%s is not allowed: the template may only use {{.SHA}}", node)
		}
	}
	if !usesSHA {
		return needsSHA
	}
	var out bytes.Buffer
	if err := t.Execute(&out, struct{ SHA string }{sampleSHA}); err != nil || !strings.Contains(out.String(), sampleSHA) {
		return fmt.Sprintf("cannot be rendered: %v", err)
	}
	return ""
}

func isSHA(pipe *parse.PipeNode) bool {
	name, ok := fieldName(pipe)
	return ok && name == "SHA"
}

// fieldName is the field an action's pipeline is when it is one field
// alone, like {{.SHA}}.
func fieldName(pipe *parse.PipeNode) (string, bool) {
	if pipe == nil || len(pipe.Decl) > 0 || len(pipe.Cmds) != 1 || len(pipe.Cmds[0].Args) != 1 {
		return "", false
	}
	f, ok := pipe.Cmds[0].Args[0].(*parse.FieldNode)
	if !ok || len(f.Ident) != 1 {
		return "", false
	}
	return f.Ident[0], true
}
