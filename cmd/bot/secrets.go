package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/shipbot/shipbot/internal/config"
	"github.com/shipbot/shipbot/internal/secrets"
)

const secretsUsage = `Usage:
  bot secrets set OWNER/REPO ENV NAME     store a secret; the value is read from standard input
  bot secrets list OWNER/REPO [ENV]       names, environments and when each was set; never a value
  bot secrets unset OWNER/REPO ENV NAME   remove one

ENV is an environment of .github/shipbot.yml, or preview for previews.
Secrets are sealed with SECRETS_KEY and kept in Redis (REDIS_URL) or in
DATA_DIR/secrets.json; a running bot sees a change at its next deploy.
Example: printf %s "$DATABASE_URL" | bot secrets set octo-org/web production DATABASE_URL
`

// secretsCommand is one subcommand of `bot secrets`: its argument count
// (min and max) and what it does with the opened store.
type secretsCommand struct {
	args     string // as in the usage, for errors
	min, max int
	run      func(ctx context.Context, s *secrets.Store, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

var secretsCommands = map[string]secretsCommand{
	"set":   {"OWNER/REPO ENV NAME", 3, 3, secretSet},
	"list":  {"OWNER/REPO [ENV]", 1, 2, secretList},
	"unset": {"OWNER/REPO ENV NAME", 3, 3, secretUnset},
}

// secretsCmd is `bot secrets`. Every error is one sentence; no value is
// ever written anywhere but the store.
func secretsCmd(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		_, _ = io.WriteString(stderr, secretsUsage)
		return fmt.Errorf("`bot secrets` needs a subcommand: set, list or unset")
	}
	if sub := args[0]; sub == "help" || sub == "-h" || sub == "--help" {
		_, _ = io.WriteString(stdout, secretsUsage)
		return nil
	}
	sub, args := args[0], args[1:]
	c, ok := secretsCommands[sub]
	if !ok {
		_, _ = io.WriteString(stderr, secretsUsage)
		return fmt.Errorf("`bot secrets %s` is not a command: use set, list or unset", sub)
	}
	if sub == "set" && len(args) > 3 {
		// Never echo it: it is most likely the value.
		return fmt.Errorf("`bot secrets set` takes no value argument, so that the value stays out of shell history and the process list: pipe it in on standard input, e.g. printf %%s \"$VALUE\" | bot secrets set %s", c.args)
	}
	if len(args) < c.min || len(args) > c.max {
		return fmt.Errorf("`bot secrets %s` takes %s, got %d arguments: see `bot secrets help`", sub, c.args, len(args))
	}
	for i, check := range []func(string) error{secrets.CheckRepo, secrets.CheckEnv, secrets.CheckName} {
		if i < len(args) {
			if err := check(args[i]); err != nil {
				return err
			}
		}
	}
	s, closeStore, err := openSecrets(ctx, getenv)
	if err != nil {
		return err
	}
	defer closeStore()
	return c.run(ctx, s, args, stdin, stdout, stderr)
}

// openSecrets opens the secrets where the bot with this configuration
// keeps them: Redis at REDIS_URL, else DATA_DIR.
func openSecrets(ctx context.Context, getenv func(string) string) (*secrets.Store, func(), error) {
	dotenv, err := config.ReadDotenv(".env")
	if err != nil {
		return nil, nil, err
	}
	cfg, err := config.Load(getenv, dotenv)
	if err != nil {
		return nil, nil, fmt.Errorf("configuration: %w", err)
	}
	b := &bot{cfg: cfg}
	if err := b.openRedis(ctx); err != nil {
		return nil, nil, err
	}
	s, err := secrets.Open(secrets.Options{Redis: b.redis, Prefix: "shipbot", DataDir: cfg.DataDir, Key: cfg.SecretsKey})
	if err != nil {
		b.close()
		return nil, nil, err
	}
	return s, b.close, nil
}

func secretSet(ctx context.Context, s *secrets.Store, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	id := secrets.ID{Repo: args[0], Env: args[1], Name: args[2]}
	if f, ok := stdin.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprintf(stderr, "Type the value of %s, then press Enter and Ctrl-D:\n", id.Name)
		}
	}
	// A little over the limit, so that Set can say the value is too long.
	b, err := io.ReadAll(io.LimitReader(stdin, secrets.MaxValueLen+3))
	if err != nil {
		return fmt.Errorf("standard input cannot be read (%v): pipe the value of %s into `bot secrets set`", err, id.Name)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if err := s.Set(ctx, id, string(b)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s is set for %s %s: its next deploy gets it.\n", id.Name, id.Repo, id.Env)
	return nil
}

func secretList(ctx context.Context, s *secrets.Store, args []string, _ io.Reader, stdout, _ io.Writer) error {
	repo, env := args[0], ""
	if len(args) == 2 {
		env = args[1]
	}
	l, err := s.List(ctx, repo, env)
	if err != nil {
		return err
	}
	if len(l) == 0 {
		where := repo
		if env != "" {
			where += " " + env
		}
		fmt.Fprintf(stdout, "%s has no secrets: set one with `bot secrets set %s ENV NAME`.\n", where, repo)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENVIRONMENT\tNAME\tSET")
	for _, i := range l {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", i.Env, i.Name, i.SetAt.UTC().Format("2006-01-02 15:04:05 UTC"))
	}
	return tw.Flush()
}

func secretUnset(ctx context.Context, s *secrets.Store, args []string, _ io.Reader, stdout, _ io.Writer) error {
	id := secrets.ID{Repo: args[0], Env: args[1], Name: args[2]}
	if err := s.Unset(ctx, id); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s is removed from %s %s: a deploy that names it fails until it is set again.\n", id.Name, id.Repo, id.Env)
	return nil
}
