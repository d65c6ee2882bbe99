package gh_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/githubtest"
)

func TestPullRequest(t *testing.T) {
	e := newEnv(t, nil)
	const head = "9762dd7c59ddb7ce96dbf359abf7523f36335395"
	e.srv.SetBranch(owner, repo, "main", strings.Repeat("a", 40))
	e.srv.SetPullRequest(owner, repo, githubtest.PullRequest{Number: 42, HeadSHA: head, HeadRef: "feature/greeting"})
	e.srv.SetPullRequest(owner, repo, githubtest.PullRequest{Number: 43, HeadSHA: strings.Repeat("b", 40), HeadRepo: "someone/web", State: "closed"})

	pr, err := e.in.PullRequest(e.ctx, owner, repo, 42)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Number != 42 || pr.HeadSHA != head || pr.HeadRef != "feature/greeting" || pr.BaseRef != "main" || pr.State != "open" || pr.Fork() {
		t.Errorf("pull request #42 read as %+v", pr)
	}
	fork, err := e.in.PullRequest(e.ctx, owner, repo, 43)
	if err != nil {
		t.Fatal(err)
	}
	if !fork.Fork() || fork.State != "closed" {
		t.Errorf("pull request #43 read as %+v, want a closed fork", fork)
	}
	if _, err := e.in.PullRequest(e.ctx, owner, repo, 44); err == nil {
		t.Error("pull request #44 does not exist, yet no error")
	}
}

func TestResolveRef(t *testing.T) {
	e := newEnv(t, nil)
	main := "ca4c14aa28e89f48d63cdfbb203292dbcd02cfae"
	e.srv.SetBranch(owner, repo, "main", main)
	e.srv.SetBranch(owner, repo, "feature/greeting", strings.Repeat("c", 40))
	for _, tc := range []struct {
		ref   string
		want  string
		found bool
	}{
		{"main", main, true},
		{"feature/greeting", strings.Repeat("c", 40), true},
		{main, main, true},
		{"ca4c14a", main, true},
		{"deadbee", "", false},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			sha, found, err := e.in.ResolveRef(e.ctx, owner, repo, tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			if sha != tc.want || found != tc.found {
				t.Errorf("ResolveRef(%q) = %q, %t; want %q, %t", tc.ref, sha, found, tc.want, tc.found)
			}
		})
	}
	// A tag resolves to some commit (the fake makes up a stable one).
	if sha, found, err := e.in.ResolveRef(e.ctx, owner, repo, "v1.4.2"); err != nil || !found || len(sha) != 40 {
		t.Errorf("ResolveRef(v1.4.2) = %q, %t, %v", sha, found, err)
	}
	// The check-runs route below commits/{ref} still answers.
	if _, err := e.in.CheckRunsForRef(e.ctx, owner, repo, main); err != nil {
		t.Errorf("check runs after adding commits/{ref}: %v", err)
	}
}

func TestCommit(t *testing.T) {
	e := newEnv(t, nil)
	const head = "9762dd7c59ddb7ce96dbf359abf7523f36335395"
	at := time.Date(2026, 3, 27, 15, 4, 5, 0, time.UTC)
	e.srv.SetBranch(owner, repo, "feature/greeting", head)
	e.srv.SetCommit(owner, repo, githubtest.Commit{SHA: head, Date: at})

	for _, ref := range []string{head, "feature/greeting", "9762dd7"} {
		c, found, err := e.in.Commit(e.ctx, owner, repo, ref)
		if err != nil || !found || c.SHA != head || !c.CommittedAt.Equal(at) {
			t.Errorf("Commit(%q) = %+v, %t, %v; want %s committed at %s", ref, c, found, err, head, at)
		}
	}
	// A commit GitHub gives no committer for reads as committed at no time.
	other := strings.Repeat("c", 40)
	if c, found, err := e.in.Commit(e.ctx, owner, repo, other); err != nil || !found || c.SHA != other || !c.CommittedAt.IsZero() {
		t.Errorf("Commit(%s) = %+v, %t, %v; want no date", other, c, found, err)
	}
	if _, found, err := e.in.Commit(e.ctx, owner, repo, "deadbee"); err != nil || found {
		t.Errorf("Commit(deadbee) = %t, %v; want not found", found, err)
	}
}

func TestPullRequestCommits(t *testing.T) {
	e := newEnv(t, nil)
	first := strings.Repeat("1", 40)
	e.srv.SetPullRequest(owner, repo, githubtest.PullRequest{Number: 42, HeadSHA: first})

	// Before any push the list is the head alone.
	got, err := e.in.PullRequestCommits(e.ctx, owner, repo, 42)
	if err != nil || len(got) != 1 || got[0].SHA != first {
		t.Fatalf("commits of a new pull request = %+v, %v; want its head", got, err)
	}

	// 120 commits pushed: two pages, oldest first, with their dates.
	start := time.Date(2026, 3, 27, 9, 0, 0, 0, time.UTC)
	var pushed []githubtest.Commit
	for k := range 120 {
		pushed = append(pushed, githubtest.Commit{SHA: fmt.Sprintf("%040x", k+1000), Date: start.Add(time.Duration(k) * time.Minute)})
	}
	e.srv.PushToPullRequest(owner, repo, 42, pushed...)
	e.srv.ResetCalls()
	got, err = e.in.PullRequestCommits(e.ctx, owner, repo, 42)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 121 || got[0].SHA != first || got[120].SHA != pushed[119].SHA || !got[120].CommittedAt.Equal(pushed[119].Date) {
		t.Fatalf("%d commits, first %+v, last %+v; want 121 from %s to %s", len(got), got[0], got[len(got)-1], first, pushed[119].SHA)
	}
	if n := e.srv.CountCalls(); n != 2 {
		t.Errorf("%d calls for 121 commits, want 2 pages of 100", n)
	}
	pr, err := e.in.PullRequest(e.ctx, owner, repo, 42)
	if err != nil || pr.HeadSHA != pushed[119].SHA {
		t.Errorf("head after the push %q, %v; want %s", pr.HeadSHA, err, pushed[119].SHA)
	}
	if _, err := e.in.PullRequestCommits(e.ctx, owner, repo, 43); err == nil {
		t.Error("pull request #43 does not exist, yet no error")
	}
}
