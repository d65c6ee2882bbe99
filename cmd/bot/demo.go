package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shipbot/shipbot/internal/report"

	"github.com/shipbot/shipbot/fixtures"
	"github.com/shipbot/shipbot/internal/config"
	"github.com/shipbot/shipbot/internal/githubtest"
)

// The demo's world: the fixtures' repository and pull request, with
// releases of the sample app at made-up SHAs.
const (
	demoOwner   = fixtures.Owner
	demoRepo    = fixtures.RepoName
	demoPR      = fixtures.PRNumber
	demoUser    = "octocat"
	demoFirst   = "1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a" // main's first release: sample-app v1
	demoBranch  = fixtures.HeadSHAOpened                     // the PR's head: sample-app v2
	demoMerge   = fixtures.MergeSHA                          // the PR merged: sample-app v2
	demoFlaky   = "f1a4f1a4f1a4f1a4f1a4f1a4f1a4f1a4f1a4f1a4" // v2.1, which fails 1 request in 3 but answers /healthz
	demoBroken  = "bad0bad0bad0bad0bad0bad0bad0bad0bad0bad0" // v3, whose /healthz answers 500
	demoTimeout = 5 * time.Minute                            // per step; a first build downloads nothing but takes a while
)

// demo runs the whole story on this machine: the simulated GitHub, a bot on
// the embedded store with the local driver, and the sample app.
func demo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 0, "the bot's port (default: $PORT, or 3000, or a free port when 3000 is taken)")
	exit := fs.Bool("exit", false, "stop and clean up as soon as the story is told, instead of waiting for Ctrl-C")
	verbose := fs.Bool("verbose", false, "print the bot's own log lines too (they always go to DIR/bot.log)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("demo takes no arguments, only flags: bot demo [--port N] [--exit] [--verbose]")
	}
	ln, err := demoListener(*port, getenv("PORT"))
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "shipbot-demo-")
	if err != nil {
		ln.Close()
		return fmt.Errorf("cannot create a directory for the demo (%v): set TMPDIR to a writable directory", err)
	}
	defer os.RemoveAll(dir)

	logFile, err := os.Create(filepath.Join(dir, "bot.log"))
	if err != nil {
		ln.Close()
		return err
	}
	defer logFile.Close()
	var logOut io.Writer = logFile
	if *verbose {
		logOut = io.MultiWriter(logFile, stderr)
	}
	log := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo}))

	// The simulated GitHub. It validates against GitHub's REST description
	// when a checkout's node_modules has it, and serves without otherwise.
	rep := githubtest.NewLogReporter(log.With("component", "githubtest"))
	defer rep.Close()
	srv := githubtest.New(rep)
	if srv == nil {
		ln.Close()
		return errors.New("the simulated GitHub did not start; see " + logFile.Name())
	}
	srv.AddRepo(demoOwner, demoRepo, githubtest.RepoOptions{DefaultBranch: fixtures.DefaultBranch})
	srv.SetPermission(demoOwner, demoRepo, demoUser, "admin")

	addr := ln.Addr().(*net.TCPAddr)
	publicURL := "http://localhost:" + strconv.Itoa(addr.Port)
	secret := randomHex(20)
	clientID, clientSecret := srv.OAuthClient()
	env := map[string]string{
		// "Sign in with GitHub" on the dashboard signs in to the simulator
		// as octocat, who may read the repository.
		"GITHUB_CLIENT_ID":     clientID,
		"GITHUB_CLIENT_SECRET": clientSecret,
		"APP_ID":               strconv.FormatInt(srv.AppID, 10),
		"PRIVATE_KEY":          string(srv.PrivateKeyPEM),
		"WEBHOOK_SECRET":       secret,
		"GITHUB_API_URL":       srv.URL,
		"DATA_DIR":             filepath.Join(dir, "data"),
		"PORT":                 strconv.Itoa(addr.Port),
		"PUBLIC_URL":           publicURL,
	}
	cfg, err := config.Load(func(k string) string { return env[k] }, nil)
	if err != nil {
		ln.Close()
		return err
	}
	ln.Close() // build listens itself, on the port just found free
	b, err := build(ctx, cfg, roleAll, log, withInProcessDriver())
	if err != nil {
		return err
	}
	botCtx, stopBot := context.WithCancel(context.WithoutCancel(ctx))
	botDone := make(chan error, 1)
	go func() { botDone <- b.run(botCtx) }()
	defer func() {
		fmt.Fprintln(stdout, "\nStopping the bot and its instances, removing "+dir+" …")
		stopBot()
		<-botDone
		b.close()
	}()

	d := &demoRun{ctx: ctx, out: stdout, srv: srv, secret: []byte(secret), appID: srv.AppID,
		hooks: publicURL + "/webhooks", logPath: logFile.Name()}
	fmt.Fprintf(stdout, `shipbot demo: the whole story on this machine, with a simulated GitHub.

  dashboard          %s/  ("Sign in with GitHub" signs in to the simulator as %s)
  simulated GitHub   %s  (repository %s/%s)
  bot log            %s

`, publicURL, demoUser, srv.WebURL, demoOwner, demoRepo, logFile.Name())
	if err := d.story(); err != nil {
		return fmt.Errorf("%w\nThe bot's log is in %s (removed on exit; run with --verbose to see it live)", err, logFile.Name())
	}
	if errs := rep.Errors(); len(errs) > 0 {
		// The simulator checks every request against GitHub's REST
		// description when it has it: a mismatch is a bug of the bot's.
		return fmt.Errorf("the simulated GitHub found %d request(s) or response(s) that GitHub's REST description does not allow; the first: %s", len(errs), errs[0])
	}
	if *exit {
		return nil
	}
	fmt.Fprintf(stdout, "\nEverything is still running: open the URLs above. Press Ctrl-C to stop; the demo removes everything it made.\n")
	<-ctx.Done()
	return nil
}

