package aws

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/smithy-go"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/driver/aws/awstest"
	"github.com/shipbot/shipbot/internal/driver/aws/ec2"
	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/report"
)

const (
	region = "us-east-1"
	oldSHA = "0ld0000000000000000000000000000000000000"
	newSHA = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
)

var zones = []string{"us-east-1a", "us-east-1b", "us-east-1c"}

// fleet is a production environment in moto: 6 instances in 3 zones,
// tagged app=web env=production and on oldSHA, registered with one target
// group, plus a staging instance the tags must not pick.
type fleet struct {
	url    string
	rec    *recorder
	driver *Driver
	target deploy.Target
	zoneOf map[string]string // instance id → zone
	ids    []string          // the production instances, by zone then id
	ec2    *ec2.Client
	elb    *elb.Client
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	f := &fleet{url: startMoto(t), rec: newRecorder(), zoneOf: map[string]string{}}
	ctx := context.Background()

	cfg := awssdk.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: awssdk.String(f.url),
	}
	d, err := New(Options{Config: &cfg, HTTPClient: f.rec, Poll: 10 * time.Millisecond, DrainMargin: time.Second, InstallTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f.driver = d

	// Setting up goes around the recorder.
	setup := setupConfig(t, cfg)
	f.ec2, f.elb = ec2.New(setup, ec2.Options{}), elb.NewFromConfig(setup)
	vpcID, err := f.ec2.CreateVpc(ctx, "10.0.0.0/16")
	if err != nil {
		t.Fatal(err)
	}
	tags := func(env string) map[string]string {
		return map[string]string{"app": "web", "env": env, ReleaseTag: oldSHA}
	}
	var targets []elbtypes.TargetDescription
	for i, zone := range zones {
		subnet := awstest.CreateSubnet(t, f.ec2, vpcID, fmt.Sprintf("10.0.%d.0/24", i), zone)
		run, err := f.ec2.RunInstances(ctx, &ec2.RunInstancesInput{
			ImageID: "ami-12c6146b", InstanceType: "t3.micro", MinCount: 2, MaxCount: 2,
			SubnetID: subnet, Tags: tags("production"),
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range run.Instances {
			f.zoneOf[in.ID] = zone
			f.ids = append(f.ids, in.ID)
			targets = append(targets, elbtypes.TargetDescription{Id: awssdk.String(in.ID)})
		}
		if i == 0 {
			if _, err := f.ec2.RunInstances(ctx, &ec2.RunInstancesInput{
				ImageID: "ami-12c6146b", InstanceType: "t3.micro", SubnetID: subnet, Tags: tags("staging"),
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	slices.SortFunc(f.ids, func(a, b string) int {
		return strings.Compare(f.zoneOf[a]+a, f.zoneOf[b]+b)
	})
	tg, err := f.elb.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{
		Name: awssdk.String("web-production"), Protocol: elbtypes.ProtocolEnumHttp, Port: awssdk.Int32(80),
		VpcId: awssdk.String(vpcID), TargetType: elbtypes.TargetTypeEnumInstance, HealthCheckPath: awssdk.String("/healthz"),
	})
	if err != nil {
		t.Fatal(err)
	}
	arn := tg.TargetGroups[0].TargetGroupArn
	if _, err := f.elb.ModifyTargetGroupAttributes(ctx, &elb.ModifyTargetGroupAttributesInput{
		TargetGroupArn: arn,
		Attributes:     []elbtypes.TargetGroupAttribute{{Key: awssdk.String("deregistration_delay.timeout_seconds"), Value: awssdk.String("1")}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.elb.RegisterTargets(ctx, &elb.RegisterTargetsInput{TargetGroupArn: arn, Targets: targets}); err != nil {
		t.Fatal(err)
	}

	f.target = deploy.Target{
		Repo: "acme/web",
		Environment: &repoconfig.Environment{
			Name: "production", Driver: repoconfig.DriverAWS, Production: true,
			Rollout: repoconfig.Rollout{
				Canary: 1, Batch: repoconfig.Amount{Count: 2}, MaxUnavailable: repoconfig.Amount{Count: 2}, ByZone: true,
			},
			Health: repoconfig.Health{Path: "/healthz", Interval: 10 * time.Millisecond, HealthyAfter: 2, Timeout: 5 * time.Second},
			AWS: &repoconfig.AWSFleet{
				Region:         region,
				TargetGroupARN: awssdk.ToString(arn),
				InstanceTags:   map[string]string{"app": "web", "env": "production"},
				Install:        "sudo /opt/web/bin/install {{.SHA}}",
			},
		},
	}
	return f
}

// registered is the target group's registered instances, from moto.
func (f *fleet) registered(t *testing.T) []string {
	t.Helper()
	out, err := f.elb.DescribeTargetHealth(context.Background(), &elb.DescribeTargetHealthInput{TargetGroupArn: awssdk.String(f.target.Environment.AWS.TargetGroupARN)})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range out.TargetHealthDescriptions {
		if d.TargetHealth.State == elbtypes.TargetHealthStateEnumHealthy {
			ids = append(ids, awssdk.ToString(d.Target.Id))
		}
	}
	slices.Sort(ids)
	return ids
}

// releases is each production instance's ReleaseTag, from moto.
func (f *fleet) releases(t *testing.T) map[string]string {
	t.Helper()
	out, err := f.ec2.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{InstanceIDs: f.ids})
	if err != nil {
		t.Fatal(err)
	}
	rel := map[string]string{}
	for _, in := range out.Instances {
		if v, ok := in.Tags[ReleaseTag]; ok {
			rel[in.ID] = v
		}
	}
	return rel
}

// assertOneZoneOut fails if the recorded Deregister/RegisterTargets calls
// ever had instances of two zones out of rotation together.
func (f *fleet) assertOneZoneOut(t *testing.T) {
	t.Helper()
	calls := f.rec.snapshot("DeregisterTargets", "RegisterTargets")
	if !slices.ContainsFunc(calls, func(c call) bool { return c.Action == "DeregisterTargets" }) {
		t.Fatal("no DeregisterTargets call was recorded")
	}
	if msg := zonesOutTogether(calls, f.zoneOf); msg != "" {
		t.Fatal(msg)
	}
}

// rollout deploys newSHA over oldSHA with the engine; report, if not nil,
// sees its events. It returns the result and the rollout's log.
func (f *fleet) rollout(report func(deploy.Event)) (deploy.Result, string) {
	return f.rolloutWith(func(in *deploy.ExecInput) { in.Report = report })
}

// rolloutWith is rollout with the input as change leaves it.
func (f *fleet) rolloutWith(change func(*deploy.ExecInput)) (deploy.Result, string) {
	var log strings.Builder
	in := deploy.ExecInput{
		Target:   f.target,
		Release:  deploy.Release{Repo: "acme/web", SHA: newSHA, Ref: "main"},
		Previous: oldSHA,
		Driver:   f.driver,
		Log:      &log,
	}
	change(&in)
	res := deploy.Execute(context.Background(), in)
	return res, log.String()
}

// assertRolledBack checks a rollout that failed in the first batch of zone
// b (the third): the batches of zones a and b were rolled back, one zone
// out of rotation at a time, and zone c never installed. It returns the
// instances rolled back, sorted.
func (f *fleet) assertRolledBack(t *testing.T, res deploy.Result, log string) []string {
	t.Helper()
	touched := sorted(f.ids[:4]) // zone a (2 batches) and the failed zone-b batch
	if got := sorted(res.RolledBack); !slices.Equal(got, touched) {
		t.Errorf("rolled back %v, want %v\n%s", got, touched, log)
	}
	f.assertOneZoneOut(t)
	installs := f.installs(t)
	for _, id := range f.ids[4:] {
		if len(installs[id]) != 0 {
			t.Errorf("zone c instance %s was installed after the failure: %q", id, installs[id])
		}
	}
	return touched
}

// assertAllOn checks how a rollout or its rollback left the fleet: every
// production instance registered healthy and tagged with sha.
func (f *fleet) assertAllOn(t *testing.T, sha string) {
	t.Helper()
	if got := f.registered(t); !slices.Equal(got, sorted(f.ids)) {
		t.Errorf("registered healthy at the end: %v, want %v", got, sorted(f.ids))
	}
	for id, rel := range f.releases(t) {
		if rel != sha {
			t.Errorf("instance %s is tagged %s=%s at the end, want %s", id, ReleaseTag, rel, sha)
		}
	}
}

// zonesOutTogether replays Deregister/RegisterTargets calls in the order
// they were sent and says when instances of two zones were out of rotation
// together, or "".
func zonesOutTogether(calls []call, zoneOf map[string]string) string {
	out := map[string]bool{}
	for _, c := range calls {
		for _, id := range c.targetIDs() {
			out[id] = c.Action == "DeregisterTargets"
		}
		zs := map[string][]string{}
		for id, isOut := range out {
			if isOut {
				zs[zoneOf[id]] = append(zs[zoneOf[id]], id)
			}
		}
		if len(zs) > 1 {
			return fmt.Sprintf("after %s %v, instances of %d zones were out of rotation together: %v", c.Action, c.targetIDs(), len(zs), zs)
		}
	}
	return ""
}

// installs is the install command each instance got through SendCommand,
// in order.
func (f *fleet) installs(t *testing.T) map[string][]string {
	t.Helper()
	got := map[string][]string{}
	for _, c := range f.rec.snapshot("SendCommand") {
		if c.JSON["DocumentName"] != "AWS-RunShellScript" {
			t.Errorf("SendCommand with document %v, want AWS-RunShellScript", c.JSON["DocumentName"])
		}
		params, _ := c.JSON["Parameters"].(map[string]any)
		cmds, _ := params["commands"].([]any)
		ids, _ := c.JSON["InstanceIds"].([]any)
		for _, id := range ids {
			for _, cmd := range cmds {
				got[id.(string)] = append(got[id.(string)], cmd.(string))
			}
		}
	}
	return got
}

// TestStandardChain: with no Config the driver finds AWS (here moto)
// through the SDK's standard chain: AWS_ENDPOINT_URL, AWS_REGION and the
// key variables, as cmd/bot would.
func TestStandardChain(t *testing.T) {
	f := newFleet(t)
	t.Setenv("AWS_ENDPOINT_URL", f.url)
	t.Setenv("AWS_REGION", "eu-west-1") // aws.region of the environment wins
	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	d, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.Instances(context.Background(), f.target)
	if err != nil || len(got) != 6 {
		t.Fatalf("Instances through the standard chain = %d, %v; want 6", len(got), err)
	}
}

func TestInstances(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	got, err := f.driver.Instances(context.Background(), f.target)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 {
		t.Fatalf("got %d instances, want the 6 tagged production: %+v", len(got), got)
	}
	for i, inst := range got {
		if inst.ID != f.ids[i] || inst.Zone != f.zoneOf[inst.ID] || inst.Release != oldSHA || !inst.Healthy || !inst.InRotation {
			t.Errorf("instance %d = %+v, want %s in %s on %s, healthy, in rotation", i, inst, f.ids[i], f.zoneOf[f.ids[i]], oldSHA)
		}
	}

	// Out of the target group: out of rotation and not healthy.
	ctx := context.Background()
	if err := f.driver.Drain(ctx, f.target, got[0]); err != nil {
		t.Fatal(err)
	}
	if err := f.driver.Drain(ctx, f.target, got[0]); err != nil {
		t.Fatalf("a second Drain: %v", err)
	}
	again, err := f.driver.Instances(ctx, f.target)
	if err != nil {
		t.Fatal(err)
	}
	if again[0].InRotation || again[0].Healthy {
		t.Errorf("drained instance = %+v, want out of rotation and not healthy", again[0])
	}
	if err := f.driver.Check(ctx, f.target, got[0], "/healthz"); err != nil {
		t.Errorf("Check before Admit = %v, want nil (the target group has nothing to say yet)", err)
	}
	if err := f.driver.Admit(ctx, f.target, got[0]); err != nil {
		t.Fatal(err)
	}
	if err := f.driver.Check(ctx, f.target, got[0], "/healthz"); err != nil {
		t.Errorf("Check after Admit = %v", err)
	}
}

func TestRolloutByZone(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	res, log := f.rollout(nil)
	if res.Outcome != deploy.OutcomeSuccess {
		t.Fatalf("outcome %s: %s\n%s", res.Outcome, report.Reason(res.Reason), log)
	}
	if n := len(res.Batches); n != 4 {
		t.Errorf("%d batches, want 4 (canary, rest of zone a, zone b, zone c)", n)
	}
	f.assertOneZoneOut(t)

	installs := f.installs(t)
	want := "sudo /opt/web/bin/install " + newSHA
	for _, id := range f.ids {
		if got := installs[id]; len(got) != 1 || got[0] != want {
			t.Errorf("instance %s got install commands %q, want [%q]", id, got, want)
		}
	}
	f.assertAllOn(t, newSHA)

	// A re-run finds every instance on the release: nothing is touched.
	before := len(f.rec.snapshot("DeregisterTargets"))
	res, _ = f.rollout(nil)
	if res.Outcome != deploy.OutcomeSuccess || len(f.rec.snapshot("DeregisterTargets")) != before {
		t.Errorf("re-run: %s (%s), deregistered %d more", res.Outcome, report.Reason(res.Reason), len(f.rec.snapshot("DeregisterTargets"))-before)
	}
}

func TestFailedInstallRollsBack(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	// The first instance of zone b (batch 3) fails its install of newSHA.
	bad := f.ids[2]
	var failed atomic.Bool
	f.rec.setInject(func(c call) *http.Response {
		if c.Action != "GetCommandInvocation" || c.JSON["InstanceId"] != bad || !failed.CompareAndSwap(false, true) {
			return nil
		}
		return jsonResponse(200, map[string]any{
			"CommandId": c.JSON["CommandId"], "InstanceId": bad, "DocumentName": "AWS-RunShellScript",
			"Status": "Failed", "StatusDetails": "Failed", "ResponseCode": 3,
			"StandardOutputContent": "fetching release\n",
			"StandardErrorContent":  "install: checksum mismatch for web.tar.gz\n",
		})
	})
	res, log := f.rollout(nil)
	if res.Outcome != deploy.OutcomeFailure || res.FailedInstance != bad {
		t.Fatalf("outcome %s on %q, want failure on %s: %s\n%s", res.Outcome, res.FailedInstance, bad, report.Reason(res.Reason), log)
	}
	for _, want := range []string{"ssm:GetCommandInvocation", bad, "checksum mismatch", "Failed"} {
		if !strings.Contains(report.Reason(res.Reason), want) {
			t.Errorf("reason does not name %q: %s", want, report.Reason(res.Reason))
		}
	}
	touched := f.assertRolledBack(t, res, log)
	installs := f.installs(t)
	for _, id := range touched {
		got := installs[id]
		if len(got) != 2 || !strings.HasSuffix(got[1], oldSHA) {
			t.Errorf("instance %s got %q, want the new release then %s", id, got, oldSHA)
		}
	}
	f.assertAllOn(t, oldSHA)
}

// draining answers DescribeTargetHealth for id as draining, for ever.
func draining(id string) func(c call) *http.Response {
	return func(c call) *http.Response {
		if c.Action != "DescribeTargetHealth" || !slices.Contains(c.targetIDs(), id) {
			return nil
		}
		return xmlResponse(200, `<DescribeTargetHealthResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/">
<DescribeTargetHealthResult><TargetHealthDescriptions><member>
<Target><Id>`+id+`</Id><Port>80</Port></Target>
<TargetHealth><State>draining</State><Reason>Target.DeregistrationInProgress</Reason><Description>Target deregistration is in progress</Description></TargetHealth>
</member></TargetHealthDescriptions></DescribeTargetHealthResult>
<ResponseMetadata><RequestId>injected</RequestId></ResponseMetadata></DescribeTargetHealthResponse>`)
	}
}

func TestDrainBoundedByDeregistrationDelay(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	id := f.ids[0]
	f.rec.setInject(draining(id))
	start := time.Now()
	err := f.driver.Drain(context.Background(), f.target, deploy.Instance{ID: id, Zone: f.zoneOf[id]})
	took := time.Since(start)
	if err == nil {
		t.Fatal("Drain returned nil while the target kept draining")
	}
	// deregistration delay 1s + margin 1s
	if took < 2*time.Second || took > 5*time.Second {
		t.Errorf("Drain gave up after %s, want about 2s (delay 1s + margin 1s)", took)
	}
	for _, want := range []string{"DescribeTargetHealth", id, "draining"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q: %v", want, err)
		}
	}
	var ae *Error
	if !errors.As(err, &ae) || ae.Permanent() {
		t.Errorf("error %v: want a non-permanent *Error", err)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	ctx := context.Background()

	t.Run("not found is permanent and names the API and resource", func(t *testing.T) {
		target := f.target
		env := *target.Environment
		fl := *env.AWS
		fl.TargetGroupARN = strings.Replace(fl.TargetGroupARN, "web-production", "web-missing", 1)
		env.AWS, target.Environment = &fl, &env
		_, err := f.driver.Instances(ctx, target)
		var ae *Error
		if !errors.As(err, &ae) || !ae.Permanent() {
			t.Fatalf("error %v: want a permanent *Error", err)
		}
		for _, want := range []string{"DescribeTargetHealth", fl.TargetGroupARN} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error does not name %q: %v", want, err)
			}
		}
	})

	t.Run("throttling is retried by the SDK", func(t *testing.T) {
		var n atomic.Int32
		f.rec.setInject(func(c call) *http.Response {
			if c.Action != "DescribeInstances" || n.Add(1) > 1 {
				return nil
			}
			return xmlResponse(503, `<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>x</RequestID></Response>`)
		})
		defer f.rec.setInject(nil)
		got, err := f.driver.Instances(ctx, f.target)
		if err != nil || len(got) != 6 {
			t.Fatalf("Instances after one throttled call = %d, %v", len(got), err)
		}
		if n.Load() < 2 {
			t.Errorf("DescribeInstances sent %d times, want a retry", n.Load())
		}
	})

	t.Run("classification", func(t *testing.T) {
		for _, tc := range []struct {
			code string
			want bool
		}{
			{"AccessDeniedException", true}, {"UnauthorizedOperation", true}, {"ValidationError", true},
			{"InvalidInstanceID.NotFound", true}, {"TargetGroupNotFound", true},
			{"Throttling", false}, {"ThrottlingException", false}, {"RequestLimitExceeded", false},
			{"InvocationDoesNotExist", false}, {"InternalError", false},
			{"PriorityInUse", false}, {"ResourceInUse", false}, {"PriorRequestNotComplete", false},
			{"InsufficientInstanceCapacity", false}, {"InvalidChangeBatch", true}, {"NoSuchHostedZone", true},
			{"TooManyTargetGroups", true}, {"InvalidInstanceId", true}, {"VcpuLimitExceeded", true},
		} {
			err := callError("x:Y", "r", &apiErr{code: tc.code})
			if got := err.(*Error).Permanent(); got != tc.want {
				t.Errorf("%s: Permanent() = %v, want %v", tc.code, got, tc.want)
			}
		}
	})
}

func TestInstallTemplate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, tmpl, want, err string }{
		{"sha", "install {{.SHA}}", "install " + newSHA, ""},
		{"repo and ref", "deploy {{.Repo}}@{{.Ref}}", "deploy acme/web@main", ""},
		{"empty", " ", "", "aws.install is empty"},
		{"bad template", "install {{.SHA", "", "not a valid template"},
		{"unknown field", "install {{.Nope}}", "", "cannot be rendered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := renderCommand("aws.install", tc.tmpl, deploy.Release{Repo: "acme/web", SHA: newSHA, Ref: "main"})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("= %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

type apiErr struct{ code string }

func (e *apiErr) Error() string                 { return e.code }
func (e *apiErr) ErrorCode() string             { return e.code }
func (e *apiErr) ErrorMessage() string          { return e.code }
func (e *apiErr) ErrorFault() smithy.ErrorFault { return smithy.FaultUnknown }

func sorted(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

// health answers DescribeTargetHealth for id with state and reason while
// on() holds.
func health(id, state, reason string, on func() bool) func(c call) *http.Response {
	return func(c call) *http.Response {
		if c.Action != "DescribeTargetHealth" || !slices.Contains(c.targetIDs(), id) || !on() {
			return nil
		}
		return xmlResponse(200, `<DescribeTargetHealthResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/">
<DescribeTargetHealthResult><TargetHealthDescriptions><member>
<Target><Id>`+id+`</Id><Port>80</Port></Target>
<TargetHealth><State>`+state+`</State><Reason>`+reason+`</Reason><Description>injected</Description></TargetHealth>
</member></TargetHealthDescriptions></DescribeTargetHealthResult>
<ResponseMetadata><RequestId>injected</RequestId></ResponseMetadata></DescribeTargetHealthResponse>`)
	}
}

// TestRolloutFailures covers what moto cannot do by itself: a target that
// never becomes healthy and draining that never ends. Each halts the
// rollout at the first instance of zone b and puts every touched instance
// back on oldSHA, healthy and in rotation.
func TestRolloutFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// inject is given the failing instance and the recorder's calls so far.
		inject func(bad string, rec *recorder) func(c call) *http.Response
		step   string
		want   []string
	}{
		{
			name: "target never healthy",
			inject: func(bad string, rec *recorder) func(c call) *http.Response {
				// Unhealthy from the rollout's RegisterTargets until the
				// rollback deregisters it; healthy once registered again.
				return health(bad, "unhealthy", "Target.ResponseCodeMismatch", func() bool {
					registers, last := 0, ""
					for _, c := range rec.snapshot("RegisterTargets", "DeregisterTargets") {
						if slices.Contains(c.targetIDs(), bad) {
							last = c.Action
							if last == "RegisterTargets" {
								registers++
							}
						}
					}
					return registers == 1 && last == "RegisterTargets"
				})
			},
			step: "admit",
			want: []string{"not healthy", "unhealthy", "Target.ResponseCodeMismatch"},
		},
		{
			name: "draining never ends",
			inject: func(bad string, rec *recorder) func(c call) *http.Response {
				// Draining for 3s from the first DeregisterTargets: the
				// rollout's Drain gives up after 2s (delay 1s + margin 1s),
				// the rollback's Drain then sees the end of it.
				var since atomic.Int64
				drain := health(bad, "draining", "Target.DeregistrationInProgress", func() bool {
					s := since.Load()
					return s != 0 && time.Since(time.Unix(0, s)) < 3*time.Second
				})
				return func(c call) *http.Response {
					if c.Action == "DeregisterTargets" && slices.Contains(c.targetIDs(), bad) {
						since.CompareAndSwap(0, time.Now().UnixNano())
					}
					return drain(c)
				}
			},
			step: "drain",
			want: []string{"draining", "DescribeTargetHealth"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFleet(t)
			f.target.Environment.Health.Timeout = time.Second
			bad := f.ids[2]
			f.rec.setInject(tc.inject(bad, f.rec))
			var failedStep string
			res, log := f.rollout(func(ev deploy.Event) {
				if ev.Kind == deploy.BatchFailed {
					failedStep = ev.Step
				}
			})
			if res.Outcome != deploy.OutcomeFailure || res.FailedInstance != bad || failedStep != tc.step {
				t.Fatalf("outcome %s on %q at %q, want failure on %s at %s: %s\n%s", res.Outcome, res.FailedInstance, failedStep, bad, tc.step, report.Reason(res.Reason), log)
			}
			for _, want := range append(tc.want, bad, "rolled back") {
				if !strings.Contains(report.Reason(res.Reason), want) {
					t.Errorf("reason does not say %q: %s", want, report.Reason(res.Reason))
				}
			}
			f.assertRolledBack(t, res, log)
			f.rec.setInject(nil)
			f.assertAllOn(t, oldSHA)
		})
	}
}

// TestZoneAssertionCatchesSpanningBatches makes sure assertOneZoneOut can
// fail: without by_zone a batch of 2 spans zones a and b.
func TestZoneAssertionCatchesSpanningBatches(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	f.target.Environment.Rollout.ByZone = false
	if res, log := f.rollout(nil); res.Outcome != deploy.OutcomeSuccess {
		t.Fatalf("outcome %s: %s\n%s", res.Outcome, report.Reason(res.Reason), log)
	}
	if msg := zonesOutTogether(f.rec.snapshot("DeregisterTargets", "RegisterTargets"), f.zoneOf); msg == "" {
		t.Error("zonesOutTogether found nothing wrong with a rollout whose batches span two zones")
	} else {
		t.Log(msg)
	}
}
