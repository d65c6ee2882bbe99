package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/testenv"
)

// binDir holds the bot binary the real-process tests share; TestMain
// removes it.
var binDir string

func TestMain(m *testing.M) {
	// The bots that tests run inside this test binary keep their local
	// driver in process: a keeper would be this binary, outliving the
	// test. The real-binary tests run keepers and stop them (keeper_test.go).
	driverInProcess = true
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	binOnce sync.Once
	binPath string
	binErr  string
)

// botBuild is the command that builds the bot into bin, with extra go
// build flags: with the race detector when the tests have it, so that a
// fresh machine compiles the dependencies once, not once per mode, and the
// bot's own data races fail the tests that run it.
func botBuild(bin string, flags ...string) *exec.Cmd {
	args := []string{"build", "-o", bin}
	if raceBuild {
		args = append(args, "-race")
	}
	return exec.Command("go", append(append(args, flags...), "./cmd/bot")...)
}

// botBinary is the bot built from this tree, once per test binary: the
// tests that run it as a real process (crash, restart, TLS) share it.
func botBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		start := time.Now()
		dir, err := os.MkdirTemp("", "shipbot-bin-")
		if err != nil {
			binErr = err.Error()
			return
		}
		binDir = dir
		bin := filepath.Join(dir, "bot")
		build := botBuild(bin)
		build.Dir = testenv.RepoRoot(t)
		if out, err := build.CombinedOutput(); err != nil {
			binErr = "go build: " + err.Error() + "\n" + string(out)
			return
		}
		binPath = bin
		t.Logf("built the bot in %s", time.Since(start).Round(time.Millisecond))
	})
	if binErr != "" {
		t.Fatal(binErr)
	}
	return binPath
}
