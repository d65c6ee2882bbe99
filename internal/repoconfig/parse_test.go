package repoconfig

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseErrors(t *testing.T) {
	for _, tt := range badFiles {
		t.Run(tt.name, func(t *testing.T) { checkParseErrors(t, tt.yaml, tt.want) })
	}
}

// checkParseErrors parses a bad file and compares every line Parse prints
// with want.
func checkParseErrors(t *testing.T, yaml string, want []string) {
	t.Helper()
	cfg, err := Parse([]byte(yaml), "main")
	if err == nil {
		t.Fatalf("Parse succeeded (%+v); want errors:\n%s", cfg, strings.Join(want, "\n"))
	}
	if cfg != nil {
		t.Errorf("Parse returned a config beside its error")
	}
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error is %T, want Errors", err)
	}
	if got, want := err.Error(), strings.Join(want, "\n"); got != want {
		t.Errorf("errors differ\ngot:\n%s\nwant:\n%s", got, want)
	}
	var one *Error
	if !errors.As(err, &one) || one != es[0] {
		t.Errorf("errors.As(err, *Error) does not reach the first problem")
	}
}

func TestParseSpecExample(t *testing.T) {
	data, err := os.ReadFile("testdata/spec-example.yml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(data, "main")
	if err != nil {
		t.Fatalf("the SPEC §3 example does not parse:\n%v", err)
	}
	want := &Config{
		DefaultEnvironment: "staging",
		App: App{
			Build: "go build -o app .", Run: "./app", PortEnv: "PORT",
			Release: "./app migrate",
			Env:     map[string]string{"LOG_FORMAT": "json"},
		},
		Environments: map[string]*Environment{
			"production": {
				Name:          "production",
				Branch:        "main",
				Driver:        DriverAWS,
				RequireChecks: Checks{All: true},
				Deployers:     Deployers{Min: PermWrite},
				URL:           "https://example.com",
				Env:           map[string]string{"CHECKOUT_V2": "on"},
				Secrets:       []string{"DATABASE_URL", "STRIPE_KEY"},
				Production:    true,
				Rollout: Rollout{
					Canary:         1,
					Batch:          Amount{Percent: 25},
					MaxUnavailable: Amount{Percent: 25},
					ByZone:         true,
					Bake:           30 * time.Second,
				},
				Health: Health{Path: "/healthz", Interval: 2 * time.Second, HealthyAfter: 2, Timeout: 2 * time.Minute},
				Analysis: &Analysis{
					Interval:      10 * time.Second,
					MinRequests:   20,
					MaxErrorRate:  0.01,
					MaxLatencyP99: 800 * time.Millisecond,
					Prometheus: &Prometheus{
						URL: "http://prometheus:9090",
						Checks: []PrometheusCheck{{
							Name:  "checkout errors",
							Query: `sum(rate(checkout_errors_total{release="{{.SHA}}"}[1m]))`,
							Max:   new(0.5),
						}},
					},
				},
				AWS: &AWSFleet{
					Region:         "us-east-1",
					TargetGroupARN: "arn:aws:elasticloadbalancing:...",
					InstanceTags:   map[string]string{"app": "web", "env": "production"},
					Install:        "sudo /opt/web/bin/install {{.SHA}}",
					Release:        "sudo /opt/web/bin/migrate {{.SHA}}",
					Alarms:         []string{"web-5xx-rate", "web-p99"},
				},
			},
			"staging": {
				Name:          "staging",
				Driver:        DriverLocal,
				Instances:     2,
				RequireChecks: Checks{All: true},
				Deployers:     Deployers{Min: PermWrite},
				AllowBranches: true,
				Rollout:       Rollout{Canary: 1, Batch: Amount{Percent: 25}, MaxUnavailable: Amount{Percent: 25}},
				Health:        Health{Path: "/healthz", Interval: 2 * time.Second, HealthyAfter: 2, Timeout: 2 * time.Minute},
			},
		},
		Preview: Preview{
			Driver:  DriverLocal,
			TTL:     72 * time.Hour,
			Env:     map[string]string{"APP_ENV": "preview"},
			Secrets: []string{"PREVIEW_DATABASE_URL"},
			AWS: &AWSPreview{
				Install:        "/opt/shipbot/install {{.SHA}}",
				LaunchTemplate: "web-preview",
				ListenerARN:    "arn:aws:elasticloadbalancing:...",
				Domain:         "preview.example.com",
			},
			Health: Health{Path: "/healthz", Interval: 2 * time.Second, HealthyAfter: 2, Timeout: 2 * time.Minute},
		},
		Notify: Notify{
			Slack:    &Slack{Channel: "#deploys", Only: []string{"production"}},
			Webhooks: []string{"https://hooks.example.com/cd"},
		},
	}
	diffConfig(t, got, want)
}

func TestDefault(t *testing.T) {
	health := Health{Path: "/healthz", Interval: 2 * time.Second, HealthyAfter: 2, Timeout: 2 * time.Minute}
	rollout := Rollout{Canary: 1, Batch: Amount{Percent: 25}, MaxUnavailable: Amount{Percent: 25}}
	want := &Config{
		DefaultEnvironment: "staging",
		App:                App{Build: "go build -o app .", Run: "./app", PortEnv: "PORT"},
		Environments: map[string]*Environment{
			"staging": {
				Name: "staging", Driver: DriverLocal, Instances: 2, AllowBranches: true,
				RequireChecks: Checks{All: true}, Deployers: Deployers{Min: PermWrite},
				Rollout: rollout, Health: health,
			},
			"production": {
				Name: "production", Branch: "trunk", Driver: DriverLocal, Instances: 4, Production: true,
				RequireChecks: Checks{All: true}, Deployers: Deployers{Min: PermWrite},
				Rollout: rollout, Health: health,
			},
		},
		Preview: Preview{Driver: DriverLocal, TTL: 72 * time.Hour, Health: health},
	}
	diffConfig(t, Default("trunk"), want)

	// No file, an empty file, comments, a bare document: all the defaults.
	for _, data := range []string{"", "\n\n", "# shipbot config\n# nothing yet\n", "---\n", "---\n# later\n", "~\n", "\ufeff# bom\n"} {
		got, err := Parse([]byte(data), "trunk")
		if err != nil {
			t.Errorf("Parse(%q): %v", data, err)
			continue
		}
		diffConfig(t, got, want)
	}
}

func TestParseKeepsDefaultsOutsideEnvironments(t *testing.T) {
	cfg := mustParse(t, `
app:
  build: make
preview:
  forks: true
`)
	if got := cfg.EnvironmentNames(); !reflect.DeepEqual(got, []string{"production", "staging"}) {
		t.Errorf("environments = %v, want the defaults", got)
	}
	if !cfg.App.Equal(App{Build: "make", Run: "./app", PortEnv: "PORT"}) {
		t.Errorf("app = %+v", cfg.App)
	}
	if !cfg.Preview.Forks || cfg.Preview.TTL != 72*time.Hour || cfg.Preview.Driver != DriverLocal {
		t.Errorf("preview = %+v", cfg.Preview)
	}
}

func TestParseEnvironmentsReplaceDefaults(t *testing.T) {
	cfg := mustParse(t, `
environments:
  Production:
    instances: 6
  qa:
  demo: {}
default_environment: QA
`)
	if got := cfg.EnvironmentNames(); !reflect.DeepEqual(got, []string{"Production", "demo", "qa"}) {
		t.Fatalf("environments = %v", got)
	}
	if cfg.DefaultEnvironment != "qa" {
		t.Errorf("default environment = %q, want the name as defined, qa", cfg.DefaultEnvironment)
	}
	prod, _ := cfg.Environment("production")
	if !prod.Production || prod.Branch != "main" || prod.Instances != 6 || prod.AllowBranches {
		t.Errorf("Production = %+v: want production defaults (branch main, no branches) with 6 instances", prod)
	}
	for _, name := range []string{"qa", "demo"} {
		env, _ := cfg.Environment(name)
		if env.Production || env.Branch != "" || env.Instances != 2 || env.AllowBranches || !env.RequireChecks.All || env.Deployers.Min != PermWrite {
			t.Errorf("%s = %+v: want the plain defaults", name, env)
		}
	}
}

func TestParseDefaultEnvironment(t *testing.T) {
	for _, tt := range []struct{ yaml, want string }{
		{"environments: {production: {}, staging: {}}", "staging"},
		{"environments: {production: {}, Staging: {}}", "Staging"},
		{"environments: {production: {}}", "production"},
		{"environments: {web: {}, staging: {}}\ndefault_environment: web", "web"},
	} {
		if got := mustParse(t, tt.yaml).DefaultEnvironment; got != tt.want {
			t.Errorf("%q: default environment %q, want %q", tt.yaml, got, tt.want)
		}
	}
}

func TestParseValues(t *testing.T) {
	cfg := mustParse(t, `
environments:
  production:
    branch: ""
    require_checks: [ci/build, "lint"]
    deployers: [alice, Bob]
    url: http://prod.internal:8080/app
    rollout:
      canary: 2
      batch: 3
      max_unavailable: 12.5%
      by_zone: True
      bake: 1m30s
    health:
      path: /ready?deep=1
      interval: 500ms
      healthy_after: 3
      timeout: 2s
  staging:
    deployers: maintain
    require_checks: none
    allow_branches: false
    rollout:
      bake: 0
preview:
  driver: aws
  ttl: 168h
  aws:
    launch_template: lt-0abc
    listener_arn: arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/1/2
    domain: pr.example.com
    hosted_zone_id: Z123
`)
	prod, _ := cfg.Environment("production")
	if prod.Branch != "" {
		t.Errorf(`branch: "" left branch %q; want none`, prod.Branch)
	}
	if !reflect.DeepEqual(prod.RequireChecks, Checks{Names: []string{"ci/build", "lint"}}) {
		t.Errorf("require_checks = %+v", prod.RequireChecks)
	}
	if !reflect.DeepEqual(prod.Deployers, Deployers{Logins: []string{"alice", "Bob"}}) {
		t.Errorf("deployers = %+v", prod.Deployers)
	}
	wantRollout := Rollout{Canary: 2, Batch: Amount{Count: 3}, MaxUnavailable: Amount{Percent: 12.5}, ByZone: true, Bake: 90 * time.Second}
	if prod.Rollout != wantRollout {
		t.Errorf("rollout = %+v, want %+v", prod.Rollout, wantRollout)
	}
	wantHealth := Health{Path: "/ready?deep=1", Interval: 500 * time.Millisecond, HealthyAfter: 3, Timeout: 2 * time.Second}
	if prod.Health != wantHealth {
		t.Errorf("health = %+v, want %+v", prod.Health, wantHealth)
	}
	if prod.URL != "http://prod.internal:8080/app" {
		t.Errorf("url = %q", prod.URL)
	}
	staging, _ := cfg.Environment("staging")
	if !reflect.DeepEqual(staging.Deployers, Deployers{Min: PermMaintain}) || staging.RequireChecks.All || len(staging.RequireChecks.Names) > 0 || staging.AllowBranches {
		t.Errorf("staging = %+v", staging)
	}
	wantPreview := &AWSPreview{Install: DefaultPreviewInstall, LaunchTemplate: "lt-0abc", ListenerARN: "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/1/2", Domain: "pr.example.com", HostedZoneID: "Z123"}
	if cfg.Preview.Driver != DriverAWS || cfg.Preview.TTL != 168*time.Hour || !reflect.DeepEqual(cfg.Preview.AWS, wantPreview) {
		t.Errorf("preview = %+v", cfg.Preview)
	}
}

// An empty key is as if unwritten: commenting out everything under a key
// must not turn into an error or a zero value.
func TestParseEmptyKeysAreDefaults(t *testing.T) {
	cfg := mustParse(t, `
default_environment:
app:
environments:
  production:
    rollout:
      # canary: 2
    health:
    url:
preview:
  ttl:
`)
	prod, _ := cfg.Environment("production")
	def := defaultEnvironment("production", "main")
	if !reflect.DeepEqual(prod, def) {
		t.Errorf("production = %+v, want the defaults %+v", prod, def)
	}
	if cfg.DefaultEnvironment != "production" || !cfg.App.Equal(defaultApp()) || !reflect.DeepEqual(cfg.Preview, defaultPreview()) {
		t.Errorf("config = %+v", cfg)
	}
}

// Anchors, aliases and merge keys are YAML's way to share a block between
// environments; they work, and a key written out beats a merged one.
func TestParseAnchorsAndMergeKeys(t *testing.T) {
	cfg := mustParse(t, `
environments:
  production:
    driver: aws
    health: &health
      path: /up
      interval: 1s
    aws: &fleet
      region: eu-west-1
      target_group_arn: arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/1
      instance_tags: {app: web, env: production}
      install: /opt/install {{.SHA}}
  production-eu:
    driver: aws
    health: *health
    aws:
      <<: *fleet
      instance_tags: {app: web, env: production-eu}
  staging:
    health:
      <<: [*health, {path: /ignored, healthy_after: 5}]
      interval: 3s
`)
	prod, _ := cfg.Environment("production")
	eu, _ := cfg.Environment("production-eu")
	if eu.Health != prod.Health || prod.Health.Path != "/up" || prod.Health.Interval != time.Second {
		t.Errorf("aliased health: production %+v, production-eu %+v", prod.Health, eu.Health)
	}
	want := &AWSFleet{
		Region:         "eu-west-1",
		TargetGroupARN: "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/1",
		InstanceTags:   map[string]string{"app": "web", "env": "production-eu"},
		Install:        "/opt/install {{.SHA}}",
	}
	if !reflect.DeepEqual(eu.AWS, want) {
		t.Errorf("merged aws = %+v, want %+v", eu.AWS, want)
	}
	staging, _ := cfg.Environment("staging")
	wantHealth := Health{Path: "/up", Interval: 3 * time.Second, HealthyAfter: 5, Timeout: 2 * time.Minute}
	if staging.Health != wantHealth {
		t.Errorf("merged health = %+v, want %+v", staging.Health, wantHealth)
	}
}

func mustParse(t *testing.T, yaml string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(yaml), "main")
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return cfg
}

func diffConfig(t *testing.T, got, want *Config) {
	t.Helper()
	if got.DefaultEnvironment != want.DefaultEnvironment {
		t.Errorf("DefaultEnvironment = %q, want %q", got.DefaultEnvironment, want.DefaultEnvironment)
	}
	if !got.App.Equal(want.App) {
		t.Errorf("App = %+v, want %+v", got.App, want.App)
	}
	if !reflect.DeepEqual(got.Preview, want.Preview) {
		t.Errorf("Preview = %+v, want %+v", got.Preview, want.Preview)
	}
	if !reflect.DeepEqual(got.Notify, want.Notify) {
		t.Errorf("Notify = %+v (slack %+v), want %+v (slack %+v)", got.Notify, got.Notify.Slack, want.Notify, want.Notify.Slack)
	}
	for name, w := range want.Environments {
		if g := got.Environments[name]; !reflect.DeepEqual(g, w) {
			t.Errorf("environment %s =\n%+v\nwant\n%+v", name, g, w)
		}
	}
	for name := range got.Environments {
		if want.Environments[name] == nil {
			t.Errorf("unexpected environment %s", name)
		}
	}
}
