package aws

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/driver/aws/awstest"
	"github.com/shipbot/shipbot/internal/driver/aws/ec2"
	"github.com/shipbot/shipbot/internal/repoconfig"
)

const (
	previewRepo   = "acme/web"
	previewDomain = "preview.example.com"
	shaA          = "aaaa000000000000000000000000000000000001"
	shaB          = "bbbb000000000000000000000000000000000002"
)

// previewWorld is moto with what an operator sets up once for previews: a
// VPC, an application load balancer with an HTTP listener whose default
// action answers 404, a launch template and a hosted zone for the domain.
type previewWorld struct {
	url      string
	rec      *recorder
	driver   *Driver
	ec2      *ec2.Client
	elb      *elb.Client
	r53      *route53.Client
	listener string
	lbDNS    string
	zone     string // hosted zone id
	subnet   string
}

func newPreviewWorld(t *testing.T) *previewWorld {
	t.Helper()
	w := &previewWorld{url: startMoto(t), rec: newRecorder()}
	ctx := context.Background()
	cfg := awssdk.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: awssdk.String(w.url),
	}
	d, err := New(Options{Config: &cfg, HTTPClient: w.rec, Poll: 10 * time.Millisecond, DrainMargin: time.Second, InstallTimeout: 10 * time.Second, BootTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	w.driver = d
	// Setting up goes around the recorder.
	setup := setupConfig(t, cfg)
	w.ec2, w.elb, w.r53 = ec2.New(setup, ec2.Options{}), elb.NewFromConfig(setup), route53.NewFromConfig(setup)

	vpc := must(w.ec2.CreateVpc(ctx, "10.1.0.0/16"))(t)
	var subnets []string
	for i, zone := range zones[:2] {
		subnets = append(subnets, awstest.CreateSubnet(t, w.ec2, vpc, fmt.Sprintf("10.1.%d.0/24", i), zone))
	}
	w.subnet = subnets[0]
	lb := must(w.elb.CreateLoadBalancer(ctx, &elb.CreateLoadBalancerInput{Name: awssdk.String("previews"), Subnets: subnets, Type: elbtypes.LoadBalancerTypeEnumApplication}))(t)
	w.lbDNS = awssdk.ToString(lb.LoadBalancers[0].DNSName)
	l := must(w.elb.CreateListener(ctx, &elb.CreateListenerInput{
		LoadBalancerArn: lb.LoadBalancers[0].LoadBalancerArn, Protocol: elbtypes.ProtocolEnumHttp, Port: awssdk.Int32(80),
		DefaultActions: []elbtypes.Action{{Type: elbtypes.ActionTypeEnumFixedResponse, FixedResponseConfig: &elbtypes.FixedResponseActionConfig{StatusCode: awssdk.String("404")}}},
	}))(t)
	w.listener = awssdk.ToString(l.Listeners[0].ListenerArn)
	must(w.ec2.CreateLaunchTemplate(ctx, ec2.LaunchTemplate{Name: "web-preview", ImageID: "ami-12c6146b", InstanceType: "t3.micro", SubnetID: w.subnet}))(t)
	hz := must(w.r53.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{Name: awssdk.String(previewDomain), CallerReference: awssdk.String("shipbot-test")}))(t)
	w.zone = strings.TrimPrefix(awssdk.ToString(hz.HostedZone.Id), "/hostedzone/")
	return w
}

func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func (w *previewWorld) preview(number int) deploy.Preview {
	return deploy.Preview{Repo: previewRepo, Number: number, Config: repoconfig.Preview{
		Driver: repoconfig.DriverAWS, TTL: 72 * time.Hour,
		AWS: &repoconfig.AWSPreview{LaunchTemplate: "web-preview", ListenerARN: w.listener, Domain: previewDomain, HostedZoneID: w.zone},
	}}
}

// state is what moto holds of one preview, read through the SDK.
type previewState struct {
	instances map[string]string // live instance id → its ReleaseTag
	tg        string            // the target group's ARN, or ""
	targets   []string          // registered and healthy in it
	rules     []string          // listener rules for the preview's host
	records   []string          // "TYPE name → target" in the hosted zone
}

