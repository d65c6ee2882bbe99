package aws

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	r53types "github.com/aws/aws-sdk-go-v2/service/route53/types"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/driver/aws/ec2"
	"github.com/shipbot/shipbot/internal/repoconfig"
)

// A preview on AWS is, per pull request: one EC2 instance launched from
// the repository's launch template, a target group holding it, a listener
// rule on preview.aws.listener_arn sending host pr-N.<domain> to that
// group, and, with preview.aws.hosted_zone_id, a Route 53 alias record of
// that host to the listener's load balancer. Everything carries the tags
// below, and everything is found again by them (or by the target group's
// name, which is derived from the repository and the number), never by
// remembering: a job retried after a crash picks up what the last attempt
// left, and the sweep finds leftovers nobody remembers.
const (
	ManagedByTag  = "managed-by"         // "shipbot" on everything a preview is made of
	ManagedBy     = "shipbot"            // the value of ManagedByTag
	RepoTag       = "shipbot:repo"       // owner/name
	EnvTag        = "shipbot:env"        // pr-N
	AppTag        = "app"                // the repository's name, for people and cost reports
	UpdatedAtTag  = "shipbot:updated-at" // RFC 3339, written by every EnsurePreview; the sweep's TTL clock
	RecordTag     = "shipbot:record"     // on the target group: "<hosted zone id>/<record name>"
	maxPriority   = 50000                // ELBv2's highest listener rule priority
	previewDrainS = 10                   // a preview target group's deregistration delay, seconds
)

var _ deploy.Previewer = (*Driver)(nil)

// previewEC2API, previewELBAPI and route53API are the calls previews and
// the sweep add to the fleet's.
type previewEC2API interface {
	ec2API
	RunInstances(ctx context.Context, in *ec2.RunInstancesInput) (*ec2.RunInstancesOutput, error)
	TerminateInstances(ctx context.Context, in *ec2.TerminateInstancesInput) error
}

type previewELBAPI interface {
	elbAPI
	DescribeListeners(ctx context.Context, in *elb.DescribeListenersInput, opts ...func(*elb.Options)) (*elb.DescribeListenersOutput, error)
	DescribeLoadBalancers(ctx context.Context, in *elb.DescribeLoadBalancersInput, opts ...func(*elb.Options)) (*elb.DescribeLoadBalancersOutput, error)
	DescribeTargetGroups(ctx context.Context, in *elb.DescribeTargetGroupsInput, opts ...func(*elb.Options)) (*elb.DescribeTargetGroupsOutput, error)
	CreateTargetGroup(ctx context.Context, in *elb.CreateTargetGroupInput, opts ...func(*elb.Options)) (*elb.CreateTargetGroupOutput, error)
	ModifyTargetGroupAttributes(ctx context.Context, in *elb.ModifyTargetGroupAttributesInput, opts ...func(*elb.Options)) (*elb.ModifyTargetGroupAttributesOutput, error)
	DeleteTargetGroup(ctx context.Context, in *elb.DeleteTargetGroupInput, opts ...func(*elb.Options)) (*elb.DeleteTargetGroupOutput, error)
	DescribeRules(ctx context.Context, in *elb.DescribeRulesInput, opts ...func(*elb.Options)) (*elb.DescribeRulesOutput, error)
	CreateRule(ctx context.Context, in *elb.CreateRuleInput, opts ...func(*elb.Options)) (*elb.CreateRuleOutput, error)
	ModifyRule(ctx context.Context, in *elb.ModifyRuleInput, opts ...func(*elb.Options)) (*elb.ModifyRuleOutput, error)
	DeleteRule(ctx context.Context, in *elb.DeleteRuleInput, opts ...func(*elb.Options)) (*elb.DeleteRuleOutput, error)
	DescribeTags(ctx context.Context, in *elb.DescribeTagsInput, opts ...func(*elb.Options)) (*elb.DescribeTagsOutput, error)
	AddTags(ctx context.Context, in *elb.AddTagsInput, opts ...func(*elb.Options)) (*elb.AddTagsOutput, error)
}

type route53API interface {
	ChangeResourceRecordSets(ctx context.Context, in *route53.ChangeResourceRecordSetsInput, opts ...func(*route53.Options)) (*route53.ChangeResourceRecordSetsOutput, error)
	ListResourceRecordSets(ctx context.Context, in *route53.ListResourceRecordSetsInput, opts ...func(*route53.Options)) (*route53.ListResourceRecordSetsOutput, error)
}

// previewKey names one preview: a pull request of a repository.
type previewKey struct {
	Repo   string // owner/name
	Number int
}

func (k previewKey) env() string    { return "pr-" + strconv.Itoa(k.Number) }
func (k previewKey) String() string { return k.Repo + "#" + strconv.Itoa(k.Number) }

// targetGroupName is deterministic, so a retried job finds the group it
// made, and within ELBv2's 32 characters: the number in clear, the
// repository as a hash (the group's tags carry it in full).
func (k previewKey) targetGroupName() string {
	sum := sha256.Sum256([]byte(strings.ToLower(k.Repo)))
	return "shipbot-" + k.env() + "-" + hex.EncodeToString(sum[:4])
}

