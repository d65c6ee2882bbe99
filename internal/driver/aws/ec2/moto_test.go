package ec2_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/aws/smithy-go"

	"github.com/shipbot/shipbot/internal/driver/aws/awstest"
	"github.com/shipbot/shipbot/internal/driver/aws/ec2"
)

// countingDescriber counts the pages AllInstances asks for.
type countingDescriber struct {
	c     *ec2.Client
	pages int
}

func (d *countingDescriber) DescribeInstances(ctx context.Context, in *ec2.DescribeInstancesInput) (*ec2.DescribeInstancesOutput, error) {
	d.pages++
	return d.c.DescribeInstances(ctx, in)
}

// TestMoto sends each call to moto and reads its answer back.
func TestMoto(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := ec2.New(awstest.Config(awstest.StartMoto(t)), ec2.Options{})

	vpc, err := c.CreateVpc(ctx, "10.0.0.0/16")
	if err != nil || vpc == "" {
		t.Fatalf("CreateVpc = %q, %v", vpc, err)
	}
	subnet, err := c.CreateSubnet(ctx, ec2.Subnet{VpcID: vpc, CIDR: "10.0.1.0/24", Zone: "us-east-1b"})
	if err != nil || subnet.ID == "" || subnet.VpcID != vpc || subnet.Zone != "us-east-1b" || subnet.CIDR != "10.0.1.0/24" {
		t.Fatalf("CreateSubnet = %+v, %v", subnet, err)
	}
	_, err = c.CreateSubnet(ctx, ec2.Subnet{VpcID: vpc, CIDR: "10.0.1.0/24", Zone: "us-east-1b"})
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidSubnet.Conflict" || ae.ErrorMessage() == "" {
		t.Errorf("a second CreateSubnet of the same block: %v, want an APIError InvalidSubnet.Conflict", err)
	}
	subnets, err := c.DescribeSubnets(ctx, ec2.Filter{Name: "vpc-id", Values: []string{vpc}}, ec2.Filter{Name: "cidr-block", Values: []string{"10.0.1.0/24"}})
	if err != nil || len(subnets) != 1 || subnets[0] != *subnet {
		t.Errorf("DescribeSubnets = %+v, %v; want [%+v]", subnets, err, *subnet)
	}

	lt, err := c.CreateLaunchTemplate(ctx, ec2.LaunchTemplate{Name: "web", ImageID: "ami-12c6146b", InstanceType: "t3.micro", SubnetID: subnet.ID})
	if err != nil || lt == "" {
		t.Fatalf("CreateLaunchTemplate = %q, %v", lt, err)
	}
	tags := map[string]string{"app": "web", "env": "pr-1"}
	byName, err := c.RunInstances(ctx, &ec2.RunInstancesInput{LaunchTemplateName: "web", Tags: tags})
	if err != nil || len(byName.Instances) != 1 {
		t.Fatalf("RunInstances from the template by name = %+v, %v", byName, err)
	}
	// moto does not apply the template's network interface, but marks
	// the instances it made from the template.
	in := byName.Instances[0]
	if in.ID == "" || in.State != ec2.StatePending || in.Tags["app"] != "web" || in.Tags["env"] != "pr-1" || in.Tags["aws:ec2launchtemplate:id"] != lt {
		t.Errorf("instance from the template = %+v, want pending tagged %v and from %s", in, tags, lt)
	}
	byID, err := c.RunInstances(ctx, &ec2.RunInstancesInput{LaunchTemplateID: lt, Tags: map[string]string{"app": "web", "env": "pr-2"}})
	if err != nil || len(byID.Instances) != 1 || byID.Instances[0].Tags["aws:ec2launchtemplate:id"] != lt {
		t.Fatalf("RunInstances from the template by id = %+v, %v", byID, err)
	}
	fleet, err := c.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageID: "ami-12c6146b", InstanceType: "t3.micro", SubnetID: subnet.ID,
		MinCount: 2, MaxCount: 2, Tags: map[string]string{"app": "web", "env": "production"},
	})
	if err != nil || len(fleet.Instances) != 2 {
		t.Fatalf("RunInstances of 2 = %+v, %v", fleet, err)
	}
	if f := fleet.Instances[0]; f.SubnetID != subnet.ID || f.Zone != "us-east-1b" {
		t.Errorf("instance in %s = %+v, want it there, in us-east-1b", subnet.ID, f)
	}
	// moto pages by reservation (AWS by instance): 7 reservations, 8 instances.
	for range 4 {
		one, err := c.RunInstances(ctx, &ec2.RunInstancesInput{ImageID: "ami-12c6146b", SubnetID: subnet.ID, Tags: map[string]string{"app": "web", "env": "production"}})
		if err != nil {
			t.Fatal(err)
		}
		fleet.Instances = append(fleet.Instances, one.Instances...)
	}
	var fleetIDs []string
	for _, in := range fleet.Instances {
		fleetIDs = append(fleetIDs, in.ID)
	}

	// By id, and by filters over pages of 5.
	out, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIDs: []string{in.ID}})
	if err != nil || len(out.Instances) != 1 || out.Instances[0].ID != in.ID || out.Instances[0].State != ec2.StateRunning || out.NextToken != "" {
		t.Errorf("DescribeInstances of %s = %+v, %v; want it running", in.ID, out, err)
	}
	d := &countingDescriber{c: c}
	all, err := ec2.AllInstances(ctx, d, ec2.DescribeInstancesInput{
		Filters:    []ec2.Filter{{Name: "tag:app", Values: []string{"web"}}, {Name: "instance-state-name", Values: []string{"pending", "running"}}},
		MaxResults: 5,
	})
	if err != nil || len(all) != 8 || d.pages != 2 {
		t.Errorf("AllInstances = %d instances in %d pages, %v; want 8 in 2", len(all), d.pages, err)
	}
	prod, err := ec2.AllInstances(ctx, c, ec2.DescribeInstancesInput{Filters: []ec2.Filter{{Name: "tag:env", Values: []string{"production"}}}})
	if err != nil || !slices.Equal(ids(prod), sortedCopy(fleetIDs)) {
		t.Errorf("instances tagged env=production = %v, %v; want %v", ids(prod), err, sortedCopy(fleetIDs))
	}

	// Tags.
	if err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{in.ID}, Tags: map[string]string{"shipbot:release": "abc", "note": ""}}); err != nil {
		t.Fatal(err)
	}
	if got := describe(t, c, in.ID).Tags; got["shipbot:release"] != "abc" || got["app"] != "web" {
		t.Errorf("tags after CreateTags = %v", got)
	}
	if err := c.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{in.ID}, Keys: []string{"shipbot:release"}}); err != nil {
		t.Fatal(err)
	}
	if got := describe(t, c, in.ID).Tags; got["app"] != "web" || got["env"] != "pr-1" || got["note"] != "" || len(got) != 5 {
		t.Errorf("tags after DeleteTags of shipbot:release = %v, want the others (app, env, note, aws:…)", got)
	}

	// Terminate, and what an unknown instance answers.
	if err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIDs: []string{in.ID, byID.Instances[0].ID}}); err != nil {
		t.Fatal(err)
	}
	if st := describe(t, c, in.ID).State; st != "terminated" && st != "shutting-down" {
		t.Errorf("state after TerminateInstances = %s", st)
	}
	err = c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIDs: []string{"i-0123456789abcdef0"}})
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidInstanceID.NotFound" {
		t.Errorf("TerminateInstances of an unknown id: %v, want InvalidInstanceID.NotFound", err)
	}
	_, err = c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIDs: []string{"i-0123456789abcdef0"}})
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidInstanceID.NotFound" {
		t.Errorf("DescribeInstances of an unknown id: %v, want InvalidInstanceID.NotFound", err)
	}
}

func describe(t *testing.T, c *ec2.Client, id string) ec2.Instance {
	t.Helper()
	out, err := c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{InstanceIDs: []string{id}})
	if err != nil || len(out.Instances) != 1 {
		t.Fatalf("DescribeInstances of %s = %+v, %v", id, out, err)
	}
	return out.Instances[0]
}

func ids(ins []ec2.Instance) []string {
	var out []string
	for _, in := range ins {
		out = append(out, in.ID)
	}
	slices.Sort(out)
	return out
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
