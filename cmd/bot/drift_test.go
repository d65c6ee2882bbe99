package main

import (
	"encoding/json"
	"html"
	"strings"
	"testing"
	"time"
)

// TestDriftSweepLocal: production runs v1 on 2 local instances; the
// configuration on main then asks for 3. The third instance has never run
// a release, which is drift: the bot's own sweep brings it to v1 through
// Engine.Repair, says so in the audit log and on the dashboard, and
// creates no GitHub deployment.
func TestDriftSweepLocal(t *testing.T) {
	t.Parallel()
	f := newDeployFixtureEnv(t, map[string]string{"DASHBOARD_TOKEN": dashboardToken}, withDriftSweep(200*time.Millisecond))
	config := func(n string) string {
		return "environments:\n  production:\n    instances: " + n + "\n    rollout:\n      canary: 1\n      batch: 1\n      max_unavailable: 1\n      bake: 0s" +
			"\n    health:\n      interval: 100ms\n      healthy_after: 1\n      timeout: 20s\n"
	}
	sha := releaseSHA(1)
	pushWith(t, f.srv, f.bot, "d-1", strings.Repeat("0", 40), sha, "v1", config("2"))
	if d := f.finished(t, sha); d.LastState() != "success" {
		t.Fatalf("first deploy: %v", states(d))
	}
	deployments := deploymentCount(f.srv)

	f.srv.SetFile(deployOwner, deployRepo, sha, ".github/shipbot.yml", []byte(config("3")))
	var repaired struct{ Action, Outcome, Actor, Environment, Text, Link string }
	deadline := time.Now().Add(90 * time.Second)
	for repaired.Action == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no drift.repaired entry within 90s\n%s", f.bot.logs)
		}
		time.Sleep(200 * time.Millisecond)
		jsonl := dashboardGet(t, f.bot.url+"/audit.jsonl?repo="+deployOwner+"/"+deployRepo)
		for _, line := range strings.Split(strings.TrimSpace(jsonl), "\n") {
			var e struct{ Action, Outcome, Actor, Environment, Text, Link string }
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("audit.jsonl line %q: %v", line, err)
			}
			if e.Action == "drift.repaired" {
				repaired = e
			}
		}
	}
	want := "repaired production-3 (from no release) to " + sha[:7] + ", production's current release"
	if repaired.Outcome != "success" || repaired.Actor != "shipbot" || repaired.Environment != "production" || repaired.Text != want {
		t.Fatalf("audit entry %+v\nwant text %q", repaired, want)
	}
	id := strings.TrimPrefix(repaired.Link, "https://shipbot.example.com/deploys/")
	shown := html.EscapeString(want)
	if page := dashboardGet(t, f.bot.url+"/deploys/"+id); !strings.Contains(page, shown) || !strings.Contains(page, "repair") {
		t.Errorf("the repair's page does not say what it did:\n%s", page)
	}
	if home := dashboardGet(t, f.bot.url+"/"); !strings.Contains(home, shown) {
		t.Errorf("the dashboard home does not show the repair:\n%s", home)
	}
	if n := deploymentCount(f.srv); n != deployments {
		t.Errorf("%d GitHub deployments after the repair, want %d: a repair deploys nothing", n, deployments)
	}
}
