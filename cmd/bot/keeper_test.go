package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shipbot/shipbot/fixtures"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/store"
	"github.com/shipbot/shipbot/internal/store/record"
	"github.com/shipbot/shipbot/internal/testenv"
)

// keeperPID is the pid in DATA_DIR/local/keeper.pid, 0 when none.
func keeperPID(dataDir string) int {
	b, err := os.ReadFile(filepath.Join(dataDir, "local", "keeper.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// alive says whether pid runs and is a keeper (a reused pid is not).
func aliveKeeper(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	if strings.Contains(string(b), "keeper") {
		if st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
			if f := strings.Fields(string(st)); len(f) > 2 && f[2] == "Z" {
				return false
			}
		}
		return true
	}
	return false
}

// stopKeeperAtEnd stops, when the test ends and after its bots, the keeper
// the real bot started in dataDir: it outlives the bot by design. SIGTERM
// stops its instances with it.
func stopKeeperAtEnd(t testing.TB, dataDir string) {
	t.Cleanup(func() {
		pid := keeperPID(dataDir)
		if pid == 0 || !aliveKeeper(pid) {
			return
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(30 * time.Second)
		for aliveKeeper(pid) {
			if time.Now().After(deadline) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				time.Sleep(200 * time.Millisecond)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// botBinaryWith builds the bot with another keeper protocol: a newer bot
// whose keeper must replace the running one.
func botBinaryWith(t *testing.T, protocol string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bot")
	build := botBuild(bin, "-ldflags", "-X github.com/shipbot/shipbot/internal/driver/local.keeperProtocol="+protocol)
	build.Dir = testenv.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestBotRestartsFailNoRequest (SPEC §7, §11): production (4 instances)
// and a preview run under a fixed-rate load while the real bot is stopped
// (SIGTERM) and started again, killed (SIGKILL) and started again,
// replaced by a copy of itself, and replaced by a newer build whose
// keeper speaks another protocol (the old keeper hands its sockets over
// and retires). No request fails, no gap between successes reaches 1 s,
// and a rollout afterwards succeeds. Then an instance killed by hand is
// restarted by the supervisor of the new keeper, and a keeper killed by
// hand is replaced, service coming back, with an audit entry.
func TestBotRestartsFailNoRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the bot and runs the sample app")
	}
	start := time.Now()
	bin := botBinary(t)
	newer := botBinaryWith(t, "test-2")
	t.Logf("built both binaries after %s", time.Since(start).Round(time.Millisecond))

	srv := githubtest.New(t, githubtest.WithSpec(restDescription(t)))
	srv.AddRepo(deployOwner, deployRepo, githubtest.RepoOptions{DefaultBranch: "main"})
	r := testenv.StartRedis(t)
	port := strconv.Itoa(testenv.FreePort(t))
	dataDir := t.TempDir()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("keeper.log:\n%s", lastN(keeperLog(dataDir), 80))
		}
	})
	env := map[string]string{
		"PORT": port, "DATA_DIR": dataDir, "REDIS_URL": r.URL(), "GITHUB_API_URL": srv.URL,
		"APP_ID": strconv.FormatInt(srv.AppID, 10), "PRIVATE_KEY": string(srv.PrivateKeyPEM),
		"WEBHOOK_SECRET": secret, "PUBLIC_URL": "https://shipbot.example.com", "LOG_LEVEL": "debug",
	}
	cur := startBotProcess(t, bin, env)
	logs := func() string {
		b, _ := os.ReadFile(filepath.Join(dataDir, "local", "keeper.log"))
		return cur.logs.String() + "\n--- keeper.log\n" + lastN(string(b), 60)
	}
	hook := &runningBot{url: "http://127.0.0.1:" + port}

	pushWith(t, srv, hook, "keep-1", zeroSHA, shaV1, "v1", rolloutConfig("0s"))
	dep := waitDeployment(t, srv, shaV1, 90*time.Second, logs, func(d githubtest.Deployment) bool { return terminalState(d.LastState()) })
	if dep.LastState() != "success" {
		t.Fatalf("v1: statuses %v\n%s", states(dep), logs())
	}
	url := dep.Statuses[len(dep.Statuses)-1].EnvironmentURL

	if err := srv.SetTree(deployOwner, deployRepo, fixtures.HeadSHAOpened, sampleRelease(t, "pr", true)); err != nil {
		t.Fatal(err)
	}
	if status, body := hook.post(t, delivery{event: "pull_request", id: "keep-pr", body: fixturePayload("pull_request.opened", srv.InstallationID, nil)}); status != 202 {
		t.Fatalf("pull_request.opened: %d %s", status, body)
	}
	pv := waitDeployment(t, srv, fixtures.HeadSHAOpened, 90*time.Second, logs, func(d githubtest.Deployment) bool { return terminalState(d.LastState()) })
	if pv.LastState() != "success" {
		t.Fatalf("preview: statuses %v\n%s", states(pv), logs())
	}
	previewURL := pv.Statuses[len(pv.Statuses)-1].EnvironmentURL
	t.Logf("production at %s and the preview at %s after %s", url, previewURL, time.Since(start).Round(time.Millisecond))
	keeper := keeperPID(dataDir)
	if keeper == 0 || !aliveKeeper(keeper) {
		t.Fatalf("no keeper runs (keeper.pid %d)\n%s", keeper, logs())
	}

	load := testenv.StartLoad(url+"/", 200)
	pload := testenv.StartLoad(previewURL+"/", 20)
	settle := func() { time.Sleep(time.Second) }
	settle()

	// SIGTERM, then the same binary again.
	_ = cur.cmd.Process.Signal(syscall.SIGTERM)
	<-cur.done
	cur = startBotProcess(t, bin, env)
	settle()
	// SIGKILL, then the same binary again.
	cur.kill(t)
	cur = startBotProcess(t, bin, env)
	settle()
	// An upgrade that keeps the protocol: a binary at another path adopts.
	copied := filepath.Join(t.TempDir(), "bot")
	copyFile(t, bin, copied)
	_ = cur.cmd.Process.Signal(syscall.SIGTERM)
	<-cur.done
	cur = startBotProcess(t, copied, env)
	settle()
	if got := keeperPID(dataDir); got != keeper {
		t.Errorf("the keeper changed across restarts of the same protocol: %d, then %d", keeper, got)
	}
	// An upgrade to another protocol: the newer keeper replaces the old.
	swapStart := time.Now()
	_ = cur.cmd.Process.Signal(syscall.SIGTERM)
	<-cur.done
	cur = startBotProcess(t, newer, env)
	t.Logf("the newer bot answered %s after the old one was stopped", time.Since(swapStart).Round(time.Millisecond))
	deadline := time.Now().Add(30 * time.Second)
	for aliveKeeper(keeper) {
		if time.Now().After(deadline) {
			t.Fatalf("the old keeper %d still runs 30s after the newer bot started\n%s", keeper, logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	settle()

	res, pres := load.Finish(), pload.Finish()
	t.Logf("production: %d sent, %d ok, %d failed, longest gap %s (sender at most %s late), p99 %s, answers %v",
		res.Sent, res.OK, len(res.Failures), res.MaxGap.Round(time.Millisecond), res.Lateness.Round(time.Millisecond), res.P99.Round(100*time.Microsecond), res.Answers)
	t.Logf("preview: %d sent, %d ok, %d failed, longest gap %s, answers %v",
		pres.Sent, pres.OK, len(pres.Failures), pres.MaxGap.Round(time.Millisecond), pres.Answers)
	for name, lr := range map[string]testenv.LoadResult{"production": res, "preview": pres} {
		if len(lr.Failures) > 0 {
			t.Errorf("%s: %d requests failed; the first:\n%s", name, len(lr.Failures), strings.Join(lr.Failures[:min(10, len(lr.Failures))], "\n"))
		}
		if lr.MaxGap >= time.Second {
			t.Errorf("%s: a gap of %s between successes", name, lr.MaxGap.Round(time.Millisecond))
		}
	}

	// The newer bot controls what the new keeper runs: a rollout works.
	pushWith(t, srv, hook, "keep-2", shaV1, shaV2, "v2", rolloutConfig("0s"))
	d2 := waitDeployment(t, srv, shaV2, 90*time.Second, logs, func(d githubtest.Deployment) bool { return terminalState(d.LastState()) })
	if d2.LastState() != "success" {
		t.Fatalf("v2 after the restarts: statuses %v\n%s", states(d2), logs())
	}
	if seen := versionsServed(t, url, 20); len(seen) != 1 || !strings.Contains(firstKey(seen), "sample-app v2") {
		t.Errorf("after v2 production serves %v", seen)
	}

	// The supervisor (in the keeper) restarts an instance that dies.
	keeper = keeperPID(dataDir)
	kids := childrenOf(keeper)
	if len(kids) != 5 {
		t.Fatalf("the keeper %d has %d children %v, want 4 instances and a preview\n%s", keeper, len(kids), kids, logs())
	}
	if err := syscall.Kill(kids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for !strings.Contains(keeperLog(dataDir), "instance restarted") || len(childrenOf(keeper)) != 5 {
		if time.Now().After(deadline) {
			t.Fatalf("the killed instance %d was not restarted within 30s\n%s", kids[0], logs())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The keeper killed: the bot starts another, which restores service.
	killed := time.Now()
	if err := syscall.Kill(keeper, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for {
		if body, err := bodyOf(url); err == nil && strings.Contains(body, "sample-app v2") {
			if body, err := bodyOf(previewURL); err == nil && strings.Contains(body, "sample-app pr") {
				break
			}
		}
		if time.Since(killed) > 60*time.Second {
			t.Fatalf("service not back 60s after the keeper was killed\n%s", logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	back := time.Since(killed)
	t.Logf("service back %s after the keeper was killed", back.Round(time.Millisecond))
	if back > 15*time.Second {
		t.Errorf("service came back only %s after the keeper was killed (the goal is 5 s)", back.Round(time.Millisecond))
	}
	var found string
	deadline = time.Now().Add(20 * time.Second)
	for found == "" {
		found = auditWith(t, r, "keeper died")
		if found == "" && time.Now().After(deadline) {
			t.Fatalf("no audit entry says the keeper died\n%s", logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("audit: %s", found)
	if !strings.HasPrefix(found, record.ActionKeeperRestored+" "+record.OutcomeSuccess+":") {
		t.Errorf("audit entry %q, want action %s with outcome %s", found, record.ActionKeeperRestored, record.OutcomeSuccess)
	}
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

func keeperLog(dataDir string) string {
	b, _ := os.ReadFile(filepath.Join(dataDir, "local", "keeper.log"))
	return string(b)
}

func lastN(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// childrenOf lists pid's child processes.
func childrenOf(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// auditWith is the text of the first audit entry containing s, or "".
func auditWith(t *testing.T, r *testenv.Redis, s string) string {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer client.Close()
	page, err := store.NewRedis(client, "shipbot").ListAudit(context.Background(), record.AuditFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range page.Entries {
		if strings.Contains(e.Text, s) {
			return e.Action + " " + e.Outcome + ": " + e.Text
		}
	}
	return ""
}
