package aws

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/schemas"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/store/record"
)

// awsJSON makes a CloudWatch client speak AWS JSON 1.0, one of the three
// protocols CloudWatch serves. The SDK's default, Smithy RPC v2 CBOR, is
// one moto_server does not (it answers 404), so the tests use JSON and
// production the SDK's default.
func awsJSON(o *cloudwatch.Options) {
	o.Protocol = awsjson.New10(schemas.GraniteServiceVersion20100801)
}

// alarmsOnMoto is moto with two alarms in us-east-1: web-5xx-rate in
// ALARM and web-p99 as moto creates it.
type alarmsOnMoto struct {
	cfg     awssdk.Config
	created time.Time // before the alarms were
	alarmed time.Time // before web-5xx-rate went into ALARM
}

func newAlarmsOnMoto(t *testing.T) *alarmsOnMoto {
	t.Helper()
	m := &alarmsOnMoto{cfg: awssdk.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: awssdk.String(startMoto(t)),
	}}
	cw := cloudwatch.NewFromConfig(m.cfg, awsJSON)
	ctx := context.Background()
	// Moto keeps timestamps to the millisecond, rounded: a millisecond of
	// slack on either side.
	m.created = time.Now().Add(-time.Millisecond)
	for _, a := range []struct{ name, metric string }{
		{"web-5xx-rate", "HTTPCode_Target_5XX_Count"},
		{"web-p99", "TargetResponseTime"},
	} {
		if _, err := cw.PutMetricAlarm(ctx, &cloudwatch.PutMetricAlarmInput{
			AlarmName: awssdk.String(a.name), Namespace: awssdk.String("AWS/ApplicationELB"), MetricName: awssdk.String(a.metric),
			Statistic: cwtypes.StatisticSum, Period: awssdk.Int32(60), EvaluationPeriods: awssdk.Int32(1),
			Threshold: awssdk.Float64(5), ComparisonOperator: cwtypes.ComparisonOperatorGreaterThanThreshold,
		}); err != nil {
			t.Fatalf("PutMetricAlarm %s: %v", a.name, err)
		}
	}
	m.alarmed = time.Now().Add(-time.Millisecond)
	if _, err := cw.SetAlarmState(ctx, &cloudwatch.SetAlarmStateInput{
		AlarmName: awssdk.String("web-5xx-rate"), StateValue: cwtypes.StateValueAlarm,
		StateReason: awssdk.String("Threshold Crossed: 1 datapoint [12.0] was greater than the threshold (5.0)."),
	}); err != nil {
		t.Fatal(err)
	}
	return m
}

// driver is a new driver on m, with the recorder it sends through.
func (m *alarmsOnMoto) driver(t *testing.T) (*Driver, *recorder) {
	t.Helper()
	rec := newRecorder()
	d, err := New(Options{Config: &m.cfg, HTTPClient: rec})
	if err != nil {
		t.Fatal(err)
	}
	d.cloudwatchOptions = awsJSON
	return d, rec
}

// alarmsTarget is an aws environment in a region with aws.alarms.
func alarmsTarget(in string, alarms ...string) deploy.Target {
	return deploy.Target{Repo: "acme/web", Environment: &repoconfig.Environment{
		Name: "production", Driver: repoconfig.DriverAWS,
		AWS: &repoconfig.AWSFleet{
			Region:         in,
			TargetGroupARN: "arn:aws:elasticloadbalancing:" + in + ":123456789012:targetgroup/web/0123456789abcdef",
			InstanceTags:   map[string]string{"app": "web"},
			Alarms:         alarms,
		},
	}}
}

// TestAlarms runs on one moto; each case has a driver of its own.
func TestAlarms(t *testing.T) {
	m := newAlarmsOnMoto(t)
	t.Run("in the order asked", m.testOrder)
	t.Run("none asked", m.testNone)
	t.Run("missing", m.testMissing)
	t.Run("pages and composites", m.testPagesAndComposites)
	t.Run("denied", m.testDenied)
}

