// Package githubtest is the GitHub the tests (and `bot demo`) talk to: an
// HTTP server with in-memory state for the REST operations shipbot uses
// (App auth, deployments, check runs, comments, reactions, permissions,
// contents, tarballs, webhook deliveries, the App-manifest conversion).
//
// Every request it receives and every response it serves is validated
// against GitHub's own REST description (npm @octokit/openapi,
// generated/api.github.com.json) with kin-openapi; a mismatch is reported
// through the TB given to New, which fails the test. It checks the kind of
// credentials too: the App's JWT (signature verified) on /app endpoints, an
// installation token on repository endpoints.
//
// Tests inspect the state it keeps (Deployments, CheckRuns, Comments, ...),
// set state (SetPermission, SetFile, SetTree, AddDelivery, ...), count the
// API cost (Calls, CountWrites) and inject faults per route (Fault): a
// status, latency, a dropped connection, or a write carried out whose
// answer is then lost or spoiled (Applied, AppliedTimeout), n times.
package githubtest

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/routers"
	"github.com/golang-jwt/jwt/v4"
)

var _ http.Handler = (*Server)(nil)

// DefaultInstallationID is the installation New creates; repositories added
// without one belong to it.
const DefaultInstallationID int64 = 1

// Option configures a Server.
type Option func(*config)

type config struct {
	specPath   string
	validate   bool
	enterprise bool
	appID      int64
	appSlug    string
	tokenTTL   time.Duration
}

// WithSpec validates against the REST description at path instead of the one
// found in node_modules.
func WithSpec(path string) Option { return func(c *config) { c.specPath = path } }

// WithoutValidation serves without checking requests and responses against
// the REST description (for `bot demo` on a machine without node_modules).
func WithoutValidation() Option { return func(c *config) { c.validate = false } }

// WithEnterprise serves the API below /api/v3, as GitHub Enterprise Server
// does; Server.URL then ends in /api/v3.
func WithEnterprise() Option { return func(c *config) { c.enterprise = true } }

// WithApp sets the App's id and slug (defaults 4242, "shipbot").
func WithApp(id int64, slug string) Option {
	return func(c *config) { c.appID, c.appSlug = id, slug }
}

// WithTokenTTL sets how long installation tokens live (GitHub: 1h).
func WithTokenTTL(d time.Duration) Option { return func(c *config) { c.tokenTTL = d } }

// Server is the fake GitHub. Its exported fields are set by New and must not
// be changed.
type Server struct {
	// URL is the REST base URL, what GITHUB_API_URL should be set to.
	URL string
	// WebURL is the web root (https://github.com's counterpart).
	WebURL string
	// AppID, AppSlug and PrivateKeyPEM are the App's credentials.
	AppID         int64
	AppSlug       string
	PrivateKeyPEM []byte
	// InstallationID is the installation New created (DefaultInstallationID).
	InstallationID int64

	t      TB
	cfg    config
	prefix string
	http   *httptest.Server
	spec   *spec
	router routers.Router

	mu            sync.Mutex
	nextID        int64
	apps          map[int64]*app
	installations map[int64]*installation
	tokens        map[string]token
	downloads     map[string]download
	repos         map[string]*repo // "owner/name"
	comments      map[int64]*Comment
	checkRuns     map[int64]*CheckRun
	deliveries    []*Delivery
	redeliveries  []int64
	manifestCodes map[string]*manifestCode
	converted     []ConvertedApp
	calls         []Call
	callsSince    time.Time // ResetCalls' moment: calls that arrived before it are not recorded
	faults        []*faultRule
	onRedeliver   func(Delivery) int
	oauth         oauthState // oauth.go
}

type app struct {
	id            int64
	slug, name    string
	key           *rsa.PublicKey
	clientID      string
	webhookSecret string
}

type installation struct {
	id      int64
	appID   int64
	account string
}

type token struct {
	installation int64
	expires      time.Time
}

type download struct {
	owner, repo, ref string
	expires          time.Time
}

