package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
	"testing"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/store"
	"github.com/shipbot/shipbot/internal/store/record"
	"github.com/shipbot/shipbot/queue"
)

const (
	prHead  = "3333333333333333333333333333333333333333"
	prHead2 = "4444444444444444444444444444444444444444"
)

type previewer struct {
	mu       sync.Mutex
	ensured  []string // SHAs
	last     deploy.Preview
	torn     int
	fail     error
	running  string
	teardown error
}

func (p *previewer) EnsurePreview(_ context.Context, pv deploy.Preview, r deploy.Release, _ io.Writer) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ensured = append(p.ensured, r.SHA)
	p.last = pv
	if p.fail != nil {
		return "", p.fail
	}
	p.running = r.SHA
	return fmt.Sprintf("http://127.0.0.1:9999/pr-%d", pv.Number), nil
}

func (p *previewer) TeardownPreview(context.Context, deploy.Preview) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.torn++
	p.running = ""
	return p.teardown
}

type prWorld struct {
	srv  *githubtest.Server
	deps Deps
	drv  *previewer
	st   *store.Embedded
}

func newPRWorld(t *testing.T, config string) *prWorld {
	t.Helper()
	srv := githubtest.New(t)
	if srv == nil {
		t.Skip("githubtest unavailable")
	}
	srv.AddRepo("octo-org", "web", githubtest.RepoOptions{DefaultBranch: "main"})
	srv.SetBranch("octo-org", "web", "main", pushSHA)
	if config != "" {
		srv.SetFile("octo-org", "web", "main", ".github/shipbot.yml", []byte(config))
	}
	c, err := gh.New(gh.Options{AppID: srv.AppID, PrivateKey: srv.PrivateKeyPEM, BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	w := &prWorld{srv: srv, drv: &previewer{}, st: openStore(t)}
	w.deps = Deps{
		Base:       Base{GitHub: c, Store: w.st, PublicURL: "https://shipbot.example.com/"},
		Previewers: map[repoconfig.Driver]deploy.Previewer{repoconfig.DriverLocal: w.drv},
	}
	return w
}

func (w *prWorld) event(t *testing.T, action, head, headRepo string) {
	t.Helper()
	p := map[string]any{
		"action": action, "number": 7,
		"pull_request": map[string]any{
			"merged": false,
			"head":   map[string]any{"sha": head, "ref": "feature", "repo": map[string]any{"full_name": headRepo}},
			"base":   map[string]any{"repo": map[string]any{"full_name": "octo-org/web"}},
		},
		"repository":   map[string]any{"full_name": "octo-org/web", "default_branch": "main"},
		"installation": map[string]any{"id": w.srv.InstallationID},
	}
	b, _ := json.Marshal(p)
	job := queue.Job{ID: "j-" + action, DeliveryID: "del-" + action + "-" + head[:4], Event: "pull_request", Action: action,
		InstallationID: w.srv.InstallationID, Repo: "octo-org/web", Payload: b}
	if err := w.deps.pullRequest(context.Background(), job); err != nil {
		t.Fatalf("%s: %v", action, err)
	}
}

func (w *prWorld) comments(t *testing.T) []githubtest.Comment {
	t.Helper()
	cs := w.srv.Comments("octo-org", "web", 7)
	for _, c := range cs {
		if !strings.Contains(c.Body, report.PreviewMarker) {
			t.Errorf("a comment without the marker: %q", c.Body)
		}
	}
	return cs
}

func stateList(d githubtest.Deployment) string {
	var s []string
	for _, st := range d.Statuses {
		s = append(s, st.State)
	}
	return strings.Join(s, ",")
}

func TestPreviewLifecycleHandler(t *testing.T) {
	w := newPRWorld(t, "")
	// A config on the PR head is ignored: only the default branch counts.
	w.srv.SetFile("octo-org", "web", prHead, ".github/shipbot.yml", []byte("preview:\n  driver: nonsense\n"))

	w.srv.ResetCalls()
	w.event(t, "opened", prHead, "octo-org/web")
	w.checkOpened(t)

	// The same delivery again: no second deployment, still one comment.
	w.event(t, "opened", prHead, "octo-org/web")
	if deps := w.srv.Deployments("octo-org", "web"); len(deps) != 1 {
		t.Fatalf("a redelivery made %d deployments", len(deps))
	}

	w.srv.ResetCalls()
	w.event(t, "synchronize", prHead2, "octo-org/web")
	if n := w.srv.CountWrites(); n > 4 {
		t.Errorf("%d writes for a preview update, budget 4", n)
	}
	deps := w.srv.Deployments("octo-org", "web")
	if len(deps) != 2 || deps[0].LastState() != "success" || deps[1].LastState() != "success" {
		t.Fatalf("after synchronize: %d deployments", len(deps))
	}
	cs := w.comments(t)
	if len(cs) != 1 || !strings.Contains(cs[0].Body, report.Short(prHead2)) {
		t.Fatalf("comments after synchronize %+v", cs)
	}

	w.event(t, "closed", prHead2, "octo-org/web")
	w.checkClosed(t)

	// Closed again: nothing more to write.
	w.srv.ResetCalls()
	w.event(t, "closed", prHead2, "octo-org/web")
	if n := w.srv.CountWrites(); n != 0 {
		t.Errorf("a second close wrote %d times", n)
	}

	// Reopened: a fresh deployment, the same comment.
	w.event(t, "reopened", prHead2, "octo-org/web")
	deps = w.srv.Deployments("octo-org", "web")
	if len(deps) != 3 || deps[2].LastState() != "success" {
		t.Fatalf("after reopen: %d deployments", len(deps))
	}
	if cs := w.comments(t); len(cs) != 1 || strings.Contains(cs[0].Body, "torn down") {
		t.Fatalf("comments after reopen %+v", cs)
	}
}

// checkOpened: the first preview of a pull request is one transient
// deployment, in_progress then success with its URL and log_url, one
// comment with the link and a deploy record for the log page, in at most
// 4 writes.
func (w *prWorld) checkOpened(t *testing.T) {
	t.Helper()
	if n := w.srv.CountWrites(); n > 4 {
		t.Errorf("%d writes for a preview update, budget 4", n)
	}
	deps := w.srv.Deployments("octo-org", "web")
	if len(deps) != 1 || deps[0].Environment != "pr-7" || !deps[0].TransientEnvironment || deps[0].Ref != prHead {
		t.Fatalf("deployments %+v", deps)
	}
	if got := stateList(deps[0]); got != "in_progress,success" {
		t.Fatalf("statuses %s", got)
	}
	last := deps[0].Statuses[1]
	if last.EnvironmentURL != "http://127.0.0.1:9999/pr-7" || last.LogURL != "https://shipbot.example.com/deploys/preview-del-opened-3333" {
		t.Errorf("final status %+v", last)
	}
	if cs := w.comments(t); len(cs) != 1 || !strings.Contains(cs[0].Body, "http://127.0.0.1:9999/pr-7") {
		t.Fatalf("comments %+v", cs)
	}
	// The page log_url points at exists: the run is a deploy record.
	run, err := w.st.GetDeploy(context.Background(), "preview-del-opened-3333")
	if err != nil {
		t.Fatal(err)
	}
	if run.State != record.StateSuccess || run.Env.Name != "pr-7" || run.Kind != record.KindPreview || run.FinishedAt.IsZero() {
		t.Fatalf("preview run record %+v", run)
	}
}

// checkClosed: after close every deployment is inactive with no URL, the
// comment says torn down, the driver tore the preview down once and the
// stored preview is Closed.
func (w *prWorld) checkClosed(t *testing.T) {
	t.Helper()
	for _, d := range w.srv.Deployments("octo-org", "web") {
		if d.LastState() != "inactive" {
			t.Errorf("deployment %d ends %s", d.ID, stateList(d))
		}
		if st := d.Statuses[len(d.Statuses)-1]; st.EnvironmentURL != "" || st.Description != "Preview torn down" {
			t.Errorf("inactive status %+v", st)
		}
	}
	if cs := w.comments(t); len(cs) != 1 || !strings.Contains(cs[0].Body, "torn down") {
		t.Fatalf("comments after close %+v", cs)
	}
	if w.drv.torn != 1 || w.drv.running != "" {
		t.Errorf("teardowns %d, running %q", w.drv.torn, w.drv.running)
	}
	if p, err := w.st.GetPreview(context.Background(), "octo-org/web", 7); err != nil || !p.Closed || len(p.DeploymentIDs) != 2 {
		t.Errorf("stored preview %+v %v", p, err)
	}
}

func TestPreviewFork(t *testing.T) {
	w := newPRWorld(t, "")
	w.event(t, "opened", prHead, "someone/web")
	if deps := w.srv.Deployments("octo-org", "web"); len(deps) != 0 {
		t.Fatalf("a fork got %d deployments", len(deps))
	}
	if len(w.drv.ensured) != 0 {
		t.Fatalf("fork code ran: %v", w.drv.ensured)
	}
	cs := w.comments(t)
	if len(cs) != 1 || !strings.Contains(cs[0].Body, "fork") {
		t.Fatalf("comments %+v", cs)
	}
	w.event(t, "closed", prHead, "someone/web")
	if cs := w.comments(t); len(cs) != 1 {
		t.Fatalf("comments after close %+v", cs)
	}

	on := newPRWorld(t, "preview:\n  forks: true\n")
	on.event(t, "opened", prHead, "someone/web")
	if deps := on.srv.Deployments("octo-org", "web"); len(deps) != 1 || deps[0].LastState() != "success" {
		t.Fatalf("preview.forks on: %d deployments", len(deps))
	}
}

func TestPreviewAWSNotSupported(t *testing.T) {
	w := newPRWorld(t, "preview:\n  driver: aws\n  aws:\n    launch_template: web-preview\n    listener_arn: arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/1/2\n    domain: preview.example.com\n")
	w.event(t, "opened", prHead, "octo-org/web")
	deps := w.srv.Deployments("octo-org", "web")
	if len(deps) != 1 || stateList(deps[0]) != "error" {
		t.Fatalf("deployments %+v", deps)
	}
	if cs := w.comments(t); len(cs) != 1 || !strings.Contains(cs[0].Body, "no working AWS configuration") {
		t.Fatalf("comments %+v", cs)
	}
	if len(w.drv.ensured) != 0 {
		t.Fatal("the local driver was used for an aws preview")
	}
}

func TestPreviewFailureAndBadConfig(t *testing.T) {
	w := newPRWorld(t, "")
	w.drv.fail = errors.New("build failed: exit status 1")
	w.event(t, "opened", prHead, "octo-org/web")
	deps := w.srv.Deployments("octo-org", "web")
	if len(deps) != 1 || stateList(deps[0]) != "in_progress,failure" || !strings.Contains(deps[0].Statuses[1].Description, "build failed") {
		t.Fatalf("deployments %+v", deps)
	}
	if cs := w.comments(t); len(cs) != 1 || !strings.Contains(cs[0].Body, "Preview failed") {
		t.Fatalf("comments %+v", cs)
	}

	bad := newPRWorld(t, "preview:\n  ttl: soon\n")
	bad.event(t, "opened", prHead, "octo-org/web")
	if deps := bad.srv.Deployments("octo-org", "web"); len(deps) != 0 {
		t.Fatalf("bad config deployed: %+v", deps)
	}
	runs := bad.srv.CheckRuns("octo-org", "web")
	if len(runs) != 1 || runs[0].Name != "shipbot/config" || runs[0].Conclusion != "failure" || runs[0].HeadSHA != prHead {
		t.Fatalf("check runs %+v", runs)
	}
}

// secretValues is a SecretSource over "repo/env/NAME" keys.
type secretValues map[string]string

func (m secretValues) Secret(_ context.Context, repo, env, name string) (string, error) {
	if v, ok := m[repo+"/"+env+"/"+name]; ok {
		return v, nil
	}
	return "", deploy.ErrSecretNotSet
}

// TestPreviewVarsAndSecrets: a preview gets app.env, preview.env and
// preview.secrets, never an environment's; a fork's preview gets no
// secrets; a preview secret never set fails the preview before it is built,
// saying how to set it.
func TestPreviewVarsAndSecrets(t *testing.T) {
	const config = "app:\n  env: {LOG_FORMAT: json, APP_ENV: app}\npreview:\n  forks: true\n  env: {APP_ENV: preview}\n  secrets: [PREVIEW_DATABASE_URL]\n" +
		"environments:\n  production:\n    env: {CHECKOUT_V2: \"on\"}\n    secrets: [DATABASE_URL]\n"
	values := secretValues{"octo-org/web/preview/PREVIEW_DATABASE_URL": "pg://preview", "octo-org/web/production/DATABASE_URL": "pg://prod"}
	wantVars := map[string]string{"LOG_FORMAT": "json", "APP_ENV": "preview"}

	w := newPRWorld(t, config)
	w.deps.Secrets = values
	w.event(t, "opened", prHead, "octo-org/web")
	if !maps.Equal(w.drv.last.Vars, wantVars) || !maps.Equal(w.drv.last.Secrets, map[string]string{"PREVIEW_DATABASE_URL": "pg://preview"}) {
		t.Errorf("preview got vars %v secrets %v", w.drv.last.Vars, w.drv.last.Secrets)
	}

	fork := newPRWorld(t, config)
	fork.deps.Secrets = values
	fork.event(t, "opened", prHead, "someone/web")
	if len(fork.drv.ensured) != 1 || !maps.Equal(fork.drv.last.Vars, wantVars) || len(fork.drv.last.Secrets) != 0 {
		t.Errorf("a fork's preview got vars %v secrets %v (built %d times)", fork.drv.last.Vars, fork.drv.last.Secrets, len(fork.drv.ensured))
	}

	unset := newPRWorld(t, config)
	unset.deps.Secrets = secretValues{}
	unset.event(t, "opened", prHead, "octo-org/web")
	if len(unset.drv.ensured) != 0 {
		t.Fatalf("a preview was built without its secret")
	}
	deps := unset.srv.Deployments("octo-org", "web")
	if len(deps) != 1 || deps[0].LastState() != "failure" || !strings.Contains(deps[0].Statuses[len(deps[0].Statuses)-1].Description, "bot secrets set octo-org/web preview PREVIEW_DATABASE_URL") {
		t.Fatalf("deployments %+v", deps)
	}
}
