package gh

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-github/v60/github"
)

// PullRequest is what the bot reads of a pull request: an issue_comment
// payload names the pull request but not its head.
type PullRequest struct {
	Number   int
	State    string // open, closed
	Merged   bool
	HeadSHA  string
	HeadRef  string // the branch, e.g. feature/greeting
	HeadRepo string // owner/name of the head's repository; "" when the fork was deleted
	BaseRef  string
	BaseRepo string // owner/name
}

// Fork reports whether the head lives in another repository than the base.
func (p PullRequest) Fork() bool {
	return p.HeadRepo == "" || !strings.EqualFold(p.HeadRepo, p.BaseRepo)
}

// PullRequest reads pull request number.
func (i *Installation) PullRequest(ctx context.Context, owner, repo string, number int) (PullRequest, error) {
	op := repoOp(fmt.Sprintf("read pull request #%d", number), owner, repo)
	pr, _, err := i.gh.PullRequests.Get(ctx, owner, repo, number)
	if err != nil {
		return PullRequest{}, wrap(op, err)
	}
	return PullRequest{
		Number: pr.GetNumber(), State: pr.GetState(), Merged: pr.GetMerged(),
		HeadSHA: pr.GetHead().GetSHA(), HeadRef: pr.GetHead().GetRef(), HeadRepo: pr.GetHead().GetRepo().GetFullName(),
		BaseRef: pr.GetBase().GetRef(), BaseRepo: pr.GetBase().GetRepo().GetFullName(),
	}, nil
}

// ResolveRef returns the commit SHA ref names: a SHA or a prefix of one, a
// branch or a tag. found is false when the repository has no such commit
// (GitHub answers 404 or 422), which is the person's mistake, not an error.
func (i *Installation) ResolveRef(ctx context.Context, owner, repo, ref string) (sha string, found bool, err error) {
	c, found, err := i.Commit(ctx, owner, repo, ref)
	return c.SHA, found, err
}

// Commit is a commit as the bot reads it: which one, and when it was
// committed.
type Commit struct {
	SHA string
	// CommittedAt is the committer date: when the commit was made or last
	// rewritten (a rebase, an amend), not when it was pushed. Zero when
	// GitHub gives none.
	CommittedAt time.Time
}

// Commit reads the commit ref names, as ResolveRef resolves it; found is
// false when the repository has no such commit.
//
// It reads GET /repos/{owner}/{repo}/commits/{ref} with per_page=1, which
// bounds the list of changed files GitHub sends along.
func (i *Installation) Commit(ctx context.Context, owner, repo, ref string) (c Commit, found bool, err error) {
	op := repoOp("read commit "+ref, owner, repo)
	if ref == "" {
		return Commit{}, false, nil
	}
	segs := strings.Split(ref, "/")
	for k, s := range segs {
		segs[k] = esc(s)
	}
	rc, resp, err := i.gh.Repositories.GetCommit(ctx, owner, repo, strings.Join(segs, "/"), &github.ListOptions{PerPage: 1})
	if err != nil {
		if resp != nil && (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusUnprocessableEntity) {
			return Commit{}, false, nil
		}
		return Commit{}, false, wrap(op, err)
	}
	c = commitOf(rc)
	return c, c.SHA != "", nil
}

// maxPullRequestCommits is how many commits GitHub lists for a pull
// request; a longer one's list stops there.
const maxPullRequestCommits = 250

// PullRequestCommits lists pull request number's commits, oldest first, as
// GitHub lists them: at most 250.
func (i *Installation) PullRequestCommits(ctx context.Context, owner, repo string, number int) ([]Commit, error) {
	op := repoOp(fmt.Sprintf("list the commits of pull request #%d", number), owner, repo)
	opts := &github.ListOptions{PerPage: 100}
	var out []Commit
	for {
		list, resp, err := i.gh.PullRequests.ListCommits(ctx, owner, repo, number, opts)
		if err != nil {
			return nil, wrap(op, err)
		}
		for _, rc := range list {
			out = append(out, commitOf(rc))
		}
		if resp.NextPage == 0 || len(out) >= maxPullRequestCommits {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
}

func commitOf(rc *github.RepositoryCommit) Commit {
	return Commit{SHA: rc.GetSHA(), CommittedAt: rc.GetCommit().GetCommitter().GetDate().Time}
}