// New starts a fake GitHub for the test; it is closed when the test ends.
// Without the REST description it skips the test (fails it when CI is set),
// unless t is a LogReporter, where it serves without validation.
func New(t TB, opts ...Option) *Server {
	t.Helper()
	cfg := config{validate: true, appID: 4242, appSlug: "shipbot", tokenTTL: time.Hour}
	for _, o := range opts {
		o(&cfg)
	}
	s := &Server{
		t:              t,
		cfg:            cfg,
		AppID:          cfg.appID,
		AppSlug:        cfg.appSlug,
		InstallationID: DefaultInstallationID,
		nextID:         1000,
		apps:           map[int64]*app{},
		installations:  map[int64]*installation{},
		tokens:         map[string]token{},
		downloads:      map[string]download{},
		repos:          map[string]*repo{},
		comments:       map[int64]*Comment{},
		checkRuns:      map[int64]*CheckRun{},
		manifestCodes:  map[string]*manifestCode{},
	}
	if cfg.enterprise {
		s.prefix = "/api/v3"
	}
	if cfg.validate {
		p := cfg.specPath
		var err error
		if p == "" {
			p, err = FindSpec()
		}
		if err == nil {
			s.spec, err = loadSpec(p)
			if err == nil {
				s.router, err = s.spec.router(s.prefix)
			}
			if err == nil {
				t.Logf("githubtest: validating against %s (loaded once per process, in %v)", p, s.spec.load.Round(time.Millisecond))
			}
		}
		if err != nil {
			if missing(t, err.Error()) {
				return nil
			}
			s.spec, s.router = nil, nil
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Errorf("githubtest: generate App key: %v", err)
		return nil
	}
	s.PrivateKeyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	s.apps[s.AppID] = &app{id: s.AppID, slug: s.AppSlug, name: s.AppSlug, key: &key.PublicKey, clientID: "Iv1." + randHex(8), webhookSecret: randHex(16)}
	s.installations[DefaultInstallationID] = &installation{id: DefaultInstallationID, appID: s.AppID, account: "octo-org"}

	s.http = httptest.NewServer(s)
	s.WebURL = s.http.URL
	s.URL = s.http.URL + s.prefix
	t.Cleanup(s.Close)
	return s
}

// Close shuts the server down. New arranges for it to be called when the
// test ends.
func (s *Server) Close() {
	if s != nil && s.http != nil {
		s.http.CloseClientConnections()
		s.http.Close()
	}
}

// Validating reports whether requests and responses are checked against the
// REST description.
func (s *Server) Validating() bool { return s.router != nil }

// Call is one request the server received.
type Call struct {
	Time      time.Time
	Method    string
	Path      string // below the API prefix, without the query
	Operation string // GitHub's operationId, e.g. repos/create-deployment; "" if unknown
	// Installation the call acted for (the token's, or the path's for
	// access_tokens); 0 for other App (JWT) and unauthenticated calls.
	Installation int64
	Auth         string // "jwt", "token", "none" or "invalid"
	Status       int
	Fault        bool   // the response was injected by Fault
	Body         []byte // the request's body (API calls), for tests that look for what must never be sent
}

// Write reports whether the call is a write in the sense of SPEC §11: a
// non-GET API request, other than minting an installation token.
func (c Call) Write() bool {
	return c.API() && c.Method != http.MethodGet && c.Method != http.MethodHead
}

// API reports whether the call is a REST API call that counts toward the
// bot's cost: not minting an installation token, not an archive download
// or the web form of the manifest flow.
func (c Call) API() bool {
	return c.Operation != "apps/create-installation-access-token" && c.Operation != "codeload" &&
		!strings.HasPrefix(c.Operation, "web/")
}

// Calls returns the calls received so far, oldest first.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// CountWrites counts the write calls received so far (see Call.Write).
func (s *Server) CountWrites() int { return s.countCalls(Call.Write) }

// CountCalls counts the API calls received so far, minting installation
// tokens and archive downloads excluded.
func (s *Server) CountCalls() int { return s.countCalls(Call.API) }

func (s *Server) countCalls(match func(Call) bool) int {
	n := 0
	for _, c := range s.Calls() {
		if match(c) {
			n++
		}
	}
	return n
}

// ResetCalls forgets the calls recorded so far, and the calls still being
// served: a request is recorded only after its response is validated, so a
// test that saw its effect in the state could otherwise reset before it is
// recorded and count it as a later call.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	s.calls = nil
	s.callsSince = time.Now()
	s.mu.Unlock()
}

