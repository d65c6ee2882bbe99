package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/store"
	"github.com/shipbot/shipbot/internal/store/record"
	"github.com/shipbot/shipbot/internal/testenv"
	"github.com/shipbot/shipbot/queue"
)

// TestChaos (SPEC §8, issue #15): a few rollouts on real Redis with two
// `--role worker` processes and two `--role web` processes sharing one
// DATA_DIR (one keeper), while Redis is restarted, a worker is SIGKILLed
// and GitHub answers 502 or drops the answer of a write it applied. After
// every rollout the invariants of runChaos hold. BenchmarkChaos is the
// longer run. The seed is logged; SHIPBOT_CHAOS_SEED replays one.
func TestChaos(t *testing.T) {
	t.Parallel()
	rep := runChaos(t, 5)
	for _, v := range rep.violations {
		t.Error(v)
	}
}

// The kinds of fault a round draws from.
const (
	faultRedisRestart = "redis-restart"          // Redis killed and started again mid-rollout
	faultRedisAtPush  = "redis-down-at-delivery" // Redis down while the push is delivered: 503, then redelivery
	faultWorkerKill   = "worker-sigkill"         // the worker holding the job (or another) SIGKILLed, then started again
	faultGitHub502    = "github-502"             // a route answers 502, 1 to 3 times, before applying anything
	faultGitHubLost   = "github-applied-lost"    // a route applies the write and drops the connection, once or twice
)

var chaosKinds = []string{faultRedisRestart, faultRedisAtPush, faultWorkerKill, faultGitHub502, faultGitHubLost}

// chaosRoutes are the GitHub writes of a rollout that faults hit.
var chaosRoutes = []struct{ method, pattern string }{
	{"POST", "/repos/{owner}/{repo}/deployments"},
	{"POST", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses"},
	{"POST", "/repos/{owner}/{repo}/check-runs"},
	{"PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}"},
}

// chaosReleases alternate, so that after the first three rounds every
// build is in DATA_DIR already and a round costs its rollout only.
var chaosReleases = []struct{ sha, version string }{{shaV1, "v1"}, {shaV2, "v2"}, {shaV3, "v3"}}

// chaosConfig bakes each batch a little, so that a fault drawn within the
// first seconds lands inside the rollout.
var chaosConfig = rolloutConfig("500ms")

var chaosEnv = record.EnvKey{Repo: deployOwner + "/" + deployRepo, Name: "production"}

// chaosReport is what a run found.
type chaosReport struct {
	seed       uint64
	rounds     int
	faults     map[string]int // armed, by kind
	served     int            // GitHub answers the faults replaced
	outcomes   map[string]int // the rounds' final deployment states
	violations []string
	wall       time.Duration
}

// chaosCluster is the bots, Redis and GitHub of one run.
type chaosCluster struct {
	tb        testing.TB
	bin       string
	srv       *githubtest.Server
	redis     *testenv.Redis
	rdb       *redis.Client
	store     *store.Redis
	dataDir   string
	webs      []*runningBot
	webProcs  []*botProcess
	workers   []*botProcess
	workerEnv []map[string]string

	mu     sync.Mutex
	bodies map[string][]byte
	acked  map[string]bool
	tries  map[string]int
}

func newChaosCluster(tb testing.TB) *chaosCluster {
	tb.Helper()
	c := &chaosCluster{tb: tb, bin: botBinary(tb), bodies: map[string][]byte{}, acked: map[string]bool{}, tries: map[string]int{}}
	c.srv = githubtest.New(tb, githubtest.WithSpec(restDescription(tb)))
	c.srv.AddRepo(deployOwner, deployRepo, githubtest.RepoOptions{DefaultBranch: "main"})
	for _, r := range chaosReleases {
		if err := c.srv.SetTree(deployOwner, deployRepo, r.sha, sampleRelease(tb, r.version, true)); err != nil {
			tb.Fatal(err)
		}
		c.srv.SetFile(deployOwner, deployRepo, r.sha, ".github/shipbot.yml", []byte(chaosConfig))
	}
	// GitHub's redelivery, asked for by the webs after an outage, posts
	// the delivery again; the attempt's answer is recorded by githubtest.
	c.srv.OnRedeliver(func(d githubtest.Delivery) int { return c.post(d.GUID) })
	c.redis = testenv.StartRedis(tb)
	c.rdb = redisClient(tb, c.redis.URL())
	c.store = store.NewRedis(c.rdb, "shipbot")
	c.dataDir = tb.TempDir()
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("keeper.log:\n%s", lastN(keeperLog(c.dataDir), 60))
		}
	})
	for range 2 {
		env := c.env()
		c.webProcs = append(c.webProcs, startBotProcess(tb, c.bin, env, "--role", "web"))
		c.webs = append(c.webs, &runningBot{url: "http://127.0.0.1:" + env["PORT"]})
	}
	for range 2 {
		env := c.env()
		c.workerEnv = append(c.workerEnv, env)
		c.workers = append(c.workers, startBotProcess(tb, c.bin, env, "--role", "worker"))
	}
	return c
}

