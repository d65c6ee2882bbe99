package ec2

import (
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
)

// Instance states shipbot tells apart (EC2 also has shutting-down,
// terminated, stopping and stopped).
const (
	StatePending = "pending"
	StateRunning = "running"
)

// Instance is an EC2 instance, as much of it as shipbot reads.
type Instance struct {
	ID          string
	State       string // StatePending, StateRunning, …
	StateReason string // EC2's words for why it is in State, if any
	Zone        string // its availability zone
	SubnetID    string
	Tags        map[string]string
}

// Filter is one of DescribeInstances' or DescribeSubnets' filters: Name
// (e.g. "tag:app", "instance-state-name") is any of Values.
type Filter struct {
	Name   string
	Values []string
}

// DescribeInstancesInput picks instances by id, by filters, or both; with
// neither, every instance of the region.
type DescribeInstancesInput struct {
	InstanceIDs []string
	Filters     []Filter
	MaxResults  int32  // per page, 5 to 1000; 0: EC2 decides (not with InstanceIDs)
	NextToken   string // the page after the one that gave it
}

// DescribeInstancesOutput is one page of instances.
type DescribeInstancesOutput struct {
	Instances []Instance // of every reservation, in EC2's order
	NextToken string     // "" on the last page
}

// DescribeInstances lists one page of instances (ec2:DescribeInstances).
// AllInstances lists every page.
func (c *Client) DescribeInstances(ctx context.Context, in *DescribeInstancesInput) (*DescribeInstancesOutput, error) {
	p := url.Values{}
	list(p, "InstanceId", in.InstanceIDs)
	filters(p, in.Filters)
	if in.MaxResults > 0 {
		p.Set("MaxResults", strconv.Itoa(int(in.MaxResults)))
	}
	if in.NextToken != "" {
		p.Set("NextToken", in.NextToken)
	}
	var answer struct {
		Reservations []struct {
			Instances []wireInstance `xml:"instancesSet>item"`
		} `xml:"reservationSet>item"`
		NextToken string `xml:"nextToken"`
	}
	if err := c.call(ctx, "DescribeInstances", p, &answer); err != nil {
		return nil, err
	}
	out := &DescribeInstancesOutput{NextToken: answer.NextToken}
	for _, r := range answer.Reservations {
		for _, w := range r.Instances {
			out.Instances = append(out.Instances, w.instance())
		}
	}
	return out, nil
}

// InstanceDescriber is what AllInstances needs of a client.
type InstanceDescriber interface {
	DescribeInstances(ctx context.Context, in *DescribeInstancesInput) (*DescribeInstancesOutput, error)
}

// AllInstances lists the instances of every page of DescribeInstances,
// from in's NextToken on. It stops at a page without a next token, or
// one that repeats the token it was asked with.
func AllInstances(ctx context.Context, c InstanceDescriber, in DescribeInstancesInput) ([]Instance, error) {
	var all []Instance
	for {
		page, err := c.DescribeInstances(ctx, &in)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Instances...)
		if page.NextToken == "" || page.NextToken == in.NextToken {
			return all, nil
		}
		in.NextToken = page.NextToken
	}
}

// RunInstancesInput launches instances from a launch template or from an
// image, tagged.
type RunInstancesInput struct {
	// LaunchTemplateID or LaunchTemplateName names the launch template
	// (its default version); both "" for none.
	LaunchTemplateID   string
	LaunchTemplateName string
	ImageID            string // what the template does not say, or all
	InstanceType       string // e.g. "t3.micro"
	SubnetID           string
	// MinCount and MaxCount bound how many instances start; 0 is 1.
	MinCount, MaxCount int32
	Tags               map[string]string // on each instance
	// ClientToken makes the call idempotent; "" makes one, which each
	// retry of this call sends again so that it starts no second set.
	ClientToken string
}

// RunInstancesOutput is the instances that started.
type RunInstancesOutput struct {
	Instances []Instance
}