// Fault describes a failure injected on matching requests.
type Fault struct {
	Status  int    // response status; 0 serves normally after Latency
	Message string // GitHub's message in the body; a default per status if empty
	// RetryAfter sets a Retry-After header (whole seconds, rounded up). On a
	// 403 or 429 the body is a secondary rate limit's.
	RetryAfter time.Duration
	// RateLimitReset, when set, sends x-ratelimit-remaining: 0 and
	// x-ratelimit-reset (primary rate limit exhausted).
	RateLimitReset time.Time
	Latency        time.Duration // delay before answering (or before the normal response)
	DropConnection bool          // close the connection without answering
	Times          int           // how many matching requests it applies to; 0 = all
	// Applied carries the request out before the fault answers: the write
	// happens, and then the client gets Status, or nothing (DropConnection),
	// or the real answer only after Latency — the request that timed out
	// (or met a 502 from a proxy) after GitHub had applied it.
	Applied bool
}

// AppliedTimeout is the fault of a write that GitHub carries out but whose
// answer never reaches the client, times times: the connection is dropped
// after the write, as when the client's timeout fired first.
func AppliedTimeout(times int) Fault {
	return Fault{Applied: true, DropConnection: true, Times: times}
}

// BadGateway is a 502 before anything is applied, times times.
func BadGateway(times int) Fault {
	return Fault{Status: http.StatusBadGateway, Times: times}
}

type faultRule struct {
	method, pattern string
	f               Fault
	left            int // -1 = unlimited
}

// Fault injects f into requests whose method is method ("" or "*" for any)
// and whose path matches pattern: either GitHub's path template
// ("/repos/{owner}/{repo}/deployments"), a path.Match glob on the request
// path ("/repos/acme/web/*"), or "" / "*" for any. Rules are tried in the
// order added; the first with requests left applies.
func (s *Server) Fault(method, pattern string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	left := f.Times
	if left == 0 {
		left = -1
	}
	s.faults = append(s.faults, &faultRule{method: strings.ToUpper(method), pattern: pattern, f: f, left: left})
}

// ClearFaults removes all fault rules.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	s.faults = nil
	s.mu.Unlock()
}

func (s *Server) takeFault(method, reqPath, template string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.faults {
		if r.left == 0 {
			continue
		}
		if r.method != "" && r.method != "*" && r.method != method {
			continue
		}
		if !matchPattern(r.pattern, reqPath, template) {
			continue
		}
		if r.left > 0 {
			r.left--
		}
		return r.f, true
	}
	return Fault{}, false
}

func matchPattern(pattern, reqPath, template string) bool {
	if pattern == "" || pattern == "*" || pattern == reqPath {
		return true
	}
	if template != "" && pattern == template {
		return true
	}
	ok, _ := path.Match(pattern, reqPath)
	return ok
}

// reqCtx is one request on its way through ServeHTTP.
type reqCtx struct {
	r            *http.Request
	body         []byte
	params       map[string]string // unescaped
	rawParams    map[string]string // as the router matched them
	op           string
	installation int64  // from the token
	appID        int64  // from the JWT
	user         string // from a user token (oauth.go)
	auth         string
}

func (c *reqCtx) param(name string) string { return c.params[name] }

func (c *reqCtx) intParam(name string) (int64, bool) {
	n, err := strconv.ParseInt(c.params[name], 10, 64)
	return n, err == nil
}

// response is what a handler returns; ServeHTTP encodes and validates it.
type response struct {
	status int
	header http.Header
	body   any    // JSON-encoded unless raw is set
	raw    []byte // sent as is (with header's Content-Type)
}

type handlerFunc func(s *Server, c *reqCtx) response

// authKind says which credentials an operation takes.
func authKind(op string) string {
	switch op {
	case "apps/create-from-manifest":
		return "none"
	case "apps/get-authenticated", "apps/get-installation", "apps/create-installation-access-token",
		"apps/list-webhook-deliveries", "apps/redeliver-webhook-delivery":
		return "jwt"
	case "users/get-authenticated", "apps/list-installations-for-authenticated-user", "apps/list-installation-repos-for-authenticated-user":
		return "user"
	}
	return "token"
}