// env is one process's environment: its own port, the shared rest.
func (c *chaosCluster) env() map[string]string {
	return map[string]string{
		"PORT": strconv.Itoa(testenv.FreePort(c.tb)), "DATA_DIR": c.dataDir, "REDIS_URL": c.redis.URL(),
		"GITHUB_API_URL": c.srv.URL, "APP_ID": strconv.FormatInt(c.srv.AppID, 10), "PRIVATE_KEY": string(c.srv.PrivateKeyPEM),
		"WEBHOOK_SECRET": secret, "PUBLIC_URL": "https://shipbot.example.com", "LOG_LEVEL": "debug",
		"JOB_TIMEOUT": crashJobTimeout.String(),
	}
}

// logs is every process's output, the workers' last.
func (c *chaosCluster) logs() string {
	var b strings.Builder
	for i, p := range c.webProcs {
		fmt.Fprintf(&b, "--- web %d\n%s\n", i, lastN(p.logs.String(), 40))
	}
	c.mu.Lock()
	workers := slices.Clone(c.workers)
	c.mu.Unlock()
	for i, p := range workers {
		fmt.Fprintf(&b, "--- worker %d (pid %d)\n%s\n", i, p.cmd.Process.Pid, lastN(p.logs.String(), 120))
	}
	return b.String()
}

// deliver is GitHub delivering a new push of sha to one of the webs; the
// attempt is recorded as GitHub records it, so that a refused one is among
// the failed deliveries the bot asks to have redelivered.
func (c *chaosCluster) deliver(guid, before, sha string) int {
	c.mu.Lock()
	c.bodies[guid] = pushOnMain(c.srv.InstallationID, before, sha)
	c.mu.Unlock()
	status := c.post(guid)
	c.srv.AddDelivery(githubtest.Delivery{GUID: guid, Event: "push", StatusCode: status, InstallationID: c.srv.InstallationID})
	return status
}

// post sends guid's body to a web, alternating between them, and notes an
// acknowledgement.
func (c *chaosCluster) post(guid string) int {
	c.mu.Lock()
	body := c.bodies[guid]
	web := c.webs[c.tries[guid]%len(c.webs)]
	c.tries[guid]++
	c.mu.Unlock()
	status := postWebhook(web.url, "push", guid, body)
	if status/100 == 2 {
		c.mu.Lock()
		c.acked[guid] = true
		c.mu.Unlock()
	}
	return status
}

func (c *chaosCluster) isAcked(guid string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acked[guid]
}

// killWorker SIGKILLs the worker that holds a job, or worker 0 when none
// does, and starts it again after pause. It returns which one it killed.
func (c *chaosCluster) killWorker(pause time.Duration) (int, bool) {
	victim, holding := 0, false
	pending, _ := c.rdb.XPendingExt(context.Background(), &redis.XPendingExtArgs{
		Stream: "shipbot:queue:jobs", Group: "workers", Start: "-", End: "+", Count: 10}).Result()
	for _, p := range pending {
		for i, w := range c.workers {
			// The consumer is "host-pid", and "-slot" per pool worker.
			if id := "-" + strconv.Itoa(w.cmd.Process.Pid); strings.HasSuffix(p.Consumer, id) || strings.Contains(p.Consumer, id+"-") {
				victim, holding = i, true
			}
		}
	}
	if !holding {
		victim = len(pending) % len(c.workers) // spread the kills when no job is leased
		c.tb.Logf("no worker holds a job (%d pending: %v)", len(pending), pending)
	}
	c.workers[victim].kill(c.tb)
	time.Sleep(pause)
	next := startBotProcess(c.tb, c.bin, c.workerEnv[victim], "--role", "worker")
	c.mu.Lock()
	c.workers[victim] = next
	c.mu.Unlock()
	return victim, holding
}

