package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/secrets"
	"github.com/shipbot/shipbot/internal/testenv"
)

// secretValue is the value every test sets: it must never be printed.
const secretValue = "postgres://web:s3cr3t-hunter2@db/web"

func secretsKey(b byte) string {
	return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, secrets.KeyLen))
}

// secretsEnv is one place the bot keeps secrets, as `bot secrets` and
// `bot serve` find it from their environment.
type secretsEnv struct {
	env  map[string]string
	open func(t *testing.T, key string) *secrets.Store // as the serving bot opens it
}

func embeddedSecrets(t *testing.T) secretsEnv {
	dir := filepath.Join(t.TempDir(), "data")
	return secretsEnv{
		env: map[string]string{"DATA_DIR": dir, "SECRETS_KEY": secretsKey(1)},
		open: func(t *testing.T, key string) *secrets.Store {
			return openSecretsFor(t, map[string]string{"DATA_DIR": dir, "SECRETS_KEY": key})
		},
	}
}

func redisSecrets(t *testing.T) secretsEnv {
	r := testenv.StartRedis(t)
	return secretsEnv{
		env: map[string]string{"REDIS_URL": r.URL(), "DATA_DIR": t.TempDir(), "SECRETS_KEY": secretsKey(1)},
		open: func(t *testing.T, key string) *secrets.Store {
			return openSecretsFor(t, map[string]string{"REDIS_URL": r.URL(), "SECRETS_KEY": key})
		},
	}
}

// openSecretsFor opens the store the way cmd/bot does for env.
func openSecretsFor(t *testing.T, env map[string]string) *secrets.Store {
	t.Helper()
	s, _, closeStore, err := openSecrets(context.Background(), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeStore)
	return s
}

