package gh_test

import (
	"fmt"
	"testing"

	"github.com/shipbot/shipbot/internal/gh"
)

// The API cost of the calls a preview update and a production rollout
// make through this package, measured on the wire by githubtest. The engine
// decides the sequence; these pin what gh adds to it (nothing: no token
// mint, retry or unchanged content counts as a write) against SPEC §11.
func TestAPICost(t *testing.T) {
	t.Run("preview update", func(t *testing.T) {
		e := newEnv(t, nil)
		const marker = "<!-- shipbot:preview -->"
		// The PR's first push made the comment; this is a later push.
		if _, _, err := e.in.UpsertStickyComment(e.ctx, owner, repo, 7, marker, "Preview: building 1111111"); err != nil {
			t.Fatal(err)
		}
		e.srv.ResetCalls()

		if _, _, err := e.in.ReadFile(e.ctx, owner, repo, ".github/shipbot.yml", ""); err != nil {
			t.Fatal(err)
		}
		d := e.deploy(t, gh.DeploymentRequest{SHA: sha, Environment: "pr-7", Transient: true})
		for _, st := range []gh.DeploymentState{gh.DeploymentInProgress, gh.DeploymentSuccess} {
			e.setStatus(t, d.ID, gh.DeploymentStatus{State: st, EnvironmentURL: "http://pr-7.localhost", LogURL: "http://bot/deploys/1"})
		}
		for range 2 { // the engine may report the same state twice; one write
			if _, _, err := e.in.UpsertStickyComment(e.ctx, owner, repo, 7, marker, "Preview: http://pr-7.localhost (0123456)"); err != nil {
				t.Fatal(err)
			}
		}
		calls, writes := e.srv.CountCalls(), e.srv.CountWrites()
		t.Logf("preview update: %d API calls, %d writes (deployment, in_progress, success, comment edit); SPEC §11: ≤ 4 writes", calls, writes)
		if writes > 4 {
			t.Errorf("%d writes, SPEC §11 allows 4", writes)
		}
	})

	for _, batches := range []int{1, 4, 10} {
		t.Run(fmt.Sprintf("production rollout, %d batches", batches), func(t *testing.T) {
			e := newEnv(t, nil)
			d := e.deploy(t, gh.DeploymentRequest{SHA: sha, Environment: "production", Production: true})
			e.setStatus(t, d.ID, gh.DeploymentStatus{State: gh.DeploymentInProgress})
			run := gh.CheckRun{Name: "shipbot/production", HeadSHA: sha, Status: "in_progress",
				Output: &gh.CheckRunOutput{Title: "Deploying", Summary: fmt.Sprintf("batch 1 of %d", batches)}}
			id, err := e.in.CreateCheckRun(e.ctx, owner, repo, run)
			if err != nil {
				t.Fatal(err)
			}
			// Progress every other batch; the same text again is free.
			for b := 2; b <= batches; b++ {
				run.Output.Summary = fmt.Sprintf("batch %d of %d", b-(b%2), batches)
				if _, err := e.in.UpdateCheckRun(e.ctx, owner, repo, id, run); err != nil {
					t.Fatal(err)
				}
			}
			run.Status, run.Conclusion, run.Output = "completed", "success", &gh.CheckRunOutput{Title: "Deployed", Summary: "all batches healthy"}
			if _, err := e.in.UpdateCheckRun(e.ctx, owner, repo, id, run); err != nil {
				t.Fatal(err)
			}
			e.setStatus(t, d.ID, gh.DeploymentStatus{State: gh.DeploymentSuccess})
			calls, writes := e.srv.CountCalls(), e.srv.CountWrites()
			budget := 5 + (batches+1)/2
			t.Logf("production rollout of %d batches: %d API calls, %d writes; SPEC §11: ≤ 5 + ⌈%d/2⌉ = %d", batches, calls, writes, batches, budget)
			if writes > budget {
				t.Errorf("%d writes, SPEC §11 allows %d", writes, budget)
			}
		})
	}
}