// tags are what every resource of the preview carries.
func (k previewKey) tags(now time.Time) map[string]string {
	return map[string]string{
		AppTag:       k.Repo[strings.LastIndex(k.Repo, "/")+1:],
		EnvTag:       k.env(),
		RepoTag:      k.Repo,
		ManagedByTag: ManagedBy,
		UpdatedAtTag: now.UTC().Format(time.RFC3339),
	}
}

// keyOf reads a preview's key back from tags; ok is false for anything
// that does not name one (then nobody may delete it on a preview's behalf).
func keyOf(tags map[string]string) (previewKey, bool) {
	repo, env := tags[RepoTag], tags[EnvTag]
	n, err := strconv.Atoi(strings.TrimPrefix(env, "pr-"))
	if tags[ManagedByTag] != ManagedBy || !strings.Contains(repo, "/") || !strings.HasPrefix(env, "pr-") || err != nil || n <= 0 {
		return previewKey{}, false
	}
	return previewKey{Repo: repo, Number: n}, true
}

// previewPlace is a preview with its settings and the clients of its region.
type previewPlace struct {
	key  previewKey
	cfg  *repoconfig.AWSPreview // nil only when tearing down without settings
	host string                 // pr-N.<domain>, lower case
	// install is preview.aws.install, or repoconfig.DefaultPreviewInstall
	// when the file sets none.
	install string
	c       *clients
}

// place checks the preview's settings. strict is for EnsurePreview;
// teardown works without settings too (tags find everything), in the
// driver's default region.
func (d *Driver) place(p deploy.Preview, strict bool) (*previewPlace, error) {
	k := previewKey{Repo: p.Repo, Number: p.Number}
	res := "preview " + k.String()
	if !strings.Contains(p.Repo, "/") || p.Number <= 0 {
		return nil, permanentError("shipbot", res, fmt.Errorf("a preview needs a repository owner/name and a pull request number"))
	}
	a := p.Config.AWS
	var missing []string
	if a == nil {
		missing = []string{"preview.aws"}
	} else {
		for _, kv := range [][2]string{{"launch_template", a.LaunchTemplate}, {"listener_arn", a.ListenerARN}, {"domain", a.Domain}} {
			if strings.TrimSpace(kv[1]) == "" {
				missing = append(missing, "preview.aws."+kv[0])
			}
		}
	}
	if len(missing) > 0 {
		if strict {
			return nil, permanentError("shipbot", res, fmt.Errorf("set %s in .github/shipbot.yml", strings.Join(missing, ", ")))
		}
		a = nil
	}
	pl := &previewPlace{key: k, cfg: a}
	region := d.cfg.Region
	if a != nil {
		pl.install = a.Install
		if strings.TrimSpace(pl.install) == "" {
			pl.install = repoconfig.DefaultPreviewInstall
		}
		// A bad template fails the preview before anything is made for it.
		if _, err := renderCommand("preview.aws.install", pl.install, deploy.Release{}); err != nil && strict {
			return nil, permanentError("shipbot", res, err)
		}
		pl.host = "pr-" + strconv.Itoa(p.Number) + "." + strings.TrimSuffix(strings.ToLower(strings.TrimSpace(a.Domain)), ".")
		// The listener is where the preview lives, so its region is the
		// preview's: no second setting to disagree with it.
		if r := arnRegion(a.ListenerARN); r != "" {
			region = r
		}
	}
	if region == "" {
		return nil, permanentError("shipbot", res, fmt.Errorf("no region: preview.aws.listener_arn is not an ARN with a region and AWS_REGION is unset"))
	}
	pl.c = d.clients(region)
	return pl, nil
}

// arnRegion is the region field of an ARN (arn:partition:service:region:…).
func arnRegion(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 || parts[0] != "arn" {
		return ""
	}
	return parts[3]
}

// EnsurePreview makes the pull request's preview run the release and
// returns https://pr-N.<domain>. Each step finds what an earlier attempt
// made before making it. A new release goes on a new instance, which joins
// the target group next to the one serving; only once it is healthy there
// is the old instance drained and terminated. So a failed update (launch,
// install, health) leaves the previous release serving, and the failed
// instance is terminated.
func (d *Driver) EnsurePreview(ctx context.Context, p deploy.Preview, r deploy.Release, log io.Writer) (string, error) {
	if log == nil {
		log = io.Discard
	}
	pl, err := d.place(p, true)
	if err != nil {
		return "", err
	}
	if r.SHA == "" {
		return "", permanentError("shipbot", "preview "+pl.key.String(), fmt.Errorf("no release SHA"))
	}
	tags := pl.key.tags(time.Now())
	lb, err := d.listenerBalancer(ctx, pl.c, pl.cfg.ListenerARN)
	if err != nil {
		return "", err
	}
	if zone := pl.cfg.HostedZoneID; zone != "" {
		tags[RecordTag] = zone + "/" + pl.host
	}
	health := p.Config.Health
	tg, err := d.ensureTargetGroup(ctx, pl, lb, health.Path, tags, log)
	if err != nil {
		return "", err
	}
	rule, err := d.ensureRule(ctx, pl, tg, tags, log)
	if err != nil {
		return "", err
	}
	if zone := pl.cfg.HostedZoneID; zone != "" {
		if err := d.upsertRecord(ctx, pl, zone, lb); err != nil {
			return "", err
		}
	}
	id, err := d.ensureServing(ctx, pl, tg, r, tags, health.Timeout, log)
	if err != nil {
		return "", err
	}

	// The sweep's clock: this preview was wanted now. The record tag
	// follows a hosted zone added since the group was made.
	stamp := map[string]string{UpdatedAtTag: tags[UpdatedAtTag]}
	if ref := tags[RecordTag]; ref != "" {
		stamp[RecordTag] = ref
	}
	if _, err := pl.c.elb.AddTags(ctx, &elb.AddTagsInput{ResourceArns: []string{tg, rule}, Tags: elbTags(stamp)}); err != nil {
		return "", callError("elasticloadbalancing:AddTags", tg+" and "+rule, err)
	}
	if err := pl.c.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: map[string]string{UpdatedAtTag: tags[UpdatedAtTag]}}); err != nil {
		return "", callError("ec2:CreateTags", id, err)
	}
	return "https://" + pl.host, nil
}