func (w *previewWorld) state(t *testing.T, number int) previewState {
	t.Helper()
	ctx := context.Background()
	k := previewKey{Repo: previewRepo, Number: number}
	var s previewState
	s.instances = map[string]string{}
	out := must(w.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2.Filter{
		{Name: "tag:" + EnvTag, Values: []string{k.env()}},
		{Name: "tag:" + RepoTag, Values: []string{k.Repo}},
		{Name: "instance-state-name", Values: liveStates},
	}}))(t)
	for _, in := range out.Instances {
		s.instances[in.ID] = in.Tags[ReleaseTag]
	}
	tgs, err := w.elb.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{k.targetGroupName()}})
	if err == nil && len(tgs.TargetGroups) == 1 {
		s.tg = awssdk.ToString(tgs.TargetGroups[0].TargetGroupArn)
		th := must(w.elb.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: awssdk.String(s.tg)}))(t)
		for _, d := range th.TargetHealthDescriptions {
			if d.TargetHealth.State == elbtypes.TargetHealthStateEnumHealthy {
				s.targets = append(s.targets, awssdk.ToString(d.Target.Id))
			}
		}
	} else if errorCode(err) != "TargetGroupNotFound" && err != nil {
		t.Fatal(err)
	}
	rules := must(w.elb.DescribeRules(ctx, &elb.DescribeRulesInput{ListenerArn: awssdk.String(w.listener)}))(t)
	host := "pr-" + itoa(number) + "." + previewDomain
	for _, r := range rules.Rules {
		if slices.Contains(ruleHosts(r), host) {
			s.rules = append(s.rules, awssdk.ToString(r.RuleArn))
		}
	}
	rrs := must(w.r53.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{HostedZoneId: awssdk.String(w.zone)}))(t)
	for _, rr := range rrs.ResourceRecordSets {
		if strings.TrimSuffix(awssdk.ToString(rr.Name), ".") != host {
			continue
		}
		to := ""
		if rr.AliasTarget != nil {
			to = strings.TrimSuffix(awssdk.ToString(rr.AliasTarget.DNSName), ".")
		}
		s.records = append(s.records, string(rr.Type)+" "+host+" → "+to)
	}
	return s
}

func itoa(n int) string { return previewKey{Number: n}.env()[3:] }

func (s previewState) empty() bool {
	return len(s.instances) == 0 && s.tg == "" && len(s.rules) == 0 && len(s.records) == 0
}

// TestPreviewLifecycle: created, ensured again (nothing changes), updated
// in place to a new release (same URL, group, rule and record; a new
// instance replaces the old), torn down leaving nothing, torn down again.
//
// moto serves every API previews use: launch templates and RunInstances
// from one, ELBv2 rules with host-header conditions and their tags, and
// Route 53 alias records. It finishes every SSM command with Success and
// reports registered targets healthy at once, so the happy path needs no
// injection here.
func TestPreviewLifecycle(t *testing.T) {
	t.Parallel()
	w := newPreviewWorld(t)
	ctx := context.Background()
	p := w.preview(7)
	var log strings.Builder

	url, err := w.driver.EnsurePreview(ctx, p, deploy.Release{Repo: previewRepo, SHA: shaA}, &log)
	if err != nil {
		t.Fatalf("EnsurePreview: %v\n%s", err, log.String())
	}
	if url != "https://pr-7.preview.example.com" {
		t.Errorf("url = %q", url)
	}
	first := w.state(t, 7)
	if len(first.instances) != 1 || first.tg == "" || len(first.targets) != 1 || len(first.rules) != 1 || len(first.records) != 1 {
		t.Fatalf("after the first EnsurePreview: %+v\n%s", first, log.String())
	}
	inst := first.targets[0]
	if first.instances[inst] != shaA {
		t.Errorf("instance %s runs %q, want %s", inst, first.instances[inst], shaA)
	}
	if want := "A pr-7.preview.example.com → " + w.lbDNS; first.records[0] != want {
		t.Errorf("record %q, want %q", first.records[0], want)
	}
	w.assertTagged(t, 7, inst, first.tg, first.rules[0])
	w.assertInstalled(t, inst, shaA)

	// The same release again: nothing is launched or created.
	before := len(w.rec.snapshot("RunInstances", "CreateTargetGroup", "CreateRule", "SendCommand"))
	if _, err := w.driver.EnsurePreview(ctx, p, deploy.Release{Repo: previewRepo, SHA: shaA}, &log); err != nil {
		t.Fatal(err)
	}
	if n := len(w.rec.snapshot("RunInstances", "CreateTargetGroup", "CreateRule", "SendCommand")) - before; n != 0 {
		t.Errorf("a repeated EnsurePreview made %d launch/create/install calls, want 0", n)
	}

	// A push: the same group, rule and record, a new instance on shaB.
	url2, err := w.driver.EnsurePreview(ctx, p, deploy.Release{Repo: previewRepo, SHA: shaB}, &log)
	if err != nil || url2 != url {
		t.Fatalf("update: %q, %v\n%s", url2, err, log.String())
	}
	second := w.state(t, 7)
	if second.tg != first.tg || !slices.Equal(second.rules, first.rules) || !slices.Equal(second.records, first.records) {
		t.Errorf("update replaced the group, rule or record:\nbefore %+v\nafter  %+v", first, second)
	}
	if len(second.instances) != 1 || len(second.targets) != 1 || second.targets[0] == inst || second.instances[second.targets[0]] != shaB {
		t.Errorf("after the update: %+v, want one instance other than %s, on %s, registered", second, inst, shaB)
	}
	w.assertInstalled(t, second.targets[0], shaB)

	if err := w.driver.TeardownPreview(ctx, p); err != nil {
		t.Fatalf("TeardownPreview: %v", err)
	}
	if s := w.state(t, 7); !s.empty() {
		t.Errorf("left behind after teardown: %+v", s)
	}
	if err := w.driver.TeardownPreview(ctx, p); err != nil {
		t.Errorf("a second TeardownPreview: %v", err)
	}
}

