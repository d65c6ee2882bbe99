package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/store"
	"github.com/shipbot/shipbot/internal/store/record"
	"github.com/shipbot/shipbot/internal/testenv"
	"github.com/shipbot/shipbot/queue"
)

// Two deliveries of one /deploy comment (GitHub's redelivery, or a person's
// manual one: other delivery ids, the same comment) reach two workers at
// the same moment: one reply, one deploy, on either store.
func TestCommentDeliveredTwiceAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) Store
	}{
		{"embedded", func(t *testing.T) Store { return openStore(t) }},
		{"redis", func(t *testing.T) Store {
			r := testenv.StartRedis(t)
			client := redis.NewClient(&redis.Options{Addr: r.Addr()})
			t.Cleanup(func() { client.Close() })
			return store.NewRedis(client, "shipbot")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newCommentWorld(t, "")
			w.cs.Store = tc.store(t)
			// Both workers read the comments before either writes its reply:
			// without the claim, each would find none and post one.
			w.srv.Fault("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments", githubtest.Fault{Latency: 300 * time.Millisecond, Times: 2})
			id := w.srv.AddComment("octo-org", "web", 7, "octocat", "/deploy staging")
			payload := commentPayload(w, id, "/deploy staging")

			start := make(chan struct{})
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i, delivery := range []string{"delivery-a", "delivery-b"} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					job := queue.Job{ID: "job-" + delivery, DeliveryID: delivery, Event: "issue_comment", Action: "created",
						InstallationID: w.srv.InstallationID, Repo: "octo-org/web", Payload: payload}
					<-start
					errs[i] = (Deps{Base: w.cs}).issueComment(context.Background(), job)
				}()
			}
			close(start)
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if got := w.replies(id); len(got) != 1 {
				t.Errorf("%d replies, want 1", len(got))
			}
			if len(w.eng.deploys) != 1 {
				t.Errorf("%d deploys asked of the engine, want 1", len(w.eng.deploys))
			}

			// The job that answered, retried (its worker died after the
			// reply), carries on: the reply is edited, the deploy is the same
			// deploy; the other delivery, again, does nothing.
			winner, err := w.cs.Store.Claim(context.Background(), "comment:octo-org/web#"+itoa(id), "probe", time.Hour)
			if err != nil || (winner != "job-delivery-a" && winner != "job-delivery-b") {
				t.Fatalf("the comment is claimed by %q (%v), want one of the jobs", winner, err)
			}
			for _, jobID := range []string{winner, "job-late-delivery"} {
				job := queue.Job{ID: jobID, DeliveryID: jobID, Event: "issue_comment", Action: "created",
					InstallationID: w.srv.InstallationID, Repo: "octo-org/web", Payload: payload, Attempt: 2}
				if err := (Deps{Base: w.cs}).issueComment(context.Background(), job); err != nil {
					t.Fatal(err)
				}
			}
			if got := w.replies(id); len(got) != 1 {
				t.Errorf("after a retry and a late delivery: %d replies, want 1", len(got))
			}
			if len(w.eng.deploys) != 2 || w.eng.deploys[0].ID != w.eng.deploys[1].ID {
				t.Errorf("deploys asked %+v: want the retried job's one more, with the same id", w.eng.deploys)
			}
		})
	}
}

// commentPayload is an issue_comment created payload of comment id on
// PR #7, by octocat.
func commentPayload(w *commentWorld, id int64, body string) []byte {
	b, _ := json.Marshal(map[string]any{
		"action": "created", "issue": map[string]any{"number": 7, "pull_request": map[string]any{"url": "https://api.github.com/repos/octo-org/web/pulls/7"}},
		"comment": map[string]any{"id": id, "body": body, "created_at": time.Now().UTC().Format(time.RFC3339),
			"user": map[string]any{"login": "octocat", "type": "User"}},
		"repository":   map[string]any{"full_name": "octo-org/web", "default_branch": "main"},
		"installation": map[string]any{"id": w.srv.InstallationID},
	})
	return b
}

