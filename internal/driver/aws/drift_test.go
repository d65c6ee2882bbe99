package aws

import (
	"context"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/driver/aws/ec2"
	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/store"
	"github.com/shipbot/shipbot/internal/store/record"
)

// quietNotifier is GitHub for the engine in these tests: it hands out ids
// and says reasons as report does.
type quietNotifier struct{}

func (quietNotifier) Created(context.Context, deploy.DeployInfo) (int64, int64, error) {
	return 1, 1, nil
}
func (quietNotifier) Update(context.Context, deploy.DeployInfo, deploy.Event) error    { return nil }
func (quietNotifier) Finished(context.Context, deploy.DeployInfo, deploy.Result) error { return nil }
func (quietNotifier) Superseded(context.Context, deploy.DeployInfo) error              { return nil }
func (quietNotifier) Waiting(context.Context, deploy.DeployInfo) error                 { return nil }
func (quietNotifier) Phrase(r record.Reason) string                                    { return report.Reason(r) }

// engineOn is the deploy engine over the fleet, with oldSHA the
// production environment's current release.
func (f *fleet) engineOn(t *testing.T) (*deploy.Engine, *store.Embedded, record.EnvKey) {
	t.Helper()
	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	env := record.EnvKey{Repo: f.target.Repo, Name: f.target.Environment.Name}
	if err := st.RecordRelease(context.Background(), env, record.Release{DeployID: "d0", SHA: oldSHA, Result: record.ResultSuccess, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	eng, err := deploy.NewEngine(deploy.EngineOptions{
		Store: st, Drivers: map[repoconfig.Driver]deploy.Driver{repoconfig.DriverAWS: f.driver}, Notifier: quietNotifier{},
		LockTTL: 30 * time.Second, Holder: "test", PublicURL: "https://shipbot.example.com",
	})
	if err != nil {
		t.Fatal(err)
	}
	return eng, st, env
}

// launch starts an instance out of band, as an autoscaler would: the
// fleet's tags, no ReleaseTag, not registered with the target group.
func (f *fleet) launch(t *testing.T, beside string) string {
	t.Helper()
	ctx := context.Background()
	out, err := f.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIDs: []string{beside}})
	if err != nil {
		t.Fatal(err)
	}
	run, err := f.ec2.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageID: "ami-12c6146b", InstanceType: "t3.micro", SubnetID: out.Instances[0].SubnetID,
		Tags: map[string]string{"app": "web", "env": "production"},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := run.Instances[0].ID
	f.zoneOf[id] = f.zoneOf[beside]
	return id
}

