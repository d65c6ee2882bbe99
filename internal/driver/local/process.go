package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
)

// process is one child process running one release in one slot.
type process struct {
	fleet   *fleet
	slot    *slot
	release string
	port    int
	backend *backend
	cmd     *exec.Cmd
	logPath string
	started time.Time
	vars    appVars // what it was started with: its secrets are masked in what it says
	// closeLog ends its output to logPath, once it has been reaped.
	closeLog func()

	done     chan struct{} // closed once the process has been reaped
	exitErr  error         // set before done closes
	settled  chan struct{} // closed once its starter adopted it into the slot or stopped it
	settle1  sync.Once
	stopping atomic.Bool // the driver is stopping it: an exit is not a crash
}

func (p *process) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// settle tells the process's watcher that its starter is done with it: from
// now on an unexpected exit is the supervisor's to handle.
func (p *process) settle() { p.settle1.Do(func() { close(p.settled) }) }

func (p *process) exitSummary() string {
	select {
	case <-p.done:
	default:
		return "running"
	}
	msg := "exited"
	if p.exitErr != nil {
		msg = "exited: " + p.exitErr.Error()
	}
	if tail := logTail(p.logPath, startLine(p), 20); tail != "" {
		msg += "; last lines of " + p.logPath + ":\n" + tail
	}
	return p.vars.mask(msg)
}

func startLine(p *process) string {
	return "--- " + p.slot.id + " release " + p.release + " port " + strconv.Itoa(p.port)
}

// kill sends SIGKILL to the process group.
func (p *process) kill() {
	if p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// checkClient makes health checks: no keep-alive, so no idle connection
// holds up a stopping instance.
var checkClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// check sends one GET of path straight to the process.
func (p *process) check(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(p.port)+path, nil)
	if err != nil {
		return err
	}
	resp, err := checkClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s answered %s: %s", path, resp.Status, p.vars.mask(strings.TrimSpace(string(body))))
	}
	return nil
}

// maxInstanceLog is the size past which an instance's log is moved to
// <log>.1 when the instance next starts.
const maxInstanceLog = 16 << 20

// errPortTaken: the child could not bind the port it was given (something
// else took it between our check and its bind); the caller tries another.
var errPortTaken = errors.New("port taken")

// startProcess starts the slot's process on the release and returns once it
// accepts connections. The caller adopts it into the slot (or stops it) and
// then calls settle. The process gets v (and its build is the one made with
// v). Prepare must have run; the build directory is checked.
func (d *Driver) startProcess(ctx context.Context, f *fleet, s *slot, r deploy.Release, v appVars, log io.Writer) (*process, error) {
	if log == nil {
		log = io.Discard
	}
	f.mu.Lock()
	app := f.app
	f.mu.Unlock()
	dir, err := d.buildDir(f.key.Repo, r.SHA, v)
	if err != nil {
		return nil, err
	}
	if !exists(filepath.Join(filepath.Dir(dir), builtMarker)) {
		if _, err := d.prepare(ctx, f.key.Repo, app, v, r, log); err != nil {
			return nil, err
		}
	}
	if strings.TrimSpace(app.Run) == "" {
		return nil, errors.New("app.run is empty: set the command that starts one instance")
	}
	for attempt := 1; ; attempt++ {
		p, err := d.spawn(ctx, f, s, r, v, dir)
		if errors.Is(err, errPortTaken) && attempt < 3 {
			d.log.Info("instance could not bind its port; trying another", "fleet", f.key.String(), "instance", s.id)
			continue
		}
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "%s: started %s on 127.0.0.1:%d (pid %d)\n", s.id, short(r.SHA), p.port, p.cmd.Process.Pid)
		return p, nil
	}
}

// runCommand is the shell command line for app.run. A simple command gets
// an exec, so that the app itself (not a shell around it) is the process the
// driver signals and the one that dies with the bot (Pdeathsig reaches only
// the direct child, and dash does not exec the last command by itself).
func runCommand(run string) string {
	run = strings.TrimSpace(run)
	if strings.ContainsAny(run, ";&|()`\n") {
		return run // a list or pipeline: sh stays (write exec in it yourself)
	}
	first, _, _ := strings.Cut(run, " ")
	switch first {
	case "exec", "cd", "if", "for", "while", "until", "case", "{", "!":
		return run
	}
	if strings.Contains(first, "=") {
		return run // FOO=1 ./app: assignments cannot follow exec
	}
	return "exec " + run
}