func (m *alarmsOnMoto) testOrder(t *testing.T) {
	d, rec := m.driver(t)
	names := []string{"web-p99", "web-5xx-rate"}
	got, err := d.Alarms(context.Background(), alarmsTarget(region, names...), names)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if len(got) != 2 {
		t.Fatalf("Alarms = %+v, want web-p99 and web-5xx-rate", got)
	}
	p99, errs := got[0], got[1]
	// Moto makes an alarm in OK (CloudWatch: INSUFFICIENT_DATA) and gives no
	// StateTransitionedTimestamp, so Since is its StateUpdatedTimestamp.
	if p99.Name != "web-p99" || p99.State != deploy.AlarmOK || p99.Reason != "Unchecked: Initial alarm creation" ||
		p99.Since.Before(m.created) || p99.Since.After(m.alarmed.Add(time.Millisecond)) {
		t.Errorf("web-p99 = %+v, want OK since its creation between %s and %s", p99, m.created, m.alarmed)
	}
	if errs.Name != "web-5xx-rate" || errs.State != deploy.AlarmFiring || !strings.HasPrefix(errs.Reason, "Threshold Crossed: 1 datapoint [12.0]") ||
		errs.Since.Before(m.alarmed) || errs.Since.After(now.Add(time.Millisecond)) {
		t.Errorf("web-5xx-rate = %+v, want ALARM since between %s and %s", errs, m.alarmed, now)
	}

	calls := rec.snapshot("DescribeAlarms")
	if len(calls) != 1 {
		t.Fatalf("%d DescribeAlarms calls, want 1", len(calls))
	}
	if got := calls[0].JSON["AlarmNames"]; !sameStrings(got, names) {
		t.Errorf("AlarmNames = %v, want %v", got, names)
	}
	if got := calls[0].JSON["AlarmTypes"]; !sameStrings(got, []string{"MetricAlarm", "CompositeAlarm"}) {
		t.Errorf("AlarmTypes = %v, want metric and composite alarms", got)
	}
}

// testNone: nothing to read, nothing asked.
func (m *alarmsOnMoto) testNone(t *testing.T) {
	d, rec := m.driver(t)
	if got, err := d.Alarms(context.Background(), alarmsTarget(region), nil); err != nil || got != nil {
		t.Errorf("Alarms(no names) = %v, %v", got, err)
	}
	if n := len(rec.snapshot()); n != 0 {
		t.Errorf("%d AWS calls for no alarms", n)
	}
}

func (m *alarmsOnMoto) testMissing(t *testing.T) {
	d, _ := m.driver(t)
	tests := []struct {
		name   string
		region string
		names  []string
		want   string
	}{
		{"one", region, []string{"web-p99", "web-latency", "web-5xx-rate"},
			"cloudwatch:DescribeAlarms on environment production: CloudWatch has no alarm named web-latency in us-east-1: check aws.alarms"},
		{"two, one twice", region, []string{"web-errors", "web-p99", "web-latency", "web-errors"},
			"CloudWatch has no alarms named web-errors, web-latency in us-east-1: check aws.alarms"},
		{"another region", "eu-west-1", []string{"web-p99"},
			"CloudWatch has no alarm named web-p99 in eu-west-1: check aws.alarms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.Alarms(context.Background(), alarmsTarget(tt.region, tt.names...), tt.names)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Alarms(%v) = %v, %v; want an error with %q", tt.names, got, err, tt.want)
			}
			var ae *Error
			if !errors.As(err, &ae) || !ae.Permanent() {
				t.Errorf("error %v is not a permanent *Error", err)
			}
		})
	}
}

// testPagesAndComposites: the driver follows NextToken and reads
// composite alarms, whose Since is when the state changed, not when it was
// last updated. Moto has no composite alarms (PutCompositeAlarm fails) and
// one page of alarms, so the first page is the recorder's.
func (m *alarmsOnMoto) testPagesAndComposites(t *testing.T) {
	d, rec := m.driver(t)
	transitioned := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	rec.setInject(func(c call) *http.Response {
		if c.Action != "DescribeAlarms" || c.JSON["NextToken"] != nil {
			return nil
		}
		return jsonResponse(http.StatusOK, map[string]any{
			"CompositeAlarms": []map[string]any{{
				"AlarmName":                  "web-health",
				"AlarmRule":                  "ALARM(web-5xx-rate) OR ALARM(web-p99)",
				"StateValue":                 "ALARM",
				"StateReason":                "arn:aws:cloudwatch:us-east-1:123456789012:alarm:web-5xx-rate transitioned to ALARM",
				"StateTransitionedTimestamp": transitioned.Unix(),
				"StateUpdatedTimestamp":      transitioned.Add(time.Hour).Unix(),
			}},
			"NextToken": "page-2",
		})
	})
	names := []string{"web-health", "web-5xx-rate", "web-p99"}
	got, err := d.Alarms(context.Background(), alarmsTarget(region, names...), names)
	if err != nil {
		t.Fatal(err)
	}
	var gotNames []string
	for _, a := range got {
		gotNames = append(gotNames, a.Name+"="+a.State)
	}
	if want := []string{"web-health=ALARM", "web-5xx-rate=ALARM", "web-p99=OK"}; !slices.Equal(gotNames, want) {
		t.Fatalf("Alarms = %v, want %v", gotNames, want)
	}
	if h := got[0]; !h.Since.Equal(transitioned) || !strings.Contains(h.Reason, "web-5xx-rate transitioned to ALARM") {
		t.Errorf("web-health = %+v, want ALARM since %s", h, transitioned)
	}
	calls := rec.snapshot("DescribeAlarms")
	if len(calls) != 2 || calls[1].JSON["NextToken"] != "page-2" {
		t.Errorf("DescribeAlarms calls = %+v, want a second one with NextToken page-2", calls)
	}
}

