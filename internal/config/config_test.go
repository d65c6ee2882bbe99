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

func TestNotifyDefaults(t *testing.T) {
	c, err := Load(env(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.SlackBotToken != "" || c.SlackAPIURL != DefaultSlackAPIURL || c.EventsSecret != nil {
		t.Fatalf("notify defaults: token %q, API %q, events secret %q", c.SlackBotToken, c.SlackAPIURL, c.EventsSecret)
	}
}

func TestNotifyValues(t *testing.T) {
	token := "xoxb-1234567890-0987654321-hunter2hunter2"
	c, err := Load(env(map[string]string{
		"SLACK_BOT_TOKEN": " " + token + "\n",
		"SLACK_API_URL":   "http://127.0.0.1:4000/api/",
		"EVENTS_SECRET":   "hunter2-hunter2-hunter2",
		"WEBHOOK_SECRET":  "hunter2-but-another-one",
	}), []byte("EVENTS_SECRET=from-the-dotenv-file\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.SlackBotToken != token || c.SlackAPIURL != "http://127.0.0.1:4000/api/" || string(c.EventsSecret) != "hunter2-hunter2-hunter2" {
		t.Fatalf("got token %q, API %q, events secret %q", c.SlackBotToken, c.SlackAPIURL, c.EventsSecret)
	}
}

func TestNotifyErrors(t *testing.T) {
	const secret = "hunter2-hunter2-hunter2"
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"user token", map[string]string{"SLACK_BOT_TOKEN": "xoxp-1234567890-hunter2"},
			"SLACK_BOT_TOKEN is a user token (xoxp-…), which posts as a person: use the Bot User OAuth Token (xoxb-…) from the Slack app's OAuth & Permissions page"},
		{"app token", map[string]string{"SLACK_BOT_TOKEN": "xapp-1-hunter2hunter2"},
			"SLACK_BOT_TOKEN is not a Slack bot token: use the Bot User OAuth Token (xoxb-…) from the Slack app's OAuth & Permissions page, or unset it to send no Slack messages"},
		{"token cut short", map[string]string{"SLACK_BOT_TOKEN": "xoxb-hunt"}, "SLACK_BOT_TOKEN is not a Slack bot token"},
		{"token with a space", map[string]string{"SLACK_BOT_TOKEN": "xoxb-12345 hunter2hunter2"}, "SLACK_BOT_TOKEN is not a Slack bot token"},
		{"api url without slash", map[string]string{"SLACK_API_URL": "https://slack.com/api"},
			`SLACK_API_URL="https://slack.com/api" is not an http(s) URL ending in /: use https://slack.com/api/ (the default), or a test server's URL like http://localhost:8888/api/`},
		{"api url not http", map[string]string{"SLACK_API_URL": "slack.com/api/"}, `SLACK_API_URL="slack.com/api/" is not an http(s) URL ending in /`},
		{"api url with query", map[string]string{"SLACK_API_URL": "https://slack.com/api/?x=1"}, "SLACK_API_URL"},
		{"events secret short", map[string]string{"EVENTS_SECRET": "hunter2"},
			"EVENTS_SECRET is shorter than 16 characters: use a long random value, e.g. the output of `openssl rand -hex 32`"},
		{"events secret is the webhook secret", map[string]string{"EVENTS_SECRET": secret, "WEBHOOK_SECRET": secret},
			"EVENTS_SECRET is the same as WEBHOOK_SECRET, and a notify.webhooks receiver must not be able to forge GitHub's deliveries to the bot: set EVENTS_SECRET to a different random value, e.g. the output of `openssl rand -hex 32`"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(env(tc.env), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
			if strings.Count(err.Error(), "\n") != 0 {
				t.Errorf("want one line, got:\n%v", err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error leaks a secret: %v", err)
			}
		})
	}
}

func TestEventsSecretSameAsWebhookSecretFromDotenv(t *testing.T) {
	const secret = "0123456789abcdef0123"
	_, err := Load(env(map[string]string{"EVENTS_SECRET": secret}), []byte("WEBHOOK_SECRET="+secret+"\n"))
	if err == nil || !strings.Contains(err.Error(), "EVENTS_SECRET is the same as WEBHOOK_SECRET") {
		t.Fatalf("err = %v, want EVENTS_SECRET refused", err)
	}
}
