// Package dashboard owns the bot's read-only web pages over the deploy
// store: the home page (per repository, each environment's current
// release, lock, queue, running rollout and last deploys; the previews;
// the repositories the App is installed on) and
// a page per deploy at /deploys/{id}, the page every GitHub deployment's
// log_url points to, which follows a running rollout live by polling
// /deploys/{id}.json.
//
// It also owns who may see them: "Sign in with GitHub" through the App's
// OAuth client (a user sees the repositories the App is installed on that
// they can read, as GitHub lists them for the user's token), or the
// operator's DASHBOARD_TOKEN, as a bearer token or typed into the sign-in
// form. Sessions live in an HMAC-signed cookie, so any number of web
// processes can serve them. Nothing here writes to the store.
//
// Routes (cmd/bot mounts them):
//
//	GET  /                     home
//	GET  /deploys/{id}         a deploy; /deploys/{id}.json the same as JSON
//	GET  /assets/{file}        CSS and JS, embedded
//	GET  /auth/signin          the sign-in page; POST: the token form
//	GET  /auth/github          start the OAuth round trip
//	GET  /auth/callback        its end (the App's callback URL)
//	POST /auth/signout
package dashboard

import (
	"context"
	"crypto/sha256"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/logctx"
	"github.com/shipbot/shipbot/internal/store/record"
)

// Store is what the dashboard reads: the deploy records, releases, locks,
// slots and previews internal/store keeps.
type Store interface {
	ListRepos(ctx context.Context) ([]string, error)
	ListEnvironments(ctx context.Context, repo string) ([]record.EnvKey, error)
	ListDeploys(ctx context.Context, env record.EnvKey, n int) ([]record.Deploy, error)
	GetDeploy(ctx context.Context, id string) (record.Deploy, error)
	CurrentRelease(ctx context.Context, env record.EnvKey) (record.Release, error)
	EnvironmentLock(ctx context.Context, env record.EnvKey) (record.EnvLock, bool, error)
	Pending(ctx context.Context, env record.EnvKey) (string, bool, error)
	Running(ctx context.Context, env record.EnvKey) (string, bool, error)
	ListPreviews(ctx context.Context) ([]record.Preview, error)
	Releases(ctx context.Context, env record.EnvKey, n int) ([]record.Release, error)
	ListAudit(ctx context.Context, f record.AuditFilter) (record.AuditPage, error)
	EachAudit(ctx context.Context, f record.AuditFilter, fn func(record.AuditEntry) error) error
	ListInstallations(ctx context.Context) ([]record.Installation, error)
}

// Options configure a Dashboard.
type Options struct {
	Store Store
	// PublicURL is the bot's external URL (PUBLIC_URL): the OAuth callback
	// is PublicURL/auth/callback, and cookies are Secure when it is https.
	PublicURL string
	// APIURL is GITHUB_API_URL; the web host (sign-in, commit links) is
	// derived from it by WebURL.
	APIURL string
	// ClientID and ClientSecret are the App's OAuth client
	// (GITHUB_CLIENT_ID, GITHUB_CLIENT_SECRET); empty turns off sign-in
	// with GitHub.
	ClientID, ClientSecret string
	// Token is DASHBOARD_TOKEN; empty turns off token access.
	Token string
	// SessionSecret keys the session cookies (the bot passes
	// WEBHOOK_SECRET; keys for signing and sealing are derived from it).
	SessionSecret []byte
	// HTTPClient talks to GitHub; http.DefaultClient if nil.
	HTTPClient *http.Client
	Logger     *slog.Logger
	Version    string
	// RepoCacheTTL is how long a user's list of repositories is reused
	// before GitHub is asked again (default 5 minutes).
	RepoCacheTTL time.Duration
	Now          func() time.Time
	// Problems are what the operator must fix that is not a deploy's
	// (Slack refusing the token or a channel), each a sentence with the
	// fix; shown at the top of the home page to operators. May be nil.
	Problems func() []string
}

