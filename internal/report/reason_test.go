package report

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/store/record"
)

// reasonSamples has one reason of every kind the engine emits, with the
// fields its constant says it reads. They render to testdata/reasons.golden.
var reasonSamples = map[record.ReasonKind]record.Reason{
	record.ReasonNoInstances:              {},
	record.ReasonNoRelease:                {},
	record.ReasonInstanceWithoutID:        {Zone: "us-east-1a"},
	record.ReasonInstanceTwice:            {Instance: "production-3"},
	record.ReasonCanaryInvalid:            {Want: -1},
	record.ReasonCanaryOverMaxUnavailable: {Want: 3, Limit: 2, Of: 8},
	record.ReasonNoneLeftServing:          {Count: 2},

	record.ReasonNoteBatchesCapped:  {Limit: 2, Want: 4, Of: 8},
	record.ReasonNoteAllCurrent:     {Of: 2, Release: newSHA},
	record.ReasonNoteNothingServing: {},
	record.ReasonNoteBrokenFirst:    {Count: 3},
	record.ReasonNoteZoneFirst:      {Zone: "us-east-1b", InsteadOf: "us-east-1a"},
	record.ReasonNoteCanaryCapped:   {Zone: "", Count: 1, Want: 2},
	record.ReasonNoteSurge:          {Batch: 0, Canary: true, Release: newSHA, Instances: []string{"web-1"}},

	record.ReasonNoEnvironment:        {},
	record.ReasonNoDriver:             {Env: "production"},
	record.ReasonSettingEmpty:         {Env: "production", Setting: "health.path"},
	record.ReasonSettingNotPositive:   {Env: "production", Setting: "health.interval", Duration: 0},
	record.ReasonSettingBelowOne:      {Env: "production", Setting: "health.healthy_after", Count: 0},
	record.ReasonSettingNegative:      {Env: "production", Setting: "rollout.bake", Duration: -time.Second},
	record.ReasonCancelledBeforeStart: {},
	record.ReasonListFailed:           {Env: "production", Err: "dial unix /run/shipbot/local.sock: connection refused"},
	record.ReasonBuildCancelled:       {Release: newSHA},
	record.ReasonBuildFailed:          {Release: newSHA, Err: "go build -o app .: exit status 1"},
	record.ReasonSecretMissing:        {Repo: "octo-org/web", Env: "production", Text: "DATABASE_URL"},
	record.ReasonSecretUnreadable:     {Repo: "octo-org/web", Env: "production", Text: "DATABASE_URL", Err: "it no longer decrypts: SECRETS_KEY changed since it was set; set it again with `bot secrets set octo-org/web production DATABASE_URL`"},
	record.ReasonReleasePhaseFailed:   {Release: newSHA, Setting: "app.release", Duration: 15 * time.Minute, Err: "./app migrate: exit status 1"},

	record.ReasonAlreadyCurrent: {Of: 3, Env: "production", Release: newSHA},
	record.ReasonDeployed:       {Release: newSHA, Of: 4, Env: "production", Count: 2},
	record.ReasonBatchFailed: {Batch: 2, Cause: &record.Reason{Kind: record.ReasonInstallFailed, Instance: "production-8", Release: newSHA,
		Err: "production-8: install script exited with status 1"}},
	record.ReasonCancelledDuring: {Batch: 1, Step: "install", Release: newSHA},

	record.ReasonHealthTimeout: {Instance: "production-1", Path: "/healthz", Want: 2, Duration: 2 * time.Minute, Release: newSHA,
		Err: "GET /healthz: 503 Service Unavailable"},
	record.ReasonConfirmFailed:    {Instance: "production-1", Path: "/healthz", Release: newSHA, Err: "GET /healthz: 502 Bad Gateway"},
	record.ReasonBakeFailed:       {Instance: "production-2", Path: "/healthz", Elapsed: 4 * time.Second, Duration: 30 * time.Second, Release: newSHA, Err: "GET /healthz: 500 Internal Server Error"},
	record.ReasonSurgeFailed:      {Release: newSHA, Err: "surge-1 did not turn healthy: GET /healthz: 503 Service Unavailable"},
	record.ReasonSurgeUnsupported: {Release: newSHA},
	record.ReasonDrainFailed:      {Instance: "production-2", Err: "production-2: deregistering from rotation timed out"},
	record.ReasonInstallFailed:    {Instance: "production-3", Release: newSHA, Cause: &record.Reason{Kind: record.ReasonDriverPanicked, Instance: "production-3", Text: "index out of range"}},
	record.ReasonAdmitFailed:      {Instance: "production-1", Release: newSHA, Err: "production-1: target did not turn healthy in rotation"},
	record.ReasonStepStopped:      {Step: "bake", Release: newSHA, Err: "context canceled"},
	record.ReasonStepCancelled:    {Step: "install"},
	record.ReasonDriverPanicked:   {Instance: "production-3", Text: "index out of range"},

	record.ReasonErrorRateHigh: {Release: newSHA, Previous: oldSHA, Value: 0.34, Baseline: ptr(0.002), Bound: 0.01, Count: 212},
	record.ReasonLatencyHigh:   {Release: newSHA, Previous: oldSHA, Value: 0.512, Baseline: ptr(0.0041), Bound: 0.3, Count: 212},
	record.ReasonCheckBroken:   {Text: "checkout errors", Release: newSHA, Previous: oldSHA, Value: 3.25, Baseline: ptr(0.0), Bound: 0.5},
	record.ReasonAlarmFiring: {Text: "web-5xx-rate", Release: newSHA, At: time.Date(2026, 3, 6, 14, 2, 5, 0, time.UTC),
		Err: "Threshold Crossed: 1 datapoint [12.0] was greater than the threshold (5.0)."},
	record.ReasonSourceUnreadable: {Setting: "analysis.prometheus", Text: "checkout errors", URL: "http://prometheus:9090", Count: 3,
		Err: `Post "http://prometheus:9090/api/v1/query": dial tcp 10.0.0.9:9090: connect: connection refused`},

	record.ReasonNothingChanged: {},
	record.ReasonNoEarlierRelease: {Path: "/healthz", Instance: "production-2", Err: "production-2: deregistering from rotation timed out",
		Left: []record.Placement{{Instance: "production-2", Release: newSHA, Failing: true}, {Instance: "production-1", Release: newSHA}}},
	record.ReasonRolledBack:        {Instances: []string{"production-3", "production-2", "production-1"}, Previous: oldSHA},
	record.ReasonRollbackCancelled: {Previous: oldSHA, Path: "/healthz", Left: []record.Placement{{Instance: "production-2", Lost: true, Out: true}, {Instance: "production-1", Release: newSHA}}},
	record.ReasonRollbackBuildFailed: {Previous: oldSHA, Err: "go build -o app .: exit status 1", Path: "/healthz",
		Left: []record.Placement{{Instance: "production-2", Release: newSHA, Out: true}, {Instance: "production-3", Lost: true}, {Instance: "production-4"}}},
	record.ReasonRollbackFailed: {Previous: oldSHA, Batch: 1, Path: "/healthz",
		Cause: &record.Reason{Kind: record.ReasonDrainFailed, Instance: "production-2", Err: "production-2: deregistering from rotation timed out"},
		Left:  []record.Placement{{Instance: "production-2", Release: oldSHA}, {Instance: "production-1", Release: newSHA}}},
	record.ReasonSurgeLeft:    {Batch: 0, Canary: true, Instances: []string{"surge-1", "surge-2"}, Release: newSHA},
	record.ReasonRetireFailed: {Instance: "surge-1", Err: "surge-1: process did not exit"},

	record.ReasonBuilding:      {Release: newSHA},
	record.ReasonReleasePhase:  {Release: newSHA, Setting: "app.release", Text: "./app migrate"},
	record.ReasonBatchStarting: {Batch: 1, Instances: []string{"production-2", "production-3"}, Release: newSHA},
	record.ReasonSurged:        {Batch: 0, Canary: true, Instance: "surge-1", Release: newSHA},
	record.ReasonRollingBack:   {Instances: []string{"production-2", "production-1"}, Previous: oldSHA},
	record.ReasonNotJudged:     {Batch: 0, Canary: true, Release: newSHA, Count: 12, Want: 20},
	record.ReasonJudged:        {Batch: 1, Release: newSHA, Count: 480, Value: 0.0021, Duration: 4100 * time.Microsecond},

	record.ReasonDriftFound: {Env: "production", Release: newSHA, Found: []record.Placement{{Instance: "i-0abc"}, {Instance: "i-0def", Release: oldSHA}}},
	record.ReasonRepaired:   {Env: "production", Release: newSHA, Found: []record.Placement{{Instance: "i-0abc"}}},
	record.ReasonRepairFailed: {Env: "production", Release: newSHA, Found: []record.Placement{{Instance: "i-0abc"}},
		Cause: &record.Reason{Kind: record.ReasonBatchFailed, Canary: true,
			Cause: &record.Reason{Kind: record.ReasonInstallFailed, Instance: "i-0abc", Release: newSHA, Err: "install of abc1234 ended Failed (exit code 3)"},
			Then:  []record.Reason{{Kind: record.ReasonRepairLeftOut, Path: "/healthz", Duration: 30 * time.Minute, Left: []record.Placement{{Instance: "i-0abc", Lost: true, Out: true}}}}}},
	record.ReasonRepairLeftOut: {Path: "/healthz", Duration: 30 * time.Minute, Instance: "i-0abc", Err: "i-0abc: deregistering timed out",
		Left: []record.Placement{{Instance: "i-0abc", Release: newSHA, Failing: true}}},

	record.ReasonWaitingForChecks: {Checks: []string{"ci/test", "lint"}},
	record.ReasonLocked:           {By: "alice", Text: "incident 42"},
	record.ReasonSuperseded:       {Release: nextSHA},
	record.ReasonText:             {Text: "required check lint failed on abc1234"},

	record.ReasonFrozen: {Text: "Fri 16:00 - Mon 08:00 Europe/Berlin", TimeZone: "Europe/Berlin",
		At: time.Date(2026, 3, 6, 17, 30, 0, 0, time.UTC), Until: time.Date(2026, 3, 9, 7, 0, 0, 0, time.UTC), Checks: []string{"ci/test"}},
}

