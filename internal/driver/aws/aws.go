// Package aws is shipbot's driver for environments on AWS: a fleet of EC2
// instances, found by their tags and grouped by availability zone, behind
// an ALB target group, updated through SSM Run Command (SPEC §7); and
// pull-request previews, each an instance from a launch template behind
// its own target group and host-header listener rule (preview.go), with
// a sweep for the ones nobody tore down (sweep.go).
//
// It owns the conversation with EC2, Elastic Load Balancing v2, SSM,
// Route 53 and CloudWatch (the state of aws.alarms, alarms.go), over small
// interfaces of the clients it uses (the SDK's, and for EC2 its own small
// Query API client, package ec2); the engine (internal/deploy) decides what
// happens and in which order.
//
// What runs on an instance is kept in the instance's tag shipbot:release
// (ReleaseTag): Install deletes it before running the install command and
// sets it to the SHA once the command succeeded, so an instance whose
// install failed or was interrupted reads as running no known release and
// is installed again by the next rollout.
//
// The fleet path needs these IAM actions: ec2:DescribeInstances,
// ec2:CreateTags and ec2:DeleteTags (on the fleet's instances, for
// ReleaseTag); elasticloadbalancing:DescribeTargetHealth,
// DescribeTargetGroupAttributes, RegisterTargets and DeregisterTargets (on
// the target group); ssm:SendCommand (on the AWS-RunShellScript document
// and the instances) and ssm:GetCommandInvocation (also all aws.release,
// the release phase of release.go, needs); with aws.alarms,
// cloudwatch:DescribeAlarms. The target group must be used by a load
// balancer listener, or its targets never become healthy.
// Previews and the sweep need more; the README lists them as a policy.
package aws

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/driver/aws/ec2"
	"github.com/shipbot/shipbot/internal/repoconfig"
)

// ReleaseTag is the EC2 tag holding the SHA an instance runs, as far as
// shipbot installed it.
const ReleaseTag = "shipbot:release"

// The AWS calls the driver makes, as small interfaces (the SDK clients,
// and for EC2 shipbot's own client, satisfy them).
type ec2API interface {
	DescribeInstances(ctx context.Context, in *ec2.DescribeInstancesInput) (*ec2.DescribeInstancesOutput, error)
	CreateTags(ctx context.Context, in *ec2.CreateTagsInput) error
	DeleteTags(ctx context.Context, in *ec2.DeleteTagsInput) error
}

type elbAPI interface {
	DescribeTargetHealth(ctx context.Context, in *elb.DescribeTargetHealthInput, opts ...func(*elb.Options)) (*elb.DescribeTargetHealthOutput, error)
	RegisterTargets(ctx context.Context, in *elb.RegisterTargetsInput, opts ...func(*elb.Options)) (*elb.RegisterTargetsOutput, error)
	DeregisterTargets(ctx context.Context, in *elb.DeregisterTargetsInput, opts ...func(*elb.Options)) (*elb.DeregisterTargetsOutput, error)
	DescribeTargetGroupAttributes(ctx context.Context, in *elb.DescribeTargetGroupAttributesInput, opts ...func(*elb.Options)) (*elb.DescribeTargetGroupAttributesOutput, error)
}

type ssmAPI interface {
	SendCommand(ctx context.Context, in *ssm.SendCommandInput, opts ...func(*ssm.Options)) (*ssm.SendCommandOutput, error)
	GetCommandInvocation(ctx context.Context, in *ssm.GetCommandInvocationInput, opts ...func(*ssm.Options)) (*ssm.GetCommandInvocationOutput, error)
}