// Dashboard serves the pages; it is an http.Handler.
type Dashboard struct {
	o      Options
	web    string // GitHub's web root
	keys   keys
	secure bool
	mux    *http.ServeMux
	tmpl   map[string]*template.Template
	assets fs.FS

	mu    sync.Mutex
	repos map[string]repoCacheEntry // session id → what GitHub said
}

var _ http.Handler = (*Dashboard)(nil)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// New checks the options and builds the dashboard.
func New(o Options) (*Dashboard, error) {
	if o.Store == nil {
		return nil, errors.New("dashboard: no store")
	}
	if len(o.SessionSecret) == 0 {
		return nil, errors.New("dashboard: no session secret (WEBHOOK_SECRET)")
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.RepoCacheTTL <= 0 {
		o.RepoCacheTTL = 5 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.PublicURL = strings.TrimRight(o.PublicURL, "/")
	pub, err := url.Parse(o.PublicURL)
	if err != nil || pub.Host == "" {
		return nil, fmt.Errorf("dashboard: PUBLIC_URL %q is not a URL", o.PublicURL)
	}
	if o.APIURL == "" {
		o.APIURL = "https://api.github.com"
	}
	if _, err := gh.ParseBaseURL(o.APIURL); err != nil {
		return nil, fmt.Errorf("dashboard: GITHUB_API_URL %q is not a URL", o.APIURL)
	}
	d := &Dashboard{
		o: o, web: WebURL(o.APIURL), keys: deriveKeys(o.SessionSecret),
		secure: pub.Scheme == "https", repos: map[string]repoCacheEntry{},
	}
	if d.tmpl, err = parseTemplates(); err != nil {
		return nil, err
	}
	d.assets, _ = fs.Sub(assetFS, "assets")
	d.mux = http.NewServeMux()
	d.mux.HandleFunc("GET /{$}", d.home)
	d.mux.HandleFunc("GET /deploys/{id}", d.deploy)
	d.mux.HandleFunc("GET /audit", d.audit)
	d.mux.HandleFunc("GET /audit.jsonl", d.auditJSONL)
	d.mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(d.assets)))
	d.mux.HandleFunc("GET /auth/signin", d.signinPage)
	d.mux.HandleFunc("POST /auth/signin", d.signinToken)
	d.mux.HandleFunc("GET /auth/github", d.startOAuth)
	d.mux.HandleFunc("GET /auth/callback", d.oauthCallback)
	d.mux.HandleFunc("POST /auth/signout", d.signout)
	return d, nil
}

// ServeHTTP implements http.Handler.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, "/assets/") {
		h.Set("Cache-Control", "no-store")
	}
	r = r.WithContext(logctx.With(r.Context(), d.o.Logger))
	d.mux.ServeHTTP(w, r)
}

// WebURL is GitHub's web root for a REST base URL: https://api.github.com →
// https://github.com; GitHub Enterprise Cloud with data residency
// https://api.SUBDOMAIN.ghe.com → https://SUBDOMAIN.ghe.com; GitHub
// Enterprise Server https://HOST/api/v3 → https://HOST; anything else (a
// test server) → its own origin.
func WebURL(apiURL string) string {
	u, err := url.Parse(strings.TrimRight(apiURL, "/"))
	if err != nil || u.Host == "" {
		return "https://github.com"
	}
	switch {
	case u.Host == "api.github.com":
		return "https://github.com"
	case strings.HasPrefix(u.Host, "api.") && strings.HasSuffix(u.Host, ".ghe.com"):
		return u.Scheme + "://" + strings.TrimPrefix(u.Host, "api.")
	case strings.HasSuffix(u.Path, "/api/v3"):
		return u.Scheme + "://" + u.Host + strings.TrimSuffix(u.Path, "/api/v3")
	}
	return u.Scheme + "://" + u.Host
}

// tokenDigest lets tokens be compared in constant time whatever their
// lengths.
func tokenDigest(s string) [32]byte { return sha256.Sum256([]byte(s)) }
