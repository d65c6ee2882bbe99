// Package gh is shipbot's GitHub layer: App authentication (a JWT for the
// App's own endpoints, cached installation tokens for repositories), one
// client per installation, the few REST calls the bot makes, retries with
// backoff, rate-limit handling, and the API's cost in Prometheus metrics;
// and "Sign in with GitHub" for the dashboard: the App's OAuth web flow and
// the calls made with a user's token (user.go).
//
// Callers get plain structs and *Error; go-github stays inside.
package gh

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/golang-jwt/jwt/v4"
	"github.com/google/go-github/v60/github"
	ghv88 "github.com/google/go-github/v88/github" // ghinstallation's go-github
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultBaseURL is github.com's REST API.
const DefaultBaseURL = "https://api.github.com"

// Options configure a Client.
type Options struct {
	AppID      int64
	PrivateKey []byte // PEM
	// BaseURL is GITHUB_API_URL: https://api.github.com (the default), a
	// GitHub Enterprise Server base such as https://ghe.example.com/api/v3,
	// or a test server.
	BaseURL string
	// Transport carries the requests (http.DefaultTransport if nil).
	Transport http.RoundTripper
	// Registerer receives the API metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer
	// Retry tunes retries; zero fields take the defaults.
	Retry RetryPolicy
}

// Client talks to GitHub as the App. It is safe for concurrent use.
type Client struct {
	appID     int64
	key       *rsa.PrivateKey
	base      *url.URL
	transport http.RoundTripper
	retry     RetryPolicy
	metrics   *metrics
	app       *github.Client

	mu            sync.Mutex
	installations map[int64]*Installation
	botLogin      string

	checkRuns *writeCache // check run id → fingerprint of the last content written
	comments  *writeCache // sticky comment key → id and body last written
}

// New returns a Client for the App.
func New(opts Options) (*Client, error) {
	if opts.AppID <= 0 {
		return nil, errors.New("gh: the App id must be set (APP_ID, the number on the App's settings page)")
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM(opts.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("gh: the App's private key is not an RSA private key in PEM form (%v); use the .pem file GitHub generated for the App", err)
	}
	base, err := ParseBaseURL(opts.BaseURL)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	c := &Client{
		appID:         opts.AppID,
		key:           key,
		base:          base,
		transport:     opts.Transport,
		retry:         opts.Retry.withDefaults(),
		metrics:       m,
		installations: map[int64]*Installation{},
		checkRuns:     newWriteCache(10000),
		comments:      newWriteCache(10000),
	}
	if c.transport == nil {
		c.transport = http.DefaultTransport
	}
	atr := ghinstallation.NewAppsTransportFromPrivateKey(c.metered("app"), c.appID, c.key)
	atr.BaseURL = c.baseString()
	c.app = newGitHub(&http.Client{Transport: c.retrying(atr)}, c.base)
	return c, nil
}

// ParseBaseURL checks GITHUB_API_URL ("" means https://api.github.com).
func ParseBaseURL(s string) (*url.URL, error) {
	if s == "" {
		s = DefaultBaseURL
	}
	u, err := url.Parse(strings.TrimRight(s, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("gh: GITHUB_API_URL %q is not an http(s) URL; set it to https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server", s)
	}
	return u, nil
}

func (c *Client) baseString() string { return c.base.String() }

// newGitHub returns a go-github client whose every request goes below base.
// (go-github's WithEnterpriseURLs would append /api/v3 to a test server's
// URL; setting BaseURL keeps GHES bases, which already end in /api/v3, and
// anything else, as given.)
func newGitHub(hc *http.Client, base *url.URL) *github.Client {
	g := github.NewClient(hc)
	u := *base
	u.Path = strings.TrimRight(u.Path, "/") + "/"
	g.BaseURL = &u
	up := u
	if strings.HasSuffix(up.Path, "/api/v3/") {
		up.Path = strings.TrimSuffix(up.Path, "v3/") + "uploads/"
	}
	g.UploadURL = &up
	g.UserAgent = "shipbot"
	return g
}

// metered counts each request on the wire, per installation ("app" for
// the App's own endpoints), minting tokens included.
func (c *Client) metered(installation string) http.RoundTripper {
	return &metricsTransport{next: c.transport, installation: installation, m: c.metrics}
}

// retrying wraps an authenticating transport, so every attempt is signed
// afresh: a JWT lives two minutes and a token is renewed a minute before it
// expires, either of which a long Retry-After could outlast.
func (c *Client) retrying(auth http.RoundTripper) http.RoundTripper {
	return &retryTransport{next: auth, policy: c.retry}
}

// Installation is the App acting in one installation: requests carry that
// installation's token, minted on first use and renewed a minute before it
// expires (ghinstallation). One per installation id, shared.
type Installation struct {
	c        *Client
	id       int64
	gh       *github.Client
	download *http.Client // for archive redirects: no credentials
}

// Installation returns the client for installation id.
func (c *Client) Installation(id int64) *Installation {
	c.mu.Lock()
	defer c.mu.Unlock()
	if in, ok := c.installations[id]; ok {
		return in
	}
	label := strconv.FormatInt(id, 10)
	atr := ghinstallation.NewAppsTransportFromPrivateKey(c.metered(label), c.appID, c.key)
	atr.BaseURL = c.baseString()
	itr := ghinstallation.NewFromAppsTransport(atr, id)
	itr.BaseURL = c.baseString()
	// Without options ghinstallation sends the JSON body "null", which is
	// not the object GitHub's description calls for.
	itr.InstallationTokenOptions = &ghv88.InstallationTokenOptions{}
	in := &Installation{
		c:        c,
		id:       id,
		gh:       newGitHub(&http.Client{Transport: c.retrying(itr)}, c.base),
		download: &http.Client{Transport: c.retrying(c.metered(label))},
	}
	c.installations[id] = in
	return in
}

// ID is the installation id.
func (i *Installation) ID() int64 { return i.id }

// BotLogin is the login the App's comments and deployments carry
// ("slug[bot]"), read once from GET /app.
func (c *Client) BotLogin(ctx context.Context) (string, error) {
	c.mu.Lock()
	login := c.botLogin
	c.mu.Unlock()
	if login != "" {
		return login, nil
	}
	a, _, err := c.app.Apps.Get(ctx, "")
	if err != nil {
		return "", wrap("read the App (GET /app)", err)
	}
	login = a.GetSlug() + "[bot]"
	c.mu.Lock()
	c.botLogin = login
	c.mu.Unlock()
	return login, nil
}

// writeCache remembers the last content written per key, so an unchanged
// check run or comment is not sent again. It is bounded: when full it
// forgets everything (the cost is one extra write per entry).
type writeCache struct {
	mu  sync.Mutex
	m   map[string]string
	max int
}

func newWriteCache(max int) *writeCache { return &writeCache{m: map[string]string{}, max: max} }

func (w *writeCache) get(k string) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	v, ok := w.m[k]
	return v, ok
}

func (w *writeCache) set(k, v string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.m) >= w.max {
		w.m = map[string]string{}
	}
	w.m[k] = v
}

func (w *writeCache) del(k string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, k)
}

// timestamp is a go-github Timestamp for t, nil when t is zero.
func timestamp(t time.Time) *github.Timestamp {
	if t.IsZero() {
		return nil
	}
	return &github.Timestamp{Time: t.UTC().Truncate(time.Second)}
}