// assertTagged checks the tags of the instance, the target group and the
// rule of preview number.
func (w *previewWorld) assertTagged(t *testing.T, number int, inst, tg, rule string) {
	t.Helper()
	ctx := context.Background()
	want := map[string]string{AppTag: "web", RepoTag: previewRepo, EnvTag: "pr-" + itoa(number), ManagedByTag: ManagedBy}
	check := func(what string, got map[string]string) {
		t.Helper()
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s tag %s = %q, want %q (all: %v)", what, k, got[k], v, got)
			}
		}
		if _, err := time.Parse(time.RFC3339, got[UpdatedAtTag]); err != nil {
			t.Errorf("%s tag %s = %q: %v", what, UpdatedAtTag, got[UpdatedAtTag], err)
		}
	}
	out := must(w.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIDs: []string{inst}}))(t)
	check("instance", out.Instances[0].Tags)
	tags := must(w.elb.DescribeTags(ctx, &elb.DescribeTagsInput{ResourceArns: []string{tg, rule}}))(t)
	for _, td := range tags.TagDescriptions {
		got := map[string]string{}
		for _, tag := range td.Tags {
			got[awssdk.ToString(tag.Key)] = awssdk.ToString(tag.Value)
		}
		check(awssdk.ToString(td.ResourceArn), got)
	}
}

// assertInstalled checks that the instance got the preview install
// command for sha through SSM.
func (w *previewWorld) assertInstalled(t *testing.T, inst, sha string) {
	t.Helper()
	for _, c := range w.rec.snapshot("SendCommand") {
		ids, _ := c.JSON["InstanceIds"].([]any)
		params, _ := c.JSON["Parameters"].(map[string]any)
		cmds, _ := params["commands"].([]any)
		if len(ids) == 1 && ids[0] == inst && len(cmds) == 1 && cmds[0] == "/opt/shipbot/install "+sha && c.JSON["DocumentName"] == "AWS-RunShellScript" {
			return
		}
	}
	t.Errorf("no SendCommand of AWS-RunShellScript %q to %s", "/opt/shipbot/install "+sha, inst)
}

