// Package testenv finds or starts what the tests depend on outside Go: a real
// redis-server, GitHub's npm packages (REST and webhook descriptions, example
// payloads) and, later, moto. A missing dependency skips the test with the
// reason on a developer's machine and fails it when CI is set, so CI can never
// go green by skipping.
package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Missing skips the test, or fails it when the CI environment variable is set.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set, so a missing test dependency is a failure; .ci/run should have installed it)", msg)
	}
	t.Skipf("%s; skipping (install it, or run `make test`, which does)", msg)
}

// RepoRoot is the directory holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testenv: no go.mod above the working directory")
		}
		dir = parent
	}
}

// NodeModule returns the directory of an npm package installed from the
// repository's package.json (node_modules at the repository root).
func NodeModule(t testing.TB, name string) string {
	t.Helper()
	dir := filepath.Join(RepoRoot(t), "node_modules", filepath.FromSlash(name))
	if _, err := os.Stat(filepath.Join(dir, "package.json")); err != nil {
		Missing(t, "npm package %s is not installed (run `npm ci` in the repository root)", name)
	}
	return dir
}

// FreePort asks the kernel for a free loopback TCP port.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Redis is a redis-server child process owned by one test.
type Redis struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
	// exited is closed when cmd has exited (one goroutine waits for it).
	exited chan struct{}
	// tls, when set, makes the server speak only TLS (StartRedisTLS).
	tls *redisTLS
}

// StartRedis starts a real redis-server on a free loopback port with its own
// temporary directory, append-only file and fsync on every write (so that
// what was acknowledged survives a kill), and stops it when the test ends.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	return startRedis(t, nil)
}

func startRedis(t testing.TB, tls *redisTLS) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		Missing(t, "redis-server is not on PATH (Debian package redis-server)")
	}
	r := &Redis{t: t, bin: bin, dir: t.TempDir(), tls: tls}
	t.Cleanup(func() { r.Kill() })
	// A port another test's server took in the meantime makes this one
	// exit: try again on another port.
	var err2 error
	for attempt := 0; attempt < 3; attempt++ {
		r.port = FreePort(t)
		if err2 = r.start(); err2 == nil {
			return r
		}
	}
	t.Fatalf("testenv: %v", err2)
	return nil
}

// URL is the redis:// URL of the server (rediss:// when it speaks TLS).
func (r *Redis) URL() string {
	if r.tls != nil {
		return fmt.Sprintf("rediss://127.0.0.1:%d/0", r.port)
	}
	return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port)
}

// Addr is host:port of the server.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// Start (re)starts the server on the same port and data directory.
func (r *Redis) Start() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatalf("testenv: %v", err)
	}
}

// start starts the server and waits until it answers PING on its port from
// a listener of its own (testenv.ListensOn: an answer from another test's
// Redis on the same port does not count).
func (r *Redis) start() error {
	if r.cmd != nil {
		return fmt.Errorf("redis-server already running")
	}
	args := []string{"--port", strconv.Itoa(r.port)}
	if r.tls != nil {
		args = []string{"--port", "0", "--tls-port", strconv.Itoa(r.port),
			"--tls-cert-file", r.tls.cert, "--tls-key-file", r.tls.key, "--tls-ca-cert-file", r.tls.ca,
			"--tls-auth-clients", "no"}
	}
	cmd := exec.Command(r.bin, append(args, "--bind", "127.0.0.1",
		"--dir", r.dir, "--appendonly", "yes", "--appendfsync", "always",
		"--save", "", "--daemonize", "no", "--protected-mode", "no")...)
	logf, err := os.Create(filepath.Join(r.dir, "redis.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := StartChild(cmd); err != nil {
		return fmt.Errorf("start redis-server: %v", err)
	}
	r.cmd = cmd
	exited := make(chan struct{})
	r.exited = exited
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			r.cmd, r.exited = nil, nil
			b, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
			return fmt.Errorf("redis-server exited at start on port %d:\n%s", r.port, b)
		default:
		}
		if pingRedis(r.Addr(), r.tls) && ListensOn(cmd.Process.Pid, r.port) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
	r.Kill()
	return fmt.Errorf("redis-server did not answer PING on port %d within 10s:\n%s", r.port, b)
}

// Kill stops the server with SIGKILL, as a crash would; acknowledged writes
// survive because of appendfsync always.
func (r *Redis) Kill() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.exited
	r.cmd, r.exited = nil, nil
}

// Restart kills the server and starts it again on the same port and data.
func (r *Redis) Restart() {
	r.t.Helper()
	r.Kill()
	r.Start()
}

func pingRedis(addr string, tls *redisTLS) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	if tls != nil {
		c = tls.client(c)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "+PONG")
}
