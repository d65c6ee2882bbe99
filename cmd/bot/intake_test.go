package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shipbot/shipbot/fixtures"
	"github.com/shipbot/shipbot/internal/testenv"
	"github.com/shipbot/shipbot/webhooks"
)

const secret = "it's a secret to everybody"

// syncBuffer collects the bot's log lines from its goroutines.
type syncBuffer struct{ testenv.Buffer }

// lines returns the log lines that contain every one of subs.
func (s *syncBuffer) lines(subs ...string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		for _, sub := range subs {
			if !strings.Contains(sc.Text(), sub) {
				continue next
			}
		}
		out = append(out, sc.Text())
	}
	return out
}

// runningBot is a `bot serve` running in this test process.
type runningBot struct {
	url    string
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

func testPEM(t testing.TB) string {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
}

// startBot runs `bot serve` with env on a free port and waits for /healthz.
func startBot(t testing.TB, env map[string]string, args ...string) *runningBot {
	t.Helper()
	return startBotWith(t, env, nil, args...)
}

// startBotWith is startBot with build options (a test clock).
func startBotWith(t testing.TB, env map[string]string, opts []buildOption, args ...string) *runningBot {
	t.Helper()
	full := map[string]string{
		"PORT": strconv.Itoa(testenv.FreePort(t)), "DATA_DIR": t.TempDir(), "APP_ID": "1", "PRIVATE_KEY": testPEM(t),
		"WEBHOOK_SECRET": secret, "LOG_LEVEL": "debug", "GITHUB_API_URL": "http://127.0.0.1:1",
	}
	for k, v := range env {
		full[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &runningBot{url: "http://127.0.0.1:" + full["PORT"], logs: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() {
		getenv := func(k string) string { return full[k] }
		if len(opts) == 0 {
			b.done <- run(ctx, append([]string{"serve"}, args...), getenv, b.logs, b.logs)
			return
		}
		b.done <- serve(ctx, args, getenv, b.logs, b.logs, opts...) // what run calls, with the options
	}()
	t.Cleanup(func() { b.stop(t) })
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-b.done:
			b.done <- err
			if _, fixed := env["PORT"]; !fixed && err != nil && strings.Contains(err.Error(), "address already in use") {
				// Another test's server took the free port first: this
				// bot's cleanup has nothing to report.
				<-b.done
				b.done <- nil
				return startBotWith(t, env, opts, args...)
			}
			t.Fatalf("bot exited during start-up: %v\n%s", err, b.logs)
		default:
		}
		resp, err := http.Get(b.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			// Only this process's listener counts: another test's server
			// may hold the port for a moment.
			if port, _ := strconv.Atoi(full["PORT"]); resp.StatusCode == 200 && testenv.ListensOn(os.Getpid(), port) {
				return b
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("bot did not answer /healthz within 60s\n%s", b.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *runningBot) stop(t testing.TB) {
	b.cancel()
	select {
	case err := <-b.done:
		b.done <- err
		if err != nil {
			t.Errorf("bot returned an error on shutdown: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Errorf("bot did not shut down within 40s")
	}
}

type delivery struct {
	event, id   string
	body        []byte
	contentType string
	signature   string // default: a correct signature
	noSignature bool
}

func (b *runningBot) post(t testing.TB, d delivery) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.url+"/webhooks", bytes.NewReader(d.body))
	if err != nil {
		t.Fatal(err)
	}
	ct := d.contentType
	if ct == "" {
		ct = "application/json"
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("X-GitHub-Event", d.event)
	req.Header.Set("X-GitHub-Delivery", d.id)
	switch {
	case d.noSignature:
	case d.signature != "":
		req.Header.Set("X-Hub-Signature-256", d.signature)
	default:
		req.Header.Set("X-Hub-Signature-256", webhooks.Sign([]byte(secret), d.body))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metric returns the value of one sample from /metrics (0 when absent).
func (b *runningBot) metric(t *testing.T, sample string) float64 {
	t.Helper()
	resp, err := http.Get(b.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return 0
}

func (b *runningBot) get(t *testing.T, path string) int {
	t.Helper()
	resp, err := http.Get(b.url + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// eventually waits for cond, failing with msg after 10s.
func eventually(t *testing.T, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stores runs f against a bot on real Redis and a bot on the embedded store.
func stores(t *testing.T, f func(t *testing.T, b *runningBot, redis *testenv.Redis)) {
	t.Run("redis", func(t *testing.T) {
		r := testenv.StartRedis(t)
		f(t, startBot(t, map[string]string{"REDIS_URL": r.URL()}), r)
	})
	t.Run("embedded", func(t *testing.T) {
		f(t, startBot(t, nil), nil)
	})
}

func TestIntake(t *testing.T) {
	stores(t, func(t *testing.T, b *runningBot, _ *testenv.Redis) {
		push := tagPush()
		cases := []struct {
			name       string
			d          delivery
			status     int
			bodyHas    string
			queued     bool
			logOutcome string
		}{
			{"signed push is queued", delivery{event: "push", id: "d-push", body: push}, 202, "queued", true, "delivery queued"},
			{"missing signature", delivery{event: "push", id: "d-nosig", body: push, noSignature: true}, 401, "X-Hub-Signature-256", false, "delivery rejected"},
			{"wrong signature", delivery{event: "push", id: "d-badsig", body: push,
				signature: webhooks.Sign([]byte("another secret"), push)}, 401, "WEBHOOK_SECRET", false, "delivery rejected"},
			{"malformed signature", delivery{event: "push", id: "d-malsig", body: push, signature: "sha256=zz"}, 401, "does not match", false, "delivery rejected"},
			{"malformed JSON", delivery{event: "push", id: "d-badjson", body: []byte(`{"ref": "refs/heads/main",`)}, 400, "not valid JSON", false, "delivery rejected"},
			// A tag push: acted on without a GitHub behind the bot.
			{"form-encoded", delivery{event: "push", id: "d-form", contentType: "application/x-www-form-urlencoded",
				body: []byte("payload=" + url.QueryEscape(string(tagPush())))}, 202, "queued", true, "delivery queued"},
			{"ping", delivery{event: "ping", id: "d-ping", body: fixtures.Webhook("ping")}, 200, "pong", false, "ping answered"},
			{"event nobody handles", delivery{event: "star", id: "d-star", body: []byte(`{"action":"created"}`)}, 202, "ignored", false, "delivery ignored"},
			{"action nobody handles", delivery{event: "pull_request", id: "d-labeled", body: bytes.Replace(fixtures.Webhook("pull_request.opened"),
				[]byte(`"action": "opened"`), []byte(`"action": "labeled"`), 1)}, 202, "ignored", false, "delivery ignored"},
			{"missing event header", delivery{event: "", id: "d-noevent", body: push}, 400, "X-GitHub-Event", false, "delivery rejected"},
			{"missing delivery header", delivery{event: "push", id: "", body: push}, 400, "X-GitHub-Delivery", false, "delivery rejected"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				status, body := b.post(t, tc.d)
				if status != tc.status || !strings.Contains(body, tc.bodyHas) {
					t.Fatalf("got %d %q, want %d containing %q", status, body, tc.status, tc.bodyHas)
				}
				if tc.d.id != "" && len(b.logs.lines(`"delivery":"`+tc.d.id+`"`, tc.logOutcome)) != 1 {
					t.Fatalf("want one log line %q with the delivery id; logs:\n%s", tc.logOutcome, b.logs)
				}
				if tc.queued {
					eventually(t, "queued job was not processed", func() bool {
						return len(b.logs.lines(`"delivery":"`+tc.d.id+`"`, `"msg":"job done"`)) == 1
					})
				}
			})
		}
		// Nothing that was refused reached a worker.
		time.Sleep(200 * time.Millisecond)
		for _, tc := range cases {
			if !tc.queued && tc.d.id != "" && len(b.logs.lines(`"delivery":"`+tc.d.id+`"`, `"job"`)) != 0 {
				t.Errorf("%s: refused delivery reached the queue:\n%s", tc.name, b.logs.lines(`"delivery":"`+tc.d.id+`"`))
			}
		}
		if got := b.metric(t, `shipbot_jobs_total{event="push",result="ok"}`); got != 2 {
			t.Errorf("push jobs done = %v, want 2", got)
		}
	})
}

func TestIntakeDuplicateDeliveryProcessedOnce(t *testing.T) {
	stores(t, func(t *testing.T, b *runningBot, _ *testenv.Redis) {
		d := delivery{event: "push", id: "dup-1", body: tagPush()}
		if status, body := b.post(t, d); status != 202 {
			t.Fatalf("first: %d %s", status, body)
		}
		status, body := b.post(t, d)
		if status != 200 || !strings.Contains(body, "duplicate") {
			t.Fatalf("second: %d %s, want 200 duplicate", status, body)
		}
		eventually(t, "job not processed", func() bool {
			return len(b.logs.lines(`"delivery":"dup-1"`, `"msg":"job done"`)) > 0
		})
		time.Sleep(300 * time.Millisecond)
		if n := len(b.logs.lines(`"delivery":"dup-1"`, `"msg":"job done"`)); n != 1 {
			t.Fatalf("processed %d times, want once", n)
		}
	})
}

func TestIntakeBodyLimit(t *testing.T) {
	t.Parallel()
	stores(t, func(t *testing.T, b *runningBot, _ *testenv.Redis) {
		big := bytes.Repeat([]byte(" "), webhooks.MaxBody+1)
		t.Run("content-length over the limit", func(t *testing.T) {
			status, body := b.post(t, delivery{event: "push", id: "big-1", body: big, signature: webhooks.Sign([]byte(secret), big)})
			if status != http.StatusRequestEntityTooLarge {
				t.Fatalf("%d %s", status, body)
			}
		})
		t.Run("chunked over the limit", func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, b.url+"/webhooks", io.MultiReader(bytes.NewReader(big)))
			req.ContentLength = -1 // chunked: the limit must hold without a Content-Length
			req.Header.Set("X-GitHub-Event", "push")
			req.Header.Set("X-GitHub-Delivery", "big-2")
			req.Header.Set("X-Hub-Signature-256", webhooks.Sign([]byte(secret), big))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d", resp.StatusCode)
			}
		})
	})
}

func TestStoreDownIs503(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	b := startBot(t, map[string]string{"REDIS_URL": r.URL()})
	if got := b.get(t, "/readyz"); got != 200 {
		t.Fatalf("/readyz = %d with Redis up", got)
	}
	r.Kill()
	status, body := b.post(t, delivery{event: "push", id: "down-1", body: tagPush()})
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "redeliver") {
		t.Fatalf("with Redis down: %d %s, want 503", status, body)
	}
	if got := b.get(t, "/readyz"); got != 503 {
		t.Fatalf("/readyz = %d with Redis down, want 503", got)
	}
	if got := b.get(t, "/healthz"); got != 200 {
		t.Fatalf("/healthz = %d with Redis down: the process is alive, want 200", got)
	}
	r.Start()
	eventually(t, "/readyz did not recover after Redis came back", func() bool { return b.get(t, "/readyz") == 200 })
	// GitHub would not retry, but a redelivery of the same id now succeeds:
	// the failed attempt stored nothing.
	if status, body := b.post(t, delivery{event: "push", id: "down-1", body: tagPush()}); status != 202 {
		t.Fatalf("after recovery: %d %s", status, body)
	}
	eventually(t, "job not processed after recovery", func() bool {
		return len(b.logs.lines(`"delivery":"down-1"`, `"msg":"job done"`)) == 1
	})
}

func TestConfigErrorsStopStartup(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"secret missing", map[string]string{"APP_ID": "1", "PRIVATE_KEY": "-----BEGIN X-----"}, nil, "WEBHOOK_SECRET"},
		{"bad role", nil, []string{"--role", "chef"}, "--role"},
		{"split roles need redis", nil, []string{"--role", "web"}, "REDIS_URL"},
		{"redis unreachable", map[string]string{"REDIS_URL": fmt.Sprintf("redis://127.0.0.1:%d", testenv.FreePort(t))}, nil, "REDIS_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"PORT": strconv.Itoa(testenv.FreePort(t)), "DATA_DIR": t.TempDir()}
			for k, v := range tc.env {
				env[k] = v
			}
			var out bytes.Buffer
			err := run(context.Background(), append([]string{"serve"}, tc.args...), func(k string) string { return env[k] }, &out, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to name %s", err, tc.want)
			}
		})
	}
}

func TestSplitRoles(t *testing.T) {
	r := testenv.StartRedis(t)
	web := startBot(t, map[string]string{"REDIS_URL": r.URL()}, "--role", "web")
	worker := startBot(t, map[string]string{"REDIS_URL": r.URL()}, "--role", "worker")
	if status, _ := web.post(t, delivery{event: "push", id: "split-1", body: tagPush()}); status != 202 {
		t.Fatalf("web intake: %d", status)
	}
	eventually(t, "worker process did not run the job queued by the web process", func() bool {
		return len(worker.logs.lines(`"delivery":"split-1"`, `"msg":"job done"`)) == 1
	})
	if got := worker.get(t, "/webhooks"); got != http.StatusNotFound && got != http.StatusMethodNotAllowed {
		t.Fatalf("worker role serves /webhooks (%d); it must not take deliveries", got)
	}
}

// TestConcurrentDeliveriesKeepTheirOwnPayloads guards intake's pooled body
// buffers: each job must carry the payload of its own delivery, whatever
// arrives alongside it.
func TestConcurrentDeliveriesKeepTheirOwnPayloads(t *testing.T) {
	stores(t, func(t *testing.T, b *runningBot, _ *testenv.Redis) {
		const n = 40
		push := string(tagPush())
		want := fixtures.MergeSHA
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				body := []byte(strings.Replace(push, want, fmt.Sprintf("%040d", 900000+i), -1))
				if status, answer := b.post(t, delivery{event: "push", id: fmt.Sprintf("conc-%d", i), body: body}); status != 202 {
					t.Errorf("delivery %d: %d %s", i, status, answer)
				}
			}(i)
		}
		wg.Wait()
		eventually(t, "not every job ran", func() bool { return len(b.logs.lines(`"msg":"push received"`)) == n })
		for i := 0; i < n; i++ {
			id, own := fmt.Sprintf(`"delivery":"conc-%d"`, i), fmt.Sprintf(`"sha":"%040d"`, 900000+i)
			if len(b.logs.lines(id, `"msg":"push received"`, own)) != 1 {
				t.Errorf("job %s did not run with its own payload: %v", id, b.logs.lines(id, `"msg":"push received"`))
			}
		}
	})
}

// tagPush is the push fixture moved to a tag. Only branch pushes deploy (a
// deploy reads the repository's configuration from GitHub), so the worker
// acks it without calling GitHub: intake tests see their job done with no
// GitHub behind the bot.
func tagPush() []byte {
	return bytes.Replace(fixtures.Webhook("push"), []byte(`"ref": "refs/heads/main"`), []byte(`"ref": "refs/tags/v1.0.0"`), 1)
}