// TestEveryReasonKindIsPhrased: every kind the engine can emit has its own
// phrasing — not the fallback for kinds this version does not know — and
// no phrasing is left for a kind the engine does not declare.
func TestEveryReasonKindIsPhrased(t *testing.T) {
	kinds := record.ReasonKinds()
	for _, kind := range kinds {
		if _, ok := phrasings[kind]; !ok {
			t.Errorf("%s has no phrasing: add it to phrasings", kind)
			continue
		}
		sample, ok := reasonSamples[kind]
		if !ok {
			t.Errorf("%s has no sample in reasonSamples", kind)
			continue
		}
		sample.Kind = kind
		got := Reason(sample)
		if got == "" || got == strings.ReplaceAll(string(kind), "_", " ") || strings.Contains(got, "%!") {
			t.Errorf("%s is said %q", kind, got)
		}
		if !known(sample) {
			t.Errorf("%s: a reason within it is not known", kind)
		}
	}
	for kind := range phrasings {
		if !slices.Contains(kinds, kind) {
			t.Errorf("phrasing for %s, which record.ReasonKinds does not list", kind)
		}
	}
	for kind := range reasonSamples {
		if !slices.Contains(kinds, kind) {
			t.Errorf("sample of %s, which record.ReasonKinds does not list", kind)
		}
	}
}

