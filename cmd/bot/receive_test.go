package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shipbot/shipbot/internal/testenv"
)

func TestReceiveDeliversLikeGitHub(t *testing.T) {
	b := startBot(t, nil)
	payload := filepath.Join(t.TempDir(), "push.json")
	if err := os.WriteFile(payload, tagPush(), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string { return map[string]string{"WEBHOOK_SECRET": secret}[k] }
	recv := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"receive", "-e", "push", "-p", payload, "--url", b.url + "/webhooks"}, args...), env, &out, &out)
		return out.String(), err
	}
	out, err := recv("--delivery", "recv-1")
	if err != nil || !strings.Contains(out, "202") {
		t.Fatalf("receive: %v\n%s", err, out)
	}
	eventually(t, "received delivery was not processed", func() bool {
		return len(b.logs.lines(`"delivery":"recv-1"`, `"msg":"job done"`)) == 1
	})
	out, err = recv("--delivery", "recv-1")
	if err != nil || !strings.Contains(out, "200") || !strings.Contains(out, "duplicate") {
		t.Fatalf("second receive of the same delivery: %v\n%s", err, out)
	}
	// Without the right secret the bot refuses it, and receive says so.
	var errOut bytes.Buffer
	err = run(context.Background(), []string{"receive", "-e", "push", "-p", payload, "--url", b.url + "/webhooks"},
		func(k string) string { return map[string]string{"WEBHOOK_SECRET": "wrong"}[k] }, &errOut, &errOut)
	if err == nil || !strings.Contains(errOut.String(), "401") {
		t.Fatalf("wrong secret: err=%v out=%s", err, errOut.String())
	}
}

func TestReceiveUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no event", []string{"receive", "-p", "x.json"}, map[string]string{"WEBHOOK_SECRET": "s"}, "-e EVENT"},
		{"no secret", []string{"receive", "-e", "push", "-p", "x.json"}, nil, "WEBHOOK_SECRET"},
		{"missing file", []string{"receive", "-e", "push", "-p", "/nonexistent.json"}, map[string]string{"WEBHOOK_SECRET": "s"}, "payload file"},
		{"bot not running", []string{"receive", "-e", "push", "-p", filepath.Join(testenv.RepoRoot(t), "fixtures", "webhooks", "ping.json"),
			"--url", "http://127.0.0.1:1/webhooks"}, map[string]string{"WEBHOOK_SECRET": "s"}, "is the bot running"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tc.args, func(k string) string { return tc.env[k] }, &out, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestUnknownCommand(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"deploy-everything"}, func(string) string { return "" }, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("err = %v", err)
	}
}
