package aws

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/store/record"
)

const releaseCommand = "sudo /opt/web/bin/migrate {{.SHA}}"

// withRelease gives the fleet's environment aws.release.
func (f *fleet) withRelease() string {
	f.target.Environment.AWS.Release = releaseCommand
	return "sudo /opt/web/bin/migrate " + newSHA
}

// releaseSends are the recorder's indexes (among every call) and calls of
// the SendCommands that ran want.
func (f *fleet) releaseSends(t *testing.T, want string) (at []int, sends []call) {
	t.Helper()
	for i, c := range f.rec.snapshot() {
		if c.Action != "SendCommand" {
			continue
		}
		params, _ := c.JSON["Parameters"].(map[string]any)
		if cmds, _ := params["commands"].([]any); slices.Contains(cmds, any(want)) {
			at, sends = append(at, i), append(sends, c)
		}
	}
	return at, sends
}

// TestReleasePhaseRunsOnceBeforeTheFirstBatch: a rollout of a fleet with
// aws.release sends the release command once, through SSM, to one instance
// in service on the previous release, before anything is drained; then
// the rollout installs every instance as usual.
func TestReleasePhaseRunsOnceBeforeTheFirstBatch(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	want := f.withRelease()
	res, log := f.rollout(nil)
	if res.Outcome != deploy.OutcomeSuccess {
		t.Fatalf("outcome %s: %s\n%s", res.Outcome, report.Reason(res.Reason), log)
	}
	at, sends := f.releaseSends(t, want)
	if len(sends) != 1 {
		t.Fatalf("%d SendCommand calls ran %q, want 1\n%s", len(sends), want, log)
	}
	send := sends[0]
	ids, _ := send.JSON["InstanceIds"].([]any)
	if len(ids) != 1 || ids[0] != f.ids[0] {
		t.Errorf("aws.release sent to %v, want the one instance %s (the first in service on the previous release)", ids, f.ids[0])
	}
	if send.JSON["DocumentName"] != "AWS-RunShellScript" {
		t.Errorf("aws.release sent with document %v, want AWS-RunShellScript", send.JSON["DocumentName"])
	}
	params, _ := send.JSON["Parameters"].(map[string]any)
	timeouts, _ := params["executionTimeout"].([]any)
	if len(timeouts) != 1 {
		t.Errorf("aws.release sent without one executionTimeout: %v", params)
	} else if s, err := strconv.Atoi(timeouts[0].(string)); err != nil || s <= 0 || s > int(deploy.ReleaseTimeout.Seconds()) {
		t.Errorf("executionTimeout %v, want seconds within the release phase's %s", timeouts[0], deploy.ReleaseTimeout)
	}
	first := slices.IndexFunc(f.rec.snapshot(), func(c call) bool { return c.Action == "DeregisterTargets" })
	if first < 0 || at[0] > first {
		t.Errorf("aws.release sent as call %d, the first DeregisterTargets is call %d: want the release first", at[0], first)
	}
	// Release touched no tag: the only tag calls are the installs', after it.
	for i, c := range f.rec.snapshot() {
		if (c.Action == "DeleteTags" || c.Action == "CreateTags") && i < at[0] {
			t.Errorf("%s (call %d) before the release phase", c.Action, i)
		}
	}
	if !strings.Contains(log, "aws.release of "+shortSHA(newSHA)+" on "+f.ids[0]+" (on "+shortSHA(oldSHA)+") through SSM") {
		t.Errorf("the deploy log does not say where aws.release ran:\n%s", log)
	}
	installs := f.installs(t)
	for _, id := range f.ids {
		var got []string
		for _, cmd := range installs[id] {
			if cmd != want {
				got = append(got, cmd)
			}
		}
		if len(got) != 1 || got[0] != "sudo /opt/web/bin/install "+newSHA {
			t.Errorf("instance %s got install commands %q, want one of %s", id, got, newSHA)
		}
	}
	f.assertAllOn(t, newSHA)
}