// balancer is the load balancer behind a listener.
type balancer struct {
	arn, vpc, dns, zone string
}

func (d *Driver) listenerBalancer(ctx context.Context, c *clients, listener string) (balancer, error) {
	ls, err := c.elb.DescribeListeners(ctx, &elb.DescribeListenersInput{ListenerArns: []string{listener}})
	if err != nil {
		return balancer{}, callError("elasticloadbalancing:DescribeListeners", listener, err)
	}
	if len(ls.Listeners) == 0 {
		return balancer{}, permanentError("elasticloadbalancing:DescribeListeners", listener, fmt.Errorf("no such listener (preview.aws.listener_arn)"))
	}
	arn := awssdk.ToString(ls.Listeners[0].LoadBalancerArn)
	lbs, err := c.elb.DescribeLoadBalancers(ctx, &elb.DescribeLoadBalancersInput{LoadBalancerArns: []string{arn}})
	if err != nil {
		return balancer{}, callError("elasticloadbalancing:DescribeLoadBalancers", arn, err)
	}
	if len(lbs.LoadBalancers) == 0 {
		return balancer{}, permanentError("elasticloadbalancing:DescribeLoadBalancers", arn, fmt.Errorf("the load balancer of listener %s is gone", listener))
	}
	lb := lbs.LoadBalancers[0]
	return balancer{arn: arn, vpc: awssdk.ToString(lb.VpcId), dns: awssdk.ToString(lb.DNSName), zone: awssdk.ToString(lb.CanonicalHostedZoneId)}, nil
}

// ensureTargetGroup finds the preview's target group by its name or
// creates it in the load balancer's VPC.
func (d *Driver) ensureTargetGroup(ctx context.Context, pl *previewPlace, lb balancer, path string, tags map[string]string, log io.Writer) (string, error) {
	c, name := pl.c, pl.key.targetGroupName()
	arn, err := d.findTargetGroup(ctx, c, name)
	if err != nil || arn != "" {
		if err == nil {
			err = d.checkOwner(ctx, c, pl.key, "target group", arn)
		}
		return arn, err
	}
	if path == "" {
		path = "/healthz"
	}
	out, err := c.elb.CreateTargetGroup(ctx, &elb.CreateTargetGroupInput{
		Name:            awssdk.String(name),
		Protocol:        elbtypes.ProtocolEnumHttp,
		Port:            awssdk.Int32(d.opts.PreviewPort),
		VpcId:           awssdk.String(lb.vpc),
		TargetType:      elbtypes.TargetTypeEnumInstance,
		HealthCheckPath: awssdk.String(path),
		Tags:            elbTags(tags),
	})
	if errorCode(err) == "DuplicateTargetGroupName" {
		// Another attempt made it between our look and our create.
		if arn, err = d.findTargetGroup(ctx, c, name); err == nil && arn == "" {
			err = waitError("elasticloadbalancing:CreateTargetGroup", name, "the name is taken but no target group has it yet")
		}
		return arn, err
	}
	if err != nil {
		return "", callError("elasticloadbalancing:CreateTargetGroup", name+" in "+lb.vpc, err)
	}
	arn = awssdk.ToString(out.TargetGroups[0].TargetGroupArn)
	fmt.Fprintf(log, "preview %s: created target group %s\n", pl.key, name)
	// AWS's default of 300s would hold every preview update for 5 minutes
	// of draining for a handful of requests.
	_, err = c.elb.ModifyTargetGroupAttributes(ctx, &elb.ModifyTargetGroupAttributesInput{
		TargetGroupArn: awssdk.String(arn),
		Attributes:     []elbtypes.TargetGroupAttribute{{Key: awssdk.String("deregistration_delay.timeout_seconds"), Value: awssdk.String(strconv.Itoa(previewDrainS))}},
	})
	return arn, callError("elasticloadbalancing:ModifyTargetGroupAttributes", arn, err)
}

