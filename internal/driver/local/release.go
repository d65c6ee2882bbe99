package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/repoconfig"
)

var _ deploy.Releaser = (*Driver)(nil)

// Release runs the release phase (SPEC §6.2): app.release with sh -c in
// r's build (made first if Prepare has not run), with the target's
// variables and secrets but no port, its output (secret values masked) to
// log, bounded by ctx, the whole process group killed when ctx ends. With
// no app.release it does nothing. The engine calls it once per deploy,
// before the first batch; no instance is touched here.
func (d *Driver) Release(ctx context.Context, t deploy.Target, r deploy.Release, log io.Writer) error {
	if d.remote != nil {
		if strings.TrimSpace(t.App.Release) == "" {
			return nil
		}
		return d.remote.call(ctx, "Release", callArgs{Target: toWire(t), Release: r}, log, nil)
	}
	if strings.TrimSpace(t.App.Release) == "" {
		return nil
	}
	ctx, cancel := d.opContext(ctx)
	defer cancel()
	return d.release(ctx, t.Repo, t.App, targetVars(t), r, log)
}

// release runs app.release for r built with v.
func (d *Driver) release(ctx context.Context, repo string, app repoconfig.App, v appVars, r deploy.Release, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	src, err := d.prepare(ctx, repo, app, v, r, log)
	if err != nil {
		return fmt.Errorf("release phase of %s@%s: %w", repo, short(r.SHA), err)
	}
	tail := &tailBuffer{max: 64 << 10}
	out := v.maskWriter(io.MultiWriter(tail, log))
	fmt.Fprintf(out, "$ %s\n", app.Release)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "sh", "-c", app.Release)
	cmd.Dir = src
	cmd.Env = d.childEnv(v)
	cmd.Stdout, cmd.Stderr = out, out
	err = d.runCmd(cmd)
	out.Flush()
	if err != nil {
		why := "failed: " + err.Error()
		var exit *exec.ExitError
		switch {
		case ctx.Err() != nil && d.ctx.Err() != nil:
			why = "was stopped: the driver is closing"
		case ctx.Err() != nil:
			why = fmt.Sprintf("was stopped after %s: %v", time.Since(start).Round(time.Millisecond), context.Cause(ctx))
		case errors.As(err, &exit):
			why = exitStatus(exit)
		}
		return &ReleaseError{Release: repo + "@" + short(r.SHA), Command: app.Release, Reason: why, Tail: lastLines(tail.String(), 20)}
	}
	fmt.Fprintf(log, "release phase of %s@%s done in %s\n", repo, short(r.SHA), time.Since(start).Round(time.Millisecond))
	return nil
}

// exitStatus says how a command ended: "exited with status 3", or "was
// killed by signal terminated".
func exitStatus(e *exec.ExitError) string {
	if ws, ok := e.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "was killed by signal " + ws.Signal().String()
	}
	return fmt.Sprintf("exited with status %d", e.ExitCode())
}

// ReleaseError is a failed app.release, with the end of its output
// (secret values masked).
type ReleaseError struct {
	Release string // owner/repo@sha7
	Command string
	Reason  string // exit status, or why it was stopped
	Tail    string // last lines of output
}

func (e *ReleaseError) Error() string {
	msg := fmt.Sprintf("`%s` in %s %s", e.Command, e.Release, e.Reason)
	if e.Tail == "" {
		return msg + ", with no output; run it by hand in the build to see why"
	}
	return msg + "; last lines of output:\n" + e.Tail
}

// runCmd runs a build or release command to its end: started from the
// spawner's thread (so it dies with the bot), in its own process group,
// which is killed whole when the command's context ends.
func (d *Driver) runCmd(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := d.startCmd(cmd); err != nil {
		return err
	}
	return cmd.Wait()
}
