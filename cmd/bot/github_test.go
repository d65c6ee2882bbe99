package main

import (
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/fixtures"
	"github.com/shipbot/shipbot/internal/config"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/setup"
	"github.com/shipbot/shipbot/internal/testenv"
	"github.com/shipbot/shipbot/webhooks"
)

func restDescription(t testing.TB) string {
	return filepath.Join(testenv.NodeModule(t, "@octokit/openapi"), "generated", "api.github.com.json")
}

var (
	handoffAction   = regexp.MustCompile(`<form id="manifest" method="post" action="([^"]+)">`)
	handoffManifest = regexp.MustCompile(`name="manifest" value="([^"]+)"`)
)

// TestSetupPageThenServe registers the App through the manifest flow of a
// bot without APP_ID, then starts a bot from the .env it wrote and delivers
// a webhook signed with the new secret.
func TestSetupPageThenServe(t *testing.T) {
	srv := githubtest.New(t, githubtest.WithSpec(restDescription(t)))
	dir := t.TempDir()
	t.Chdir(dir) // the bot reads and writes .env in its working directory

	port := testenv.FreePort(t)
	base := map[string]string{"PORT": strconv.Itoa(port), "DATA_DIR": filepath.Join(dir, "data"),
		"GITHUB_API_URL": srv.URL, "PUBLIC_URL": "http://127.0.0.1:" + strconv.Itoa(port), "APP_ID": "", "PRIVATE_KEY": "", "WEBHOOK_SECRET": ""}
	b := startBot(t, base)

	// Without a secret no delivery is accepted.
	if status, body := b.post(t, delivery{event: "push", id: "early", body: tagPush()}); status != 503 || !strings.Contains(body, "WEBHOOK_SECRET") {
		t.Fatalf("delivery before setup: %d %s", status, body)
	}

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	page := browse(t, browser, http.MethodGet, b.url+"/", nil)
	if !strings.Contains(page, `action="/setup/start"`) {
		t.Fatalf("home page is not the setup page:\n%s", page)
	}
	page = browse(t, browser, http.MethodPost, b.url+"/setup/start", url.Values{"account": {"user"}})
	am, mm := handoffAction.FindStringSubmatch(page), handoffManifest.FindStringSubmatch(page)
	if am == nil || mm == nil {
		t.Fatalf("no manifest hand-off form:\n%s", page)
	}
	page = browse(t, browser, http.MethodPost, html.UnescapeString(am[1]), url.Values{"manifest": {html.UnescapeString(mm[1])}})
	if !strings.Contains(page, "Restart shipbot") {
		t.Fatalf("callback page:\n%s", page)
	}
	apps := srv.ConvertedApps()
	if len(apps) != 1 {
		t.Fatalf("%d Apps registered, want 1", len(apps))
	}
	info, err := os.Stat(filepath.Join(dir, ".env"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf(".env: %v, mode %v; want 0600", err, info)
	}
	b.stop(t)

	// A new bot starts from that .env alone (the environment leaves the App
	// variables empty) and takes deliveries signed with the new secret.
	b2 := startBot(t, base)
	if !strings.Contains(b2.logs.String(), `"app_configured":true`) {
		t.Fatalf("bot did not pick the App up from .env:\n%s", b2.logs)
	}
	body := fixtures.Webhook("push")
	status, answer := b2.post(t, delivery{event: "push", id: "after-setup", body: body,
		signature: webhooks.Sign([]byte(apps[0].WebhookSecret), body)})
	if status != 202 {
		t.Fatalf("delivery signed with the new App's secret: %d %s", status, answer)
	}
}

func browse(t *testing.T, c *http.Client, method, u string, form url.Values) string {
	t.Helper()
	var resp *http.Response
	var err error
	if method == http.MethodGet {
		resp, err = c.Get(u)
	} else {
		resp, err = c.PostForm(u, form)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s = %d:\n%s", method, u, resp.StatusCode, b)
	}
	return string(b)
}

// TestFailedDeliveriesRedeliveredAfterRestart: deliveries GitHub failed to
// hand over while the bot was down are asked for again when it starts, and
// processed; ones it already has, or that succeeded, are left alone.
func TestFailedDeliveriesRedeliveredAfterRestart(t *testing.T) {
	srv := githubtest.New(t, githubtest.WithSpec(restDescription(t)))
	env := map[string]string{"DATA_DIR": t.TempDir(), "GITHUB_API_URL": srv.URL, "DASHBOARD_TOKEN": dashboardToken,
		"APP_ID": strconv.FormatInt(srv.AppID, 10), "PRIVATE_KEY": string(srv.PrivateKeyPEM)}

	// The first bot stores one delivery, then goes away.
	b := startBot(t, env)
	if status, _ := b.post(t, delivery{event: "push", id: "seen-1", body: tagPush()}); status != 202 {
		t.Fatalf("seen-1: %d", status)
	}
	eventually(t, "seen-1 not processed", func() bool { return len(b.logs.lines(`"delivery":"seen-1"`, `"msg":"job done"`)) == 1 })
	b.stop(t)

	// Meanwhile GitHub recorded: a delivery that failed while the bot was
	// down, a failed attempt of one the bot has, and a success.
	lost := srv.AddDelivery(githubtest.Delivery{GUID: "lost-1", Event: "push", StatusCode: 502, InstallationID: srv.InstallationID})
	srv.AddDelivery(githubtest.Delivery{GUID: "seen-1", Event: "push", StatusCode: 502, InstallationID: srv.InstallationID})
	srv.AddDelivery(githubtest.Delivery{GUID: "ok-1", Event: "push", StatusCode: 202, InstallationID: srv.InstallationID})

	// On redelivery, "GitHub" posts the delivery again to the new bot.
	port := testenv.FreePort(t)
	env["PORT"] = strconv.Itoa(port)
	botURL := "http://127.0.0.1:" + env["PORT"]
	srv.OnRedeliver(func(d githubtest.Delivery) int { return postWebhook(botURL, d.Event, d.GUID, tagPush()) })
	b2 := startBot(t, env)

	eventually(t, "lost-1 was not redelivered and processed", func() bool {
		return len(b2.logs.lines(`"delivery":"lost-1"`, `"msg":"job done"`)) == 1
	})
	time.Sleep(300 * time.Millisecond)
	if asked := srv.Redeliveries(); len(asked) != 1 || asked[0] != lost {
		t.Fatalf("redeliveries asked for %v, want exactly [%d] (lost-1)", asked, lost)
	}
	if n := len(b2.logs.lines(`"delivery":"seen-1"`, `"msg":"job done"`)); n != 0 {
		t.Fatalf("seen-1 processed again by the second bot")
	}
	// The audit log says the bot asked, and for which delivery.
	audit := dashboardGet(t, botURL+"/audit.jsonl")
	if n := strings.Count(audit, `"action":"redelivery.requested"`); n != 1 || !strings.Contains(audit, "push delivery lost-1, which had failed") {
		t.Errorf("audit log: %d redelivery entries, want 1 naming lost-1:\n%s", n, audit)
	}
}

func TestDotenvLoaderReadsWhatSetupWrites(t *testing.T) {
	// The setup page's .env writer and internal/config's loader must agree,
	// above all on the one value that spans lines: the private key.
	dir, pem := t.TempDir(), testPEM(t)
	path, err := setup.WriteEnv(dir, []setup.EnvVar{{Key: "APP_ID", Value: "9"}, {Key: "WEBHOOK_SECRET", Value: `a "quoted" \ secret`},
		{Key: "PRIVATE_KEY", Value: pem}})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := config.ReadDotenv(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(func(string) string { return "" }, raw)
	if err != nil || c.AppID != 9 || string(c.PrivateKey) != pem || string(c.WebhookSecret) != `a "quoted" \ secret` {
		t.Fatalf("round trip: %v %+v", err, c)
	}
}

// TestOutageRecoveredWithoutWaiting: a delivery refused with 503 while Redis
// is down is asked for again as soon as Redis answers, not at the next
// periodic sweep minutes later.
func TestOutageRecoveredWithoutWaiting(t *testing.T) {
	t.Parallel()
	srv := githubtest.New(t, githubtest.WithSpec(restDescription(t)))
	r := testenv.StartRedis(t)
	port := testenv.FreePort(t)
	botURL := "http://127.0.0.1:" + strconv.Itoa(port)
	body := tagPush()
	deliver := func(guid string) int { return postWebhook(botURL, "push", guid, body) }
	srv.OnRedeliver(func(d githubtest.Delivery) int { return deliver(d.GUID) })
	b := startBot(t, map[string]string{"PORT": strconv.Itoa(port), "REDIS_URL": r.URL(), "GITHUB_API_URL": srv.URL,
		"APP_ID": strconv.FormatInt(srv.AppID, 10), "PRIVATE_KEY": string(srv.PrivateKeyPEM)})

	r.Kill()
	// GitHub delivers during the outage, gets 503, and records the failure.
	status := deliver("during-outage")
	if status != http.StatusServiceUnavailable {
		t.Fatalf("delivery during the outage: %d, want 503", status)
	}
	srv.AddDelivery(githubtest.Delivery{GUID: "during-outage", Event: "push", StatusCode: status, InstallationID: srv.InstallationID})
	time.Sleep(2 * storeWatchEvery) // the bot notices the outage
	r.Start()

	eventually(t, "the refused delivery was not redelivered and processed after Redis came back", func() bool {
		return len(b.logs.lines(`"delivery":"during-outage"`, `"msg":"job done"`)) == 1
	})
}