// Options configures the driver. The zero value is ready for production.
type Options struct {
	// Config is the AWS configuration to start from; nil loads it from the
	// SDK's standard chain (AWS_REGION, AWS_ENDPOINT_URL, profiles,
	// instance roles). An environment's aws.region overrides its region.
	Config *awssdk.Config
	// HTTPClient, when set, carries every AWS request (tests record and
	// inject responses with it).
	HTTPClient awssdk.HTTPClient
	// Poll is how often the driver asks AWS whether a wait is over
	// (draining, healthy, command finished); default 2s.
	Poll time.Duration
	// DrainMargin is added to the target group's deregistration delay to
	// bound Drain; default 15s.
	DrainMargin time.Duration
	// InstallTimeout bounds one install command; default 15m.
	InstallTimeout time.Duration
	// RetryMaxAttempts is the SDK retryer's attempts per call (throttling,
	// 5xx), EC2's included; default 5.
	RetryMaxAttempts int

	// PreviewPort is the port a preview instance serves HTTP on, for its
	// target group; default 80.
	PreviewPort int32
	// BootTimeout bounds the wait for a new preview instance to run and
	// for its SSM agent to register; default 10m.
	BootTimeout time.Duration
	// SweepRegions are the regions SweepPreviews looks in; default the
	// configured region.
	SweepRegions []string
}

// Driver runs environments whose driver is aws. It is safe for concurrent
// use; clients are made once per region.
type Driver struct {
	cfg  awssdk.Config
	opts Options

	mu      sync.Mutex
	regions map[string]*clients

	// cloudwatchOptions, when set, adjusts every CloudWatch client made
	// (the moto tests switch its protocol).
	cloudwatchOptions func(*cloudwatch.Options)
}

type clients struct {
	ec2 previewEC2API
	elb previewELBAPI
	ssm ssmAPI
	r53 route53API
	cw  cloudwatchAPI
}

var _ deploy.Driver = (*Driver)(nil)

// New returns a driver over the AWS configuration in opts, or the standard
// chain's. Loading the standard chain reads the environment and files only;
// credentials are resolved at the first call.
func New(opts Options) (*Driver, error) {
	var cfg awssdk.Config
	if opts.Config != nil {
		cfg = opts.Config.Copy()
	} else {
		var err error
		cfg, err = config.LoadDefaultConfig(context.Background())
		if err != nil {
			return nil, fmt.Errorf("aws: load configuration from the standard chain (AWS_REGION, AWS_PROFILE, ~/.aws/config): %w", err)
		}
	}
	if opts.HTTPClient != nil {
		cfg.HTTPClient = opts.HTTPClient
	}
	if opts.Poll <= 0 {
		opts.Poll = 2 * time.Second
	}
	if opts.DrainMargin <= 0 {
		opts.DrainMargin = 15 * time.Second
	}
	if opts.InstallTimeout <= 0 {
		opts.InstallTimeout = 15 * time.Minute
	}
	if opts.RetryMaxAttempts <= 0 {
		opts.RetryMaxAttempts = 5
	}
	if opts.PreviewPort <= 0 {
		opts.PreviewPort = 80
	}
	if opts.BootTimeout <= 0 {
		opts.BootTimeout = 10 * time.Minute
	}
	return &Driver{cfg: cfg, opts: opts, regions: map[string]*clients{}}, nil
}

// fleet returns the environment's aws settings and the clients of its region.
func (d *Driver) fleet(t deploy.Target) (*repoconfig.AWSFleet, *clients, error) {
	env := t.Environment
	if env == nil || env.AWS == nil {
		name := "?"
		if env != nil {
			name = env.Name
		}
		return nil, nil, permanentError("shipbot", "environment "+name, fmt.Errorf("no aws settings: set environments.%s.aws in .github/shipbot.yml", name))
	}
	f := env.AWS
	if f.TargetGroupARN == "" {
		return nil, nil, permanentError("shipbot", "environment "+env.Name, fmt.Errorf("aws.target_group_arn is empty"))
	}
	if len(f.InstanceTags) == 0 {
		// An empty filter would match every instance of the account.
		return nil, nil, permanentError("shipbot", "environment "+env.Name, fmt.Errorf("aws.instance_tags is empty: name the tags that pick this environment's instances"))
	}
	region := f.Region
	if region == "" {
		region = d.cfg.Region
	}
	if region == "" {
		return nil, nil, permanentError("shipbot", "environment "+env.Name, fmt.Errorf("no region: set aws.region or AWS_REGION"))
	}
	return f, d.clients(region), nil
}