// findTargetGroup is the ARN of the target group called name, or "".
func (d *Driver) findTargetGroup(ctx context.Context, c *clients, name string) (string, error) {
	out, err := c.elb.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{Names: []string{name}})
	if errorCode(err) == "TargetGroupNotFound" {
		return "", nil
	}
	if err != nil {
		return "", callError("elasticloadbalancing:DescribeTargetGroups", name, err)
	}
	if len(out.TargetGroups) == 0 {
		return "", nil
	}
	return awssdk.ToString(out.TargetGroups[0].TargetGroupArn), nil
}

// checkOwner refuses to adopt an ELB resource that is not this preview's.
func (d *Driver) checkOwner(ctx context.Context, c *clients, k previewKey, what, arn string) error {
	tags, err := d.describeTags(ctx, c, []string{arn})
	if err != nil {
		return err
	}
	if got, ok := keyOf(tags[arn]); !ok || got != k {
		return permanentError("shipbot", arn, fmt.Errorf("the %s exists but is not tagged as the preview of %s (%s=%q, %s=%q, %s=%q); remove or rename it", what, k, ManagedByTag, tags[arn][ManagedByTag], RepoTag, tags[arn][RepoTag], EnvTag, tags[arn][EnvTag]))
	}
	return nil
}

// describeTags is the tags of each ELB resource, 20 ARNs per call.
func (d *Driver) describeTags(ctx context.Context, c *clients, arns []string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for chunk := range slices.Chunk(arns, 20) {
		resp, err := c.elb.DescribeTags(ctx, &elb.DescribeTagsInput{ResourceArns: chunk})
		if err != nil {
			return nil, callError("elasticloadbalancing:DescribeTags", strings.Join(chunk, ", "), err)
		}
		for _, td := range resp.TagDescriptions {
			m := map[string]string{}
			for _, t := range td.Tags {
				m[awssdk.ToString(t.Key)] = awssdk.ToString(t.Value)
			}
			out[awssdk.ToString(td.ResourceArn)] = m
		}
	}
	return out, nil
}

// ensureRule finds the listener's rule for the preview's host, or creates
// it at a free priority, and makes it forward to tg.
func (d *Driver) ensureRule(ctx context.Context, pl *previewPlace, tg string, tags map[string]string, log io.Writer) (string, error) {
	c, listener := pl.c, pl.cfg.ListenerARN
	forward := []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: awssdk.String(tg)}}
	for attempt := 1; ; attempt++ {
		rules, err := d.listenerRules(ctx, c, listener)
		if err != nil {
			return "", err
		}
		used := map[int]bool{}
		for _, rule := range rules {
			arn := awssdk.ToString(rule.RuleArn)
			if slices.Contains(ruleHosts(rule), pl.host) {
				if err := d.checkOwner(ctx, c, pl.key, "listener rule for "+pl.host, arn); err != nil {
					return "", err
				}
				if !slices.Contains(ruleTargetGroups(rule), tg) {
					if _, err := c.elb.ModifyRule(ctx, &elb.ModifyRuleInput{RuleArn: rule.RuleArn, Actions: forward}); err != nil {
						return "", callError("elasticloadbalancing:ModifyRule", arn, err)
					}
				}
				return arn, nil
			}
			if n, err := strconv.Atoi(awssdk.ToString(rule.Priority)); err == nil {
				used[n] = true
			}
		}
		prio := freePriority(used, pl.key.Number)
		if prio == 0 {
			return "", permanentError("elasticloadbalancing:CreateRule", listener, fmt.Errorf("no free rule priority for %s", pl.host))
		}
		out, err := c.elb.CreateRule(ctx, &elb.CreateRuleInput{
			ListenerArn: awssdk.String(listener),
			Priority:    awssdk.Int32(int32(prio)),
			Conditions: []elbtypes.RuleCondition{{
				Field:            awssdk.String("host-header"),
				HostHeaderConfig: &elbtypes.HostHeaderConditionConfig{Values: []string{pl.host}},
			}},
			Actions: forward,
			Tags:    elbTags(tags),
		})
		if errorCode(err) == "PriorityInUse" && attempt < 5 {
			continue // another preview took it since we looked
		}
		if err != nil {
			return "", callError("elasticloadbalancing:CreateRule", fmt.Sprintf("host %s at priority %d on %s", pl.host, prio, listener), err)
		}
		arn := awssdk.ToString(out.Rules[0].RuleArn)
		fmt.Fprintf(log, "preview %s: created listener rule for %s at priority %d\n", pl.key, pl.host, prio)
		return arn, nil
	}
}

// freePriority is the first priority not in used, looking from the pull
// request's number upwards (so previews made at the same moment rarely
// reach for the same one), or 0 when all are taken.
func freePriority(used map[int]bool, number int) int {
	start := (number-1)%maxPriority + 1
	for i := range maxPriority {
		p := (start-1+i)%maxPriority + 1
		if !used[p] {
			return p
		}
	}
	return 0
}

func (d *Driver) listenerRules(ctx context.Context, c *clients, listener string) ([]elbtypes.Rule, error) {
	var rules []elbtypes.Rule
	pages := elb.NewDescribeRulesPaginator(c.elb, &elb.DescribeRulesInput{ListenerArn: awssdk.String(listener)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, callError("elasticloadbalancing:DescribeRules", listener, err)
		}
		rules = append(rules, page.Rules...)
	}
	return rules, nil
}

