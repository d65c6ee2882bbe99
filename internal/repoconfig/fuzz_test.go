package repoconfig

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics; a failure is Errors, each with a line in
// the file and one printed line, a path unless it is about the whole file,
// and the same text every time; a success satisfies every rule Parse checks.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("testdata/spec-example.yml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(""))
	for _, tt := range badFiles {
		f.Add([]byte(tt.yaml))
	}
	f.Add([]byte("environments:\n  production:\n    health: &h {path: /up}\n  staging:\n    health:\n      <<: *h\n      interval: 1s\n"))
	f.Add([]byte("environments:\n  production:\n    rollout: {bake: 20s}\n    analysis: &a {interval: 20s, max_error_rate: 0.5%}\n  staging:\n    analysis: *a\n"))
	f.Add([]byte("app:\n  env: &e {A: 1, B: \"\"}\nenvironments:\n  staging:\n    env: {<<: *e, C: x}\n    secrets: [D, A]\npreview:\n  env: *e\n  secrets: [C]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "main")
		if err != nil {
			checkErrors(t, data, cfg, err)
			return
		}
		checkConfig(t, cfg)
	})
}

// fileLevel are the messages about the file as a whole, the only ones
// without a key path.
var fileLevel = []string{
	"the file is ",
	"the file contains the control character",
	"YAML syntax error: ",
	"a second YAML document starts here",
	"the file must be a mapping",
	"the file stands for more than",
	"and ",
}

func checkErrors(t *testing.T, data []byte, cfg *Config, err error) {
	t.Helper()
	if cfg != nil {
		t.Fatalf("config beside error %v", err)
	}
	var es Errors
	if !errors.As(err, &es) || len(es) == 0 {
		t.Fatalf("error %T %v is not a non-empty Errors", err, err)
	}
	lines := len(splitLines(data)) + 1 // a problem can be at the end of the file
	for _, e := range es {
		if e.Line < 1 || e.Line > lines {
			t.Errorf("line %d outside the file's %d lines: %v", e.Line, lines, e)
		}
		if e.Msg == "" {
			t.Errorf("empty message: %v", e)
		}
		if e.Path == "" && !startsWithAny(e.Msg, fileLevel) {
			t.Errorf("no path: %v", e)
		}
		if s := e.Error(); strings.ContainsAny(s, "\n\r\u0085\u2028\u2029") || !strings.HasPrefix(s, FilePath+" line ") {
			t.Errorf("not one line: %q", s)
		}
	}
	if _, again := Parse(data, "main"); again == nil || again.Error() != err.Error() {
		t.Errorf("not deterministic:\n%v\nthen\n%v", err, again)
	}
}

