// Package config turns the process environment (and a .env file in the
// working directory) into a validated Config. Every error names the variable
// and says how to fix it, because it is the one line an operator sees when
// the bot refuses to start.
package config

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Config is everything the bot reads from its environment (SPEC §2).
type Config struct {
	AppID         int64
	PrivateKey    []byte // PEM; from PRIVATE_KEY or the file at PRIVATE_KEY_PATH
	WebhookSecret []byte
	GitHubAPIURL  string
	RedisURL      string // empty: the embedded store under DataDir
	DataDir       string
	Port          int
	PublicURL     string
	LogLevel      slog.Level

	// OAuth client of the App, written by the manifest flow; used by the
	// dashboard's sign-in. Optional.
	ClientID     string
	ClientSecret string

	// DashboardToken gives bearer access to the whole dashboard (and signs
	// a browser in through the token form). Optional.
	DashboardToken string

	// JobTimeout is how long a job's lease outlives a worker that stopped
	// extending it (JOB_TIMEOUT): after a crash, a job comes back this long
	// after its worker's last heartbeat. The heartbeat and the deploy lock's
	// TTL are derived from it (cmd/bot).
	JobTimeout time.Duration

	// SecretsKey is SECRETS_KEY decoded: the AES-256 key stored secrets
	// are sealed with (internal/secrets). Nil when unset, which is no
	// error until a secret is set or read.
	SecretsKey []byte

	// SlackBotToken is SLACK_BOT_TOKEN, a bot token (xoxb-…) for
	// notify.slack; "" when unset: no Slack messages.
	SlackBotToken string
	// SlackAPIURL is SLACK_API_URL, the Slack Web API's base URL, ending
	// in / (slack-go appends method names to it).
	SlackAPIURL string
	// EventsSecret is EVENTS_SECRET, the HMAC key of the
	// X-Shipbot-Signature-256 header on notify.webhooks deliveries; nil
	// when unset: deliveries go unsigned.
	EventsSecret []byte
}

// SecretsKeyLen is the length of SECRETS_KEY once decoded: an AES-256 key.
const SecretsKeyLen = 32

// DefaultJobTimeout is JOB_TIMEOUT when unset; MinJobTimeout the shortest
// accepted, below which a GC pause or a slow Redis could let two workers
// hold one job.
const (
	DefaultJobTimeout = 30 * time.Second
	MinJobTimeout     = 3 * time.Second
)

// MinDashboardTokenLen is the shortest DASHBOARD_TOKEN accepted: it guards
// every repository's deploy history, so it must not be guessable.
const MinDashboardTokenLen = 32

// DefaultSlackAPIURL is SLACK_API_URL when unset.
const DefaultSlackAPIURL = "https://slack.com/api/"

// MinEventsSecretLen is the shortest EVENTS_SECRET accepted: a receiver
// trusts what it signs, so it must not be guessable.
const MinEventsSecretLen = 16

// HasApp reports whether GitHub App credentials are configured; without them
// the bot serves the setup page.
func (c Config) HasApp() bool { return c.AppID != 0 }

