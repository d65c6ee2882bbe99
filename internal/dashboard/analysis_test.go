package dashboard_test

import (
	"context"
	"html"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/store/record"
)

// TestDeployPageShowsTraffic: a rollout under analysis shows each batch's
// figures — requests, error rate, p99, each Prometheus check — while it
// runs (the live part the page polls) and after.
func TestDeployPageShowsTraffic(t *testing.T) {
	f := newFixture(t, nil)
	start := time.Now().Add(-time.Minute)
	val := 0.0
	d := record.Deploy{
		ID: "push-web-9-production", Env: record.EnvKey{Repo: public, Name: "production"}, SHA: "3333333333333333333333333333333333333333",
		Kind: record.KindPush, State: record.StateRunning, CreatedAt: start, StartedAt: start,
		Batches: []record.BatchTiming{
			{Index: 0, Instances: []string{"i-1"}, Started: start, Analysis: &record.Analysis{
				At: start.Add(20 * time.Second), Since: start.Add(5 * time.Second), Judged: false, MinRequests: 20,
				Traffic: &record.Traffic{Requests: 12, Errors: 0, P99: 3 * time.Millisecond},
				Checks:  []record.CheckFigure{{Name: "checkout errors", Value: &val}},
			}},
			{Index: 1, Instances: []string{"i-2", "i-3"}},
		},
	}
	if err := f.st.PutDeploy(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	_, body := f.get(t, nil, "/deploys/"+d.ID, "Authorization", "Bearer "+token)
	want := "12 requests, 0% errors, p99 3ms (not judged: fewer than 20); checkout errors 0"
	if !strings.Contains(body, "<th>Traffic</th>") || !strings.Contains(html.UnescapeString(body), want) {
		t.Fatalf("the deploy page does not show the canary's figures %q:\n%s", want, body)
	}
	_, live := f.get(t, nil, "/deploys/"+d.ID+".json", "Authorization", "Bearer "+token)
	if !strings.Contains(html.UnescapeString(strings.ReplaceAll(live, `\u0026`, "&")), "p99 3ms") {
		t.Fatalf("the live part lacks the figures:\n%s", live)
	}
	// A deploy without analysis keeps its table as it was.
	if _, body := f.get(t, nil, "/deploys/push-web-1-production", "Authorization", "Bearer "+token); strings.Contains(body, "<th>Traffic</th>") {
		t.Fatal("a deploy without analysis has a Traffic column")
	}
}

// TestHomeShowsDelivery: each environment with deploys in the last 30 days
// shows its delivery chart and figures (the seed: one success, then the
// release a test records here fails and another restores it).
func TestHomeShowsDelivery(t *testing.T) {
	f := newFixture(t, nil)
	env := record.EnvKey{Repo: public, Name: "production"}
	at := time.Now().Add(-30 * time.Minute)
	for i, res := range []string{record.ResultFailure, record.ResultSuccess} {
		if err := f.st.RecordRelease(context.Background(), env, record.Release{
			DeployID: "push-web-d" + string(rune('1'+i)), SHA: strings.Repeat(string(rune('a'+i)), 40), At: at.Add(time.Duration(i) * 10 * time.Minute), Result: res,
		}); err != nil {
			t.Fatal(err)
		}
	}
	_, home := f.get(t, nil, "/", "Authorization", "Bearer "+token)
	for _, want := range []string{`<figure class="delivery"><svg`, "3 deploys in 30 days · 33% failed or rolled back · restored in 10m (median)"} {
		if !strings.Contains(html.UnescapeString(home), want) {
			t.Errorf("the home page lacks %q", want)
		}
	}
}

// TestRolledBackRelease: a deploy that succeeded and whose release a
// rollback replaced says "rolled back" in the home page's recent deploys
// and on its own page.
func TestRolledBackRelease(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	env := record.EnvKey{Repo: public, Name: "production"}
	at := time.Now().Add(-20 * time.Minute)
	d := record.Deploy{ID: "push-web-2-production", Env: env, SHA: strings.Repeat("b", 40), Kind: record.KindPush,
		State: record.StateSuccess, CreatedAt: at, StartedAt: at, FinishedAt: at.Add(time.Minute)}
	if err := f.st.PutDeploy(ctx, d); err != nil {
		t.Fatal(err)
	}
	rel := record.Release{DeployID: d.ID, SHA: d.SHA, At: d.FinishedAt, Result: record.ResultSuccess}
	if err := f.st.RecordRelease(ctx, env, rel); err != nil {
		t.Fatal(err)
	}
	const badge = `<span class="badge rolled-back"`
	if _, page := f.get(t, nil, "/deploys/"+d.ID, "Authorization", "Bearer "+token); strings.Contains(page, badge) {
		t.Fatal("a current release is shown rolled back")
	}
	rel.Result = record.ResultRolledBack
	if err := f.st.RecordRelease(ctx, env, rel); err != nil {
		t.Fatal(err)
	}
	_, home := f.get(t, nil, "/", "Authorization", "Bearer "+token)
	if !strings.Contains(home, badge+` title="succeeded, then a rollback replaced it">rolled back</span>`) {
		t.Errorf("the home page does not say the deploy was rolled back:\n%s", home)
	}
	if _, page := f.get(t, nil, "/deploys/"+d.ID, "Authorization", "Bearer "+token); !strings.Contains(page, badge) {
		t.Errorf("the deploy page does not say it was rolled back:\n%s", page)
	}
	if _, page := f.get(t, nil, "/deploys/push-web-1-production", "Authorization", "Bearer "+token); strings.Contains(page, badge) {
		t.Error("a failed deploy is shown rolled back")
	}
}
