package gh_test

import (
	"strings"
	"testing"

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
