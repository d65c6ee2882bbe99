package gh_test

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/githubtest"
)

// deploy creates a deployment of the test repository, failing the test if
// GitHub refuses it.
func (e *env) deploy(t *testing.T, req gh.DeploymentRequest) gh.Deployment {
	t.Helper()
	d, err := e.in.CreateDeployment(e.ctx, owner, repo, req)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// setStatus adds a status to deployment id, failing the test if GitHub
// refuses it.
func (e *env) setStatus(t *testing.T, id int64, st gh.DeploymentStatus) {
	t.Helper()
	if _, err := e.in.CreateDeploymentStatus(e.ctx, owner, repo, id, st); err != nil {
		t.Fatalf("deployment %d, status %s: %v", id, st.State, err)
	}
}

// askDefaultBranch asks for the test repository's default branch n times.
func (e *env) askDefaultBranch(t *testing.T, n int) {
	t.Helper()
	for range n {
		if _, err := e.in.DefaultBranch(e.ctx, owner, repo); err != nil {
			t.Fatal(err)
		}
	}
}

// mintToken is the operation that mints an installation token.
const mintToken = "apps/create-installation-access-token"

func TestCreateDeployment(t *testing.T) {
	e := newEnv(t, nil)
	d := e.deploy(t, gh.DeploymentRequest{
		SHA: sha, Environment: "pr-7", Description: "preview of #7", Transient: true,
		Payload: map[string]any{"pr": 7},
	})
	if d.ID == 0 || d.SHA != sha || d.Environment != "pr-7" {
		t.Fatalf("deployment = %+v", d)
	}
	got := e.srv.Deployments(owner, repo)
	if len(got) != 1 {
		t.Fatalf("%d deployments on the server, want 1", len(got))
	}
	g := got[0]
	if g.AutoMerge == nil || *g.AutoMerge {
		t.Errorf("auto_merge = %v, want false sent explicitly", g.AutoMerge)
	}
	if g.RequiredContexts == nil || len(g.RequiredContexts) != 0 {
		t.Errorf("required_contexts = %#v, want [] sent explicitly", g.RequiredContexts)
	}
	if g.Ref != sha || !g.TransientEnvironment || g.ProductionEnvironment || g.Environment != "pr-7" || g.Description != "preview of #7" || g.Task != "deploy" {
		t.Errorf("deployment on the server = %+v", g)
	}
	if string(g.Payload) != `{"pr":7}` {
		t.Errorf("payload = %s", g.Payload)
	}
	if g.Creator != "shipbot[bot]" {
		t.Errorf("creator = %q", g.Creator)
	}

	// Production, no payload.
	e.deploy(t, gh.DeploymentRequest{SHA: sha, Environment: "production", Production: true})
	p := e.srv.Deployments(owner, repo)[1]
	if !p.ProductionEnvironment || p.TransientEnvironment || p.Payload != nil {
		t.Errorf("production deployment = %+v", p)
	}
}

func TestCreateDeploymentIgnoresFailingStatuses(t *testing.T) {
	// required_contexts: [] is what lets the bot deploy while some
	// unrelated status is red; without it GitHub answers 409.
	e := newEnv(t, nil)
	e.srv.SetCommitStatus(owner, repo, sha, githubtest.CommitStatus{Context: "lint", State: "failure"})
	e.deploy(t, gh.DeploymentRequest{SHA: sha, Environment: "staging"})
}

func TestCreateDeploymentStatus(t *testing.T) {
	e := newEnv(t, nil)
	old := e.deploy(t, gh.DeploymentRequest{SHA: sha, Environment: "production", Production: true})
	e.setStatus(t, old.ID, gh.DeploymentStatus{State: gh.DeploymentSuccess})
	d := e.deploy(t, gh.DeploymentRequest{SHA: sha, Environment: "production", Production: true})
	long := strings.Repeat("é", 200)
	for _, st := range []gh.DeploymentStatus{
		{State: gh.DeploymentQueued, Description: "queued behind 1 deploy"},
		{State: gh.DeploymentInProgress, LogURL: "http://bot.example/deploys/9", Description: "batch 1 of 4"},
		{State: gh.DeploymentSuccess, LogURL: "http://bot.example/deploys/9", EnvironmentURL: "https://example.com", Description: long},
	} {
		e.setStatus(t, d.ID, st)
	}
	got := e.srv.Deployments(owner, repo)
	sts := got[1].Statuses
	if len(sts) != 3 || sts[0].State != "queued" || sts[1].State != "in_progress" || sts[2].State != "success" {
		t.Fatalf("statuses = %+v", sts)
	}
	last := sts[2]
	if last.EnvironmentURL != "https://example.com" || last.LogURL != "http://bot.example/deploys/9" {
		t.Errorf("urls = %q %q", last.EnvironmentURL, last.LogURL)
	}
	if n := utf8.RuneCountInString(last.Description); n != 140 || !strings.HasSuffix(last.Description, "…") {
		t.Errorf("description has %d characters (%q), want 140 ending in …", n, last.Description)
	}
	if last.AutoInactive == nil || *last.AutoInactive {
		t.Errorf("auto_inactive = %v, want false sent explicitly", last.AutoInactive)
	}
	// With auto_inactive false GitHub leaves the older deployment alone:
	// the engine marks it inactive itself, with a reason.
	if s := got[0].LastState(); s != "success" {
		t.Errorf("older deployment's state = %q, want it left at success", s)
	}
	e.setStatus(t, old.ID, gh.DeploymentStatus{State: gh.DeploymentInactive, Description: "superseded by " + sha[:7]})
	if s := e.srv.Deployments(owner, repo)[0].LastState(); s != "inactive" {
		t.Errorf("older deployment's state = %q after marking it inactive", s)
	}
}

// A state outside GitHub's enum reaches the wire unchanged, and the schema
// check catches it.
func TestBadDeploymentStateIsCaughtBySchema(t *testing.T) {
	rec := &recorder{t: t}
	e := newEnv(t, rec)
	d := e.deploy(t, gh.DeploymentRequest{SHA: sha, Environment: "staging"})
	if rec.count() != 0 {
		t.Fatalf("a valid request was reported: %s", rec.all())
	}
	_, err := e.in.CreateDeploymentStatus(e.ctx, owner, repo, d.ID, gh.DeploymentStatus{State: "shipping"})
	if rec.count() != 1 {
		t.Fatalf("validator reported %d errors, want 1: %s", rec.count(), rec.all())
	}
	msg := rec.all()
	for _, want := range []string{"repos/create-deployment-status", "/state", "shipping"} {
		if !strings.Contains(msg, want) {
			t.Errorf("validator's report does not mention %q:\n%s", want, msg)
		}
	}
	t.Logf("validator said: %s", msg)
	var ge *gh.Error
	if !errors.As(err, &ge) || ge.Status != 422 || !ge.Permanent() {
		t.Fatalf("err = %v, want a permanent 422 *gh.Error", err)
	}
}

func TestCheckRuns(t *testing.T) {
	e := newEnv(t, nil)
	id, err := e.in.CreateCheckRun(e.ctx, owner, repo, gh.CheckRun{
		Name: "shipbot/production", HeadSHA: sha, Status: "in_progress", DetailsURL: "http://bot.example/deploys/1",
		Output: &gh.CheckRunOutput{Title: "Deploying", Summary: "batch 1 of 4 · 1/12 instances on 0123456"},
	})
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("ü", 40000) // 80,000 bytes
	if _, err := e.in.UpdateCheckRun(e.ctx, owner, repo, id, gh.CheckRun{
		Name: "shipbot/production", Status: "completed", Conclusion: "failure",
		Output: &gh.CheckRunOutput{Title: "Rolled back", Summary: huge, Text: huge},
	}); err != nil {
		t.Fatal(err)
	}
	run, ok := e.srv.CheckRun(id)
	if !ok {
		t.Fatal("check run not on the server")
	}
	if run.Status != "completed" || run.Conclusion != "failure" || run.Title != "Rolled back" || run.HeadSHA != sha || run.AppSlug != "shipbot" {
		t.Errorf("check run = %+v", run)
	}
	for name, s := range map[string]string{"summary": run.Summary, "text": run.Text} {
		if len(s) > gh.MaxCheckRunText || !utf8.ValidString(s) || !strings.HasSuffix(s, "(truncated)") {
			t.Errorf("%s: %d bytes, valid UTF-8 %v, want ≤ 65535 ending in (truncated)", name, len(s), utf8.ValidString(s))
		}
	}
}

func TestUpdateCheckRunTwiceWritesOnce(t *testing.T) {
	e := newEnv(t, nil)
	id, err := e.in.CreateCheckRun(e.ctx, owner, repo, gh.CheckRun{Name: "shipbot/staging", HeadSHA: sha, Status: "queued"})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.ResetCalls()
	upd := gh.CheckRun{Name: "shipbot/staging", Status: "in_progress", Output: &gh.CheckRunOutput{Title: "Deploying", Summary: "batch 1 of 2"}}
	for i, want := range []bool{true, false} {
		wrote, err := e.in.UpdateCheckRun(e.ctx, owner, repo, id, upd)
		if err != nil {
			t.Fatal(err)
		}
		if wrote != want {
			t.Errorf("update %d: wrote = %v, want %v", i+1, wrote, want)
		}
	}
	if n := e.writes(); n != 1 {
		t.Errorf("%d writes for two identical updates, want 1", n)
	}
	upd.Output.Summary = "batch 2 of 2"
	if wrote, err := e.in.UpdateCheckRun(e.ctx, owner, repo, id, upd); err != nil || !wrote {
		t.Errorf("changed update: wrote %v, err %v", wrote, err)
	}
	if run, _ := e.srv.CheckRun(id); run.Updates != 2 || run.Summary != "batch 2 of 2" {
		t.Errorf("check run = %+v", run)
	}
}

func TestUpsertStickyComment(t *testing.T) {
	e := newEnv(t, nil)
	const marker = "<!-- shipbot:preview -->"
	// A human quoting the marker is not the bot's comment; 120 comments
	// before the bot's make it page 2.
	e.srv.AddComment(owner, repo, 7, "alice", "look: "+marker)
	for range 120 {
		e.srv.AddComment(owner, repo, 7, "bob", "lgtm")
	}

	c, wrote, err := e.in.UpsertStickyComment(e.ctx, owner, repo, 7, marker, "Preview: https://pr-7.example")
	if err != nil || !wrote {
		t.Fatalf("create: wrote %v, err %v", wrote, err)
	}
	got, _ := e.srv.Comment(c.ID)
	if got.User != "shipbot[bot]" || got.Body != marker+"\nPreview: https://pr-7.example" {
		t.Fatalf("comment = %+v", got)
	}

	// Same body twice → one write in all.
	e.srv.ResetCalls()
	for range 2 {
		if _, _, err := e.in.UpsertStickyComment(e.ctx, owner, repo, 7, marker, "Preview: https://pr-7.example"); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.writes(); n != 0 {
		t.Errorf("%d writes for an unchanged comment, want 0", n)
	}

	// A changed body edits the same comment.
	c2, wrote, err := e.in.UpsertStickyComment(e.ctx, owner, repo, 7, marker, "Preview: https://pr-7.example (abc1234)")
	if err != nil || !wrote || c2.ID != c.ID {
		t.Fatalf("edit: id %d (want %d), wrote %v, err %v", c2.ID, c.ID, wrote, err)
	}

	// A new process (no memory) finds the comment by its marker across pages
	// and, the body being the same, writes nothing.
	fresh, err := gh.New(gh.Options{AppID: e.srv.AppID, PrivateKey: e.srv.PrivateKeyPEM, BaseURL: e.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.ResetCalls()
	c3, wrote, err := fresh.Installation(e.srv.InstallationID).UpsertStickyComment(e.ctx, owner, repo, 7, marker, "Preview: https://pr-7.example (abc1234)")
	if err != nil || wrote || c3.ID != c.ID {
		t.Fatalf("fresh client: id %d (want %d), wrote %v, err %v", c3.ID, c.ID, wrote, err)
	}
	if n := e.writes(); n != 0 {
		t.Errorf("%d writes from a fresh client for an unchanged comment, want 0", n)
	}
	bots := 0
	for _, cm := range e.srv.Comments(owner, repo, 7) {
		if cm.User == "shipbot[bot]" {
			bots++
		}
	}
	if bots != 1 {
		t.Errorf("%d bot comments on the PR, want 1", bots)
	}
}

func TestUpsertStickyCommentTwiceWritesOnce(t *testing.T) {
	e := newEnv(t, nil)
	for range 2 {
		if _, _, err := e.in.UpsertStickyComment(e.ctx, owner, repo, 3, "<!-- shipbot:preview -->", "Preview ready"); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.writes(); n != 1 {
		t.Errorf("%d writes for the same body twice, want 1", n)
	}
}

func TestStickyCommentRecreatedWhenDeleted(t *testing.T) {
	// The cached id may point at a comment someone deleted: 404 on edit
	// falls back to searching and creating.
	e := newEnv(t, nil)
	e.srv.Fault("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}", githubtest.Fault{Status: 404, Times: 1})
	const marker = "<!-- shipbot:preview -->"
	if _, _, err := e.in.UpsertStickyComment(e.ctx, owner, repo, 4, marker, "v1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.in.UpsertStickyComment(e.ctx, owner, repo, 4, marker, "v2"); err != nil {
		t.Fatal(err)
	}
	cs := e.srv.Comments(owner, repo, 4)
	if len(cs) != 1 || !strings.HasSuffix(cs[0].Body, "v2") {
		t.Errorf("comments = %+v", cs)
	}
}

func TestReplyAndReaction(t *testing.T) {
	e := newEnv(t, nil)
	cmd := e.srv.AddComment(owner, repo, 9, "alice", "/deploy staging")
	if err := e.in.AddReaction(e.ctx, owner, repo, cmd, "eyes"); err != nil {
		t.Fatal(err)
	}
	if err := e.in.AddReaction(e.ctx, owner, repo, cmd, "eyes"); err != nil { // again: GitHub answers 200
		t.Fatal(err)
	}
	r, err := e.in.ReplyToComment(e.ctx, owner, repo, 9, "@alice deploying 0123456 to staging")
	if err != nil {
		t.Fatal(err)
	}
	if r.ID == 0 || r.User != "shipbot[bot]" || !strings.Contains(r.HTMLURL, "#issuecomment-") {
		t.Errorf("reply = %+v", r)
	}
	c, _ := e.srv.Comment(cmd)
	if len(c.Reactions) != 1 || c.Reactions[0].Content != "eyes" || c.Reactions[0].User != "shipbot[bot]" {
		t.Errorf("reactions = %+v", c.Reactions)
	}
	if cs := e.srv.Comments(owner, repo, 9); len(cs) != 2 || cs[1].Body != "@alice deploying 0123456 to staging" {
		t.Errorf("comments = %+v", cs)
	}
}

func TestCollaboratorPermission(t *testing.T) {
	e := newEnv(t, nil)
	for _, role := range []string{"admin", "maintain", "write", "triage", "read"} {
		e.srv.SetPermission(owner, repo, "u-"+role, role)
	}
	for _, tc := range []struct {
		login string
		want  gh.Permission
	}{
		{"u-admin", gh.PermissionAdmin},
		{"u-maintain", gh.PermissionMaintain}, // permission says write; role_name tells
		{"u-write", gh.PermissionWrite},
		{"u-triage", gh.PermissionTriage},
		{"u-read", gh.PermissionRead},
		{"stranger", gh.PermissionNone},
	} {
		t.Run(tc.login, func(t *testing.T) {
			got, err := e.in.CollaboratorPermission(e.ctx, owner, repo, tc.login)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("permission = %q, want %q", got, tc.want)
			}
		})
	}
	if !gh.PermissionMaintain.AtLeast(gh.PermissionWrite) || gh.PermissionTriage.AtLeast(gh.PermissionWrite) {
		t.Error("AtLeast ranks roles wrongly")
	}
}

func TestReadFileAndDefaultBranch(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.AddRepo(owner, repo, githubtest.RepoOptions{DefaultBranch: "trunk"})
	cfg := "default_environment: staging\n"
	e.srv.SetFile(owner, repo, "trunk", ".github/shipbot.yml", []byte(cfg))
	e.srv.SetFile(owner, repo, "feature", ".github/shipbot.yml", []byte("default_environment: production\n"))

	b, err := e.in.DefaultBranch(e.ctx, owner, repo)
	if err != nil || b != "trunk" {
		t.Fatalf("default branch = %q, %v", b, err)
	}
	got, found, err := e.in.ReadFile(e.ctx, owner, repo, ".github/shipbot.yml", "")
	if err != nil || !found || string(got) != cfg {
		t.Fatalf("default branch file = %q, found %v, err %v", got, found, err)
	}
	got, found, err = e.in.ReadFile(e.ctx, owner, repo, ".github/shipbot.yml", "feature")
	if err != nil || !found || !strings.Contains(string(got), "production") {
		t.Fatalf("file at ref = %q, found %v, err %v", got, found, err)
	}
	_, found, err = e.in.ReadFile(e.ctx, owner, repo, "missing.yml", "")
	if err != nil || found {
		t.Fatalf("missing file: found %v, err %v", found, err)
	}
}

func TestCheckRunsForRefAndCombinedStatus(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.AddCheckRun(owner, repo, githubtest.CheckRun{Name: "test", HeadSHA: sha, Status: "completed", Conclusion: "success"})
	e.srv.AddCheckRun(owner, repo, githubtest.CheckRun{Name: "lint", HeadSHA: sha, Status: "in_progress"})
	e.srv.AddCheckRun(owner, repo, githubtest.CheckRun{Name: "test", HeadSHA: strings.Repeat("f", 40), Status: "completed", Conclusion: "failure"})
	for i := range 105 { // more than a page
		e.srv.SetCommitStatus(owner, repo, sha, githubtest.CommitStatus{Context: "ci/" + string(rune('a'+i%26)) + string(rune('a'+i/26)), State: "success"})
	}
	e.srv.SetCommitStatus(owner, repo, sha, githubtest.CommitStatus{Context: "ci/aa", State: "pending", TargetURL: "https://ci.example/1"})

	runs, err := e.in.CheckRunsForRef(e.ctx, owner, repo, sha)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 {
		t.Fatalf("runs = %+v", runs)
	}
	byName := map[string]gh.CheckRunInfo{}
	for _, r := range runs {
		byName[r.Name] = r
	}
	if byName["test"].Conclusion != "success" || byName["lint"].Status != "in_progress" || byName["test"].AppSlug != "ci" {
		t.Errorf("runs = %+v", runs)
	}
	cs, err := e.in.CombinedStatus(e.ctx, owner, repo, sha)
	if err != nil {
		t.Fatal(err)
	}
	if cs.State != "pending" || len(cs.Statuses) != 105 {
		t.Errorf("combined state %q with %d statuses, want pending with 105", cs.State, len(cs.Statuses))
	}
}

func TestDownloadTarball(t *testing.T) {
	e := newEnv(t, nil)
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "cmd"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "cmd", "run.sh"), []byte("#!/bin/sh\n"), 0o755))
	must(t, e.srv.SetTree(owner, repo, sha, dir))

	rc, err := e.in.DownloadTarball(e.ctx, owner, repo, sha)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	gz, err := gzip.NewReader(rc)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	files := map[string]string{}
	modes := map[string]int64{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, _ := io.ReadAll(tr)
		files[h.Name], modes[h.Name] = string(b), h.Mode
	}
	top := "acme-web-" + sha[:7] + "/"
	if files[top+"main.go"] != "package main\n" || files[top+"cmd/run.sh"] != "#!/bin/sh\n" {
		t.Errorf("tarball files = %v", files)
	}
	if modes[top+"cmd/run.sh"]&0o111 == 0 {
		t.Errorf("run.sh lost its executable bit: %o", modes[top+"cmd/run.sh"])
	}

	_, err = e.in.DownloadTarball(e.ctx, owner, repo, strings.Repeat("e", 40))
	var ge *gh.Error
	if !errors.As(err, &ge) || ge.Status != 404 || !ge.Permanent() {
		t.Errorf("unknown SHA: err = %v, want a permanent 404", err)
	}
}

func TestInstallationTokenIsCachedAndOneClientPerInstallation(t *testing.T) {
	e := newEnv(t, nil)
	if e.c.Installation(e.srv.InstallationID) != e.in {
		t.Error("two clients for one installation")
	}
	e.askDefaultBranch(t, 5)
	for _, c := range e.srv.Calls() {
		if c.Operation == mintToken {
			if c.Auth != "jwt" {
				t.Errorf("token minted with %s auth", c.Auth)
			}
		} else if c.Auth != "token" || c.Installation != e.srv.InstallationID {
			t.Errorf("call %s with auth %s for installation %d", c.Operation, c.Auth, c.Installation)
		}
	}
	if n := attempts(e.srv, mintToken); n != 1 {
		t.Errorf("%d installation tokens minted for 5 calls, want 1", n)
	}
}

func TestTokenRenewedBeforeExpiry(t *testing.T) {
	// ghinstallation renews a minute before expiry: with 50s tokens every
	// call needs a new one, and none is ever sent expired.
	e := newEnv(t, nil, githubtest.WithTokenTTL(50_000_000_000))
	e.askDefaultBranch(t, 3)
	if n := attempts(e.srv, mintToken); n != 3 {
		t.Errorf("%d tokens minted, want 3", n)
	}
}

func TestEnterpriseBaseURL(t *testing.T) {
	e := newEnv(t, nil, githubtest.WithEnterprise())
	if !strings.HasSuffix(e.srv.URL, "/api/v3") {
		t.Fatalf("server URL %s", e.srv.URL)
	}
	e.askDefaultBranch(t, 1)
	if _, err := e.c.ListHookDeliveries(e.ctx, time.Now().Add(-72*time.Hour)); err != nil {
		t.Fatal(err)
	}
	rc, err := func() (io.ReadCloser, error) {
		e.srv.SetFiles(owner, repo, sha, map[string]string{"a.txt": "a"})
		return e.in.DownloadTarball(e.ctx, owner, repo, sha)
	}()
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, nil)
	e.deploy(t, gh.DeploymentRequest{SHA: sha, Environment: "staging"})
	e.askDefaultBranch(t, 1)
	inst := "1"
	if got := metricValue(t, e, "shipbot_github_requests_total", map[string]string{"installation": inst, "method": "POST", "status": "201"}); got != 2 {
		t.Errorf("POST 201 requests = %v, want 2 (the token mint and the deployment)", got)
	}
	if got := metricValue(t, e, "shipbot_github_requests_total", map[string]string{"installation": inst, "method": "GET", "status": "200"}); got != 1 {
		t.Errorf("GET 200 requests = %v, want 1", got)
	}
	if got := metricValue(t, e, "shipbot_github_writes_total", map[string]string{"installation": inst}); got != 1 {
		t.Errorf("writes = %v, want 1 (token minting is not a write)", got)
	}
	if n, err := testutil.GatherAndCount(e.reg, "shipbot_github_requests_total"); err != nil || n != 2 {
		t.Errorf("requests_total has %d series (%v), want 2", n, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// metricValue reads one counter series from the test's registry.
func metricValue(t *testing.T, e *env, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
