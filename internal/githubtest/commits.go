package githubtest

import (
	"net/http"
	"strconv"
	"time"
)

// Commit is a commit with the date a test gives it: GET commits/{ref} and
// a pull request's commit list show its author and committer with that
// date. A commit no test set shows none (GitHub's null git user).
type Commit struct {
	SHA     string
	Date    time.Time // when it was authored and committed
	Message string    // "commit abc1234" if empty
}

// SetCommit records c's date and message.
func (s *Server) SetCommit(owner, name string, c Commit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setCommitLocked(s.repoLocked(owner, name), c)
}

func (s *Server) setCommitLocked(r *repo, c Commit) {
	if r.commits == nil {
		r.commits = map[string]Commit{}
	}
	r.commits[c.SHA] = c
}

// PushToPullRequest adds commits, oldest first, to the branch of pull
// request number (set with SetPullRequest), as a push of that branch does:
// each is recorded as SetCommit records it, and the last becomes the pull
// request's head. The pull request's commit list is its head until a push,
// and its head then the pushed commits after.
func (s *Server) PushToPullRequest(owner, name string, number int, commits ...Commit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repoLocked(owner, name)
	pr := r.pulls[number]
	if pr == nil {
		s.t.Errorf("githubtest: PushToPullRequest: %s/%s has no pull request #%d (SetPullRequest first)", owner, name, number)
		return
	}
	if r.pullCommits == nil {
		r.pullCommits = map[int][]string{}
	}
	list := r.pullCommits[number]
	if list == nil && pr.HeadSHA != "" {
		list = []string{pr.HeadSHA}
	}
	for _, c := range commits {
		s.setCommitLocked(r, c)
		list = append(list, c.SHA)
		pr.HeadSHA = c.SHA
	}
	r.pullCommits[number] = list
}

// listPullCommits answers GET /repos/{owner}/{repo}/pulls/{pull_number}/commits:
// the pull request's commits, oldest first, paginated.
func (s *Server) listPullCommits(c *reqCtx) response {
	n, _ := strconv.Atoi(c.param("pull_number"))
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repoFor(c)
	if r == nil {
		return notFound()
	}
	pr := r.pulls[n]
	if pr == nil {
		return notFound()
	}
	shas := r.pullCommits[n]
	if shas == nil {
		shas = []string{pr.HeadSHA}
	}
	items := make([]any, len(shas))
	for i, sha := range shas {
		items[i] = s.commitJSON(r, sha)
	}
	page, h := s.paginate(c, items)
	return response{status: http.StatusOK, header: h, body: page}
}

// commitJSON is the commit schema GET commits/{ref} and a pull request's
// commit list share. s.mu held.
func (s *Server) commitJSON(r *repo, sha string) obj {
	api := s.repoAPI(r) + "/commits/" + sha
	web := s.WebURL + "/" + r.owner + "/" + r.name + "/commit/" + sha
	var person any // GitHub's null git user: no date known
	msg := "commit " + sha[:7]
	if c, ok := r.commits[sha]; ok {
		person = obj{"name": "Mona Lisa", "email": "mona@example.com", "date": ts(c.Date)}
		if c.Message != "" {
			msg = c.Message
		}
	}
	return obj{
		"url": api, "sha": sha, "node_id": nodeID("Commit", userID(sha)), "html_url": web, "comments_url": api + "/comments",
		"commit": obj{
			"url": s.repoAPI(r) + "/git/commits/" + sha, "author": person, "committer": person, "message": msg,
			"comment_count": 0, "tree": obj{"sha": sha, "url": s.repoAPI(r) + "/git/trees/" + sha},
		},
		"author": nil, "committer": nil, "parents": []any{}, "files": []any{},
		"stats": obj{"additions": 0, "deletions": 0, "total": 0},
	}
}
