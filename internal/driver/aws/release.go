package aws

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
)

var _ deploy.Releaser = (*Driver)(nil)

// Release runs the environment's aws.release, rendered with the release
// like aws.install, once, on one in-service instance of the fleet, through
// SSM Run Command (AWS-RunShellScript), and writes its output to log (the
// release phase, SPEC §6.2). The engine calls it before the first batch,
// so the instance still serves the release before r; Release never
// deregisters, installs or tags anything. The command may run as long as
// ctx allows (the engine gives it deploy.ReleaseTimeout), and SSM is told
// to stop it then (executionTimeout), so a migration the bot gave up on
// does not go on running unseen. With no aws.release it does nothing.
func (d *Driver) Release(ctx context.Context, t deploy.Target, r deploy.Release, log io.Writer) error {
	if t.Environment == nil || t.Environment.AWS == nil || t.Environment.AWS.Release == "" {
		return nil
	}
	if log == nil {
		log = io.Discard
	}
	f, c, err := d.fleet(t)
	if err != nil {
		return err
	}
	env := t.Environment.Name
	command, err := renderCommand("aws.release", f.Release, r)
	if err != nil {
		return permanentError("shipbot", "aws.release of "+env, err)
	}
	fleet, err := d.Instances(ctx, t)
	if err != nil {
		return err
	}
	if len(fleet) == 0 {
		return permanentError("ec2:DescribeInstances", "environment "+env,
			fmt.Errorf("no running instance carries aws.instance_tags, so aws.release has nowhere to run: check the tags, then deploy again"))
	}
	inst, ok := releaseInstance(fleet, r.SHA)
	if !ok {
		return waitError("elasticloadbalancing:DescribeTargetHealth", f.TargetGroupARN,
			"none of the %d running instances of %s is in service (registered and healthy in the target group) to run aws.release on: bring one into service, then deploy again", len(fleet), env)
	}
	bound := deploy.ReleaseTimeout
	if dl, ok := ctx.Deadline(); ok {
		bound = time.Until(dl)
	}
	on := inst.ID
	if inst.Release != "" {
		on += " (on " + shortSHA(inst.Release) + ")"
	}
	fmt.Fprintf(log, "aws.release of %s on %s through SSM\n", shortSHA(r.SHA), on)
	return d.runCommand(ctx, c, ssmRun{
		instance: inst.ID, command: command,
		comment: "shipbot release " + shortSHA(r.SHA) + " " + t.Repo + " " + env,
		what:    "aws.release of " + shortSHA(r.SHA),
		bound:   max(bound, time.Second), execTimeout: true,
		fix: "fix what its output says, then deploy again",
	}, log)
}

// releaseInstance picks the instance that runs the release phase: one in
// service (registered and healthy), preferring one on the release most of
// those run other than sha — the one the deploy replaces, which the
// release command was written against — then one already on sha (a
// resumed deploy), then one whose release is unknown. Among equals the
// first in fleet order (by zone, then id), so a repeated release phase
// runs where the last one did.
func releaseInstance(fleet []deploy.Instance, sha string) (deploy.Instance, bool) {
	count := map[string]int{}
	for _, in := range fleet {
		if in.Healthy && in.Release != "" && in.Release != sha {
			count[in.Release]++
		}
	}
	previous := ""
	for _, in := range fleet { // fleet order breaks ties
		if n := count[in.Release]; n > count[previous] {
			previous = in.Release
		}
	}
	rank := func(in deploy.Instance) int {
		switch {
		case previous != "" && in.Release == previous:
			return 0
		case in.Release != "" && in.Release != sha:
			return 1
		case in.Release == sha:
			return 2
		}
		return 3
	}
	best, found := deploy.Instance{}, false
	for _, in := range fleet {
		if in.Healthy && (!found || rank(in) < rank(best)) {
			best, found = in, true
		}
	}
	return best, found
}