// demoListener reserves the demo's port: --port, else $PORT, else 3000,
// else any free one.
func demoListener(flagPort int, envPort string) (net.Listener, error) {
	want := flagPort
	if want == 0 && envPort != "" {
		p, err := strconv.Atoi(envPort)
		if err != nil {
			return nil, fmt.Errorf("PORT=%q is not a port number: set it to e.g. 3000, or pass --port", envPort)
		}
		want = p
	}
	if want != 0 {
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(want))
		if err != nil {
			return nil, fmt.Errorf("port %d cannot be listened on (%v): pass --port with a free one", want, err)
		}
		return ln, nil
	}
	if ln, err := net.Listen("tcp", ":3000"); err == nil {
		return ln, nil
	}
	return net.Listen("tcp", ":0")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// demoRun tells the story step by step.
type demoRun struct {
	ctx     context.Context
	out     io.Writer
	srv     *githubtest.Server
	secret  []byte
	appID   int64
	hooks   string
	logPath string
	step    int
	seq     int
}

const demoSteps = 7

func (d *demoRun) story() error {
	// 1. A first release, so that there is something to roll back to.
	d.title("main starts at %s (sample-app v1): production gets its first release", report.Short(demoFirst))
	d.release(demoFirst, "v1", true)
	d.srv.SetBranch(demoOwner, demoRepo, fixtures.DefaultBranch, demoFirst)
	if err := d.send("push", d.pushPayload("0000000000000000000000000000000000000000", demoFirst)); err != nil {
		return err
	}
	dep, err := d.finished("production", demoFirst)
	if err != nil {
		return err
	}
	d.result(dep, "production serves sample-app v1")

	// 2. A pull request gets its preview.
	d.title("PR #%d opened from %s at %s (sample-app v2): its preview environment", demoPR, fixtures.HeadBranch, report.Short(demoBranch))
	d.release(demoBranch, "v2", true)
	d.srv.SetBranch(demoOwner, demoRepo, fixtures.HeadBranch, demoBranch)
	pr := githubtest.PullRequest{Number: demoPR, Title: "Add a greeting", User: demoUser,
		HeadRef: fixtures.HeadBranch, HeadSHA: demoBranch, BaseRef: fixtures.DefaultBranch}
	d.srv.SetPullRequest(demoOwner, demoRepo, pr)
	if err := d.send("pull_request", d.prPayload("pull_request.opened", demoBranch)); err != nil {
		return err
	}
	if dep, err = d.finished(fmt.Sprintf("pr-%d", demoPR), demoBranch); err != nil {
		return err
	}
	d.result(dep, "the PR comment links it")

	// 3. /deploy staging from the PR.
	d.title("Comment \"/deploy staging\" on PR #%d", demoPR)
	if err := d.comment("/deploy staging"); err != nil {
		return err
	}
	if dep, err = d.finished("staging", demoBranch); err != nil {
		return err
	}
	d.result(dep, "staging serves the branch")

	// 4. The merge ships to production, canary first.
	d.title("PR #%d merged: main at %s rolls out to production, canary first, in batches", demoPR, report.Short(demoMerge))
	d.release(demoMerge, "v2", true)
	d.srv.SetBranch(demoOwner, demoRepo, fixtures.DefaultBranch, demoMerge)
	pr.State, pr.Merged = "closed", true
	d.srv.SetPullRequest(demoOwner, demoRepo, pr)
	if err := d.send("pull_request", d.prPayload("pull_request.closed.merged", demoBranch)); err != nil {
		return err
	}
	if err := d.send("push", d.pushPayload(demoFirst, demoMerge)); err != nil {
		return err
	}
	if dep, err = d.finished("production", demoMerge); err != nil {
		return err
	}
	d.result(dep, "production serves sample-app v2; the preview is torn down")

	// 5. A release that passes /healthz but fails real requests halts at
	// the canary, judged by its traffic against the release it replaces.
	d.title("A commit %s reaches main that fails 1 request in 3 (its /healthz answers 200) while customers use production", report.Short(demoFlaky))
	d.releaseWith(demoFlaky, "v2.1", fixtures.Behaviour{FailShare: 1.0 / 3})
	d.srv.SetBranch(demoOwner, demoRepo, fixtures.DefaultBranch, demoFlaky)
	stop := demoTraffic(d.ctx, dep.Statuses[len(dep.Statuses)-1].EnvironmentURL, demoTrafficRate)
	if err := d.send("push", d.pushPayload(demoMerge, demoFlaky)); err != nil {
		stop()
		return err
	}
	dep, err = d.finished("production", demoFlaky)
	sent, failed := stop()
	if err != nil {
		return err
	}
	d.result(dep, fmt.Sprintf("halted at the canary by its error rate: production still serves sample-app v2 (of %d requests sent meanwhile, %d failed, on the canary before it was halted)", sent, failed))

	// 6. A broken release halts at the canary and rolls back by itself.
	d.title("A broken commit %s reaches main (its /healthz answers 500)", report.Short(demoBroken))
	d.release(demoBroken, "v3", false)
	d.srv.SetBranch(demoOwner, demoRepo, fixtures.DefaultBranch, demoBroken)
	if err := d.send("push", d.pushPayload(demoFlaky, demoBroken)); err != nil {
		return err
	}
	if dep, err = d.finished("production", demoBroken); err != nil {
		return err
	}
	d.result(dep, "halted and rolled back: production still serves sample-app v2")

	// 7. /rollback puts the release before the current one back.
	d.title("Comment \"/rollback\" on PR #%d: the release before the current one comes back", demoPR)
	if err := d.comment("/rollback"); err != nil {
		return err
	}
	if dep, err = d.finishedAfter("production", demoFirst, 2); err != nil {
		return err
	}
	d.result(dep, "production serves sample-app v1 again")
	return nil
}