func startsWithAny(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func checkConfig(t *testing.T, cfg *Config) {
	t.Helper()
	if _, ok := cfg.Environments[cfg.DefaultEnvironment]; !ok {
		t.Errorf("default environment %q not among %v", cfg.DefaultEnvironment, cfg.EnvironmentNames())
	}
	if cfg.App.Build == "" || cfg.App.Run == "" || !envVarName.MatchString(cfg.App.PortEnv) {
		t.Errorf("app %+v", cfg.App)
	}
	checkVars(t, "app", cfg.App.PortEnv, cfg.App.Env, nil)
	branches := map[string]string{}
	for name, env := range cfg.Environments {
		if env.Name != name || checkEnvironmentName(name) != "" {
			t.Errorf("environment %q named %q", name, env.Name)
		}
		if env.Branch != "" {
			if other, dup := branches[env.Branch]; dup {
				t.Errorf("branch %q deploys to %s and %s", env.Branch, other, name)
			}
			branches[env.Branch] = name
		}
		switch env.Driver {
		case DriverLocal:
			if env.Instances < 1 || env.Instances > maxLocalInstances || env.AWS != nil || env.Rollout.Canary > env.Instances {
				t.Errorf("local environment %s: %+v", name, env)
			}
		case DriverAWS:
			a := env.AWS
			if env.Instances != 0 || a == nil || a.Region == "" || a.TargetGroupARN == "" || len(a.InstanceTags) == 0 || checkInstall(a.Install) != "" {
				t.Errorf("aws environment %s: %+v %+v", name, env, a)
			}
		default:
			t.Errorf("environment %s driver %q", name, env.Driver)
		}
		r := env.Rollout
		if r.Canary < 1 || !validAmount(r.Batch) || !validAmount(r.MaxUnavailable) || r.Bake < 0 {
			t.Errorf("environment %s rollout %+v", name, r)
		}
		h := env.Health
		need, ok := passesTake(h.Interval, h.HealthyAfter)
		if !strings.HasPrefix(h.Path, "/") || h.Interval < minHealthInterval || h.HealthyAfter < 1 || !ok || h.Timeout <= need {
			t.Errorf("environment %s health %+v", name, h)
		}
		checkAnalysis(t, env)
		checkVars(t, name, cfg.App.PortEnv, env.Env, env.Secrets)
		if env.AWS != nil && (env.AWS.Release != "" && checkTemplate(env.AWS.Release, releaseNeedsSHA) != "" || cfg.App.Release != "" && env.AWS.Release == "") {
			t.Errorf("aws environment %s: app.release %q, aws.release %q", name, cfg.App.Release, env.AWS.Release)
		}
		d := env.Deployers
		if len(d.Logins) == 0 && d.Min < PermWrite {
			t.Errorf("environment %s deployers %+v", name, d)
		}
		if !env.RequireChecks.All && env.RequireChecks.Names == nil && env.RequireChecks.Names != nil {
			t.Errorf("environment %s checks %+v", name, env.RequireChecks)
		}
	}
	pv := cfg.Preview
	if pv.TTL < minPreviewTTL || (pv.Driver != DriverLocal && pv.Driver != DriverAWS) || (pv.Driver == DriverAWS && pv.AWS == nil) {
		t.Errorf("preview %+v", pv)
	}
	checkVars(t, "preview", cfg.App.PortEnv, pv.Env, pv.Secrets)
	if pv.AWS != nil && (pv.AWS.LaunchTemplate == "" || pv.AWS.ListenerARN == "" || pv.AWS.Domain == "" || checkInstall(pv.AWS.Install) != "") {
		t.Errorf("preview aws %+v", pv.AWS)
	}
}

// checkAnalysis: an environment is judged exactly when it has analysis
// or alarms, within every limit Parse sets, and bakes at least one
// interval; every query renders.
func checkAnalysis(t *testing.T, env *Environment) {
	t.Helper()
	var alarms []string
	if env.AWS != nil {
		alarms = env.AWS.Alarms
	}
	if len(alarms) != len(slices.Compact(slices.Sorted(slices.Values(alarms)))) || slices.Contains(alarms, "") {
		t.Errorf("environment %s alarms %q", env.Name, alarms)
	}
	a := env.Analysis
	if a == nil {
		if len(alarms) > 0 {
			t.Errorf("environment %s has alarms and no analysis", env.Name)
		}
		return
	}
	if a.Interval < minAnalysisInterval || a.Interval > maxAnalysisInterval || env.Rollout.Bake < a.Interval ||
		a.MinRequests < 1 || a.MinRequests > maxMinRequests || a.MaxErrorRate < 0 || a.MaxErrorRate > 1 || a.MaxLatencyP99 < 0 {
		t.Errorf("environment %s analysis %+v, bake %s", env.Name, a, env.Rollout.Bake)
	}
	if a.Prometheus == nil {
		return
	}
	if a.Prometheus.URL == "" || len(a.Prometheus.Checks) == 0 {
		t.Errorf("environment %s prometheus %+v", env.Name, a.Prometheus)
	}
	names := map[string]bool{}
	for _, c := range a.Prometheus.Checks {
		_, err := c.Render(QueryData{SHA: sampleSHA, Previous: samplePrevious, Environment: env.Name, Repo: "o/r"})
		if c.Name == "" || names[c.Name] || err != nil || (c.Max == nil && c.Min == nil) || (c.Max != nil && c.Min != nil && *c.Min > *c.Max) {
			t.Errorf("environment %s check %+v: %v", env.Name, c, err)
		}
		names[c.Name] = true
	}
}

func validAmount(a Amount) bool {
	if a.Percent != 0 {
		return a.Count == 0 && a.Percent >= 1 && a.Percent <= 100
	}
	return a.Count >= 1
}

// checkVars: every name is a variable name other than the port variable,
// no value holds a NUL, a secret is listed once and not also in env, and
// none is empty but nil.
func checkVars(t *testing.T, scope, portEnv string, env map[string]string, secrets []string) {
	t.Helper()
	if env != nil && len(env) == 0 || secrets != nil && len(secrets) == 0 {
		t.Errorf("%s: empty but not nil: env %#v secrets %#v", scope, env, secrets)
	}
	for name, v := range env {
		if !varName.MatchString(name) || name == portEnv || strings.ContainsRune(v, 0) {
			t.Errorf("%s: env %q=%q", scope, name, v)
		}
	}
	seen := map[string]bool{}
	for _, name := range secrets {
		_, inEnv := env[name]
		if !varName.MatchString(name) || name == portEnv || seen[name] || inEnv {
			t.Errorf("%s: secrets %q (env %q)", scope, secrets, env)
		}
		seen[name] = true
	}
}
