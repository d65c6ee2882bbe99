package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/slack/slackfake"
	"github.com/shipbot/shipbot/internal/testenv"
	"github.com/shipbot/shipbot/webhooks"
)

// rolloutConfig is a .github/shipbot.yml for production: 4 instances, one
// per batch after the canary, with the given bake and fast health checks.
func rolloutConfig(bake string) string {
	return "environments:\n  production:\n    instances: 4\n    rollout:\n      canary: 1\n      batch: 1\n      max_unavailable: 1\n      bake: " + bake +
		"\n    health:\n      interval: 100ms\n      healthy_after: 1\n      timeout: 20s\n"
}

// pushWith makes sha the head of main with the release and configuration
// and delivers the push to the bot at b.
func pushWith(t *testing.T, srv *githubtest.Server, b *runningBot, delivery, before, sha, version, config string) {
	t.Helper()
	if err := srv.SetTree(deployOwner, deployRepo, sha, sampleRelease(t, version, true)); err != nil {
		t.Fatal(err)
	}
	srv.SetFile(deployOwner, deployRepo, sha, ".github/shipbot.yml", []byte(config))
	srv.SetBranch(deployOwner, deployRepo, "main", sha)
	if status, body := b.post(t, delivery2(delivery, pushOnMain(srv.InstallationID, before, sha))); status != 202 {
		t.Fatalf("push %s: %d %s", delivery, status, body)
	}
}

func deploymentOf(srv *githubtest.Server, sha string) (githubtest.Deployment, bool) {
	for _, d := range srv.Deployments(deployOwner, deployRepo) {
		if d.SHA == sha {
			return d, true
		}
	}
	return githubtest.Deployment{}, false
}

func terminalState(s string) bool {
	switch s {
	case "success", "failure", "error", "inactive":
		return true
	}
	return false
}