func (d *demoRun) title(format string, args ...any) {
	d.step++
	fmt.Fprintf(d.out, "%d/%d  %s\n", d.step, demoSteps, fmt.Sprintf(format, args...))
}

func (d *demoRun) result(dep githubtest.Deployment, what string) {
	st := dep.Statuses[len(dep.Statuses)-1]
	mark := "✓"
	if st.State != "success" {
		mark = "✗"
	}
	fmt.Fprintf(d.out, "     %s %s %s: %s\n", mark, dep.Environment, st.State, st.Description)
	if st.EnvironmentURL != "" {
		fmt.Fprintf(d.out, "       open %s\n", st.EnvironmentURL)
	}
	if st.LogURL != "" {
		fmt.Fprintf(d.out, "       deploy page %s\n", st.LogURL)
	}
	fmt.Fprintf(d.out, "       %s\n", what)
}

// demoConfig is the repository's .github/shipbot.yml: the defaults, but
// a broken release is caught in 15 seconds rather than the default 2
// minutes of health checks, and production's batches are judged by their
// traffic every second for 2 seconds, so that the story stays short.
const demoConfig = `# shipbot's configuration for the demo: see the README for every key.
environments:
  production:
    branch: main
    rollout:
      bake: 2s
    health:
      timeout: 15s
    analysis:
      interval: 1s
      min_requests: 10
  staging:
    allow_branches: true
    health:
      timeout: 15s
`

// release makes sha a release of the sample app in the simulated GitHub.
func (d *demoRun) release(sha, version string, healthy bool) {
	d.releaseWith(sha, version, fixtures.Behaviour{Unhealthy: !healthy})
}

// releaseWith makes sha a release of the sample app that behaves as b says.
func (d *demoRun) releaseWith(sha, version string, b fixtures.Behaviour) {
	files := fixtures.SampleAppWith(version, b)
	files[".github/shipbot.yml"] = demoConfig
	d.srv.SetFiles(demoOwner, demoRepo, sha, files)
}

