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
		build := exec.Command("go", "build", "-o", bin, "./cmd/bot")
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
