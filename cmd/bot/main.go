// Command bot is shipbot: a GitHub App that ships code. main reads the
// configuration, wires the pieces together and runs the chosen subcommand;
// it is the only package that imports everything.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/shipbot/shipbot/internal/driver/local"
)

const usage = `shipbot — merge to ship, previews on every PR

Usage:
  bot [serve] [--role all|web|worker]   run the HTTP server and workers (default)
  bot receive -e EVENT -p FILE [--url URL] [--delivery ID]
                                        sign a payload with WEBHOOK_SECRET and deliver it as GitHub would
  bot demo [--port N] [--exit]          the whole story on this machine: a simulated GitHub, previews,
                                        /deploy, a batched rollout, an automatic rollback and /rollback
  bot secrets set|list|unset OWNER/REPO ...
                                        the secrets a repository's environments name; see bot secrets help
  bot version                           print the version and commit

Configuration comes from environment variables and a .env file in the
working directory; see the README.
`

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	ownRuntime = true
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bot:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runWith(ctx, args, getenv, os.Stdin, stdout, stderr)
}

// runWith is run with standard input given, for the commands that read it.
func runWith(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, getenv, stdout, stderr)
	case "receive":
		return receive(ctx, args, getenv, stdout, stderr)
	case "demo":
		return demo(ctx, args, getenv, stdout, stderr)
	case "secrets":
		return secretsCmd(ctx, args, getenv, stdin, stdout, stderr)
	case "keeper":
		// Hidden: the local driver starts it (bot serve); see the README.
		return local.RunKeeper(ctx, args, stderr)
	case "version":
		fmt.Fprintf(stdout, "shipbot %s (commit %s)\n", version, commit())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q: use serve, receive, demo, secrets or version", cmd)
	}
}

func commit() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "unknown", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}