// testDenied: a call CloudWatch refuses names the API, the alarms and the
// region, and is not tried again.
func (m *alarmsOnMoto) testDenied(t *testing.T) {
	d, rec := m.driver(t)
	rec.setInject(func(c call) *http.Response {
		if c.Action != "DescribeAlarms" {
			return nil
		}
		return jsonResponse(http.StatusBadRequest, map[string]any{
			"__type":  "AccessDeniedException",
			"message": "User: arn:aws:iam::123456789012:user/shipbot is not authorized to perform: cloudwatch:DescribeAlarms",
		})
	})
	names := []string{"web-5xx-rate", "web-p99"}
	_, err := d.Alarms(context.Background(), alarmsTarget(region, names...), names)
	want := "cloudwatch:DescribeAlarms on alarms web-5xx-rate, web-p99 in us-east-1: "
	var ae *Error
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "not authorized") || !errors.As(err, &ae) || !ae.Permanent() {
		t.Fatalf("Alarms = %v; want a permanent error starting %q", err, want)
	}
	if n := len(rec.snapshot("DescribeAlarms")); n != 1 {
		t.Errorf("%d DescribeAlarms calls, want 1", n)
	}
}

// sameStrings reports whether a JSON array v holds want, in order.
func sameStrings(v any, want []string) bool {
	list, ok := v.([]any)
	if !ok || len(list) != len(want) {
		return false
	}
	for i, x := range list {
		if x != want[i] {
			return false
		}
	}
	return true
}

// TestAlarmHaltsRollout: the aws driver's alarms judge a real rollout
// through the engine. web-old was already in ALARM before the rollout (an
// outage the previous release had too, not held against the new one);
// web-5xx-rate goes into ALARM while the canary bakes. The rollout halts at
// the canary naming web-5xx-rate, and every instance it touched is back on
// the previous release, registered and tagged.
func TestAlarmHaltsRollout(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	f.driver.cloudwatchOptions = awsJSON
	cw := cloudwatch.NewFromConfig(awssdk.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: awssdk.String(f.url),
	}, awsJSON)
	ctx := context.Background()
	setState := func(name string, state cwtypes.StateValue) {
		t.Helper()
		if _, err := cw.SetAlarmState(ctx, &cloudwatch.SetAlarmStateInput{
			AlarmName: awssdk.String(name), StateValue: state, StateReason: awssdk.String("Threshold Crossed: set by the test"),
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"web-old", "web-5xx-rate"} {
		if _, err := cw.PutMetricAlarm(ctx, &cloudwatch.PutMetricAlarmInput{
			AlarmName: awssdk.String(name), Namespace: awssdk.String("AWS/ApplicationELB"), MetricName: awssdk.String("HTTPCode_Target_5XX_Count"),
			Statistic: cwtypes.StatisticSum, Period: awssdk.Int32(60), EvaluationPeriods: awssdk.Int32(1),
			Threshold: awssdk.Float64(5), ComparisonOperator: cwtypes.ComparisonOperatorGreaterThanThreshold,
		}); err != nil {
			t.Fatal(err)
		}
	}
	setState("web-old", cwtypes.StateValueAlarm)
	time.Sleep(5 * time.Millisecond) // moto's timestamps are to the millisecond

	env := f.target.Environment
	env.AWS.Alarms = []string{"web-old", "web-5xx-rate"}
	env.Analysis = &repoconfig.Analysis{Interval: 50 * time.Millisecond, MinRequests: 20, MaxErrorRate: 0.01}
	env.Rollout.Bake = 2 * time.Second

	var fired, judged int
	res, log := f.rollout(func(e deploy.Event) {
		switch {
		case e.Kind == deploy.Baking && e.Batch == 0 && fired == 0:
			fired++
			setState("web-5xx-rate", cwtypes.StateValueAlarm)
		case e.Kind == deploy.Judged:
			judged++
		}
	})
	if c := res.Reason.Cause; res.Outcome != deploy.OutcomeFailure || c == nil || c.Kind != record.ReasonAlarmFiring || c.Text != "web-5xx-rate" {
		t.Fatalf("outcome %s (%+v), want a failure for web-5xx-rate in ALARM\n%s", res.Outcome, res.Reason, log)
	}
	t.Logf("halted after %d judgements: %s", judged, report.Reason(res.Reason))
	if got := report.Reason(res.Reason); !strings.Contains(got, "web-5xx-rate") || strings.Contains(got, "web-old") {
		t.Errorf("reason %q, want web-5xx-rate named and not web-old", got)
	}
	if got, want := sorted(res.RolledBack), f.ids[:1]; !slices.Equal(got, want) {
		t.Errorf("rolled back %v, want the canary %v\n%s", got, want, log)
	}
	installs := f.installs(t)
	for _, id := range f.ids[1:] {
		if len(installs[id]) != 0 {
			t.Errorf("instance %s was installed after the canary halted: %q", id, installs[id])
		}
	}
	f.assertAllOn(t, oldSHA)
}
