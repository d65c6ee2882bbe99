package handlers

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/worker"
	"github.com/shipbot/shipbot/queue"
)

type deployer struct {
	reqs           []deploy.Request
	passed, failed []string
}

func (d *deployer) Deploy(_ context.Context, r deploy.Request) error {
	d.reqs = append(d.reqs, r)
	return nil
}

func (d *deployer) ChecksPassed(_ context.Context, _ deploy.Target, id string) error {
	d.passed = append(d.passed, id)
	return nil
}

func (d *deployer) ChecksFailed(_ context.Context, _ deploy.Target, id, reason string) error {
	d.failed = append(d.failed, id+": "+reason)
	return nil
}

func (d *deployer) Resume(context.Context, deploy.Target) error { return nil }

const pushSHA = "2222222222222222222222222222222222222222"

func pushJob(t *testing.T, inst int64, ref, after string, deleted bool) queue.Job {
	t.Helper()
	p := map[string]any{
		"ref": ref, "after": after, "deleted": deleted,
		"sender":       map[string]any{"login": "octocat"},
		"repository":   map[string]any{"full_name": "octo-org/web", "default_branch": "main"},
		"installation": map[string]any{"id": inst},
		"head_commit":  map[string]any{"id": after, "timestamp": "2026-05-30T10:15:00+02:00"},
	}
	b, _ := json.Marshal(p)
	return queue.Job{ID: "j1", DeliveryID: "del-1", Event: "push", InstallationID: inst, Repo: "octo-org/web", Payload: b}
}

func TestPush(t *testing.T) {
	tests := []struct {
		name      string
		config    string // "" : no file
		ref       string
		after     string
		deleted   bool
		wantEnv   string // "" : no deploy
		wantCheck bool
	}{
		{name: "main deploys production by default", ref: "refs/heads/main", after: pushSHA, wantEnv: "production"},
		{name: "other branch: nothing", ref: "refs/heads/feature", after: pushSHA},
		{name: "tag: nothing", ref: "refs/tags/v1", after: pushSHA},
		{name: "deleted branch: nothing", ref: "refs/heads/main", after: "0000000000000000000000000000000000000000", deleted: true},
		{name: "configured branch", ref: "refs/heads/release", after: pushSHA, wantEnv: "staging",
			config: "environments:\n  staging:\n    branch: release\n"},
		{name: "bad file: failed check, no deploy", ref: "refs/heads/main", after: pushSHA, wantCheck: true,
			config: "environments:\n  production:\n    rollout:\n      batch: 25 %\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := githubtest.New(t)
			if srv == nil {
				t.Skip("githubtest unavailable")
			}
			srv.AddRepo("octo-org", "web", githubtest.RepoOptions{})
			srv.SetBranch("octo-org", "web", "main", pushSHA)
			if tt.config != "" {
				srv.SetFile("octo-org", "web", "main", ".github/shipbot.yml", []byte(tt.config))
			}
			c, err := gh.New(gh.Options{AppID: srv.AppID, PrivateKey: srv.PrivateKeyPEM, BaseURL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			d := &deployer{}
			deps := Deps{Base: Base{GitHub: c, Engine: d}}
			err = deps.push(context.Background(), pushJob(t, srv.InstallationID, tt.ref, tt.after, tt.deleted))
			if err != nil {
				t.Fatalf("handler: %v (permanent %t)", err, worker.IsPermanent(err))
			}
			switch {
			case tt.wantEnv == "" && len(d.reqs) != 0:
				t.Fatalf("deployed %+v", d.reqs)
			case tt.wantEnv != "":
				if len(d.reqs) != 1 {
					t.Fatalf("%d deploys", len(d.reqs))
				}
				r := d.reqs[0]
				if r.Target.Environment.Name != tt.wantEnv || r.Release.SHA != tt.after || r.Creator != "octocat" || r.ID == "" || r.Release.InstallationID != srv.InstallationID {
					t.Fatalf("request %+v", r)
				}
				if want := time.Date(2026, 5, 30, 8, 15, 0, 0, time.UTC); !r.Release.CommittedAt.Equal(want) {
					t.Fatalf("committed at %v, want head_commit.timestamp %v", r.Release.CommittedAt, want)
				}
			}
			runs := srv.CheckRuns("octo-org", "web")
			if !tt.wantCheck {
				if len(runs) != 0 {
					t.Fatalf("check runs %+v", runs)
				}
				return
			}
			if len(runs) != 1 || runs[0].Name != "shipbot/config" || runs[0].Conclusion != "failure" || runs[0].HeadSHA != pushSHA {
				t.Fatalf("check runs %+v", runs)
			}
			if !strings.Contains(runs[0].Summary, "line 4") || !strings.Contains(runs[0].Summary, "environments.production.rollout.batch") {
				t.Fatalf("summary does not name the key and line:\n%s", runs[0].Summary)
			}
		})
	}
}

func TestCommitTime(t *testing.T) {
	for in, want := range map[string]time.Time{
		"2024-06-03T10:15:00Z":      time.Date(2024, 6, 3, 10, 15, 0, 0, time.UTC),
		"2015-05-05T19:40:15-04:00": time.Date(2015, 5, 5, 23, 40, 15, 0, time.UTC),
		"":                          {},
		"yesterday":                 {},
	} {
		if got := commitTime(in); !got.Equal(want) {
			t.Errorf("commitTime(%q) = %v, want %v", in, got, want)
		}
	}
}
