// Package setup registers shipbot as a GitHub App when it has no
// credentials yet, through GitHub's App-manifest flow: a page that posts
// app.yml (as JSON, with the bot's PUBLIC_URL filled in) to GitHub, and a
// callback that exchanges the code GitHub hands back for the App's id, key
// and secrets and saves them to .env.
//
// It is a plain http.Handler (mount it with echo.WrapHandler) serving
//
//	GET  /                the form: personal account or organization
//	POST /setup/start     hands the browser to GitHub with the manifest
//	GET  /setup/callback  ?code=…&state=…: exchange, write .env, say what next
//
// The .env format: one KEY=value per line; a value that needs it is in
// double quotes with \n, \" and \\ escapes (the private key is one line).
package setup

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/logctx"
)

// Options configure the setup Handler.
type Options struct {
	// Manifest is app.yml: the App manifest in YAML.
	Manifest []byte
	// PublicURL is the bot's external URL (PUBLIC_URL); GitHub sends
	// webhooks and the user back to it.
	PublicURL string
	// APIURL is GITHUB_API_URL ("" for https://api.github.com).
	APIURL string
	// WebURL is GitHub's web root; derived from APIURL when empty
	// (api.github.com → github.com, https://HOST/api/v3 → https://HOST).
	WebURL string
	// EnvDir is the directory whose .env receives the credentials.
	EnvDir string
	// Transport carries the code exchange (http.DefaultTransport if nil).
	Transport http.RoundTripper
	// OnConfigured, if set, is called after .env is written.
	OnConfigured func(gh.AppCredentials)
}

var _ http.Handler = (*Handler)(nil)

// Handler serves the setup pages.
type Handler struct {
	opts     Options
	manifest map[string]any

	mu         sync.Mutex
	states     map[string]time.Time // CSRF state → expiry
	configured *gh.AppCredentials
}

const (
	stateCookie = "shipbot_setup_state"
	stateTTL    = time.Hour // GitHub's codes live an hour too
	webhookPath = "/webhooks"
	callback    = "/setup/callback"
)

// New checks the options and the manifest.
func New(opts Options) (*Handler, error) {
	pub, err := url.Parse(strings.TrimRight(opts.PublicURL, "/"))
	if err != nil || (pub.Scheme != "http" && pub.Scheme != "https") || pub.Host == "" {
		return nil, fmt.Errorf("setup: PUBLIC_URL %q is not an http(s) URL; set it to the address GitHub can reach the bot at", opts.PublicURL)
	}
	opts.PublicURL = pub.String()
	if opts.WebURL == "" {
		opts.WebURL, err = WebURL(opts.APIURL)
		if err != nil {
			return nil, err
		}
	}
	opts.WebURL = strings.TrimRight(opts.WebURL, "/")
	if opts.EnvDir == "" {
		opts.EnvDir = "."
	}
	m, err := manifest(opts.Manifest, opts.PublicURL)
	if err != nil {
		return nil, err
	}
	return &Handler{opts: opts, manifest: m, states: map[string]time.Time{}}, nil
}

// WebURL derives GitHub's web root from GITHUB_API_URL.
func WebURL(apiURL string) (string, error) {
	u, err := gh.ParseBaseURL(apiURL)
	if err != nil {
		return "", err
	}
	if strings.EqualFold(u.Host, "api.github.com") {
		return "https://github.com", nil
	}
	u.Path = strings.TrimSuffix(strings.TrimRight(u.Path, "/"), "/api/v3")
	u.RawQuery, u.Fragment = "", ""
	return strings.TrimRight(u.String(), "/"), nil
}

