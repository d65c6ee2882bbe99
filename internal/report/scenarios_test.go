package report

import (
	"fmt"
	"time"
)

// The world the scenarios share: a 12-instance production in two zones,
// planned canary 1 then batches, and a release replacing another.
const (
	newSHA  = "abc1234f9e8d7c6b5a4938271605f4e3d2c1b0a9"
	oldSHA  = "def5678a1b2c3d4e5f60718293a4b5c6d7e8f901"
	nextSHA = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d"
	envURL  = "https://example.com"
	logURL  = "https://bot.example.com/deploys/42"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func ids(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("production-%d", i))
	}
	return out
}

// fleet is the 4-batch plan of the 12 instances, each batch in state st[i]
// (pending beyond st), with times for the batches that began.
func fleet(st ...BatchState) []Batch {
	bs := []Batch{
		{Index: 0, Canary: true, Zone: "us-east-1a", Instances: ids(1, 1)},
		{Index: 1, Zone: "us-east-1a", Instances: ids(2, 6)},
		{Index: 2, Zone: "us-east-1b", Instances: ids(7, 9)},
		{Index: 3, Zone: "us-east-1b", Instances: ids(10, 12)},
	}
	start := t0
	for i := range bs {
		bs[i].State = BatchPending
		if i < len(st) {
			bs[i].State = st[i]
		}
		if bs[i].State == BatchPending {
			continue
		}
		bs[i].Started = start
		if st[i] != BatchDraining && st[i] != BatchInstalling && st[i] != BatchChecking && st[i] != BatchAdmitting && st[i] != BatchBaking && st[i] != BatchRollingBack {
			d := []time.Duration{41 * time.Second, 63 * time.Second, 58*time.Second + 400*time.Millisecond, 70 * time.Second}[i]
			bs[i].Finished = start.Add(d)
			start = bs[i].Finished
		}
	}
	return bs
}

// berlinWeekend is a push on Friday evening held by the weekend freeze.
var berlinWeekend = HeldFreeze{
	Window: "Fri 16:00 - Mon 08:00 Europe/Berlin", Zone: "Europe/Berlin",
	Since: time.Date(2026, 3, 6, 17, 30, 0, 0, time.UTC), Until: time.Date(2026, 3, 9, 7, 0, 0, 0, time.UTC),
}

// production is a push of newSHA to production by alice; with modifies it.
func production(with func(*Deploy)) Deploy {
	d := Deploy{
		Env: "production", SHA: newSHA, Ref: "main", Creator: "alice", Kind: KindPush,
		EnvironmentURL: envURL, LogURL: logURL, Total: 12, Previous: oldSHA,
	}
	with(&d)
	return d
}

