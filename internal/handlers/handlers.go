// Package handlers turns queued deliveries into intents: one function per
// event, decoding the payload and calling the engine. A push deploys (push.go),
// a pull request gets a preview (pull_request.go); the other events are
// decoded and logged until their features exist.
// Register fixes which events and actions the intake queues.
package handlers

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/shipbot/shipbot/internal/logctx"
	"github.com/shipbot/shipbot/internal/worker"
	"github.com/shipbot/shipbot/queue"
)

// Register adds the handler of every event shipbot acts on (SPEC §4).
// With deps.Engine nil (no GitHub App configured) a push is only logged.
func Register(r *worker.Router, deps Deps) {
	r.Handle("push", deps.push)
	r.Handle("pull_request", deps.pullRequest, "opened", "reopened", "synchronize", "closed")
	r.Handle("issue_comment", deps.issueComment, "created")
	r.Handle("check_suite", deps.checks, "completed")
	r.Handle("check_run", deps.checks, "completed")
	r.Handle("installation", installation)
	r.Handle("installation_repositories", installation)
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

// decode unmarshals the payload; a payload that does not decode can never
// succeed, so the error is permanent.
func decode(job queue.Job, v any) error {
	if err := json.Unmarshal(job.Payload, v); err != nil {
		return worker.Permanent(fmt.Errorf("%s payload does not decode: %w", job.Event, err))
	}
	return nil
}

func installation(ctx context.Context, job queue.Job) error {
	var p struct {
		Account struct {
			Login string `json:"login"`
		} `json:"account"`
		Installation struct {
			Account struct {
				Login string `json:"login"`
			} `json:"account"`
		} `json:"installation"`
	}
	if err := decode(job, &p); err != nil {
		return err
	}
	logctx.From(ctx).Info("installation event received", "account", p.Installation.Account.Login)
	return nil
}
