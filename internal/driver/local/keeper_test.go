package local

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/testenv"
)

// TestMain runs this test binary as a keeper when the driver starts one
// (Keeper.Command below), and as the tests otherwise.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "keeper" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		err := RunKeeper(ctx, os.Args[2:], os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// keeperOf is the pid the keeper in dir wrote, 0 when none.
func keeperOf(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "local", "keeper.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// stopKeeper stops the keeper in dir when the test ends, before dir goes:
// it outlives every driver by design.
func stopKeeper(t *testing.T, dir string) {
	t.Cleanup(func() {
		pid := keeperOf(dir)
		if pid == 0 {
			return
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(30 * time.Second)
		for syscall.Kill(pid, 0) == nil && keeperOf(dir) == pid {
			if time.Now().After(deadline) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // its last instance reaped
	})
}

// TestKeeperOutlivesTheDriver: with a keeper, closing the driver leaves the
// environment serving under load; a new driver adopts the keeper, sees the
// instances and rolls a release out through it; a keeper killed is
// replaced by the driver, which restores the environment and says so.
func TestKeeperOutlivesTheDriver(t *testing.T) {
	dir := t.TempDir()
	stopKeeper(t, dir)
	lost := make(chan int, 4)
	withKeeper := func(o *Options) {
		o.Keeper = &Keeper{
			Command: []string{os.Args[0], "keeper"},
			Lost:    func(_ context.Context, restored int, _ error) { lost <- restored },
		}
	}
	src := newSource(t)
	tgt := target(2)
	h := newHarnessWith(t, dir, src, withKeeper)
	h.rollout(tgt, v1)
	h.expectFleet(tgt, v1)
	url := h.d.URL(repo, "staging")
	expectVersion(t, url, "v1", 5)

	load := testenv.StartLoad(url+"/", 100)
	h.close()
	time.Sleep(300 * time.Millisecond)
	h2 := newHarnessWith(t, dir, src, withKeeper)
	if got := h2.d.URL(repo, "staging"); got != url {
		t.Errorf("the adopted keeper's URL is %s, want %s", got, url)
	}
	h2.expectFleet(tgt, v1)
	h2.rollout(tgt, v2)
	checkLoad(t, load.Finish())
	h2.expectFleet(tgt, v2)

	pid := keeperOf(dir)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	select {
	case n := <-lost:
		if n != 1 {
			t.Errorf("the new keeper restored %d environments, want 1", n)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the driver did not replace the killed keeper within 60s\n%s", h2.logs)
	}
	t.Logf("environment restored %s after the keeper was killed", time.Since(killed).Round(time.Millisecond))
	if keeperOf(dir) == pid {
		t.Errorf("keeper.pid still names the killed keeper %d", pid)
	}
	expectVersion(t, url, "v2", 5)
	h2.expectFleet(tgt, v2)
}