// deployments are githubtest's deployments of the repository.
func (c *chaosCluster) deployments() []githubtest.Deployment {
	return c.srv.Deployments(deployOwner, deployRepo)
}

// marker is the deploy id a deployment carries in its payload.
func marker(d githubtest.Deployment) string {
	var p struct {
		Deploy string `json:"shipbot_deploy"`
	}
	_ = json.Unmarshal(d.Payload, &p)
	return p.Deploy
}

// chaosFault is one fault of a round: what, and when after the push.
type chaosFault struct {
	kind  string
	at    time.Duration
	route int
	times int
}

func (f chaosFault) String() string {
	switch f.kind {
	case faultGitHub502, faultGitHubLost:
		return fmt.Sprintf("%s×%d %s %s at +%s", f.kind, f.times, chaosRoutes[f.route].method, chaosRoutes[f.route].pattern, f.at)
	}
	return fmt.Sprintf("%s at +%s", f.kind, f.at)
}

// drawFaults picks one or two faults for a round, in the order they fire.
func drawFaults(rng *rand.Rand) []chaosFault {
	var fs []chaosFault
	for range 1 + rng.IntN(2) {
		f := chaosFault{kind: chaosKinds[rng.IntN(len(chaosKinds))], at: time.Duration(rng.IntN(25)) * 100 * time.Millisecond,
			route: rng.IntN(len(chaosRoutes)), times: 1 + rng.IntN(2)}
		if f.kind == faultGitHub502 {
			f.times = 1 + rng.IntN(3)
		}
		if f.kind == faultRedisAtPush {
			if slices.ContainsFunc(fs, func(g chaosFault) bool { return g.kind == faultRedisAtPush }) {
				continue
			}
			f.at = 0
		}
		fs = append(fs, f)
	}
	// Redis down at the delivery comes first: it is the delivery.
	sort.SliceStable(fs, func(i, j int) bool {
		if a, b := fs[i].kind == faultRedisAtPush, fs[j].kind == faultRedisAtPush; a != b {
			return a
		}
		return fs[i].at < fs[j].at
	})
	return fs
}