// Load reads the configuration. getenv is the real environment (os.Getenv);
// dotenv is the content of a .env file, or nil. The real environment wins.
func Load(getenv func(string) string, dotenv []byte) (Config, error) {
	file, err := ParseDotenv(dotenv)
	if err != nil {
		return Config{}, err
	}
	get := func(key string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return file[key]
	}
	var c Config
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if v := strings.TrimSpace(get("APP_ID")); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			bad("APP_ID=%q is not a GitHub App id: set it to the number on the App's settings page", v)
		}
		c.AppID = id
	}
	switch key, path := get("PRIVATE_KEY"), get("PRIVATE_KEY_PATH"); {
	case key != "" && path != "":
		bad("PRIVATE_KEY and PRIVATE_KEY_PATH are both set: keep one of them")
	case key != "":
		c.PrivateKey = []byte(strings.ReplaceAll(key, `\n`, "\n"))
	case path != "":
		b, err := os.ReadFile(path)
		if err != nil {
			bad("PRIVATE_KEY_PATH=%s cannot be read (%v): point it at the .pem file downloaded from the App's settings page", path, unwrapPath(err))
		}
		c.PrivateKey = b
	}
	if len(c.PrivateKey) > 0 && !bytes.Contains(c.PrivateKey, []byte("-----BEGIN")) {
		bad("PRIVATE_KEY is not a PEM private key: paste the whole .pem file including the BEGIN and END lines, or use PRIVATE_KEY_PATH")
	}
	c.WebhookSecret = []byte(get("WEBHOOK_SECRET"))
	if c.AppID != 0 {
		if len(c.PrivateKey) == 0 {
			bad("APP_ID is set but PRIVATE_KEY and PRIVATE_KEY_PATH are not: set one to the App's private key")
		}
		if len(c.WebhookSecret) == 0 {
			bad("APP_ID is set but WEBHOOK_SECRET is not: set it to the webhook secret of the App")
		}
	}

	c.GitHubAPIURL = strings.TrimRight(orDefault(get("GITHUB_API_URL"), "https://api.github.com"), "/")
	if u, err := url.Parse(c.GitHubAPIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("GITHUB_API_URL=%q is not an http(s) URL: use https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server", c.GitHubAPIURL)
	}

	c.RedisURL = get("REDIS_URL")
	if c.RedisURL != "" {
		if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
			bad("REDIS_URL is not a redis:// or rediss:// URL: use e.g. redis://localhost:6379/0, or unset it to use the embedded store")
		}
	}
	c.DataDir = orDefault(get("DATA_DIR"), "./data")

	c.Port = 3000
	if v := get("PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			bad("PORT=%q is not a TCP port: use a number from 1 to 65535", v)
		}
		c.Port = p
	}
	c.PublicURL = strings.TrimRight(orDefault(get("PUBLIC_URL"), fmt.Sprintf("http://localhost:%d", c.Port)), "/")
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("PUBLIC_URL=%q is not an http(s) URL: set it to the address GitHub and browsers reach the bot at, e.g. https://shipbot.example.com", c.PublicURL)
	}

	switch v := strings.ToLower(orDefault(get("LOG_LEVEL"), "info")); v {
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "info":
		c.LogLevel = slog.LevelInfo
	case "warn":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		bad("LOG_LEVEL=%q is not a level: use debug, info, warn or error", v)
	}
	c.ClientID = get("GITHUB_CLIENT_ID")
	c.ClientSecret = get("GITHUB_CLIENT_SECRET")
	if (c.ClientID == "") != (c.ClientSecret == "") {
		bad("GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET must be set together: copy both from the App's settings page, or unset both to turn off sign-in with GitHub")
	}
	c.DashboardToken = strings.TrimSpace(get("DASHBOARD_TOKEN"))
	if c.DashboardToken != "" && len(c.DashboardToken) < MinDashboardTokenLen {
		bad("DASHBOARD_TOKEN is shorter than %d characters: use a long random value, e.g. the output of `openssl rand -hex 32`", MinDashboardTokenLen)
	}
	c.JobTimeout = DefaultJobTimeout
	if v := get("JOB_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < MinJobTimeout {
			bad("JOB_TIMEOUT=%q is not a duration of at least %s: use e.g. 30s (the default), or unset it", v, MinJobTimeout)
		}
		c.JobTimeout = d
	}
	if v := strings.TrimSpace(get("SECRETS_KEY")); v != "" {
		key, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(key) != SecretsKeyLen {
			bad("SECRETS_KEY is not %d bytes in standard base64: make one with `openssl rand -base64 32`", SecretsKeyLen)
		}
		c.SecretsKey = key
	}
	for _, err := range c.loadNotify(get) {
		bad("%w", err)
	}
	return c, errors.Join(errs...)
}