const codeloadPrefix = "/_codeload/"

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = readCloser(body)

	if strings.HasPrefix(r.URL.Path, codeloadPrefix) {
		s.serveCodeload(w, r, start)
		return
	}
	if s.serveWeb(w, r, body) || s.serveOAuth(w, r, body) {
		return
	}
	apiPath, ok := strings.CutPrefix(r.URL.Path, s.prefix)
	if !ok || (s.prefix != "" && apiPath != "" && apiPath[0] != '/') {
		s.t.Errorf("githubtest: %s %s is outside the API base %s", r.Method, r.URL.Path, s.URL)
		s.write(w, r, nil, nil, body, &reqCtx{}, Call{Time: start, Method: r.Method, Path: r.URL.Path}, notFound())
		return
	}
	call := Call{Time: start, Method: r.Method, Path: apiPath, Body: body}
	c := &reqCtx{r: r, body: body}

	// Which operation is it?
	var route *routers.Route
	if s.router != nil {
		rt, vars, err := s.router.FindRoute(r)
		if err != nil {
			s.t.Errorf("githubtest: %s %s: %s", r.Method, apiPath, s.spec.describe(r.Method, apiPath))
			s.write(w, r, nil, nil, body, c, call, notFound())
			return
		}
		route = rt
		c.op = rt.Operation.OperationID
		c.params, c.rawParams = map[string]string{}, vars
		for k, v := range vars {
			if u, err := url.PathUnescape(v); err == nil {
				v = u
			}
			c.params[k] = v
		}
	} else {
		c.op, c.params = matchWithoutSpec(r.Method, apiPath)
		if c.op == "" {
			s.t.Errorf("githubtest: %s %s is not an operation githubtest implements", r.Method, apiPath)
			s.write(w, r, nil, nil, body, c, call, notFound())
			return
		}
	}
	call.Operation = c.op
	h := handlerFor(c.op)

	// Is the request what GitHub documents?
	if route != nil {
		if err := validateRequest(r.Context(), route, c.rawParams, r, body); err != nil {
			s.t.Errorf("githubtest: request %s (%s %s) does not match GitHub's REST description:\n%v\nbody: %s", c.op, r.Method, apiPath, err, shortBytes(body))
			s.write(w, r, route, c.rawParams, body, c, call, validationFailed(err.Error()))
			return
		}
	}

	// Are the credentials the right kind, and valid?
	if resp, ok := s.authenticate(c, apiPath); !ok {
		call.Auth, call.Installation = c.auth, c.installation
		s.write(w, r, route, c.rawParams, body, c, call, resp)
		return
	}
	call.Auth, call.Installation = c.auth, c.installation
	if c.op == "apps/create-installation-access-token" {
		call.Installation, _ = c.intParam("installation_id")
	}

	// Injected faults.
	template := ""
	if route != nil {
		template = route.Path
	}
	if f, ok := s.takeFault(r.Method, apiPath, specTemplate(template)); ok {
		if f.Applied {
			s.applyThenFail(w, r, route, body, c, call, h, f)
			return
		}
		if s.stall(w, r, call, f) {
			return
		}
		if f.Status != 0 {
			call.Fault = true
			s.write(w, r, route, c.rawParams, body, c, call, faultResponse(f))
			return
		}
	}
	s.write(w, r, route, c.rawParams, body, c, call, h(s, c))
}

// stall applies a fault's latency and dropped connection, the parts every
// route fakes alike; it reports whether the request is over.
func (s *Server) stall(w http.ResponseWriter, r *http.Request, call Call, f Fault) bool {
	if f.Latency > 0 {
		select {
		case <-time.After(f.Latency):
		case <-r.Context().Done():
			s.record(call, 0, true) // the client gave up first
			return true
		}
	}
	if f.DropConnection {
		s.record(call, 0, true)
		dropConnection(w)
		return true
	}
	return false
}

// applyThenFail serves a fault marked Applied: the operation's effect
// first, then the fault's answer in its place (or, with neither Status nor
// DropConnection, the real answer after Latency).
func (s *Server) applyThenFail(w http.ResponseWriter, r *http.Request, route *routers.Route, body []byte, c *reqCtx, call Call, h handlerFunc, f Fault) {
	resp := h(s, c)
	if s.stall(w, r, call, f) {
		return
	}
	if f.Status != 0 {
		call.Fault = true
		resp = faultResponse(f)
	}
	var params map[string]string
	if route != nil {
		params = c.rawParams
	}
	s.write(w, r, route, params, body, c, call, resp)
}

// specTemplate undoes the multi-segment rewrite, so fault patterns can use
// GitHub's own template.
func specTemplate(t string) string {
	return strings.ReplaceAll(t, ":.+}", "}")
}