// runChaos deploys v1, then runs rounds rollouts, each with one or two
// faults at seeded random moments, and checks after each that
//   - its deployment ended in a final state (success, or failure or error
//     with a reason);
//   - every deploy has exactly one GitHub deployment and one check run,
//     and the push made exactly one deploy;
//   - production's proxy serves one release: the new one after success,
//     the previous one after failure;
//   - the environment's deploy lock is free and nothing is running;
//   - the push was acknowledged (refused ones are redelivered by the
//     bot's sweep) and processed; at the end, no job is queued or dead.
//
// Every broken invariant is a violation in the report; a rollout that
// never ends stops the run.
func runChaos(tb testing.TB, rounds int) chaosReport {
	tb.Helper()
	if testing.Short() {
		tb.Skip("builds the bot and runs the sample app under faults")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SHIPBOT_CHAOS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			tb.Fatalf("SHIPBOT_CHAOS_SEED=%q is not a number", s)
		}
		seed = n
	}
	tb.Logf("chaos seed %d (SHIPBOT_CHAOS_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	rep := chaosReport{seed: seed, rounds: rounds, faults: map[string]int{}, outcomes: map[string]int{}}

	c := newChaosCluster(tb)
	start := time.Now()
	if st := c.deliver("chaos-0", zeroSHA, shaV1); st != http.StatusAccepted {
		tb.Fatalf("first push: %d\n%s", st, c.logs())
	}
	dep := c.waitNew(tb, nil, shaV1)
	if dep.LastState() != "success" {
		tb.Fatalf("v1 before any fault: statuses %v\n%s", states(dep), c.logs())
	}
	url := dep.Statuses[len(dep.Statuses)-1].EnvironmentURL
	current, head := "v1", shaV1

	for n := 1; n <= rounds; n++ {
		rel := chaosReleases[n%len(chaosReleases)]
		known := map[int64]bool{}
		for _, d := range c.deployments() {
			known[d.ID] = true
		}
		faults := drawFaults(rng)
		tb.Logf("round %d: %s → %s, faults %v", n, current, rel.version, faults)
		guid := "chaos-" + strconv.Itoa(n)
		c.srv.SetBranch(deployOwner, deployRepo, "main", rel.sha)
		pushed := time.Now()
		if faults[0].kind != faultRedisAtPush {
			// Every other fault fires after the push is acknowledged.
			if st := c.deliver(guid, head, rel.sha); st != http.StatusAccepted {
				rep.violations = append(rep.violations, fmt.Sprintf("round %d: push answered %d with Redis up", n, st))
			}
		}
		for _, f := range faults {
			time.Sleep(time.Until(pushed.Add(f.at)))
			rep.faults[f.kind]++
			switch f.kind {
			case faultRedisAtPush:
				c.redis.Kill()
				if st := c.deliver(guid, head, rel.sha); st/100 == 2 {
					rep.violations = append(rep.violations, fmt.Sprintf("round %d: the push was answered %d while Redis was down", n, st))
				}
				// The webs' store watch pings every 2s: an outage shorter
				// than that may go unseen by it.
				time.Sleep(time.Duration(rng.IntN(3000)) * time.Millisecond)
				c.redis.Start()
			case faultRedisRestart:
				c.redis.Restart()
			case faultWorkerKill:
				i, holding := c.killWorker(time.Duration(rng.IntN(1500)) * time.Millisecond)
				tb.Logf("round %d: killed worker %d (holding a job: %v)", n, i, holding)
			case faultGitHub502:
				c.srv.Fault(chaosRoutes[f.route].method, chaosRoutes[f.route].pattern, githubtest.BadGateway(f.times))
			case faultGitHubLost:
				c.srv.Fault(chaosRoutes[f.route].method, chaosRoutes[f.route].pattern, githubtest.AppliedTimeout(f.times))
			}
		}

		// A refused delivery comes back through the bot's redelivery sweep.
		if !within(60*time.Second, func() bool { return c.isAcked(guid) }) {
			rep.violations = append(rep.violations, fmt.Sprintf("round %d: delivery %s was refused and not redelivered within 60s", n, guid))
			if !within(30*time.Second, func() bool { return c.post(guid)/100 == 2 }) {
				tb.Fatalf("round %d: the webs refuse %s with Redis up\n%s", n, guid, c.logs())
			}
		}
		dep := c.waitNew(tb, known, rel.sha)
		rep.outcomes[dep.LastState()]++
		c.srv.ClearFaults()
		tb.Logf("round %d: %s ended %v %q %s after the push", n, rel.version, states(dep), dep.Statuses[len(dep.Statuses)-1].Description, time.Since(pushed).Round(time.Millisecond))

		// After a failure production is back on the previous release; an
		// error (the rollout could not go on) must still leave one.
		want := map[string][]string{"success": {rel.version}, "failure": {current}}[dep.LastState()]
		if want == nil {
			want = []string{rel.version, current}
		}
		head = rel.sha
		for _, v := range c.checkRound(n, known, dep, url, want) {
			rep.violations = append(rep.violations, v)
			tb.Log(v)
		}
		if served := versionsServed(c.tb, url, 40); len(served) == 1 {
			current = strings.TrimPrefix(firstKey(served), "sample-app ")
		}
	}
	rep.violations = append(rep.violations, c.checkEnd(rounds+1)...)
	rep.wall = time.Since(start)
	for _, call := range c.srv.Calls() {
		if call.Fault {
			rep.served++
		}
	}
	tb.Logf("chaos: %d rounds in %s, faults %v (%d GitHub answers replaced), outcomes %v, %d violations",
		rep.rounds, rep.wall.Round(time.Millisecond), rep.faults, rep.served, rep.outcomes, len(rep.violations))
	if len(rep.violations) > 0 {
		tb.Logf("logs:\n%s", c.logs())
	}
	return rep
}

// waitNew waits for the deployment of sha not in known to end.
func (c *chaosCluster) waitNew(tb testing.TB, known map[int64]bool, sha string) githubtest.Deployment {
	tb.Helper()
	var dep githubtest.Deployment
	ok := within(2*time.Minute, func() bool {
		for _, d := range c.deployments() {
			if d.SHA == sha && !known[d.ID] {
				dep = d
				return terminalState(d.LastState())
			}
		}
		return false
	})
	if !ok {
		tb.Fatalf("the deployment of %s did not end within 2m (statuses %v)\n%s", sha[:7], states(dep), c.logs())
	}
	return dep
}

