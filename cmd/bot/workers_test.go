package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shipbot/shipbot/internal/driver/aws/awstest"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/testenv"
)

// workersEnv is the environment of every process of a multi-process test:
// one Redis, one GitHub, short leases so that a killed worker's job comes
// back in seconds.
func workersEnv(srv *githubtest.Server, r *testenv.Redis) map[string]string {
	return map[string]string{
		"REDIS_URL": r.URL(), "GITHUB_API_URL": srv.URL,
		"APP_ID": strconv.FormatInt(srv.AppID, 10), "PRIVATE_KEY": string(srv.PrivateKeyPEM),
		"WEBHOOK_SECRET": secret, "PUBLIC_URL": "https://shipbot.example.com", "LOG_LEVEL": "debug",
		"JOB_TIMEOUT": crashJobTimeout.String(),
	}
}

// with is env with the pairs kv added.
func with(env map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(env)+len(kv)/2)
	for k, v := range env {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// deploymentsOf counts the GitHub deployments of sha.
func deploymentsOf(srv *githubtest.Server, sha string) int {
	n := 0
	for _, d := range srv.Deployments(deployOwner, deployRepo) {
		if d.SHA == sha {
			n++
		}
	}
	return n
}

// leaseHolder is the consumer that holds a job of stream leased, "" when
// none does: HOST-PID-N, the N-th worker of process PID.
func leaseHolder(t *testing.T, c *redis.Client, stream string) string {
	t.Helper()
	pending, err := c.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: stream, Group: "workers", Start: "-", End: "+", Count: 10}).Result()
	if err != nil || len(pending) == 0 {
		return ""
	}
	return pending[0].Consumer
}

// takeLeaseHolder finds the worker process (of workers, by pid) that holds
// the leased job of the shared queue, removes it from workers and returns
// it with its consumer name; it fails the test when none does.
func takeLeaseHolder(t *testing.T, client *redis.Client, workers map[int]*botProcess, logs func() string) (string, *botProcess) {
	t.Helper()
	holder := leaseHolder(t, client, "shipbot:queue:jobs")
	for pid, w := range workers {
		if strings.Contains(holder, "-"+strconv.Itoa(pid)+"-") {
			delete(workers, pid)
			return holder, w
		}
	}
	t.Fatalf("no worker holds the job (holder %q)\n%s", holder, logs())
	return "", nil
}

// proxiesIn is the environments and previews with a proxy port recorded
// in dataDir (ports.json), each once.
func proxiesIn(t *testing.T, dataDir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "local", "ports.json"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ports struct {
		Listeners []struct {
			Repo, Environment string
			Preview           int
			Port              int
		}
	}
	if err := json.Unmarshal(b, &ports); err != nil {
		t.Fatalf("ports.json: %v\n%s", err, b)
	}
	var out []string
	for _, l := range ports.Listeners {
		out = append(out, l.Repo+":"+l.Environment+":"+strconv.Itoa(l.Preview)+"@"+strconv.Itoa(l.Port))
	}
	return out
}