// demoTrafficRate is the requests per second the demo's customers send.
const demoTrafficRate = 40

// demoTraffic sends GET url at perSecond requests a second, each on its
// own goroutine, until stop is called; stop says how many were sent and
// how many failed (an error or a status other than 200).
func demoTraffic(ctx context.Context, url string, perSecond int) (stop func() (sent, failed int)) {
	ctx, cancel := context.WithCancel(ctx)
	client := &http.Client{Timeout: 5 * time.Second}
	var sentN, failedN atomic.Int64
	var wg sync.WaitGroup
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			sentN.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				if err != nil {
					failedN.Add(1)
					return
				}
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						failedN.Add(1)
					}
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failedN.Add(1)
				}
			}()
		}
	}()
	return func() (int, int) {
		cancel()
		<-done
		wg.Wait()
		return int(sentN.Load()), int(failedN.Load())
	}
}

// send signs and delivers a webhook to the bot, as GitHub would.
func (d *demoRun) send(event string, body []byte) error {
	d.seq++
	id := fmt.Sprintf("demo-%d-%s", d.seq, randomHex(4))
	code, status, answer, err := deliver(d.ctx, d.hooks, event, id, d.secret, d.appID, body)
	if err != nil {
		return err
	}
	if code >= 300 {
		return fmt.Errorf("the bot refused the %s delivery: %s %s", event, status, strings.TrimSpace(string(answer)))
	}
	return nil
}

// comment posts body as a comment of demoUser on the PR and delivers it.
func (d *demoRun) comment(body string) error {
	id := d.srv.AddComment(demoOwner, demoRepo, demoPR, demoUser, body)
	return d.send("issue_comment", commentOnPR(d.srv.InstallationID, id, demoUser, body))
}

// finished waits for the newest deployment of sha to env to end.
func (d *demoRun) finished(env, sha string) (githubtest.Deployment, error) {
	return d.finishedAfter(env, sha, 1)
}

// finishedAfter waits for the n-th deployment of sha to env to end.
func (d *demoRun) finishedAfter(env, sha string, n int) (githubtest.Deployment, error) {
	deadline := time.Now().Add(demoTimeout)
	for {
		var deps []githubtest.Deployment
		for _, dep := range d.srv.Deployments(demoOwner, demoRepo) {
			if dep.Environment == env && dep.SHA == sha {
				deps = append(deps, dep)
			}
		}
		if len(deps) >= n {
			dep := deps[n-1]
			switch dep.LastState() {
			case "success", "failure", "error":
				return dep, nil
			}
		}
		if time.Now().After(deadline) {
			return githubtest.Deployment{}, fmt.Errorf("the deploy of %s to %s did not finish within %s", report.Short(sha), env, demoTimeout)
		}
		select {
		case <-d.ctx.Done():
			return githubtest.Deployment{}, errors.New("interrupted")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// fixturePayload is webhook fixture name sent to installation inst,
// changed by edit (which may be nil).
func fixturePayload(name string, inst int64, edit func(p map[string]any)) []byte {
	var p map[string]any
	if err := json.Unmarshal(fixtures.Webhook(name), &p); err != nil {
		panic("fixture " + name + ": " + err.Error()) // embedded and tested: cannot happen
	}
	p["installation"] = map[string]any{"id": inst}
	if edit != nil {
		edit(p)
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic(err) // maps of JSON values: cannot happen
	}
	return b
}

// pushOnMain is the push moving the default branch from before to after.
func pushOnMain(inst int64, before, after string) []byte {
	return fixturePayload("push", inst, func(p map[string]any) {
		p["ref"], p["before"], p["after"], p["deleted"] = fixtures.DefaultRef, before, after, false
	})
}

// commentOnPR is login's comment id with body, created now on the
// fixtures' pull request.
func commentOnPR(inst, id int64, login, body string) []byte {
	return fixturePayload("issue_comment.created", inst, func(p map[string]any) {
		c := p["comment"].(map[string]any)
		c["id"], c["body"], c["created_at"] = id, body, time.Now().UTC().Format(time.RFC3339)
		c["user"].(map[string]any)["login"] = login
		c["user"].(map[string]any)["type"] = "User"
		p["sender"].(map[string]any)["login"] = login
	})
}

func (d *demoRun) pushPayload(before, after string) []byte {
	return pushOnMain(d.srv.InstallationID, before, after)
}

func (d *demoRun) prPayload(name, head string) []byte {
	return fixturePayload(name, d.srv.InstallationID, func(p map[string]any) {
		p["pull_request"].(map[string]any)["head"].(map[string]any)["sha"] = head
	})
}
