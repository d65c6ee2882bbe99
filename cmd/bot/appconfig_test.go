package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/shipbot/shipbot/fixtures"
)

// appConfig is a repository whose app prints its secret while it builds
// and in its release phase (which also counts its runs in migrations),
// with app.env, production's env and, when withSecret, the secret GREETING.
func appConfig(migrations, release string, withSecret bool) string {
	secrets := ""
	if withSecret {
		secrets = "    secrets: [GREETING]\n"
	}
	return `app:
  build: echo "build sees GREETING=$GREETING" && go build -o app .
  run: ./app
  release: ` + release + `
  env: {LOG_FORMAT: json, MIGRATIONS: ` + migrations + `}
environments:
  production:
    instances: 2
    rollout: {canary: 1, batch: 1, max_unavailable: 1}
    health: {interval: 100ms, healthy_after: 1, timeout: 20s}
    env: {CHECKOUT_V2: "on"}
` + secrets
}

// TestAppConfigSecretsAndReleasePhase is issue 13 end to end: a real bot on
// real Redis, githubtest, the local driver and the sample app.
//   - A release that needs a secret never set fails before anything is
//     touched, and says the `bot secrets set` line that fixes it.
//   - After `bot secrets set` (the real command, while the bot serves) the
//     same configuration deploys: the instances see app.env, env and the
//     secret, and nothing of the bot's own environment.
//   - The release phase runs once per deploy, sees the secret, and when it
//     fails production keeps serving the previous release.
//   - The secret's value, which the app prints while it builds and in its
//     release phase, is nowhere: not in a GitHub request, the bot's log, a
//     dashboard page or anything in Redis; the deploy page shows ••••.
func TestAppConfigSecretsAndReleasePhase(t *testing.T) {
	const value = "hello from the vault 7f3a"
	// What the bot has in its own environment must never reach the app.
	for _, k := range []string{"WEBHOOK_SECRET", "PRIVATE_KEY", "REDIS_URL", "SECRETS_KEY"} {
		t.Setenv(k, "bot-own-"+strings.ToLower(k))
	}
	key := make([]byte, 32)
	rand.Read(key)
	secretsKey := base64.StdEncoding.EncodeToString(key)
	f := newDeployFixtureEnv(t, map[string]string{"SECRETS_KEY": secretsKey, "DASHBOARD_TOKEN": dashboardToken})
	migrations := filepath.Join(t.TempDir(), "migrations.log")
	release := `echo "release sees GREETING=$GREETING" && echo migrated >> "$MIGRATIONS"`
	ran := func() int {
		b, _ := os.ReadFile(migrations)
		return strings.Count(string(b), "migrated\n")
	}
	step := func(n int, version, config, want string) (desc, logURL string) {
		t.Helper()
		f.config = config
		f.pushRelease(t, n, version, fixtures.Behaviour{})
		d := f.finished(t, releaseSHA(n))
		final := d.Statuses[len(d.Statuses)-1]
		t.Logf("%s: %s %q", version, d.LastState(), final.Description)
		if d.LastState() != want {
			t.Fatalf("%s: deployment %v, want %s\n%s", version, states(d), want, f.bot.logs)
		}
		return final.Description, final.LogURL
	}

	// v1, with no secret named: production runs, the release phase ran once.
	step(1, "v1", appConfig(migrations, release, false), "success")
	url := ""
	for _, d := range f.srv.Deployments(deployOwner, deployRepo) {
		if d.SHA == releaseSHA(1) {
			url = d.Statuses[len(d.Statuses)-1].EnvironmentURL
		}
	}
	if ran() != 1 {
		t.Fatalf("release phase ran %d times for one deploy", ran())
	}

	// v2 needs GREETING, which was never set: nothing is touched.
	desc, _ := step(2, "v2", appConfig(migrations, release, true), "failure")
	if want := "bot secrets set " + deployOwner + "/" + deployRepo + " production GREETING"; !strings.Contains(desc, "GREETING") || !strings.Contains(desc, want) {
		t.Errorf("the failure does not name the secret and %q: %q", want, desc)
	}
	if cr := f.checkRun(t, releaseSHA(2), "shipbot/production"); !strings.Contains(cr.Summary+cr.Title, "bot secrets set") {
		t.Errorf("the check run does not say how to set the secret: %q\n%s", cr.Title, cr.Summary)
	}
	serves(t, url, "v1")
	if ran() != 1 {
		t.Errorf("the release phase ran for a deploy that failed before it")
	}

	// bot secrets set, as a person would, while the bot serves.
	var out, errOut strings.Builder
	getenv := func(k string) string {
		return map[string]string{"REDIS_URL": f.redisURL, "SECRETS_KEY": secretsKey}[k]
	}
	if err := runWith(context.Background(), []string{"secrets", "set", deployOwner + "/" + deployRepo, "production", "GREETING"}, getenv,
		strings.NewReader(value+"\n"), &out, &errOut); err != nil {
		t.Fatalf("bot secrets set: %v\n%s%s", err, out.String(), errOut.String())
	}
	if strings.Contains(out.String()+errOut.String(), value) {
		t.Errorf("bot secrets set printed the value:\n%s%s", out.String(), errOut.String())
	}

	_, logURL := step(3, "v3", appConfig(migrations, release, true), "success")
	env := getBody(t, url+"/env")
	for _, want := range []string{"GREETING=" + value, "CHECKOUT_V2=on", "LOG_FORMAT=json", "PORT="} {
		if !strings.Contains(env, "\n"+want) && !strings.HasPrefix(env, want) {
			t.Errorf("the instance's environment lacks %s:\n%s", want, env)
		}
	}
	for _, k := range []string{"WEBHOOK_SECRET", "PRIVATE_KEY", "REDIS_URL", "SECRETS_KEY", "DASHBOARD_TOKEN"} {
		if strings.Contains(env, k+"=") {
			t.Errorf("the instance got the bot's %s:\n%s", k, env)
		}
	}
	if ran() != 2 {
		t.Errorf("release phase ran %d times for two deploys", ran())
	}
	page := dashboardGet(t, f.bot.url+"/deploys/"+filepath.Base(logURL))
	for _, want := range []string{"build sees GREETING=••••", "release sees GREETING=••••"} {
		if !strings.Contains(page, want) {
			t.Errorf("the deploy page does not show %q:\n%s", want, page)
		}
	}

	// v4's release phase fails: production keeps serving v3.
	desc, _ = step(4, "v4", appConfig(migrations, `echo "release sees GREETING=$GREETING" && echo "no such table" >&2 && exit 3`, true), "failure")
	if !strings.Contains(desc, "release phase failed") {
		t.Errorf("the failure does not say the release phase failed: %q", desc)
	}
	serves(t, url, "v3")

	// The value is nowhere.
	for _, c := range f.srv.Calls() {
		if strings.Contains(string(c.Body), value) {
			t.Errorf("GitHub got the secret in %s %s", c.Method, c.Path)
		}
	}
	if strings.Contains(f.bot.logs.String(), value) {
		t.Error("the bot's log has the secret")
	}
	pages := []string{"/"}
	for _, d := range f.srv.Deployments(deployOwner, deployRepo) {
		for _, s := range d.Statuses {
			if s.LogURL != "" {
				pages = append(pages, "/deploys/"+filepath.Base(s.LogURL), "/deploys/"+filepath.Base(s.LogURL)+".json")
			}
		}
	}
	for _, p := range pages {
		if strings.Contains(dashboardGet(t, f.bot.url+p), value) {
			t.Errorf("dashboard page %s shows the secret", p)
		}
	}
	assertRedisLacks(t, f.redisURL, value)

	// The audit log has each deploy queued, started (all but v2, which
	// failed before it started) and finished, in /audit.jsonl for a signed-in
	// viewer only.
	jsonl := dashboardGet(t, f.bot.url+"/audit.jsonl?repo="+deployOwner+"/"+deployRepo)
	counts := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(jsonl), "\n") {
		var e struct{ Action, Outcome, Actor, Environment, Link string }
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit.jsonl line %q: %v", line, err)
		}
		counts[e.Action+"/"+e.Outcome]++
		if e.Environment != "production" || e.Actor == "" || (strings.HasPrefix(e.Action, "deploy.") && !strings.Contains(e.Link, "/deploys/")) {
			t.Errorf("audit entry %+v lacks its environment, actor or link", e)
		}
		if e.Action == "secret.set" && !strings.HasPrefix(e.Actor, "cli:") {
			t.Errorf("bot secrets set is in the audit log as %q, want cli:USER", e.Actor)
		}
	}
	// bot secrets set ran once, through the command, while the bot served.
	want := map[string]int{"deploy.queued/success": 4, "deploy.started/success": 4, "deploy.finished/success": 2, "deploy.finished/failure": 2, "secret.set/success": 1}
	if !maps.Equal(counts, want) {
		t.Errorf("audit entries %v, want %v\n%s", counts, want, jsonl)
	}
	if resp, err := http.Get(f.bot.url + "/audit.jsonl"); err != nil {
		t.Error(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/audit.jsonl without sign-in: %s, want 401", resp.Status)
	}
	if page := dashboardGet(t, f.bot.url+"/audit?environment=production"); !strings.Contains(page, "deploy.finished") {
		t.Errorf("/audit does not list the deploys:\n%s", page)
	}
}