// TestPreviewInstallFromConfig: preview.aws.install, when set, is the
// command a preview instance installs a release with, instead of
// repoconfig.DefaultPreviewInstall.
func TestPreviewInstallFromConfig(t *testing.T) {
	t.Parallel()
	w := newPreviewWorld(t)
	p := w.preview(9)
	p.Config.AWS.Install = "sudo /srv/web/deploy --repo {{.Repo}} {{.SHA}}"
	var log strings.Builder
	if _, err := w.driver.EnsurePreview(context.Background(), p, deploy.Release{Repo: previewRepo, SHA: shaA}, &log); err != nil {
		t.Fatalf("EnsurePreview: %v\n%s", err, log.String())
	}
	s := w.state(t, 9)
	if len(s.targets) != 1 {
		t.Fatalf("after EnsurePreview: %+v, want one instance serving", s)
	}
	want := "sudo /srv/web/deploy --repo " + previewRepo + " " + shaA
	var got []string
	for _, c := range w.rec.snapshot("SendCommand") {
		ids, _ := c.JSON["InstanceIds"].([]any)
		params, _ := c.JSON["Parameters"].(map[string]any)
		for _, cmd := range params["commands"].([]any) {
			got = append(got, fmt.Sprint(ids, " ", cmd))
		}
	}
	if w := fmt.Sprint([]any{s.targets[0]}, " ", want); !slices.Equal(got, []string{w}) {
		t.Errorf("SendCommand calls ran %q, want only %q", got, w)
	}
}

// TestPreviewFailedUpdateKeepsServing: an update whose new instance fails
// its install, or never becomes healthy, fails, terminates the new
// instance and leaves the old one serving the previous release; the retry
// then goes through. Both failures are injected in front of moto, which
// finishes every SSM command with Success and reports every registered
// target healthy at once.
func TestPreviewFailedUpdateKeepsServing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// inject fails the update on any instance but old.
		inject func(old string) func(c call) *http.Response
		api    string
		want   string
		perm   bool
	}{
		{
			name: "install fails",
			inject: func(old string) func(c call) *http.Response {
				return func(c call) *http.Response {
					if c.Action != "GetCommandInvocation" || c.JSON["InstanceId"] == old {
						return nil
					}
					return jsonResponse(200, map[string]any{
						"CommandId": c.JSON["CommandId"], "InstanceId": c.JSON["InstanceId"], "DocumentName": "AWS-RunShellScript",
						"Status": "Failed", "StatusDetails": "Failed", "ResponseCode": 1,
						"StandardErrorContent": "install: no such release\n",
					})
				}
			},
			api: "ssm:GetCommandInvocation", want: "no such release", perm: true,
		},
		{
			name: "never healthy",
			inject: func(old string) func(c call) *http.Response {
				return func(c call) *http.Response {
					ids := c.targetIDs()
					if c.Action != "DescribeTargetHealth" || len(ids) != 1 || ids[0] == old {
						return nil
					}
					return health(ids[0], "unhealthy", "Target.ResponseCodeMismatch", func() bool { return true })(c)
				}
			},
			api: "elasticloadbalancing:DescribeTargetHealth", want: "Target.ResponseCodeMismatch",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newPreviewWorld(t)
			ctx := context.Background()
			p := w.preview(8)
			p.Config.Health.Timeout = time.Second
			if _, err := w.driver.EnsurePreview(ctx, p, deploy.Release{Repo: previewRepo, SHA: shaA}, nil); err != nil {
				t.Fatal(err)
			}
			old := w.state(t, 8).targets[0]

			w.rec.setInject(tc.inject(old))
			var log strings.Builder
			_, err := w.driver.EnsurePreview(ctx, p, deploy.Release{Repo: previewRepo, SHA: shaB}, &log)
			var ae *Error
			if !errors.As(err, &ae) || ae.Permanent() != tc.perm || ae.API != tc.api || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("failed update: %v; want a %s error (permanent %v) saying %q", err, tc.api, tc.perm, tc.want)
			}
			if !strings.Contains(log.String(), "which failed the update") {
				t.Errorf("the log does not say the new instance was terminated:\n%s", log.String())
			}
			w.rec.setInject(nil)
			s := w.state(t, 8)
			if !slices.Equal(s.targets, []string{old}) || len(s.instances) != 1 || s.instances[old] != shaA {
				t.Errorf("after the failed update: %+v; want only %s, on %s, serving", s, old, shaA)
			}

			if _, err := w.driver.EnsurePreview(ctx, p, deploy.Release{Repo: previewRepo, SHA: shaB}, nil); err != nil {
				t.Fatal(err)
			}
			s = w.state(t, 8)
			if len(s.instances) != 1 || len(s.targets) != 1 || s.instances[s.targets[0]] != shaB {
				t.Errorf("after the retry: %+v, want one instance on %s", s, shaB)
			}
		})
	}
}