// RunInstances starts instances (ec2:RunInstances, and ec2:CreateTags for
// their tags).
func (c *Client) RunInstances(ctx context.Context, in *RunInstancesInput) (*RunInstancesOutput, error) {
	p := url.Values{}
	set(p, "LaunchTemplate.LaunchTemplateId", in.LaunchTemplateID)
	set(p, "LaunchTemplate.LaunchTemplateName", in.LaunchTemplateName)
	set(p, "ImageId", in.ImageID)
	set(p, "InstanceType", in.InstanceType)
	set(p, "SubnetId", in.SubnetID)
	p.Set("MinCount", strconv.Itoa(int(max(in.MinCount, 1))))
	p.Set("MaxCount", strconv.Itoa(int(max(in.MaxCount, 1))))
	if len(in.Tags) > 0 {
		p.Set("TagSpecification.1.ResourceType", "instance")
		tags(p, "TagSpecification.1.Tag", in.Tags)
	}
	token := in.ClientToken
	if token == "" {
		token = newToken()
	}
	p.Set("ClientToken", token)
	var answer struct {
		Instances []wireInstance `xml:"instancesSet>item"`
	}
	if err := c.call(ctx, "RunInstances", p, &answer); err != nil {
		return nil, err
	}
	out := &RunInstancesOutput{}
	for _, w := range answer.Instances {
		out.Instances = append(out.Instances, w.instance())
	}
	return out, nil
}

// TerminateInstancesInput names the instances to terminate.
type TerminateInstancesInput struct {
	InstanceIDs []string
}

// TerminateInstances terminates instances (ec2:TerminateInstances). One
// unknown id fails the whole call (InvalidInstanceID.NotFound).
func (c *Client) TerminateInstances(ctx context.Context, in *TerminateInstancesInput) error {
	p := url.Values{}
	list(p, "InstanceId", in.InstanceIDs)
	return c.call(ctx, "TerminateInstances", p, &struct{}{})
}

// CreateTagsInput sets tags on resources (instances here).
type CreateTagsInput struct {
	Resources []string
	Tags      map[string]string
}

// CreateTags adds or overwrites tags (ec2:CreateTags).
func (c *Client) CreateTags(ctx context.Context, in *CreateTagsInput) error {
	p := url.Values{}
	list(p, "ResourceId", in.Resources)
	tags(p, "Tag", in.Tags)
	return c.call(ctx, "CreateTags", p, &struct{}{})
}

// DeleteTagsInput removes tags by key, whatever their values.
type DeleteTagsInput struct {
	Resources []string
	Keys      []string
}

// DeleteTags removes tags (ec2:DeleteTags); a tag already absent is not
// an error.
func (c *Client) DeleteTags(ctx context.Context, in *DeleteTagsInput) error {
	p := url.Values{}
	list(p, "ResourceId", in.Resources)
	for i, k := range in.Keys {
		// No Tag.N.Value: a value, even "", would delete only tags of that value.
		p.Set(fmt.Sprintf("Tag.%d.Key", i+1), k)
	}
	return c.call(ctx, "DeleteTags", p, &struct{}{})
}

// wireInstance is an instance in EC2's XML (an item of instancesSet).
type wireInstance struct {
	ID          string    `xml:"instanceId"`
	State       string    `xml:"instanceState>name"`
	StateReason string    `xml:"stateReason>message"`
	Zone        string    `xml:"placement>availabilityZone"`
	SubnetID    string    `xml:"subnetId"`
	Tags        []wireTag `xml:"tagSet>item"`
}

type wireTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

func (w wireInstance) instance() Instance {
	in := Instance{ID: w.ID, State: w.State, StateReason: w.StateReason, Zone: w.Zone, SubnetID: w.SubnetID, Tags: map[string]string{}}
	for _, t := range w.Tags {
		in.Tags[t.Key] = t.Value
	}
	return in
}

// set sets name to v unless v is "".
func set(p url.Values, name, v string) {
	if v != "" {
		p.Set(name, v)
	}
}

// list sets name.1, name.2, … to values.
func list(p url.Values, name string, values []string) {
	for i, v := range values {
		p.Set(fmt.Sprintf("%s.%d", name, i+1), v)
	}
}

// filters sets Filter.N.Name and Filter.N.Value.M.
func filters(p url.Values, fs []Filter) {
	for i, f := range fs {
		prefix := fmt.Sprintf("Filter.%d", i+1)
		p.Set(prefix+".Name", f.Name)
		list(p, prefix+".Value", f.Values)
	}
}

// tags sets name.N.Key and name.N.Value, in the order of the keys.
func tags(p url.Values, name string, m map[string]string) {
	for i, k := range slices.Sorted(maps.Keys(m)) {
		prefix := fmt.Sprintf("%s.%d", name, i+1)
		p.Set(prefix+".Key", k)
		p.Set(prefix+".Value", m[k])
	}
}

// newToken is a random idempotency token in the UUID form the SDK uses.
func newToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