// TestWorkerKilledMidRolloutAnotherFinishes (SPEC §8, issue #15): two
// web and two worker processes share one Redis and one DATA_DIR (so one
// keeper). The worker running production's rollout is SIGKILLed after the
// canary; the other worker takes the job over when its lease expires and
// finishes it: one GitHub deployment, ending in success, every instance on
// the release behind the one proxy the environment had, the lock free (a
// next push deploys, its source fetched through the surviving worker).
func TestWorkerKilledMidRolloutAnotherFinishes(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the bot and runs the sample app")
	}
	start := time.Now()
	bin := botBinary(t)
	srv := githubtest.New(t, githubtest.WithSpec(restDescription(t)))
	srv.AddRepo(deployOwner, deployRepo, githubtest.RepoOptions{DefaultBranch: "main"})
	r := testenv.StartRedis(t)
	dataDir := t.TempDir()
	env := with(workersEnv(srv, r), "DATA_DIR", dataDir)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("keeper.log:\n%s", lastN(keeperLog(dataDir), 60))
		}
	})

	// The first worker starts the keeper; the second adopts it.
	workers := map[int]*botProcess{}
	for range 2 {
		w := startBotProcess(t, bin, with(env, "PORT", strconv.Itoa(testenv.FreePort(t))), "--role", roleWorker)
		workers[w.cmd.Process.Pid] = w
	}
	var hooks []*runningBot
	var webs []*botProcess
	for range 2 {
		port := strconv.Itoa(testenv.FreePort(t))
		webs = append(webs, startBotProcess(t, bin, with(env, "PORT", port), "--role", roleWeb))
		hooks = append(hooks, &runningBot{url: "http://127.0.0.1:" + port})
	}
	logs := func() string {
		var b strings.Builder
		for pid, w := range workers {
			b.WriteString("--- worker " + strconv.Itoa(pid) + "\n" + lastN(w.logs.String(), 40) + "\n")
		}
		for _, w := range webs {
			b.WriteString("--- web\n" + lastN(w.logs.String(), 10) + "\n")
		}
		return b.String()
	}
	keeper := keeperPID(dataDir)

	pushWith(t, srv, hooks[0], "workers-1", zeroSHA, shaV1, "v1", rolloutConfig("0s"))
	dep := waitDeployment(t, srv, shaV1, 60*time.Second, logs, func(d githubtest.Deployment) bool { return terminalState(d.LastState()) })
	if dep.LastState() != "success" {
		t.Fatalf("v1: statuses %v\n%s", states(dep), logs())
	}
	url := dep.Statuses[len(dep.Statuses)-1].EnvironmentURL
	t.Logf("v1 at %s after %s", url, time.Since(start).Round(time.Millisecond))

	// v2 bakes 2s after each batch; the canary serving v2 is the moment.
	pushWith(t, srv, hooks[1], "workers-2", shaV1, shaV2, "v2", rolloutConfig("2s"))
	waitDeployment(t, srv, shaV2, 30*time.Second, logs, func(d githubtest.Deployment) bool { return d.LastState() == "in_progress" })
	waitServes(t, url, "sample-app v2", 30*time.Second, logs)
	client := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer client.Close()
	holder, victim := takeLeaseHolder(t, client, workers, logs)
	if d, _ := deploymentOf(srv, shaV2); d.LastState() != "in_progress" {
		t.Fatalf("v2 is not mid-rollout at the kill: statuses %v", states(d))
	}
	victim.kill(t)
	killed := time.Now()
	t.Logf("killed worker %s mid-rollout after %s", holder, killed.Sub(start).Round(time.Millisecond))

	d2 := waitDeployment(t, srv, shaV2, 60*time.Second, logs, func(d githubtest.Deployment) bool { return terminalState(d.LastState()) })
	t.Logf("v2 ended %v %s after the kill", states(d2), time.Since(killed).Round(time.Millisecond))
	if d2.LastState() != "success" {
		t.Fatalf("v2 after its worker died: statuses %v, want the other worker to finish it\n%s", states(d2), logs())
	}
	if n := deploymentsOf(srv, shaV2); n != 1 {
		t.Errorf("%d GitHub deployments of v2, want 1", n)
	}
	for _, s := range d2.Statuses {
		if s.EnvironmentURL != "" && s.EnvironmentURL != url {
			t.Errorf("v2's status %s names %s, want the environment's one URL %s", s.State, s.EnvironmentURL, url)
		}
	}
	if seen := versionsServed(t, url, 40); len(seen) != 1 || firstKey(seen) != "sample-app v2" {
		t.Errorf("after the takeover production serves %v, want v2 only", seen)
	}
	if got := proxiesIn(t, dataDir); len(got) != 1 {
		t.Errorf("proxies recorded in DATA_DIR: %v, want production's one", got)
	}
	if got := keeperPID(dataDir); got != keeper || !aliveKeeper(got) {
		t.Errorf("keeper %d, then %d: both workers must share the one keeper", keeper, got)
	}
	if kids := childrenOf(keeper); len(kids) != 4 {
		t.Errorf("the keeper runs %d processes, want production's 4 instances", len(kids))
	}
	if n, err := client.Exists(context.Background(), "shipbot:store:lock:"+deployOwner+"/"+deployRepo+":production").Result(); err != nil || n != 0 {
		t.Errorf("production's deploy lock after the takeover: exists=%d err=%v, want it free", n, err)
	}

	// The next push deploys: the keeper fetches v3's source through the
	// surviving worker, whichever of the two held bot.sock.
	pushWith(t, srv, hooks[0], "workers-3", shaV2, shaV3, "v3", rolloutConfig("0s"))
	d3 := waitDeployment(t, srv, shaV3, 60*time.Second, logs, func(d githubtest.Deployment) bool { return terminalState(d.LastState()) })
	if d3.LastState() != "success" {
		t.Fatalf("v3 after the takeover: statuses %v\n%s", states(d3), logs())
	}
	if seen := versionsServed(t, url, 20); len(seen) != 1 || firstKey(seen) != "sample-app v3" {
		t.Errorf("after v3 production serves %v", seen)
	}
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// TestLocalJobsRunOnTheirHost (SPEC §8): two hosts (two DATA_DIRs, so two
// keepers) share one Redis. Production, a local environment, is first
// deployed by host A, which owns it from then on. With A's worker stopped,
// host B's worker leases the next push: it writes nothing to GitHub, starts
// no proxy, and hands the job to A's queue, where it waits. A started
// again runs it, on its keeper, at the URL production always had.
func TestLocalJobsRunOnTheirHost(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the bot and runs the sample app")
	}
	start := time.Now()
	bin := botBinary(t)
	srv := githubtest.New(t, githubtest.WithSpec(restDescription(t)))
	srv.AddRepo(deployOwner, deployRepo, githubtest.RepoOptions{DefaultBranch: "main"})
	r := testenv.StartRedis(t)
	env := workersEnv(srv, r)
	dirA, dirB := t.TempDir(), t.TempDir()
	envA := with(env, "DATA_DIR", dirA, "PORT", strconv.Itoa(testenv.FreePort(t)))
	envB := with(env, "DATA_DIR", dirB, "PORT", strconv.Itoa(testenv.FreePort(t)))
	webPort := strconv.Itoa(testenv.FreePort(t))
	web := startBotProcess(t, bin, with(env, "DATA_DIR", t.TempDir(), "PORT", webPort), "--role", roleWeb)
	hook := &runningBot{url: "http://127.0.0.1:" + webPort}
	a := startBotProcess(t, bin, envA, "--role", roleWorker)
	var b *botProcess
	logs := func() string {
		s := "--- A\n" + lastN(a.logs.String(), 40) + "\n--- web\n" + lastN(web.logs.String(), 10)
		if b != nil {
			s += "\n--- B\n" + lastN(b.logs.String(), 40)
		}
		return s
	}

	pushWith(t, srv, hook, "hosts-1", zeroSHA, shaV1, "v1", rolloutConfig("0s"))
	dep := waitDeployment(t, srv, shaV1, 60*time.Second, logs, func(d githubtest.Deployment) bool { return terminalState(d.LastState()) })
	if dep.LastState() != "success" {
		t.Fatalf("v1 on host A: statuses %v\n%s", states(dep), logs())
	}
	url := dep.Statuses[len(dep.Statuses)-1].EnvironmentURL
	idA, err := readHostID(dirA)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("v1 on host %s at %s after %s", idA, url, time.Since(start).Round(time.Millisecond))

	if err := a.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	<-a.done
	b = startBotProcess(t, bin, envB, "--role", roleWorker)
	idB, err := readHostID(dirB)
	if err != nil {
		t.Fatal(err)
	}
	if idA == idB {
		t.Fatalf("two DATA_DIRs got one host id %s", idA)
	}

	pushWith(t, srv, hook, "hosts-2", shaV1, shaV2, "v2", rolloutConfig("0s"))
	client := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer client.Close()
	hostStream := hostPrefix(idA) + ":queue:jobs"
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := client.XLen(context.Background(), hostStream).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 && strings.Contains(b.logs.String(), "job handed over") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host B did not hand v2's push to host A's queue (%s holds %d jobs)\n%s", hostStream, n, logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Everything B does with the job is over once the main stream holds
	// no lease: it acks after handing over.
	for leaseHolder(t, client, "shipbot:queue:jobs") != "" {
		if time.Now().After(deadline) {
			t.Fatalf("host B still holds v2's push\n%s", logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := deploymentsOf(srv, shaV2); n != 0 {
		t.Fatalf("host B wrote %d GitHub deployments of v2 before handing the job over, want none", n)
	}
	if got := proxiesIn(t, dirB); len(got) != 0 {
		t.Errorf("host B recorded proxies %v, want none: production is host A's", got)
	}
	if pid := keeperPID(dirB); pid != 0 && len(childrenOf(pid)) != 0 {
		t.Errorf("host B's keeper runs %v, want nothing", childrenOf(pid))
	}
	if body, err := bodyOf(url); err != nil || !strings.Contains(body, "sample-app v1") {
		t.Errorf("with its worker stopped, host A's production answers %q %v; its keeper must keep serving v1", body, err)
	}

	// A comes back and runs the push it was handed, on its own keeper.
	a = startBotProcess(t, bin, envA, "--role", roleWorker)
	d2 := waitDeployment(t, srv, shaV2, 60*time.Second, logs, func(d githubtest.Deployment) bool { return terminalState(d.LastState()) })
	if d2.LastState() != "success" {
		t.Fatalf("v2 on host A: statuses %v\n%s", states(d2), logs())
	}
	if got := d2.Statuses[len(d2.Statuses)-1].EnvironmentURL; got != url {
		t.Errorf("v2 is at %s, want production's URL on host A %s", got, url)
	}
	if n := deploymentsOf(srv, shaV2); n != 1 {
		t.Errorf("%d GitHub deployments of v2, want 1", n)
	}
	if seen := versionsServed(t, url, 20); len(seen) != 1 || firstKey(seen) != "sample-app v2" {
		t.Errorf("after v2 host A's production serves %v", seen)
	}
	if got := proxiesIn(t, dirB); len(got) != 0 {
		t.Errorf("host B recorded proxies %v, want none", got)
	}
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}

// TestAWSWorkerKilledMidRolloutAnotherFinishes (SPEC §8): an aws
// environment (a fleet of 3 in moto) rolls out on whichever of two
// workers (two hosts: aws runs anywhere) leases the push; that worker is
// SIGKILLed once the canary is on the release, and the other takes the job
// over when its lease expires and finishes the rollout: one GitHub
// deployment ending in success, every instance on the release, the lock
// free.
func TestAWSWorkerKilledMidRolloutAnotherFinishes(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the bot and runs moto")
	}
	start := time.Now()
	bin := botBinary(t)
	moto := awstest.StartMoto(t)
	fleet := awstest.NewFleet(t, moto, 3, "0ld0000000000000000000000000000000000000")
	srv := githubtest.New(t, githubtest.WithSpec(restDescription(t)))
	srv.AddRepo(deployOwner, deployRepo, githubtest.RepoOptions{DefaultBranch: "main"})
	r := testenv.StartRedis(t)
	env := with(workersEnv(srv, r), "AWS_ENDPOINT_URL", moto, "AWS_REGION", awstest.Region,
		"AWS_ACCESS_KEY_ID", "testing", "AWS_SECRET_ACCESS_KEY", "testing")

	workers := map[int]*botProcess{}
	for range 2 {
		w := startBotProcess(t, bin, with(env, "DATA_DIR", t.TempDir(), "PORT", strconv.Itoa(testenv.FreePort(t))), "--role", roleWorker)
		workers[w.cmd.Process.Pid] = w
	}
	port := strconv.Itoa(testenv.FreePort(t))
	web := startBotProcess(t, bin, with(env, "DATA_DIR", t.TempDir(), "PORT", port), "--role", roleWeb)
	hook := &runningBot{url: "http://127.0.0.1:" + port}
	logs := func() string {
		var b strings.Builder
		for pid, w := range workers {
			b.WriteString("--- worker " + strconv.Itoa(pid) + "\n" + lastN(w.logs.String(), 40) + "\n")
		}
		return b.String() + "--- web\n" + lastN(web.logs.String(), 10)
	}

	config := "environments:\n  production:\n    driver: aws\n" +
		"    rollout:\n      canary: 1\n      batch: 1\n      max_unavailable: 1\n      bake: 2s\n" +
		"    health:\n      timeout: 30s\n" +
		"    aws:\n      region: " + awstest.Region + "\n      target_group_arn: " + fleet.TargetGroupARN +
		"\n      instance_tags: {app: web, env: production}\n      install: /opt/web/install {{.SHA}}\n"
	srv.SetFile(deployOwner, deployRepo, shaV2, ".github/shipbot.yml", []byte(config))
	srv.SetBranch(deployOwner, deployRepo, "main", shaV2)
	if status, body := hook.post(t, delivery2("aws-2", pushOnMain(srv.InstallationID, zeroSHA, shaV2))); status != 202 {
		t.Fatalf("push: %d %s", status, body)
	}

	// The canary is on v2 (tagged after its install): the moment to kill.
	deadline := time.Now().Add(60 * time.Second)
	for {
		on := 0
		for _, rel := range fleet.Releases(t) {
			if rel == shaV2 {
				on++
			}
		}
		if on >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the canary never reached v2\n%s", logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	client := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer client.Close()
	holder, victim := takeLeaseHolder(t, client, workers, logs)
	if d, _ := deploymentOf(srv, shaV2); d.LastState() != "in_progress" {
		t.Fatalf("v2 is not mid-rollout at the kill: statuses %v\n%s", states(d), logs())
	}
	victim.kill(t)
	killed := time.Now()
	t.Logf("killed worker %s mid-rollout after %s; releases %v", holder, killed.Sub(start).Round(time.Millisecond), fleet.Releases(t))

	d2 := waitDeployment(t, srv, shaV2, 90*time.Second, logs, func(d githubtest.Deployment) bool { return terminalState(d.LastState()) })
	t.Logf("v2 ended %v %s after the kill", states(d2), time.Since(killed).Round(time.Millisecond))
	if d2.LastState() != "success" {
		t.Fatalf("v2 after its worker died: statuses %v, want the other worker to finish it\n%s", states(d2), logs())
	}
	if n := deploymentsOf(srv, shaV2); n != 1 {
		t.Errorf("%d GitHub deployments of v2, want 1", n)
	}
	for id, rel := range fleet.Releases(t) {
		if rel != shaV2 {
			t.Errorf("instance %s is on %q after the rollout, want v2", id, rel)
		}
	}
	if n, err := client.Exists(context.Background(), "shipbot:store:lock:"+deployOwner+"/"+deployRepo+":production").Result(); err != nil || n != 0 {
		t.Errorf("production's deploy lock after the takeover: exists=%d err=%v, want it free", n, err)
	}
	t.Logf("total %s", time.Since(start).Round(time.Millisecond))
}
