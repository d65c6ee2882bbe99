package local

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
)

// TestKeeperReachesAnyLiveBot: several bots share a DATA_DIR and its
// keeper. When the bot at bot.sock was killed (its socket file left
// behind, nobody listening), the keeper reaches a live bot on its own
// socket, and removes the sockets of bots that are gone.
func TestKeeperReachesAnyLiveBot(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "local"), 0o700); err != nil {
		t.Fatal(err)
	}
	// Dead bots: bound, then closed without unlinking, as after SIGKILL.
	for _, p := range []string{botSock(dir), ownBotSock(dir, 1, 1)} {
		ln, err := net.Listen("unix", p)
		if err != nil {
			t.Fatal(err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close()
	}
	ln, err := net.Listen("unix", ownBotSock(dir, 2, 1))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "bot 2") })}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })

	resp, err := botClient(dir).Post("http://bot/tarball", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("the keeper reaches no bot: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "bot 2" {
		t.Errorf("the keeper reached %q, want the live bot 2", body)
	}
	if _, err := os.Stat(ownBotSock(dir, 1, 1)); !os.IsNotExist(err) {
		t.Errorf("the dead bot 1's socket is still there (%v)", err)
	}
}

// keepersIn lists the live keeper processes serving dir.
func keepersIn(dir string) []int {
	var out []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) < 4 || args[1] != "keeper" || !slices.Contains(args, dir) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if st, err := os.ReadFile(filepath.Join(filepath.Dir(p), "stat")); err == nil {
			if f := strings.Fields(string(st)); len(f) > 2 && f[2] == "Z" {
				continue
			}
		}
		out = append(out, pid)
	}
	return out
}

// TestBotsStartingTogetherShareOneKeeper: two bots (drivers) starting at
// once on one DATA_DIR, and both replacing the keeper when it was killed,
// end with one keeper each time, and the death is told of once (one audit
// entry, not one per bot).
func TestBotsStartingTogetherShareOneKeeper(t *testing.T) {
	dir := t.TempDir()
	stopKeeper(t, dir)
	var lost atomic.Int32 // the keeper's deaths told of, by both bots
	open := func() (*Driver, error) {
		return New(Options{
			DataDir: dir,
			Source: func(context.Context, deploy.Release) (io.ReadCloser, error) {
				return nil, errors.New("no sources here")
			},
			Keeper: &Keeper{Command: []string{os.Args[0], "keeper"},
				Lost: func(context.Context, int, error) { lost.Add(1) }},
		})
	}
	drivers := make([]*Driver, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range drivers {
		wg.Add(1)
		go func() { defer wg.Done(); drivers[i], errs[i] = open() }()
	}
	wg.Wait()
	// At the end, after the drivers (which would start keepers again):
	// every keeper of dir, should the test fail with several.
	t.Cleanup(func() {
		for _, pid := range keepersIn(dir) {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	})
	for _, d := range drivers {
		if d != nil {
			t.Cleanup(func() { _ = d.Close(context.Background()) })
		}
	}
	for i := range drivers {
		if errs[i] != nil {
			t.Fatalf("bot %d: %v", i, errs[i])
		}
	}
	// The keeper a bot started after another's answered finds that one
	// serving once it has the start lock, and exits.
	oneKeeper := func(what string, not int) int {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			k := keepersIn(dir)
			if len(k) == 1 && k[0] != not && keeperOf(dir) == k[0] {
				return k[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("keepers %s: %v (keeper.pid %d), want one", what, k, keeperOf(dir))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	old := oneKeeper("after two bots started together", 0)

	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	now := oneKeeper("after both bots replaced the killed one", old)
	time.Sleep(time.Second) // a second keeper started late would show now
	if k := keepersIn(dir); len(k) != 1 || k[0] != now {
		t.Errorf("keepers a second after the replacement: %v, want %d alone", k, now)
	}
	for deadline := time.Now().Add(10 * time.Second); lost.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a second report would come now
	if n := lost.Load(); n != 1 {
		t.Errorf("the keeper's death was told of %d times by the two bots, want once", n)
	}
	for i, d := range drivers {
		if d.Runs("octo/web", "staging") {
			t.Errorf("bot %d: the new keeper runs an environment nobody deployed", i)
		}
	}
}
