package githubtest

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// PullRequest is a pull request of a repository, as SetPullRequest sets it.
type PullRequest struct {
	Number  int
	Title   string
	User    string // who opened it; "octocat" if empty
	State   string // open (default) or closed
	Merged  bool
	HeadSHA string
	HeadRef string // the branch; "feature" if empty
	BaseRef string // the repository's default branch if empty
	// HeadRepo is owner/name of the head's repository when the pull
	// request comes from a fork; "" for a branch of the repository itself.
	HeadRepo string
}

// SetPullRequest creates or replaces pull request pr.Number.
func (s *Server) SetPullRequest(owner, name string, pr PullRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repoLocked(owner, name)
	if r.pulls == nil {
		r.pulls = map[int]*PullRequest{}
	}
	c := pr
	r.pulls[pr.Number] = &c
}

func (s *Server) getPull(c *reqCtx, r *repo) response {
	n, _ := strconv.Atoi(c.param("pull_number"))
	pr := r.pulls[n]
	if pr == nil {
		return notFound()
	}
	return response{status: http.StatusOK, body: s.pullJSON(r, pr)}
}

// getCommit answers GET /repos/{owner}/{repo}/commits/{ref}: a branch, a
// full SHA, a prefix of a SHA the repository knows (a branch head, a tree
// set with SetTree or SetFiles, a pull request's head), or, like resolve,
// a made-up stable SHA for any other name that looks like a tag. A hex
// string that is no known commit's prefix is 422, as on GitHub.
func (s *Server) getCommit(c *reqCtx, r *repo) response {
	ref := c.param("ref")
	ref = strings.TrimPrefix(strings.TrimPrefix(ref, "heads/"), "tags/")
	var sha string
	switch {
	case r.branches[ref] != "":
		sha = r.branches[ref]
	case shaRe.MatchString(ref):
		sha = ref
	case isHex(ref) && len(ref) >= 4:
		matches := map[string]bool{}
		for _, k := range r.knownSHAs() {
			if strings.HasPrefix(k, ref) {
				matches[k] = true
			}
		}
		if len(matches) != 1 {
			return response{status: http.StatusUnprocessableEntity, body: obj{
				"message": "No commit found for SHA: " + ref, "documentation_url": docsURL, "status": "422"}}
		}
		for k := range matches {
			sha = k
		}
	default:
		sha = r.resolve(ref)
	}
	return response{status: http.StatusOK, body: s.commitJSON(r, sha)}
}

func isHex(s string) bool {
	return s != "" && strings.Trim(strings.ToLower(s), "0123456789abcdef") == ""
}

// knownSHAs are the commits the repository's state names. s.mu held.
func (r *repo) knownSHAs() []string {
	var out []string
	for _, sha := range r.branches {
		out = append(out, sha)
	}
	for ref := range r.files {
		if shaRe.MatchString(ref) {
			out = append(out, ref)
		}
	}
	for _, pr := range r.pulls {
		out = append(out, pr.HeadSHA)
	}
	for sha := range r.commits {
		out = append(out, sha)
	}
	return out
}

// repositoryJSON has what the repository schema requires (a pull
// request's head and base).
func (s *Server) repositoryJSON(r *repo) obj {
	o := s.fullRepoJSON(r)
	o["has_downloads"] = true
	return o
}

func (s *Server) pullJSON(r *repo, pr *PullRequest) obj {
	api := s.repoAPI(r)
	web := s.WebURL + "/" + r.owner + "/" + r.name + fmt.Sprintf("/pull/%d", pr.Number)
	self := api + fmt.Sprintf("/pulls/%d", pr.Number)
	issue := api + fmt.Sprintf("/issues/%d", pr.Number)
	user := pr.User
	if user == "" {
		user = "octocat"
	}
	state := pr.State
	if state == "" {
		state = "open"
	}
	headRef := pr.HeadRef
	if headRef == "" {
		headRef = "feature"
	}
	baseRef := pr.BaseRef
	if baseRef == "" {
		baseRef = r.defaultBranch
	}
	headRepo := s.repositoryJSON(r)
	headOwner := r.owner
	if pr.HeadRepo != "" {
		owner, name, _ := strings.Cut(pr.HeadRepo, "/")
		fork := &repo{owner: owner, name: name, id: userID("repo:" + pr.HeadRepo), defaultBranch: "main", created: r.created}
		headRepo = s.repositoryJSON(fork)
		headRepo["fork"] = true
		headOwner = owner
	}
	now := time.Now().UTC()
	var closedAt, mergedAt any
	if state == "closed" {
		closedAt = ts(now)
	}
	if pr.Merged {
		mergedAt = ts(now)
	}
	link := func(u string) obj { return obj{"href": u} }
	title := pr.Title
	if title == "" {
		title = "Pull request " + strconv.Itoa(pr.Number)
	}
	return obj{
		"url": self, "id": userID(fmt.Sprintf("pr:%s/%s#%d", r.owner, r.name, pr.Number)), "node_id": nodeID("PullRequest", int64(pr.Number)),
		"html_url": web, "diff_url": web + ".diff", "patch_url": web + ".patch", "issue_url": issue,
		"commits_url": self + "/commits", "review_comments_url": self + "/comments", "review_comment_url": api + "/pulls/comments{/number}",
		"comments_url": issue + "/comments", "statuses_url": api + "/statuses/" + pr.HeadSHA,
		"number": pr.Number, "state": state, "locked": false, "title": title, "user": s.userJSON(user, "User"),
		"body": nil, "labels": []any{}, "milestone": nil, "active_lock_reason": nil,
		"created_at": ts(r.created), "updated_at": ts(now), "closed_at": closedAt, "merged_at": mergedAt,
		"merge_commit_sha": nil, "assignee": nil, "assignees": []any{}, "requested_reviewers": []any{}, "requested_teams": []any{},
		"head": obj{"label": headOwner + ":" + headRef, "ref": headRef, "sha": pr.HeadSHA, "user": s.userJSON(headOwner, "User"), "repo": headRepo},
		"base": obj{"label": r.owner + ":" + baseRef, "ref": baseRef, "sha": r.branches[baseRef], "user": s.userJSON(r.owner, "Organization"), "repo": s.repositoryJSON(r)},
		"_links": obj{
			"self": link(self), "html": link(web), "issue": link(issue), "comments": link(issue + "/comments"),
			"review_comments": link(self + "/comments"), "review_comment": link(api + "/pulls/comments{/number}"),
			"commits": link(self + "/commits"), "statuses": link(api + "/statuses/" + pr.HeadSHA),
		},
		"author_association": "MEMBER", "auto_merge": nil, "draft": false,
		"merged": pr.Merged, "mergeable": true, "rebaseable": true, "mergeable_state": "clean", "merged_by": nil,
		"comments": 0, "review_comments": 0, "maintainer_can_modify": false, "commits": 1, "additions": 1, "deletions": 0, "changed_files": 1,
	}
}
