package gh

import (
	"context"
	"fmt"
	"net/http"
	"strings"

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
//
// It reads GET /repos/{owner}/{repo}/commits/{ref} with per_page=1, which
// bounds the list of changed files GitHub sends along.
func (i *Installation) ResolveRef(ctx context.Context, owner, repo, ref string) (sha string, found bool, err error) {
	op := repoOp("resolve "+ref, owner, repo)
	if ref == "" {
		return "", false, nil
	}
	segs := strings.Split(ref, "/")
	for k, s := range segs {
		segs[k] = esc(s)
	}
	c, resp, err := i.gh.Repositories.GetCommit(ctx, owner, repo, strings.Join(segs, "/"), &github.ListOptions{PerPage: 1})
	if err != nil {
		if resp != nil && (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusUnprocessableEntity) {
			return "", false, nil
		}
		return "", false, wrap(op, err)
	}
	return c.GetSHA(), c.GetSHA() != "", nil
}
