// Package handlers turns queued deliveries into intents: one function per
// event, decoding the payload and calling the engine. A push deploys
// (push.go), a pull request gets a preview (pull_request.go), a PR comment
// runs commands (issue_comment.go), a finished check releases or fails the
// deploys waiting on it (checks.go), installation events are recorded and
// a repository the App lost has its previews torn down (installation.go).
// Register fixes which events and actions the intake queues.
//
// Every handler acts through one Base: the App's client for each
// installation, the deploy store and the engine. Each declares the few
// calls it makes as its own small interface (GitHub, PreviewGitHub,
// CommandGitHub; PreviewStore, WaitingDeploys, CommandStore; Deployer,
// CommandEngine); the Base holds one value that satisfies all of them.
package handlers

import (
	"fmt"
	"reflect"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/outbox"
	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/worker"
	"github.com/shipbot/shipbot/queue"
)

// Base is what every handler acts through. A handler whose part of it is
// unset (no GitHub App configured, the web role) only logs its events.
type Base struct {
	// GitHub hands out the client acting for an installation.
	GitHub Installations
	Store  Store
	Engine Engine
	// PublicURL is where the bot is reached: a deploy's page, the
	// log_url of its GitHub deployment, is PublicURL/deploys/{id}.
	PublicURL string
	// Now is the clock freeze windows and the wait for required checks
	// are judged by; nil: time.Now.
	Now func() time.Time
	// Secrets reads the values of preview.secrets (internal/secrets);
	// nil: a preview that names one fails saying it is not set.
	Secrets deploy.SecretSource
	// Outbox queues the CDEvents of previews (environment created,
	// modified, deleted) for notify.webhooks; nil sends none.
	Outbox *outbox.Outbox
	// Hosts places local environments' and previews' jobs on the host
	// that runs them; nil: one host runs everything (the embedded store,
	// or tests).
	Hosts Hosts
}

// now is the time by b's clock.
func (b Base) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// Installations hands out the App's client for one installation; each
// handler uses it through its own interface of the calls it makes.
type Installations interface {
	Installation(id int64) *gh.Installation
}

// Store is every call the handlers make on the deploy store.
type Store interface {
	PreviewStore
	WaitingDeploys
	CommandStore
	InstallationStore
}

// Engine is every call the handlers make on the engine.
type Engine interface {
	Deployer
	CommandEngine
}

var (
	_ Installations = (*gh.Client)(nil)
	_ GitHub        = (*gh.Installation)(nil)
	_ PreviewGitHub = (*gh.Installation)(nil)
	_ CommandGitHub = (*gh.Installation)(nil)
	_ Engine        = (*deploy.Engine)(nil)
)

// Deps are what the handlers act through: the Base, and what only one of
// them needs.
type Deps struct {
	Base
	// Previewers build pull requests' previews, by repoconfig.Driver; nil:
	// pull_request events are only logged. A preview whose driver is
	// missing here fails saying so (report.NoPreviewDriver).
	Previewers map[repoconfig.Driver]deploy.Previewer
	// ChecksTimeout bounds the wait for required checks; 0 means
	// DefaultChecksTimeout.
	ChecksTimeout time.Duration
	// Wake asks for the deploys that wait to be judged again at an
	// instant: the end of a freeze window, so that a held push starts
	// when the window closes rather than at the next minute's sweep. nil:
	// the sweep alone releases them.
	Wake func(at time.Time)
	// PreviewLockTTL is how long a preview's lock outlives a job that
	// died holding it; 0 means DefaultPreviewLockTTL.
	PreviewLockTTL time.Duration
}

// New wires the handlers over one Base; previews run on previewers.
func New(base Base, previewers map[repoconfig.Driver]deploy.Previewer) Deps {
	return Deps{Base: base, Previewers: previewers}
}

// Register adds the handler of every event shipbot acts on (SPEC §4).
// With deps.Engine nil (no GitHub App configured) a push is only logged.
//
// Each event also declares the type its handler decodes payloads into, so
// that intake queues only the top-level members that type reads (see
// queue.Job.Dropped); decode refuses a job that lacks one it reads.
func Register(r *worker.Router, deps Deps) {
	r.Handle("push", deps.push)
	r.Reads("push", reads[pushEvent]())
	r.Handle("pull_request", deps.pullRequest, "opened", "reopened", "synchronize", "closed")
	r.Reads("pull_request", reads[prEvent]())
	r.Handle("issue_comment", deps.issueComment, "created")
	r.Reads("issue_comment", reads[commentEvent]())
	r.Handle("check_suite", deps.checks, "completed")
	r.Reads("check_suite", reads[checksEvent]())
	r.Handle("check_run", deps.checks, "completed")
	r.Reads("check_run", reads[checksEvent]())
	r.Handle("installation", deps.installation, "created", "deleted")
	r.Reads("installation", reads[installationEvent]())
	r.Handle("installation_repositories", deps.installation, "added", "removed")
	r.Reads("installation_repositories", reads[installationEvent]())
}

// reads says whether a payload type T takes a top-level member, for
// Router.Reads; nil (keep everything) for a type whose plan cannot say.
func reads[T any]() func(key []byte) bool {
	t := reflect.TypeFor[T]()
	if t.Kind() != reflect.Struct || unmarshals(t) {
		return nil
	}
	p := planOf(t)
	for _, n := range p.names {
		if len(n) > maxPlanName {
			return nil
		}
	}
	return func(key []byte) bool { return p.member(key) != nil }
}

// origin is the repository and installation every event payload names,
// embedded in each handler's payload type.
type origin struct {
	Repository struct {
		FullName      string `json:"full_name"`
		DefaultBranch string `json:"default_branch"`
	} `json:"repository"`
	Installation struct {
		ID int64 `json:"id"`
	} `json:"installation"`
}

// repo is the payload's owner/name, or what the intake routed the job by.
func (o origin) repo(job queue.Job) string {
	if o.Repository.FullName != "" {
		return o.Repository.FullName
	}
	return job.Repo
}

// installation is the payload's installation, or the job's.
func (o origin) installation(job queue.Job) int64 {
	if o.Installation.ID != 0 {
		return o.Installation.ID
	}
	return job.InstallationID
}

// decode unmarshals the payload as json.Unmarshal would, reading only the
// members v's fields can take (see unmarshal); a payload that does not
// decode can never succeed, so the error is permanent.
func decode(job queue.Job, v any) error {
	if name := readsDropped(job.Dropped, v); name != "" {
		return worker.Permanent(fmt.Errorf("this %s job was queued without the payload's %q, which this version of shipbot reads: "+
			"the process that queued it runs an older version; upgrade every web process, then redeliver the delivery (%s) from the App's Recent Deliveries",
			job.Event, name, job.DeliveryID))
	}
	if err := unmarshal(job.Payload, job.Outline, v); err != nil {
		return worker.Permanent(fmt.Errorf("%s payload does not decode: %w", job.Event, err))
	}
	return nil
}

// readsDropped returns the first of the members intake dropped that v's
// type reads, or "". A v that is not a pointer to a struct reads them all.
func readsDropped(dropped []string, v any) string {
	if len(dropped) == 0 {
		return ""
	}
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return dropped[0]
	}
	p := planOf(t.Elem())
	for _, d := range dropped {
		if p.member([]byte(d)) != nil {
			return d
		}
	}
	return ""
}
