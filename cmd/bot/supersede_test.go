package main

import (
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/githubtest"
)

const shaV4 = "4444444444444444444444444444444444444444"

// TestQuickPushesSupersede: two pushes while a rollout runs queue behind
// it; the newer supersedes the older (inactive, with the reason), the
// running one is not interrupted, and the newest deploys (SPEC §6.4).
func TestQuickPushesSupersede(t *testing.T) {
	t.Parallel()
	f := newDeployFixture(t)
	logs := func() string { return f.bot.logs.String() }

	f.config = rolloutConfig("0s")
	f.push(t, "push-1", "0000000000000000000000000000000000000000", shaV1, "v1", true)
	d1 := f.finished(t, shaV1)
	if d1.LastState() != "success" {
		t.Fatalf("v1: statuses %v\n%s", states(d1), logs())
	}
	url := d1.Statuses[len(d1.Statuses)-1].EnvironmentURL

	// v2 bakes 2s after each of its 4 batches: some 8s of rollout.
	f.config = rolloutConfig("2s")
	f.push(t, "push-2", shaV1, shaV2, "v2", true)
	waitDeployment(t, f.srv, shaV2, 30*time.Second, logs, func(d githubtest.Deployment) bool { return d.LastState() == "in_progress" })

	// v3, then v4 once v3's job has queued its deploy, both while v2 runs.
	f.push(t, "push-3", shaV2, shaV3, "v3", true)
	eventually(t, "the job of push-3 did not finish", func() bool {
		return len(f.bot.logs.lines(`"delivery":"push-3"`, `"msg":"job done"`)) == 1
	})
	f.push(t, "push-4", shaV3, shaV4, "v4", true)
	eventually(t, "the job of push-4 did not finish", func() bool {
		return len(f.bot.logs.lines(`"delivery":"push-4"`, `"msg":"job done"`)) == 1
	})
	if d2, _ := deploymentOf(f.srv, shaV2); d2.LastState() != "in_progress" {
		t.Fatalf("v2 was no longer running when v3 and v4 were queued (statuses %v): the test did not exercise a queue", states(d2))
	}

	d3 := waitDeployment(t, f.srv, shaV3, 10*time.Second, logs, func(d githubtest.Deployment) bool { return d.LastState() == "inactive" })
	if got := strings.Join(states(d3), ","); got != "queued,inactive" {
		t.Errorf("v3 statuses %s, want queued,inactive", got)
	}
	desc := d3.Statuses[len(d3.Statuses)-1].Description
	t.Logf("v3 superseded: %q", desc)
	if !strings.Contains(strings.ToLower(desc), "superseded") || !strings.Contains(desc, shaV4[:7]) {
		t.Errorf("v3's inactive status %q does not say it was superseded by %s", desc, shaV4[:7])
	}

	d2 := f.finished(t, shaV2)
	if got := strings.Join(states(d2), ","); got != "queued,in_progress,success" {
		t.Errorf("v2 statuses %s, want queued,in_progress,success (not interrupted)\n%s", got, logs())
	}
	d4 := f.finished(t, shaV4)
	if got := strings.Join(states(d4), ","); got != "queued,in_progress,success" {
		t.Fatalf("v4 statuses %s, want queued,in_progress,success\n%s", got, logs())
	}
	if !d4.Statuses[1].CreatedAt.IsZero() && d4.Statuses[1].CreatedAt.Before(d2.Statuses[len(d2.Statuses)-1].CreatedAt) {
		t.Errorf("v4 started before v2 finished")
	}
	if seen := versionsServed(t, url, 20); len(seen) != 1 || firstKey(seen) != "sample-app v4" {
		t.Errorf("production serves %v after v4, want only sample-app v4", seen)
	}
}