// run runs `bot secrets args...` with stdin; changes overrides env
// ("" unsets a variable).
func (e secretsEnv) run(t *testing.T, changes map[string]string, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	env := map[string]string{}
	for k, v := range e.env {
		env[k] = v
	}
	for k, v := range changes {
		env[k] = v
	}
	var out, errOut bytes.Buffer
	err = runWith(context.Background(), append([]string{"secrets"}, args...), func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errOut)
	for _, s := range []string{out.String(), errOut.String(), errString(err)} {
		if strings.Contains(s, "hunter2") {
			t.Fatalf("bot secrets %v printed the value:\n%s", args, s)
		}
	}
	return out.String(), errOut.String(), err
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func bothSecretStores(t *testing.T, f func(t *testing.T, e secretsEnv)) {
	t.Run("embedded", func(t *testing.T) { f(t, embeddedSecrets(t)) })
	t.Run("redis", func(t *testing.T) { f(t, redisSecrets(t)) })
}

func TestSecretsSetListUnset(t *testing.T) {
	bothSecretStores(t, func(t *testing.T, e secretsEnv) {
		ctx := context.Background()
		out, _, err := e.run(t, nil, secretValue+"\n", "set", "octo-org/web", "production", "DATABASE_URL")
		if want := "DATABASE_URL is set for octo-org/web production: its next deploy gets it.\n"; err != nil || out != want {
			t.Fatalf("set: %q, %v; want %q", out, err, want)
		}
		// Only one newline is taken off: the rest is the value's.
		if _, _, err := e.run(t, nil, "line one\nline two\n\n", "set", "octo-org/web", "preview", "CERT"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.run(t, nil, "sk_live\r\n", "set", "octo-org/web", "staging", "STRIPE_KEY"); err != nil {
			t.Fatal(err)
		}
		s := e.open(t, secretsKey(1))
		for _, c := range []struct{ env, name, want string }{
			{"production", "DATABASE_URL", secretValue},
			{"preview", "CERT", "line one\nline two\n"},
			{"staging", "STRIPE_KEY", "sk_live"},
		} {
			if v, err := s.Secret(ctx, "octo-org/web", c.env, c.name); err != nil || v != c.want {
				t.Fatalf("Secret %s %s = %q, %v; want %q", c.env, c.name, v, err, c.want)
			}
		}

		out, _, err = e.run(t, nil, "", "list", "octo-org/web")
		if err != nil {
			t.Fatal(err)
		}
		at := `\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC`
		want := regexp.MustCompile(`^ENVIRONMENT  NAME          SET\n` +
			`preview      CERT          ` + at + `\n` +
			`production   DATABASE_URL  ` + at + `\n` +
			`staging      STRIPE_KEY    ` + at + `\n$`)
		if !want.MatchString(out) {
			t.Fatalf("list:\n%s", out)
		}
		out, _, err = e.run(t, nil, "", "list", "octo-org/web", "staging")
		if err != nil || strings.Count(out, "\n") != 2 || !strings.Contains(out, "STRIPE_KEY") {
			t.Fatalf("list staging: %q, %v", out, err)
		}

		// list and unset need no SECRETS_KEY.
		out, _, err = e.run(t, map[string]string{"SECRETS_KEY": ""}, "", "unset", "octo-org/web", "production", "DATABASE_URL")
		if want := "DATABASE_URL is removed from octo-org/web production: a deploy that names it fails until it is set again.\n"; err != nil || out != want {
			t.Fatalf("unset: %q, %v; want %q", out, err, want)
		}
		if _, err := s.Secret(ctx, "octo-org/web", "production", "DATABASE_URL"); !errors.Is(err, deploy.ErrSecretNotSet) {
			t.Fatalf("Secret after unset: %v", err)
		}
		out, _, err = e.run(t, map[string]string{"SECRETS_KEY": ""}, "", "list", "octo-org/web", "production")
		if want := "octo-org/web production has no secrets: set one with `bot secrets set octo-org/web ENV NAME`.\n"; err != nil || out != want {
			t.Fatalf("list after unset: %q, %v; want %q", out, err, want)
		}
	})
}

func TestSecretsErrors(t *testing.T) {
	bothSecretStores(t, func(t *testing.T, e secretsEnv) {
		if _, _, err := e.run(t, nil, secretValue, "set", "octo-org/web", "production", "DATABASE_URL"); err != nil {
			t.Fatal(err)
		}
		set := []string{"set", "octo-org/web", "production", "DATABASE_URL"}
		for _, c := range []struct {
			name    string
			changes map[string]string
			stdin   string
			args    []string
			want    string
		}{
			{"no subcommand", nil, "", nil, "`bot secrets` needs a subcommand: set, list or unset"},
			{"unknown subcommand", nil, "", []string{"show", "octo-org/web"}, "`bot secrets show` is not a command: use set, list or unset"},
			{"value as an argument", nil, "", append(set, secretValue), "`bot secrets set` takes no value argument, so that the value stays out of shell history and the process list: pipe it in on standard input, e.g. printf %s \"$VALUE\" | bot secrets set OWNER/REPO ENV NAME"},
			{"set without a name", nil, "v", set[:3], "`bot secrets set` takes OWNER/REPO ENV NAME, got 2 arguments: see `bot secrets help`"},
			{"list without a repository", nil, "", []string{"list"}, "`bot secrets list` takes OWNER/REPO [ENV], got 0 arguments: see `bot secrets help`"},
			{"unset with too much", nil, "", []string{"unset", "octo-org/web", "production", "A", "B"}, "`bot secrets unset` takes OWNER/REPO ENV NAME, got 4 arguments: see `bot secrets help`"},
			{"bad repository", nil, "v", []string{"set", "web", "production", "X"}, `"web" is not a repository: write it as OWNER/REPO, e.g. octo-org/web`},
			{"bad environment", nil, "v", []string{"set", "octo-org/web", "prod/eu", "X"}, `"prod/eu" is not an environment name: use letters, digits, '.', '_' and '-', as in .github/shipbot.yml, e.g. production, or preview for previews`},
			{"bad environment in list", nil, "", []string{"list", "octo-org/web", "-x"}, `"-x" is not an environment name: use letters, digits, '.', '_' and '-', as in .github/shipbot.yml, e.g. production, or preview for previews`},
			{"bad name", nil, "v", []string{"set", "octo-org/web", "production", "database-url"}, `"database-url" is not a secret name: use capital letters, digits and '_', not starting with a digit, e.g. DATABASE_URL`},
			{"empty value", nil, "", set, "the value for DATABASE_URL is empty: pipe the value into `bot secrets set octo-org/web production DATABASE_URL` on standard input, or remove the secret with `bot secrets unset`"},
			{"only a newline", nil, "\n", set, "the value for DATABASE_URL is empty: pipe the value into `bot secrets set octo-org/web production DATABASE_URL` on standard input, or remove the secret with `bot secrets unset`"},
			{"value too long", nil, strings.Repeat("x", secrets.MaxValueLen+1), set, "the value for DATABASE_URL is over the 64 KiB a secret may hold: keep large files out of the environment and pass a path or URL instead"},
			{"no SECRETS_KEY", map[string]string{"SECRETS_KEY": ""}, "v", set, "SECRETS_KEY is not set: make one with `openssl rand -base64 32` and set it both here and on the bot, which needs it to read DATABASE_URL"},
			{"malformed SECRETS_KEY", map[string]string{"SECRETS_KEY": "hunter2"}, "v", set, "configuration: SECRETS_KEY is not 32 bytes in standard base64: make one with `openssl rand -base64 32`"},
			{"unset of one never set", nil, "", []string{"unset", "octo-org/web", "staging", "DATABASE_URL"}, "DATABASE_URL for octo-org/web staging is not set: nothing was removed; `bot secrets list octo-org/web` shows the secrets that are"},
		} {
			t.Run(c.name, func(t *testing.T) {
				_, _, err := e.run(t, c.changes, c.stdin, c.args...)
				if err == nil || err.Error() != c.want {
					t.Fatalf("err = %v\nwant %s", err, c.want)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("not one line: %q", err)
				}
			})
		}
		// None of the failures changed the secret.
		if v, err := e.open(t, secretsKey(1)).Secret(context.Background(), "octo-org/web", "production", "DATABASE_URL"); err != nil || v != secretValue {
			t.Fatalf("after the failures: %q, %v", v, err)
		}
		// A serving bot whose SECRETS_KEY changed says how to fix it.
		_, err := e.open(t, secretsKey(2)).Secret(context.Background(), "octo-org/web", "production", "DATABASE_URL")
		if want := "DATABASE_URL for octo-org/web production no longer decrypts, so SECRETS_KEY changed since it was set: set it again with `bot secrets set octo-org/web production DATABASE_URL`"; err == nil || err.Error() != want {
			t.Fatalf("another key: %v", err)
		}
	})
}

func TestSecretsRedisDown(t *testing.T) {
	e := embeddedSecrets(t)
	port := testenv.FreePort(t)
	_, _, err := e.run(t, map[string]string{"REDIS_URL": "redis://127.0.0.1:" + strconv.Itoa(port) + "/0"}, "", "list", "octo-org/web")
	if err == nil || !strings.HasPrefix(err.Error(), "REDIS_URL: Redis at 127.0.0.1:"+strconv.Itoa(port)+" does not answer") {
		t.Fatalf("err = %v", err)
	}
}

func TestSecretsHelp(t *testing.T) {
	e := embeddedSecrets(t)
	out, _, err := e.run(t, nil, "", "help")
	if err != nil || !strings.Contains(out, "bot secrets set OWNER/REPO ENV NAME") {
		t.Fatalf("help: %q, %v", out, err)
	}
	var top bytes.Buffer
	if err := run(context.Background(), []string{"help"}, func(string) string { return "" }, &top, &top); err != nil || !strings.Contains(top.String(), "bot secrets set|list|unset") {
		t.Fatalf("bot help: %q, %v", top.String(), err)
	}
}

// TestSecretsWhileServing: `bot secrets set` works while `bot serve` runs on
// the same DATA_DIR or Redis, and a store opened as the serving bot opens
// it reads the value at once.
func TestSecretsWhileServing(t *testing.T) {
	bothSecretStores(t, func(t *testing.T, e secretsEnv) {
		b := startBot(t, e.env)
		if _, _, err := e.run(t, nil, secretValue, "set", "octo-org/web", "production", "DATABASE_URL"); err != nil {
			t.Fatal(err)
		}
		if v, err := e.open(t, secretsKey(1)).Secret(context.Background(), "octo-org/web", "production", "DATABASE_URL"); err != nil || v != secretValue {
			t.Fatalf("Secret: %q, %v", v, err)
		}
		if code := b.get(t, "/readyz"); code != 200 {
			t.Fatalf("the bot's /readyz after bot secrets set: %d", code)
		}
	})
}

// TestSecretsBinary runs the built bot: `bot serve` on the embedded store in
// one process, `bot secrets` in others, the value piped in on standard
// input; a failure is one line on stderr and exit status 2.
func TestSecretsBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the bot")
	}
	bin := botBinary(t)
	data := t.TempDir()
	port := strconv.Itoa(testenv.FreePort(t))
	startBotProcess(t, bin, map[string]string{"PORT": port, "DATA_DIR": data, "SECRETS_KEY": secretsKey(1)})

	secretsProc := func(stdin string, args ...string) (string, string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"secrets"}, args...)...)
		cmd.Dir = t.TempDir()
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "DATA_DIR=" + data, "SECRETS_KEY=" + secretsKey(1)}
		cmd.Stdin = strings.NewReader(stdin)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		if strings.Contains(out.String()+errOut.String(), "hunter2") {
			t.Fatalf("bot secrets %v printed the value", args)
		}
		return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
	}
	if out, errOut, code := secretsProc(secretValue+"\n", "set", "octo-org/web", "production", "DATABASE_URL"); code != 0 {
		t.Fatalf("set: exit %d\n%s%s", code, out, errOut)
	}
	s := openSecretsFor(t, map[string]string{"DATA_DIR": data, "SECRETS_KEY": secretsKey(1)})
	if v, err := s.Secret(context.Background(), "octo-org/web", "production", "DATABASE_URL"); err != nil || v != secretValue {
		t.Fatalf("Secret: %q, %v", v, err)
	}
	out, errOut, code := secretsProc("", "set", "octo-org/web", "production", "DATABASE_URL")
	want := "bot: the value for DATABASE_URL is empty: pipe the value into `bot secrets set octo-org/web production DATABASE_URL` on standard input, or remove the secret with `bot secrets unset`\n"
	if code != 2 || out != "" || errOut != want {
		t.Fatalf("empty value: exit %d, stdout %q, stderr %q; want 2 and %q", code, out, errOut, want)
	}
}
