package aws

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"

	"github.com/shipbot/shipbot/internal/deploy"
)

// cloudwatchAPI is the CloudWatch call the driver makes, and the client's
// options (its region, for messages).
type cloudwatchAPI interface {
	DescribeAlarms(ctx context.Context, in *cloudwatch.DescribeAlarmsInput, opts ...func(*cloudwatch.Options)) (*cloudwatch.DescribeAlarmsOutput, error)
	Options() cloudwatch.Options
}

var _ deploy.AlarmWatcher = (*Driver)(nil)

// describeAlarmsNames is the most alarm names one DescribeAlarms call takes.
const describeAlarmsNames = 100

// alarmTypes are the kinds of alarm aws.alarms may name; DescribeAlarms
// returns metric alarms only unless asked for others. Log alarms (2026)
// are left out: a region that does not know the type yet might refuse the
// whole call.
var alarmTypes = []cwtypes.AlarmType{cwtypes.AlarmTypeMetricAlarm, cwtypes.AlarmTypeCompositeAlarm}

// newCloudWatch is the CloudWatch client of region. It speaks the SDK's
// default protocol unless the tests' cloudwatchOptions says otherwise.
func (d *Driver) newCloudWatch(region string, attempts int) *cloudwatch.Client {
	return cloudwatch.NewFromConfig(d.cfg, func(o *cloudwatch.Options) {
		o.Region, o.RetryMaxAttempts = region, attempts
		if d.cloudwatchOptions != nil {
			d.cloudwatchOptions(o)
		}
	})
}

// Alarms returns the state of each of the named CloudWatch alarms
// (aws.alarms) in the environment's region, in the order of names: metric
// and composite alarms alike (a log alarm reads as missing). Since is when
// the alarm last changed state (StateTransitionedTimestamp), or, where
// CloudWatch does not say, when its state was last updated
// (StateUpdatedTimestamp). A name with no alarm is a permanent error
// naming every such name.
func (d *Driver) Alarms(ctx context.Context, t deploy.Target, names []string) ([]deploy.Alarm, error) {
	if len(names) == 0 {
		return nil, nil
	}
	_, c, err := d.fleet(t)
	if err != nil {
		return nil, err
	}
	region := c.cw.Options().Region
	found := map[string]deploy.Alarm{}
	for chunk := range slices.Chunk(unique(names), describeAlarmsNames) {
		if err := describeAlarms(ctx, c.cw, chunk, found); err != nil {
			return nil, callError("cloudwatch:DescribeAlarms", "alarms "+strings.Join(chunk, ", ")+" in "+region, err)
		}
	}
	out := make([]deploy.Alarm, 0, len(names))
	var missing []string
	for _, name := range names {
		if a, ok := found[name]; ok {
			out = append(out, a)
		} else if !slices.Contains(missing, name) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, permanentError("cloudwatch:DescribeAlarms", "environment "+t.Environment.Name, noSuchAlarms(missing, region))
	}
	return out, nil
}

// noSuchAlarms says that names are not alarms of region.
func noSuchAlarms(names []string, region string) error {
	what := "alarm named " + names[0]
	if len(names) > 1 {
		what = "alarms named " + strings.Join(names, ", ")
	}
	return fmt.Errorf("CloudWatch has no %s in %s: check aws.alarms", what, region)
}

// describeAlarms adds the alarms named names to found, page by page.
func describeAlarms(ctx context.Context, cw cloudwatchAPI, names []string, found map[string]deploy.Alarm) error {
	pages := cloudwatch.NewDescribeAlarmsPaginator(cw, &cloudwatch.DescribeAlarmsInput{
		AlarmNames: names,
		AlarmTypes: alarmTypes,
		MaxRecords: awssdk.Int32(describeAlarmsNames),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, a := range page.MetricAlarms {
			addAlarm(found, a.AlarmName, a.StateValue, a.StateReason, a.StateTransitionedTimestamp, a.StateUpdatedTimestamp)
		}
		for _, a := range page.CompositeAlarms {
			addAlarm(found, a.AlarmName, a.StateValue, a.StateReason, a.StateTransitionedTimestamp, a.StateUpdatedTimestamp)
		}
	}
	return nil
}

// addAlarm records the first alarm of each name: alarm names are unique
// in an account's region, so a second is the same alarm again.
func addAlarm(found map[string]deploy.Alarm, name *string, state cwtypes.StateValue, reason *string, transitioned, updated *time.Time) {
	n := awssdk.ToString(name)
	if _, ok := found[n]; ok || n == "" {
		return
	}
	since := transitioned
	if since == nil {
		since = updated
	}
	found[n] = deploy.Alarm{Name: n, State: string(state), Since: awssdk.ToTime(since), Reason: awssdk.ToString(reason)}
}

// unique is names without repeats, in their order.
func unique(names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}
