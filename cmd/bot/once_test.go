package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/testenv"
)

// One GitHub deployment per deploy, end to end with the real binary:
//   - v1's create is applied by GitHub and its answer lost (the connection
//     drops): the bot looks before retrying and carries on with it;
//   - v2's create is applied and its answer held back while the bot is
//     SIGKILLed, so the deploy record never gets the id: the restarted bot
//     runs the job again, finds the deployment by its marker and finishes
//     the deploy on it.
func TestOneDeploymentPerDeployAcrossLostAnswersAndACrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the bot and runs the sample app")
	}
	bin := botBinary(t)
	srv := githubtest.New(t, githubtest.WithSpec(restDescription(t)))
	srv.AddRepo(deployOwner, deployRepo, githubtest.RepoOptions{DefaultBranch: "main"})
	r := testenv.StartRedis(t)
	port := strconv.Itoa(testenv.FreePort(t))
	env := map[string]string{
		"PORT": port, "DATA_DIR": t.TempDir(), "REDIS_URL": r.URL(), "GITHUB_API_URL": srv.URL,
		"APP_ID": strconv.FormatInt(srv.AppID, 10), "PRIVATE_KEY": string(srv.PrivateKeyPEM),
		"WEBHOOK_SECRET": secret, "PUBLIC_URL": "https://shipbot.example.com", "LOG_LEVEL": "debug",
		"JOB_TIMEOUT": crashJobTimeout.String(),
	}
	cur := startBotProcess(t, bin, env)
	logs := func() string { return cur.logs.String() }
	hook := &runningBot{url: "http://127.0.0.1:" + port}
	const deployments = "/repos/{owner}/{repo}/deployments"

	srv.Fault("POST", deployments, githubtest.AppliedTimeout(1))
	pushWith(t, srv, hook, "once-1", "0000000000000000000000000000000000000000", shaV1, "v1", rolloutConfig("0s"))
	dep := waitDeployment(t, srv, shaV1, 90*time.Second, logs, func(d githubtest.Deployment) bool { return terminalState(d.LastState()) })
	if got := strings.Join(states(dep), ","); got != "queued,in_progress,success" {
		t.Fatalf("v1 statuses %s\n%s", got, logs())
	}
	assertOneDeployment(t, srv, shaV1)

	srv.Fault("POST", deployments, githubtest.Fault{Applied: true, Latency: 10 * time.Minute, Times: 1})
	pushWith(t, srv, hook, "once-2", shaV1, shaV2, "v2", rolloutConfig("0s"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, ok := deploymentOf(srv, shaV2); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("v2's deployment was never created\n%s", logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cur.kill(t) // GitHub has the deployment; the record never got its id
	cur = startBotProcess(t, bin, env)
	dep = waitDeployment(t, srv, shaV2, 90*time.Second, logs, func(d githubtest.Deployment) bool { return terminalState(d.LastState()) })
	if got := strings.Join(states(dep), ","); got != "queued,in_progress,success" {
		t.Fatalf("v2 statuses %s\n%s", got, logs())
	}
	assertOneDeployment(t, srv, shaV2)
}

// assertOneDeployment: sha has one deployment and one shipbot/production
// check run.
func assertOneDeployment(t *testing.T, srv *githubtest.Server, sha string) {
	t.Helper()
	n := 0
	for _, d := range srv.Deployments(deployOwner, deployRepo) {
		if d.SHA == sha {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%s has %d deployments, want 1", sha[:7], n)
	}
	runs := 0
	for _, c := range srv.CheckRuns(deployOwner, deployRepo) {
		if c.HeadSHA == sha && c.Name == "shipbot/production" {
			runs++
		}
	}
	if runs != 1 {
		t.Errorf("%s has %d shipbot/production check runs, want 1", sha[:7], runs)
	}
}
