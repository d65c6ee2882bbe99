// Package awstest sets AWS up in moto (the AWS emulator) for tests outside
// the aws driver's own: a moto_server of the test's own, and a fleet (EC2
// instances in zones behind an ALB target group) for a rollout to run on.
package awstest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/smithy-go"

	"github.com/shipbot/shipbot/internal/driver/aws/ec2"
	"github.com/shipbot/shipbot/internal/testenv"
)

// Region is the region fleets are set up in.
const Region = "us-east-1"

// StartMoto starts moto_server (`pip install 'moto[server]'`) on a free
// loopback port with its own temporary working directory, waits until it
// answers, stops it when the test ends, and returns its URL. A port another
// test's server took in the meantime makes this one exit; it then tries
// again on another port, and it only accepts an answer from a listener its
// own process owns (testenv.ListensOn), so two tests never share one moto.
func StartMoto(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		testenv.Missing(t, "moto_server is not on PATH (pip install 'moto[server]')")
	}
	var log string
	for range 3 {
		var base string
		if base, log = tryMoto(t, bin); base != "" {
			return base
		}
	}
	t.Fatalf("moto_server did not start on a port of its own in 3 attempts; its last log:\n%s", log)
	return ""
}

// tryMoto starts moto_server once; it returns the server's URL, or "" and
// the server's log when it did not come up on its port within 20 s.
func tryMoto(t testing.TB, bin string) (base, log string) {
	t.Helper()
	port := testenv.FreePort(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	logf, err := os.Create(filepath.Join(dir, "moto.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := testenv.StartChild(cmd); err != nil {
		t.Fatalf("start moto_server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-done
		logf.Close()
	}
	readLog := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "moto.log"))
		return string(b)
	}
	base = fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			stop()
			return "", readLog()
		default:
		}
		resp, err := http.Get(base + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			if testenv.ListensOn(cmd.Process.Pid, port) {
				t.Cleanup(stop)
				return base, ""
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return "", readLog()
}

// Config is an SDK configuration for moto at url, with static credentials.
func Config(url string) awssdk.Config {
	return awssdk.Config{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: awssdk.String(url),
	}
}

// Fleet is an environment's instances in moto.
type Fleet struct {
	TargetGroupARN string
	Tags           map[string]string // the instance_tags that find them
	IDs            []string
	ec2            *ec2.Client
}

// ReleaseTag is the tag the aws driver records an instance's release in.
const ReleaseTag = "shipbot:release"

// NewFleet runs n instances tagged app=web env=production (one zone per
// instance, up to 3) on release, registered with a new target group whose
// deregistration delay is 1 s.
func NewFleet(t testing.TB, url string, n int, release string) *Fleet {
	t.Helper()
	ctx := context.Background()
	cfg := Config(url)
	c, lb := ec2.New(cfg, ec2.Options{}), elb.NewFromConfig(cfg)
	vpc, err := c.CreateVpc(ctx, "10.0.0.0/16")
	if err != nil {
		t.Fatal(err)
	}
	f := &Fleet{Tags: map[string]string{"app": "web", "env": "production"}, ec2: c}
	zones := []string{"us-east-1a", "us-east-1b", "us-east-1c"}
	var targets []elbtypes.TargetDescription
	for i := range n {
		zone := zones[i%len(zones)]
		subnet := CreateSubnet(t, c, vpc, fmt.Sprintf("10.0.%d.0/24", i), zone)
		run, err := c.RunInstances(ctx, &ec2.RunInstancesInput{
			ImageID: "ami-12c6146b", InstanceType: "t3.micro", SubnetID: subnet,
			Tags: map[string]string{"app": "web", "env": "production", ReleaseTag: release},
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range run.Instances {
			f.IDs = append(f.IDs, in.ID)
			targets = append(targets, elbtypes.TargetDescription{Id: awssdk.String(in.ID)})
		}
	}
	tg, err := lb.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{
		Name: awssdk.String("web-production"), Protocol: elbtypes.ProtocolEnumHttp, Port: awssdk.Int32(80),
		VpcId: awssdk.String(vpc), TargetType: elbtypes.TargetTypeEnumInstance, HealthCheckPath: awssdk.String("/healthz"),
	})
	if err != nil {
		t.Fatal(err)
	}
	arn := tg.TargetGroups[0].TargetGroupArn
	if _, err := lb.ModifyTargetGroupAttributes(ctx, &elb.ModifyTargetGroupAttributesInput{
		TargetGroupArn: arn,
		Attributes:     []elbtypes.TargetGroupAttribute{{Key: awssdk.String("deregistration_delay.timeout_seconds"), Value: awssdk.String("1")}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := lb.RegisterTargets(ctx, &elb.RegisterTargetsInput{TargetGroupArn: arn, Targets: targets}); err != nil {
		t.Fatal(err)
	}
	f.TargetGroupARN = awssdk.ToString(arn)
	return f
}

// Releases is each instance's release tag ("" when it has none).
func (f *Fleet) Releases(t testing.TB) map[string]string {
	t.Helper()
	out, err := f.ec2.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{InstanceIDs: f.IDs})
	if err != nil {
		t.Fatal(err)
	}
	rel := map[string]string{}
	for _, in := range out.Instances {
		rel[in.ID] = in.Tags[ReleaseTag]
	}
	return rel
}

// CreateSubnet creates a subnet in vpc. A CreateSubnet that conflicts with
// a subnet of the same CIDR and zone in that VPC was applied before, by an
// attempt whose answer was lost (CI saw this twice under load): that subnet
// is the one asked for, and the test goes on with it.
func CreateSubnet(t testing.TB, c *ec2.Client, vpc, cidr, zone string) string {
	t.Helper()
	ctx := context.Background()
	sn, err := c.CreateSubnet(ctx, ec2.Subnet{VpcID: vpc, CIDR: cidr, Zone: zone})
	if err == nil {
		return sn.ID
	}
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "InvalidSubnet.Conflict" {
		t.Fatal(err)
	}
	out, derr := c.DescribeSubnets(ctx,
		ec2.Filter{Name: "vpc-id", Values: []string{vpc}},
		ec2.Filter{Name: "cidr-block", Values: []string{cidr}},
		ec2.Filter{Name: "availability-zone", Values: []string{zone}},
	)
	if derr != nil || len(out) != 1 {
		t.Fatalf("%v (and the subnet it conflicts with is not %s in %s: %v, %d found)", err, cidr, zone, derr, len(out))
	}
	t.Logf("CreateSubnet %s had been applied already (%v); using %s", cidr, err, out[0].ID)
	return out[0].ID
}