func (d *Driver) spawn(ctx context.Context, f *fleet, s *slot, r deploy.Release, v appVars, dir string) (*process, error) {
	d.forgetIdleTraffic(time.Now()) // a new process is when the releases seen can grow
	port, err := d.instancePort()
	if err != nil {
		return nil, err
	}
	logPath := d.instanceLog(f.key, s.id)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		d.releasePort(port)
		return nil, err
	}
	if st, err := os.Stat(logPath); err == nil && st.Size() > maxInstanceLog {
		_ = os.Rename(logPath, logPath+".1") // keep one older log, bounded
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		d.releasePort(port)
		return nil, err
	}
	out, closeLog := instanceOutput(logf, v)
	started := false
	defer func() {
		if !started {
			closeLog()
		}
	}()

	f.mu.Lock()
	portEnv := f.app.PortEnv
	run := f.app.Run
	f.mu.Unlock()
	if portEnv == "" {
		portEnv = "PORT"
	}
	p := &process{
		fleet:   f,
		slot:    s,
		release: r.SHA,
		port:    port,
		backend: f.proxy.newBackend(s.id, r.SHA, port),
		logPath: logPath,
		vars:    v,
		done:    make(chan struct{}),
		settled: make(chan struct{}),

		closeLog: closeLog,
	}
	fmt.Fprintf(logf, "%s at %s\n", startLine(p), time.Now().Format(time.RFC3339))
	cmd := exec.Command("sh", "-c", runCommand(run))
	cmd.Dir = dir
	cmd.Env = d.childEnv(v, portEnv+"="+strconv.Itoa(port), "INSTANCE_ID="+s.id, "RELEASE="+r.SHA)
	cmd.Stdout, cmd.Stderr = out, out
	// A pipe to the mask: Wait waits for it, but not forever for one
	// that a child left behind holds open.
	cmd.WaitDelay = 2 * time.Second
	// Own process group: stopping signals the whole group. Pdeathsig: the
	// child never outlives the bot, even when the bot is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p.cmd = cmd

	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		d.releasePort(port)
		return nil, ErrClosed
	}
	if err := d.startCmd(cmd); err != nil {
		d.mu.Unlock()
		d.releasePort(port)
		return nil, fmt.Errorf("start %q: %w", run, err)
	}
	p.started = time.Now()
	started = true
	d.procs[p] = struct{}{}
	d.wg.Add(1)
	d.mu.Unlock()
	go d.watch(p)

	if err := d.waitListening(ctx, p); err != nil {
		p.stopping.Store(true)
		p.settle()
		if p.running() {
			d.stop(context.WithoutCancel(ctx), p)
		}
		if strings.Contains(logTail(logPath, startLine(p), 20), "address already in use") {
			return nil, fmt.Errorf("%w: %w", errPortTaken, err)
		}
		return nil, err
	}
	return p, nil
}