// clients returns the clients of region, made at the first use.
func (d *Driver) clients(region string) *clients {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.regions[region]
	if c == nil {
		attempts := d.opts.RetryMaxAttempts
		c = &clients{
			ec2: ec2.New(d.cfg, ec2.Options{Region: region, RetryMaxAttempts: attempts}),
			elb: elb.NewFromConfig(d.cfg, func(o *elb.Options) { o.Region = region; o.RetryMaxAttempts = attempts }),
			ssm: ssm.NewFromConfig(d.cfg, func(o *ssm.Options) { o.Region = region; o.RetryMaxAttempts = attempts }),
			r53: route53.NewFromConfig(d.cfg, func(o *route53.Options) { o.Region = region; o.RetryMaxAttempts = attempts }),
			cw:  d.newCloudWatch(region, attempts),
		}
		d.regions[region] = c
	}
	return c
}

// Instances lists the running EC2 instances carrying every one of the
// environment's instance_tags, with their zones, the release of their
// ReleaseTag, and health and rotation as the target group reports them:
// in rotation = registered and not draining; healthy = in rotation and
// "healthy". An instance not registered is out of rotation and unhealthy,
// so the plan replaces it first.
func (d *Driver) Instances(ctx context.Context, t deploy.Target) ([]deploy.Instance, error) {
	f, c, err := d.fleet(t)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(f.InstanceTags))
	for k := range f.InstanceTags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	filters := []ec2.Filter{{Name: "instance-state-name", Values: []string{"running"}}}
	for _, k := range keys {
		filters = append(filters, ec2.Filter{Name: "tag:" + k, Values: []string{f.InstanceTags[k]}})
	}
	found, err := ec2.AllInstances(ctx, c.ec2, ec2.DescribeInstancesInput{Filters: filters})
	if err != nil {
		return nil, callError("ec2:DescribeInstances", "instances tagged "+tagList(keys, f.InstanceTags), err)
	}
	var out []deploy.Instance
	for _, in := range found {
		out = append(out, deploy.Instance{ID: in.ID, Zone: in.Zone, Release: in.Tags[ReleaseTag]})
	}
	if len(out) == 0 {
		return nil, nil
	}

	th, err := c.elb.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: awssdk.String(f.TargetGroupARN)})
	if err != nil {
		return nil, callError("elasticloadbalancing:DescribeTargetHealth", f.TargetGroupARN, err)
	}
	states := map[string]elbtypes.TargetHealthStateEnum{}
	for _, desc := range th.TargetHealthDescriptions {
		if desc.Target == nil || desc.TargetHealth == nil {
			continue
		}
		states[awssdk.ToString(desc.Target.Id)] = desc.TargetHealth.State
	}
	for i := range out {
		st, ok := states[out[i].ID]
		out[i].InRotation = ok && inRotation(st)
		out[i].Healthy = out[i].InRotation && st == elbtypes.TargetHealthStateEnumHealthy
	}
	slices.SortFunc(out, func(a, b deploy.Instance) int {
		if a.Zone != b.Zone {
			return strings.Compare(a.Zone, b.Zone)
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// inRotation: the load balancer may send the target requests in this state.
func inRotation(st elbtypes.TargetHealthStateEnum) bool {
	switch st {
	case elbtypes.TargetHealthStateEnumHealthy, elbtypes.TargetHealthStateEnumInitial,
		elbtypes.TargetHealthStateEnumUnhealthy, elbtypes.TargetHealthStateEnumUnavailable:
		return true
	}
	return false // unused, draining, unhealthy.draining
}

// Prepare does nothing: instances fetch the release themselves in the
// install command.
func (d *Driver) Prepare(ctx context.Context, t deploy.Target, r deploy.Release, log io.Writer) error {
	return nil
}

// Drain deregisters the instance from the target group and waits until the
// target group no longer lists it as draining, bounded by the group's
// deregistration_delay.timeout_seconds plus Options.DrainMargin. An
// instance already out (unused) is left as it is and one already draining
// is only waited for, so Drain is safe to repeat.
func (d *Driver) Drain(ctx context.Context, t deploy.Target, inst deploy.Instance) error {
	f, c, err := d.fleet(t)
	if err != nil {
		return err
	}
	return d.drain(ctx, c, f.TargetGroupARN, inst)
}

func (d *Driver) drain(ctx context.Context, c *clients, tg string, inst deploy.Instance) error {
	st, _, err := d.targetState(ctx, c, tg, inst.ID)
	if err != nil {
		return err
	}
	if st == elbtypes.TargetHealthStateEnumUnused {
		return nil
	}
	delay, err := d.deregistrationDelay(ctx, c, tg)
	if err != nil {
		return err
	}
	// A target already draining (an earlier Drain that gave up) is only
	// waited for: deregistering it again would restart nothing useful.
	if inRotation(st) {
		_, err = c.elb.DeregisterTargets(ctx, &elb.DeregisterTargetsInput{
			TargetGroupArn: awssdk.String(tg),
			Targets:        []elbtypes.TargetDescription{{Id: awssdk.String(inst.ID)}},
		})
		if err != nil {
			return callError("elasticloadbalancing:DeregisterTargets", inst.ID+" in "+tg, err)
		}
	}
	bound := delay + d.opts.DrainMargin
	var last elbtypes.TargetHealthStateEnum
	err = d.poll(ctx, bound, func(ctx context.Context) (bool, error) {
		st, _, err := d.targetState(ctx, c, tg, inst.ID)
		last = st
		return st == elbtypes.TargetHealthStateEnumUnused, err
	})
	if err == errPollTimeout {
		return waitError("elasticloadbalancing:DescribeTargetHealth", inst.ID+" in "+tg,
			"still %s %s after deregistering it (deregistration delay %s + %s margin)", last, bound.Round(time.Second), delay, d.opts.DrainMargin)
	}
	return err
}

// deregistrationDelay reads the target group's
// deregistration_delay.timeout_seconds (AWS's default is 300).
func (d *Driver) deregistrationDelay(ctx context.Context, c *clients, tg string) (time.Duration, error) {
	out, err := c.elb.DescribeTargetGroupAttributes(ctx, &elb.DescribeTargetGroupAttributesInput{TargetGroupArn: awssdk.String(tg)})
	if err != nil {
		return 0, callError("elasticloadbalancing:DescribeTargetGroupAttributes", tg, err)
	}
	for _, a := range out.Attributes {
		if awssdk.ToString(a.Key) == "deregistration_delay.timeout_seconds" {
			s, err := strconv.Atoi(awssdk.ToString(a.Value))
			if err != nil || s < 0 {
				return 0, permanentError("elasticloadbalancing:DescribeTargetGroupAttributes", tg, fmt.Errorf("deregistration_delay.timeout_seconds is %q, not a number of seconds", awssdk.ToString(a.Value)))
			}
			return time.Duration(s) * time.Second, nil
		}
	}
	return 300 * time.Second, nil
}

// targetState is the target group's view of one instance: its state, and
// the reason in words when it is not healthy.
func (d *Driver) targetState(ctx context.Context, c *clients, tg, id string) (elbtypes.TargetHealthStateEnum, string, error) {
	out, err := c.elb.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{
		TargetGroupArn: awssdk.String(tg),
		Targets:        []elbtypes.TargetDescription{{Id: awssdk.String(id)}},
	})
	if err != nil {
		return "", "", callError("elasticloadbalancing:DescribeTargetHealth", id+" in "+tg, err)
	}
	for _, desc := range out.TargetHealthDescriptions {
		if desc.Target == nil || awssdk.ToString(desc.Target.Id) != id || desc.TargetHealth == nil {
			continue
		}
		h := desc.TargetHealth
		why := string(h.Reason)
		if s := awssdk.ToString(h.Description); s != "" {
			why = strings.TrimPrefix(why+": "+s, ": ")
		}
		return h.State, why, nil
	}
	return elbtypes.TargetHealthStateEnumUnused, "not registered", nil
}

// installData is what a command template (aws.install, aws.release,
// preview.aws.install) may use.
type installData struct {
	SHA  string
	Ref  string
	Repo string
}

// Install runs the environment's install command, rendered with the
// release ({{.SHA}}, {{.Ref}}, {{.Repo}}), on the instance through SSM Run
// Command (AWS-RunShellScript), waits until the command ends, and writes
// its output to log. On success it sets the instance's ReleaseTag; on
// failure the error carries the command's status and the tail of its
// output. One instance per call, as the engine installs instances one by
// one (in parallel), well under SendCommand's 50.
func (d *Driver) Install(ctx context.Context, t deploy.Target, inst deploy.Instance, r deploy.Release, log io.Writer) error {
	f, c, err := d.fleet(t)
	if err != nil {
		return err
	}
	command, err := renderCommand("aws.install", f.Install, r)
	if err != nil {
		return permanentError("shipbot", "aws.install of "+t.Environment.Name, err)
	}
	comment := "shipbot install " + shortSHA(r.SHA) + " " + t.Repo + " " + t.Environment.Name
	return d.install(ctx, c, inst.ID, command, r.SHA, comment, 0, log)
}

// install runs command on the instance as Install describes. With boot > 0
// the instance may have just started (runCommand).
func (d *Driver) install(ctx context.Context, c *clients, instID, command, sha, comment string, boot time.Duration, log io.Writer) error {
	// What runs is unknown from here until the command succeeds.
	err := c.ec2.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{instID}, Keys: []string{ReleaseTag}})
	if err != nil {
		return callError("ec2:DeleteTags", instID, err)
	}
	err = d.runCommand(ctx, c, ssmRun{
		instance: instID, command: command, comment: comment,
		what: "install of " + shortSHA(sha), boot: boot, bound: d.opts.InstallTimeout,
	}, log)
	if err != nil {
		return err
	}
	err = c.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{instID}, Tags: map[string]string{ReleaseTag: sha}})
	return callError("ec2:CreateTags", instID, err)
}