// loadNotify reads what notify needs (SPEC §2): the Slack token and API,
// and the secret outgoing events are signed with. No error repeats a
// token or secret, as start-up errors land in logs.
func (c *Config) loadNotify(get func(string) string) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	c.SlackBotToken = strings.TrimSpace(get("SLACK_BOT_TOKEN"))
	switch t := c.SlackBotToken; {
	case t == "":
	case strings.HasPrefix(t, "xoxp-"):
		bad("SLACK_BOT_TOKEN is a user token (xoxp-…), which posts as a person: use the Bot User OAuth Token (xoxb-…) from the Slack app's OAuth & Permissions page")
	case !strings.HasPrefix(t, "xoxb-") || len(t) < len("xoxb-")+10 || strings.ContainsFunc(t, unicode.IsSpace):
		bad("SLACK_BOT_TOKEN is not a Slack bot token: use the Bot User OAuth Token (xoxb-…) from the Slack app's OAuth & Permissions page, or unset it to send no Slack messages")
	}

	c.SlackAPIURL = orDefault(get("SLACK_API_URL"), DefaultSlackAPIURL)
	if u, err := url.Parse(c.SlackAPIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !strings.HasSuffix(u.Path, "/") || u.RawQuery != "" || u.Fragment != "" {
		bad("SLACK_API_URL=%q is not an http(s) URL ending in /: use %s (the default), or a test server's URL like http://localhost:8888/api/", c.SlackAPIURL, DefaultSlackAPIURL)
	}

	if v := get("EVENTS_SECRET"); v != "" {
		c.EventsSecret = []byte(v)
		switch {
		case len(v) < MinEventsSecretLen:
			bad("EVENTS_SECRET is shorter than %d characters: use a long random value, e.g. the output of `openssl rand -hex 32`", MinEventsSecretLen)
		case len(c.WebhookSecret) > 0 && hmac.Equal(c.EventsSecret, c.WebhookSecret):
			bad("EVENTS_SECRET is the same as WEBHOOK_SECRET, and a notify.webhooks receiver must not be able to forge GitHub's deliveries to the bot: set EVENTS_SECRET to a different random value, e.g. the output of `openssl rand -hex 32`")
		}
	}
	return errs
}

// ParseDotenv reads KEY=value lines. Blank lines and lines starting with #
// are skipped; "export " is allowed; values may be single-quoted (taken
// literally) or double-quoted (with \n, \", \\ escapes, which is how the setup
// page writes the private key).
func ParseDotenv(b []byte) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, val, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" || strings.ContainsAny(key, " \t") {
			return nil, fmt.Errorf(".env line %d is not KEY=value: fix or remove it", n)
		}
		val = strings.TrimSpace(val)
		switch {
		case len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"':
			v, err := unescape(val[1 : len(val)-1])
			if err != nil {
				return nil, fmt.Errorf(".env line %d (%s): %v", n, key, err)
			}
			val = v
		case len(val) >= 2 && val[0] == '\'' && val[len(val)-1] == '\'':
			val = val[1 : len(val)-1]
		default:
			if i := strings.Index(val, " #"); i >= 0 {
				val = strings.TrimSpace(val[:i])
			}
		}
		out[key] = val
	}
	return out, sc.Err()
}

func unescape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		i++
		if i == len(s) {
			return "", errors.New("value ends in a lone backslash")
		}
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case '"', '\\', '$':
			b.WriteByte(s[i])
		default:
			b.WriteByte('\\')
			b.WriteByte(s[i])
		}
	}
	return b.String(), nil
}

// ReadDotenv reads path, returning nil without error when it does not exist.
func ReadDotenv(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s cannot be read (%v): fix its permissions or remove it", path, unwrapPath(err))
	}
	return b, nil
}

func orDefault(v, def string) string {
	if strings.TrimSpace(v) == "" {
		return def
	}
	return v
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