// ruleHosts is the host-header values of a rule, lower case.
func ruleHosts(rule elbtypes.Rule) []string {
	var hosts []string
	for _, cond := range rule.Conditions {
		if awssdk.ToString(cond.Field) != "host-header" {
			continue
		}
		values := cond.Values
		if cond.HostHeaderConfig != nil {
			values = append(slices.Clone(values), cond.HostHeaderConfig.Values...)
		}
		for _, v := range values {
			hosts = append(hosts, strings.ToLower(v))
		}
	}
	return hosts
}

// ruleTargetGroups is every target group a rule forwards to.
func ruleTargetGroups(rule elbtypes.Rule) []string {
	var tgs []string
	for _, a := range rule.Actions {
		if a.TargetGroupArn != nil {
			tgs = append(tgs, *a.TargetGroupArn)
		}
		if a.ForwardConfig != nil {
			for _, t := range a.ForwardConfig.TargetGroups {
				tgs = append(tgs, awssdk.ToString(t.TargetGroupArn))
			}
		}
	}
	return tgs
}

// upsertRecord points host at the load balancer with an alias record.
func (d *Driver) upsertRecord(ctx context.Context, pl *previewPlace, zone string, lb balancer) error {
	_, err := pl.c.r53.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{
		HostedZoneId: awssdk.String(zone),
		ChangeBatch: &r53types.ChangeBatch{
			Comment: awssdk.String("shipbot preview " + pl.key.String()),
			Changes: []r53types.Change{{
				Action: r53types.ChangeActionUpsert,
				ResourceRecordSet: &r53types.ResourceRecordSet{
					Name: awssdk.String(pl.host),
					Type: r53types.RRTypeA,
					AliasTarget: &r53types.AliasTarget{
						DNSName:              awssdk.String(lb.dns),
						HostedZoneId:         awssdk.String(lb.zone),
						EvaluateTargetHealth: false,
					},
				},
			}},
		},
	})
	return callError("route53:ChangeResourceRecordSets", "A "+pl.host+" in hosted zone "+zone, err)
}

// previewInstance is an instance of a preview as EC2 lists it.
type previewInstance struct {
	id, state, release string
	tags               map[string]string
}

// liveStates are the instance states that still cost money or may serve.
var liveStates = []string{"pending", "running", "stopping", "stopped"}