// slowPreviewer holds an update inside EnsurePreview until released, the
// moment a close could otherwise tear down what is still being built.
type slowPreviewer struct {
	*previewer
	entered chan struct{}
	release chan struct{}
}

func (p *slowPreviewer) EnsurePreview(ctx context.Context, pv deploy.Preview, r deploy.Release, w io.Writer) (string, error) {
	p.entered <- struct{}{}
	<-p.release
	return p.previewer.EnsurePreview(ctx, pv, r, w)
}

// busyStore tells when a preview's lock was found held.
type busyStore struct {
	*store.Embedded
	busy chan struct{}
}

func (s *busyStore) AcquireLock(ctx context.Context, env record.EnvKey, holder string, ttl time.Duration) (record.Lease, bool, error) {
	l, ok, err := s.Embedded.AcquireLock(ctx, env, holder, ttl)
	if err == nil && !ok {
		select {
		case s.busy <- struct{}{}:
		default:
		}
	}
	return l, ok, err
}

// A pull request closed while its preview is being built: the close waits
// for the build, then tears everything down; the comment's last word is
// "torn down", and a push event that comes after the close builds nothing.
func TestCloseDuringPreviewUpdate(t *testing.T) {
	w := newPRWorld(t, "")
	slow := &slowPreviewer{previewer: w.drv, entered: make(chan struct{}), release: make(chan struct{})}
	w.deps.Previewers = map[repoconfig.Driver]deploy.Previewer{repoconfig.DriverLocal: slow}
	st := &busyStore{Embedded: w.st, busy: make(chan struct{}, 1)}
	w.deps.Store = st

	updated := make(chan struct{})
	go func() {
		defer close(updated)
		w.event(t, "opened", prHead, "octo-org/web")
	}()
	<-slow.entered
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		w.event(t, "closed", prHead, "octo-org/web")
	}()
	select {
	case <-st.busy: // the close waits for the update
	case <-closed:
		t.Error("the close finished while the update was still building")
	case <-time.After(30 * time.Second):
		t.Fatal("the close neither waited nor finished")
	}
	close(slow.release)
	<-updated
	<-closed

	if w.drv.running != "" {
		t.Errorf("the preview still runs %s after the close: the teardown came before the build finished", w.drv.running)
	}
	w.checkClosedOnce(t)

	// A synchronize that was queued behind the close builds nothing.
	go func() { <-slow.entered; t.Error("a closed pull request's preview was built again") }()
	w.event(t, "synchronize", prHead2, "octo-org/web")
	if got := len(w.srv.Deployments("octo-org", "web")); got != 1 {
		t.Errorf("%d deployments after a late synchronize, want 1", got)
	}
	w.checkClosedOnce(t)
}

// checkClosedOnce: one deployment, inactive; one comment, torn down; the
// preview recorded closed.
func (w *prWorld) checkClosedOnce(t *testing.T) {
	t.Helper()
	deps := w.srv.Deployments("octo-org", "web")
	if len(deps) != 1 || deps[0].LastState() != "inactive" {
		t.Errorf("deployments %+v, want one, inactive", deps)
	}
	if cs := w.comments(t); len(cs) != 1 || !strings.Contains(cs[0].Body, "torn down") {
		t.Errorf("comments %+v, want one saying torn down", cs)
	}
	if p, err := w.st.GetPreview(context.Background(), "octo-org/web", 7); err != nil || !p.Closed {
		t.Errorf("stored preview %+v %v, want closed", p, err)
	}
}

