package local

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/testenv"
)

func TestPrepareBuildsOnceAndIsIdempotent(t *testing.T) {
	h := newHarness(t, "", nil)
	tgt := target(1)

	// Three deploys of one release at once share one fetch and one build.
	logs := make([]testenv.Buffer, 3)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range 3 {
		wg.Go(func() { errs[i] = h.d.Prepare(context.Background(), tgt, v1, &logs[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("prepare %d: %v\n%s", i, err, logs[i].String())
		}
	}
	if n := h.src.count(v1.SHA); n != 1 {
		t.Fatalf("%d fetches of one release prepared 3 times at once, want 1", n)
	}
	root := h.buildRoot(tgt, v1)
	for _, name := range []string{"src/app", "src/main.go", "build.log", builtMarker} {
		if _, err := os.Stat(filepath.Join(root, name)); err != nil {
			t.Errorf("after the build: %v", err)
		}
	}
	buildLog, _ := os.ReadFile(filepath.Join(root, "build.log"))
	if !strings.Contains(string(buildLog), "$ go build -o app .") || !strings.Contains(string(buildLog), "built acme/web@1a1a1a1") {
		t.Errorf("build.log:\n%s", buildLog)
	}

	// Again: nothing fetched, nothing built.
	var again bytes.Buffer
	if err := h.d.Prepare(context.Background(), tgt, v1, &again); err != nil {
		t.Fatal(err)
	}
	if n := h.src.count(v1.SHA); n != 1 {
		t.Fatalf("a repeated Prepare fetched again (%d fetches)", n)
	}
	if !strings.Contains(again.String(), "built already") {
		t.Errorf("repeated Prepare said %q", again.String())
	}
}

func TestPrepareFailureCarriesOutputTail(t *testing.T) {
	h := newHarness(t, "", nil)
	tgt := target(1)
	tgt.App.Build = `for i in $(seq 1 50); do echo "line $i"; done; echo "boom: undefined: Handler" >&2; exit 3`
	var log bytes.Buffer
	err := h.d.Prepare(context.Background(), tgt, v1, &log)
	var be *BuildError
	if !errors.As(err, &be) {
		t.Fatalf("err = %v, want a *BuildError", err)
	}
	msg := err.Error()
	for _, want := range []string{"acme/web@1a1a1a1", "exit status 3", "line 32\n", "line 50\n", "boom: undefined: Handler"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "line 31\n") {
		t.Errorf("error carries more than the last 20 lines:\n%s", msg)
	}
	if !strings.Contains(log.String(), "line 1\n") {
		t.Errorf("the log writer did not get the whole output: %q", log.String())
	}
	root := h.buildRoot(tgt, v1)
	if _, err := os.Stat(filepath.Join(root, builtMarker)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed build left its marker: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "src")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed build left its tree: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "build.log")); !strings.Contains(string(b), "build failed") {
		t.Errorf("build.log does not say it failed:\n%s", b)
	}

	// Fixed: the next Prepare builds afresh.
	if err := h.d.Prepare(context.Background(), target(1), v1, io.Discard); err != nil {
		t.Fatal(err)
	}
	if n := h.src.count(v1.SHA); n != 2 {
		t.Errorf("%d fetches, want 2 (the failed build is not remembered)", n)
	}
}

// TestRolloutUnderLoad drives rollouts of a 4-instance environment the way
// the engine does (plan, then drain/install/check/admit per instance) while
// a client sends 200 requests a second through the proxy. SPEC §11: no
// request fails and successes are never more than 1 s apart.
// It runs SPEC §11's 20 back-to-back rollouts (SHIPBOT_LOCAL_ROLLOUTS
// changes the number).
func TestRolloutUnderLoad(t *testing.T) {
	h := newHarness(t, "", nil)
	tgt := target(4)
	h.prepare(tgt, v1, v2, v3)

	// Never deployed: 4 slots, nothing running, which the planner accepts.
	insts, err := h.d.Instances(context.Background(), tgt)
	if err != nil {
		t.Fatal(err)
	}
	want := []deploy.Instance{{ID: "staging-1", Zone: "local"}, {ID: "staging-2", Zone: "local"}, {ID: "staging-3", Zone: "local"}, {ID: "staging-4", Zone: "local"}}
	if !slices.Equal(insts, want) {
		t.Fatalf("fresh environment: %+v, want %+v", insts, want)
	}
	url := h.d.URL(repo, "staging")
	if code, body, err := get(url + "/"); err != nil || code != 503 || !strings.Contains(body, "no instance of acme/web staging is in rotation") {
		t.Fatalf("before any deploy: %d %q %v; want 503 saying why", code, body, err)
	}
	plan := h.rollout(tgt, v1)
	if len(plan.Batches) != 4 {
		t.Errorf("first deploy: %d batches, want 4 (canary 1, 25%%)", len(plan.Batches))
	}
	h.expectFleet(tgt, v1)
	expectVersion(t, url, "v1", 8)

	n := 20
	if s := os.Getenv("SHIPBOT_LOCAL_ROLLOUTS"); s != "" {
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("SHIPBOT_LOCAL_ROLLOUTS=%q", s)
		}
	}
	l := testenv.StartLoad(url+"/", 200)
	start := time.Now()
	final, version := v1, "v1"
	for i := range n {
		final, version = v2, "v2"
		if i%2 == 1 {
			final, version = v1, "v1"
		}
		if plan := h.rollout(tgt, final); len(plan.Batches) != 4 {
			t.Fatalf("rollout %d: %d batches, want 4", i+1, len(plan.Batches))
		}
	}
	t.Logf("%d back-to-back rollouts of 4 instances in %s", n, time.Since(start).Round(time.Millisecond))
	t.Logf("%s", &h.timing)

	// The unhealthy v3 never passes a check; putting the last release back
	// restores the instance, all under load.
	bad := deploy.Instance{ID: "staging-1"}
	ctx := context.Background()
	if err := h.d.Drain(ctx, tgt, bad); err != nil {
		t.Fatal(err)
	}
	if err := h.d.Install(ctx, tgt, bad, v3, io.Discard); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		err := h.d.Check(ctx, tgt, bad, "/healthz")
		if err == nil || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "staging-1") {
			t.Fatalf("check of v3: %v; want an error naming the instance and the 500", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	insts, _ = h.d.Instances(ctx, tgt)
	if insts[0].Release != v3.SHA || insts[0].Healthy || insts[0].InRotation {
		t.Errorf("instance on v3: %+v; want unhealthy, out of rotation", insts[0])
	}
	h.update(tgt, bad, final)
	res := l.Finish()
	checkLoad(t, res)
	h.expectFleet(tgt, final)
	expectVersion(t, url, version, 20)

	// state.json has every instance's release.
	var st stateFile
	b, err := os.ReadFile(filepath.Join(h.dir, "local", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Fleets) != 1 || len(st.Fleets[0].Slots) != 4 || st.Fleets[0].Slots[3].Release.SHA != final.SHA || st.Fleets[0].Slots[3].ID != "staging-4" {
		t.Errorf("state.json:\n%s", b)
	}

	// Fewer instances configured: the extra one is retired once the others serve.
	insts, err = h.d.Instances(ctx, target(3))
	if err != nil || len(insts) != 3 {
		t.Fatalf("after lowering to 3: %+v %v", insts, err)
	}
	f := h.d.fleets[fleetKey{Repo: repo, Env: "staging"}]
	f.mu.Lock()
	extra := f.slots["staging-4"]
	f.mu.Unlock()
	if extra != nil {
		t.Errorf("staging-4 still there after lowering the count to 3")
	}
	expectVersion(t, url, version, 6)
}

func TestSupervisorRestartsAKilledInstance(t *testing.T) {
	h := newHarness(t, "", nil)
	tgt := target(2)
	h.prepare(tgt, v1)
	h.rollout(tgt, v1)
	url := h.d.URL(repo, "staging")

	f := h.d.fleets[fleetKey{Repo: repo, Env: "staging"}]
	f.mu.Lock()
	s := f.slots["staging-1"]
	dead := s.proc
	f.mu.Unlock()

	l := testenv.StartLoad(url+"/", 200)
	time.Sleep(200 * time.Millisecond)
	if err := syscall.Kill(dead.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-dead.done
	deadline := time.Now().Add(10 * time.Second)
	for {
		insts, err := h.d.Instances(context.Background(), tgt)
		if err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		p := s.proc
		f.mu.Unlock()
		if p != dead && insts[0].Healthy && insts[0].InRotation && insts[0].Release == v1.SHA {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("killed instance not back in rotation after 10s: %+v", insts[0])
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	res := l.Finish()
	checkLoad(t, res)
	if res.Answers["sample-app v1"] != res.OK {
		t.Errorf("answers %v", res.Answers)
	}
	logs := h.logs.String()
	for _, want := range []string{"instance exited unexpectedly; restarting it", "instance restarted", "restarted instance back in rotation"} {
		if !strings.Contains(logs, want) {
			t.Errorf("driver log lacks %q", want)
		}
	}
}

// A 1-instance environment can only be updated by starting an extra
// instance first (SPEC §6.1); it keeps serving throughout.
func TestSurgeKeepsOneInstanceServing(t *testing.T) {
	h := newHarness(t, "", nil)
	tgt := target(1)
	h.prepare(tgt, v1, v2)
	h.rollout(tgt, v1)
	url := h.d.URL(repo, "staging")

	l := testenv.StartLoad(url+"/", 200)
	plan := h.rollout(tgt, v2) // surge, update staging-1, retire
	res := l.Finish()
	checkLoad(t, res)
	if len(plan.Batches) != 1 || plan.Batches[0].Surge != 1 {
		t.Errorf("plan %+v; want one batch with a surge", plan.Batches)
	}
	h.expectFleet(tgt, v2)
	expectVersion(t, url, "v2", 10)
	f := h.d.fleets[fleetKey{Repo: repo, Env: "staging"}]
	f.mu.Lock()
	n := len(f.slots)
	f.mu.Unlock()
	if n != 1 {
		t.Errorf("%d slots after retire, want 1", n)
	}
	// Retiring again is not an error; retiring a configured instance is.
	if err := h.d.Retire(context.Background(), tgt, deploy.Instance{ID: "staging-surge-1"}); err != nil {
		t.Errorf("second retire: %v", err)
	}
	if err := h.d.Retire(context.Background(), tgt, deploy.Instance{ID: "staging-1"}); err == nil {
		t.Error("retiring a configured instance succeeded")
	}
}

func TestPreview(t *testing.T) {
	h := newHarness(t, "", nil)
	pv := deploy.Preview{Repo: repo, Number: 42, App: sampleApp, Config: repoconfig.Preview{Driver: repoconfig.DriverLocal, Health: repoconfig.Health{Path: "/healthz", Interval: 100 * time.Millisecond, HealthyAfter: 2, Timeout: 2 * time.Second}}}
	h.prepare(target(1), v1, v2, v3)
	ctx := context.Background()

	url, err := h.d.EnsurePreview(ctx, pv, v1, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("preview URL %q", url)
	}
	expectVersion(t, url, "v1", 5)
	if code, body, _ := get(url + "/"); code != 200 || !strings.Contains(body, "instance pr-42\n") {
		t.Errorf("preview answers %d %q; want instance pr-42", code, body)
	}

	l := testenv.StartLoad(url+"/", 200)
	url2, err := h.d.EnsurePreview(ctx, pv, v2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if url2 != url {
		t.Errorf("preview URL changed on update: %s → %s", url, url2)
	}
	expectVersion(t, url, "v2", 5)
	// A broken release fails and leaves v2 serving.
	if _, err := h.d.EnsurePreview(ctx, pv, v3, io.Discard); err == nil || !strings.Contains(err.Error(), "pr-42") {
		t.Errorf("ensure v3: %v; want an error naming the instance", err)
	}
	res := l.Finish()
	checkLoad(t, res)
	expectVersion(t, url, "v2", 5)
	// The same release again is a no-op.
	if _, err := h.d.EnsurePreview(ctx, pv, v2, io.Discard); err != nil {
		t.Fatal(err)
	}
	if h.d.PreviewURL(repo, 42) != url {
		t.Errorf("PreviewURL = %q", h.d.PreviewURL(repo, 42))
	}

	if err := h.d.TeardownPreview(ctx, pv); err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(url + "/"); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("after teardown: %v; want connection refused", err)
	}
	if err := h.d.TeardownPreview(ctx, pv); err != nil {
		t.Errorf("second teardown: %v", err)
	}
	if h.d.PreviewURL(repo, 42) != "" {
		t.Error("PreviewURL still set after teardown")
	}
	b, _ := os.ReadFile(filepath.Join(h.dir, "local", "ports.json"))
	if strings.Contains(string(b), `"preview": 42`) {
		t.Errorf("ports.json still has the preview:\n%s", b)
	}
}

func TestRestoreAfterClose(t *testing.T) {
	dir := t.TempDir()
	src := newSource(t)
	h := newHarness(t, dir, src)
	tgt := target(2)
	h.prepare(tgt, v1, v2)
	h.rollout(tgt, v1)
	url := h.d.URL(repo, "staging")
	pv := deploy.Preview{Repo: repo, Number: 7, App: sampleApp, Config: repoconfig.Preview{Health: fastHealth}}
	purl, err := h.d.EnsurePreview(context.Background(), pv, v2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	h.close()
	if _, _, err := get(url + "/"); err == nil {
		t.Fatal("the environment still answers after Close")
	}

	h2 := newHarness(t, dir, src)
	if got := h2.d.URL(repo, "staging"); got != url {
		t.Fatalf("URL after restart %s, want %s", got, url)
	}
	insts, err := h2.d.Instances(context.Background(), tgt)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range insts {
		if in.Release != v1.SHA || in.Healthy || in.InRotation {
			t.Errorf("before Restore: %+v; want recorded release, not running", in)
		}
	}
	if err := h2.d.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	h2.expectFleet(tgt, v1)
	expectVersion(t, url, "v1", 6)
	expectVersion(t, purl, "v2", 3)
	if n := src.count(v1.SHA); n != 1 {
		t.Errorf("%d fetches of v1; the restart should reuse the build", n)
	}
	// Again: nothing to do.
	if err := h2.d.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestExtractRefusesUnsafeTarballs(t *testing.T) {
	type entry struct {
		name, link string
		typ        byte
	}
	cases := []struct {
		name    string
		entries []entry
		err     string
	}{
		{"dot-dot", []entry{{name: "top/", typ: tar.TypeDir}, {name: "top/../../evil", typ: tar.TypeReg}}, ".. in a path"},
		{"absolute", []entry{{name: "/etc/evil", typ: tar.TypeReg}}, "absolute"},
		{"two top-level directories", []entry{{name: "a/x", typ: tar.TypeReg}, {name: "b/y", typ: tar.TypeReg}}, "outside the top-level directory"},
		{"file at the top", []entry{{name: "README", typ: tar.TypeReg}}, "not under a top-level directory"},
		{"write through a symlink out of the tree", []entry{{name: "top/out", link: "/tmp", typ: tar.TypeSymlink}, {name: "top/out/evil", typ: tar.TypeReg}}, "path escapes"},
		{"empty", nil, "empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			gz := gzip.NewWriter(&buf)
			tw := tar.NewWriter(gz)
			for _, e := range c.entries {
				h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644}
				if e.typ == tar.TypeReg {
					h.Size = 2
				}
				if err := tw.WriteHeader(h); err != nil {
					t.Fatal(err)
				}
				if e.typ == tar.TypeReg {
					_, _ = tw.Write([]byte("x\n"))
				}
			}
			tw.Close()
			gz.Close()
			dst := t.TempDir()
			_, err := extract(&buf, dst)
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("err = %v, want one containing %q", err, c.err)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(dst), "evil")); err == nil {
				t.Fatal("a file was written outside the tree")
			}
		})
	}
}

func TestRunCommand(t *testing.T) {
	for run, want := range map[string]string{
		"./app":                   "exec ./app",
		"./app --port $PORT":      "exec ./app --port $PORT",
		"./app --port ${PORT}":    "exec ./app --port ${PORT}",
		"{ ./app; }":              "{ ./app; }",
		"exec ./app":              "exec ./app",
		"cd web && ./app":         "cd web && ./app",
		"FOO=1 ./app":             "FOO=1 ./app",
		"./migrate; ./app":        "./migrate; ./app",
		"  bin/server > out.log ": "exec bin/server > out.log",
	} {
		if got := runCommand(run); got != want {
			t.Errorf("runCommand(%q) = %q, want %q", run, got, want)
		}
	}
}

func TestChildEnvIsAnAllowList(t *testing.T) {
	t.Setenv("WEBHOOK_SECRET", "s3cret")
	t.Setenv("PRIVATE_KEY", "-----BEGIN")
	t.Setenv("REDIS_URL", "redis://bot")
	t.Setenv("SOMETHING_NEW", "the bot's own")
	t.Setenv("GOCACHE", "/tmp/gocache")
	t.Setenv("PORT", "3000")
	t.Setenv("HOME", "/home/bot")
	d := &Driver{opts: Options{Env: []string{"GOWORK=off", "LOG_FORMAT=text"}}}
	v := appVars{vars: map[string]string{"LOG_FORMAT": "json", "PORT": "1"}, secrets: map[string]string{"DATABASE_URL": "postgres://x"}}
	got := d.childEnv(v, "PORT=4000")
	want := []string{"PATH=" + os.Getenv("PATH"), "HOME=/home/bot", "GOWORK=off", "LOG_FORMAT=json", "DATABASE_URL=postgres://x", "PORT=4000"}
	// Later layers win in the place of the first: Options.Env < app < set.
	if !slices.Equal(got, want) {
		t.Errorf("child environment\n%q\nwant\n%q", got, want)
	}
}

func TestProxyPortIsStableAndMovesOnlyWhenTaken(t *testing.T) {
	dir := t.TempDir()
	logs := &testenv.Buffer{}
	open := func() *Driver {
		d, err := New(Options{DataDir: dir, Source: newSource(t).fetch, Logger: slog.New(slog.NewTextHandler(logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := open()
	url := d.URL(repo, "Staging")
	if url == "" || d.URL(repo, "staging") != url {
		t.Fatalf("URL %q, then %q for the same environment", url, d.URL(repo, "staging"))
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	d = open()
	if got := d.URL(repo, "staging"); got != url {
		t.Errorf("after restart %s, want %s", got, url)
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Someone else took the port meanwhile: another one, logged.
	ln, err := net.Listen("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d = open()
	defer d.Close(context.Background())
	moved := d.URL(repo, "staging")
	if moved == url || moved == "" {
		t.Errorf("URL %q while its port is taken", moved)
	}
	if !strings.Contains(logs.String(), "recorded proxy port is taken") {
		t.Errorf("the move was not logged:\n%s", logs.String())
	}
	b, _ := os.ReadFile(filepath.Join(dir, "local", "ports.json"))
	if !strings.Contains(string(b), strings.TrimPrefix(moved, "http://127.0.0.1:")) {
		t.Errorf("ports.json does not have the new port:\n%s", b)
	}
}

func TestPortBase(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	d, err := New(Options{DataDir: t.TempDir(), Source: newSource(t).fetch, PortBase: base, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	a, b := d.URL(repo, "a"), d.URL(repo, "b")
	pa, _ := strconv.Atoi(a[strings.LastIndex(a, ":")+1:])
	pb, _ := strconv.Atoi(b[strings.LastIndex(b, ":")+1:])
	if pa < base || pb <= pa {
		t.Errorf("ports %d, %d from base %d", pa, pb, base)
	}
}

// TestInstancesDieWithTheBot kills a bot (this test binary, re-run as a
// helper) with SIGKILL, so no Close runs, and checks its instance goes too.
func TestInstancesDieWithTheBot(t *testing.T) {
	if dir := os.Getenv("SHIPBOT_LOCAL_HELPER_DIR"); dir != "" {
		helperBot(dir)
		return
	}
	h := newHarness(t, "", nil)
	h.prepare(target(1), v1)
	h.close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestInstancesDieWithTheBot$")
	cmd.Env = append(os.Environ(), "SHIPBOT_LOCAL_HELPER_DIR="+h.dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "instance at ")
	if err != nil || !ok {
		t.Fatalf("helper said %q, %v", line, err)
	}
	expectVersion(t, "http://"+addr, "v1", 1)

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for deadline := time.Now().Add(3 * time.Second); ; {
		if _, _, err := get("http://" + addr + "/"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance at %s still answers 3s after its bot was killed", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func helperBot(dir string) {
	d, err := New(Options{DataDir: dir, Source: newSource(nil).fetch, Logger: slog.New(slog.DiscardHandler), Env: []string{"GOWORK=off"}})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	tgt := target(1)
	inst := deploy.Instance{ID: "staging-1"}
	if err := d.Install(context.Background(), tgt, inst, v1, io.Discard); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	f := d.fleets[fleetKey{Repo: repo, Env: "staging"}]
	f.mu.Lock()
	addr := f.slots["staging-1"].proc.backend.addr
	f.mu.Unlock()
	fmt.Printf("instance at %s\n", addr)
	select {} // until killed
}
