package main

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/testenv"
)

// TestRedissURL: managed Redis services speak TLS only, at rediss:// URLs.
// The real binary against a TLS-only redis-server: without the server's CA
// it refuses to start with one line naming REDIS_URL and SSL_CERT_FILE;
// trusting the CA (SSL_CERT_FILE, Go's standard way on Linux) it is ready
// and queues a signed delivery, which Enqueue acknowledges only once Redis
// has stored it.
func TestRedissURL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the bot")
	}
	t.Parallel()
	bin := botBinary(t)
	r := testenv.StartRedisTLS(t)
	if !strings.HasPrefix(r.URL(), "rediss://") {
		t.Fatalf("URL %s, want rediss://", r.URL())
	}
	env := map[string]string{
		"PORT": strconv.Itoa(testenv.FreePort(t)), "DATA_DIR": t.TempDir(), "REDIS_URL": r.URL(),
		"APP_ID": "1", "PRIVATE_KEY": testPEM(t), "WEBHOOK_SECRET": secret,
		"GITHUB_API_URL": "http://127.0.0.1:1", "LOG_LEVEL": "debug",
	}

	t.Run("untrusted certificate", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "serve")
		cmd.Dir = t.TempDir()
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
			// A bundle without the test CA: the machine's own trust store
			// may be anything, so the test chooses.
			"SSL_CERT_FILE=" + filepath.Join(t.TempDir(), "none.pem")}
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("bot started against a Redis whose certificate it cannot verify:\n%s", out)
		}
		last := lastLine(string(out))
		for _, want := range []string{"REDIS_URL", "certificate", "SSL_CERT_FILE"} {
			if !strings.Contains(last, want) {
				t.Errorf("last line does not name %q: %s", want, last)
			}
		}
	})

	t.Run("trusted", func(t *testing.T) {
		trusted := map[string]string{"SSL_CERT_FILE": r.CAFile()}
		for k, v := range env {
			trusted[k] = v
		}
		p := startBotProcess(t, bin, trusted)
		base := "http://127.0.0.1:" + trusted["PORT"]
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/readyz %d over rediss://\n%s", resp.StatusCode, p.logs)
		}
		body, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "fixtures", "webhooks", "push.json"))
		if err != nil {
			t.Fatal(err)
		}
		code, status, answer, err := deliver(context.Background(), base+"/webhooks", "push", "rediss-1", []byte(secret), 1, body)
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusAccepted {
			t.Fatalf("delivery: %s %s\n%s", status, answer, p.logs)
		}
		// The same delivery again is a duplicate: the first was stored.
		code, status, answer, err = deliver(context.Background(), base+"/webhooks", "push", "rediss-1", []byte(secret), 1, body)
		if err != nil || code != http.StatusOK {
			t.Fatalf("second delivery: %s %s %v", status, answer, err)
		}
	})
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