func (s *Server) write(w http.ResponseWriter, r *http.Request, route *routers.Route, params map[string]string, reqBody []byte, c *reqCtx, call Call, resp response) {
	h := w.Header()
	for k, vs := range resp.header {
		h[k] = vs
	}
	var out []byte
	switch {
	case resp.raw != nil:
		out = resp.raw
	case resp.body != nil:
		var err error
		out, err = json.Marshal(resp.body)
		if err != nil {
			s.t.Errorf("githubtest: encode response of %s: %v", c.op, err)
		}
		if h.Get("Content-Type") == "" {
			h.Set("Content-Type", "application/json; charset=utf-8")
		}
	}
	h.Set("X-GitHub-Media-Type", "github.v3; format=json")
	h.Set("X-GitHub-Request-Id", randHex(8))
	if route != nil && !call.Fault {
		if err := validateResponse(r.Context(), route, params, r, reqBody, resp.status, h, out); err != nil {
			s.t.Errorf("githubtest: the fake's %d response to %s (%s %s) does not match GitHub's REST description (a bug in githubtest):\n%v", resp.status, c.op, r.Method, call.Path, err)
		}
	}
	s.record(call, resp.status, call.Fault)
	w.WriteHeader(resp.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(out)
	}
}

func (s *Server) record(call Call, status int, fault bool) {
	call.Status, call.Fault = status, fault
	s.mu.Lock()
	if !call.Time.Before(s.callsSince) {
		s.calls = append(s.calls, call)
	}
	s.mu.Unlock()
}

func dropConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// authenticate checks the Authorization header against what the operation
// needs. A request with the wrong kind of credentials is a bug in the bot
// and is reported; expired or revoked ones are answered as GitHub would.
func (s *Server) authenticate(c *reqCtx, apiPath string) (response, bool) {
	want := authKind(c.op)
	scheme, cred, _ := strings.Cut(c.r.Header.Get("Authorization"), " ")
	scheme = strings.ToLower(scheme)
	switch {
	case cred == "":
		c.auth = "none"
	case scheme == "bearer" && strings.Count(cred, ".") == 2:
		c.auth = "jwt"
	case (scheme == "bearer" || scheme == "token") && strings.HasPrefix(cred, userTokenPrefix):
		c.auth = "user"
	case scheme == "bearer" || scheme == "token":
		c.auth = "token"
	default:
		c.auth = "invalid"
	}
	if c.auth != want {
		if want == "none" && c.auth != "none" {
			// GitHub ignores credentials here; the bot has none yet.
			return response{}, true
		}
		s.t.Errorf("githubtest: %s (%s %s) was sent with %s credentials; GitHub requires %s", c.op, c.r.Method, apiPath, describeAuth(c.auth), describeAuth(want))
		return errorResponse(http.StatusUnauthorized, "Bad credentials"), false
	}
	switch want {
	case "jwt":
		id, err := s.verifyJWT(cred)
		c.appID = id
		if err != nil {
			s.t.Errorf("githubtest: %s (%s %s): the App JWT is not valid: %v", c.op, c.r.Method, apiPath, err)
			return errorResponse(http.StatusUnauthorized, "A JSON web token could not be decoded"), false
		}
	case "token":
		s.mu.Lock()
		tok, ok := s.tokens[cred]
		s.mu.Unlock()
		if !ok {
			s.t.Errorf("githubtest: %s (%s %s) was sent with an installation token githubtest never issued", c.op, c.r.Method, apiPath)
			return errorResponse(http.StatusUnauthorized, "Bad credentials"), false
		}
		c.installation = tok.installation
		if time.Now().After(tok.expires) {
			s.t.Errorf("githubtest: %s (%s %s) was sent with an installation token that expired at %s", c.op, c.r.Method, apiPath, tok.expires.Format(time.RFC3339))
			return errorResponse(http.StatusUnauthorized, "Bad credentials"), false
		}
	case "user":
		return s.authenticateUser(c, cred, apiPath)
	}
	return response{}, true
}

func describeAuth(kind string) string {
	switch kind {
	case "jwt":
		return "App JWT (Authorization: Bearer <jwt>)"
	case "token":
		return "installation token (Authorization: token <token>)"
	case "user":
		return "user token from the OAuth web flow (Authorization: Bearer ghu_…)"
	case "none":
		return "no"
	}
	return "unrecognised"
}

func (s *Server) verifyJWT(raw string) (int64, error) {
	var claims jwt.RegisteredClaims
	var appID int64
	_, err := jwt.ParseWithClaims(raw, &claims, func(tok *jwt.Token) (any, error) {
		id, err := strconv.ParseInt(claims.Issuer, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("iss %q is not an App id", claims.Issuer)
		}
		s.mu.Lock()
		a := s.apps[id]
		s.mu.Unlock()
		if a == nil {
			return nil, fmt.Errorf("iss %d is not an App githubtest knows", id)
		}
		appID = id
		return a.key, nil
	}, jwt.WithValidMethods([]string{"RS256"}))
	if err != nil {
		return 0, err
	}
	if claims.IssuedAt == nil || claims.ExpiresAt == nil {
		return 0, errors.New("iat and exp are required")
	}
	if claims.ExpiresAt.Sub(claims.IssuedAt.Time) > 10*time.Minute {
		return 0, errors.New("exp is more than 10 minutes after iat")
	}
	return appID, nil
}

