package report

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

const (
	commitURL     = "https://github.com/acme/web/commit/" + newSHA
	deploymentURL = "https://github.com/acme/web/deployments/production"
)

// slackProduction is the push of production(with) as the Slack message sees it.
func slackProduction(with func(*Deploy)) SlackDeploy {
	return SlackDeploy{
		Deploy: production(with), Repo: "acme/web", Title: "Round checkout totals to the cent",
		CommitURL: commitURL, DeploymentURL: deploymentURL,
	}
}

// slackScenarios are the deploys rendered to testdata/slack/NAME.golden:
// the message, and the thread reply for those that get one.
var slackScenarios = []struct {
	name  string
	d     SlackDeploy
	reply bool // the deploy gets a thread reply
}{
	{"queued", slackProduction(func(d *Deploy) { d.State = StateQueued }), false},
	{"running-batch-2-of-4", slackProduction(func(d *Deploy) {
		d.State, d.StartedAt, d.Done = StateInProgress, t0, 1
		d.Batches = fleet(BatchDone, BatchBaking)
	}), false},
	{"success", slackProduction(func(d *Deploy) {
		d.State, d.Done, d.StartedAt, d.FinishedAt = StateSuccess, 12, t0, at(4*time.Minute+12*time.Second)
		d.Batches = fleet(BatchDone, BatchDone, BatchDone, BatchDone)
	}), false},
	{"rolling-back", slackProduction(func(d *Deploy) {
		d.State, d.StartedAt, d.Done = StateInProgress, t0, 6
		d.Batches = fleet(BatchRollingBack, BatchRollingBack, BatchFailed)
		d.Reason, d.FailedInstance = "production-8 failed /healthz", "production-8"
	}), false},
	{"failure-rolled-back", slackProduction(func(d *Deploy) {
		d.State, d.StartedAt, d.FinishedAt = StateFailure, t0, at(6*time.Minute+5*time.Second)
		d.Batches = fleet(BatchRolledBack, BatchRolledBack, BatchRolledBack)
		d.Reason, d.FailedInstance = "production-8 failed /healthz", "production-8"
		d.RolledBack = append(ids(7, 9), ids(1, 6)...)
	}), true},
	{"failure-rollback-incomplete", slackProduction(func(d *Deploy) {
		d.State, d.StartedAt, d.FinishedAt, d.Done = StateFailure, t0, at(5*time.Minute), 6
		d.Batches = fleet(BatchRolledBack, BatchFailed, BatchRolledBack)
		d.Reason, d.FailedInstance = "production-8: install exited 1", "production-8"
		d.RolledBack = append(ids(7, 9), ids(1, 1)...)
	}), true},
	{"error-before-touching", slackProduction(func(d *Deploy) {
		d.State, d.StartedAt, d.FinishedAt, d.Total = StateError, t0, at(850*time.Millisecond), 1
		d.Reason = "secret DATABASE_URL is not set: run bot secrets set acme/web production DATABASE_URL"
	}), true},
	{"superseded", slackProduction(func(d *Deploy) { d.State, d.SupersededBy = StateSuperseded, nextSHA }), false},
	{"cancelled", slackProduction(func(d *Deploy) {
		d.State, d.StartedAt, d.FinishedAt, d.Done = StateCancelled, t0, at(2*time.Minute), 6
		d.Batches = fleet(BatchDone, BatchDone, BatchInstalling)
		d.Reason = "the worker shut down"
	}), false},
	{"locked-reason-escaped", slackProduction(func(d *Deploy) {
		d.State, d.LockedBy, d.LockReason = StateLocked, "alice", "db migration <!channel> & <https://evil.example|click>"
	}), false},
	{"comment-deploy-from-pr", SlackDeploy{
		Deploy: Deploy{
			Env: "staging", SHA: newSHA, Ref: "feature/search", Creator: "carol", PR: 42, Kind: KindComment, State: StateInProgress,
			EnvironmentURL: "http://localhost:3000/env/staging/", LogURL: logURL, Total: 2, Done: 1, Previous: oldSHA,
			Batches: []Batch{
				{Index: 0, Canary: true, Zone: "local", Instances: []string{"staging-1"}, State: BatchDone, Started: t0, Finished: at(850 * time.Millisecond)},
				{Index: 1, Zone: "local", Instances: []string{"staging-2"}, State: BatchAdmitting, Started: at(850 * time.Millisecond)},
			},
			StartedAt: t0,
		},
		Repo: "acme/web", Title: "Search: rank <b>exact</b> matches first & fast", CommitURL: commitURL,
		PRURL: "https://github.com/acme/web/pull/42", DeploymentURL: "https://github.com/acme/web/deployments/staging",
	}, false},
	{"rollback-command-success", SlackDeploy{
		Deploy: Deploy{
			Env: "production", SHA: oldSHA, Ref: oldSHA, Creator: "bob", PR: 57, Kind: KindRollback, State: StateSuccess,
			EnvironmentURL: envURL, LogURL: logURL, Total: 12, Done: 12, Previous: newSHA,
			Batches: fleet(BatchDone, BatchDone, BatchDone, BatchDone), StartedAt: t0, FinishedAt: at(3*time.Minute + 59*time.Second),
		},
		Repo: "acme/web", PRURL: "https://github.com/acme/web/pull/57", DeploymentURL: deploymentURL,
	}, false},
	{"preview-ready", SlackDeploy{
		Deploy: Deploy{
			Env: "pr-42", SHA: newSHA, Ref: "feature/search", Creator: "carol", PR: 42, Kind: KindPreview, State: StateSuccess,
			EnvironmentURL: "https://pr-42.preview.example.com", LogURL: logURL, Total: 1, Done: 1,
			Batches:   []Batch{{Index: 0, Canary: true, Instances: []string{"pr-42-1"}, State: BatchDone, Started: t0, Finished: at(38 * time.Second)}},
			StartedAt: t0, FinishedAt: at(38 * time.Second),
		},
		Repo: "acme/web", Title: "Search: rank exact matches first", CommitURL: commitURL, PRURL: "https://github.com/acme/web/pull/42",
	}, false},
}

