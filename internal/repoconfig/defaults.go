package repoconfig

import (
	"strings"
	"time"
)

// The built-in values; doc.go lists them for people.
const (
	defaultBuild         = "go build -o app ."
	defaultRun           = "./app"
	defaultPortEnv       = "PORT"
	defaultInstances     = 2
	productionInstances  = 4
	defaultPreviewTTL    = 72 * time.Hour
	productionName       = "production"
	stagingName          = "staging"
	defaultHealthPath    = "/healthz"
	defaultHealthEvery   = 2 * time.Second
	defaultHealthyAfter  = 2
	defaultHealthTimeout = 2 * time.Minute

	defaultAnalysisInterval = 10 * time.Second
	defaultMinRequests      = 20
	defaultMaxErrorRate     = 0.01
	// bakeIntervals is how many analysis intervals a batch bakes when
	// bake is not written: enough for a trend rather than one reading.
	bakeIntervals = 3
)

// Default is the configuration of a repository without a
// .github/shipbot.yml: previews on the local driver, staging (local, 2
// instances, branches allowed) and production (local, 4 instances, deployed
// on every push to defaultBranch, canary 1, batch 25%). An empty
// defaultBranch leaves production without automatic deploys.
func Default(defaultBranch string) *Config {
	return &Config{
		DefaultEnvironment: stagingName,
		App:                defaultApp(),
		Environments: map[string]*Environment{
			stagingName:    defaultEnvironment(stagingName, defaultBranch),
			productionName: defaultEnvironment(productionName, defaultBranch),
		},
		Preview: defaultPreview(),
	}
}

func defaultApp() App {
	return App{Build: defaultBuild, Run: defaultRun, PortEnv: defaultPortEnv}
}

func defaultPreview() Preview {
	return Preview{Driver: DriverLocal, TTL: defaultPreviewTTL, Health: defaultHealth()}
}

// defaultEnvironment is where an environment named name starts before the
// file's keys apply: production and staging differ from the rest by name.
func defaultEnvironment(name, defaultBranch string) *Environment {
	env := &Environment{
		Name:          name,
		Driver:        DriverLocal,
		Instances:     defaultInstances,
		RequireChecks: Checks{All: true},
		Deployers:     Deployers{Min: PermWrite},
		Rollout:       defaultRollout(),
		Health:        defaultHealth(),
	}
	switch {
	case strings.EqualFold(name, productionName):
		env.Production = true
		env.Branch = defaultBranch
		env.Instances = productionInstances
	case strings.EqualFold(name, stagingName):
		env.AllowBranches = true
	}
	return env
}

func defaultRollout() Rollout {
	return Rollout{
		Canary:         1,
		Batch:          Amount{Percent: 25},
		MaxUnavailable: Amount{Percent: 25},
	}
}

func defaultHealth() Health {
	return Health{
		Path:         defaultHealthPath,
		Interval:     defaultHealthEvery,
		HealthyAfter: defaultHealthyAfter,
		Timeout:      defaultHealthTimeout,
	}
}

// defaultAnalysis is an environment's analysis before the file's
// analysis: keys apply, and all of it for an environment that has only
// aws.alarms.
func defaultAnalysis() *Analysis {
	return &Analysis{
		Interval:     defaultAnalysisInterval,
		MinRequests:  defaultMinRequests,
		MaxErrorRate: defaultMaxErrorRate,
	}
}