// TestPreviewRaces: what real AWS does and moto does not, injected: the
// SSM agent of a new instance registers a moment after the instance runs
// (SendCommand answers InvalidInstanceId until then), and another preview
// takes the free rule priority between our look and our CreateRule
// (PriorityInUse). Both are waited out. Without hosted_zone_id Route 53 is
// not called.
func TestPreviewRaces(t *testing.T) {
	t.Parallel()
	w := newPreviewWorld(t)
	var sends, creates atomic.Int32
	w.rec.setInject(func(c call) *http.Response {
		switch {
		case c.Action == "SendCommand" && sends.Add(1) <= 2:
			return jsonResponse(400, map[string]any{"__type": "InvalidInstanceId", "message": "Instances not in a valid state for account"})
		case c.Action == "CreateRule" && creates.Add(1) == 1:
			return xmlResponse(400, `<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><Error><Type>Sender</Type><Code>PriorityInUse</Code><Message>The specified priority is in use.</Message></Error><RequestId>injected</RequestId></ErrorResponse>`)
		}
		return nil
	})
	p := w.preview(10)
	p.Config.AWS.HostedZoneID = ""
	if _, err := w.driver.EnsurePreview(context.Background(), p, deploy.Release{Repo: previewRepo, SHA: shaA}, nil); err != nil {
		t.Fatal(err)
	}
	if sends.Load() != 3 || creates.Load() != 2 {
		t.Errorf("SendCommand sent %d times, CreateRule %d; want 3 (two refused) and 2 (one refused)", sends.Load(), creates.Load())
	}
	if s := w.state(t, 10); len(s.targets) != 1 || len(s.rules) != 1 || len(s.records) != 0 {
		t.Errorf("preview: %+v, want one instance serving, one rule, no record", s)
	}
	if n := len(w.rec.snapshot("ChangeResourceRecordSets", "ListResourceRecordSets")); n != 0 {
		t.Errorf("%d Route 53 calls without hosted_zone_id", n)
	}
}

