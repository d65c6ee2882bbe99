package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/testenv"
)

const dashboardToken = "dashboard-token-for-the-tests-0123456789"

// TestDashboardWiring: the bot serves the dashboard at / behind sign-in,
// and leaves /healthz, /readyz, /metrics and /webhooks as they were.
func TestDashboardWiring(t *testing.T) {
	b := startBot(t, map[string]string{"DASHBOARD_TOKEN": dashboardToken})
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		method, path, auth string
		status             int
		location           string
	}{
		{"GET", "/", "", http.StatusFound, "/auth/signin?next=%2F"},
		{"GET", "/deploys/push-x-production", "", http.StatusFound, "/auth/signin?next=%2Fdeploys%2Fpush-x-production"},
		{"GET", "/deploys/push-x-production.json", "", http.StatusUnauthorized, ""},
		{"GET", "/", "Bearer " + dashboardToken, http.StatusOK, ""},
		{"GET", "/deploys/push-x-production", "Bearer " + dashboardToken, http.StatusNotFound, ""},
		{"GET", "/auth/signin", "", http.StatusOK, ""},
		{"GET", "/assets/style.css", "", http.StatusOK, ""},
		{"GET", "/healthz", "", http.StatusOK, ""},
		{"GET", "/readyz", "", http.StatusOK, ""},
		{"GET", "/metrics", "", http.StatusOK, ""},
		{"POST", "/webhooks", "", http.StatusUnauthorized, ""}, // unsigned
	} {
		req, _ := http.NewRequest(tc.method, b.url+tc.path, strings.NewReader("{}"))
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		req.Header.Set("X-GitHub-Event", "ping")
		req.Header.Set("X-GitHub-Delivery", "wiring")
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
			t.Errorf("%s %s (auth %t): %d to %q, want %d to %q\n%s", tc.method, tc.path, tc.auth != "", resp.StatusCode, resp.Header.Get("Location"), tc.status, tc.location, body)
		}
	}
}

// chromium finds headless Chromium (Debian package chromium) or says what
// is missing.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Missing(t, "Chromium is not installed (Debian package chromium)")
	return ""
}

// artifactDir is where screenshots go: $SHIPBOT_ARTIFACTS, or artifacts/
// at the repository root (gitignored).
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SHIPBOT_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(testenv.RepoRoot(t), "artifacts")
	}
	dir = filepath.Join(dir, t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDashboardInBrowser drives the dashboard in headless Chromium around
// a real rollout: sign in with the dashboard token, follow the deploy page
// from running to success without reloading, then find the release on the
// home page, on a wide screen and on a phone. Screenshots are kept as
// artifacts.
//
// Not parallel: chromedp starts Chromium with Pdeathsig from whatever thread
// it runs on, and a local driver closing in a parallel test ends the thread
// its spawner locked, which may be that one (testenv.StartChild).
func TestDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the sample app in a browser")
	}
	exe := chromium(t)
	srv := githubtest.New(t, githubtest.WithSpec(restDescription(t)))
	srv.AddRepo(deployOwner, deployRepo, githubtest.RepoOptions{DefaultBranch: "main"})
	r := testenv.StartRedis(t)
	port := strconv.Itoa(testenv.FreePort(t))
	base := "http://127.0.0.1:" + port
	b := startBot(t, map[string]string{
		"REDIS_URL": r.URL(), "GITHUB_API_URL": srv.URL, "APP_ID": strconv.FormatInt(srv.AppID, 10),
		"PRIVATE_KEY": string(srv.PrivateKeyPEM), "PORT": port, "PUBLIC_URL": base, "DASHBOARD_TOKEN": dashboardToken,
	})
	// bake keeps the rollout running long enough to watch it.
	f := &deployFixture{srv: srv, bot: b, config: "environments:\n  production:\n    rollout:\n      bake: 1s\n"}
	shots := artifactDir(t)

	actx, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 900))...)
	defer cancel()
	browser, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	defer cancel()
	// The first action starts the browser, which lives as long as the
	// context of that call: no timeout on it.
	if err := chromedp.Do(browser, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(browser, 3*time.Minute)
	defer cancel()
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg) // quality 100 is PNG
			if err != nil {
				return err
			}
			p := filepath.Join(shots, name+".png")
			t.Logf("screenshot %s", p)
			return os.WriteFile(p, png, 0o644)
		})
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, b.logs)
		}
	}
	get := func(what string, a chromedp.Action[string]) string {
		t.Helper()
		v, err := chromedp.Run(ctx, a)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	attr := func(sel, name string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(sel), name))
		if err != nil {
			t.Fatalf("attribute %s of %s: %v", name, sel, err)
		}
		return v.Value
	}

	// Signed out, the home page sends the browser to sign in.
	do("open the dashboard", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`#token`)), shot("signin"))
	if loc := get("location", chromedp.Location()); !strings.Contains(loc, "/auth/signin?next=") {
		t.Errorf("signed-out home went to %s, want the sign-in page", loc)
	}
	do("sign in with the dashboard token",
		chromedp.SendKeys(chromedp.CSS(`#token`), dashboardToken),
		chromedp.Submit(chromedp.CSS(`#token`)),
		chromedp.WaitVisible(chromedp.CSS(`p.empty`)),
	)

	// A rollout starts; its log_url is the deploy page.
	f.push(t, "push-1", "0000000000000000000000000000000000000000", shaV1, "v1", true)
	logURL := ""
	for deadline := time.Now().Add(2 * time.Minute); logURL == "" && time.Now().Before(deadline); {
		for _, d := range srv.Deployments(deployOwner, deployRepo) {
			for _, s := range d.Statuses {
				if d.SHA == shaV1 && s.State == "in_progress" {
					logURL = s.LogURL
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.HasPrefix(logURL, base+"/deploys/") {
		t.Fatalf("in_progress log_url %q, want %s/deploys/…\n%s", logURL, base, b.logs)
	}

	do("open the running deploy", chromedp.Navigate(logURL), chromedp.WaitVisible(chromedp.CSS(`#deploy`)))
	if state := attr(`#deploy`, "data-state"); state != "running" {
		t.Fatalf("deploy page opened during the rollout shows state %q, want running (raise bake if the rollout was already over)", state)
	}
	get("mark the page", chromedp.Evaluate[string](`window.stillHere = "yes"`))
	do("screenshot", shot("deploy-running"))
	do("watch it finish", chromedp.WaitVisible(chromedp.CSS(`#deploy[data-state="success"]`)), shot("deploy-finished"))
	if v := get("read the mark", chromedp.Evaluate[string](`String(window.stillHere)`)); v != "yes" {
		t.Errorf("the deploy page reloaded instead of updating in place")
	}
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#deploy tr.batch").length`))
	if err != nil || n != 4 {
		t.Errorf("the finished deploy page shows %d batches (%v), want 4 (canary 1, then 25%% of 4)", n, err)
	}
	if c := get("first batch", chromedp.Text(chromedp.CSS(`#deploy tr.batch td`))); c != "canary" {
		t.Errorf("first batch is %q, want canary", c)
	}

	// Home lists production with the new release, linked to the commit.
	const current = `article.env[data-env="production"] .current a.sha`
	do("home", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(current)), shot("home-wide"))
	href := attr(current, "href")
	do("home on a phone",
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS(`article.env[data-env="production"]`)),
		shot("home-phone"),
	)
	if want := srv.WebURL + "/" + deployOwner + "/" + deployRepo + "/commit/" + shaV1; href != want {
		t.Errorf("current release links to %q, want %q", href, want)
	}
}