// waitDeployment polls until the deployment of sha satisfies cond, failing
// after d.
func waitDeployment(t *testing.T, srv *githubtest.Server, sha string, d time.Duration, logs func() string, cond func(githubtest.Deployment) bool) githubtest.Deployment {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		dep, ok := deploymentOf(srv, sha)
		if ok && cond(dep) {
			return dep
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment of %s: condition not met within %s (statuses %v)\n%s", sha[:7], d, states(dep), logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func bodyOf(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// waitServes waits up to d for url to answer with a body containing want.
func waitServes(t *testing.T, url, want string, d time.Duration, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if body, err := bodyOf(url); err == nil && strings.Contains(body, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("production never served %s during the rollout\n%s", want, logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// postWebhook delivers body to the bot at botURL as GitHub does (signed with
// the tests' secret) and returns the status, 0 when nothing answered.
func postWebhook(botURL, event, guid string, body []byte) int {
	req, err := http.NewRequest(http.MethodPost, botURL+"/webhooks", bytes.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", guid)
	req.Header.Set("X-Hub-Signature-256", webhooks.Sign([]byte(secret), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// versionsServed asks url n times and returns the distinct answers.
func versionsServed(t testing.TB, url string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for range n {
		body, err := bodyOf(url)
		if err != nil {
			seen["error: "+err.Error()]++
			continue
		}
		seen[versionIn(body)]++
	}
	return seen
}

// botProcess is the real bot binary running as a subprocess.
type botProcess struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
}

// startBotProcess runs `bot serve args...` with env and waits until it
// answers /healthz on PORT.
func startBotProcess(t testing.TB, bin string, env map[string]string, args ...string) *botProcess {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve"}, args...)...)
	cmd.Dir = t.TempDir() // no .env here
	cmd.Env = append(os.Environ()[:0:0], "PATH="+os.Getenv("PATH"), "HOME="+os.Getenv("HOME"))
	for _, k := range []string{"GOCACHE", "GOPATH", "GOMODCACHE", "GOROOT", "GOFLAGS", "GOPROXY", "TMPDIR"} {
		if v := os.Getenv(k); v != "" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &botProcess{cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	if dir := env["DATA_DIR"]; dir != "" {
		stopKeeperAtEnd(t, dir) // after the bot: the keeper outlives it
	}
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(40 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	url := "http://127.0.0.1:" + env["PORT"] + "/healthz"
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.done:
			t.Fatalf("bot exited during start-up\n%s", p.logs)
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if port, _ := strconv.Atoi(env["PORT"]); resp.StatusCode == 200 && testenv.ListensOn(cmd.Process.Pid, port) {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("bot did not answer /healthz within 30s\n%s", p.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *botProcess) kill(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("bot did not die on SIGKILL")
	}
}

// TestKilledMidRolloutResumes: the real binary, SIGKILLed while a rollout
// bakes between batches and started again on the same DATA_DIR and Redis,
// finishes (or rolls back) the deploy: every deployment status ends
// terminal, every instance serves one release and the environment's lock is
// free for the next push (SPEC §8, issue 4).
func TestKilledMidRolloutResumes(t *testing.T) {
	t.Parallel()
	killMidRollout(t, 0)
}

// TestKilledMidRolloutResumesSlowGitHub is the same with GitHub answering
// the creation of v2's check run in 1s, as it may: the deploy lock is then
// taken ~1s after the job's lease. When the lock lived as long as the lease
// (both 30s), the reclaimed job found the dead bot's lock still held, acked,
// and left v2 in progress for good; lockTTL < visibility - heartbeat
// (serve.go's timingsFor) makes it find the lock expired and carry the
// deploy on.
func TestKilledMidRolloutResumesSlowGitHub(t *testing.T) {
	t.Parallel()
	killMidRollout(t, time.Second)
}

// crashJobTimeout is the bot's JOB_TIMEOUT in the crash tests: short, so
// that the killed job comes back in seconds rather than the default 30s.
// The relation between lease, heartbeat and lock is the same at any value
// (TestLockExpiresBeforeAJobIsReclaimed).
const crashJobTimeout = 6 * time.Second

func killMidRollout(t *testing.T, slowCheckRun time.Duration) {
	if testing.Short() {
		t.Skip("builds the bot and runs the sample app")
	}
	start := time.Now()
	bin := botBinary(t)

	srv := githubtest.New(t, githubtest.WithSpec(restDescription(t)))
	srv.AddRepo(deployOwner, deployRepo, githubtest.RepoOptions{DefaultBranch: "main"})
	r := testenv.StartRedis(t)
	port := strconv.Itoa(testenv.FreePort(t))
	// Slack hears of every deploy: the killed one must keep its one
	// message, which the restarted bot edits (its ts is in the record).
	sl := slackfake.New(t, "#deploys")
	const announce = "notify:\n  slack:\n    channel: \"#deploys\"\n"
	env := map[string]string{
		"SLACK_BOT_TOKEN": slackfake.Token, "SLACK_API_URL": sl.URL,
		"PORT": port, "DATA_DIR": t.TempDir(), "REDIS_URL": r.URL(), "GITHUB_API_URL": srv.URL,
		"APP_ID": strconv.FormatInt(srv.AppID, 10), "PRIVATE_KEY": string(srv.PrivateKeyPEM),
		"WEBHOOK_SECRET": secret, "PUBLIC_URL": "https://shipbot.example.com", "LOG_LEVEL": "debug",
		"JOB_TIMEOUT": crashJobTimeout.String(),
	}
	var (
		mu  sync.Mutex
		cur = startBotProcess(t, bin, env)
	)
	logs := func() string {
		mu.Lock()
		defer mu.Unlock()
		return cur.logs.String()
	}
	hook := &runningBot{url: "http://127.0.0.1:" + port}

	// v1 brings production up quickly (no bake).
	pushWith(t, srv, hook, "crash-1", "0000000000000000000000000000000000000000", shaV1, "v1", rolloutConfig("0s")+announce)
	dep := waitDeployment(t, srv, shaV1, 60*time.Second, logs, func(d githubtest.Deployment) bool { return terminalState(d.LastState()) })
	if dep.LastState() != "success" {
		t.Fatalf("v1: statuses %v\n%s", states(dep), logs())
	}
	url := dep.Statuses[len(dep.Statuses)-1].EnvironmentURL
	t.Logf("v1 deployed at %s after %s", url, time.Since(start).Round(time.Millisecond))

	if slowCheckRun > 0 {
		srv.Fault("POST", "/repos/{owner}/{repo}/check-runs", githubtest.Fault{Latency: slowCheckRun, Times: 1})
	}
	// v2 bakes 2s after each batch: kill the bot once the canary serves v2.
	pushWith(t, srv, hook, "crash-2", shaV1, shaV2, "v2", rolloutConfig("2s")+announce)
	waitDeployment(t, srv, shaV2, 30*time.Second, logs, func(d githubtest.Deployment) bool { return d.LastState() == "in_progress" })
	waitServes(t, url, "sample-app v2", 30*time.Second, logs)
	if d, _ := deploymentOf(srv, shaV2); d.LastState() != "in_progress" {
		t.Fatalf("v2 is not mid-rollout at the kill: statuses %v", states(d))
	}
	cur.kill(t)
	killed := time.Now()
	t.Logf("killed the bot mid-rollout after %s", killed.Sub(start).Round(time.Millisecond))
	logRaceWindow(t, r)

	next := startBotProcess(t, bin, env)
	mu.Lock()
	cur = next
	mu.Unlock()

	// Within the bound every deployment's last status is terminal. The
	// killed job comes back after the queue's visibility timeout
	// (crashJobTimeout) and must find the environment's lock (half of it)
	// free or wait for it.
	const bound = 90 * time.Second
	for {
		var open []string
		for _, d := range srv.Deployments(deployOwner, deployRepo) {
			if !terminalState(d.LastState()) {
				open = append(open, d.SHA[:7]+" "+strings.Join(states(d), ","))
			}
		}
		if len(open) == 0 {
			break
		}
		if time.Since(killed) > bound {
			t.Fatalf("%s after the restart, deployments still open: %v\n%s", bound, open, logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	d2, _ := deploymentOf(srv, shaV2)
	t.Logf("v2 ended %v %q %s after the kill", states(d2), d2.Statuses[len(d2.Statuses)-1].Description, time.Since(killed).Round(time.Millisecond))

	// Every instance serves one release (Restore brings the killed
	// children back; the proxy may need a moment to admit them all).
	var seen map[string]int
	deadline := time.Now().Add(20 * time.Second)
	for {
		seen = versionsServed(t, url, 40)
		if len(seen) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("production serves several answers after the resumed deploy: %v\n%s", seen, logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	for body := range seen {
		want := "sample-app v2"
		if d2.LastState() != "success" {
			want = "sample-app v1"
		}
		if !strings.Contains(body, want) {
			t.Errorf("production serves %q after v2 ended %s, want %s", body, d2.LastState(), want)
		}
	}

	// The lock is free: v3 deploys.
	pushWith(t, srv, hook, "crash-3", shaV2, shaV3, "v3", rolloutConfig("0s")+announce)
	d3 := waitDeployment(t, srv, shaV3, 45*time.Second, logs, func(d githubtest.Deployment) bool { return terminalState(d.LastState()) })
	if d3.LastState() != "success" {
		t.Fatalf("v3 after the restart: statuses %v\n%s", states(d3), logs())
	}
	if seen := versionsServed(t, url, 20); len(seen) != 1 || !strings.Contains(firstKey(seen), "sample-app v3") {
		t.Errorf("after v3 production serves %v", seen)
	}

	// One Slack message per deploy, the killed one's included, each
	// showing how its deploy ended.
	var msgs []slackfake.Message
	deadline = time.Now().Add(20 * time.Second)
	for {
		msgs = sl.Messages()
		top := 0
		for _, m := range msgs {
			if m.ThreadTS == "" {
				top++
			}
		}
		if top == 3 && strings.Contains(msgs[len(msgs)-1].Text(), shaV3[:7]) && !strings.Contains(msgs[len(msgs)-1].Text(), "Deploying") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Slack messages after the restart: %d, want one per deploy (3):\n%v", len(msgs), msgs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(msgs) != 3 {
		t.Errorf("%d Slack messages, want 3 (no replies: nothing failed)", len(msgs))
	}
	v2 := 0
	for _, m := range msgs {
		if strings.Contains(m.Text(), shaV2[:7]) && !strings.Contains(m.Text(), shaV3[:7]) {
			v2++
			t.Logf("v2's message: posted, then %d edits, now %q", len(m.Texts)-1, m.Text())
			if strings.Contains(m.Text(), "Deploying") || strings.Contains(m.Text(), "Queued") {
				t.Errorf("v2's message still shows the rollout under way: %q", m.Text())
			}
		}
	}
	if v2 != 1 {
		t.Errorf("%d messages show v2's deploy, want 1:\n%v", v2, msgs)
	}
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// versionIn is the "sample-app vN" an instance's page names (the page also
// names the instance, which differs from one request to the next).
func versionIn(body string) string {
	for _, l := range strings.Split(body, "\n") {
		if i := strings.Index(l, "sample-app "); i >= 0 {
			return strings.Fields(l[i:])[0] + " " + strings.Fields(l[i:])[1]
		}
	}
	return "no version in " + strconv.Quote(body)
}

// logRaceWindow logs, just after the kill, how long the dead bot's deploy
// lock still lives and how long until its job may be reclaimed: a job
// reclaimed while the lock lives finds it taken and is done without
// running (engine.runAll: "the holder runs it").
func logRaceWindow(t *testing.T, r *testenv.Redis) {
	t.Helper()
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer c.Close()
	lockTTL, err := c.PTTL(ctx, "shipbot:store:lock:"+deployOwner+"/"+deployRepo+":production").Result()
	if err != nil {
		t.Logf("lock TTL: %v", err)
		return
	}
	pending, err := c.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: "shipbot:queue:jobs", Group: "workers", Start: "-", End: "+", Count: 10}).Result()
	if err != nil {
		t.Logf("pending jobs: %v", err)
		return
	}
	for _, p := range pending {
		t.Logf("after the kill: deploy lock expires in %s; leased job %s reclaimable in %s", lockTTL, p.ID, crashJobTimeout-p.Idle)
	}
}

func firstKey(m map[string]int) string {
	for k := range m {
		return k
	}
	return ""
}
