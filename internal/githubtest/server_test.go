package githubtest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/google/go-github/v88/github"

	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/testenv"
)

func specPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(testenv.NodeModule(t, "@octokit/openapi"), "generated", "api.github.com.json")
}

// recorder is a githubtest.TB that keeps what it is told.
type recorder struct {
	t      *testing.T
	mu     sync.Mutex
	errors []string
	skips  []string
	failed bool
}

func (r *recorder) Helper()                         { r.t.Helper() }
func (r *recorder) Logf(format string, args ...any) { r.t.Logf(format, args...) }
func (r *recorder) Cleanup(f func())                { r.t.Cleanup(f) }
func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recorder) Skipf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.skips = append(r.skips, fmt.Sprintf(format, args...))
}
func (r *recorder) FailNow() { r.failed = true }

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.errors
	r.errors = nil
	return e
}

func TestEveryOperationIsInGitHubsDescription(t *testing.T) {
	p := specPath(t)
	srv := githubtest.New(t, githubtest.WithSpec(p))
	if !srv.Validating() {
		t.Fatal("not validating")
	}
	t.Logf("%d operations; the description loaded (cut down to them) in %v", len(githubtest.Operations()), githubtest.SpecLoadTime(p))
}

// client returns HTTP clients authenticated as the App (JWT) and as its
// installation (token).
func clients(t *testing.T, srv *githubtest.Server) (app, inst *http.Client) {
	t.Helper()
	atr, err := ghinstallation.NewAppsTransport(http.DefaultTransport, srv.AppID, srv.PrivateKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	atr.BaseURL = srv.URL
	itr := ghinstallation.NewFromAppsTransport(atr, srv.InstallationID)
	itr.BaseURL = srv.URL
	// Without options ghinstallation sends the body "null", which the
	// description (an object) does not allow.
	itr.InstallationTokenOptions = &github.InstallationTokenOptions{}
	return &http.Client{Transport: atr}, &http.Client{Transport: itr}
}

func do(t *testing.T, c *http.Client, method, u string) int {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestWrongCredentialsAreReported(t *testing.T) {
	rec := &recorder{t: t}
	srv := githubtest.New(rec, githubtest.WithSpec(specPath(t)))
	srv.AddRepo("acme", "web", githubtest.RepoOptions{})
	app, inst := clients(t, srv)

	if code := do(t, inst, "GET", srv.URL+"/repos/acme/web"); code != 200 {
		t.Fatalf("token on a repository endpoint: %d (%v)", code, rec.take())
	}
	for _, tc := range []struct {
		name   string
		c      *http.Client
		method string
		path   string
		want   string
	}{
		{"JWT on a repository endpoint", app, "GET", "/repos/acme/web", "requires installation token"},
		{"token on an App endpoint", inst, "GET", "/app/hook/deliveries", "requires App JWT"},
		{"nothing on a repository endpoint", http.DefaultClient, "GET", "/repos/acme/web", "sent with no credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code := do(t, tc.c, tc.method, srv.URL+tc.path); code != 401 {
				t.Errorf("status %d, want 401", code)
			}
			errs := rec.take()
			if len(errs) != 1 || !strings.Contains(errs[0], tc.want) {
				t.Errorf("reported %q, want one error containing %q", errs, tc.want)
			}
		})
	}

	// A JWT signed by another key.
	other := githubtest.New(t, githubtest.WithSpec(specPath(t)))
	forged, err := ghinstallation.NewAppsTransport(http.DefaultTransport, srv.AppID, other.PrivateKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if code := do(t, &http.Client{Transport: forged}, "GET", srv.URL+"/app"); code != 401 {
		t.Errorf("forged JWT: status %d, want 401", code)
	}
	if errs := rec.take(); len(errs) != 1 || !strings.Contains(errs[0], "JWT is not valid") {
		t.Errorf("forged JWT reported %q", errs)
	}
}

func TestUnimplementedOperationIsNamed(t *testing.T) {
	rec := &recorder{t: t}
	srv := githubtest.New(rec, githubtest.WithSpec(specPath(t)))
	_, inst := clients(t, srv)
	if code := do(t, inst, "GET", srv.URL+"/repos/acme/web/pulls"); code != 404 {
		t.Errorf("status %d", code)
	}
	if errs := rec.take(); len(errs) != 1 || !strings.Contains(errs[0], "pulls/list") {
		t.Errorf("reported %q, want it to name pulls/list", errs)
	}
	if code := do(t, inst, "GET", srv.URL+"/no/such/thing"); code != 404 {
		t.Errorf("status %d", code)
	}
	if errs := rec.take(); len(errs) != 1 || !strings.Contains(errs[0], "not an operation in GitHub's REST description") {
		t.Errorf("reported %q", errs)
	}
}

func TestMissingDescription(t *testing.T) {
	rec := &recorder{t: t}
	srv := githubtest.New(rec, githubtest.WithSpec(filepath.Join(t.TempDir(), "nope.json")))
	if os.Getenv("CI") != "" {
		if !rec.failed || len(rec.errors) == 0 {
			t.Errorf("with CI set a missing description must fail the test: errors %q", rec.errors)
		}
		return
	}
	if len(rec.skips) != 1 || srv != nil {
		t.Errorf("without CI a missing description skips the test: skips %q", rec.skips)
	}
}

// Without the description (bot demo on a machine without node_modules) the
// server still serves every operation, multi-segment paths included.
func TestWithoutValidation(t *testing.T) {
	rep := githubtest.NewLogReporter(nil)
	defer rep.Close()
	srv := githubtest.New(rep, githubtest.WithoutValidation())
	if srv.Validating() {
		t.Fatal("validating")
	}
	srv.SetFile("acme", "web", "main", ".github/shipbot.yml", []byte("x: 1\n"))
	c, err := gh.New(gh.Options{AppID: srv.AppID, PrivateKey: srv.PrivateKeyPEM, BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	in := c.Installation(srv.InstallationID)
	b, found, err := in.ReadFile(ctx, "acme", "web", ".github/shipbot.yml", "")
	if err != nil || !found || string(b) != "x: 1\n" {
		t.Fatalf("ReadFile = %q %v %v", b, found, err)
	}
	if _, err := in.CheckRunsForRef(ctx, "acme", "web", "heads/main"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListHookDeliveries(ctx, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if errs := rep.Errors(); len(errs) != 0 {
		t.Errorf("reported %q", errs)
	}
}

func TestFaultPatterns(t *testing.T) {
	srv := githubtest.New(t, githubtest.WithSpec(specPath(t)))
	srv.AddRepo("acme", "web", githubtest.RepoOptions{})
	srv.AddRepo("acme", "api", githubtest.RepoOptions{})
	_, inst := clients(t, srv)
	srv.Fault("GET", "/repos/acme/api", githubtest.Fault{Status: 500, Times: 2})     // exact path
	srv.Fault("*", "/repos/{owner}/{repo}", githubtest.Fault{Status: 503, Times: 1}) // GitHub's template
	for i, want := range []int{500, 500, 503, 200} {
		if code := do(t, inst, "GET", srv.URL+"/repos/acme/api"); code != want {
			t.Errorf("request %d to acme/api: %d, want %d", i+1, code, want)
		}
	}
	srv.Fault("GET", "/repos/acme/*", githubtest.Fault{Status: 502, Times: 1}) // glob
	if code := do(t, inst, "GET", srv.URL+"/repos/acme/web"); code != 502 {
		t.Errorf("glob fault: %d", code)
	}
	start := time.Now()
	srv.Fault("GET", "", githubtest.Fault{Latency: 100 * time.Millisecond, Times: 1})
	if code := do(t, inst, "GET", srv.URL+"/repos/acme/web"); code != 200 || time.Since(start) < 100*time.Millisecond {
		t.Errorf("latency fault: %d after %v", code, time.Since(start))
	}
	faults := 0
	for _, c := range srv.Calls() {
		if c.Fault {
			faults++
		}
	}
	if faults != 4 {
		t.Errorf("%d calls marked as faults, want 4", faults)
	}
}

func TestManifestFormChecksTheManifest(t *testing.T) {
	rec := &recorder{t: t}
	srv := githubtest.New(rec, githubtest.WithSpec(specPath(t)))
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(manifest string) *http.Response {
		resp, err := noRedirect.PostForm(srv.WebURL+"/organizations/acme/settings/apps/new?state=s1", url.Values{"manifest": {manifest}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := post(`{"name":"x","url":"http://bot.example","hook_attributes":{"url":"http://bot.example/webhooks"},"redirect_url":"http://bot.example/cb","permissions":{}}`)
	if resp.StatusCode != 422 {
		t.Errorf("unknown key: %d", resp.StatusCode)
	}
	if errs := rec.take(); len(errs) != 1 || !strings.Contains(errs[0], "permissions") {
		t.Errorf("reported %q", errs)
	}
	resp = post(`{"name":"x","url":"http://bot.example","hook_attributes":{"url":"http://bot.example/webhooks"},"redirect_url":"http://bot.example/cb"}`)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != 302 || loc.Host != "bot.example" || loc.Query().Get("state") != "s1" || loc.Query().Get("code") == "" {
		t.Errorf("redirect = %d %s", resp.StatusCode, loc)
	}
}

func TestRedeliveryHook(t *testing.T) {
	srv := githubtest.New(t, githubtest.WithSpec(specPath(t)))
	got := make(chan githubtest.Delivery, 1)
	srv.OnRedeliver(func(d githubtest.Delivery) int { got <- d; return 202 })
	id := srv.AddDelivery(githubtest.Delivery{GUID: "g", Event: "push", StatusCode: 503})
	c, err := gh.New(gh.Options{AppID: srv.AppID, PrivateKey: srv.PrivateKeyPEM, BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RedeliverHookDelivery(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-got:
		if d.GUID != "g" || !d.Redelivery || d.Event != "push" {
			t.Errorf("redelivered %+v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("hook not called")
	}
}

// An Applied fault carries the write out and then loses or spoils its
// answer, as many times as it says; the requests after it are served.
func TestAppliedFaults(t *testing.T) {
	srv := githubtest.New(t, githubtest.WithSpec(specPath(t)))
	srv.AddRepo("acme", "web", githubtest.RepoOptions{})
	_, inst := clients(t, srv)
	post := func() (int, error) {
		req, _ := http.NewRequest("POST", srv.URL+"/repos/acme/web/deployments",
			strings.NewReader(`{"ref":"main","environment":"staging","required_contexts":[],"payload":{"shipbot_deploy":"d1"}}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := inst.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	srv.Fault("POST", "/repos/{owner}/{repo}/deployments", githubtest.AppliedTimeout(2))
	srv.Fault("POST", "/repos/{owner}/{repo}/deployments", githubtest.Fault{Applied: true, Status: 502, Times: 1})
	for i := range 2 {
		if code, err := post(); err == nil {
			t.Errorf("request %d: answered %d, want the connection dropped", i+1, code)
		}
	}
	if code, err := post(); err != nil || code != 502 {
		t.Errorf("third request: %d, %v; want 502", code, err)
	}
	if code, err := post(); err != nil || code != 201 {
		t.Errorf("fourth request: %d, %v; want 201", code, err)
	}
	if n := len(srv.Deployments("acme", "web")); n != 4 {
		t.Errorf("%d deployments, want 4: every faulted request was applied", n)
	}
	if n := srv.CountWrites(); n != 4 {
		t.Errorf("%d writes recorded, want 4", n)
	}
	// The list shows them newest first, with the payload, filtered.
	if code := do(t, inst, "GET", srv.URL+"/repos/acme/web/deployments?environment=staging&per_page=2"); code != 200 {
		t.Errorf("list: %d", code)
	}
}
