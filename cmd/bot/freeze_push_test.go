package main

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/githubtest"
)

// testClock is the bot's clock in a test: real time moved by an offset the
// test sets, so the bot can be placed just before a freeze window closes
// while its timers still run in real time.
type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// set makes the clock read t now.
func (c *testClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset = time.Until(t)
}

// TestFreezeHoldsPushes: with production frozen over the weekend (Berlin
// time), a push on Monday morning before 08:00 is held — a GitHub
// deployment whose queued status says until when — and a second push
// supersedes it at once. When the window closes the newest deploys, and
// only it, on time: the bot's clock is set a few seconds before Monday
// 08:00, so the deploy starting well before the minute's sweep shows the
// wake-up at the window's end did it.
func TestFreezeHoldsPushes(t *testing.T) {
	t.Parallel()
	clock := &testClock{}
	f := newDeployFixture(t, withClock(clock.now))
	f.config = "environments:\n  production:\n    instances: 2\n    require_checks: none\n" +
		"    health:\n      interval: 100ms\n      healthy_after: 1\n" +
		"    freeze:\n      - Fri 16:00 - Mon 08:00 Europe/Berlin\n"
	logs := func() string { return f.bot.logs.String() }
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	closes := time.Date(2026, time.March, 9, 8, 0, 0, 0, berlin) // a Monday, on winter time
	const held = "Frozen until Mon 08:00 CET (Europe/Berlin)"
	const lead = 8 * time.Second
	clock.set(closes.Add(-lead))
	closesAt := time.Now().Add(lead) // the real moment the bot's clock reads Monday 08:00

	f.push(t, "push-1", "0000000000000000000000000000000000000000", shaV1, "v1", true)
	d1 := f.waitState(t, shaV1, "queued")
	if got := d1.Statuses[0].Description; got != held {
		t.Fatalf("held push's status %q, want %q", got, held)
	}
	if cr := f.checkRun(t, shaV1, "shipbot/production"); cr.Status != "queued" || cr.Title != held {
		t.Fatalf("held push's check run: %s %q", cr.Status, cr.Title)
	}

	f.push(t, "push-2", shaV1, shaV2, "v2", true)
	d1 = waitDeployment(t, f.srv, shaV1, 5*time.Second, logs, func(d githubtest.Deployment) bool { return d.LastState() == "inactive" })
	if got := strings.Join(states(d1), ","); got != "queued,inactive" {
		t.Fatalf("v1 statuses %s, want queued,inactive", got)
	}
	if desc := d1.Statuses[1].Description; desc != "Superseded by "+shaV2[:7] {
		t.Errorf("v1's inactive status %q does not say it was superseded by %s", desc, shaV2[:7])
	}
	d2 := f.waitState(t, shaV2, "queued")
	if got := d2.Statuses[0].Description; got != held {
		t.Fatalf("second held push's status %q, want %q", got, held)
	}
	if time.Now().After(closesAt) {
		t.Fatalf("the pushes took longer than the %s before the window closed: the test saw nothing held", lead)
	}
	// Still held: nothing started while the window was open.
	if d, _ := deploymentOf(f.srv, shaV2); len(d.Statuses) != 1 {
		t.Fatalf("v2 moved while frozen: %v", states(d))
	}

	d2 = f.finished(t, shaV2)
	if got := strings.Join(states(d2), ","); got != "queued,in_progress,success" {
		t.Fatalf("v2 statuses %s, want queued,in_progress,success\n%s", got, logs())
	}
	started := d2.Statuses[1].CreatedAt
	if started.Before(closesAt.Add(-time.Second)) || started.After(closesAt.Add(10*time.Second)) {
		t.Errorf("v2 started %s after the window closed, want at once", started.Sub(closesAt))
	} else {
		t.Logf("v2 started %s after the window closed", started.Sub(closesAt).Round(time.Millisecond))
	}
	if d, _ := deploymentOf(f.srv, shaV1); strings.Join(states(d), ",") != "queued,inactive" {
		t.Errorf("v1 statuses %v after the window: the superseded push ran", states(d))
	}
	if body := getBody(t, d2.Statuses[len(d2.Statuses)-1].EnvironmentURL); !strings.Contains(body, "sample-app v2") {
		t.Errorf("production serves %q, want v2", body)
	}
}
