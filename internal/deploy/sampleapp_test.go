package deploy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shipbot/shipbot/fixtures"
	"github.com/shipbot/shipbot/internal/testenv"
)

// The sample app (fixtures/sample-app) is shipped as a tree of its own
// (fixtures.SampleApp); this test builds releases of it the way the local
// driver does and checks the behaviour the deploy tests rely on.
func TestSampleApp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the sample app")
	}
	// A healthy release and a broken one, built side by side.
	src, broken := t.TempDir(), t.TempDir()
	if err := fixtures.WriteSampleApp(src, "v1", true); err != nil {
		t.Fatal(err)
	}
	if err := fixtures.WriteSampleApp(broken, "v2", false); err != nil {
		t.Fatal(err)
	}
	var good, bad string
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); good = buildSampleApp(t, src) }()
	go func() { defer wg.Done(); bad = buildSampleApp(t, broken) }()
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	t.Run("answers and reports health", func(t *testing.T) {
		app := startSampleApp(t, good, "INSTANCE_ID=web-1", "RELEASE=abc1234")
		expect(t, app.url+"/", 200, "sample-app v1\ninstance web-1\nrelease abc1234\n")
		expect(t, app.url+"/healthz", 200, "ok")
		expect(t, app.url+"/slow?ms=20", 200, "slept 20 ms\n")
		expect(t, app.url+"/slow?ms=soon", 400, "ms must be a number of milliseconds\n")
		expect(t, app.url+"/nope", 404, "404 page not found\n")
	})

	t.Run("without instance or release it says only its version", func(t *testing.T) {
		app := startSampleApp(t, good)
		expect(t, app.url+"/", 200, "sample-app v1\n")
	})

	t.Run("a release with Healthy false fails its health check", func(t *testing.T) {
		app := startSampleApp(t, bad)
		expect(t, app.url+"/", 200, "sample-app v2\n")
		expect(t, app.url+"/healthz", 500, "unhealthy\n")
	})

	t.Run("UNHEALTHY_AFTER turns it unhealthy", func(t *testing.T) {
		app := startSampleApp(t, good, "UNHEALTHY_AFTER=400ms")
		expect(t, app.url+"/healthz", 200, "ok")
		time.Sleep(time.Until(app.started.Add(500 * time.Millisecond)))
		expect(t, app.url+"/healthz", 500, "unhealthy\n")
	})

	t.Run("SIGTERM lets an in-flight request finish", func(t *testing.T) {
		app := startSampleApp(t, good)
		type result struct {
			code int
			body string
			err  error
		}
		done := make(chan result, 1)
		sent := time.Now()
		go func() {
			code, body, err := get(app.url + "/slow?ms=300")
			done <- result{code, body, err}
		}()
		// Signal once the request is surely being served (it sleeps 300 ms).
		time.Sleep(100 * time.Millisecond)
		if err := app.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if r.err != nil || r.code != 200 || r.body != "slept 300 ms\n" {
			t.Fatalf("in-flight request during shutdown: %d %q %v; want 200", r.code, r.body, r.err)
		}
		if time.Since(sent) < 300*time.Millisecond {
			t.Fatalf("answered after %s, before its 300 ms sleep", time.Since(sent))
		}
		if err := app.wait(); err != nil {
			t.Fatalf("exit after SIGTERM: %v; stderr:\n%s", err, app.stderr.String())
		}
		if _, _, err := get(app.url + "/healthz"); err == nil {
			t.Fatal("still answering after shutdown")
		}
		log := app.stderr.String()
		if !strings.Contains(log, "sample-app v1 listening on 127.0.0.1:") || !strings.Contains(log, "sample-app v1 stopped after") ||
			strings.Count(log, "\n") != 2 {
			t.Fatalf("want one start line and one stop line on stderr, got:\n%s", log)
		}
	})

	t.Run("without PORT it says so", func(t *testing.T) {
		cmd := exec.Command(good)
		cmd.Env = withoutPort(os.Environ())
		outb, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(outb), "PORT is not set") {
			t.Fatalf("got %v, %q", err, outb)
		}
	})
}

type sampleApp struct {
	cmd     *exec.Cmd
	url     string
	started time.Time
	stderr  *testenv.Buffer
	waitErr chan error
}

func (a *sampleApp) wait() error {
	select {
	case err := <-a.waitErr:
		a.waitErr <- err
		return err
	case <-time.After(5 * time.Second):
		return fmt.Errorf("still running 5s after SIGTERM")
	}
}

func buildSampleApp(t *testing.T, dir string) string {
	bin := filepath.Join(t.TempDir(), "app")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("go build in %s: %v\n%s", dir, err, out)
	}
	return bin
}

// startSampleApp runs bin on a free port and waits until it answers; the
// process is stopped when the test ends.
func startSampleApp(t *testing.T, bin string, env ...string) *sampleApp {
	t.Helper()
	port := testenv.FreePort(t)
	app := &sampleApp{
		cmd:     exec.Command(bin),
		url:     "http://127.0.0.1:" + strconv.Itoa(port),
		stderr:  &testenv.Buffer{},
		waitErr: make(chan error, 1),
	}
	app.cmd.Env = append(withoutPort(os.Environ()), append(env, "PORT="+strconv.Itoa(port))...)
	app.cmd.Stderr = app.stderr
	app.started = time.Now()
	if err := app.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { app.waitErr <- app.cmd.Wait() }()
	t.Cleanup(func() {
		_ = app.cmd.Process.Kill()
		<-app.waitErr
	})
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, _, err := get(app.url + "/"); err == nil {
			return app
		}
		if time.Now().After(deadline) {
			t.Fatalf("sample app not answering on %s after 5s; stderr:\n%s", app.url, app.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var sampleClient = &http.Client{Timeout: 5 * time.Second}

func get(url string) (int, string, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := sampleClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func expect(t *testing.T, url string, code int, body string) {
	t.Helper()
	gotCode, gotBody, err := get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if gotCode != code || gotBody != body {
		t.Errorf("GET %s: %d %q, want %d %q", url, gotCode, gotBody, code, body)
	}
}

func withoutPort(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "PORT=") && !strings.HasPrefix(kv, "UNHEALTHY_AFTER=") &&
			!strings.HasPrefix(kv, "INSTANCE_ID=") && !strings.HasPrefix(kv, "RELEASE=") {
			out = append(out, kv)
		}
	}
	return out
}