// ssmRun is one shell command for runCommand.
type ssmRun struct {
	instance string
	command  string
	comment  string // SendCommand's comment, for people reading SSM's history
	what     string // for errors: "install of abc1234"
	// boot > 0: the instance may have just started, and SendCommand is
	// repeated for up to boot while SSM does not know it yet (its agent
	// registers a little after the instance is running).
	boot time.Duration
	// bound is how long the command may take; with execTimeout SSM itself
	// stops it then (AWS-RunShellScript's executionTimeout), so nothing
	// keeps running on the instance after the bot gave up on it.
	bound       time.Duration
	execTimeout bool
	fix         string // what to do when the command fails, if anything helps
}

// runCommand runs a shell command on one instance through SSM Run Command
// (AWS-RunShellScript), waits until it ends, and writes its output to log.
// An error names the command and the instance; for a command that ran and
// failed it gives SSM's status, the exit code and the tail of the output.
func (d *Driver) runCommand(ctx context.Context, c *clients, run ssmRun, log io.Writer) error {
	params := map[string][]string{"commands": {run.command}}
	if run.execTimeout {
		params["executionTimeout"] = []string{strconv.Itoa(int(run.bound.Round(time.Second) / time.Second))}
	}
	send := func(ctx context.Context) (*ssm.SendCommandOutput, error) {
		return c.ssm.SendCommand(ctx, &ssm.SendCommandInput{
			DocumentName: awssdk.String("AWS-RunShellScript"),
			InstanceIds:  []string{run.instance},
			Parameters:   params,
			Comment:      awssdk.String(limit(run.comment, 100)),
		})
	}
	var sent *ssm.SendCommandOutput
	var err error
	if run.boot > 0 {
		var lastErr error
		err = d.poll(ctx, run.boot, func(ctx context.Context) (bool, error) {
			sent, lastErr = send(ctx)
			if errorCode(lastErr) == "InvalidInstanceId" {
				return false, nil // the agent has not registered yet
			}
			return true, lastErr
		})
		if err == errPollTimeout {
			return waitError("ssm:SendCommand", run.instance, "SSM does not know the instance %s after it started (is the SSM agent installed, and may its instance profile use SSM?): %v", run.boot, lastErr)
		}
	} else {
		sent, err = send(ctx)
	}
	if err != nil {
		return callError("ssm:SendCommand", run.instance, err)
	}
	id := awssdk.ToString(sent.Command.CommandId)
	resource := fmt.Sprintf("command %s on %s", id, run.instance)

	pctx, cancel := context.WithTimeout(ctx, run.bound)
	defer cancel()
	var inv *ssm.GetCommandInvocationOutput
	err = d.poll(pctx, run.bound, func(ctx context.Context) (bool, error) {
		out, err := c.ssm.GetCommandInvocation(ctx, &ssm.GetCommandInvocationInput{CommandId: awssdk.String(id), InstanceId: awssdk.String(run.instance)})
		if err != nil {
			if !permanent(err) {
				return false, nil // InvocationDoesNotExist right after SendCommand, or throttled
			}
			return false, callError("ssm:GetCommandInvocation", resource, err)
		}
		inv = out
		return terminal(out.Status), nil
	})
	if err == errPollTimeout || (err != nil && pctx.Err() != nil && ctx.Err() == nil) {
		return waitError("ssm:GetCommandInvocation", resource, "%s not finished after %s (%s)", run.what, run.bound, invocationStatus(inv))
	}
	if err != nil && ctx.Err() != nil {
		return waitError("ssm:GetCommandInvocation", resource, "%s was still %s when shipbot stopped waiting for it: %w", run.what, invocationStatus(inv), err)
	}
	if err != nil {
		return err
	}
	stdout, stderr := awssdk.ToString(inv.StandardOutputContent), awssdk.ToString(inv.StandardErrorContent)
	if stdout != "" {
		io.WriteString(log, ensureNewline(stdout))
	}
	if stderr != "" {
		io.WriteString(log, ensureNewline(stderr))
	}
	if inv.Status != ssmtypes.CommandInvocationStatusSuccess {
		msg := fmt.Sprintf("%s ended %s (exit code %d)", run.what, inv.Status, inv.ResponseCode)
		if run.fix != "" {
			msg += ": " + run.fix
		}
		if s := tail(stderr, 500); s != "" {
			msg += "; stderr: " + s
		}
		if s := tail(stdout, 500); s != "" {
			msg += "; stdout: " + s
		}
		return permanentError("ssm:GetCommandInvocation", resource, fmt.Errorf("%s", msg))
	}
	return nil
}