// checkRound checks the invariants after round n, whose deployment is dep.
func (c *chaosCluster) checkRound(n int, known map[int64]bool, dep githubtest.Deployment, url string, want []string) []string {
	var bad []string
	fail := func(format string, args ...any) {
		bad = append(bad, fmt.Sprintf("round %d: ", n)+fmt.Sprintf(format, args...))
	}
	last := dep.Statuses[len(dep.Statuses)-1]
	switch last.State {
	case "success":
	case "failure", "error":
		if strings.TrimSpace(last.Description) == "" {
			fail("the deployment ended %s without a reason", last.State)
		}
	default:
		fail("the deployment ended %s, not success, failure or error", last.State)
	}

	var fresh []string
	byDeploy := map[string]int{}
	for _, d := range c.deployments() {
		byDeploy[marker(d)]++
	}
	for _, d := range c.deployments() {
		if known[d.ID] {
			continue
		}
		fresh = append(fresh, fmt.Sprintf("%d %s %v", d.ID, d.SHA[:7], states(d)))
		if id := marker(d); id == "" || byDeploy[id] != 1 {
			fail("deploy %q has %d GitHub deployments, want 1", id, byDeploy[id])
		}
	}
	if len(fresh) != 1 {
		fail("the push made %d deployments, want 1: %v", len(fresh), fresh)
	}
	id := marker(dep)
	if !within(15*time.Second, func() bool { return c.checkRunsOf(id, true) == 1 }) {
		fail("deploy %s has %d check runs (%d completed), want 1 completed", id, c.checkRunsOf(id, false), c.checkRunsOf(id, true))
	}
	if rec, err := c.store.GetDeploy(context.Background(), path.Base(last.LogURL)); err != nil || rec.ID != id {
		fail("the deploy record behind %s: %v (id %q, marker %q)", last.LogURL, err, rec.ID, id)
	}

	var served map[string]int
	if !within(20*time.Second, func() bool {
		served = versionsServed(c.tb, url, 40)
		if len(served) != 1 {
			return false
		}
		return slices.Contains(want, strings.TrimPrefix(firstKey(served), "sample-app "))
	}) {
		fail("production serves %v after the deployment ended %s, want one of %v", served, last.State, want)
	}

	var lockErr error
	if !within(15*time.Second, func() bool { lockErr = c.lockFree(); return lockErr == nil }) {
		fail("%v after the deployment ended", lockErr)
	}
	return bad
}

// checkRunsOf counts the shipbot/production check runs of deploy id.
func (c *chaosCluster) checkRunsOf(id string, completed bool) int {
	k := 0
	for _, r := range c.srv.CheckRuns(deployOwner, deployRepo) {
		if r.ExternalID == id && r.Name == "shipbot/production" && (!completed || r.Status == "completed") {
			k++
		}
	}
	return k
}

// lockFree says why production's deploy lock is not free: it is held, or
// a deploy is still running or pending. Taking the lock for a moment is
// the one way to ask the store whether anyone holds it.
func (c *chaosCluster) lockFree() error {
	ctx := context.Background()
	if id, ok, err := c.store.Running(ctx, chaosEnv); err != nil || ok {
		return fmt.Errorf("deploy %q still running (%v)", id, err)
	}
	if id, ok, err := c.store.Pending(ctx, chaosEnv); err != nil || ok {
		return fmt.Errorf("deploy %q still pending (%v)", id, err)
	}
	l, ok, err := c.store.AcquireLock(ctx, chaosEnv, "chaos-test", time.Second)
	if err != nil || !ok {
		return fmt.Errorf("the deploy lock is held (%v)", err)
	}
	return c.store.ReleaseLock(ctx, l)
}

// checkEnd: every acknowledged push made its deploy (deploys pushes in
// all), and the queue holds no job, leased, delayed or dead.
func (c *chaosCluster) checkEnd(pushes int) []string {
	var bad []string
	c.mu.Lock()
	acked := len(c.acked)
	c.mu.Unlock()
	if acked != pushes {
		bad = append(bad, fmt.Sprintf("%d of %d pushes acknowledged", acked, pushes))
	}
	if got := len(c.deployments()); got != pushes {
		bad = append(bad, fmt.Sprintf("%d deployments for %d acknowledged pushes", got, pushes))
	}
	q, err := queue.NewRedis(c.rdb, "shipbot", queue.Options{})
	if err != nil {
		return append(bad, err.Error())
	}
	var st queue.Stats
	if !within(15*time.Second, func() bool {
		st, err = q.Stats(context.Background())
		return err == nil && st.Ready+st.Leased+st.Delayed+st.Dead == 0
	}) {
		bad = append(bad, fmt.Sprintf("the queue after the last round: %+v (%v), want it empty", st, err))
	}
	return bad
}

// within polls cond every 100ms until it holds or d has passed.
func within(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