// releaseTag is the instance's ReleaseTag, "" when it has none.
func (f *fleet) releaseTag(t *testing.T, id string) string {
	t.Helper()
	out, err := f.ec2.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{InstanceIDs: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	return out.Instances[0].Tags[ReleaseTag]
}

// callsNaming are the recorded calls that name instance id.
func (f *fleet) callsNaming(id string) []string {
	var out []string
	for _, c := range f.rec.snapshot() {
		named := slices.Contains(c.targetIDs(), id) || slices.Contains(c.Form["InstanceId.1"], id)
		if ids, ok := c.JSON["InstanceIds"].([]any); ok && slices.Contains(ids, any(id)) {
			named = true
		}
		if c.JSON["InstanceId"] == id {
			named = true
		}
		if named {
			out = append(out, c.Action)
		}
	}
	return out
}

// TestDriftRepairOnMoto: an instance launched out of band with the fleet's
// tags and no release is on the current release (tag and install command)
// and registered healthy after one repair, the rest of the fleet untouched.
// A rollout running at that moment is not disturbed: the repair holds off
// while it runs, the rollout includes the untagged instance it found when
// it planned, and the next repair brings the one launched after that to
// the new release.
func TestDriftRepairOnMoto(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	ctx := context.Background()
	eng, st, env := f.engineOn(t)

	stray := f.launch(t, f.ids[0])
	res, err := eng.Repair(ctx, f.target)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != deploy.OutcomeSuccess || len(res.Found) != 1 || res.Found[0].Instance != stray || res.Found[0].Release != "" {
		t.Fatalf("repair: %+v", res)
	}
	if got := f.releaseTag(t, stray); got != oldSHA {
		t.Errorf("%s tagged %q after the repair, want %s", stray, got, oldSHA)
	}
	if got := f.installs(t)[stray]; !slices.Equal(got, []string{"sudo /opt/web/bin/install " + oldSHA}) {
		t.Errorf("%s got install commands %q", stray, got)
	}
	if got := f.registered(t); !slices.Contains(got, stray) || len(got) != 7 {
		t.Errorf("registered healthy: %v, want the 6 and %s", got, stray)
	}
	if calls := f.rec.snapshot("DeregisterTargets"); len(calls) != 0 {
		t.Errorf("the repair took instances out of rotation: %v", calls)
	}
	d, err := st.GetDeploy(ctx, res.ID)
	if err != nil || d.Kind != record.KindRepair || d.State != record.StateSuccess ||
		d.Reason != "repaired "+stray+" (from no release) to 0ld0000, production's current release" {
		t.Errorf("record %+v, %v", d, err)
	}
	page, err := st.ListAudit(ctx, record.AuditFilter{Repo: env.Repo})
	if err != nil || len(page.Entries) != 2 || page.Entries[0].Action != record.ActionDriftRepaired || page.Entries[1].Action != record.ActionDriftFound {
		t.Errorf("audit: %+v, %v", page.Entries, err)
	}

	// A rollout of newSHA, held inside its first install while another
	// instance is launched and a repair is tried.
	early := f.launch(t, f.ids[2])
	arrived, resume := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	f.rec.setInject(func(c call) *http.Response {
		if c.Action == "SendCommand" && first.CompareAndSwap(false, true) {
			close(arrived)
			<-resume
		}
		return nil
	})
	deployed := make(chan error, 1)
	go func() {
		deployed <- eng.Deploy(ctx, deploy.Request{ID: "d1", Target: f.target, Kind: record.KindPush, Creator: "octocat",
			Release: deploy.Release{Repo: f.target.Repo, InstallationID: 1, SHA: newSHA, Ref: "main"}})
	}()
	select {
	case <-arrived:
	case err := <-deployed:
		t.Fatalf("the rollout ended before its first install: %v", err)
	}
	late := f.launch(t, f.ids[4])
	before := len(f.rec.snapshot())
	held, err := eng.Repair(ctx, f.target)
	if err != nil || held.Held != deploy.HeldBusy || held.ID != "" {
		t.Errorf("repair during the rollout: %+v, %v", held, err)
	}
	for _, c := range f.rec.snapshot()[before:] {
		if c.Action != "DescribeInstances" && c.Action != "DescribeTargetHealth" {
			t.Errorf("the repair during the rollout called %s", c.Action)
		}
	}
	close(resume)
	if err := <-deployed; err != nil {
		t.Fatal(err)
	}
	f.rec.setInject(nil)
	if d, _ := st.GetDeploy(ctx, "d1"); d.State != record.StateSuccess {
		t.Fatalf("rollout: %s %q", d.State, d.Reason)
	}
	for _, id := range append(slices.Clone(f.ids), stray, early) {
		if got := f.releaseTag(t, id); got != newSHA {
			t.Errorf("%s tagged %q after the rollout, want %s", id, got, newSHA)
		}
	}
	if got := f.callsNaming(late); len(got) != 0 {
		t.Errorf("%s, launched after the rollout planned, was touched by it: %v", late, got)
	}

	// The next sweep brings the late one to the new current release.
	res, err = eng.Repair(ctx, f.target)
	if err != nil || res.Outcome != deploy.OutcomeSuccess || len(res.Found) != 1 || res.Found[0].Instance != late {
		t.Fatalf("repair after the rollout: %+v, %v", res, err)
	}
	if got := f.releaseTag(t, late); got != newSHA {
		t.Errorf("%s tagged %q, want %s", late, got, newSHA)
	}
	if got := f.registered(t); len(got) != 9 || !slices.Contains(got, late) {
		t.Errorf("registered healthy: %v, want all 9", got)
	}
	if got := f.installs(t)[late]; len(got) != 1 || !strings.HasSuffix(got[0], newSHA) {
		t.Errorf("%s got install commands %q", late, got)
	}
}