// instances lists live instances carrying the filter's tags.
func (d *Driver) instances(ctx context.Context, c *clients, filter map[string]string) ([]previewInstance, error) {
	keys := make([]string, 0, len(filter))
	for k := range filter {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	filters := []ec2.Filter{{Name: "instance-state-name", Values: liveStates}}
	for _, k := range keys {
		filters = append(filters, ec2.Filter{Name: "tag:" + k, Values: []string{filter[k]}})
	}
	found, err := ec2.AllInstances(ctx, c.ec2, ec2.DescribeInstancesInput{Filters: filters})
	if err != nil {
		return nil, callError("ec2:DescribeInstances", "instances tagged "+tagList(keys, filter), err)
	}
	var out []previewInstance
	for _, in := range found {
		out = append(out, previewInstance{id: in.ID, state: in.State, release: in.Tags[ReleaseTag], tags: in.Tags})
	}
	slices.SortFunc(out, func(a, b previewInstance) int { return strings.Compare(a.id, b.id) })
	return out, nil
}

func (k previewKey) instanceFilter() map[string]string {
	return map[string]string{ManagedByTag: ManagedBy, RepoTag: k.Repo, EnvTag: k.env()}
}

// ensureServing makes one instance on the release healthy in tg and
// retires every other instance of the preview; it returns the serving one.
func (d *Driver) ensureServing(ctx context.Context, pl *previewPlace, tg string, r deploy.Release, tags map[string]string, healthTimeout time.Duration, log io.Writer) (string, error) {
	c := pl.c
	live, err := d.instances(ctx, c, pl.key.instanceFilter())
	if err != nil {
		return "", err
	}
	registered, err := d.registered(ctx, c, tg)
	if err != nil {
		return "", err
	}
	// current: in the group on the release (an update that already went
	// through). spare: out of the group and able to run, preferably
	// already on the release (an attempt that crashed half-way).
	var current, spare *previewInstance
	for i := range live {
		in := &live[i]
		inGroup := inRotation(registered[in.id])
		switch {
		case inGroup && in.release == r.SHA && current == nil:
			current = in
		case !inGroup && (in.state == "pending" || in.state == "running") &&
			(spare == nil || (in.release == r.SHA && spare.release != r.SHA)):
			spare = in
		}
	}
	if current != nil {
		// Already serving the release: only make sure it is healthy.
		if err := d.admit(ctx, c, tg, deploy.Instance{ID: current.id}, healthTimeout); err != nil {
			return "", err
		}
	} else {
		cand := spare
		if cand == nil {
			id, err := d.launch(ctx, pl, tags)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(log, "preview %s: launched %s from launch template %s\n", pl.key, id, pl.cfg.LaunchTemplate)
			cand = &previewInstance{id: id, state: "pending"}
		}
		if err := d.bringUp(ctx, pl, tg, cand, r, healthTimeout, log); err != nil {
			d.discard(ctx, c, tg, cand.id, log)
			return "", err
		}
		current = cand
	}
	for _, in := range live {
		if in.id == current.id {
			continue
		}
		if st := registered[in.id]; st != "" && st != elbtypes.TargetHealthStateEnumUnused {
			if err := d.drain(ctx, c, tg, deploy.Instance{ID: in.id}); err != nil {
				// The new release serves; a preview's last requests to
				// the old one are not worth failing the update for.
				fmt.Fprintf(log, "preview %s: %v; terminating %s anyway\n", pl.key, err, in.id)
			}
		}
		if err := d.terminate(ctx, c, []string{in.id}); err != nil {
			return "", err
		}
		fmt.Fprintf(log, "preview %s: retired %s (%s)\n", pl.key, in.id, shortSHA(in.release))
	}
	return current.id, nil
}

// registered is the state of every target registered with tg.
func (d *Driver) registered(ctx context.Context, c *clients, tg string) (map[string]elbtypes.TargetHealthStateEnum, error) {
	out, err := c.elb.DescribeTargetHealth(ctx, &elb.DescribeTargetHealthInput{TargetGroupArn: awssdk.String(tg)})
	if err != nil {
		return nil, callError("elasticloadbalancing:DescribeTargetHealth", tg, err)
	}
	states := map[string]elbtypes.TargetHealthStateEnum{}
	for _, desc := range out.TargetHealthDescriptions {
		if desc.Target != nil && desc.TargetHealth != nil {
			states[awssdk.ToString(desc.Target.Id)] = desc.TargetHealth.State
		}
	}
	return states, nil
}

// launch starts one instance from the preview's launch template, tagged.
// The ec2 client gives RunInstances a client token, so its own retries
// of the call do not start a second instance; an attempt that crashed
// after the call finds the instance by its tags.
func (d *Driver) launch(ctx context.Context, pl *previewPlace, tags map[string]string) (string, error) {
	lt := pl.cfg.LaunchTemplate
	in := &ec2.RunInstancesInput{LaunchTemplateName: lt, MinCount: 1, MaxCount: 1, Tags: map[string]string{}}
	if strings.HasPrefix(lt, "lt-") {
		in.LaunchTemplateID, in.LaunchTemplateName = lt, ""
	}
	for k, v := range tags {
		if k != RecordTag {
			in.Tags[k] = v
		}
	}
	out, err := pl.c.ec2.RunInstances(ctx, in)
	if err != nil {
		return "", callError("ec2:RunInstances", "launch template "+lt+" for preview "+pl.key.String(), err)
	}
	if len(out.Instances) == 0 {
		return "", waitError("ec2:RunInstances", "launch template "+lt, "no instance in the answer")
	}
	return out.Instances[0].ID, nil
}

// bringUp waits for the instance to run, installs the release on it unless
// its ReleaseTag says it is there, and admits it into tg.
func (d *Driver) bringUp(ctx context.Context, pl *previewPlace, tg string, in *previewInstance, r deploy.Release, healthTimeout time.Duration, log io.Writer) error {
	c := pl.c
	if err := d.waitRunning(ctx, c, in.id); err != nil {
		return err
	}
	if in.release != r.SHA {
		command, err := renderCommand("preview.aws.install", pl.install, r)
		if err != nil {
			return permanentError("shipbot", "preview "+pl.key.String(), err)
		}
		comment := "shipbot install " + shortSHA(r.SHA) + " " + pl.key.String()
		if err := d.install(ctx, c, in.id, command, r.SHA, comment, d.opts.BootTimeout, log); err != nil {
			return err
		}
		fmt.Fprintf(log, "preview %s: installed %s on %s\n", pl.key, shortSHA(r.SHA), in.id)
	}
	return d.admit(ctx, c, tg, deploy.Instance{ID: in.id}, healthTimeout)
}

// waitRunning waits, up to Options.BootTimeout, for the instance to run.
func (d *Driver) waitRunning(ctx context.Context, c *clients, id string) error {
	var last string
	err := d.poll(ctx, d.opts.BootTimeout, func(ctx context.Context) (bool, error) {
		out, err := c.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIDs: []string{id}})
		if errorCode(err) == "InvalidInstanceID.NotFound" {
			return false, nil // EC2 is eventually consistent right after RunInstances
		}
		if err != nil {
			return false, callError("ec2:DescribeInstances", id, err)
		}
		for _, in := range out.Instances {
			if in.State == "" {
				continue
			}
			last = in.State
			switch in.State {
			case ec2.StateRunning:
				return true, nil
			case ec2.StatePending:
			default:
				why := last
				if in.StateReason != "" {
					why += ": " + in.StateReason
				}
				return false, permanentError("ec2:DescribeInstances", id, fmt.Errorf("the preview instance is %s instead of running", why))
			}
		}
		return false, nil
	})
	if err == errPollTimeout {
		return waitError("ec2:DescribeInstances", id, "not running %s after launch (%s)", d.opts.BootTimeout, last)
	}
	return err
}