// TestPreviewResumesAfterCrash: an attempt that died after making the
// target group and launching the instance (and before anything else) is
// picked up: the retry creates neither again.
func TestPreviewResumesAfterCrash(t *testing.T) {
	t.Parallel()
	w := newPreviewWorld(t)
	ctx := context.Background()
	p := w.preview(9)
	pl, err := w.driver.place(p, true)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := w.driver.listenerBalancer(ctx, pl.c, w.listener)
	if err != nil {
		t.Fatal(err)
	}
	tags := pl.key.tags(time.Now())
	if _, err := w.driver.ensureTargetGroup(ctx, pl, lb, "/healthz", tags, io.Discard); err != nil {
		t.Fatal(err)
	}
	launched, err := w.driver.launch(ctx, pl, tags)
	if err != nil {
		t.Fatal(err)
	}
	before := len(w.rec.snapshot("RunInstances", "CreateTargetGroup"))
	if _, err := w.driver.EnsurePreview(ctx, p, deploy.Release{Repo: previewRepo, SHA: shaA}, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(w.rec.snapshot("RunInstances", "CreateTargetGroup")) - before; n != 0 {
		t.Errorf("the retry made %d RunInstances/CreateTargetGroup calls, want 0", n)
	}
	if s := w.state(t, 9); !slices.Equal(s.targets, []string{launched}) || s.instances[launched] != shaA {
		t.Errorf("after the retry: %+v, want %s serving %s", s, launched, shaA)
	}
}

// TestSweepPreviews: leftovers made out of band (as a crashed bot or a
// lost pull_request.closed would leave them) are removed when their PR is
// closed or their TTL passed; open and fresh previews, previews whose state
// is unknown and resources without a preview's tags stay.
func TestSweepPreviews(t *testing.T) {
	t.Parallel()
	w := newPreviewWorld(t)
	ctx := context.Background()
	fresh := time.Now()
	stale := fresh.Add(-100 * time.Hour)

	// 1: closed, fresh; 2: open, stale; 3: open, fresh (made by
	// EnsurePreview); 4: its state cannot be told.
	w.outOfBand(t, 1, fresh)
	w.outOfBand(t, 2, stale)
	w.outOfBand(t, 4, stale.Add(99*time.Hour))
	if _, err := w.driver.EnsurePreview(ctx, w.preview(3), deploy.Release{Repo: previewRepo, SHA: shaA}, nil); err != nil {
		t.Fatal(err)
	}
	// Not a preview's: a managed-by instance without repository and
	// number, and an instance of someone else's.
	strays := []string{
		w.runInstance(t, map[string]string{ManagedByTag: ManagedBy}),
		w.runInstance(t, map[string]string{"app": "web", EnvTag: "pr-1"}),
	}

	isOpen := func(ctx context.Context, repo string, number int) (bool, error) {
		if repo != previewRepo {
			t.Errorf("isOpen(%q, %d)", repo, number)
		}
		switch number {
		case 1:
			return false, nil
		case 4:
			return false, errors.New("github: 502")
		}
		return true, nil
	}
	swept, err := w.driver.SweepPreviews(ctx, isOpen, 72*time.Hour)
	if err == nil || !strings.Contains(err.Error(), "502") || !strings.Contains(err.Error(), previewRepo+"#4") {
		t.Errorf("sweep error = %v, want the failed isOpen of #4", err)
	}
	var got []string
	for _, s := range swept {
		got = append(got, itoa(s.Number)+": "+s.Reason)
	}
	if len(got) != 2 || got[0] != "1: pull request closed" || !strings.HasPrefix(got[1], "2: no update for") {
		t.Errorf("swept %q, want #1 (closed) and #2 (ttl)", got)
	}
	for _, n := range []int{1, 2} {
		if s := w.state(t, n); !s.empty() {
			t.Errorf("preview %d left behind after the sweep: %+v", n, s)
		}
	}
	for _, n := range []int{3, 4} {
		if s := w.state(t, n); len(s.instances) != 1 || s.tg == "" || len(s.rules) != 1 || len(s.records) != 1 {
			t.Errorf("preview %d was touched by the sweep: %+v", n, s)
		}
	}
	out := must(w.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIDs: strays}))(t)
	for _, in := range out.Instances {
		if in.State != ec2.StateRunning {
			t.Errorf("stray instance %s is %s after the sweep", in.ID, in.State)
		}
	}
}

// outOfBand makes preview number's resources directly with the SDK, with
// the tags shipbot writes: an instance, a target group with it registered,
// a host-header rule and an alias record.
func (w *previewWorld) outOfBand(t *testing.T, number int, updated time.Time) {
	t.Helper()
	ctx := context.Background()
	k := previewKey{Repo: previewRepo, Number: number}
	host := "pr-" + itoa(number) + "." + previewDomain
	tags := k.tags(updated)
	id := w.runInstance(t, tags)
	tags[RecordTag] = w.zone + "/" + host
	lbs := must(w.elb.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{}))(t)
	tg := must(w.elb.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{
		Name: awssdk.String(k.targetGroupName()), Protocol: elbtypes.ProtocolEnumHttp, Port: awssdk.Int32(80),
		VpcId: lbs.LoadBalancers[0].VpcId, TargetType: elbtypes.TargetTypeEnumInstance, Tags: elbTags(tags),
	}))(t)
	arn := tg.TargetGroups[0].TargetGroupArn
	must(w.elb.RegisterTargets(ctx, &elb.RegisterTargetsInput{TargetGroupArn: arn, Targets: []elbtypes.TargetDescription{{Id: awssdk.String(id)}}}))(t)
	must(w.elb.CreateRule(ctx, &elb.CreateRuleInput{
		ListenerArn: awssdk.String(w.listener), Priority: awssdk.Int32(int32(100 + number)),
		Conditions: []elbtypes.RuleCondition{{Field: awssdk.String("host-header"), HostHeaderConfig: &elbtypes.HostHeaderConditionConfig{Values: []string{host}}}},
		Actions:    []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: arn}},
		Tags:       elbTags(tags),
	}))(t)
	must(w.r53.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{
		HostedZoneId: awssdk.String(w.zone),
		ChangeBatch: &r53types.ChangeBatch{Changes: []r53types.Change{{Action: r53types.ChangeActionCreate, ResourceRecordSet: &r53types.ResourceRecordSet{
			Name: awssdk.String(host), Type: r53types.RRTypeA,
			AliasTarget: &r53types.AliasTarget{DNSName: lbs.LoadBalancers[0].DNSName, HostedZoneId: lbs.LoadBalancers[0].CanonicalHostedZoneId},
		}}}},
	}))(t)
}