// A run that died between GitHub creating the preview's deployment and the
// record saying so: the next run finds that deployment by its marker.
func TestPreviewDeploymentCreatedOnceAcrossACrash(t *testing.T) {
	w := newPRWorld(t, "")
	w.srv.Fault("POST", "/repos/{owner}/{repo}/deployments", githubtest.Fault{Applied: true, Latency: time.Minute, Times: 1})
	job := prJob(w, "opened", prHead)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	err := w.deps.pullRequest(ctx, job)
	cancel()
	if err == nil {
		t.Fatal("the first run succeeded; the create's answer should have come too late")
	}
	if n := len(w.srv.Deployments("octo-org", "web")); n != 1 {
		t.Fatalf("%d deployments after the lost answer, want the 1 GitHub made", n)
	}
	job.Attempt = 2
	if err := w.deps.pullRequest(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	deps := w.srv.Deployments("octo-org", "web")
	if len(deps) != 1 || stateList(deps[0]) != "in_progress,success" {
		t.Fatalf("deployments %+v, want one that the retried run finished", deps)
	}
	if p, _ := w.st.GetPreview(context.Background(), "octo-org/web", 7); len(p.DeploymentIDs) != 1 || p.DeploymentIDs[0] != deps[0].ID || p.Creating != "" {
		t.Errorf("stored preview %+v, want the one deployment and nothing being created", p)
	}
}

func prJob(w *prWorld, action, head string) queue.Job {
	b, _ := json.Marshal(map[string]any{
		"action": action, "number": 7,
		"pull_request": map[string]any{
			"merged": false,
			"head":   map[string]any{"sha": head, "ref": "feature", "repo": map[string]any{"full_name": "octo-org/web"}},
			"base":   map[string]any{"repo": map[string]any{"full_name": "octo-org/web"}},
		},
		"repository":   map[string]any{"full_name": "octo-org/web", "default_branch": "main"},
		"installation": map[string]any{"id": w.srv.InstallationID},
	})
	return queue.Job{ID: "j-" + action, DeliveryID: "del-" + action, Event: "pull_request", Action: action,
		InstallationID: w.srv.InstallationID, Repo: "octo-org/web", Payload: b}
}

// webhookExample is GitHub's example payload of event with action, from
// @octokit/webhooks-examples.
func webhookExample(t *testing.T, event, action string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.NodeModule(t, "@octokit/webhooks-examples"), "api.github.com", "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var all []struct {
		Name     string            `json:"name"`
		Examples []json.RawMessage `json:"examples"`
	}
	if err := json.Unmarshal(raw, &all); err != nil {
		t.Fatal(err)
	}
	for _, e := range all {
		if e.Name != event {
			continue
		}
		for _, ex := range e.Examples {
			var a struct {
				Action string `json:"action"`
			}
			if json.Unmarshal(ex, &a) == nil && a.Action == action {
				return ex
			}
		}
	}
	t.Fatalf("no example of %s.%s", event, action)
	return nil
}

