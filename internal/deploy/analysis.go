package deploy

import (
	"context"
	"time"
)

// Traffic is what one release of an environment answered over a window,
// as a TrafficMeter measured it (SPEC §6.8).
type Traffic struct {
	Requests int64         // requests sent to the release's instances, answered or not
	Errors   int64         // of Requests, 5xx answers and failed requests (no answer, reset, timeout)
	P99      time.Duration // the 99th percentile time to the answer's headers; 0 with no requests
}

// ErrorRate is Errors over Requests; 0 with no requests.
func (t Traffic) ErrorRate() float64 {
	if t.Requests == 0 {
		return 0
	}
	return float64(t.Errors) / float64(t.Requests)
}

// TrafficMeter is implemented by drivers that measure each release's
// traffic themselves (local: its proxy). Drivers without it skip the
// error-rate and p99 limits of analysis.
type TrafficMeter interface {
	// Traffic is what the environment's instances running release
	// answered between from (inclusive) and to (exclusive). A window with
	// no requests is a zero Traffic, not an error.
	Traffic(ctx context.Context, t Target, release string, from, to time.Time) (Traffic, error)
}

// Alarm is one CloudWatch alarm's state.
type Alarm struct {
	Name   string
	State  string    // OK, ALARM or INSUFFICIENT_DATA
	Since  time.Time // when it entered State
	Reason string    // the state reason CloudWatch gives
}

// AlarmState values.
const (
	AlarmOK               = "OK"
	AlarmFiring           = "ALARM"
	AlarmInsufficientData = "INSUFFICIENT_DATA"
)

// AlarmWatcher is implemented by drivers that can read an environment's
// alarms (aws: aws.alarms through CloudWatch DescribeAlarms).
type AlarmWatcher interface {
	// Alarms returns the state of each named alarm, in the order of names;
	// a name with no alarm is an error that names it.
	Alarms(ctx context.Context, t Target, names []string) ([]Alarm, error)
}

// Querier evaluates a PromQL expression against the Prometheus at url, at
// the instant at, and returns its one number. A result that is not one
// number (an empty vector, several series, NaN) is an error that says so.
type Querier interface {
	Query(ctx context.Context, url, query string, at time.Time) (float64, error)
}
