package dashboard

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/logctx"
	"github.com/shipbot/shipbot/internal/report"
)

const (
	sessionCookie = "shipbot_session"
	oauthCookie   = "shipbot_oauth"
	// userSessionTTL matches the life of a GitHub App user token (8h): the
	// session cannot outlive the token it carries.
	userSessionTTL     = 8 * time.Hour
	operatorSessionTTL = 12 * time.Hour
	oauthRoundTrip     = 10 * time.Minute
	// maxRepoPages bounds the GitHub calls for one user's repositories.
	maxRepoPages = 10
)

// keys are derived from the session secret (WEBHOOK_SECRET), one per use,
// so no new secret needs configuring and no key is used for two things.
type keys struct {
	mac  []byte      // HMAC-SHA256 of cookie payloads
	seal cipher.AEAD // AES-GCM over the GitHub user token inside the cookie
}

func deriveKeys(secret []byte) keys {
	derive := func(label string) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte("shipbot dashboard " + label))
		return m.Sum(nil)
	}
	block, _ := aes.NewCipher(derive("session seal v1")) // 32 bytes: always a valid key
	aead, _ := cipher.NewGCM(block)
	return keys{mac: derive("session sign v1"), seal: aead}
}

// session is what the session cookie carries.
type session struct {
	Kind  string `json:"k"`           // "user" (GitHub) or "operator" (DASHBOARD_TOKEN)
	Login string `json:"l,omitempty"` // GitHub login
	ID    string `json:"s"`           // random; keys the repository cache
	Token string `json:"t,omitempty"` // the user token, sealed
	// TokenTag ties an operator session to the DASHBOARD_TOKEN it was
	// opened with: changing the token signs every browser out.
	TokenTag string `json:"h,omitempty"`
	Expires  int64  `json:"e"`
}

// sign encodes v as payload.mac.
func (k keys) sign(v any) string {
	b, _ := json.Marshal(v)
	p := base64.RawURLEncoding.EncodeToString(b)
	m := hmac.New(sha256.New, k.mac)
	m.Write([]byte(p))
	return p + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// verify decodes a value made by sign, if its MAC is right.
func (k keys) verify(s string, v any) bool {
	p, mac, ok := strings.Cut(s, ".")
	if !ok {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(mac)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, k.mac)
	m.Write([]byte(p))
	if !hmac.Equal(got, m.Sum(nil)) {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(p)
	return err == nil && json.Unmarshal(b, v) == nil
}

func (k keys) sealString(s string) string {
	nonce := make([]byte, k.seal.NonceSize())
	_, _ = rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(k.seal.Seal(nonce, nonce, []byte(s), nil))
}

func (k keys) openString(s string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < k.seal.NonceSize() {
		return "", false
	}
	out, err := k.seal.Open(nil, b[:k.seal.NonceSize()], b[k.seal.NonceSize():], nil)
	return string(out), err == nil
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (d *Dashboard) tokenTag() string {
	m := hmac.New(sha256.New, d.keys.mac)
	m.Write([]byte("dashboard token " + d.o.Token))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:12])
}

func (d *Dashboard) setCookie(w http.ResponseWriter, name, value, path string, ttl time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: path, MaxAge: int(ttl / time.Second),
		HttpOnly: true, Secure: d.secure, SameSite: http.SameSiteLaxMode,
	})
}

func (d *Dashboard) clearCookie(w http.ResponseWriter, name, path string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: path, MaxAge: -1, HttpOnly: true, Secure: d.secure, SameSite: http.SameSiteLaxMode})
}

// viewer is who is looking.
type viewer struct {
	Login    string // "" for the operator
	Operator bool   // DASHBOARD_TOKEN: every repository
	Session  bool   // signed in by cookie (can sign out)
	repos    map[string]bool
}

func (v viewer) canSee(repo string) bool { return v.Operator || v.repos[strings.ToLower(repo)] }

// Name is how the page header names the viewer.
func (v viewer) Name() string {
	if v.Operator {
		return "operator (dashboard token)"
	}
	return v.Login
}

var errNoSession = errors.New("no session")

