package setup_test

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/setup"
	"github.com/shipbot/shipbot/internal/testenv"
)

const appYML = `# the App shipbot registers
name: shipbot-test
description: Ships code.
public: false
default_permissions:
  checks: write
  contents: read
  deployments: write
  issues: write
  metadata: read
  pull_requests: write
default_events:
  - check_run
  - check_suite
  - issue_comment
  - pull_request
  - push
hook_attributes:
  active: true
callback_urls:
  - http://localhost:3000/auth/callback
`

type flow struct {
	srv    *githubtest.Server
	bot    *httptest.Server
	h      *setup.Handler
	dir    string
	client *http.Client
}

func newFlow(t *testing.T, manifest []byte) *flow {
	t.Helper()
	spec := filepath.Join(testenv.NodeModule(t, "@octokit/openapi"), "generated", "api.github.com.json")
	f := &flow{srv: githubtest.New(t, githubtest.WithSpec(spec)), dir: t.TempDir()}
	var h http.Handler
	f.bot = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(f.bot.Close)
	var err error
	f.h, err = setup.New(setup.Options{Manifest: manifest, PublicURL: f.bot.URL, APIURL: f.srv.URL, EnvDir: f.dir})
	if err != nil {
		t.Fatal(err)
	}
	h = f.h
	jar, _ := cookiejar.New(nil)
	f.client = &http.Client{Jar: jar, Timeout: 30 * time.Second}
	return f
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (int, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var (
	actionRe   = regexp.MustCompile(`<form id="manifest" method="post" action="([^"]+)">`)
	manifestRe = regexp.MustCompile(`name="manifest" value="([^"]+)"`)
)

// register runs the browser's part: the form, the hand-off to GitHub, the
// redirect back to the callback. It returns the final page.
func (f *flow) register(t *testing.T, form url.Values) (int, string) {
	t.Helper()
	code, page := get(t, f.client, f.bot.URL+"/")
	if code != 200 || !strings.Contains(page, `action="/setup/start"`) {
		t.Fatalf("GET / = %d:\n%s", code, page)
	}
	code, page = post(t, f.client, f.bot.URL+"/setup/start", form)
	if code != 200 {
		t.Fatalf("POST /setup/start = %d:\n%s", code, page)
	}
	am, mm := actionRe.FindStringSubmatch(page), manifestRe.FindStringSubmatch(page)
	if am == nil || mm == nil {
		t.Fatalf("hand-off page has no manifest form:\n%s", page)
	}
	// The browser posts the manifest to GitHub, which redirects back.
	return post(t, f.client, html.UnescapeString(am[1]), url.Values{"manifest": {html.UnescapeString(mm[1])}})
}

func TestManifestFlowEndToEnd(t *testing.T) {
	f := newFlow(t, []byte(appYML))
	// An .env with other settings, kept as they are.
	existing := "# local settings\nPORT=4000\nAPP_ID=\nREDIS_URL=\"redis://localhost:6379/0\"\n"
	if err := os.WriteFile(filepath.Join(f.dir, ".env"), []byte(existing), 0o644); err != nil {
		t.Fatal(err)
	}

	code, page := f.register(t, url.Values{"account": {"organization"}, "org": {"acme"}})
	if code != 200 {
		t.Fatalf("callback = %d:\n%s", code, page)
	}
	apps := f.srv.ConvertedApps()
	if len(apps) != 1 {
		t.Fatalf("%d Apps created, want 1", len(apps))
	}
	app := apps[0]

	// What GitHub received.
	m := app.Manifest
	if app.Owner != "acme" {
		t.Errorf("registered for %q, want the organization acme", app.Owner)
	}
	if m["url"] != f.bot.URL || m["redirect_url"] != f.bot.URL+"/setup/callback" {
		t.Errorf("manifest url %v, redirect_url %v", m["url"], m["redirect_url"])
	}
	if hook, _ := m["hook_attributes"].(map[string]any); hook["url"] != f.bot.URL+"/webhooks" || hook["active"] != true {
		t.Errorf("hook_attributes = %v", m["hook_attributes"])
	}
	if cb, _ := m["callback_urls"].([]any); len(cb) != 1 || cb[0] != f.bot.URL+"/auth/callback" {
		t.Errorf("callback_urls = %v, want the path moved onto PUBLIC_URL", m["callback_urls"])
	}
	if perms, _ := m["default_permissions"].(map[string]any); perms["deployments"] != "write" || m["name"] != "shipbot-test" {
		t.Errorf("manifest lost app.yml's settings: %v", m)
	}

	// The page says what next, without secrets.
	for _, want := range []string{"Restart shipbot", "/apps/" + app.Slug + "/installations/new", strconv.FormatInt(app.ID, 10)} {
		if !strings.Contains(page, want) {
			t.Errorf("final page lacks %q:\n%s", want, page)
		}
	}
	for name, secret := range map[string]string{"private key": "PRIVATE KEY", "webhook secret": app.WebhookSecret, "client secret": app.ClientSecret} {
		if strings.Contains(page, secret) {
			t.Errorf("final page shows the %s", name)
		}
	}

	// .env: mode 0600, merged, and it reads back.
	path := filepath.Join(f.dir, ".env")
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf(".env mode = %o, want 600", info.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	env := parseEnv(t, string(raw))
	want := map[string]string{
		"PORT": "4000", "REDIS_URL": "redis://localhost:6379/0",
		"APP_ID": strconv.FormatInt(app.ID, 10), "PRIVATE_KEY": app.PEM, "WEBHOOK_SECRET": app.WebhookSecret,
		"GITHUB_CLIENT_ID": app.ClientID, "GITHUB_CLIENT_SECRET": app.ClientSecret,
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf(".env %s = %q, want %q", k, env[k], v)
		}
	}
	if !strings.HasPrefix(string(raw), "# local settings\nPORT=4000\nAPP_ID=") || strings.Count(string(raw), "APP_ID=") != 1 {
		t.Errorf(".env was not merged in place:\n%s", raw)
	}

	// The credentials read back from .env work: the bot signs in as the new App.
	id, _ := strconv.ParseInt(env["APP_ID"], 10, 64)
	c, err := gh.New(gh.Options{AppID: id, PrivateKey: []byte(env["PRIVATE_KEY"]), BaseURL: f.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	login, err := c.BotLogin(context.Background())
	if err != nil || login != app.Slug+"[bot]" {
		t.Errorf("signed in as %q (%v), want %s[bot]", login, err, app.Slug)
	}

	// Done: the setup page says so and takes no second registration.
	if code, page := get(t, f.client, f.bot.URL+"/"); code != 200 || !strings.Contains(page, "The App is registered") {
		t.Errorf("GET / after setup = %d:\n%s", code, page)
	}
}

func TestPersonalAccountGoesToSettingsAppsNew(t *testing.T) {
	f := newFlow(t, []byte(appYML))
	code, page := post(t, f.client, f.bot.URL+"/setup/start", url.Values{"account": {"user"}})
	if code != 200 {
		t.Fatalf("start = %d", code)
	}
	am := actionRe.FindStringSubmatch(page)
	if am == nil || !strings.HasPrefix(html.UnescapeString(am[1]), f.srv.WebURL+"/settings/apps/new?state=") {
		t.Fatalf("form action = %v", am)
	}
}

func TestCallbackRejectsForeignState(t *testing.T) {
	f := newFlow(t, []byte(appYML))
	// A code without a state this browser started.
	code := f.srv.NewManifestCode()
	status, page := get(t, f.client, f.bot.URL+"/setup/callback?code="+code+"&state=forged")
	if status != http.StatusBadRequest || !strings.Contains(page, "Start again") {
		t.Errorf("forged state = %d:\n%s", status, page)
	}
	// A state started in another browser (no cookie) does not count either.
	other := &http.Client{}
	if _, page := post(t, other, f.bot.URL+"/setup/start", url.Values{"account": {"user"}}); true {
		am := actionRe.FindStringSubmatch(page)
		u, _ := url.Parse(html.UnescapeString(am[1]))
		status, _ = get(t, f.client, f.bot.URL+"/setup/callback?code="+code+"&state="+u.Query().Get("state"))
		if status != http.StatusBadRequest {
			t.Errorf("state from another browser = %d, want 400", status)
		}
	}
	if _, err := os.Stat(filepath.Join(f.dir, ".env")); !os.IsNotExist(err) {
		t.Errorf(".env written after a rejected callback (%v)", err)
	}
	if n := len(f.srv.ConvertedApps()); n != 0 {
		t.Errorf("%d codes exchanged, want 0", n)
	}
}

func TestBadOrganizationName(t *testing.T) {
	f := newFlow(t, []byte(appYML))
	status, page := post(t, f.client, f.bot.URL+"/setup/start", url.Values{"account": {"organization"}, "org": {"acme/../x"}})
	if status != http.StatusBadRequest || !strings.Contains(page, "organization") {
		t.Errorf("bad org = %d:\n%s", status, page)
	}
}

func TestRepositoryAppYML(t *testing.T) {
	// The repository's own app.yml, once it exists, must make a manifest
	// GitHub accepts.
	p := filepath.Join(testenv.RepoRoot(t), "app.yml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Skipf("no app.yml at the repository root yet (%v)", err)
	}
	f := newFlow(t, b)
	if code, page := f.register(t, url.Values{"account": {"user"}}); code != 200 {
		t.Fatalf("callback = %d:\n%s", code, page)
	}
	m := f.srv.ConvertedApps()[0].Manifest
	if hook, _ := m["hook_attributes"].(map[string]any); hook["url"] != f.bot.URL+"/webhooks" || m["redirect_url"] != f.bot.URL+"/setup/callback" {
		t.Errorf("manifest URLs not on PUBLIC_URL: hook %v, redirect %v", m["hook_attributes"], m["redirect_url"])
	}
	for _, c := range m["callback_urls"].([]any) {
		if !strings.HasPrefix(c.(string), f.bot.URL+"/") {
			t.Errorf("callback URL %v not on PUBLIC_URL", c)
		}
	}
	t.Logf("manifest sent: url %v, callback_urls %v", m["url"], m["callback_urls"])
}

func TestWebURL(t *testing.T) {
	for in, want := range map[string]string{
		"":                                "https://github.com",
		"https://api.github.com":          "https://github.com",
		"https://api.github.com/":         "https://github.com",
		"https://ghe.example.com/api/v3":  "https://ghe.example.com",
		"https://ghe.example.com/api/v3/": "https://ghe.example.com",
		"http://127.0.0.1:9999":           "http://127.0.0.1:9999",
	} {
		got, err := setup.WebURL(in)
		if err != nil || got != want {
			t.Errorf("WebURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestWriteEnvRoundTrips(t *testing.T) {
	dir := t.TempDir()
	vals := []setup.EnvVar{
		{"PEM", "-----BEGIN RSA PRIVATE KEY-----\nMIIE\\x\"q\n-----END RSA PRIVATE KEY-----\n"},
		{"PLAIN", "abc123"},
		{"SPACES", "a b # c"},
		{"EMPTY", ""},
	}
	if _, err := setup.WriteEnv(dir, vals); err != nil {
		t.Fatal(err)
	}
	// Again, with one value changed: replaced in place, not appended.
	vals[1].Value = "def456"
	if _, err := setup.WriteEnv(dir, vals); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, ".env"))
	env := parseEnv(t, string(raw))
	for _, v := range vals {
		if env[v.Key] != v.Value {
			t.Errorf("%s = %q, want %q", v.Key, env[v.Key], v.Value)
		}
	}
	if strings.Count(string(raw), "\n") != len(vals) {
		t.Errorf("want one line per variable:\n%s", raw)
	}
}

// parseEnv reads the .env format WriteEnv writes: KEY=value, or
// KEY="..." with \n, \r, \" and \\ escapes; # comments and blank lines.
func parseEnv(t *testing.T, s string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("bad .env line %q", line)
		}
		if strings.HasPrefix(v, `"`) {
			if len(v) < 2 || !strings.HasSuffix(v, `"`) {
				t.Fatalf("unterminated quoted value in %q", line)
			}
			var b strings.Builder
			body := v[1 : len(v)-1]
			for i := 0; i < len(body); i++ {
				if body[i] != '\\' || i+1 == len(body) {
					b.WriteByte(body[i])
					continue
				}
				i++
				switch body[i] {
				case 'n':
					b.WriteByte('\n')
				case 'r':
					b.WriteByte('\r')
				default:
					b.WriteByte(body[i])
				}
			}
			v = b.String()
		}
		out[k] = v
	}
	return out
}