// discard removes an instance an update failed with, so that the retry
// starts clean and the previous release goes on serving alone. It runs
// even when ctx was cancelled (a stopping worker), within its own bound.
func (d *Driver) discard(ctx context.Context, c *clients, tg, id string, log io.Writer) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	_, err := c.elb.DeregisterTargets(ctx, &elb.DeregisterTargetsInput{TargetGroupArn: awssdk.String(tg), Targets: []elbtypes.TargetDescription{{Id: awssdk.String(id)}}})
	if err != nil && errorCode(err) != "InvalidTarget" {
		fmt.Fprintf(log, "%v\n", callError("elasticloadbalancing:DeregisterTargets", id+" in "+tg, err))
	}
	if err := d.terminate(ctx, c, []string{id}); err != nil {
		fmt.Fprintf(log, "%v\n", err)
		return
	}
	fmt.Fprintf(log, "terminated %s, which failed the update\n", id)
}

// terminate terminates instances; ones already gone are not an error.
func (d *Driver) terminate(ctx context.Context, c *clients, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	err := c.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIDs: ids})
	if errorCode(err) == "InvalidInstanceID.NotFound" {
		if len(ids) == 1 {
			return nil
		}
		// One unknown id fails the whole call: go one by one.
		var errs []error
		for _, id := range ids {
			errs = append(errs, d.terminate(ctx, c, []string{id}))
		}
		return errors.Join(errs...)
	}
	return callError("ec2:TerminateInstances", strings.Join(ids, ", "), err)
}

// TeardownPreview removes the pull request's preview: its Route 53 record,
// its listener rule, its target group (targets deregistered first) and its
// instances, in that order, so that no step leaves a resource pointing at
// one already gone. What is already gone is skipped. Resources are found
// by tags and the target group's name; the settings only add the record
// to look for, so a preview outlives a change of preview.aws.
func (d *Driver) TeardownPreview(ctx context.Context, p deploy.Preview) error {
	pl, err := d.place(p, false)
	if err != nil {
		return err
	}
	res, err := d.findPreview(ctx, pl.c, pl.key)
	if err != nil {
		return err
	}
	if pl.cfg != nil && pl.cfg.HostedZoneID != "" {
		res.addRecord(pl.cfg.HostedZoneID + "/" + pl.host)
	}
	return d.removePreview(ctx, pl.c, res)
}

// previewResources is what one preview is made of, as found in AWS.
type previewResources struct {
	key          previewKey
	targetGroups []string
	instances    []string
	records      []string // "<zone>/<name>"
	updated      time.Time
}

func (r *previewResources) addRecord(ref string) {
	if ref != "" && !slices.Contains(r.records, ref) {
		r.records = append(r.records, ref)
	}
}

func (r *previewResources) sawTags(tags map[string]string) {
	if t, err := time.Parse(time.RFC3339, tags[UpdatedAtTag]); err == nil && t.After(r.updated) {
		r.updated = t
	}
	r.addRecord(tags[RecordTag])
}

// findPreview finds one preview's target group (by name) and instances (by
// tags).
func (d *Driver) findPreview(ctx context.Context, c *clients, k previewKey) (*previewResources, error) {
	res := &previewResources{key: k}
	tg, err := d.findTargetGroup(ctx, c, k.targetGroupName())
	if err != nil {
		return nil, err
	}
	if tg != "" {
		tags, err := d.describeTags(ctx, c, []string{tg})
		if err != nil {
			return nil, err
		}
		// A group of that name that is not this preview's stays.
		if got, ok := keyOf(tags[tg]); ok && got == k {
			res.targetGroups = append(res.targetGroups, tg)
			res.sawTags(tags[tg])
		}
	}
	live, err := d.instances(ctx, c, k.instanceFilter())
	if err != nil {
		return nil, err
	}
	for _, in := range live {
		res.instances = append(res.instances, in.id)
		res.sawTags(in.tags)
	}
	return res, nil
}

// removePreview deletes what res lists, in the order TeardownPreview
// describes.
func (d *Driver) removePreview(ctx context.Context, c *clients, res *previewResources) error {
	for _, ref := range res.records {
		if err := d.deleteRecord(ctx, c, ref); err != nil {
			return err
		}
	}
	for _, tg := range res.targetGroups {
		// A rule forwarding to the group always exists only while the
		// group does (ELBv2 refuses to delete a group in use), so the
		// group leads to every rule of the preview.
		rules, err := d.rulesForwardingTo(ctx, c, tg)
		if err != nil {
			return err
		}
		for _, rule := range rules {
			_, err := c.elb.DeleteRule(ctx, &elb.DeleteRuleInput{RuleArn: awssdk.String(rule)})
			if err != nil && errorCode(err) != "RuleNotFound" {
				return callError("elasticloadbalancing:DeleteRule", rule, err)
			}
		}
		if err := d.deleteTargetGroup(ctx, c, tg); err != nil {
			return err
		}
	}
	return d.terminate(ctx, c, res.instances)
}