// A failure as the engine builds it: the failed batch, what came of it,
// and what went wrong on the way.
var failedRollout = record.Reason{
	Kind: record.ReasonBatchFailed, Batch: 0, Canary: true,
	Cause: &record.Reason{Kind: record.ReasonHealthTimeout, Instance: "production-1", Path: "/healthz", Want: 2,
		Duration: 2 * time.Minute, Release: newSHA, Count: 1},
	Then: []record.Reason{
		{Kind: record.ReasonRolledBack, Instances: []string{"production-1"}, Previous: oldSHA},
		{Kind: record.ReasonSurgeLeft, Canary: true, Instances: []string{"surge-1"}, Release: newSHA},
		{Kind: record.ReasonRetireFailed, Instance: "surge-1", Err: "surge-1: process did not exit"},
	},
}

// TestReasonGolden: every kind, then a whole failure, as people read them.
func TestReasonGolden(t *testing.T) {
	var b bytes.Buffer
	for _, kind := range record.ReasonKinds() {
		sample := reasonSamples[kind]
		sample.Kind = kind
		fmt.Fprintf(&b, "%s: %s\n", kind, Reason(sample))
	}
	fmt.Fprintf(&b, "\nfailed rollout: %s\n", Reason(failedRollout))
	golden(t, "reasons.golden", b.Bytes())
}

func TestRecordedReasons(t *testing.T) {
	why := failedRollout
	tests := []struct {
		name string
		d    record.Deploy
		want string
	}{
		{"said again from the data", record.Deploy{Why: &why, Reason: "older words"}, Reason(failedRollout)},
		{"a record written before reasons were data", record.Deploy{Reason: "batch 2: instance i-2 failed /healthz"}, "batch 2: instance i-2 failed /healthz"},
		{"a kind of a newer version", record.Deploy{Why: &record.Reason{Kind: "error_rate", Then: why.Then}, Reason: "error rate 34% on abc1234"}, "error rate 34% on abc1234"},
		{"a newer kind within a known one", record.Deploy{Why: &record.Reason{Kind: record.ReasonBatchFailed, Cause: &record.Reason{Kind: "error_rate"}}, Reason: "batch 1: error rate"}, "batch 1: error rate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := DeployReason(tt.d); got != tt.want {
				t.Errorf("DeployReason = %q, want %q", got, tt.want)
			}
			b := record.BatchTiming{Err: tt.d.Reason, Failure: tt.d.Why}
			if got := BatchFailure(b); got != tt.want {
				t.Errorf("BatchFailure = %q, want %q", got, tt.want)
			}
		})
	}
	if got := Reason(record.Reason{Kind: "error_rate_broken"}); got != "error rate broken" {
		t.Errorf("an unknown kind is said %q", got)
	}
}
