package githubtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The App's OAuth web flow ("Sign in with GitHub") and the two REST
// operations a user-to-server token is used for here: who the user is,
// which installations of the App they can reach, and which repositories of
// one of them.
//
// The web flow is not part of the REST description, so serveOAuth answers it
// outside validation, as serveWeb does the manifest form; it auto-approves
// as the OAuth user (SetOAuthUser). The user-token operations are routed and
// validated like every other operation. A user can read a repository when
// SetPermission gave them any role but "none" on it.

// userTokenPrefix starts every user-to-server token, as on github.com
// (installation tokens start with ghs_).
const userTokenPrefix = "ghu_"

// userTokenTTL is how long a user token lives (GitHub: 8 hours).
const userTokenTTL = 8 * time.Hour

type oauthState struct {
	user     string               // who approves; "" means octocat
	secrets  map[string]string    // client id → client secret
	codes    map[string]oauthCode // authorization codes, used once
	tokens   map[string]userToken // user-to-server tokens
	denied   bool                 // the user clicks "Cancel" on the next authorize
	received []OAuthAuthorization // authorize requests, oldest first
}

type oauthCode struct {
	clientID, redirectURI, login string
	expires                      time.Time
}

type userToken struct {
	login    string
	appID    int64
	expires  time.Time
	revoked  bool
	clientID string
}

// OAuthAuthorization is one request to /login/oauth/authorize, as the
// browser sent it.
type OAuthAuthorization struct {
	ClientID, RedirectURI, State string
}

// SetOAuthUser sets who signs in through the OAuth web flow (default
// octocat). The user approves every request at once.
func (s *Server) SetOAuthUser(login string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oauth.user = login
}

// DenyNextOAuth makes the next authorization end as when the user clicks
// Cancel on GitHub: a redirect back with error=access_denied.
func (s *Server) DenyNextOAuth() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oauth.denied = true
}

// OAuthClient returns the OAuth client id and secret of the server's App,
// what GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET should be set to.
func (s *Server) OAuthClient() (id, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[s.AppID]
	return a.clientID, s.clientSecretLocked(a.clientID)
}

// OAuthAuthorizations returns the authorize requests received so far.
func (s *Server) OAuthAuthorizations() []OAuthAuthorization {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]OAuthAuthorization(nil), s.oauth.received...)
}

// RevokeUserTokens revokes every user token issued to login, as when the
// user revokes the App's authorization.
func (s *Server) RevokeUserTokens(login string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, t := range s.oauth.tokens {
		if t.login == login {
			t.revoked = true
			s.oauth.tokens[k] = t
		}
	}
}

// clientSecretLocked returns the secret of a client id, making one for the
// server's own App on first use. Apps registered through the manifest flow
// have the secret the conversion handed out. s.mu held.
func (s *Server) clientSecretLocked(clientID string) string {
	if sec, ok := s.oauth.secrets[clientID]; ok {
		return sec
	}
	for _, c := range s.converted {
		if c.ClientID == clientID {
			return c.ClientSecret
		}
	}
	if a := s.apps[s.AppID]; a != nil && a.clientID == clientID {
		if s.oauth.secrets == nil {
			s.oauth.secrets = map[string]string{}
		}
		s.oauth.secrets[clientID] = randHex(20)
		return s.oauth.secrets[clientID]
	}
	return ""
}

func (s *Server) appByClientIDLocked(clientID string) *app {
	for _, a := range s.apps {
		if a.clientID == clientID {
			return a
		}
	}
	return nil
}

// serveOAuth handles the browser and server sides of the web flow at the
// web root; it reports whether it handled r.
func (s *Server) serveOAuth(w http.ResponseWriter, r *http.Request, body []byte) bool {
	switch r.URL.Path {
	case "/login/oauth/authorize":
		s.oauthAuthorize(w, r)
	case "/login/oauth/access_token":
		s.oauthAccessToken(w, r, body)
	default:
		return false
	}
	return true
}

