package aws

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
)

// SweptPreview is a preview SweepPreviews removed, and why.
type SweptPreview struct {
	Repo   string // owner/name
	Number int
	Region string
	Reason string // "pull request closed", or how long it went without an update
}

// SweepPreviews removes the previews nobody tore down: everything tagged
// managed-by=shipbot, grouped by its shipbot:repo and shipbot:env tags,
// whose pull request isOpen reports closed, or whose newest
// shipbot:updated-at is older than ttl (ttl <= 0: no age limit). It looks
// in Options.SweepRegions (default: the configured region).
//
// A preview whose state isOpen cannot tell is left alone and its error
// returned, joined with the others; resources tagged managed-by=shipbot
// without a valid repository and number are never touched.
func (d *Driver) SweepPreviews(ctx context.Context, isOpen func(ctx context.Context, repo string, number int) (bool, error), ttl time.Duration) ([]SweptPreview, error) {
	regions := d.opts.SweepRegions
	if len(regions) == 0 && d.cfg.Region != "" {
		regions = []string{d.cfg.Region}
	}
	if len(regions) == 0 {
		return nil, permanentError("shipbot", "preview sweep", fmt.Errorf("no region to sweep: set AWS_REGION"))
	}
	var swept []SweptPreview
	var errs []error
	for _, region := range regions {
		c := d.clients(region)
		found, err := d.findManaged(ctx, c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		now := time.Now()
		for _, res := range found {
			k := res.key
			var reason string
			if age := now.Sub(res.updated); ttl > 0 && !res.updated.IsZero() && age > ttl {
				reason = fmt.Sprintf("no update for %s (ttl %s)", age.Round(time.Minute), ttl)
			} else {
				open, err := isOpen(ctx, k.Repo, k.Number)
				if err != nil {
					errs = append(errs, fmt.Errorf("sweep: is %s open? %w", k, err))
					continue
				}
				if open {
					continue
				}
				reason = "pull request closed"
			}
			if err := d.removePreview(ctx, c, res); err != nil {
				errs = append(errs, fmt.Errorf("sweep %s in %s: %w", k, region, err))
				continue
			}
			swept = append(swept, SweptPreview{Repo: k.Repo, Number: k.Number, Region: region, Reason: reason})
		}
	}
	return swept, errors.Join(errs...)
}

// findManaged groups the region's instances and target groups tagged
// managed-by=shipbot by preview, ordered by repository and number. Rules
// and records are reached from the target groups when removing.
func (d *Driver) findManaged(ctx context.Context, c *clients) ([]*previewResources, error) {
	byKey := map[previewKey]*previewResources{}
	get := func(k previewKey) *previewResources {
		if byKey[k] == nil {
			byKey[k] = &previewResources{key: k}
		}
		return byKey[k]
	}

	live, err := d.instances(ctx, c, map[string]string{ManagedByTag: ManagedBy})
	if err != nil {
		return nil, err
	}
	for _, in := range live {
		if k, ok := keyOf(in.tags); ok {
			res := get(k)
			res.instances = append(res.instances, in.id)
			res.sawTags(in.tags)
		}
	}

	// ELBv2 cannot filter by tag: list the groups, then read their tags.
	var arns []string
	pages := elb.NewDescribeTargetGroupsPaginator(c.elb, &elb.DescribeTargetGroupsInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, callError("elasticloadbalancing:DescribeTargetGroups", "all target groups", err)
		}
		for _, g := range page.TargetGroups {
			arns = append(arns, awssdk.ToString(g.TargetGroupArn))
		}
	}
	tags, err := d.describeTags(ctx, c, arns)
	if err != nil {
		return nil, err
	}
	for _, arn := range arns {
		if k, ok := keyOf(tags[arn]); ok {
			res := get(k)
			res.targetGroups = append(res.targetGroups, arn)
			res.sawTags(tags[arn])
		}
	}

	out := make([]*previewResources, 0, len(byKey))
	for _, res := range byKey {
		out = append(out, res)
	}
	slices.SortFunc(out, func(a, b *previewResources) int {
		if c := strings.Compare(a.key.Repo, b.key.Repo); c != 0 {
			return c
		}
		return a.key.Number - b.key.Number
	})
	return out, nil
}
