package secrets

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/shipbot/shipbot/internal/testenv"
	"github.com/shipbot/shipbot/internal/testenv/redistest"
)

// writerEnv makes the test binary a writer process for
// TestFileStoreProcesses: "DIR WRITER COUNT".
const writerEnv = "SHIPBOT_SECRETS_TEST_WRITER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(writerEnv); spec != "" {
		if err := writer(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func writer(spec string) error {
	f := strings.Fields(spec)
	w, _ := strconv.Atoi(f[1])
	n, _ := strconv.Atoi(f[2])
	s, err := Open(Options{DataDir: f[0], Key: testKey(1)})
	if err != nil {
		return err
	}
	for i := range n {
		if err := s.Set(ctx, ID{Repo: "octo-org/web", Env: "production", Name: fmt.Sprintf("P%d_%d", w, i)}, "v"); err != nil {
			return err
		}
	}
	return nil
}

// TestFileStoreProcesses: processes writing one DATA_DIR at once, as `bot
// secrets` runs do, lose no entry, while this process reads throughout.
func TestFileStoreProcesses(t *testing.T) {
	dir := t.TempDir()
	const procs, each = 6, 20
	var cmds []*exec.Cmd
	for w := range procs {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d %d", writerEnv, dir, w, each))
		out := &testenv.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := testenv.StartChild(cmd); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("writer %d: %s", w, out)
			}
		})
	}
	reader, err := Open(Options{DataDir: dir, Key: testKey(1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		for _, c := range cmds {
			if err := c.Wait(); err != nil {
				t.Errorf("writer: %v", err)
			}
		}
		close(done)
	}()
	for reading := true; reading; {
		select {
		case <-done:
			reading = false
		default:
		}
		// A reader never sees a half-written file.
		if _, err := reader.List(ctx, "octo-org/web", ""); err != nil {
			t.Fatalf("reading while writers write: %v", err)
		}
	}
	l, err := reader.List(ctx, "octo-org/web", "")
	if err != nil || len(l) != procs*each {
		t.Fatalf("List: %d entries, %v; want %d", len(l), err, procs*each)
	}
}

func TestFileStoreFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(Options{DataDir: dir, Key: testKey(1)})
	if err != nil {
		t.Fatal(err)
	}
	set(t, s, prodDB, "v")
	for _, name := range []string{fileName, lockName} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("DATA_DIR holds %v: a temporary file was left behind", entries)
	}
}

func TestFileStoreErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, fileName)
	s, err := Open(Options{DataDir: dir, Key: testKey(1)})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := path + " is not a secrets file (invalid character 'o' in literal null (expecting 'u')): restore it from a backup, or move it away and set the secrets again"
	if _, err := s.Secret(ctx, prodDB.Repo, prodDB.Env, prodDB.Name); err == nil || err.Error() != want {
		t.Fatalf("Secret of a corrupt file = %v, want %q", err, want)
	}
	if err := s.Set(ctx, prodDB, "v"); err == nil || err.Error() != want {
		t.Fatalf("Set over a corrupt file = %v, want %q (and the file left alone)", err, want)
	}
	if b, _ := os.ReadFile(path); string(b) != "not json" {
		t.Fatalf("a corrupt file was overwritten: %q", b)
	}

	if os.Geteuid() == 0 {
		return // root reads and writes anything
	}
	ro := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	s, err = Open(Options{DataDir: ro, Key: testKey(1)})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Set(ctx, prodDB, "v")
	if want := filepath.Join(ro, lockName) + " cannot be opened (permission denied): give the bot's user write access to DATA_DIR"; err == nil || err.Error() != want {
		t.Fatalf("Set in a read-only DATA_DIR = %v, want %q", err, want)
	}
}

func TestRedisDown(t *testing.T) {
	target := redistest.Real(t)
	s, err := Open(Options{Redis: target.Client(t), Prefix: "shipbot", Key: testKey(1)})
	if err != nil {
		t.Fatal(err)
	}
	set(t, s, prodDB, "v")
	target.Outage(t)
	_, err = s.Secret(ctx, prodDB.Repo, prodDB.Env, prodDB.Name)
	if err == nil || !strings.HasPrefix(err.Error(), "secrets cannot be read in Redis at ") || !strings.HasSuffix(err.Error(), "check that Redis is up and REDIS_URL points at it") {
		t.Fatalf("Secret with Redis down = %v", err)
	}
	if err := s.Set(ctx, prodDB, "v"); err == nil || !strings.HasPrefix(err.Error(), "secrets cannot be stored in Redis") {
		t.Fatalf("Set with Redis down = %v", err)
	}
}