func (s *Server) oauthAuthorize(w http.ResponseWriter, r *http.Request) {
	call := Call{Time: time.Now(), Method: r.Method, Path: r.URL.Path, Operation: "web/oauth-authorize", Auth: "none"}
	fail := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		s.t.Errorf("githubtest: OAuth authorize: %s", msg)
		s.record(call, http.StatusBadRequest, false)
		http.Error(w, msg, http.StatusBadRequest)
	}
	if r.Method != http.MethodGet {
		fail("%s: the browser is sent here with GET", r.Method)
		return
	}
	q := r.URL.Query()
	clientID, redirect, state := q.Get("client_id"), q.Get("redirect_uri"), q.Get("state")
	s.mu.Lock()
	a := s.appByClientIDLocked(clientID)
	login := s.oauth.user
	if login == "" {
		login = "octocat"
	}
	denied := s.oauth.denied
	s.oauth.denied = false
	s.oauth.received = append(s.oauth.received, OAuthAuthorization{ClientID: clientID, RedirectURI: redirect, State: state})
	s.mu.Unlock()
	if a == nil {
		fail("client_id %q is not the OAuth client of an App githubtest knows", clientID)
		return
	}
	if redirect == "" {
		fail("no redirect_uri: githubtest has no callback URL registered for the App, so say where to come back")
		return
	}
	if !absoluteURL(redirect) {
		fail("redirect_uri %q must be an absolute http(s) URL", redirect)
		return
	}
	if state == "" {
		s.t.Errorf("githubtest: OAuth authorize without state: the round trip is open to cross-site request forgery")
	}
	u, _ := url.Parse(redirect)
	back := u.Query()
	if denied {
		back.Set("error", "access_denied")
		back.Set("error_description", "The user has denied your application access.")
	} else {
		code := randHex(10)
		s.mu.Lock()
		if s.oauth.codes == nil {
			s.oauth.codes = map[string]oauthCode{}
		}
		s.oauth.codes[code] = oauthCode{clientID: clientID, redirectURI: redirect, login: login, expires: time.Now().Add(10 * time.Minute)}
		s.mu.Unlock()
		back.Set("code", code)
	}
	if state != "" {
		back.Set("state", state)
	}
	u.RawQuery = back.Encode()
	s.record(call, http.StatusFound, false)
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// oauthAccessToken exchanges a code for a user token. Like GitHub it
// answers a bad code with 200 and an "error" field, and in JSON only when
// asked to (Accept: application/json), form-encoded otherwise.
func (s *Server) oauthAccessToken(w http.ResponseWriter, r *http.Request, body []byte) {
	call := Call{Time: time.Now(), Method: r.Method, Path: r.URL.Path, Operation: "web/oauth-access-token", Auth: "none"}
	asJSON := strings.Contains(r.Header.Get("Accept"), "json")
	reply := func(v map[string]string) {
		s.record(call, http.StatusOK, false)
		if asJSON {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			_ = json.NewEncoder(w).Encode(v)
			return
		}
		f := url.Values{}
		for k, x := range v {
			f.Set(k, x)
		}
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		_, _ = w.Write([]byte(f.Encode()))
	}
	oauthErr := func(code, desc string) {
		reply(map[string]string{"error": code, "error_description": desc,
			"error_uri": "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"})
	}
	if r.Method != http.MethodPost {
		s.t.Errorf("githubtest: OAuth access_token: %s; GitHub expects POST", r.Method)
		s.record(call, http.StatusNotFound, false)
		http.NotFound(w, r)
		return
	}
	in := map[string]string{}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(body, &in); err != nil {
			s.t.Errorf("githubtest: OAuth access_token: body is not a JSON object of strings: %v", err)
		}
	} else {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			s.t.Errorf("githubtest: OAuth access_token: body is not a form: %v", err)
		}
		for k := range form {
			in[k] = form.Get(k)
		}
	}
	for k, v := range r.URL.Query() { // GitHub takes the parameters in the query too
		if in[k] == "" && len(v) > 0 {
			in[k] = v[0]
		}
	}
	s.mu.Lock()
	secret := s.clientSecretLocked(in["client_id"])
	a := s.appByClientIDLocked(in["client_id"])
	code, ok := s.oauth.codes[in["code"]]
	delete(s.oauth.codes, in["code"])
	s.mu.Unlock()
	switch {
	case a == nil || secret == "" || in["client_secret"] != secret:
		s.t.Errorf("githubtest: OAuth access_token: client_id %q and client_secret do not match an App's OAuth client", in["client_id"])
		oauthErr("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.")
	case !ok || time.Now().After(code.expires) || code.clientID != in["client_id"]:
		oauthErr("bad_verification_code", "The code passed is incorrect or expired.")
	case in["redirect_uri"] != "" && in["redirect_uri"] != code.redirectURI:
		oauthErr("redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL for this application.")
	default:
		tok := userTokenPrefix + randHex(18)
		s.mu.Lock()
		if s.oauth.tokens == nil {
			s.oauth.tokens = map[string]userToken{}
		}
		s.oauth.tokens[tok] = userToken{login: code.login, appID: a.id, clientID: code.clientID, expires: time.Now().Add(userTokenTTL)}
		s.mu.Unlock()
		reply(map[string]string{"access_token": tok, "token_type": "bearer", "scope": "",
			"expires_in": strconv.Itoa(int(userTokenTTL / time.Second))})
	}
}

