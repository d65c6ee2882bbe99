package dashboard_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/dashboard"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/store"
	"github.com/shipbot/shipbot/internal/store/record"
	"github.com/shipbot/shipbot/internal/testenv"
)

const (
	token  = "0123456789abcdef0123456789abcdef-operator"
	public = "octo-org/web"    // mona can read it
	hidden = "octo-org/secret" // mona cannot
)

// fixture is a dashboard over a real embedded store holding deploys of two
// repositories, with githubtest as GitHub.
type fixture struct {
	gh  *githubtest.Server
	st  *store.Embedded
	ts  *httptest.Server
	opt dashboard.Options
}

func newFixture(t *testing.T, configure func(*dashboard.Options)) *fixture {
	t.Helper()
	gh := githubtest.New(t, githubtest.WithSpec(filepath.Join(testenv.NodeModule(t, "@octokit/openapi"), "generated", "api.github.com.json")))
	gh.AddRepo("octo-org", "web", githubtest.RepoOptions{})
	gh.AddRepo("octo-org", "secret", githubtest.RepoOptions{Private: true})
	gh.SetPermission("octo-org", "web", "mona", "write")
	gh.SetOAuthUser("mona")
	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	seed(t, st)

	f := &fixture{gh: gh, st: st}
	var h http.Handler
	f.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(f.ts.Close)
	id, secret := gh.OAuthClient()
	f.opt = dashboard.Options{
		Store: st, PublicURL: f.ts.URL, APIURL: gh.URL, ClientID: id, ClientSecret: secret,
		Token: token, SessionSecret: []byte("webhook-secret"), Version: "test",
	}
	if configure != nil {
		configure(&f.opt)
	}
	d, err := dashboard.New(f.opt)
	if err != nil {
		t.Fatal(err)
	}
	h = d
	return f
}

