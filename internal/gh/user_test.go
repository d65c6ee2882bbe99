package gh_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/githubtest"
)

// signIn runs the OAuth web flow as the browser would, up to the code
// GitHub hands to the callback, and exchanges it for a user token.
func signIn(t *testing.T, e *env, login string) string {
	t.Helper()
	e.srv.SetOAuthUser(login)
	id, secret := e.srv.OAuthClient()
	o := gh.OAuthClient{ID: id, Secret: secret, WebURL: e.srv.WebURL}
	const callback = "https://shipbot.example.com/auth/callback"
	code := authorize(t, o, callback, "state-1")
	tok, err := o.Exchange(e.ctx, code, callback)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// authorize follows AuthorizeURL and returns the code of the redirect.
func authorize(t *testing.T, o gh.OAuthClient, callback, state string) string {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(o.AuthorizeURL(callback, state))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound || !strings.HasPrefix(back.String(), callback) || back.Query().Get("state") != state {
		t.Fatalf("authorize answered %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return back.Query().Get("code")
}

func TestOAuthExchange(t *testing.T) {
	e := newEnv(t, nil)
	tok := signIn(t, e, "mona")
	if !strings.HasPrefix(tok, "ghu_") {
		t.Fatalf("token %q is not a user token", tok)
	}
	auths := e.srv.OAuthAuthorizations()
	if len(auths) != 1 || auths[0].RedirectURI != "https://shipbot.example.com/auth/callback" || auths[0].State != "state-1" {
		t.Fatalf("authorize requests %+v", auths)
	}

	// A code works once.
	id, secret := e.srv.OAuthClient()
	o := gh.OAuthClient{ID: id, Secret: secret, WebURL: e.srv.WebURL}
	code := authorize(t, o, "https://shipbot.example.com/auth/callback", "state-2")
	if _, err := o.Exchange(e.ctx, code, "https://shipbot.example.com/auth/callback"); err != nil {
		t.Fatal(err)
	}
	_, err := o.Exchange(e.ctx, code, "https://shipbot.example.com/auth/callback")
	if err == nil || err.Error() != "The code passed is incorrect or expired. (bad_verification_code)" {
		t.Fatalf("a spent code: %v", err)
	}
}

func TestUserLoginAndRepositories(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.SetPermission(owner, repo, "mona", "write")
	e.srv.AddRepo(owner, "secret", githubtest.RepoOptions{Private: true}) // mona cannot read it
	e.srv.AddInstallation(77, "other-org")
	// More than a page of 100 in the second installation.
	var want []string
	for i := range 120 {
		name := fmt.Sprintf("svc-%03d", i)
		e.srv.AddRepo("other-org", name, githubtest.RepoOptions{Installation: 77})
		e.srv.SetPermission("other-org", name, "mona", "read")
		want = append(want, "other-org/"+name)
	}
	want = append(want, owner+"/"+repo)
	u, err := gh.NewUser(e.srv.URL, nil, signIn(t, e, "mona"))
	if err != nil {
		t.Fatal(err)
	}
	if login, err := u.Login(e.ctx); err != nil || login != "mona" {
		t.Fatalf("login %q, %v", login, err)
	}
	got, err := u.Repositories(e.ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("repositories %v\nwant %v", got, want)
	}
	// The bound on pages holds.
	if got, err := u.Repositories(e.ctx, 1); err != nil || len(got) != 101 {
		t.Fatalf("one page of each list: %d repositories, %v", len(got), err)
	}
}

// A revoked token is *gh.Error with status 401, whose hint is the user's,
// not the App's.
func TestUserRevokedToken(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.SetPermission(owner, repo, "mona", "read")
	u, err := gh.NewUser(e.srv.URL, nil, signIn(t, e, "mona"))
	if err != nil {
		t.Fatal(err)
	}
	e.srv.RevokeUserTokens("mona")
	_, err = u.Repositories(e.ctx, 10)
	var ge *gh.Error
	if !errors.As(err, &ge) || ge.Status != http.StatusUnauthorized {
		t.Fatalf("revoked token: %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "sign in again") || strings.Contains(msg, "APP_ID") {
		t.Fatalf("message %q", msg)
	}
	if _, err := u.Login(e.ctx); !errors.As(err, &ge) || ge.Status != http.StatusUnauthorized {
		t.Fatalf("login with a revoked token: %v", err)
	}
}