// renderSlack is a scenario as one reviewable page: the message as the
// chat.postMessage fields, then the thread reply if there is one.
func renderSlack(t *testing.T, d SlackDeploy) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("==== message ====\n")
	b.Write(indentJSON(t, SlackDeployMessage(d)))
	if r, ok := SlackThreadReply(d); ok {
		b.WriteString("\n==== thread reply ====\n")
		b.Write(indentJSON(t, r))
	}
	b.WriteString("\n")
	return b.Bytes()
}

func indentJSON(t *testing.T, m SlackMessage) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // the golden shows what Slack receives: &lt; as Slack's entity, not \u003c
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func TestSlackGolden(t *testing.T) {
	for _, sc := range slackScenarios {
		t.Run(sc.name, func(t *testing.T) {
			if _, ok := SlackThreadReply(sc.d); ok != sc.reply {
				t.Errorf("thread reply: got %v, want %v", ok, sc.reply)
			}
			golden(t, filepath.Join("slack", sc.name+".golden"), renderSlack(t, sc.d))
		})
	}
}

// TestSlackEscapesPeoplesText checks that text from people can neither
// open a link nor mention a channel, wherever it lands in the message.
func TestSlackEscapesPeoplesText(t *testing.T) {
	const evil = "x <!channel> & <https://evil.example|click> y"
	d := slackProduction(func(d *Deploy) {
		d.State, d.StartedAt, d.FinishedAt = StateFailure, t0, at(time.Minute)
		d.Batches = fleet(BatchRolledBack)
		d.Reason, d.FailedInstance, d.RolledBack = evil, "i<1>", []string{"i<1>"}
		d.Creator, d.Ref, d.LockReason = "mallory<!here>", "b<!everyone>", evil
	})
	d.Title, d.Repo = evil, "acme/<web>"
	reply, _ := SlackThreadReply(d)
	for name, m := range map[string]SlackMessage{"message": SlackDeployMessage(d), "reply": reply} {
		for _, s := range slackStrings(m) {
			for _, bad := range []string{"<!", "<https://evil", "& ", "<1>", "<web>"} {
				if strings.Contains(s, bad) {
					t.Errorf("%s: %q is not escaped in %q", name, bad, s)
				}
			}
		}
	}
	locked := slackProduction(func(d *Deploy) { d.State, d.LockReason = StateLocked, evil })
	if !strings.Contains(SlackDeployMessage(locked).Text, "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;") {
		t.Errorf("the /lock reason is not in the fallback text, escaped: %q", SlackDeployMessage(locked).Text)
	}
}

// TestSlackLimits checks every scenario, and an outsized one, against
// Block Kit's limits: past them Slack refuses the whole message.
func TestSlackLimits(t *testing.T) {
	huge := slackProduction(func(d *Deploy) {
		d.State, d.StartedAt, d.FinishedAt = StateFailure, t0, at(time.Minute)
		d.Reason = strings.Repeat("very long reason ", 400)
		for i := range 500 {
			d.RolledBack = append(d.RolledBack, strings.Repeat("n", 150)+string(rune('a'+i%26)))
		}
	})
	huge.Title = strings.Repeat("title ", 2000)
	all := []SlackDeploy{huge}
	for _, sc := range slackScenarios {
		all = append(all, sc.d)
	}
	for _, d := range all {
		reply, _ := SlackThreadReply(d)
		for _, m := range []SlackMessage{SlackDeployMessage(d), reply} {
			for _, b := range m.Blocks {
				if b.Text != nil && utf8.RuneCountInString(b.Text.Text) > maxSlackSection {
					t.Errorf("%s: section text of %d characters", d.State, utf8.RuneCountInString(b.Text.Text))
				}
				if len(b.Fields) > 10 {
					t.Errorf("%s: %d fields", d.State, len(b.Fields))
				}
				for _, f := range append(b.Fields, b.Elements...) {
					if utf8.RuneCountInString(f.Text) > maxSlackField {
						t.Errorf("%s: field of %d characters", d.State, utf8.RuneCountInString(f.Text))
					}
				}
			}
		}
	}
}

// slackStrings is every text in m.
func slackStrings(m SlackMessage) []string {
	out := []string{m.Text}
	for _, b := range m.Blocks {
		if b.Text != nil {
			out = append(out, b.Text.Text)
		}
		for _, f := range append(b.Fields, b.Elements...) {
			out = append(out, f.Text)
		}
	}
	return out
}