// The App installed, given a repository, refused one and uninstalled, as
// GitHub's example payloads tell it: each is recorded and in the audit
// log, and a repository the App lost has its open previews torn down with
// the driver, without a call to GitHub (the App can no longer act there).
func TestInstallationEvents(t *testing.T) {
	w := newPRWorld(t, "")
	ctx := context.Background()
	run := func(event, action string) {
		t.Helper()
		job := queue.Job{ID: event + "." + action, DeliveryID: event + "." + action, Event: event, Action: action, Payload: webhookExample(t, event, action)}
		if err := w.deps.installation(ctx, job); err != nil {
			t.Fatalf("%s.%s: %v", event, action, err)
		}
	}
	// Previews the examples' repositories run, and one elsewhere.
	for _, pv := range []record.Preview{
		{Repo: "octocat/Hello-World", Number: 3, SHA: prHead, URL: "http://127.0.0.1:9999/pr-3"},
		{Repo: "octocat/Hello-World", Number: 4, SHA: prHead, Closed: true},
		{Repo: "Codertocat/Space", Number: 5, SHA: prHead, URL: "http://127.0.0.1:9999/pr-5"},
		{Repo: "octo-org/web", Number: 7, SHA: prHead, URL: "http://127.0.0.1:9999/pr-7"},
	} {
		if err := w.st.PutPreview(ctx, pv); err != nil {
			t.Fatal(err)
		}
	}
	w.srv.ResetCalls()

	run("installation", "created")
	run("installation_repositories", "added")
	ins, err := w.st.ListInstallations(ctx)
	if err != nil || len(ins) != 1 || ins[0].ID != 957387 || ins[0].Account != "Codertocat" ||
		strings.Join(ins[0].Repos, ",") != "Codertocat/Hello-World,Codertocat/Space" {
		t.Fatalf("installations after created and added: %+v, %v", ins, err)
	}

	run("installation_repositories", "removed") // octocat's installation 2 loses octocat/Hello-World
	if w.drv.torn != 1 {
		t.Errorf("%d teardowns after a repository was removed, want 1 (the open preview only)", w.drv.torn)
	}
	if p, _ := w.st.GetPreview(ctx, "octocat/Hello-World", 3); !p.Closed || p.URL != "" {
		t.Errorf("the removed repository's preview is %+v, want closed", p)
	}
	if p, _ := w.st.GetPreview(ctx, "octo-org/web", 7); p.Closed {
		t.Error("another repository's preview was closed")
	}

	// The deleted installation is octocat's too: its previews are gone
	// already, and the record is forgotten. A repeated delivery changes
	// nothing.
	run("installation", "deleted")
	run("installation", "deleted")
	if w.drv.torn != 1 {
		t.Errorf("%d teardowns, want still 1", w.drv.torn)
	}
	if ins, _ := w.st.ListInstallations(ctx); len(ins) != 1 || ins[0].Account != "Codertocat" {
		t.Errorf("installations after octocat's was deleted: %+v", ins)
	}
	if n := w.srv.CountCalls(); n != 0 {
		t.Errorf("%d GitHub calls for installation events, want none", n)
	}

	page, err := w.st.ListAudit(ctx, record.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := len(page.Entries) - 1; i >= 0; i-- {
		e := page.Entries[i]
		got = append(got, e.Action+" "+e.Actor+" "+e.Repo+" "+e.Env+": "+e.Text)
	}
	want := []string{
		"installation.created Codertocat  : Installed on Codertocat: Codertocat/Hello-World.",
		"installation.repositories_added Codertocat  : Repositories added to the installation on Codertocat: Codertocat/Space.",
		"preview.torn_down octocat octocat/Hello-World pr-3: Preview of #3 torn down: the App no longer has access to the repository, so the pull request was not told.",
		"installation.repositories_removed octocat  : Repositories removed from the installation on octocat: octocat/Hello-World; previews torn down: octocat/Hello-World#3.",
		"installation.deleted octocat  : Uninstalled from octocat; no previews were running.",
		"installation.deleted octocat  : Uninstalled from octocat; no previews were running.",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Uninstalling tears down the previews of every repository the App had,
// including those only the installation's record names.
func TestInstallationDeletedTearsDownRecordedRepositories(t *testing.T) {
	w := newPRWorld(t, "")
	ctx := context.Background()
	if _, err := w.st.UpdateInstallation(ctx, 2, func(in *record.Installation) error {
		in.Account, in.Repos = "octocat", []string{"octocat/Spoon-Knife"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, repo := range []string{"octocat/Spoon-Knife", "octocat/Hello-World"} {
		if err := w.st.PutPreview(ctx, record.Preview{Repo: repo, Number: 9, SHA: prHead, URL: "http://x"}); err != nil {
			t.Fatal(err)
		}
	}
	job := queue.Job{ID: "d", DeliveryID: "d", Event: "installation", Action: "deleted", Payload: webhookExample(t, "installation", "deleted")}
	if err := w.deps.installation(ctx, job); err != nil {
		t.Fatal(err)
	}
	if w.drv.torn != 2 {
		t.Errorf("%d teardowns, want 2", w.drv.torn)
	}
	if _, err := w.st.GetInstallation(ctx, 2); err == nil {
		t.Error("the deleted installation is still recorded")
	}

	// A driver that fails keeps the job failing, to be retried.
	w.drv.teardown = errors.New("proxy unreachable")
	if err := w.st.PutPreview(ctx, record.Preview{Repo: "octocat/Hello-World", Number: 10, SHA: prHead}); err != nil {
		t.Fatal(err)
	}
	if err := w.deps.installation(ctx, job); err == nil || !strings.Contains(err.Error(), "proxy unreachable") {
		t.Errorf("a failed teardown gave %v, want the driver's error", err)
	}
}