// invocationStatus is SSM's status of the invocation, for errors.
func invocationStatus(inv *ssm.GetCommandInvocationOutput) string {
	if inv == nil {
		return "no invocation yet"
	}
	return string(inv.Status)
}

// renderCommand renders the command template text of setting (aws.install,
// aws.release, preview.aws.install) with the release: {{.SHA}}, {{.Ref}},
// {{.Repo}}.
func renderCommand(setting, text string, r deploy.Release) (string, error) {
	if strings.TrimSpace(text) == "" {
		return "", fmt.Errorf("%s is empty: give the command to run, with {{.SHA}} for the release", setting)
	}
	tmpl, err := template.New(setting).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", fmt.Errorf("%s is not a valid template, fix it in .github/shipbot.yml: %w", setting, err)
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, installData{SHA: r.SHA, Ref: r.Ref, Repo: r.Repo}); err != nil {
		return "", fmt.Errorf("%s cannot be rendered, use only {{.SHA}}, {{.Ref}} and {{.Repo}}: %w", setting, err)
	}
	return b.String(), nil
}

func terminal(s ssmtypes.CommandInvocationStatus) bool {
	switch s {
	case ssmtypes.CommandInvocationStatusSuccess, ssmtypes.CommandInvocationStatusFailed,
		ssmtypes.CommandInvocationStatusCancelled, ssmtypes.CommandInvocationStatusTimedOut:
		return true
	}
	return false
}

