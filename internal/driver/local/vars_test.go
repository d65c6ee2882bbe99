package local

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/githubtest"
)

// secretSource is the bot's secrets as the driver reads them: values by
// "repo env name".
type secretSource map[string]string

func (s secretSource) Secret(_ context.Context, repo, env, name string) (string, error) {
	v, ok := s[repo+" "+env+" "+name]
	if !ok {
		return "", deploy.ErrSecretNotSet
	}
	return v, nil
}

// The bot's own variables, set in the test process: no app may see them.
var botOnly = map[string]string{
	"WEBHOOK_SECRET": "bot-webhook-s3cret",
	"REDIS_URL":      "redis://bot-only:6379",
	"SECRETS_KEY":    "bot-secrets-key",
}

func setBotEnv(t *testing.T) {
	for k, v := range botOnly {
		t.Setenv(k, v)
	}
}

// shellRelease is a release of a tree with no server in it, for builds and
// release phases: its files are the given ones.
func shellRelease(t *testing.T, src *source, sha string, files map[string]string) deploy.Release {
	t.Helper()
	sha = strings.Repeat(sha, 40/len(sha))
	b, err := githubtest.Tarball("acme", "web", sha, files)
	if err != nil {
		t.Fatal(err)
	}
	src.mu.Lock()
	src.extra[sha] = b
	src.mu.Unlock()
	return deploy.Release{Repo: repo, InstallationID: 7, SHA: sha, Ref: "main"}
}

// expectEnv checks an environment listing (NAME=value lines) has every
// line of want and no variable of the bot's own.
func expectEnv(t *testing.T, what, env string, want ...string) {
	t.Helper()
	lines := strings.Split(env, "\n")
	for _, w := range want {
		found := false
		for _, l := range lines {
			found = found || l == w || strings.HasSuffix(w, "=") && strings.HasPrefix(l, w)
		}
		if !found {
			t.Errorf("%s lacks %q:\n%s", what, w, env)
		}
	}
	for k, v := range botOnly {
		if strings.Contains(env, k) || strings.Contains(env, v) {
			t.Errorf("%s has the bot's own %s:\n%s", what, k, env)
		}
	}
}

// expectMasked checks that value is nowhere in text and that text has
// masked (with ••••) what it should.
func expectMasked(t *testing.T, what, text, value, masked string) {
	t.Helper()
	if strings.Contains(text, value) {
		t.Errorf("%s has the secret's value:\n%s", what, text)
	}
	if !strings.Contains(text, masked) {
		t.Errorf("%s lacks %q:\n%s", what, masked, text)
	}
}

