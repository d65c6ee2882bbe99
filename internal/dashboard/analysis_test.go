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
