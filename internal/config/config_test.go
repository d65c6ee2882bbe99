package config

import (
	"bytes"
	"encoding/base64"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaults(t *testing.T) {
	c, err := Load(env(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.HasApp() || c.Port != 3000 || c.DataDir != "./data" || c.GitHubAPIURL != "https://api.github.com" ||
		c.PublicURL != "http://localhost:3000" || c.LogLevel != slog.LevelInfo || c.RedisURL != "" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestPublicURLFollowsPort(t *testing.T) {
	c, err := Load(env(map[string]string{"PORT": "8080"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.PublicURL != "http://localhost:8080" {
		t.Fatalf("PublicURL = %q", c.PublicURL)
	}
}

func TestErrorsNameTheVariable(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyFile, []byte(pem), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"app id not a number", map[string]string{"APP_ID": "abc", "PRIVATE_KEY": pem, "WEBHOOK_SECRET": "s"}, "APP_ID"},
		{"app id without key", map[string]string{"APP_ID": "1", "WEBHOOK_SECRET": "s"}, "PRIVATE_KEY"},
		{"app id without secret", map[string]string{"APP_ID": "1", "PRIVATE_KEY": pem}, "WEBHOOK_SECRET"},
		{"both key sources", map[string]string{"APP_ID": "1", "PRIVATE_KEY": pem, "PRIVATE_KEY_PATH": keyFile, "WEBHOOK_SECRET": "s"}, "keep one"},
		{"key path missing", map[string]string{"APP_ID": "1", "PRIVATE_KEY_PATH": "/nonexistent/key.pem", "WEBHOOK_SECRET": "s"}, "PRIVATE_KEY_PATH=/nonexistent/key.pem"},
		{"key not pem", map[string]string{"APP_ID": "1", "PRIVATE_KEY": "hunter2", "WEBHOOK_SECRET": "s"}, "not a PEM"},
		{"port", map[string]string{"PORT": "70000"}, "PORT"},
		{"log level", map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		{"redis url", map[string]string{"REDIS_URL": "localhost:6379"}, "REDIS_URL"},
		{"api url", map[string]string{"GITHUB_API_URL": "api.github.com"}, "GITHUB_API_URL"},
		{"public url", map[string]string{"PUBLIC_URL": "shipbot"}, "PUBLIC_URL"},
		{"dashboard token too short", map[string]string{"DASHBOARD_TOKEN": "hunter2"}, "DASHBOARD_TOKEN is shorter than 32"},
		{"client id without secret", map[string]string{"GITHUB_CLIENT_ID": "Iv1.abc"}, "GITHUB_CLIENT_SECRET"},
		{"job timeout not a duration", map[string]string{"JOB_TIMEOUT": "30"}, "JOB_TIMEOUT"},
		{"job timeout too short", map[string]string{"JOB_TIMEOUT": "1s"}, "at least 3s"},
		{"secrets key not base64", map[string]string{"SECRETS_KEY": "hunter2!"}, "SECRETS_KEY is not 32 bytes in standard base64: make one with `openssl rand -base64 32`"},
		{"secrets key too short", map[string]string{"SECRETS_KEY": "aHVudGVyMg=="}, "SECRETS_KEY is not 32 bytes"},
		{"secrets key url base64", map[string]string{"SECRETS_KEY": "hunter2-" + strings.Repeat("_", 35) + "="}, "SECRETS_KEY is not 32 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(env(tc.env), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "MIIB") {
				t.Fatalf("error leaks a secret: %v", err)
			}
		})
	}
}

func TestValidApp(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyFile, []byte(pem), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(env(map[string]string{"APP_ID": "42", "PRIVATE_KEY_PATH": keyFile, "WEBHOOK_SECRET": "s3cret",
		"GITHUB_API_URL": "https://ghe.example.com/api/v3/", "LOG_LEVEL": "DEBUG", "REDIS_URL": "redis://r:6379/1"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.AppID != 42 || string(c.PrivateKey) != pem || string(c.WebhookSecret) != "s3cret" ||
		c.GitHubAPIURL != "https://ghe.example.com/api/v3" || c.LogLevel != slog.LevelDebug || c.JobTimeout != DefaultJobTimeout {
		t.Fatalf("%+v", c)
	}
	if c, err := Load(env(map[string]string{"JOB_TIMEOUT": "6s"}), nil); err != nil || c.JobTimeout != 6*time.Second {
		t.Fatalf("JOB_TIMEOUT=6s: %v, %v", c.JobTimeout, err)
	}
}

func TestDotenvAndPrecedence(t *testing.T) {
	dotenv := []byte(`# written by the setup page
APP_ID=7
export WEBHOOK_SECRET='from file'
PRIVATE_KEY="-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"
PORT=4000 # trailing comment

LOG_LEVEL=warn
`)
	c, err := Load(env(map[string]string{"LOG_LEVEL": "error"}), dotenv)
	if err != nil {
		t.Fatal(err)
	}
	if c.AppID != 7 || string(c.WebhookSecret) != "from file" || string(c.PrivateKey) != pem || c.Port != 4000 {
		t.Fatalf("%+v", c)
	}
	if c.LogLevel != slog.LevelError {
		t.Fatalf("real environment must win over .env: level %v", c.LogLevel)
	}
}

func TestDotenvBadLine(t *testing.T) {
	_, err := Load(env(nil), []byte("APP_ID=1\nthis is not a pair\n"))
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("err = %v", err)
	}
}

func TestDashboardToken(t *testing.T) {
	tok := strings.Repeat("x", MinDashboardTokenLen)
	c, err := Load(env(map[string]string{"DASHBOARD_TOKEN": " " + tok + " "}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.DashboardToken != tok {
		t.Fatalf("DashboardToken = %q, want %q", c.DashboardToken, tok)
	}
}

func TestSecretsKey(t *testing.T) {
	c, err := Load(env(nil), nil)
	if err != nil || c.SecretsKey != nil {
		t.Fatalf("unset SECRETS_KEY: %v, %v", c.SecretsKey, err)
	}
	want := make([]byte, SecretsKeyLen)
	for i := range want {
		want[i] = byte(i * 7)
	}
	// As `openssl rand -base64 32` prints it, with its newline, from .env.
	dotenv := []byte("SECRETS_KEY=" + base64.StdEncoding.EncodeToString(want) + "\n")
	c, err = Load(env(nil), dotenv)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.SecretsKey, want) {
		t.Fatalf("SecretsKey = %x, want %x", c.SecretsKey, want)
	}
}