// expectNotOnDisk checks that no file under dir has value in its name or
// content.
func expectNotOnDisk(t *testing.T, dir, value string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(path, value) {
			t.Errorf("a file name has the secret's value: %s", path)
		}
		if e.Type().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte(value)) {
				t.Errorf("%s has the secret's value", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestInstanceGetsItsVariablesAndNothingOfTheBots(t *testing.T) {
	setBotEnv(t)
	h := newHarness(t, "", nil)
	const greeting = "hello-from-the-vault"
	tgt := target(1)
	tgt.App.Run = `echo "starting with $GREETING"; exec ./app`
	tgt.Vars = map[string]string{"LOG_FORMAT": "json", "CHECKOUT_V2": "on"}
	tgt.Secrets = map[string]string{"GREETING": greeting}
	inst := deploy.Instance{ID: "staging-1"}
	h.update(tgt, inst, v1)
	url := h.d.URL(repo, "staging")

	want := []string{"LOG_FORMAT=json", "CHECKOUT_V2=on", "GREETING=" + greeting, "PORT=", "HOME=", "PATH=", "INSTANCE_ID=staging-1", "RELEASE=" + v1.SHA}
	code, env, err := get(url + "/env")
	if err != nil || code != 200 {
		t.Fatalf("GET /env: %d %v", code, err)
	}
	expectEnv(t, "the instance's environment", env, want...)

	// What the app printed reaches its log masked.
	logPath := h.d.instanceLog(fleetKey{Repo: repo, Env: "staging"}, "staging-1")
	b, _ := os.ReadFile(logPath)
	expectMasked(t, "the instance log", string(b), greeting, "starting with ••••")

	// The supervisor restarts a dead instance with the same variables.
	f := h.d.fleets[fleetKey{Repo: repo, Env: "staging"}]
	f.mu.Lock()
	old := f.slots["staging-1"].proc
	f.mu.Unlock()
	old.kill()
	deadline := time.Now().Add(15 * time.Second)
	for {
		insts, err := h.d.Instances(context.Background(), tgt)
		if err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		p := f.slots["staging-1"].proc
		f.mu.Unlock()
		if p != old && insts[0].Healthy && insts[0].InRotation {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("staging-1 not restarted and back in rotation 15s after it was killed: %+v", insts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, env, err = get(url + "/env")
	if err != nil || code != 200 {
		t.Fatalf("GET /env after the restart: %d %v", code, err)
	}
	expectEnv(t, "the restarted instance's environment", env, want...)
	expectNotOnDisk(t, h.dir, greeting)
	if strings.Contains(h.logs.String(), greeting) {
		t.Errorf("the driver's log has the secret's value:\n%s", h.logs.String())
	}
}

func TestReleaseRunsOnceInTheBuildWithTheVariables(t *testing.T) {
	setBotEnv(t)
	h := newHarness(t, "", nil)
	const secret = "postgres://app:pw-7731@db/app"
	count := filepath.Join(t.TempDir(), "count")
	r := shellRelease(t, h.src, "4d", map[string]string{
		"migrate.sh": "echo \"migrating $DATABASE_URL\"\necho run >> \"$COUNT_FILE\"\nenv > release.env\n",
	})
	tgt := target(1)
	tgt.App.Build = `echo "build sees $DATABASE_URL"; echo built > artifact`
	tgt.App.Release = "sh migrate.sh"
	tgt.Vars = map[string]string{"LOG_FORMAT": "json", "COUNT_FILE": count}
	tgt.Secrets = map[string]string{"DATABASE_URL": secret}

	var buildLog, releaseLog bytes.Buffer
	if err := h.d.Prepare(context.Background(), tgt, r, &buildLog); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := h.d.Release(context.Background(), tgt, r, &releaseLog); err != nil {
		t.Fatalf("release: %v\n%s", err, releaseLog.String())
	}
	t.Logf("release phase took %s", time.Since(start))
	if n := h.src.count(r.SHA); n != 1 {
		t.Errorf("%d fetches for a Prepare and a Release, want 1 (the release runs in Prepare's build)", n)
	}
	if b, err := os.ReadFile(count); err != nil || string(b) != "run\n" {
		t.Errorf("the release ran %q times (%v), want once", b, err)
	}
	src := filepath.Join(h.buildRoot(tgt, r), "src")
	if !exists(filepath.Join(src, "artifact")) {
		t.Errorf("no artifact in %s: the release did not run in the build", src)
	}
	env, err := os.ReadFile(filepath.Join(src, "release.env"))
	if err != nil {
		t.Fatal(err)
	}
	expectEnv(t, "the release phase's environment", string(env), "DATABASE_URL="+secret, "LOG_FORMAT=json", "HOME=", "PATH=")
	if strings.Contains(string(env), "PORT=") {
		t.Errorf("the release phase got a port:\n%s", env)
	}
	expectMasked(t, "the build log", buildLog.String(), secret, "build sees ••••")
	expectMasked(t, "the release log", releaseLog.String(), secret, "migrating ••••")
	b, _ := os.ReadFile(filepath.Join(h.buildRoot(tgt, r), "build.log"))
	expectMasked(t, "build.log", string(b), secret, "build sees ••••")

	// A failure says the command, its exit status and its last lines.
	tgt.App.Release = `echo "connecting to $DATABASE_URL"; echo "relation users already exists" >&2; exit 3`
	releaseLog.Reset()
	err = h.d.Release(context.Background(), tgt, r, &releaseLog)
	var re *ReleaseError
	if !errors.As(err, &re) {
		t.Fatalf("a failing release returned %v, want a *ReleaseError", err)
	}
	for _, want := range []string{tgt.App.Release, "exited with status 3", "connecting to ••••", "relation users already exists"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q:\n%v", want, err)
		}
	}
	expectMasked(t, "the failed release's error", err.Error(), secret, "••••")
	expectMasked(t, "the failed release's log", releaseLog.String(), secret, "connecting to ••••")

	// No app.release: nothing runs.
	tgt.App.Release = ""
	releaseLog.Reset()
	if err := h.d.Release(context.Background(), tgt, r, &releaseLog); err != nil || releaseLog.Len() != 0 {
		t.Errorf("with no app.release: %v, log %q; want nil and nothing", err, releaseLog.String())
	}
}

func TestReleaseIsKilledWhenItsContextEnds(t *testing.T) {
	h := newHarness(t, "", nil)
	pidFile := filepath.Join(t.TempDir(), "pid")
	r := shellRelease(t, h.src, "5e", map[string]string{"README": "nothing to build\n"})
	tgt := target(1)
	tgt.App.Build = ""
	tgt.App.Release = `sleep 60 & echo $! > "$PID_FILE"; echo waiting; wait`
	tgt.Vars = map[string]string{"PID_FILE": pidFile}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := h.d.Release(ctx, tgt, r, io.Discard)
	if took := time.Since(start); err == nil || took > 5*time.Second {
		t.Fatalf("release with a 500ms deadline returned %v after %s; want an error within seconds", err, took)
	}
	for _, want := range []string{"was stopped", "deadline exceeded", "waiting"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q: %v", want, err)
		}
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	// The sleep was in the release's process group: it is gone (or a
	// zombie nobody has reaped yet), not left sleeping.
	for deadline := time.Now().Add(3 * time.Second); alive(pid); {
		if time.Now().After(deadline) {
			t.Fatalf("the release's child %d still runs after the release was stopped", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid is a process that is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func TestBuildIsNotReusedWithOtherVariables(t *testing.T) {
	h := newHarness(t, "", nil)
	r := shellRelease(t, h.src, "6f", map[string]string{"README": "a build that keeps what it saw\n"})
	prod, staging := target(1), target(1)
	prod.App.Build = `echo "$DATABASE_URL" > artifact; echo "built with $DATABASE_URL"`
	staging.App = prod.App
	prod.Secrets = map[string]string{"DATABASE_URL": "production-db-value"}
	staging.Secrets = map[string]string{"DATABASE_URL": "staging-db-value"}

	h.prepare(prod, r)
	h.prepare(staging, r)
	if n := h.src.count(r.SHA); n != 2 {
		t.Fatalf("%d fetches for one release with two sets of variables, want 2 (a build each)", n)
	}
	h.prepare(prod, r)
	if n := h.src.count(r.SHA); n != 2 {
		t.Fatalf("a build with the same variables was not reused (%d fetches)", n)
	}
	for _, c := range []struct {
		tgt  deploy.Target
		want string
	}{{prod, "production-db-value\n"}, {staging, "staging-db-value\n"}} {
		b, err := os.ReadFile(filepath.Join(h.buildRoot(c.tgt, r), "src", "artifact"))
		if err != nil || string(b) != c.want {
			t.Errorf("the build saw %q (%v), want %q", b, err, c.want)
		}
		log, _ := os.ReadFile(filepath.Join(h.buildRoot(c.tgt, r), "build.log"))
		expectMasked(t, "build.log", string(log), strings.TrimSpace(c.want), "built with ••••")
		if strings.Contains(h.buildRoot(c.tgt, r), "db-value") {
			t.Errorf("the build directory's name has the value: %s", h.buildRoot(c.tgt, r))
		}
	}
	// A change of a plain variable is another build too.
	prod.Vars = map[string]string{"FEATURE": "on"}
	h.prepare(prod, r)
	if n := h.src.count(r.SHA); n != 3 {
		t.Errorf("a build was reused with another variable (%d fetches, want 3)", n)
	}
}

func TestRestoreReadsSecretsAgain(t *testing.T) {
	dir := t.TempDir()
	src := newSource(t)
	const greeting = "restored-s3cret"
	tgt := target(1)
	tgt.Vars = map[string]string{"LOG_FORMAT": "json"}
	tgt.Secrets = map[string]string{"GREETING": greeting}
	inst := deploy.Instance{ID: "staging-1"}

	h1 := newHarness(t, dir, src)
	h1.update(tgt, inst, v1)
	url := h1.d.URL(repo, "staging")
	h1.close()
	state, err := os.ReadFile(filepath.Join(dir, "local", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"GREETING"`, `"LOG_FORMAT": "json"`} {
		if !strings.Contains(string(state), want) {
			t.Errorf("state.json lacks %s:\n%s", want, state)
		}
	}
	expectNotOnDisk(t, dir, greeting)

	// After a restart, the value is read again from the bot's secrets.
	h2 := newHarnessWith(t, dir, src, func(o *Options) {
		o.Secrets = secretSource{repo + " staging GREETING": greeting}
	})
	if err := h2.d.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	code, env, err := get(url + "/env")
	if err != nil || code != 200 {
		t.Fatalf("GET /env after Restore: %d %v", code, err)
	}
	expectEnv(t, "the restored instance's environment", env, "GREETING="+greeting, "LOG_FORMAT=json")
	h2.close()

	// A secret that can no longer be read keeps the instance down.
	h3 := newHarnessWith(t, dir, src, func(o *Options) { o.Secrets = secretSource{} })
	err = h3.d.Restore(context.Background())
	if err == nil || !strings.Contains(err.Error(), "bot secrets set acme/web staging GREETING") {
		t.Errorf("Restore without the secret returned %v; want an error with the line that sets it", err)
	}
	if !strings.Contains(h3.logs.String(), "instance stays down") {
		t.Errorf("the driver's log does not say the instance stays down:\n%s", h3.logs.String())
	}
	insts, err := h3.d.Instances(context.Background(), tgt)
	if err != nil {
		t.Fatal(err)
	}
	if insts[0].Healthy || insts[0].InRotation {
		t.Errorf("an instance whose secret is unreadable was started: %+v", insts[0])
	}
	if code, _, _ := get(url + "/env"); code != 503 {
		t.Errorf("GET through the proxy answered %d, want 503 (no instance)", code)
	}
	// Its secret's name is still recorded, for the next restart.
	h3.close()
	state, _ = os.ReadFile(filepath.Join(dir, "local", "state.json"))
	if !strings.Contains(string(state), `"GREETING"`) {
		t.Errorf("state.json forgot the secret's name:\n%s", state)
	}
	for _, h := range []*harness{h1, h2, h3} {
		if strings.Contains(h.logs.String(), greeting) {
			t.Errorf("a driver's log has the secret's value:\n%s", h.logs.String())
		}
	}
}

func TestPreviewRunsItsReleasePhase(t *testing.T) {
	setBotEnv(t)
	h := newHarness(t, "", nil)
	const dbURL = "postgres://preview:pw-99@db/pr5"
	releaseLog := filepath.Join(t.TempDir(), "release.log")
	pv := deploy.Preview{Repo: repo, Number: 5, App: sampleApp}
	pv.Config.Health = fastHealth
	pv.App.Release = `echo "$APP_ENV $PREVIEW_DATABASE_URL" >> "$RELEASE_LOG"`
	pv.Vars = map[string]string{"APP_ENV": "preview", "RELEASE_LOG": releaseLog}
	pv.Secrets = map[string]string{"PREVIEW_DATABASE_URL": dbURL}

	var log bytes.Buffer
	url, err := h.d.EnsurePreview(context.Background(), pv, v1, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if b, _ := os.ReadFile(releaseLog); string(b) != "preview "+dbURL+"\n" {
		t.Errorf("the preview's release phase wrote %q, want it once with the preview's variables", b)
	}
	_, env, err := get(url + "/env")
	if err != nil {
		t.Fatal(err)
	}
	expectEnv(t, "the preview's environment", env, "APP_ENV=preview", "PREVIEW_DATABASE_URL="+dbURL)

	// Asked again for the same release and variables: no release phase.
	if _, err := h.d.EnsurePreview(context.Background(), pv, v1, io.Discard); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(releaseLog); strings.Count(string(b), "\n") != 1 {
		t.Errorf("the release phase ran again for a preview already running the release:\n%s", b)
	}

	// A failed release phase leaves the previous release serving.
	pv.App.Release = `echo "no database at $PREVIEW_DATABASE_URL"; exit 4`
	log.Reset()
	_, err = h.d.EnsurePreview(context.Background(), pv, v2, &log)
	if err == nil {
		t.Fatal("a preview update whose release phase fails succeeded")
	}
	for _, want := range []string{"release phase failed", "exited with status 4", "no database at ••••"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q: %v", want, err)
		}
	}
	expectMasked(t, "the preview update's error", err.Error(), dbURL, "••••")
	expectMasked(t, "the preview update's log", log.String(), dbURL, "keeps serving 1a1a1a1")
	expectVersion(t, url, "v1", 5)
}