func seed(t *testing.T, st *store.Embedded) {
	t.Helper()
	ctx := context.Background()
	start := time.Now().Add(-time.Hour)
	for _, repo := range []string{public, hidden} {
		env := record.EnvKey{Repo: repo, Name: "production"}
		name := strings.TrimPrefix(repo, "octo-org/")
		done := record.Deploy{
			ID: "push-" + name + "-1-production", Env: env, SHA: "abcdef0123456789abcdef0123456789abcdef01", Ref: "main",
			Creator: "hubot", Kind: record.KindPush, State: record.StateFailure, Reason: "batch 2: instance i-2 failed /healthz",
			CreatedAt: start, StartedAt: start, FinishedAt: start.Add(time.Minute), Previous: "9999999999999999999999999999999999999999",
			LogTail: "building…\ninstalling on i-1\n",
			Batches: []record.BatchTiming{
				{Index: 0, Instances: []string{"i-1"}, Started: start, Finished: start.Add(10 * time.Second), Install: 3 * time.Second, Health: 2 * time.Second},
				{Index: 1, Instances: []string{"i-2", "i-3"}, Started: start.Add(10 * time.Second), Finished: start.Add(50 * time.Second), Err: "i-2: /healthz answered 500"},
			},
		}
		if err := st.PutDeploy(ctx, done); err != nil {
			t.Fatal(err)
		}
		if err := st.RecordRelease(ctx, env, record.Release{DeployID: "push-" + name + "-0-production", SHA: "9999999999999999999999999999999999999999", By: "octocat", At: start, Result: record.ResultSuccess}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.LockEnvironment(ctx, env, "octocat", "release freeze"); err != nil {
			t.Fatal(err)
		}
		if err := st.PutPreview(ctx, record.Preview{Repo: repo, Number: 7, SHA: "7777777777777777777777777777777777777777", URL: "http://pr-7." + name + ".test", UpdatedAt: start}); err != nil {
			t.Fatal(err)
		}
	}
}

var noRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func (f *fixture) get(t *testing.T, c *http.Client, path string, header ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.ts.URL+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if c == nil {
		c = &http.Client{CheckRedirect: noRedirect}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestNoSession: pages redirect to sign-in, data requests get 401, a wrong
// bearer token gets 401; the sign-in page and the assets are open.
func TestNoSession(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct {
		name, path string
		header     []string
		status     int
		location   string
	}{
		{"home", "/", nil, http.StatusFound, "/auth/signin?next=%2F"},
		{"deploy page", "/deploys/push-web-1-production", nil, http.StatusFound, "/auth/signin?next=%2Fdeploys%2Fpush-web-1-production"},
		{"deploy json", "/deploys/push-web-1-production.json", nil, http.StatusUnauthorized, ""},
		{"accept json", "/deploys/push-web-1-production", []string{"Accept", "application/json"}, http.StatusUnauthorized, ""},
		{"event stream", "/", []string{"Accept", "text/event-stream"}, http.StatusUnauthorized, ""},
		{"wrong bearer", "/", []string{"Authorization", "Bearer " + strings.Repeat("x", 40)}, http.StatusUnauthorized, ""},
		{"forged cookie", "/", []string{"Cookie", "shipbot_session=eyJrIjoib3BlcmF0b3IifQ.AAAA"}, http.StatusFound, "/auth/signin?next=%2F"},
		{"sign-in page", "/auth/signin", nil, http.StatusOK, ""},
		{"stylesheet", "/assets/style.css", nil, http.StatusOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.get(t, nil, tc.path, tc.header...)
			if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
				t.Fatalf("%d to %q, want %d to %q\n%s", resp.StatusCode, resp.Header.Get("Location"), tc.status, tc.location, body)
			}
			if strings.Contains(body, "octo-org/") {
				t.Fatalf("the answer names a repository:\n%s", body)
			}
		})
	}
}

// TestSigninPageSaysHowToEnable: with neither OAuth nor a token, the page
// says how to turn sign-in on.
func TestSigninPageSaysHowToEnable(t *testing.T) {
	f := newFixture(t, func(o *dashboard.Options) { o.ClientID, o.ClientSecret, o.Token = "", "", "" })
	_, body := f.get(t, nil, "/auth/signin")
	if !strings.Contains(body, "set GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET") || !strings.Contains(body, "DASHBOARD_TOKEN") {
		t.Fatalf("sign-in page:\n%s", body)
	}
	if strings.Contains(body, "Sign in with GitHub</a>") || strings.Contains(body, `name="token"`) {
		t.Fatalf("sign-in page offers a way in that is not configured:\n%s", body)
	}
}

// TestDashboardToken: the bearer token sees everything; the form opens a
// cookie session; a wrong token does not; changing DASHBOARD_TOKEN ends
// the sessions opened with the old one.
func TestDashboardToken(t *testing.T) {
	f := newFixture(t, nil)
	resp, body := f.get(t, nil, "/", "Authorization", "Bearer "+token)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, public) || !strings.Contains(body, hidden) {
		t.Fatalf("bearer: %d\n%s", resp.StatusCode, body)
	}
	resp, body = f.get(t, nil, "/deploys/push-secret-1-production.json", "Authorization", "Bearer "+token)
	var dj struct {
		State   string               `json:"state"`
		Batches []record.BatchTiming `json:"batches"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &dj) != nil || dj.State != record.StateFailure || len(dj.Batches) != 2 {
		t.Fatalf("bearer json: %d %+v\n%s", resp.StatusCode, dj, body)
	}

	post := func(tok string) *http.Response {
		c := &http.Client{CheckRedirect: noRedirect}
		resp, err := c.PostForm(f.ts.URL+"/auth/signin", url.Values{"token": {tok}, "next": {"/deploys/push-web-1-production"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := post("not-the-token"); resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Fatalf("wrong token: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	resp = post(token)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/deploys/push-web-1-production" {
		t.Fatalf("form: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "shipbot_session" {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Secure {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Lax, not Secure on http", cookie)
	}
	if strings.Contains(cookie.Value, token) {
		t.Fatal("the cookie carries the dashboard token")
	}
	resp, body = f.get(t, nil, "/", "Cookie", cookie.String())
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, hidden) || !strings.Contains(body, "Sign out") {
		t.Fatalf("with the cookie: %d\n%s", resp.StatusCode, body)
	}

	// Another dashboard with the same secret but a new token: the old
	// session is over.
	o := f.opt
	o.Token = strings.Repeat("n", 40)
	d2, err := dashboard.New(o)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.AddCookie(cookie)
	d2.ServeHTTP(rec, req)
	if rec.Code != http.StatusFound {
		t.Fatalf("session from before the token changed: %d", rec.Code)
	}
}

// TestSecureCookieOnHTTPS: behind an https PUBLIC_URL the cookie is Secure.
func TestSecureCookieOnHTTPS(t *testing.T) {
	f := newFixture(t, func(o *dashboard.Options) { o.PublicURL = "https://shipbot.example.com" })
	d, err := dashboard.New(f.opt)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/auth/signin", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	d.ServeHTTP(rec, req)
	cs := rec.Result().Cookies()
	if rec.Code != http.StatusSeeOther || len(cs) != 1 || !cs[0].Secure {
		t.Fatalf("%d, cookies %v", rec.Code, cs)
	}
}

// signInWithGitHub runs the OAuth round trip through githubtest, as a
// browser following redirects would.
func (f *fixture) signInWithGitHub(t *testing.T, next string) (*http.Client, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, body := f.get(t, c, "/auth/github?next="+url.QueryEscape(next))
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != next {
		t.Fatalf("sign-in ended at %s with %d\n%s", resp.Request.URL, resp.StatusCode, body)
	}
	return c, body
}

// TestOAuthSignIn: "Sign in with GitHub" against githubtest; the user sees
// the repositories GitHub lists for them and nothing of the others, not
// even on a deploy page; the list is cached for the session.
func TestOAuthSignIn(t *testing.T) {
	f := newFixture(t, nil)
	c, body := f.signInWithGitHub(t, "/")
	if !strings.Contains(body, public) || !strings.Contains(body, "mona") {
		t.Fatalf("home after sign-in does not show %s for mona:\n%s", public, body)
	}
	if strings.Contains(body, hidden) || strings.Contains(body, "pr-7.secret") {
		t.Fatalf("home shows %s to a user who cannot read it:\n%s", hidden, body)
	}
	auths := f.gh.OAuthAuthorizations()
	if len(auths) != 1 || auths[0].State == "" || auths[0].RedirectURI != f.ts.URL+"/auth/callback" {
		t.Fatalf("authorize requests %+v", auths)
	}
	for path, want := range map[string]int{
		"/deploys/push-web-1-production":         http.StatusOK,
		"/deploys/push-web-1-production.json":    http.StatusOK,
		"/deploys/push-secret-1-production":      http.StatusNotFound,
		"/deploys/push-secret-1-production.json": http.StatusNotFound,
		"/deploys/no-such-deploy":                http.StatusNotFound,
	} {
		resp, body := f.get(t, c, path)
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
		if strings.Contains(body, "secret") && want == http.StatusNotFound && strings.Contains(body, "healthz") {
			t.Errorf("%s leaks the hidden deploy:\n%s", path, body)
		}
	}
	lists := 0
	for _, call := range f.gh.Calls() {
		if call.Operation == "apps/list-installations-for-authenticated-user" {
			lists++
		}
	}
	if lists != 1 {
		t.Errorf("GitHub was asked for the user's installations %d times in one session, want 1 (cached)", lists)
	}

	// Sign out, and the session is gone.
	resp, err := c.PostForm(f.ts.URL+"/auth/signout", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp, _ := f.get(t, &http.Client{Jar: c.Jar, CheckRedirect: noRedirect}, "/"); resp.StatusCode != http.StatusFound {
		t.Fatalf("after sign-out: %d", resp.StatusCode)
	}
}

// TestOAuthRevokedToken: once GitHub stops accepting the user's token, the
// session ends at the next refresh of the repository list.
func TestOAuthRevokedToken(t *testing.T) {
	f := newFixture(t, func(o *dashboard.Options) { o.RepoCacheTTL = time.Nanosecond })
	c, _ := f.signInWithGitHub(t, "/")
	f.gh.RevokeUserTokens("mona")
	resp, _ := f.get(t, &http.Client{Jar: c.Jar, CheckRedirect: noRedirect}, "/")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "/auth/signin") {
		t.Fatalf("with a revoked token: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestOAuthStateChecked: a callback whose state is not the one this
// browser started with is refused (CSRF on the round trip), and so is
// one the user denied on GitHub.
func TestOAuthStateChecked(t *testing.T) {
	f := newFixture(t, nil)
	resp, body := f.get(t, nil, "/auth/callback?code=abc&state=forged")
	if resp.StatusCode != http.StatusBadRequest || len(resp.Cookies()) > 1 {
		t.Fatalf("forged callback: %d\n%s", resp.StatusCode, body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "shipbot_session" && c.Value != "" {
			t.Fatal("a forged callback opened a session")
		}
	}
	f.gh.DenyNextOAuth()
	jar, _ := cookiejar.New(nil)
	resp, body = f.get(t, &http.Client{Jar: jar}, "/auth/github")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "access_denied") {
		t.Fatalf("denied: %d\n%s", resp.StatusCode, body)
	}
}

// TestDeployPage: a finished deploy shows its batches with instances and
// timings, the failure reason and the log.
func TestDeployPage(t *testing.T) {
	f := newFixture(t, nil)
	resp, body := f.get(t, nil, "/deploys/push-web-1-production", "Authorization", "Bearer "+token)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d\n%s", resp.StatusCode, body)
	}
	for _, want := range []string{"canary", "i-2, i-3", "i-2: /healthz answered 500", "batch 2: instance i-2 failed /healthz",
		"installing on i-1", "https://", "abcdef0", `data-state="failure"`} {
		if want == "https://" {
			want = f.gh.WebURL + "/octo-org/web/commit/abcdef0123456789abcdef0123456789abcdef01"
		}
		if !strings.Contains(body, want) {
			t.Errorf("deploy page lacks %q", want)
		}
	}
	if strings.Contains(body, "deploy.js") {
		t.Error("a finished deploy's page polls")
	}
	_, home := f.get(t, nil, "/", "Authorization", "Bearer "+token)
	for _, want := range []string{"release freeze", "locked by octocat", "999999", f.gh.WebURL + "/octo-org/web/commit/9999999999999999999999999999999999999999", "pr-7.web.test", "octo-org/web#7"} {
		if !strings.Contains(home, want) {
			t.Errorf("home lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(body, home)
	}
}

func TestWebURL(t *testing.T) {
	for api, web := range map[string]string{
		"https://api.github.com":          "https://github.com",
		"https://api.github.com/":         "https://github.com",
		"https://ghe.example.com/api/v3":  "https://ghe.example.com",
		"https://ghe.example.com/api/v3/": "https://ghe.example.com",
		"https://api.acme.ghe.com":        "https://acme.ghe.com",
		"http://127.0.0.1:4321":           "http://127.0.0.1:4321",
	} {
		if got := dashboard.WebURL(api); got != web {
			t.Errorf("WebURL(%q) = %q, want %q", api, got, web)
		}
	}
}

// TestProblemsShownToOperators: what the operator must fix (Slack refusing
// the token) is at the top of the home page for the operator's token, and
// not shown to a GitHub user who reads only some repositories.
func TestProblemsShownToOperators(t *testing.T) {
	const fix = "Slack: SLACK_BOT_TOKEN is not valid: set it to the Bot User OAuth Token"
	f := newFixture(t, func(o *dashboard.Options) { o.Problems = func() []string { return []string{fix} } })
	_, body := f.get(t, nil, "/", "Authorization", "Bearer "+token)
	if !strings.Contains(body, `<p class="problem" role="alert">⚠️ `+fix) {
		t.Errorf("the operator's home page does not show the problem:\n%s", body)
	}
	if _, body := f.signInWithGitHub(t, "/"); !strings.Contains(body, public) || strings.Contains(body, fix) {
		t.Errorf("a signed-in GitHub user sees the operator's problem, or not the home page:\n%s", body)
	}
}
