package repoconfig

import (
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// Config is a repository's deploy configuration.
type Config struct {
	// DefaultEnvironment is what a bare /deploy targets.
	DefaultEnvironment string
	App                App
	// Environments by name, e.g. "production", "staging".
	Environments map[string]*Environment
	Preview      Preview
	// Notify is who else hears of deploys: Slack and CDEvents receivers.
	Notify Notify
}

// App says how the local driver builds and runs the application.
type App struct {
	Build   string // shell command run in the source tree, e.g. "go build -o app ."
	Run     string // command that starts one instance, e.g. "./app"
	PortEnv string // environment variable the app reads its port from; default PORT
	// Release is run once per deploy, in the new build, before the first
	// batch (migrations); "" for no release phase (local driver; aws
	// environments use AWSFleet.Release).
	Release string
	// Env is given to builds, the release phase and instances in every
	// environment and preview.
	Env map[string]string
}

// Driver names where an environment runs.
type Driver string

const (
	DriverLocal Driver = "local"
	DriverAWS   Driver = "aws"
)

// Environment is one deploy target.
type Environment struct {
	Name string
	// Branch: a push to it deploys here automatically; empty means none.
	Branch string
	Driver Driver
	// Instances is the instance count for the local driver.
	Instances int
	// RequireChecks: which checks must be green before deploying.
	RequireChecks Checks
	// Deployers: who may deploy or roll back here by comment.
	Deployers Deployers
	// AllowBranches: may a PR's branch be deployed here by comment?
	AllowBranches bool
	// URL shown as the deployment's environment URL; empty: the driver's.
	URL string
	// Production marks the deployment production_environment on GitHub.
	Production bool
	// Freeze: while a window is open, pushes wait and /deploy is refused
	// (admins excepted); /rollback never waits.
	Freeze  Freeze
	Rollout Rollout
	Health  Health
	// Env is added to App.Env here (later wins); Secrets names variables
	// whose values live on the bot (bot secrets set), added after Env.
	Env     map[string]string
	Secrets []string
	// Analysis judges each batch by its traffic while it bakes; nil when
	// the environment has neither analysis nor aws.alarms.
	Analysis *Analysis
	AWS      *AWSFleet // set when Driver is aws
}

// Analysis is how a batch is judged by its real traffic while it bakes
// (SPEC §6.8). A limit is broken only when the new release is also worse
// than the previous one over the same window.
type Analysis struct {
	Interval      time.Duration // how often to judge; default 10s
	MinRequests   int           // fewer requests on the new release: not judged; default 20
	MaxErrorRate  float64       // a share, 0 to 1, of 5xx answers and failed requests; default 0.01
	MaxLatencyP99 time.Duration // 0: p99 is shown, not judged
	Prometheus    *Prometheus   // nil: no queries
}

// Prometheus is analysis.prometheus: queries against the team's Prometheus.
type Prometheus struct {
	URL    string
	Checks []PrometheusCheck
}

// PrometheusCheck is one query and its bounds; at least one of Max and Min
// is set. The query is a text/template with .SHA, .Previous, .Environment
// and .Repo.
type PrometheusCheck struct {
	Name  string
	Query string
	Max   *float64 // broken above
	Min   *float64 // broken below
}

// Checks is require_checks: all, none, or a list of check names.
type Checks struct {
	All   bool
	Names []string // when !All; empty and !All means none
}

// Permission is a repository permission level, ordered.
type Permission int

const (
	PermNone Permission = iota
	PermRead
	PermTriage
	PermWrite
	PermMaintain
	PermAdmin
)

// Deployers is either a minimum permission or a list of logins.
type Deployers struct {
	Min    Permission // when Logins is empty
	Logins []string
}

// Amount is a count of instances or a percentage of them.
type Amount struct {
	Count   int
	Percent float64 // 0 < Percent <= 100 when set; Count is 0 then
}

// Of resolves the amount against a total, rounding a percentage up and never
// below 1.
func (a Amount) Of(total int) int {
	if a.Percent > 0 {
		// The epsilon keeps 25% of 4 at 1 despite float error.
		return max(int(math.Ceil(a.Percent*float64(total)/100-1e-9)), 1)
	}
	return max(a.Count, 1)
}

// Rollout shapes a batched rollout (SPEC §6.1).
type Rollout struct {
	Canary         int    // instances in the first batch; default 1
	Batch          Amount // each later batch; default 25%
	MaxUnavailable Amount // never more out of rotation at once; default 25%
	ByZone         bool   // a batch never spans two zones
	// Bake is the wait after each batch; when the environment has an
	// Analysis it is at least one Analysis.Interval, by default three.
	Bake time.Duration
}

// Health is how an instance is judged healthy.
type Health struct {
	Path         string        // default /healthz
	Interval     time.Duration // default 2s
	HealthyAfter int           // consecutive passes; default 2
	Timeout      time.Duration // per batch; default 2m
}

// AWSFleet is an environment on EC2 behind an ALB target group.
type AWSFleet struct {
	Region         string
	TargetGroupARN string
	InstanceTags   map[string]string
	Install        string // command template run through SSM; {{.SHA}} is the release
	// Alarms are CloudWatch alarm names: one that goes into ALARM while a
	// batch bakes halts the rollout.
	Alarms []string
	// Release is a command template run once per deploy through SSM on
	// one in-service instance, before the first batch; {{.SHA}} is the
	// release. "" for no release phase.
	Release string
}

// Preview configures the per-PR environments.
type Preview struct {
	Driver Driver
	Forks  bool
	TTL    time.Duration // default 72h
	// Env and Secrets are a preview's own: it never gets an environment's.
	// A fork's preview gets no secrets at all.
	Env     map[string]string
	Secrets []string
	AWS     *AWSPreview
	// Rollout/Health for previews use the defaults.
	Health Health
}

// AWSPreview is how previews are made on AWS.
type AWSPreview struct {
	LaunchTemplate string
	ListenerARN    string
	Domain         string
	HostedZoneID   string // optional: a Route 53 record per preview when set
	// Install is the command template run through SSM on the preview's
	// instance for each release; {{.SHA}} is the release. Default
	// DefaultPreviewInstall.
	Install string
}

// Notify is notify: (SPEC §5, "Beyond GitHub"). The zero value tells
// nobody.
type Notify struct {
	// Slack is nil when the file has no notify.slack: no Slack messages.
	Slack *Slack
	// Webhooks are the http(s) URLs every deploy event is sent to as a
	// CDEvent. None of them names a link-local address by its literal IP;
	// a hostname is checked again when an event is sent, as its address
	// can change.
	Webhooks []string
}

// Slack is notify.slack: one message per deploy in Channel.
type Slack struct {
	// Channel is a channel name with its # ("#deploys") or a channel id
	// ("C0123456789"), as chat.postMessage takes either.
	Channel string
	// Only lists the environments announced, by their names in
	// Environments, and "preview" for previews; nil (only: not written)
	// means every environment but previews. Ask with Announces.
	Only []string
}

// PreviewsName is what notify.slack.only calls previews.
const PreviewsName = "preview"

// Announces reports whether a deploy to the environment named env is
// announced in Slack; preview says the deploy is a pull request's preview,
// whatever its environment is called. A nil Slack announces nothing.
func (s *Slack) Announces(env string, preview bool) bool {
	switch {
	case s == nil:
		return false
	case s.Only == nil:
		return !preview
	case preview:
		return slices.Contains(s.Only, PreviewsName)
	}
	return slices.ContainsFunc(s.Only, func(name string) bool { return strings.EqualFold(name, env) })
}

// DefaultPreviewInstall is preview.aws.install when the file sets none.
const DefaultPreviewInstall = "/opt/shipbot/install {{.SHA}}"

// Equal reports whether a and b say the same.
func (a App) Equal(b App) bool {
	return a.Build == b.Build && a.Run == b.Run && a.PortEnv == b.PortEnv && a.Release == b.Release && maps.Equal(a.Env, b.Env)
}