// authenticate finds the viewer of r: a bearer DASHBOARD_TOKEN, else the
// session cookie. Without either it answers (302 to sign-in, or 401 for
// API-style requests) and returns false.
func (d *Dashboard) authenticate(w http.ResponseWriter, r *http.Request) (viewer, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, cred, _ := strings.Cut(h, " ")
		if strings.EqualFold(scheme, "bearer") && d.o.Token != "" && d.tokenOK(strings.TrimSpace(cred)) {
			return viewer{Operator: true}, true
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="shipbot"`)
		d.unauthorized(w, report.DashboardBearerWrong)
		return viewer{}, false
	}
	v, err := d.fromSession(w, r)
	if err == nil {
		return v, true
	}
	if !errors.Is(err, errNoSession) {
		d.errorPage(w, r, http.StatusBadGateway, report.DashboardReposFailed(err))
		return viewer{}, false
	}
	if apiStyle(r) {
		d.unauthorized(w, report.DashboardSignInFirst)
		return viewer{}, false
	}
	http.Redirect(w, r, "/auth/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
	return viewer{}, false
}

func (d *Dashboard) tokenOK(tok string) bool {
	a, b := tokenDigest(tok), tokenDigest(d.o.Token)
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// apiStyle reports whether r wants data rather than a page: those get 401,
// not a redirect to a sign-in page nobody will see.
func apiStyle(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return strings.HasSuffix(r.URL.Path, ".json") || strings.HasSuffix(r.URL.Path, ".jsonl") || strings.Contains(a, "application/json") || strings.Contains(a, "text/event-stream")
}

func (d *Dashboard) unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// fromSession reads the session cookie; errNoSession when there is no
// valid one (and the cookie is cleared).
func (d *Dashboard) fromSession(w http.ResponseWriter, r *http.Request) (viewer, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return viewer{}, errNoSession
	}
	var s session
	if !d.keys.verify(c.Value, &s) || d.o.Now().Unix() > s.Expires {
		d.clearCookie(w, sessionCookie, "/")
		return viewer{}, errNoSession
	}
	switch s.Kind {
	case "operator":
		if d.o.Token == "" || !hmac.Equal([]byte(s.TokenTag), []byte(d.tokenTag())) {
			d.clearCookie(w, sessionCookie, "/")
			return viewer{}, errNoSession
		}
		return viewer{Operator: true, Session: true}, nil
	case "user":
		tok, ok := d.keys.openString(s.Token)
		if !ok || d.o.ClientID == "" {
			d.clearCookie(w, sessionCookie, "/")
			return viewer{}, errNoSession
		}
		repos, err := d.userRepos(r, s.ID, tok)
		if errors.Is(err, errNoSession) {
			d.clearCookie(w, sessionCookie, "/")
		}
		if err != nil {
			return viewer{}, err
		}
		return viewer{Login: s.Login, Session: true, repos: repos}, nil
	}
	return viewer{}, errNoSession
}

type repoCacheEntry struct {
	repos map[string]bool
	at    time.Time
}

// userRepos lists the repositories the user can read among the App's
// installations, from the cache while it is fresh.
func (d *Dashboard) userRepos(r *http.Request, sid, tok string) (map[string]bool, error) {
	now := d.o.Now()
	d.mu.Lock()
	e, ok := d.repos[sid]
	d.mu.Unlock()
	if ok && now.Sub(e.at) < d.o.RepoCacheTTL {
		return e.repos, nil
	}
	repos, err := d.fetchRepos(r, tok)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	for k, x := range d.repos { // forget sessions nobody used lately
		if now.Sub(x.at) >= d.o.RepoCacheTTL {
			delete(d.repos, k)
		}
	}
	d.repos[sid] = repoCacheEntry{repos: repos, at: now}
	d.mu.Unlock()
	return repos, nil
}

// fetchRepos asks GitHub which repositories of the App's installations
// the user can read. A token GitHub no longer accepts ends the session
// (errNoSession).
func (d *Dashboard) fetchRepos(r *http.Request, tok string) (map[string]bool, error) {
	ctx := r.Context()
	u, err := gh.NewUser(d.o.APIURL, d.o.HTTPClient, tok)
	if err != nil {
		return nil, err
	}
	list, err := u.Repositories(ctx, maxRepoPages)
	if err != nil {
		return nil, sessionErr(err)
	}
	out := make(map[string]bool, len(list))
	for _, repo := range list {
		out[strings.ToLower(repo)] = true
	}
	logctx.From(ctx).Debug("dashboard: repositories of the signed-in user", "count", len(out))
	return out, nil
}

// sessionErr is errNoSession when GitHub no longer accepts the user's
// token, err otherwise.
func sessionErr(err error) error {
	var ge *gh.Error
	if errors.As(err, &ge) && ge.Status == http.StatusUnauthorized {
		return errNoSession
	}
	return err
}

// safeNext keeps redirects after sign-in on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.HasPrefix(next, "/auth/") {
		return "/"
	}
	return next
}

// signinPage offers the ways in that are configured.
func (d *Dashboard) signinPage(w http.ResponseWriter, r *http.Request) {
	d.renderSignin(w, r, http.StatusOK, "")
}

func (d *Dashboard) renderSignin(w http.ResponseWriter, r *http.Request, status int, problem string) {
	next := safeNext(r.FormValue("next"))
	d.render(w, r, status, "signin", map[string]any{
		"Title": "Sign in", "Next": next, "GitHub": d.o.ClientID != "", "Token": d.o.Token != "",
		"Problem": problem, "GitHubHost": strings.TrimPrefix(strings.TrimPrefix(d.web, "https://"), "http://"),
	}, viewer{})
}

// signinToken is the token form: the right DASHBOARD_TOKEN opens an
// operator session.
func (d *Dashboard) signinToken(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if d.o.Token == "" || !d.tokenOK(strings.TrimSpace(r.FormValue("token"))) {
		logctx.From(r.Context()).Info("dashboard: a sign-in with a wrong dashboard token")
		d.renderSignin(w, r, http.StatusUnauthorized, report.DashboardWrongToken)
		return
	}
	s := session{Kind: "operator", ID: randomID(), TokenTag: d.tokenTag(), Expires: d.o.Now().Add(operatorSessionTTL).Unix()}
	d.setCookie(w, sessionCookie, d.keys.sign(s), "/", operatorSessionTTL)
	http.Redirect(w, r, safeNext(r.FormValue("next")), http.StatusSeeOther)
}

func (d *Dashboard) signout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		var s session
		if d.keys.verify(c.Value, &s) {
			d.mu.Lock()
			delete(d.repos, s.ID)
			d.mu.Unlock()
		}
	}
	d.clearCookie(w, sessionCookie, "/")
	http.Redirect(w, r, "/auth/signin", http.StatusSeeOther)
}

// oauthState is the CSRF state of one OAuth round trip, kept in a signed
// cookie until the callback compares it with what GitHub sends back.
type oauthState struct {
	State   string `json:"s"`
	Next    string `json:"n"`
	Expires int64  `json:"e"`
}

func (d *Dashboard) callbackURL() string { return d.o.PublicURL + "/auth/callback" }

func (d *Dashboard) startOAuth(w http.ResponseWriter, r *http.Request) {
	if d.o.ClientID == "" {
		d.renderSignin(w, r, http.StatusNotFound, report.DashboardNoGitHubSignIn)
		return
	}
	st := oauthState{State: randomID(), Next: safeNext(r.URL.Query().Get("next")), Expires: d.o.Now().Add(oauthRoundTrip).Unix()}
	d.setCookie(w, oauthCookie, d.keys.sign(st), "/auth/", oauthRoundTrip)
	http.Redirect(w, r, d.oauth().AuthorizeURL(d.callbackURL(), st.State), http.StatusFound)
}

func (d *Dashboard) oauthCallback(w http.ResponseWriter, r *http.Request) {
	log := logctx.From(r.Context())
	q := r.URL.Query()
	var st oauthState
	c, err := r.Cookie(oauthCookie)
	d.clearCookie(w, oauthCookie, "/auth/")
	if err != nil || !d.keys.verify(c.Value, &st) || d.o.Now().Unix() > st.Expires ||
		subtle.ConstantTimeCompare([]byte(st.State), []byte(q.Get("state"))) != 1 || st.State == "" {
		log.Info("dashboard: OAuth callback without a matching state (expired, replayed or forged)")
		d.renderSignin(w, r, http.StatusBadRequest, report.DashboardSignInExpired)
		return
	}
	if e := q.Get("error"); e != "" {
		d.renderSignin(w, r, http.StatusForbidden, report.DashboardSignInRefused(e))
		return
	}
	tok, err := d.oauth().Exchange(r.Context(), q.Get("code"), d.callbackURL())
	if err != nil {
		log.Warn("dashboard: OAuth code exchange failed", "err", err)
		d.renderSignin(w, r, http.StatusBadGateway, report.DashboardExchangeFailed(err))
		return
	}
	login, err := d.userLogin(r, tok)
	if err != nil {
		log.Warn("dashboard: GET /user with the new user token failed", "err", err)
		d.renderSignin(w, r, http.StatusBadGateway, report.DashboardNoUser)
		return
	}
	s := session{Kind: "user", Login: login, ID: randomID(), Token: d.keys.sealString(tok), Expires: d.o.Now().Add(userSessionTTL).Unix()}
	if _, err := d.userRepos(r, s.ID, tok); err != nil {
		d.renderSignin(w, r, http.StatusBadGateway, report.DashboardNoRepositories)
		return
	}
	log.Info("dashboard: signed in with GitHub", "login", s.Login)
	d.setCookie(w, sessionCookie, d.keys.sign(s), "/", userSessionTTL)
	http.Redirect(w, r, st.Next, http.StatusFound)
}

// oauth is the App's OAuth client, at GitHub's web host.
func (d *Dashboard) oauth() gh.OAuthClient {
	return gh.OAuthClient{ID: d.o.ClientID, Secret: d.o.ClientSecret, WebURL: d.web, HTTPClient: d.o.HTTPClient}
}

// userLogin is who the user token belongs to.
func (d *Dashboard) userLogin(r *http.Request, tok string) (string, error) {
	u, err := gh.NewUser(d.o.APIURL, d.o.HTTPClient, tok)
	if err != nil {
		return "", err
	}
	return u.Login(r.Context())
}