// TestFailedReleasePhaseTouchesNothing: the release command fails on the
// instance (injected: moto finishes every command with Success). The
// deploy fails with release_phase_failed, naming the instance, SSM's
// status and the command's output, and no instance was drained,
// installed or retagged.
func TestFailedReleasePhaseTouchesNothing(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	want := f.withRelease()
	var failed atomic.Bool
	f.rec.setInject(func(c call) *http.Response {
		// The first invocation anyone asks about: the release phase runs
		// before any install.
		if c.Action != "GetCommandInvocation" || !failed.CompareAndSwap(false, true) {
			return nil
		}
		return jsonResponse(200, map[string]any{
			"CommandId": c.JSON["CommandId"], "InstanceId": c.JSON["InstanceId"], "DocumentName": "AWS-RunShellScript",
			"Status": "Failed", "StatusDetails": "Failed", "ResponseCode": 1,
			"StandardOutputContent": "== 20260101 AddCheckoutV2: migrating\n",
			"StandardErrorContent":  "PG::DuplicateColumn: ERROR: column \"v2\" of relation \"orders\" already exists\n",
		})
	})
	res, log := f.rollout(nil)
	if res.Outcome != deploy.OutcomeFailure || res.Reason.Kind != record.ReasonReleasePhaseFailed {
		t.Fatalf("outcome %s (%s), want a failure of kind %s\n%s", res.Outcome, report.Reason(res.Reason), record.ReasonReleasePhaseFailed, log)
	}
	reason := report.Reason(res.Reason)
	for _, s := range []string{"release phase failed", "aws.release", f.ids[0], "Failed", "exit code 1", "already exists", "deploy again"} {
		if !strings.Contains(reason, s) {
			t.Errorf("reason does not say %q: %s", s, reason)
		}
	}
	if !strings.Contains(log, "AddCheckoutV2: migrating") || !strings.Contains(log, "PG::DuplicateColumn") {
		t.Errorf("the deploy log lacks the release command's output:\n%s", log)
	}
	if _, sends := f.releaseSends(t, want); len(sends) != 1 {
		t.Errorf("%d SendCommand calls ran %q, want 1", len(sends), want)
	}
	if n := len(f.rec.snapshot("SendCommand")); n != 1 {
		t.Errorf("%d SendCommand calls, want only the release command's", n)
	}
	for _, api := range []string{"DeregisterTargets", "RegisterTargets", "DeleteTags", "CreateTags"} {
		if n := len(f.rec.snapshot(api)); n != 0 {
			t.Errorf("%d %s calls after a failed release phase, want none", n, api)
		}
	}
	f.rec.setInject(nil)
	f.assertAllOn(t, oldSHA)
}

// TestRollbackRunsNoReleasePhase: a /rollback (SkipRelease) deploys with
// aws.release set and never sends it.
func TestRollbackRunsNoReleasePhase(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	want := f.withRelease()
	res, log := f.rolloutWith(func(in *deploy.ExecInput) { in.SkipBake, in.SkipRelease = true, true })
	if res.Outcome != deploy.OutcomeSuccess {
		t.Fatalf("outcome %s: %s\n%s", res.Outcome, report.Reason(res.Reason), log)
	}
	if _, sends := f.releaseSends(t, want); len(sends) != 0 {
		t.Errorf("a rollback sent aws.release %d times, want never", len(sends))
	}
	if n := len(f.rec.snapshot("SendCommand")); n != len(f.ids) {
		t.Errorf("%d SendCommand calls, want one install per instance (%d)", n, len(f.ids))
	}
	f.assertAllOn(t, newSHA)
}

// TestReleaseWithoutInstanceInService: with every instance out of the
// target group, Release fails saying so and sends nothing; with no
// aws.release it does nothing at all.
func TestReleaseWithoutInstanceInService(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	ctx := context.Background()
	r := deploy.Release{Repo: "acme/web", SHA: newSHA}

	if err := f.driver.Release(ctx, f.target, r, nil); err != nil {
		t.Fatalf("Release without aws.release = %v, want nil", err)
	}
	if n := len(f.rec.snapshot()); n != 0 {
		t.Errorf("Release without aws.release made %d AWS calls, want none", n)
	}

	f.withRelease()
	var targets []elbtypes.TargetDescription
	for _, id := range f.ids {
		targets = append(targets, elbtypes.TargetDescription{Id: awssdk.String(id)})
	}
	if _, err := f.elb.DeregisterTargets(ctx, &elb.DeregisterTargetsInput{TargetGroupArn: awssdk.String(f.target.Environment.AWS.TargetGroupARN), Targets: targets}); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	err := f.driver.Release(ctx, f.target, r, &log)
	if err == nil || !strings.Contains(err.Error(), "none of the 6 running instances of production is in service") || !strings.Contains(err.Error(), "bring one into service") {
		t.Fatalf("Release with no instance in service = %v, want an error saying so", err)
	}
	if n := len(f.rec.snapshot("SendCommand")); n != 0 {
		t.Errorf("%d SendCommand calls with no instance in service", n)
	}
}

// TestReleaseInstance: which instance runs the release phase.
func TestReleaseInstance(t *testing.T) {
	t.Parallel()
	const prev, older = "p", "o"
	in := func(id, rel string, healthy bool) deploy.Instance {
		return deploy.Instance{ID: id, Release: rel, Healthy: healthy, InRotation: healthy}
	}
	for _, tc := range []struct {
		name  string
		fleet []deploy.Instance
		want  string
	}{
		{"first in fleet order", []deploy.Instance{in("a", prev, true), in("b", prev, true)}, "a"},
		{"in service only", []deploy.Instance{in("a", prev, false), in("b", prev, true)}, "b"},
		{"the previous release, not a resumed deploy's", []deploy.Instance{in("a", "new", true), in("b", prev, true)}, "b"},
		{"the release most run", []deploy.Instance{in("a", older, true), in("b", prev, true), in("c", prev, true)}, "b"},
		{"an older release before the new one", []deploy.Instance{in("a", "new", true), in("b", older, true)}, "b"},
		{"the new release before an unknown one", []deploy.Instance{in("a", "", true), in("b", "new", true)}, "b"},
		{"an unknown one as a last resort", []deploy.Instance{in("a", prev, false), in("b", "", true)}, "b"},
		{"none in service", []deploy.Instance{in("a", prev, false)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := releaseInstance(tc.fleet, "new")
			if got.ID != tc.want || ok != (tc.want != "") {
				t.Errorf("releaseInstance = %q, %v; want %q", got.ID, ok, tc.want)
			}
		})
	}
}
