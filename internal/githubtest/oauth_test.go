package githubtest_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-github/v60/github"

	"github.com/shipbot/shipbot/internal/githubtest"
)

// oauthSignIn runs the web flow as a browser and the server side would,
// returning the user token.
func oauthSignIn(t *testing.T, srv *githubtest.Server, callback string) string {
	t.Helper()
	id, secret := srv.OAuthClient()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := url.Values{"client_id": {id}, "redirect_uri": {callback}, "state": {"st4te"}}
	resp, err := noFollow.Get(srv.WebURL + "/login/oauth/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), callback) {
		t.Fatalf("authorize: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if loc.Query().Get("state") != "st4te" || loc.Query().Get("code") == "" {
		t.Fatalf("authorize came back with %q", loc.RawQuery)
	}
	form := url.Values{"client_id": {id}, "client_secret": {secret}, "code": {loc.Query().Get("code")}, "redirect_uri": {callback}}
	req, _ := http.NewRequest(http.MethodPost, srv.WebURL+"/login/oauth/access_token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("access_token: %v %+v", err, tok)
	}
	// A code is good once.
	req, _ = http.NewRequest(http.MethodPost, srv.WebURL+"/login/oauth/access_token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	b, _ := io.ReadAll(resp2.Body)
	if v, _ := url.ParseQuery(string(b)); v.Get("error") != "bad_verification_code" {
		t.Fatalf("second exchange of the same code: %q", b)
	}
	return tok.AccessToken
}

// TestOAuthWebFlowAndUserRepos: the web flow hands out a user token, which
// lists only the installations and repositories the user can read, in
// responses that match GitHub's REST description.
func TestOAuthWebFlowAndUserRepos(t *testing.T) {
	srv := githubtest.New(t, githubtest.WithSpec(specPath(t)))
	srv.AddRepo("octo-org", "web", githubtest.RepoOptions{})
	srv.AddRepo("octo-org", "secret", githubtest.RepoOptions{Private: true})
	srv.AddInstallation(7, "other-org")
	srv.AddRepo("other-org", "api", githubtest.RepoOptions{Installation: 7})
	srv.SetPermission("octo-org", "web", "mona", "read")
	srv.SetPermission("octo-org", "secret", "mona", "none")
	srv.SetOAuthUser("mona")

	tok := oauthSignIn(t, srv, "http://127.0.0.1:1/auth/callback")
	c := github.NewClient(nil).WithAuthToken(tok)
	base, _ := url.Parse(srv.URL + "/")
	c.BaseURL = base
	ctx := context.Background()
	me, _, err := c.Users.Get(ctx, "")
	if err != nil || me.GetLogin() != "mona" {
		t.Fatalf("GET /user: %v %v", me.GetLogin(), err)
	}
	ins, _, err := c.Apps.ListUserInstallations(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 1 || ins[0].GetID() != srv.InstallationID {
		t.Fatalf("installations %v, want only %d", ins, srv.InstallationID)
	}
	list, _, err := c.Apps.ListUserRepos(ctx, srv.InstallationID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if repos := list.Repositories; len(repos) != 1 || repos[0].GetFullName() != "octo-org/web" {
		t.Fatalf("repositories %v, want only octo-org/web", list.Repositories)
	}
	if _, resp, err := c.Apps.ListUserRepos(ctx, 7, nil); err == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("repositories of an installation without access: %v", err)
	}
	srv.RevokeUserTokens("mona")
	if _, resp, err := c.Apps.ListUserInstallations(ctx, nil); err == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("revoked token: %v", err)
	}
}

// TestOAuthDenied: Cancel on GitHub comes back with error=access_denied.
func TestOAuthDenied(t *testing.T) {
	srv := githubtest.New(t, githubtest.WithSpec(specPath(t)))
	srv.DenyNextOAuth()
	id, _ := srv.OAuthClient()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(srv.WebURL + "/login/oauth/authorize?client_id=" + id + "&state=s&redirect_uri=" + url.QueryEscape("http://x.test/cb"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "s" {
		t.Fatalf("denied authorize came back to %s", loc)
	}
}