// Check reports the target group's view of the instance, because the
// driver cannot reach instances directly (they sit in private subnets; only
// the load balancer's health checks, on the target group's own path, reach
// them). Before Admit the instance is not registered and the load balancer
// has nothing to say, so Check returns nil: the real gate is Admit, which
// waits for "healthy" within health.timeout. Once registered, anything but
// "healthy" is a failed check (this is what fails a bake). path is not
// used: the target group's health check path is what AWS checks.
func (d *Driver) Check(ctx context.Context, t deploy.Target, inst deploy.Instance, path string) error {
	f, c, err := d.fleet(t)
	if err != nil {
		return err
	}
	st, why, err := d.targetState(ctx, c, f.TargetGroupARN, inst.ID)
	if err != nil {
		return err
	}
	switch st {
	case elbtypes.TargetHealthStateEnumHealthy, elbtypes.TargetHealthStateEnumUnused:
		return nil
	}
	return waitError("elasticloadbalancing:DescribeTargetHealth", inst.ID+" in "+f.TargetGroupARN, "target is %s (%s)", st, why)
}

// Admit registers the instance with the target group and waits until the
// group reports it healthy, bounded by the environment's health.timeout.
func (d *Driver) Admit(ctx context.Context, t deploy.Target, inst deploy.Instance) error {
	f, c, err := d.fleet(t)
	if err != nil {
		return err
	}
	return d.admit(ctx, c, f.TargetGroupARN, inst, t.Environment.Health.Timeout)
}

