package handlers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/logctx"
	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/store/record"
	"github.com/shipbot/shipbot/queue"
)

// InstallationStore keeps one record per installation of the App (the
// dashboard lists where the App is installed) and the audit log.
type InstallationStore interface {
	UpdateInstallation(ctx context.Context, id int64, fn func(*record.Installation) error) (record.Installation, error)
	GetInstallation(ctx context.Context, id int64) (record.Installation, error)
	DeleteInstallation(ctx context.Context, id int64) error
	AppendAudit(ctx context.Context, e record.AuditEntry) (record.AuditEntry, error)
}

// installationEvent is the part of an installation or
// installation_repositories payload the handler reads.
type installationEvent struct {
	Action       string `json:"action"`
	Installation struct {
		ID      int64 `json:"id"`
		Account struct {
			Login string `json:"login"`
		} `json:"account"`
		RepositorySelection string `json:"repository_selection"`
	} `json:"installation"`
	RepositorySelection string     `json:"repository_selection"` // installation_repositories
	Repositories        []repoName `json:"repositories"`         // installation created, deleted
	RepositoriesAdded   []repoName `json:"repositories_added"`
	RepositoriesRemoved []repoName `json:"repositories_removed"`
	Sender              struct {
		Login string `json:"login"`
	} `json:"sender"`
}

type repoName struct {
	FullName string `json:"full_name"`
}

func names(rs []repoName) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		if record.ValidateRepo(r.FullName) == nil {
			out = append(out, r.FullName)
		}
	}
	return out
}

// installationsEnabled: without a store, installation events are only
// logged.
func (deps Deps) installationsEnabled() bool { return deps.Store != nil }

// installation records the App being installed or uninstalled, or given
// or refused repositories (SPEC §4). Losing a repository tears its
// previews down with the drivers alone: the App can no longer write there,
// so GitHub is not called. Every step is safe to repeat: the record is
// rewritten to the same content, and a preview torn down is marked closed
// and not torn down again.
func (deps Deps) installation(ctx context.Context, job queue.Job) error {
	var e installationEvent
	if err := decode(job, &e); err != nil {
		return err
	}
	if e.Action == "" {
		e.Action = job.Action
	}
	if e.Installation.ID == 0 {
		e.Installation.ID = job.InstallationID
	}
	logctx.From(ctx).Info("installation event received", "event", job.Event, "action", e.Action,
		"installation", e.Installation.ID, "account", e.Installation.Account.Login)
	if !deps.installationsEnabled() || e.Installation.ID == 0 {
		return nil
	}
	in := installationRun{deps: deps, e: &e, actor: e.Sender.Login}
	if in.actor == "" {
		in.actor = record.ActorShipbot
	}
	switch job.Event + "." + e.Action {
	case "installation.created":
		return in.created(ctx)
	case "installation.deleted":
		return in.deleted(ctx)
	case "installation_repositories.added":
		return in.added(ctx)
	case "installation_repositories.removed":
		return in.removed(ctx)
	}
	return nil
}

// installationRun is one installation event being recorded.
type installationRun struct {
	deps  Deps
	e     *installationEvent
	actor string
}

func (in *installationRun) update(ctx context.Context, fn func(*record.Installation)) error {
	_, err := in.deps.Store.UpdateInstallation(ctx, in.e.Installation.ID, func(r *record.Installation) error {
		if a := in.e.Installation.Account.Login; a != "" {
			r.Account = a
		}
		if s := in.e.RepositorySelection; s != "" {
			r.Selection = s
		} else if s := in.e.Installation.RepositorySelection; s != "" {
			r.Selection = s
		}
		fn(r)
		r.UpdatedAt = time.Now()
		return nil
	})
	if err != nil {
		return fmt.Errorf("record installation %d: %w", in.e.Installation.ID, err)
	}
	return nil
}

func (in *installationRun) created(ctx context.Context) error {
	repos := names(in.e.Repositories)
	if err := in.update(ctx, func(r *record.Installation) { r.Repos = repos }); err != nil {
		return err
	}
	in.audit(ctx, "", record.ActionInstallationCreated, report.Installed(report.Installation{
		Account: in.e.Installation.Account.Login, All: in.e.Installation.RepositorySelection == "all", Repos: repos}))
	return nil
}

