package gh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-github/v60/github"
)

// "Sign in with GitHub": the App's OAuth web flow, which gives the bot a
// user-to-server token, and the calls made with that token. Such a token
// sees what both the App and the user can, so a user's repositories are
// those of the App's installations that the user can read.

// OAuthClient is the App's OAuth client (GITHUB_CLIENT_ID and
// GITHUB_CLIENT_SECRET) at GitHub's web root, where the web flow lives
// (https://github.com, or the GitHub Enterprise Server host).
type OAuthClient struct {
	ID, Secret string
	WebURL     string
	// HTTPClient carries the code exchange; http.DefaultClient if nil.
	HTTPClient *http.Client
}

// AuthorizeURL is where the browser is sent to sign in; GitHub sends it
// back to redirectURI with a code and the same state.
func (o OAuthClient) AuthorizeURL(redirectURI, state string) string {
	q := url.Values{"client_id": {o.ID}, "redirect_uri": {redirectURI}, "state": {state}}
	return o.WebURL + "/login/oauth/authorize?" + q.Encode()
}

// Exchange trades the code GitHub handed to redirectURI for a user token
// (POST /login/oauth/access_token at the web root). A code works once.
func (o OAuthClient) Exchange(ctx context.Context, code, redirectURI string) (string, error) {
	form := url.Values{"client_id": {o.ID}, "client_secret": {o.Secret}, "code": {code}, "redirect_uri": {redirectURI}}
	endpoint := o.WebURL + "/login/oauth/access_token"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	hc := o.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	// A bad code is answered 200 with an "error" field.
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &out) != nil {
		return "", fmt.Errorf("HTTP %d from %s", resp.StatusCode, endpoint)
	}
	if out.Error != "" {
		return "", fmt.Errorf("%s (%s)", out.Description, out.Error)
	}
	if out.AccessToken == "" {
		return "", errors.New("no access token in the answer")
	}
	return out.AccessToken, nil
}

// User is GitHub as the user a user token belongs to. Its errors are
// *Error; GitHub no longer accepting the token is Status 401.
type User struct {
	gh *github.Client
}

// NewUser returns the client acting with a user token. baseURL is
// GITHUB_API_URL (see ParseBaseURL); hc carries the requests
// (http.DefaultClient if nil).
func NewUser(baseURL string, hc *http.Client, token string) (*User, error) {
	base, err := ParseBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &User{gh: newGitHub(hc, base).WithAuthToken(token)}, nil
}

// Login is who the user is (GET /user).
func (u *User) Login(ctx context.Context) (string, error) {
	me, _, err := u.gh.Users.Get(ctx, "")
	if err != nil {
		return "", wrapUser("read the signed-in user (GET /user)", err)
	}
	return me.GetLogin(), nil
}

// Repositories lists, by full name, the repositories the user can read in
// the installations of the App that they can reach (GET
// /user/installations, then /user/installations/{id}/repositories for
// each), reading at most maxPages pages of 100 of each list.
func (u *User) Repositories(ctx context.Context, maxPages int) ([]string, error) {
	var ids []int64
	err := pages(maxPages, func(opt *github.ListOptions) (*github.Response, error) {
		ins, resp, err := u.gh.Apps.ListUserInstallations(ctx, opt)
		for _, in := range ins {
			ids = append(ids, in.GetID())
		}
		return resp, wrapUser("list the App's installations the signed-in user can reach (GET /user/installations)", err)
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, id := range ids {
		err := pages(maxPages, func(opt *github.ListOptions) (*github.Response, error) {
			list, resp, err := u.gh.Apps.ListUserRepos(ctx, id, opt)
			if list != nil {
				for _, r := range list.Repositories {
					out = append(out, r.GetFullName())
				}
			}
			return resp, wrapUser(fmt.Sprintf("list the repositories of installation %d the signed-in user can read", id), err)
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// pages calls list for each page of 100 until the last one, or max of them.
func pages(max int, list func(*github.ListOptions) (*github.Response, error)) error {
	opt := &github.ListOptions{PerPage: 100}
	for range max {
		resp, err := list(opt)
		if err != nil {
			return err
		}
		if resp.NextPage == 0 {
			return nil
		}
		opt.Page = resp.NextPage
	}
	return nil
}

// wrapUser is wrap for a call with a user's token: its hints speak of the
// user's session, not of the App's credentials or of a job.
func wrapUser(op string, err error) error {
	e := wrap(op, err)
	var ge *Error
	if errors.As(e, &ge) {
		ge.asUser = true
	}
	return e
}