// admit registers the instance with tg and waits, up to bound (default
// 2m), until tg reports it healthy.
func (d *Driver) admit(ctx context.Context, c *clients, tg string, inst deploy.Instance, bound time.Duration) error {
	_, err := c.elb.RegisterTargets(ctx, &elb.RegisterTargetsInput{
		TargetGroupArn: awssdk.String(tg),
		Targets:        []elbtypes.TargetDescription{{Id: awssdk.String(inst.ID)}},
	})
	if err != nil {
		return callError("elasticloadbalancing:RegisterTargets", inst.ID+" in "+tg, err)
	}
	if bound <= 0 {
		bound = 2 * time.Minute
	}
	var last elbtypes.TargetHealthStateEnum
	var lastWhy string
	err = d.poll(ctx, bound, func(ctx context.Context) (bool, error) {
		st, why, err := d.targetState(ctx, c, tg, inst.ID)
		last, lastWhy = st, why
		if err == nil && strings.HasPrefix(why, string(elbtypes.TargetHealthReasonEnumNotInUse)) {
			// No waiting helps: the load balancer never checks a target
			// group that no listener uses.
			return false, permanentError("elasticloadbalancing:DescribeTargetHealth", inst.ID+" in "+tg,
				fmt.Errorf("the target group is not used by any load balancer listener (%s), so its targets never become healthy", why))
		}
		return st == elbtypes.TargetHealthStateEnumHealthy, err
	})
	if err == errPollTimeout {
		return waitError("elasticloadbalancing:DescribeTargetHealth", inst.ID+" in "+tg,
			"not healthy %s after registering it (health.timeout): %s (%s)", bound, last, lastWhy)
	}
	return err
}

// errPollTimeout: the poll's bound passed without done.
var errPollTimeout = fmt.Errorf("aws: wait timed out")

// poll calls fn at once and then every Options.Poll until it reports done
// or fails, or bound passes (errPollTimeout), or ctx ends (ctx's error).
func (d *Driver) poll(ctx context.Context, bound time.Duration, fn func(context.Context) (bool, error)) error {
	deadline := time.Now().Add(bound)
	tick := time.NewTicker(d.opts.Poll)
	defer tick.Stop()
	for {
		done, err := fn(ctx)
		if err != nil || done {
			return err
		}
		if !time.Now().Before(deadline) {
			return errPollTimeout
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func tagList(keys []string, tags map[string]string) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + tags[k]
	}
	return strings.Join(parts, ",")
}

// tail is the last n bytes of s, trimmed, marked when cut.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func limit(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func shortSHA(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

func ensureNewline(s string) string {
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}
