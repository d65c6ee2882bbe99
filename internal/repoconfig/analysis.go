package repoconfig

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"gopkg.in/yaml.v3"
)

const (
	// Judging more often than once a second reads too few requests to
	// say anything; less often than hourly leaves a batch unjudged for
	// most of a working day's rollout.
	minAnalysisInterval = time.Second
	maxAnalysisInterval = time.Hour
	// maxMinRequests is far above any bake's traffic worth waiting for; a
	// larger number is a typo that would leave every batch unjudged.
	maxMinRequests = 1_000_000
	// maxAlarmName is CloudWatch's limit on an alarm's name.
	maxAlarmName = 255
)

// decimal is a number as people write one: 0.5, -3, 1e-3; not 0x1p-2,
// 1_000, Inf or NaN, which strconv would take.
var decimal = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$`)

// judging sets env.Analysis from the analysis block, or to the defaults
// when only aws.alarms asks for the bake to be judged, and fits
// rollout.bake to the interval: three intervals unless bake is written,
// and never less than one, or the batch would move on unjudged. It runs
// after every block of the environment is read, so the order of the keys
// in the file does not matter.
func (p *parser) judging(path string, f map[string]entry, env *Environment, ro rolloutSeen) {
	intervalOK, intervalLine := true, 0
	e, written := f["analysis"]
	switch {
	case written:
		env.Analysis, intervalOK, intervalLine = p.analysis(join(path, "analysis"), e.val)
	case env.AWS != nil && len(env.AWS.Alarms) > 0:
		env.Analysis = defaultAnalysis()
	}
	if env.Analysis == nil || !intervalOK || !ro.bakeOK {
		return
	}
	interval := env.Analysis.Interval
	if ro.bakeLine == 0 {
		env.Rollout.Bake = bakeIntervals * interval
		return
	}
	if env.Rollout.Bake >= interval {
		return
	}
	bake, every, three := prettyDuration(env.Rollout.Bake), prettyDuration(interval), prettyDuration(bakeIntervals*interval)
	switch {
	case !written:
		p.errf(ro.bakeLine, join(path, "rollout.bake"), "bake %s is shorter than analysis.interval %s, the default, and aws.alarms are judged once an interval while a batch bakes: set bake to at least %s, or leave it out for three intervals (%s)",
			bake, every, every, three)
	case intervalLine == 0:
		p.errf(ro.bakeLine, join(path, "rollout.bake"), "bake %s is shorter than analysis.interval %s (the default): the batch would never be judged; set bake to at least %s, or leave it out for three intervals (%s)",
			bake, every, every, three)
	default:
		p.errf(ro.bakeLine, join(path, "rollout.bake"), "bake %s is shorter than analysis.interval %s: the batch would never be judged; set bake to at least %s, or leave it out for three intervals (%s)",
			bake, every, every, three)
	}
}

// analysis reads an environment's analysis block over the defaults. It
// says whether interval is good and, if written, its line, for the check
// of rollout.bake against it.
func (p *parser) analysis(path string, n *yaml.Node) (a *Analysis, intervalOK bool, intervalLine int) {
	a = defaultAnalysis()
	f, ok := p.fields(n, path, analysisKeys)
	if !ok {
		return a, false, 0
	}
	intervalOK = p.durationAtLeast(f, path, "interval", &a.Interval, minAnalysisInterval,
		fmt.Sprintf("is too short: analysis judges a batch at most once a second (%s)", minAnalysisInterval))
	if e, ok := f["interval"]; ok {
		intervalLine = e.line()
		if intervalOK && a.Interval > maxAnalysisInterval {
			p.errf(e.line(), join(path, "interval"), "%s is too long: a batch would bake that long unjudged; judge at least once an hour (%s)", e.val.Value, prettyDuration(maxAnalysisInterval))
			a.Interval, intervalOK = defaultAnalysisInterval, false
		}
	}
	if e, ok := f["min_requests"]; ok {
		if v, ok := p.count(join(path, "min_requests"), e.val, 1, maxMinRequests, "request"); ok {
			a.MinRequests = v
		}
	}
	if e, ok := f["max_error_rate"]; ok {
		if v, ok := p.share(join(path, "max_error_rate"), e.val); ok {
			a.MaxErrorRate = v
		}
	}
	p.durationAtLeast(f, path, "max_latency_p99", &a.MaxLatencyP99, time.Nanosecond,
		"is not a latency limit: make it longer than 0s, or leave max_latency_p99 out to show p99 without judging it")
	if e, ok := f["prometheus"]; ok {
		a.Prometheus = p.prometheus(join(path, "prometheus"), e)
	}
	return a, intervalOK, intervalLine
}

// share reads a percentage from 0% to 100% as a share from 0 to 1. A bare
// number is refused: 0.01 could mean 1% or 0.01%.
func (p *parser) share(path string, n *yaml.Node) (float64, bool) {
	s, ok := p.scalar(path, n)
	if !ok {
		return 0, false
	}
	num, isPercent := strings.CutSuffix(s, "%")
	switch {
	case isPercent && percentage.MatchString(num):
		v, err := strconv.ParseFloat(num, 64)
		if err == nil && v <= 100 {
			return v / 100, true
		}
		p.errf(n.Line, path, "%s is not a percentage from 0%% to 100%%", s)
	case !isPercent && decimal.MatchString(s):
		p.errf(n.Line, path, "%s has no %%: write a percentage from 0%% to 100%%, like 1%% or 0.5%%", s)
	default:
		p.errf(n.Line, path, "%s is not a percentage: write one from 0%% to 100%%, like 1%% or 0.5%%", quote(s))
	}
	return 0, false
}

func (p *parser) prometheus(path string, block entry) *Prometheus {
	f, ok := p.fields(block.val, path, prometheusKeys)
	if !ok {
		return nil
	}
	pr := &Prometheus{}
	p.required(path, block.key.Line, f, prometheusKeys, "prometheus:", map[string]string{
		"url":    "the address of your Prometheus, e.g. url: http://prometheus:9090",
		"checks": "a list of checks, each with a name, a query and max or min",
	})
	field(f, path, "url", &pr.URL, p.url)
	if e, ok := f["checks"]; ok {
		pr.Checks = p.promChecks(join(path, "checks"), e.val)
	}
	return pr
}

// promChecks reads prometheus.checks: a list of at least one check, their
// names unique, since a failed check is reported by its name.
func (p *parser) promChecks(path string, n *yaml.Node) []PrometheusCheck {
	n = deref(n)
	if n.Kind != yaml.SequenceNode {
		p.errf(n.Line, path, "expected a list of checks, each with a name, a query and max or min, got %s", describe(n))
		return nil
	}
	if len(n.Content) == 0 {
		p.errf(n.Line, path, "no checks: give at least one, with a name, a query and max or min, or remove prometheus:")
		return nil
	}
	if !p.spend(n.Line, len(n.Content)) {
		return nil
	}
	checks := make([]PrometheusCheck, 0, len(n.Content))
	type first struct{ index, line int }
	names := map[string]first{}
	for i, item := range n.Content {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		c, nameLine := p.promCheck(ipath, item)
		if c.Name != "" {
			if prev, dup := names[c.Name]; dup {
				p.errf(nameLine, join(ipath, "name"), "%s is already the name of checks[%d] (line %d): give each check its own name", quote(c.Name), prev.index, prev.line)
			} else {
				names[c.Name] = first{i, nameLine}
			}
		}
		checks = append(checks, c)
	}
	return checks
}

// promCheck reads one check, and the line of its name when it has one.
func (p *parser) promCheck(path string, n *yaml.Node) (PrometheusCheck, int) {
	var c PrometheusCheck
	f, ok := p.fields(n, path, checkKeys)
	if !ok {
		return c, 0
	}
	line := deref(n).Line
	p.required(path, line, f, checkKeys[:2], "a check", map[string]string{
		"name":  "what the check run calls the check, e.g. name: checkout errors",
		"query": `the PromQL query whose value is judged, e.g. query: sum(rate(checkout_errors_total{release="{{.SHA}}"}[1m]))`,
	})
	nameLine := 0
	if e, ok := f["name"]; ok {
		c.Name, _ = p.text(join(path, "name"), e.val)
		nameLine = e.line()
	}
	if e, ok := f["query"]; ok {
		qpath := join(path, "query")
		if s, ok := p.text(qpath, e.val); ok {
			if problem := checkQuery(s); problem != "" {
				p.errf(e.line(), qpath, "%s", problem)
			} else {
				c.Query = s
			}
		}
	}
	maxE, hasMax := f["max"]
	minE, hasMin := f["min"]
	if !hasMax && !hasMin {
		p.errf(line, path, "no limit: give max: to fail above a value, min: to fail below one, or both")
		return c, nameLine
	}
	if hasMax {
		if v, ok := p.number(join(path, "max"), maxE.val); ok {
			c.Max = &v
		}
	}
	if hasMin {
		if v, ok := p.number(join(path, "min"), minE.val); ok {
			c.Min = &v
		}
	}
	if c.Max != nil && c.Min != nil && *c.Min > *c.Max {
		p.errf(minE.line(), join(path, "min"), "min %s is above max %s, so every value would fail the check: make min at most max", minE.val.Value, maxE.val.Value)
	}
	return c, nameLine
}

// number is a finite number written in decimal.
func (p *parser) number(path string, n *yaml.Node) (float64, bool) {
	s, ok := p.scalar(path, n)
	if !ok {
		return 0, false
	}
	if !decimal.MatchString(s) {
		p.errf(n.Line, path, "%s is not a number: write it like 0.5, 100 or 1e-3", quote(s))
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		p.errf(n.Line, path, "%s is too large", s)
		return 0, false
	}
	return v, true
}

// queryFields are the fields a Prometheus query may use, as QueryData
// holds them.
var queryFields = []string{"SHA", "Previous", "Environment", "Repo"}

// queryOnly ends the message for a query that uses more than the fields.
const queryOnly = "the query may use only {{.SHA}}, {{.Previous}}, {{.Environment}} and {{.Repo}}"

// QueryData is what a Prometheus check's query is rendered with.
type QueryData struct {
	SHA         string // the release being judged
	Previous    string // the release it replaces
	Environment string // the environment's name
	Repo        string // OWNER/NAME
}

// Render is the check's query for d. Parse has rendered it once already,
// so an error here means a query that did not come from Parse.
func (c PrometheusCheck) Render(d QueryData) (string, error) {
	t, err := template.New("query").Option("missingkey=error").Parse(c.Query)
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	if err := t.Execute(&out, d); err != nil {
		return "", err
	}
	return out.String(), nil
}

// checkQuery says what is wrong with a Prometheus query template, or "".
// Like aws.install, it may hold only text and fields, here the four of
// QueryData: no functions, no control structures, so rendering it is
// always safe and cheap. A test render confirms it.
func checkQuery(s string) string {
	t, err := template.New("query").Option("missingkey=error").Parse(s)
	if err != nil {
		return "not a valid template: " + templateLine.ReplaceAllString(err.Error(), "")
	}
	if len(t.Templates()) > 1 {
		return "{{define}} and {{block}} are not allowed: " + queryOnly
	}
	for _, node := range t.Root.Nodes {
		switch node := node.(type) {
		case *parse.TextNode:
		case *parse.ActionNode:
			name, isField := fieldName(node.Pipe)
			switch {
			case !isField:
				return fmt.Sprintf("%s is not allowed: %s", node, queryOnly)
			case !slices.Contains(queryFields, name):
				hint := ""
				if s := closest(name, queryFields); s != "" {
					hint = " (did you mean {{." + s + "}}?)"
				}
				return fmt.Sprintf("%s is not a field the query can use%s: use {{.SHA}}, {{.Previous}}, {{.Environment}} or {{.Repo}}", node, hint)
			}
		default:
			return fmt.Sprintf("%s is not allowed: %s", node, queryOnly)
		}
	}
	sample := PrometheusCheck{Query: s}
	if _, err := sample.Render(QueryData{SHA: sampleSHA, Previous: samplePrevious, Environment: "production", Repo: "octo-org/web"}); err != nil {
		return fmt.Sprintf("cannot be rendered: %v", err)
	}
	return ""
}

// alarms reads aws.alarms: CloudWatch alarm names, each once. An empty
// list is no alarms.
func (p *parser) alarms(path string, n *yaml.Node) []string {
	n = deref(n)
	switch n.Kind {
	case yaml.SequenceNode:
	case yaml.ScalarNode:
		p.errf(n.Line, path, "expected a list of CloudWatch alarm names: for one alarm, write [%s]", n.Value)
		return nil
	default:
		p.errf(n.Line, path, "expected a list of CloudWatch alarm names, like [web-5xx-rate, web-p99], got %s", describe(n))
		return nil
	}
	names, ok := p.stringList(path, n)
	seen := map[string]int{}
	for i, name := range names {
		ipath, line := fmt.Sprintf("%s[%d]", path, i), deref(n.Content[i]).Line
		switch j, dup := seen[name]; {
		case name == "":
			// already reported
		case len(name) > maxAlarmName:
			p.errf(line, ipath, "the name is longer than CloudWatch's %d characters", maxAlarmName)
			ok = false
		case dup:
			p.errf(line, ipath, "%s is listed twice (first as alarms[%d]): list each alarm once", quote(name), j)
			ok = false
		default:
			seen[name] = i
		}
	}
	if !ok || len(names) == 0 {
		return nil
	}
	return names
}