// authenticateUser checks a user-to-server token.
func (s *Server) authenticateUser(c *reqCtx, cred, apiPath string) (response, bool) {
	s.mu.Lock()
	tok, ok := s.oauth.tokens[cred]
	s.mu.Unlock()
	switch {
	case !ok:
		s.t.Errorf("githubtest: %s (%s %s) was sent with a user token githubtest never issued", c.op, c.r.Method, apiPath)
		return errorResponse(http.StatusUnauthorized, "Bad credentials"), false
	case tok.revoked, time.Now().After(tok.expires):
		// A revoked or expired user token is the user's doing, not a bug.
		return errorResponse(http.StatusUnauthorized, "Bad credentials"), false
	}
	c.user, c.appID = tok.login, tok.appID
	return response{}, true
}

// canReadLocked reports whether login can read the repository. s.mu held.
func canReadLocked(r *repo, login string) bool {
	role := r.perms[login]
	return role != "" && role != "none"
}

// userReposLocked lists the repositories of an installation login can
// read, by full name. s.mu held.
func (s *Server) userReposLocked(installationID int64, login string) []*repo {
	var out []*repo
	for _, r := range s.repos {
		if r.installation == installationID && canReadLocked(r, login) {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].owner+"/"+out[i].name < out[j].owner+"/"+out[j].name })
	return out
}

// page cuts a list by per_page and page, with GitHub's Link header.
func (s *Server) page(c *reqCtx, apiPath string, n int) (start, end int, h http.Header) {
	q := c.r.URL.Query()
	perPage := perPageOf(q)
	p, err := strconv.Atoi(q.Get("page"))
	if err != nil || p < 1 {
		p = 1
	}
	start = min((p-1)*perPage, n)
	end = min(start+perPage, n)
	h = http.Header{}
	if end < n {
		h.Set("Link", fmt.Sprintf(`<%s%s?per_page=%d&page=%d>; rel="next"`, s.URL, apiPath, perPage, p+1))
	}
	return start, end, h
}

func (s *Server) listUserInstallations(c *reqCtx) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ins []*installation
	for _, in := range s.installations {
		if in.appID == c.appID && len(s.userReposLocked(in.id, c.user)) > 0 {
			ins = append(ins, in)
		}
	}
	sort.Slice(ins, func(i, j int) bool { return ins[i].id < ins[j].id })
	start, end, h := s.page(c, "/user/installations", len(ins))
	list := make([]any, 0, end-start)
	for _, in := range ins[start:end] {
		list = append(list, s.installationJSON(in))
	}
	return response{status: http.StatusOK, header: h, body: obj{"total_count": len(ins), "installations": list}}
}

func (s *Server) listUserInstallationRepos(c *reqCtx, in *installation) response {
	repos := s.userReposLocked(in.id, c.user)
	if len(repos) == 0 {
		return notFound()
	}
	start, end, h := s.page(c, fmt.Sprintf("/user/installations/%d/repositories", in.id), len(repos))
	list := make([]any, 0, end-start)
	for _, r := range repos[start:end] {
		j := s.fullRepoJSON(r)
		j["permissions"] = permissionsOf(r.perms[c.user])
		j["has_downloads"] = true // required by repository, not by full-repository
		list = append(list, j)
	}
	return response{status: http.StatusOK, header: h, body: obj{"total_count": len(repos), "repository_selection": "all", "repositories": list}}
}

// permissionsOf is a repository's permissions object for a role.
func permissionsOf(role string) obj {
	rank := map[string]int{"read": 1, "triage": 2, "write": 3, "maintain": 4, "admin": 5}[role]
	return obj{"pull": rank >= 1, "triage": rank >= 2, "push": rank >= 3, "maintain": rank >= 4, "admin": rank >= 5}
}

func (s *Server) getAuthenticatedUser(c *reqCtx) response {
	u := s.userJSON(c.user, "User")
	extra := obj{
		"name": c.user, "company": "", "blog": "", "location": "", "email": "", "hireable": false, "bio": "",
		"public_repos": 0, "public_gists": 0, "followers": 0, "following": 0, "user_view_type": "public",
		"created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
	}
	for k, v := range extra {
		u[k] = v
	}
	return response{status: http.StatusOK, body: u}
}