// waitListening waits until the process accepts TCP connections on its port.
func (d *Driver) waitListening(ctx context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, d.opts.StartTimeout)
	defer cancel()
	addr := "127.0.0.1:" + strconv.Itoa(p.port)
	var dialer net.Dialer
	for {
		dctx, dcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		c, err := dialer.DialContext(dctx, "tcp", addr)
		dcancel()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s %s before listening on port %d", p.slot.id, p.exitSummary(), p.port)
		case <-ctx.Done():
			return fmt.Errorf("%s not listening on port %d after %s: %w", p.slot.id, p.port, time.Since(p.started).Round(time.Millisecond), ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// stop stops p: SIGTERM to its group, SIGKILL after StopTimeout (or when
// ctx ends), and waits until it is reaped. The caller has taken it out of
// rotation.
func (d *Driver) stop(ctx context.Context, p *process) {
	p.stopping.Store(true)
	p.settle()
	// Idle keep-alive connections would hold up the app's graceful shutdown.
	p.backend.transport.CloseIdleConnections()
	if !p.running() {
		return
	}
	pgid := p.cmd.Process.Pid
	deadline := time.Now().Add(d.opts.StopTimeout)
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	timer := time.NewTimer(d.opts.StopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		d.log.Warn("instance did not stop in time; killing it", "fleet", p.fleet.key.String(), "instance", p.slot.id, "bound", d.opts.StopTimeout)
		p.kill()
		<-p.done
	case <-ctx.Done():
		p.kill()
		<-p.done
	}
	// What else is left of the group (a shell's children) gets the same
	// bound; then SIGKILL.
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// watch reaps p and, when it exits without the driver stopping it, hands it
// to the supervisor.
func (d *Driver) watch(p *process) {
	defer d.wg.Done()
	p.exitErr = p.cmd.Wait()
	p.closeLog()
	close(p.done)
	d.mu.Lock()
	delete(d.procs, p)
	delete(d.used, p.port)
	d.mu.Unlock()
	select {
	case <-p.settled:
	case <-d.ctx.Done():
		return
	}
	if p.stopping.Load() || d.ctx.Err() != nil {
		return
	}
	f, s := p.fleet, p.slot
	f.mu.Lock()
	current := s.proc == p
	f.mu.Unlock()
	if current {
		d.supervise(f, s, p)
	}
}

// supervise restarts a slot whose process died on its own: out of rotation
// at once, restarted on the same release with backoff, back in rotation once
// it passes the health checks (if it was in rotation and nobody drained it
// meanwhile). It gives up when the slot's process is replaced by someone
// else or the driver closes.
func (d *Driver) supervise(f *fleet, s *slot, dead *process) {
	f.mu.Lock()
	f.proxy.remove(dead.backend)
	if time.Since(dead.started) > 30*time.Second {
		s.crashes = 0
	}
	s.crashes++
	crashes := s.crashes
	rel, v := s.release, s.vars
	h := healthOf(f.health)
	f.mu.Unlock()
	dead.backend.transport.CloseIdleConnections()
	d.log.Warn("instance exited unexpectedly; restarting it", "fleet", f.key.String(), "instance", s.id,
		"release", short(rel.SHA), "exit", dead.exitErr, "crashes_in_a_row", crashes, "log", dead.logPath)

	for attempt := 0; ; attempt++ {
		delay := min(100*time.Millisecond<<min(crashes-1+attempt, 10), 10*time.Second)
		select {
		case <-time.After(delay):
		case <-d.ctx.Done():
			return
		}
		if err := s.lock(d.ctx); err != nil {
			return
		}
		f.mu.Lock()
		current := s.proc == dead
		f.mu.Unlock()
		if !current {
			s.unlock()
			return
		}
		p, err := d.startProcess(d.ctx, f, s, rel, v, io.Discard)
		if err != nil {
			s.unlock()
			if d.ctx.Err() != nil {
				return
			}
			d.log.Warn("restart failed; trying again", "fleet", f.key.String(), "instance", s.id, "err", err)
			continue
		}
		f.mu.Lock()
		s.proc, s.checkedAt, s.checkErr = p, time.Time{}, nil
		f.mu.Unlock()
		p.settle()
		s.unlock()
		d.log.Info("instance restarted", "fleet", f.key.String(), "instance", s.id, "release", short(rel.SHA), "port", p.port)

		if err := d.waitHealthy(d.ctx, f, s, p, h); err != nil {
			d.log.Warn("restarted instance is not healthy; left out of rotation", "fleet", f.key.String(), "instance", s.id, "err", err)
			return
		}
		f.mu.Lock()
		readmit := s.proc == p && s.want && p.running()
		if readmit {
			f.proxy.add(p.backend)
		}
		f.mu.Unlock()
		if readmit {
			d.log.Info("restarted instance back in rotation", "fleet", f.key.String(), "instance", s.id)
		}
		return
	}
}

// instanceOutput is where an instance writes stdout and stderr: its log
// file, through a mask of its secret values when it has any (a pipe then,
// so the value never reaches the disk); closeLog ends it once the process
// is reaped.
func instanceOutput(logf *os.File, v appVars) (out io.Writer, closeLog func()) {
	if len(v.secrets) == 0 {
		// The child writes to the file itself: no copy in between.
		return logf, func() { logf.Close() }
	}
	mw := v.maskWriter(logf)
	return mw, func() { mw.Flush(); logf.Close() }
}

// instanceLog is where a slot's process writes stdout and stderr.
func (d *Driver) instanceLog(k fleetKey, id string) string {
	owner, name, _ := strings.Cut(k.Repo, "/")
	base := filepath.Join(d.opts.DataDir, "local", "logs", safeName(owner), safeName(name))
	if k.PR > 0 {
		return filepath.Join(base, "previews", strconv.Itoa(k.PR)+".log")
	}
	return filepath.Join(base, "environments", safeName(k.Env), safeName(strings.ToLower(id))+".log")
}

// logTail is the last n lines of the log file after its last line starting
// with marker (the current run's output).
func logTail(path, marker string, n int) string {
	b, err := readTail(path, 64<<10)
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndex(s, marker); i >= 0 {
		s = s[i:]
		if j := strings.IndexByte(s, '\n'); j >= 0 {
			s = s[j+1:]
		} else {
			s = ""
		}
	}
	return lastLines(s, n)
}

func readTail(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(st.Size()-limit, 0)
	b := make([]byte, st.Size()-off)
	_, err = f.ReadAt(b, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b, nil
}

func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