func (s *Server) newID() int64 {
	s.nextID++
	return s.nextID
}

// nowString is a timestamp in the form GitHub uses.
func nowString() string { return time.Now().UTC().Format(time.RFC3339) }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func readCloser(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

func shortBytes(b []byte) string {
	if len(b) > 500 {
		return string(b[:500]) + "…"
	}
	return string(b)
}

// Errors as GitHub sends them.

const docsURL = "https://docs.github.com/rest"

func errorResponse(status int, msg string) response {
	return response{status: status, body: map[string]any{"message": msg, "documentation_url": docsURL, "status": strconv.Itoa(status)}}
}

func notFound() response { return errorResponse(http.StatusNotFound, "Not Found") }

func validationFailed(detail string) response {
	return response{status: http.StatusUnprocessableEntity, body: map[string]any{
		"message":           "Validation Failed",
		"documentation_url": docsURL,
		"errors":            []any{map[string]any{"resource": "Request", "code": "invalid", "message": detail}},
		"status":            "422",
	}}
}

func faultResponse(f Fault) response {
	msg := f.Message
	h := http.Header{}
	doc := docsURL
	if f.RetryAfter > 0 {
		secs := int64((f.RetryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
		if f.Status == http.StatusForbidden || f.Status == http.StatusTooManyRequests {
			doc = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits"
			if msg == "" {
				msg = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
			}
		}
	}
	if !f.RateLimitReset.IsZero() {
		h.Set("X-RateLimit-Limit", "5000")
		h.Set("X-RateLimit-Remaining", "0")
		h.Set("X-RateLimit-Used", "5000")
		h.Set("X-RateLimit-Reset", strconv.FormatInt(f.RateLimitReset.Unix(), 10))
		h.Set("X-RateLimit-Resource", "core")
		if msg == "" {
			msg = "API rate limit exceeded for installation."
		}
	}
	if msg == "" {
		msg = http.StatusText(f.Status)
		if f.Status >= 500 {
			msg = "Server Error"
		}
	}
	body := map[string]any{"message": msg, "documentation_url": doc, "status": strconv.Itoa(f.Status)}
	if f.Status == http.StatusUnprocessableEntity {
		body["message"] = "Validation Failed"
		body["errors"] = []any{map[string]any{"resource": "Request", "code": "custom", "message": msg}}
	}
	return response{status: f.Status, header: h, body: body}
}

// matchWithoutSpec routes a request when no REST description is loaded.
func matchWithoutSpec(method, p string) (string, map[string]string) {
	for _, r := range routeTable {
		if r.method != method {
			continue
		}
		if params, ok := matchTemplate(r.path, p); ok {
			return r.op, params
		}
	}
	return "", nil
}

// matchTemplate matches p against a template like /repos/{owner}/{repo};
// a last parameter followed by nothing, or a parameter marked multi-segment
// with "+" ({path+}), takes the rest of the path.
func matchTemplate(tmpl, p string) (map[string]string, bool) {
	ts := strings.Split(strings.Trim(tmpl, "/"), "/")
	ps := strings.Split(strings.Trim(p, "/"), "/")
	params := map[string]string{}
	j := 0
	for i, seg := range ts {
		if j >= len(ps) {
			return nil, false
		}
		if !strings.HasPrefix(seg, "{") {
			if seg != ps[j] {
				return nil, false
			}
			j++
			continue
		}
		name := strings.Trim(seg, "{}")
		if multi, ok := strings.CutSuffix(name, "+"); ok {
			// Take as many segments as leave enough for the rest.
			rest := len(ts) - i - 1
			end := len(ps) - rest
			if end <= j {
				return nil, false
			}
			params[multi] = strings.Join(ps[j:end], "/")
			j = end
			continue
		}
		v, err := url.PathUnescape(ps[j])
		if err != nil {
			return nil, false
		}
		params[name] = v
		j++
	}
	return params, j == len(ps)
}

// request helpers for handlers

func decodeBody(c *reqCtx, v any) error {
	if len(c.body) == 0 {
		return nil
	}
	return json.Unmarshal(c.body, v)
}