// deployScenarios are the deploys rendered to testdata/deploy/NAME.golden.
var deployScenarios = []struct {
	name string
	d    Deploy
}{
	{"queued", production(func(d *Deploy) { d.State = StateQueued })},
	{"waiting-for-checks", production(func(d *Deploy) {
		d.State, d.WaitingOn = StateWaitingForChecks, []string{"build", "test"}
	})},
	{"frozen", production(func(d *Deploy) {
		d.State, d.Frozen = StateFrozen, &berlinWeekend
	})},
	{"frozen-waiting-for-checks", production(func(d *Deploy) {
		d.State, d.Frozen, d.WaitingOn = StateFrozen, &berlinWeekend, []string{"build", "test"}
	})},
	{"locked", production(func(d *Deploy) {
		d.State, d.LockedBy, d.LockReason = StateLocked, "alice", "release freeze"
	})},
	{"superseded", production(func(d *Deploy) { d.State, d.SupersededBy = StateSuperseded, nextSHA })},
	{"planning", production(func(d *Deploy) { d.State, d.StartedAt = StateInProgress, t0 })},
	{"canary-running", production(func(d *Deploy) {
		d.State, d.StartedAt, d.Batches = StateInProgress, t0, fleet(BatchInstalling)
		d.Notes = []string{"The canary is production-1, alone in its batch (rollout.canary: 1)."}
	})},
	{"batch-3-of-4-running", production(func(d *Deploy) {
		d.State, d.StartedAt, d.Done = StateInProgress, t0, 6
		d.Batches = fleet(BatchDone, BatchDone, BatchChecking)
		d.Notes = []string{
			"Batch 2 holds 5 instances: the rest of zone us-east-1a (by_zone: true).",
			"No batch takes out more than 25% (max_unavailable).",
		}
	})},
	{"success", production(func(d *Deploy) {
		d.State, d.Done, d.StartedAt, d.FinishedAt = StateSuccess, 12, t0, at(4*time.Minute+12*time.Second)
		d.Batches = fleet(BatchDone, BatchDone, BatchDone, BatchDone)
	})},
	{"failure-canary-rolled-back", production(func(d *Deploy) {
		d.State, d.StartedAt, d.FinishedAt = StateFailure, t0, at(2*time.Minute+31*time.Second)
		d.Batches = fleet(BatchRolledBack)
		d.Reason, d.FailedInstance = "health checks timed out after 2m (503)", "production-1"
		d.RolledBack = ids(1, 1)
	})},
	{"failure-batch-3-rolled-back", production(func(d *Deploy) {
		d.State, d.StartedAt, d.FinishedAt = StateFailure, t0, at(6*time.Minute+5*time.Second)
		d.Batches = fleet(BatchRolledBack, BatchRolledBack, BatchRolledBack)
		d.Reason, d.FailedInstance = "production-8 failed /healthz", "production-8"
		d.RolledBack = append(ids(7, 9), ids(1, 6)...)
	})},
	{"failure-rollback-incomplete", production(func(d *Deploy) {
		d.State, d.StartedAt, d.FinishedAt, d.Done = StateFailure, t0, at(5*time.Minute), 6
		d.Batches = fleet(BatchRolledBack, BatchFailed, BatchRolledBack)
		d.Reason, d.FailedInstance = "production-8: install exited 1", "production-8"
		d.RolledBack = append(ids(7, 9), ids(1, 1)...)
	})},
	{"rolling-back", production(func(d *Deploy) {
		d.State, d.StartedAt, d.Done = StateInProgress, t0, 6
		d.Batches = fleet(BatchRollingBack, BatchRollingBack, BatchFailed)
		d.Reason, d.FailedInstance = "production-8 failed /healthz", "production-8"
	})},
	{"error-before-touching", production(func(d *Deploy) {
		d.State, d.StartedAt, d.FinishedAt, d.Total = StateError, t0, at(850*time.Millisecond), 1
		d.Reason = "the rollout would leave no instance serving: 1 instance, and the aws driver cannot start another first"
	})},
	{"cancelled", production(func(d *Deploy) {
		d.State, d.StartedAt, d.FinishedAt, d.Done = StateCancelled, t0, at(2*time.Minute), 6
		d.Batches = fleet(BatchDone, BatchDone, BatchInstalling)
		d.Reason = "the worker shut down"
	})},
	{"forty-batches", production(func(d *Deploy) {
		d.State, d.StartedAt, d.Total = StateInProgress, t0, 160
		for i := range 40 {
			n := 4
			if i == 0 {
				n = 1
			}
			b := Batch{Index: i, Canary: i == 0, Zone: []string{"us-east-1a", "us-east-1b"}[i*2/40], State: BatchPending}
			for j := range n {
				b.Instances = append(b.Instances, fmt.Sprintf("web-%02d-%d", i, j))
			}
			if i < 25 {
				b.State, b.Started, b.Finished = BatchDone, at(time.Duration(i)*time.Minute), at(time.Duration(i)*time.Minute+55*time.Second)
				d.Done += n
			} else if i == 25 {
				b.State, b.Started = BatchBaking, at(25*time.Minute)
			}
			d.Batches = append(d.Batches, b)
		}
	})},
	{"inactive-replaced", production(func(d *Deploy) {
		d.State, d.SupersededBy, d.Done = StateInactive, nextSHA, 12
		d.StartedAt, d.FinishedAt = t0, at(4*time.Minute+12*time.Second)
		d.Batches = fleet(BatchDone, BatchDone, BatchDone, BatchDone)
	})},
	{"rollback-command-success", Deploy{
		Env: "production", SHA: oldSHA, Ref: oldSHA, Creator: "bob", PR: 57, Kind: KindRollback, State: StateSuccess,
		EnvironmentURL: envURL, LogURL: logURL, Total: 12, Done: 12, Previous: newSHA,
		Batches: fleet(BatchDone, BatchDone, BatchDone, BatchDone), StartedAt: t0, FinishedAt: at(3*time.Minute + 59*time.Second),
	}},
	{"comment-deploy-staging", Deploy{
		Env: "staging", SHA: newSHA, Ref: "feature/search", Creator: "carol", PR: 42, Kind: KindComment, State: StateInProgress,
		EnvironmentURL: "http://localhost:3000/env/staging/", LogURL: logURL, Total: 2, Done: 1, Previous: oldSHA,
		Batches: []Batch{
			{Index: 0, Canary: true, Zone: "local", Instances: []string{"staging-1"}, State: BatchDone, Started: t0, Finished: at(850 * time.Millisecond)},
			{Index: 1, Zone: "local", Instances: []string{"staging-2"}, State: BatchAdmitting, Started: at(850 * time.Millisecond)},
		},
		StartedAt: t0,
	}},
	{"preview-deploy-ready", Deploy{
		Env: "pr-42", SHA: newSHA, Ref: "feature/search", Creator: "carol", PR: 42, Kind: KindPreview, State: StateSuccess,
		EnvironmentURL: "https://pr-42.preview.example.com", LogURL: logURL, Total: 1, Done: 1,
		Batches:   []Batch{{Index: 0, Canary: true, Instances: []string{"pr-42-1"}, State: BatchDone, Started: t0, Finished: at(38 * time.Second)}},
		StartedAt: t0, FinishedAt: at(38 * time.Second),
	}},
	{"preview-deploy-torn-down", Deploy{
		Env: "pr-42", SHA: newSHA, Ref: "feature/search", Creator: "carol", PR: 42, Kind: KindPreview, State: StateInactive,
		EnvironmentURL: "https://pr-42.preview.example.com", LogURL: logURL, Total: 1, Done: 1,
	}},
}

// previewScenarios are the previews rendered to testdata/preview/NAME.golden.
var previewScenarios = []struct {
	name string
	p    Preview
}{
	{"building-first", Preview{SHA: newSHA, State: PreviewBuilding, LogURL: logURL, UpdatedAt: t0}},
	{"building", Preview{SHA: nextSHA, URL: "https://pr-42.preview.example.com", State: PreviewBuilding, LogURL: logURL, UpdatedAt: at(time.Hour)}},
	{"ready", Preview{SHA: newSHA, URL: "https://pr-42.preview.example.com", State: PreviewReady, LogURL: logURL, UpdatedAt: at(38 * time.Second)}},
	{"failed", Preview{SHA: newSHA, URL: "https://pr-42.preview.example.com", State: PreviewFailed, LogURL: logURL, Reason: "build failed: go build exited 1 (main.go:12: undefined: serve)", UpdatedAt: at(2 * time.Minute)}},
	{"torn-down", Preview{SHA: newSHA, URL: "https://pr-42.preview.example.com", State: PreviewTornDown, Reason: "the pull request was closed", LogURL: logURL, UpdatedAt: at(48 * time.Hour)}},
}
