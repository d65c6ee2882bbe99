package ec2

import (
	"context"
	"net/url"
)

// The calls below make what an operator sets up once, before shipbot runs:
// only tests use them, to set moto up the way AWS would be.

// CreateVpc creates a VPC with the IPv4 block cidr (e.g. "10.0.0.0/16")
// and returns its id (ec2:CreateVpc).
func (c *Client) CreateVpc(ctx context.Context, cidr string) (string, error) {
	p := url.Values{}
	p.Set("CidrBlock", cidr)
	var answer struct {
		ID string `xml:"vpc>vpcId"`
	}
	if err := c.call(ctx, "CreateVpc", p, &answer); err != nil {
		return "", err
	}
	return answer.ID, nil
}

// Subnet is a subnet of a VPC in one zone.
type Subnet struct {
	ID    string `xml:"subnetId"`
	VpcID string `xml:"vpcId"`
	CIDR  string `xml:"cidrBlock"`
	Zone  string `xml:"availabilityZone"`
}

// CreateSubnet creates the subnet described by in, whose ID is ignored
// (ec2:CreateSubnet).
func (c *Client) CreateSubnet(ctx context.Context, in Subnet) (*Subnet, error) {
	p := url.Values{}
	p.Set("VpcId", in.VpcID)
	p.Set("CidrBlock", in.CIDR)
	set(p, "AvailabilityZone", in.Zone)
	var answer struct {
		Subnet Subnet `xml:"subnet"`
	}
	if err := c.call(ctx, "CreateSubnet", p, &answer); err != nil {
		return nil, err
	}
	return &answer.Subnet, nil
}

// DescribeSubnets lists the subnets matching every filter
// (ec2:DescribeSubnets; one page is enough for a test's few).
func (c *Client) DescribeSubnets(ctx context.Context, fs ...Filter) ([]Subnet, error) {
	p := url.Values{}
	filters(p, fs)
	var answer struct {
		Subnets []Subnet `xml:"subnetSet>item"`
	}
	if err := c.call(ctx, "DescribeSubnets", p, &answer); err != nil {
		return nil, err
	}
	return answer.Subnets, nil
}

// LaunchTemplate is what CreateLaunchTemplate needs: instances of ImageID
// and InstanceType, whose first network interface is in SubnetID.
type LaunchTemplate struct {
	Name         string
	ImageID      string
	InstanceType string
	SubnetID     string
}

// CreateLaunchTemplate creates the launch template and returns its id
// (ec2:CreateLaunchTemplate).
func (c *Client) CreateLaunchTemplate(ctx context.Context, lt LaunchTemplate) (string, error) {
	p := url.Values{}
	p.Set("LaunchTemplateName", lt.Name)
	set(p, "LaunchTemplateData.ImageId", lt.ImageID)
	set(p, "LaunchTemplateData.InstanceType", lt.InstanceType)
	if lt.SubnetID != "" {
		p.Set("LaunchTemplateData.NetworkInterface.1.DeviceIndex", "0")
		p.Set("LaunchTemplateData.NetworkInterface.1.SubnetId", lt.SubnetID)
	}
	p.Set("ClientToken", newToken())
	var answer struct {
		ID string `xml:"launchTemplate>launchTemplateId"`
	}
	if err := c.call(ctx, "CreateLaunchTemplate", p, &answer); err != nil {
		return "", err
	}
	return answer.ID, nil
}
