package handlers

import (
	"context"
	"fmt"
	"strings"

	"github.com/shipbot/shipbot/internal/command"
	"github.com/shipbot/shipbot/internal/logctx"
	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/queue"
)

// Hosts places the jobs of local-driver environments and previews on the
// host that runs them (SPEC §8): their instances and proxy live in one
// host's keeper, so a worker elsewhere must not build or start a second
// copy. aws environments and previews run on any worker and are never
// placed.
type Hosts interface {
	// Owner is the host that runs repo's environment or preview env, and
	// whether that is this one. The first host to ask becomes its owner.
	Owner(ctx context.Context, repo, env string) (owner string, here bool, err error)
	// Forward hands job to owner's own queue. Handing the same job over
	// twice (a retry after a crash) queues it once.
	Forward(ctx context.Context, job queue.Job, owner string) error
}

// elsewhere hands job to the host that runs repo's env when that is
// another host, and reports whether it did: then the caller leaves the job
// alone. It runs before any GitHub write of the job, so the owner's run is
// the job's only one. before runs first when the job is handed over: what
// this run holds that the owner's run must take (a comment's claim).
func (b Base) elsewhere(ctx context.Context, job queue.Job, repo string, drv repoconfig.Driver, env string, before func()) (bool, error) {
	if b.Hosts == nil || drv != repoconfig.DriverLocal {
		return false, nil
	}
	owner, here, err := b.Hosts.Owner(ctx, repo, env)
	if err != nil {
		return false, fmt.Errorf("find the host that runs %s %s: %w", repo, env, err)
	}
	if here {
		return false, nil
	}
	if before != nil {
		before()
	}
	if err := b.Hosts.Forward(ctx, job, owner); err != nil {
		return false, fmt.Errorf("hand the job over to host %s, which runs %s %s: %w", owner, repo, env, err)
	}
	logctx.From(ctx).Info("job handed over to the host that runs the environment", "environment", env, "host", owner)
	return true, nil
}

// commentTarget is the local environment whose host runs a comment's
// commands: the first /deploy, /rollback or /unlock (which resumes queued
// deploys) aimed at a local environment. The other commands write only to
// the store and GitHub and run anywhere. "" when none is.
func commentTarget(cfg *repoconfig.Config, defaultBranch string, cmds []command.Command) string {
	for _, c := range cmds {
		name := c.Env
		switch strings.ToLower(c.Name) {
		case "deploy":
			if name == "" {
				name = cfg.DefaultEnvironment
			}
		case "rollback":
			if name == "" {
				name = rollbackDefault(cfg, defaultBranch)
			}
		case "unlock":
		default:
			continue
		}
		if env, ok := cfg.Environment(name); ok && env.Driver == repoconfig.DriverLocal {
			return env.Name
		}
	}
	return ""
}