func (in *installationRun) added(ctx context.Context) error {
	repos := names(in.e.RepositoriesAdded)
	if err := in.update(ctx, func(r *record.Installation) { r.Repos = append(r.Repos, repos...) }); err != nil {
		return err
	}
	in.audit(ctx, "", record.ActionReposAdded, report.ReposAdded(report.Installation{Account: in.e.Installation.Account.Login, Repos: repos}))
	return nil
}

func (in *installationRun) removed(ctx context.Context) error {
	repos := names(in.e.RepositoriesRemoved)
	torn, err := in.teardown(ctx, repos)
	if err != nil {
		return err
	}
	err = in.update(ctx, func(r *record.Installation) {
		r.Repos = slices.DeleteFunc(r.Repos, func(x string) bool {
			return slices.ContainsFunc(repos, func(y string) bool { return strings.EqualFold(x, y) })
		})
	})
	if err != nil {
		return err
	}
	in.audit(ctx, "", record.ActionReposRemoved, report.ReposRemoved(report.Installation{Account: in.e.Installation.Account.Login, Repos: repos, TornDown: torn}))
	return nil
}

// deleted tears down the previews of every repository the payload or the
// record names (GitHub names none for an installation on all of an
// account's repositories), then forgets the installation.
func (in *installationRun) deleted(ctx context.Context) error {
	repos := names(in.e.Repositories)
	kept, err := in.deps.Store.GetInstallation(ctx, in.e.Installation.ID)
	switch {
	case err == nil:
		repos = append(repos, kept.Repos...)
	case !errors.Is(err, record.ErrNotFound):
		return fmt.Errorf("read installation %d: %w", in.e.Installation.ID, err)
	}
	account := in.e.Installation.Account.Login
	if account == "" {
		account = kept.Account
	}
	torn, err := in.teardown(ctx, repos)
	if err != nil {
		return err
	}
	if err := in.deps.Store.DeleteInstallation(ctx, in.e.Installation.ID); err != nil {
		return fmt.Errorf("forget installation %d: %w", in.e.Installation.ID, err)
	}
	in.audit(ctx, "", record.ActionInstallationDeleted, report.Uninstalled(report.Installation{Account: account, TornDown: torn}))
	return nil
}

// teardown removes the open previews of repos with every preview driver
// and marks them closed; it returns them as "owner/name#N". With no
// configuration to read (the App cannot), every driver is asked, and any
// failure keeps the job failing so that it is retried: tearing down a
// preview a driver does not have is not an error.
func (in *installationRun) teardown(ctx context.Context, repos []string) ([]string, error) {
	if len(repos) == 0 {
		return nil, nil
	}
	all, err := in.deps.Store.ListPreviews(ctx)
	if err != nil {
		return nil, fmt.Errorf("list previews: %w", err)
	}
	var torn []string
	for _, pv := range all {
		if pv.Closed || !slices.ContainsFunc(repos, func(r string) bool { return strings.EqualFold(r, pv.Repo) }) {
			continue
		}
		for kind, d := range in.deps.Previewers {
			if err := d.TeardownPreview(ctx, deploy.Preview{Repo: pv.Repo, Number: pv.Number}); err != nil {
				return torn, fmt.Errorf("tear down the preview of %s#%d with the %s driver: %w", pv.Repo, pv.Number, kind, err)
			}
		}
		pv.Closed, pv.URL, pv.Creating, pv.CreatingSHA, pv.UpdatedAt = true, "", "", "", time.Now()
		if err := in.deps.Store.PutPreview(ctx, pv); err != nil {
			return torn, fmt.Errorf("record the preview of %s#%d: %w", pv.Repo, pv.Number, err)
		}
		in.audit(ctx, pv.Repo, record.ActionPreviewTornDown, report.PreviewRemovedWithApp(pv.Number), fmt.Sprintf("pr-%d", pv.Number))
		torn = append(torn, fmt.Sprintf("%s#%d", pv.Repo, pv.Number))
		logctx.From(ctx).Info("preview torn down: the App lost its repository", "repo", pv.Repo, "pr", pv.Number)
	}
	return torn, nil
}

// audit appends an entry; a failed append is logged and never fails the
// job.
func (in *installationRun) audit(ctx context.Context, repo, action, text string, env ...string) {
	e := record.AuditEntry{Actor: in.actor, Repo: repo, Action: action, Outcome: record.OutcomeSuccess, Text: text}
	if len(env) > 0 {
		e.Env = env[0]
	}
	if _, err := in.deps.Store.AppendAudit(ctx, e); err != nil {
		logctx.From(ctx).Warn("audit log: the entry was not written", "action", action, "err", err)
	}
}
