package handlers

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/store"
	"github.com/shipbot/shipbot/internal/store/record"
	"github.com/shipbot/shipbot/queue"
)

// engineCalls records what the handler asks of the engine.
type engineCalls struct {
	mu      sync.Mutex
	deploys []deploy.Request
	resumed []string
}

func (e *engineCalls) Deploy(_ context.Context, req deploy.Request) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.deploys = append(e.deploys, req)
	return nil
}

func (e *engineCalls) Resume(_ context.Context, t deploy.Target) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.resumed = append(e.resumed, t.Environment.Name)
	return nil
}

func (e *engineCalls) ChecksPassed(context.Context, deploy.Target, string) error { return nil }

func (e *engineCalls) ChecksFailed(context.Context, deploy.Target, string, string) error { return nil }

type commentWorld struct {
	srv *githubtest.Server
	st  *store.Embedded
	eng *engineCalls
	cs  Base
}

func newCommentWorld(t *testing.T, config string) *commentWorld {
	t.Helper()
	srv := githubtest.New(t)
	if srv == nil {
		t.Skip("githubtest unavailable")
	}
	srv.AddRepo("octo-org", "web", githubtest.RepoOptions{DefaultBranch: "main"})
	srv.SetBranch("octo-org", "web", "main", shaMain)
	if config != "" {
		srv.SetFile("octo-org", "web", "main", ".github/shipbot.yml", []byte(config))
	}
	srv.SetPullRequest("octo-org", "web", githubtest.PullRequest{Number: 7, HeadSHA: shaHead, HeadRef: "feature"})
	srv.SetPermission("octo-org", "web", "octocat", "write")
	c, err := gh.New(gh.Options{AppID: srv.AppID, PrivateKey: srv.PrivateKeyPEM, BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	w := &commentWorld{srv: srv, st: st, eng: &engineCalls{}}
	w.cs = Base{GitHub: c, Store: st, Engine: w.eng, PublicURL: "https://shipbot.example.com"}
	return w
}

// comment runs the handler on a comment by login; it returns the comment id.
func (w *commentWorld) comment(t *testing.T, action, login, userType, body string, onPR bool) int64 {
	t.Helper()
	return w.commentAt(t, action, login, userType, body, onPR, time.Now())
}

// commentAt is comment, for a comment made at created.
func (w *commentWorld) commentAt(t *testing.T, action, login, userType, body string, onPR bool, created time.Time) int64 {
	t.Helper()
	id := w.srv.AddComment("octo-org", "web", 7, login, body)
	issue := map[string]any{"number": 7}
	if onPR {
		issue["pull_request"] = map[string]any{"url": "https://api.github.com/repos/octo-org/web/pulls/7"}
	}
	p := map[string]any{
		"action": action, "issue": issue,
		"comment": map[string]any{"id": id, "body": body, "created_at": created.UTC().Format(time.RFC3339),
			"user": map[string]any{"login": login, "type": userType}},
		"repository":   map[string]any{"full_name": "octo-org/web", "default_branch": "main"},
		"installation": map[string]any{"id": w.srv.InstallationID},
	}
	b, _ := json.Marshal(p)
	job := queue.Job{ID: "j", DeliveryID: "d", Event: "issue_comment", Action: action, InstallationID: w.srv.InstallationID, Repo: "octo-org/web", Payload: b}
	if err := (Deps{Base: w.cs}).issueComment(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	return id
}

func (w *commentWorld) replies(id int64) []githubtest.Comment {
	var out []githubtest.Comment
	for _, c := range w.srv.Comments("octo-org", "web", 7) {
		if c.UserType == "Bot" && strings.Contains(c.Body, report.ReplyMarker(id)) {
			out = append(out, c)
		}
	}
	return out
}

func TestIssueCommentIgnores(t *testing.T) {
	w := newCommentWorld(t, "")
	for _, tc := range []struct{ name, action, login, typ, body string }{
		{"edited", "edited", "octocat", "User", "/deploy staging"},
		{"a bot", "created", "dependabot[bot]", "Bot", "/deploy staging"},
		{"no command", "created", "octocat", "User", "looks good"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := w.comment(t, tc.action, tc.login, tc.typ, tc.body, true)
			c, _ := w.srv.Comment(id)
			if len(w.replies(id)) != 0 || len(c.Reactions) != 0 {
				t.Errorf("the bot answered: %d replies, %d reactions", len(w.replies(id)), len(c.Reactions))
			}
		})
	}
	if w.srv.CountWrites() != 0 || len(w.eng.deploys) != 0 {
		t.Errorf("%d GitHub writes, %d deploys for ignored comments", w.srv.CountWrites(), len(w.eng.deploys))
	}
}

// One comment, several commands: each answered in order in one reply, the
// lock taken before the deploy decides, the deploy queued behind it, the
// engine called after the reply.
func TestIssueCommentSeveralCommands(t *testing.T) {
	w := newCommentWorld(t, "")
	id := w.comment(t, "created", "octocat", "User", "/lock staging freeze\n/deploy staging\n/frobnicate\n/deploy prod", true)
	rs := w.replies(id)
	if len(rs) != 1 {
		t.Fatalf("%d replies, want 1", len(rs))
	}
	body := rs[0].Body
	order := []string{"Locked **staging**", "queued behind the lock by @octocat (freeze)", `"/frobnicate" is not a command`, "| `/help` | shows this list |", "There is no environment `prod`"}
	last := -1
	for _, s := range order {
		i := strings.Index(body, s)
		if i < last {
			t.Errorf("%q missing or out of order in:\n%s", s, body)
		}
		last = i
	}
	if len(w.eng.deploys) != 1 || w.eng.deploys[0].ID != "comment-"+itoa(id)+"-staging" || w.eng.deploys[0].Release.SHA != shaHead {
		t.Errorf("engine deploys %+v", w.eng.deploys)
	}
	c, _ := w.srv.Comment(id)
	if len(c.Reactions) != 1 || c.Reactions[0].Content != "eyes" {
		t.Errorf("reactions %+v, want 👀", c.Reactions)
	}

	// /unlock resumes the environment.
	w.comment(t, "created", "octocat", "User", "/unlock staging", true)
	if strings.Join(w.eng.resumed, ",") != "staging" {
		t.Errorf("resumed %v, want staging", w.eng.resumed)
	}
	if _, locked, _ := w.st.EnvironmentLock(context.Background(), record.EnvKey{Repo: "octo-org/web", Name: "staging"}); locked {
		t.Error("staging still locked after /unlock")
	}
}

func TestIssueCommentBadConfig(t *testing.T) {
	w := newCommentWorld(t, "environments:\n  production:\n    rollout:\n      batch: lots\n")
	id := w.comment(t, "created", "octocat", "User", "/deploy staging", true)
	rs := w.replies(id)
	if len(rs) != 1 || !strings.Contains(rs[0].Body, "has mistakes") || !strings.Contains(rs[0].Body, "batch") {
		t.Fatalf("replies %+v", rs)
	}
	if len(w.eng.deploys) != 0 {
		t.Error("deployed with a bad configuration")
	}
}

func TestIssueCommentOnAnIssue(t *testing.T) {
	w := newCommentWorld(t, "")
	id := w.comment(t, "created", "octocat", "User", "/deploy staging", false)
	if rs := w.replies(id); len(rs) != 1 || !strings.Contains(rs[0].Body, "pull requests only") {
		t.Fatalf("replies %+v", rs)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }
