package deploy

import (
	"context"
	"io"

	"github.com/shipbot/shipbot/internal/repoconfig"
)

// Release is one commit of one repository, as the engine ships it.
type Release struct {
	Repo           string // owner/name
	InstallationID int64
	SHA            string
	Ref            string // branch or tag it came from, for people; may be ""
}

// Target is one environment of one repository, with its configuration.
type Target struct {
	Repo        string // owner/name
	Environment *repoconfig.Environment
	App         repoconfig.App
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
}

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
