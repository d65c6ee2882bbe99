package deploy

import (
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/shipbot/shipbot/internal/repoconfig"
)

// Release is one commit of one repository, as the engine ships it.
type Release struct {
	Repo           string // owner/name
	InstallationID int64
	SHA            string
	Ref            string // branch or tag it came from, for people; may be ""
	// CommittedAt is when SHA was committed, where the event that asked
	// for it said; zero when unknown. Only the release history keeps it
	// (lead time); drivers have no use for it.
	CommittedAt time.Time
}

// Target is one environment of one repository, with its configuration.
type Target struct {
	Repo        string // owner/name
	Environment *repoconfig.Environment
	App         repoconfig.App
	// Vars and Secrets are what the app's builds, release phase and
	// instances get (SPEC §7), and nothing of the bot's own environment:
	// Vars are App.Env, then the environment's Env (later wins); Secrets
	// are the environment's secrets by name, read from the bot, and win
	// over Vars (AppEnv). A secret's value is never written to disk and is
	// masked (••••) in every log the bot keeps or shows. The engine sets
	// both before it calls a driver.
	Vars    map[string]string
	Secrets map[string]string
	// Notify is who else hears of the deploy (notify: in the repository's
	// configuration): the Notifier reads it from DeployInfo.
	Notify repoconfig.Notify
}

// AppEnv is vars then secrets as NAME=value, sorted by name, a secret
// winning over a variable of the same name.
func AppEnv(vars, secrets map[string]string) []string {
	merged := make(map[string]string, len(vars)+len(secrets))
	maps.Copy(merged, vars)
	maps.Copy(merged, secrets)
	out := make([]string, 0, len(merged))
	for _, k := range slices.Sorted(maps.Keys(merged)) {
		out = append(out, k+"="+merged[k])
	}
	return out
}

// Driver is what the engine needs of the place an environment runs. Every
// method is safe to repeat (a job may be resumed after a crash) and returns
// an error that names the instance and what failed. Drivers know nothing of
// GitHub; what they need from it (the source tarball) is handed to them.
type Driver interface {
	// Instances lists the environment's instances now: zone, release,
	// health and rotation, as the planner needs them.
	Instances(ctx context.Context, t Target) ([]Instance, error)
	// Prepare makes the release installable (local: fetch and build it;
	// aws: nothing) and writes what it did to log.
	Prepare(ctx context.Context, t Target, r Release, log io.Writer) error
	// Drain takes the instance out of rotation and returns once its
	// in-flight requests have finished (or the driver's drain bound passed).
	Drain(ctx context.Context, t Target, inst Instance) error
	// Install puts the release on the instance (it is out of rotation).
	Install(ctx context.Context, t Target, inst Instance, r Release, log io.Writer) error
	// Check runs one health check of the instance against path, directly,
	// not through rotation; nil means healthy.
	Check(ctx context.Context, t Target, inst Instance, path string) error
	// Admit puts the instance back into rotation and returns once it is
	// healthy there (local: the proxy routes to it; aws: the target group
	// reports it healthy).
	Admit(ctx context.Context, t Target, inst Instance) error
}

// Surger is implemented by drivers that can start an extra instance before
// taking the last serving one out of rotation (SPEC §6.1).
type Surger interface {
	// Surge starts one extra instance on the release, healthy and in
	// rotation, and returns it.
	Surge(ctx context.Context, t Target, r Release, log io.Writer) (Instance, error)
	// Retire drains and stops an instance Surge started.
	Retire(ctx context.Context, t Target, inst Instance) error
}

// Preview is the environment of one pull request.
type Preview struct {
	Repo   string // owner/name
	Number int    // the PR
	Config repoconfig.Preview
	App    repoconfig.App
	// Vars and Secrets as Target's, from App.Env and the preview's own Env
	// and Secrets (none for a fork's preview).
	Vars    map[string]string
	Secrets map[string]string
}

// Releaser is implemented by drivers that run a release phase (SPEC §6.2):
// once per deploy, after Prepare and before the first batch, never for a
// rollback.
type Releaser interface {
	// Release runs the environment's release command for r (local:
	// app.release in r's build, with t.Vars; aws: aws.release through SSM
	// on one in-service instance) within ReleaseTimeout, writing its
	// output to log. With no release command it does nothing and returns
	// nil. An error says what failed; no instance was touched.
	Release(ctx context.Context, t Target, r Release, log io.Writer) error
}

// ReleaseTimeout bounds a release phase.
const ReleaseTimeout = 15 * time.Minute

// SecretSource is where the engine reads the values of an environment's
// secrets (internal/secrets).
type SecretSource interface {
	// Secret is the value of name for repo's environment env ("preview"
	// for previews). ErrSecretNotSet when it was never set; another error
	// when it cannot be read (the store is down, or SECRETS_KEY changed
	// since it was set), saying which.
	Secret(ctx context.Context, repo, env, name string) (string, error)
}

// ErrSecretNotSet: the secret was never set on the bot.
var ErrSecretNotSet = errors.New("secret not set")

// Previewer is what the engine needs to give a pull request its own
// environment at a stable URL.
type Previewer interface {
	// EnsurePreview makes the preview run the release (creating it the
	// first time) and returns its URL; a failed update leaves the previous
	// release serving.
	EnsurePreview(ctx context.Context, p Preview, r Release, log io.Writer) (url string, err error)
	// TeardownPreview stops and removes everything of the preview; tearing
	// down one that does not exist is not an error.
	TeardownPreview(ctx context.Context, p Preview) error
}

// Source fetches a release's source as a gzipped tarball laid out as
// GitHub serves it (one top-level directory).
type Source func(ctx context.Context, r Release) (io.ReadCloser, error)