// rulesForwardingTo lists the non-default rules, on every listener of the
// group's load balancers, that forward to tg.
func (d *Driver) rulesForwardingTo(ctx context.Context, c *clients, tg string) ([]string, error) {
	out, err := c.elb.DescribeTargetGroups(ctx, &elb.DescribeTargetGroupsInput{TargetGroupArns: []string{tg}})
	if errorCode(err) == "TargetGroupNotFound" {
		return nil, nil
	}
	if err != nil {
		return nil, callError("elasticloadbalancing:DescribeTargetGroups", tg, err)
	}
	var rules []string
	for _, g := range out.TargetGroups {
		for _, lb := range g.LoadBalancerArns {
			pages := elb.NewDescribeListenersPaginator(c.elb, &elb.DescribeListenersInput{LoadBalancerArn: awssdk.String(lb)})
			for pages.HasMorePages() {
				page, err := pages.NextPage(ctx)
				if err != nil {
					return nil, callError("elasticloadbalancing:DescribeListeners", lb, err)
				}
				for _, l := range page.Listeners {
					lr, err := d.listenerRules(ctx, c, awssdk.ToString(l.ListenerArn))
					if err != nil {
						return nil, err
					}
					for _, rule := range lr {
						if !awssdk.ToBool(rule.IsDefault) && slices.Contains(ruleTargetGroups(rule), tg) {
							rules = append(rules, awssdk.ToString(rule.RuleArn))
						}
					}
				}
			}
		}
	}
	return rules, nil
}

// deleteTargetGroup deregisters tg's targets and deletes it. ELBv2 may
// report the group in use for a moment after its rule was deleted; that is
// waited out, briefly.
func (d *Driver) deleteTargetGroup(ctx context.Context, c *clients, tg string) error {
	registered, err := d.registered(ctx, c, tg)
	if errorCode(err) == "TargetGroupNotFound" {
		return nil
	}
	if err != nil {
		return err
	}
	var targets []elbtypes.TargetDescription
	for id := range registered {
		targets = append(targets, elbtypes.TargetDescription{Id: awssdk.String(id)})
	}
	if len(targets) > 0 {
		if _, err := c.elb.DeregisterTargets(ctx, &elb.DeregisterTargetsInput{TargetGroupArn: awssdk.String(tg), Targets: targets}); err != nil {
			return callError("elasticloadbalancing:DeregisterTargets", tg, err)
		}
	}
	var last error
	err = d.poll(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		_, last = c.elb.DeleteTargetGroup(ctx, &elb.DeleteTargetGroupInput{TargetGroupArn: awssdk.String(tg)})
		switch errorCode(last) {
		case "ResourceInUse":
			return false, nil
		case "TargetGroupNotFound":
			return true, nil
		}
		return true, callError("elasticloadbalancing:DeleteTargetGroup", tg, last)
	})
	if err == errPollTimeout {
		return callError("elasticloadbalancing:DeleteTargetGroup", tg, last)
	}
	return err
}

// deleteRecord deletes the A, AAAA or CNAME records named by ref
// ("<zone>/<name>"), if any.
func (d *Driver) deleteRecord(ctx context.Context, c *clients, ref string) error {
	zone, name, ok := strings.Cut(ref, "/")
	if !ok || zone == "" || name == "" {
		return nil // not a record reference shipbot wrote
	}
	fqdn := strings.ToLower(strings.TrimSuffix(name, ".")) + "."
	resource := name + " in hosted zone " + zone
	out, err := c.r53.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{
		HostedZoneId:    awssdk.String(zone),
		StartRecordName: awssdk.String(fqdn),
		MaxItems:        awssdk.Int32(10),
	})
	if errorCode(err) == "NoSuchHostedZone" {
		return nil // the zone went first: so did its records
	}
	if err != nil {
		return callError("route53:ListResourceRecordSets", resource, err)
	}
	var changes []r53types.Change
	for _, set := range out.ResourceRecordSets {
		if strings.ToLower(strings.TrimSuffix(awssdk.ToString(set.Name), ".")+".") != fqdn {
			continue
		}
		switch set.Type {
		case r53types.RRTypeA, r53types.RRTypeAaaa, r53types.RRTypeCname:
			changes = append(changes, r53types.Change{Action: r53types.ChangeActionDelete, ResourceRecordSet: &set})
		}
	}
	if len(changes) == 0 {
		return nil
	}
	_, err = c.r53.ChangeResourceRecordSets(ctx, &route53.ChangeResourceRecordSetsInput{
		HostedZoneId: awssdk.String(zone),
		ChangeBatch:  &r53types.ChangeBatch{Comment: awssdk.String("shipbot preview teardown"), Changes: changes},
	})
	if errorCode(err) == "InvalidChangeBatch" && strings.Contains(err.Error(), "not found") {
		return nil // deleted since we listed it
	}
	return callError("route53:ChangeResourceRecordSets", resource, err)
}

func elbTags(m map[string]string) []elbtypes.Tag {
	return sdkTags(m, func(k, v *string) elbtypes.Tag { return elbtypes.Tag{Key: k, Value: v} })
}

// sdkTags turns m into one SDK's tags, in the order of their keys.
func sdkTags[T any](m map[string]string, tag func(k, v *string) T) []T {
	out := make([]T, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, tag(awssdk.String(k), awssdk.String(m[k])))
	}
	return out
}
