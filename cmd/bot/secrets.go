package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
	"text/tabwriter"

	"github.com/shipbot/shipbot/internal/config"
	"github.com/shipbot/shipbot/internal/secrets"
	"github.com/shipbot/shipbot/internal/store"
	"github.com/shipbot/shipbot/internal/store/record"
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
// (min and max), what it does with the opened store and, for a change,
// the audit action it writes.
type secretsCommand struct {
	args     string // as in the usage, for errors
	min, max int
	run      func(ctx context.Context, s *secrets.Store, args []string, stdin io.Reader, stdout, stderr io.Writer) error
	action   string // record.Action*; "" for a read
}

var secretsCommands = map[string]secretsCommand{
	"set":   {"OWNER/REPO ENV NAME", 3, 3, secretSet, record.ActionSecretSet},
	"list":  {"OWNER/REPO [ENV]", 1, 2, secretList, ""},
	"unset": {"OWNER/REPO ENV NAME", 3, 3, secretUnset, record.ActionSecretUnset},
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
	s, audit, closeStore, err := openSecrets(ctx, getenv)
	if err != nil {
		return err
	}
	defer closeStore()
	err = c.run(ctx, s, args, stdin, stdout, stderr)
	if c.action != "" {
		if aerr := audit(ctx, secretAudit(c.action, cliUser(getenv), args, err)); aerr != nil {
			// The change stands (or failed) either way: say the log lacks it.
			fmt.Fprintf(stderr, "bot: the audit log does not have this change: %v\n", aerr)
		}
	}
	return err
}

// auditFunc appends an entry to the audit log of the bot with this
// configuration.
type auditFunc func(ctx context.Context, e record.AuditEntry) error

// openSecrets opens the secrets where the bot with this configuration
// keeps them, Redis at REDIS_URL, else DATA_DIR, and the way to its audit
// log: Redis, or else the audit spool in DATA_DIR, as a running `bot
// serve` holds the embedded store's file (it imports the spool).
func openSecrets(ctx context.Context, getenv func(string) string) (*secrets.Store, auditFunc, func(), error) {
	dotenv, err := config.ReadDotenv(".env")
	if err != nil {
		return nil, nil, nil, err
	}
	cfg, err := config.Load(getenv, dotenv)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("configuration: %w", err)
	}
	b := &bot{cfg: cfg}
	if err := b.openRedis(ctx); err != nil {
		return nil, nil, nil, err
	}
	s, err := secrets.Open(secrets.Options{Redis: b.redis, Prefix: "shipbot", DataDir: cfg.DataDir, Key: cfg.SecretsKey})
	if err != nil {
		b.close()
		return nil, nil, nil, err
	}
	audit := func(_ context.Context, e record.AuditEntry) error { return store.SpoolAudit(cfg.DataDir, e) }
	if b.redis != nil {
		log := store.NewRedis(b.redis, "shipbot")
		audit = func(ctx context.Context, e record.AuditEntry) error {
			_, err := log.AppendAudit(ctx, e)
			return err
		}
	}
	return s, audit, b.close, nil
}

// secretAudit is the audit entry of `bot secrets set|unset REPO ENV NAME`
// by user, which ended in err: the secret's name, never its value.
func secretAudit(action, user string, args []string, err error) record.AuditEntry {
	e := record.AuditEntry{Actor: record.ActorCLI(user), Repo: args[0], Env: args[1], Action: action, Outcome: record.OutcomeSuccess}
	name := args[2]
	switch {
	case err != nil:
		e.Outcome, e.Text = record.OutcomeFailure, name+": "+err.Error()
	case action == record.ActionSecretSet:
		e.Text = name + " set with bot secrets"
	default:
		e.Text = name + " removed with bot secrets"
	}
	return e
}

// cliUser is the OS user running the command: its account name, else
// $USER, else "unknown".
func cliUser(getenv func(string) string) string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := getenv("USER"); u != "" {
		return u
	}
	return "unknown"
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