// manifest reads app.yml and points its URLs at the bot: webhooks to
// PUBLIC_URL/webhooks, the redirect to this package's callback, OAuth
// callback URLs moved onto PUBLIC_URL keeping their paths. The homepage
// (url) is kept when app.yml sets one, else it is PUBLIC_URL.
func manifest(yml []byte, public string) (map[string]any, error) {
	var m map[string]any
	if err := yaml.Unmarshal(yml, &m); err != nil {
		return nil, fmt.Errorf("setup: app.yml is not valid YAML: %w", err)
	}
	if m == nil {
		return nil, errors.New("setup: app.yml is empty; it should hold the App manifest (name, default_permissions, default_events)")
	}
	if u, _ := m["url"].(string); u == "" {
		m["url"] = public
	}
	hook, _ := m["hook_attributes"].(map[string]any)
	if hook == nil {
		hook = map[string]any{}
	}
	hook["url"] = public + webhookPath
	if _, ok := hook["active"]; !ok {
		hook["active"] = true
	}
	m["hook_attributes"] = hook
	m["redirect_url"] = public + callback
	callbacks := []any{}
	list, _ := m["callback_urls"].([]any)
	for _, c := range list {
		s, _ := c.(string)
		u, err := url.Parse(s)
		if err != nil || s == "" {
			return nil, fmt.Errorf("setup: app.yml callback_urls entry %q is not a URL", s)
		}
		callbacks = append(callbacks, public+u.RequestURI())
	}
	if len(callbacks) == 0 {
		callbacks = append(callbacks, public)
	}
	m["callback_urls"] = callbacks
	if _, err := json.Marshal(m); err != nil {
		return nil, fmt.Errorf("setup: app.yml cannot be sent as JSON: %w", err)
	}
	return m, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	switch {
	case r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		h.index(w, r)
	case r.URL.Path == "/setup/start" && r.Method == http.MethodPost:
		h.start(w, r)
	case r.URL.Path == callback && r.Method == http.MethodGet:
		h.callback(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (h *Handler) done() *gh.AppCredentials {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.configured
}

func (h *Handler) index(w http.ResponseWriter, r *http.Request) {
	if c := h.done(); c != nil {
		h.render(w, http.StatusOK, donePage, h.doneData(*c))
		return
	}
	h.render(w, http.StatusOK, indexPage, map[string]any{"Public": h.opts.PublicURL, "Web": h.opts.WebURL, "Name": h.manifest["name"]})
}

var orgName = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9]|-[A-Za-z0-9]){0,38}$`)

func (h *Handler) start(w http.ResponseWriter, r *http.Request) {
	if h.done() != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if err := r.ParseForm(); err != nil {
		h.fail(w, http.StatusBadRequest, "The form could not be read: "+err.Error())
		return
	}
	target := h.opts.WebURL + "/settings/apps/new"
	if r.PostForm.Get("account") == "organization" {
		org := strings.TrimSpace(r.PostForm.Get("org"))
		if !orgName.MatchString(org) {
			h.fail(w, http.StatusBadRequest, fmt.Sprintf("%q is not an organization name (letters, digits and single hyphens, up to 39). Go back and enter the organization's login as it appears in its GitHub URL.", org))
			return
		}
		target = h.opts.WebURL + "/organizations/" + url.PathEscape(org) + "/settings/apps/new"
	}
	state := randomState()
	h.mu.Lock()
	now := time.Now()
	for s, exp := range h.states {
		if now.After(exp) {
			delete(h.states, s)
		}
	}
	h.states[state] = now.Add(stateTTL)
	h.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: stateCookie, Value: state, Path: callback, MaxAge: int(stateTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: strings.HasPrefix(h.opts.PublicURL, "https://")})
	js, _ := json.Marshal(h.manifest)
	h.render(w, http.StatusOK, handoffPage, map[string]any{"Action": target + "?state=" + url.QueryEscape(state), "Manifest": string(js)})
}

func (h *Handler) callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	log := logctx.From(ctx)
	if h.done() != nil {
		h.fail(w, http.StatusConflict, "The App is already registered. Restart shipbot to use it.")
		return
	}
	q := r.URL.Query()
	state, code := q.Get("state"), q.Get("code")
	cookie, err := r.Cookie(stateCookie)
	if state == "" || code == "" || err != nil || subtle.ConstantTimeCompare([]byte(cookie.Value), []byte(state)) != 1 || !h.takeState(state) {
		log.Warn("setup callback with a missing or unknown state; ignored")
		h.fail(w, http.StatusBadRequest, "This link did not come from a registration started here (or it expired). Start again from the setup page.")
		return
	}
	creds, err := gh.ConvertManifest(ctx, h.opts.APIURL, h.opts.Transport, code)
	if err != nil {
		log.Error("setup: exchanging the manifest code failed", "err", err)
		h.fail(w, http.StatusBadGateway, "GitHub did not hand over the App's credentials: "+err.Error())
		return
	}
	vals := []EnvVar{
		{"APP_ID", strconv.FormatInt(creds.ID, 10)},
		{"PRIVATE_KEY", creds.PEM},
		{"WEBHOOK_SECRET", creds.WebhookSecret},
		{"GITHUB_CLIENT_ID", creds.ClientID},
		{"GITHUB_CLIENT_SECRET", creds.ClientSecret},
	}
	path, err := WriteEnv(h.opts.EnvDir, vals)
	if err != nil {
		log.Error("setup: writing .env failed", "err", err)
		h.fail(w, http.StatusInternalServerError, fmt.Sprintf("The App %q was created on GitHub, but its credentials could not be saved: %v. Fix the directory's permissions, then delete the App on GitHub and register again.", creds.Name, err))
		return
	}
	h.mu.Lock()
	h.configured = &creds
	h.mu.Unlock()
	log.Info("GitHub App registered; credentials written", "app_id", creds.ID, "slug", creds.Slug, "env", path)
	if h.opts.OnConfigured != nil {
		h.opts.OnConfigured(creds)
	}
	h.render(w, http.StatusOK, donePage, h.doneData(creds))
}

func (h *Handler) doneData(c gh.AppCredentials) map[string]any {
	html := strings.TrimRight(c.HTMLURL, "/")
	if html == "" {
		html = h.opts.WebURL + "/apps/" + c.Slug
	}
	return map[string]any{"Name": c.Name, "ID": c.ID, "Install": html + "/installations/new", "AppURL": html, "Env": envPath(h.opts.EnvDir), "Public": h.opts.PublicURL}
}

// takeState consumes a live state.
func (h *Handler) takeState(s string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	exp, ok := h.states[s]
	delete(h.states, s)
	return ok && time.Now().Before(exp)
}

func randomState() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (h *Handler) fail(w http.ResponseWriter, status int, msg string) {
	h.render(w, status, errorPage, map[string]any{"Message": msg})
}

func (h *Handler) render(w http.ResponseWriter, status int, t *template.Template, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = t.Execute(w, data)
}

const layout = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>shipbot setup</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}
fieldset{border:1px solid #ccc;padding:1rem}button{font-size:1rem;padding:.4rem 1rem}code{background:#f3f3f3;padding:0 .2rem}</style>
</head><body>{{template "body" .}}</body></html>`

func page(body string) *template.Template {
	return template.Must(template.Must(template.New("layout").Parse(layout)).New("body").Parse(body))
}

var indexPage = page(`<h1>Set up shipbot</h1>
<p>shipbot has no GitHub App yet. Register one from <code>app.yml</code>: GitHub shows you the App
({{with .Name}}<strong>{{.}}</strong>, {{end}}webhooks to <code>{{.Public}}/webhooks</code>), you confirm, and shipbot saves its credentials.</p>
<form method="post" action="/setup/start"><fieldset><legend>Register the App for</legend>
<p><label><input type="radio" name="account" value="user" checked> my personal account</label></p>
<p><label><input type="radio" name="account" value="organization"> the organization
<input type="text" name="org" placeholder="organization login" autocomplete="off"></label></p>
<button type="submit">Register on {{.Web}}</button></fieldset></form>`)

var handoffPage = page(`<h1>Continue on GitHub</h1>
<form id="manifest" method="post" action="{{.Action}}">
<input type="hidden" name="manifest" value="{{.Manifest}}">
<p>Sending the App manifest to GitHub…</p><button type="submit">Continue to GitHub</button></form>
<script>document.getElementById("manifest").submit()</script>`)

var donePage = page(`<h1>The App is registered</h1>
<p><strong>{{.Name}}</strong> (App id {{.ID}}) exists on GitHub, and its id, private key, webhook secret and
client credentials are saved in <code>{{.Env}}</code> (readable by this user only).</p>
<h2>What happens next</h2>
<ol>
<li><strong>Restart shipbot.</strong> It reads <code>.env</code> when it starts; until then it keeps serving this page.</li>
<li><strong><a href="{{.Install}}">Install the App</a></strong> on the repositories it should deploy.</li>
<li>Add <code>.github/shipbot.yml</code> to a repository's default branch if the defaults do not fit, then open a pull request: shipbot comments with its preview link.</li>
</ol>
<p>GitHub sends webhooks to <code>{{.Public}}/webhooks</code>; the App's settings are at <a href="{{.AppURL}}">{{.AppURL}}</a>.</p>`)

var errorPage = page(`<h1>Setup did not finish</h1><p>{{.Message}}</p><p><a href="/">Back to the setup page</a></p>`)