func (w *previewWorld) runInstance(t *testing.T, tags map[string]string) string {
	t.Helper()
	out := must(w.ec2.RunInstances(context.Background(), &ec2.RunInstancesInput{
		ImageID: "ami-12c6146b", InstanceType: "t3.micro", SubnetID: w.subnet, Tags: tags,
	}))(t)
	return out.Instances[0].ID
}

func TestPreviewSettings(t *testing.T) {
	t.Parallel()
	d, err := New(Options{Config: &awssdk.Config{Region: "eu-west-1"}})
	if err != nil {
		t.Fatal(err)
	}
	good := repoconfig.AWSPreview{LaunchTemplate: "lt", ListenerARN: "arn:aws:elasticloadbalancing:us-west-2:123456789012:listener/app/p/1/2", Domain: "Preview.Example.com."}
	for _, tc := range []struct {
		name string
		aws  *repoconfig.AWSPreview
		want string
	}{
		{"no aws", nil, "set preview.aws in"},
		{"no listener", &repoconfig.AWSPreview{LaunchTemplate: "lt", Domain: "d"}, "set preview.aws.listener_arn in"},
		{"two missing", &repoconfig.AWSPreview{ListenerARN: "x"}, "preview.aws.launch_template, preview.aws.domain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.EnsurePreview(context.Background(), deploy.Preview{Repo: "a/b", Number: 1, Config: repoconfig.Preview{AWS: tc.aws}}, deploy.Release{SHA: shaA}, nil)
			var ae *Error
			if !errors.As(err, &ae) || !ae.Permanent() || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "a/b#1") {
				t.Errorf("err = %v, want a permanent error saying %q about a/b#1", err, tc.want)
			}
		})
	}
	pl, err := d.place(deploy.Preview{Repo: "a/b", Number: 12, Config: repoconfig.Preview{AWS: &good}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if pl.host != "pr-12.preview.example.com" {
		t.Errorf("host = %q", pl.host)
	}
	if _, ok := d.regions["us-west-2"]; !ok {
		t.Errorf("clients made for %v, want the listener's region us-west-2", d.regions)
	}
	if name := (previewKey{Repo: "some-organisation/a-very-long-repository-name", Number: 999999999}).targetGroupName(); len(name) > 32 {
		t.Errorf("target group name %q is %d characters, over ELBv2's 32", name, len(name))
	}
	if a, b := (previewKey{Repo: "acme/web", Number: 1}).targetGroupName(), (previewKey{Repo: "acme/api", Number: 1}).targetGroupName(); a == b {
		t.Errorf("two repositories share target group name %q", a)
	}
	bad := good
	bad.Install = "install {{.Nope}}"
	_, err = d.EnsurePreview(context.Background(), deploy.Preview{Repo: "a/b", Number: 1, Config: repoconfig.Preview{AWS: &bad}}, deploy.Release{SHA: shaA}, nil)
	if ae := (*Error)(nil); !errors.As(err, &ae) || !ae.Permanent() || !strings.Contains(err.Error(), "preview.aws.install cannot be rendered") {
		t.Errorf("EnsurePreview with preview.aws.install %q = %v, want a permanent error naming it", bad.Install, err)
	}
}

func TestFreePriority(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		used   []int
		number int
		want   int
	}{
		{"the PR's number when free", nil, 42, 42},
		{"the next free above it", []int{42, 43}, 42, 44},
		{"wraps past the last priority", []int{maxPriority}, maxPriority, 1},
		{"large numbers fold into range", nil, maxPriority + 5, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			used := map[int]bool{}
			for _, u := range tc.used {
				used[u] = true
			}
			if got := freePriority(used, tc.number); got != tc.want {
				t.Errorf("freePriority = %d, want %d", got, tc.want)
			}
		})
	}
	all := map[int]bool{}
	for p := 1; p <= maxPriority; p++ {
		all[p] = true
	}
	if got := freePriority(all, 1); got != 0 {
		t.Errorf("with every priority used: %d, want 0", got)
	}
}