// dashboardGet is a dashboard page, signed in with DASHBOARD_TOKEN.
func dashboardGet(t *testing.T, url string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+dashboardToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

// assertRedisLacks reads every key of the Redis at url, whatever its type,
// and fails if any holds s.
func assertRedisLacks(t *testing.T, url, s string) {
	t.Helper()
	c := redisClient(t, url)
	ctx := context.Background()
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		var dump string
		switch typ := c.Type(ctx, k).Val(); typ {
		case "string":
			dump = c.Get(ctx, k).Val()
		case "hash":
			dump = fmt.Sprint(c.HGetAll(ctx, k).Val())
		case "list":
			dump = fmt.Sprint(c.LRange(ctx, k, 0, -1).Val())
		case "set":
			dump = fmt.Sprint(c.SMembers(ctx, k).Val())
		case "zset":
			dump = fmt.Sprint(c.ZRange(ctx, k, 0, -1).Val())
		case "stream":
			dump = fmt.Sprint(c.XRange(ctx, k, "-", "+").Val())
		default:
			t.Errorf("Redis key %s has type %s, which this check does not read", k, typ)
		}
		if strings.Contains(dump, s) {
			t.Errorf("Redis key %s holds the secret", k)
		}
	}
	t.Logf("read %d Redis keys", len(keys))
}

// redisClient is a client of the Redis at url, closed when the test ends.
func redisClient(tb testing.TB, url string) *redis.Client {
	tb.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		tb.Fatal(err)
	}
	c := redis.NewClient(opts)
	tb.Cleanup(func() { c.Close() })
	return c
}
