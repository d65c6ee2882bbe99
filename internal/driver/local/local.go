// Package local is the local driver (SPEC §7): it fetches a release's source
// tarball, builds it with app.build, runs every instance as a child process
// on a loopback port, supervises those processes, and puts a reverse proxy of
// its own in front of each environment and each preview, on a port that stays
// the same across restarts, so that a rollout never drops a request. Each
// proxy measures the traffic of every release behind it (traffic.go): the
// engine reads it through Traffic to judge a release (SPEC §6.8), and
// Prometheus through Collector.
//
// Builds, the release phase (Release) and instances get the app's
// variables and secrets (deploy.Target.Vars and Secrets), PATH and HOME,
// and nothing else of the bot's environment (vars.go). Secret values are
// never written to disk and are masked in every output the driver keeps
// or passes on.
//
// With Options.Keeper (bot serve) all of that runs in a keeper, a process
// of its own that outlives the bot (keeper.go); the Driver the engine sees
// then forwards every call to it (remote.go, wire.go) and owns only the
// connection. Without it (bot demo, library use, tests) it all runs in
// this process and stops with it.
//
// It owns everything under DataDir/builds (one build per repository, SHA
// and set of variables) and DataDir/local (ports.json, state.json,
// build.key, instance logs). It knows nothing of GitHub: the tarball comes
// from the deploy.Source it is given.
//
// Layout on disk:
//
//	builds/<owner>/<repo>/<sha>/<vars>/src        the extracted tree, built in place
//	builds/<owner>/<repo>/<sha>/<vars>/build.log  output of the last build
//	builds/<owner>/<repo>/<sha>/<vars>/built      present once the build succeeded
//	local/build.key                               key of the <vars> names (varsKey)
//	local/ports.json                              proxy port of every environment and preview
//	local/state.json                              release and variables of every instance, for Restore
//	local/logs/<owner>/<repo>/...                 stdout and stderr of every instance
//	local/keeper.sock, keeper.pid, keeper.log     the keeper's socket (0600), pid and log
//	local/bot.sock                                where the keeper asks the bot for tarballs and secrets (0600)
package local

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
)

// Compile-time checks: the engine sees the driver only through these.
var (
	_ deploy.Driver       = (*Driver)(nil)
	_ deploy.Surger       = (*Driver)(nil)
	_ deploy.Previewer    = (*Driver)(nil)
	_ deploy.TrafficMeter = (*Driver)(nil)
)

// ErrClosed is returned by every method once Close has begun.
var ErrClosed = errors.New("local driver is closed")

// Options configures a Driver. Only DataDir and Source are required.
type Options struct {
	// DataDir holds builds, instance logs, ports.json and state.json.
	DataDir string
	// Source fetches a release's source tarball (the GitHub API in the bot).
	Source deploy.Source
	// Logger receives the driver's own lines; default slog.Default().
	Logger *slog.Logger
	// BuildTimeout bounds one app.build run; default 10m.
	BuildTimeout time.Duration
	// DrainTimeout bounds how long Drain waits for in-flight requests; default 30s.
	DrainTimeout time.Duration
	// StopTimeout is how long a stopping instance has between SIGTERM and
	// SIGKILL; default 10s.
	StopTimeout time.Duration
	// StartTimeout bounds how long a started instance may take to accept
	// connections on its port; default 30s.
	StartTimeout time.Duration
	// ProxyHost is the address the proxies listen on and the host of their
	// URLs; default 127.0.0.1.
	ProxyHost string
	// PortBase, when set, is the first port the driver tries for proxies and
	// instances (it counts up from there); 0 lets the kernel pick free ports.
	PortBase int
	// Env is given (KEY=VALUE) to builds, the release phase and instances
	// after PATH and HOME, the only variables inherited from the bot, and
	// before the app's own: what the operator chooses to share with every
	// app's tools, e.g. GOWORK=off or GOFLAGS=-mod=mod. It is written
	// down, never taken from the bot's environment, so keep secrets out.
	Env []string
	// Secrets reads a secret's value again when Restore brings back an
	// instance that had it (state.json keeps the names only); nil: such an
	// instance stays down. The engine's SecretSource.
	Secrets deploy.SecretSource
	// Keeper, when set, runs the proxies and instances in a keeper process
	// that outlives this one (keeper.go); nil runs them in this process,
	// and they stop with it.
	Keeper *Keeper

	// inherited are proxies' listening sockets taken over from a keeper
	// being replaced: the proxies use them, and accept only once
	// serveHeld is called.
	inherited map[fleetKey]net.Listener
}

func (o *Options) defaults() error {
	if o.DataDir == "" {
		return errors.New("local driver: Options.DataDir is empty: set it to the directory for builds and state (DATA_DIR)")
	}
	if o.Source == nil {
		return errors.New("local driver: Options.Source is nil: the driver needs a way to fetch source tarballs")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.BuildTimeout = cmp.Or(o.BuildTimeout, 10*time.Minute)
	o.DrainTimeout = cmp.Or(o.DrainTimeout, 30*time.Second)
	o.StopTimeout = cmp.Or(o.StopTimeout, 10*time.Second)
	o.StartTimeout = cmp.Or(o.StartTimeout, 30*time.Second)
	o.ProxyHost = cmp.Or(o.ProxyHost, "127.0.0.1")
	if o.PortBase < 0 || o.PortBase > 65535 {
		return fmt.Errorf("local driver: Options.PortBase %d is not a port: use 0 (any free port) or 1024-65535", o.PortBase)
	}
	return nil
}

// Driver runs environments and previews on this machine. It is safe for
// concurrent use; operations on one instance are serialized.
type Driver struct {
	opts Options
	log  *slog.Logger

	// ctx ends when Close begins: it stops supervisors, builds and waits.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the driver starts

	stateMu sync.Mutex // serializes state.json and ports.json writes; taken before mu

	mu      sync.Mutex
	closed  bool
	fleets  map[fleetKey]*fleet
	ports   map[fleetKey]int      // proxy ports, as in ports.json
	used    map[int]bool          // ports handed to instances now
	procs   map[*process]struct{} // every child process not yet reaped
	builds  map[string]*buildCall // builds under way, by build directory
	lastTry int                   // last port tried above PortBase, as an offset

	spawns    chan spawnRequest // to the spawner, which starts every child
	spawnStop chan struct{}     // closed by Close once every child is stopped

	buildKey []byte // of the build directories' names (varsKey)

	// remote is the keeper every call goes to; nil in process.
	remote *remote
	// holding: proxies do not accept yet (see Options.inherited).
	holding bool
}

// New opens the driver's data directory, reads ports.json and state.json and
// starts the proxy of every environment and preview recorded there, on its
// recorded port (another one, logged, if that port is taken). It starts no
// instance: call Restore for that.
func New(opts Options) (*Driver, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(opts.DataDir, "local"), 0o755); err != nil {
		return nil, fmt.Errorf("local driver: %w", err)
	}
	if opts.Keeper != nil {
		d := &Driver{opts: opts, log: opts.Logger.With("driver", "local")}
		r, err := newRemote(d)
		if err != nil {
			return nil, err
		}
		d.remote = r
		return d, nil
	}
	buildKey, err := loadBuildKey(opts.DataDir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Driver{
		opts:   opts,
		log:    opts.Logger.With("driver", "local"),
		ctx:    ctx,
		cancel: cancel,
		fleets: map[fleetKey]*fleet{},
		ports:  map[fleetKey]int{},
		used:   map[int]bool{},
		procs:  map[*process]struct{}{},
		builds: map[string]*buildCall{},

		lastTry:   -1,
		spawns:    make(chan spawnRequest),
		spawnStop: make(chan struct{}),
		buildKey:  buildKey,
		holding:   opts.inherited != nil,
	}
	ports, err := d.readPorts()
	if err != nil {
		cancel()
		return nil, err
	}
	st, err := d.readState()
	if err != nil {
		cancel()
		return nil, err
	}
	d.wg.Add(1)
	go d.spawner()
	d.mu.Lock()
	for k, p := range ports {
		d.ports[k] = p
	}
	var startErr error
	for _, fs := range st.Fleets {
		f, _, err := d.fleetLocked(fs.key(), fs.Name)
		if err != nil {
			startErr = errors.Join(startErr, err)
			continue
		}
		f.restoreFrom(fs)
	}
	for k := range ports {
		if _, _, err := d.fleetLocked(k, k.Env); err != nil {
			startErr = errors.Join(startErr, err)
		}
	}
	d.mu.Unlock()
	if startErr != nil {
		_ = d.Close(context.Background())
		return nil, startErr
	}
	if err := d.saveState(); err != nil {
		d.log.Warn("could not write state", "err", err)
	}
	return d, nil
}

// URL is the stable address of an environment's proxy, e.g.
// http://127.0.0.1:41234. Asking for it reserves the port (and starts the
// proxy, which answers 503 until an instance is in rotation). It returns ""
// only when the driver is closed or no port could be had.
func (d *Driver) URL(repo, env string) string {
	if d.remote != nil {
		var url string
		if err := d.remote.quick("URL", callArgs{Repo: repo, Env: env}, &url); err != nil {
			d.log.Warn("no proxy for environment", "repo", repo, "environment", env, "err", err)
		}
		return url
	}
	k := fleetKey{Repo: repo, Env: strings.ToLower(env)}
	d.mu.Lock()
	f, created, err := d.fleetLocked(k, env)
	d.mu.Unlock()
	if err != nil {
		d.log.Warn("no proxy for environment", "repo", repo, "environment", env, "err", err)
		return ""
	}
	if created {
		d.saveStateOrLog()
	}
	return f.url
}

// PreviewURL is the address of a pull request's preview, or "" when it has
// none.
func (d *Driver) PreviewURL(repo string, number int) string {
	if d.remote != nil {
		var url string
		if err := d.remote.quick("PreviewURL", callArgs{Repo: repo, Number: number}, &url); err != nil {
			d.log.Warn("preview URL unknown", "repo", repo, "preview", number, "err", err)
		}
		return url
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if f := d.fleets[fleetKey{Repo: repo, PR: number}]; f != nil {
		return f.url
	}
	return ""
}

// Close stops every proxy and every instance gracefully (SIGTERM, SIGKILL
// after StopTimeout) and waits for the driver's goroutines, bounded by ctx.
// state.json is kept: a new Driver on the same DataDir can Restore. With a
// keeper, Close only lets go of it: the keeper and all it runs go on.
func (d *Driver) Close(ctx context.Context) error {
	if d.remote != nil {
		d.remote.close()
		return nil
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	fleets := make([]*fleet, 0, len(d.fleets))
	for _, f := range d.fleets {
		fleets = append(fleets, f)
	}
	d.mu.Unlock()
	d.cancel()

	var wg sync.WaitGroup
	for _, f := range fleets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Requests in flight finish; a stream or long poll gets the
			// drain bound, then its connection is closed.
			sctx, cancel := context.WithTimeout(ctx, d.opts.DrainTimeout)
			defer cancel()
			f.proxy.shutdown(sctx)
		}()
	}
	wg.Wait()
	d.stopAll(ctx)
	close(d.spawnStop)

	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		d.killAll()
		<-done
		return fmt.Errorf("local driver: close: %w (instances killed)", ctx.Err())
	}
}

// spawnRequest asks the spawner to start a command.
type spawnRequest struct {
	cmd *exec.Cmd
	err chan error
}

// spawner starts every child process from one OS thread that lives as long
// as the driver. Pdeathsig fires when the thread that started the child
// exits, not the process: a child started from an arbitrary goroutine's
// thread could be killed whenever the runtime retires that thread. The
// thread stays locked and exits with the spawner at the end of Close, which
// kills whatever child is somehow still left.
func (d *Driver) spawner() {
	defer d.wg.Done()
	runtime.LockOSThread()
	for {
		select {
		case r := <-d.spawns:
			r.err <- r.cmd.Start()
		case <-d.spawnStop:
			return
		}
	}
}

// startCmd starts cmd from the spawner's thread.
func (d *Driver) startCmd(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	select {
	case d.spawns <- spawnRequest{cmd: cmd, err: errc}:
		return <-errc
	case <-d.spawnStop:
		return ErrClosed
	}
}

// stopAll stops every live child process in parallel.
func (d *Driver) stopAll(ctx context.Context) {
	d.mu.Lock()
	procs := make([]*process, 0, len(d.procs))
	for p := range d.procs {
		procs = append(procs, p)
	}
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.fleet.proxy.remove(p.backend)
			d.stop(ctx, p)
		}()
	}
	wg.Wait()
}

func (d *Driver) killAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for p := range d.procs {
		p.kill()
	}
}

// allocPort finds a free port on host. With PortBase it counts up from
// there, skipping ports the driver already uses; it returns the listener so
// a proxy can keep it (an instance's caller closes it and hands the port on).
// Called with d.mu held.
func (d *Driver) listenFree(host string) (net.Listener, int, error) {
	inUse := func(port int) bool {
		if d.used[port] {
			return true
		}
		for _, p := range d.ports {
			if p == port {
				return true
			}
		}
		return false
	}
	if d.opts.PortBase == 0 {
		for range 20 {
			ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
			if err != nil {
				return nil, 0, err
			}
			port := ln.Addr().(*net.TCPAddr).Port
			if !inUse(port) {
				return ln, port, nil
			}
			ln.Close()
		}
		return nil, 0, errors.New("the kernel kept handing out ports already in use")
	}
	span := 65536 - d.opts.PortBase
	for i := range span {
		port := d.opts.PortBase + (d.lastTry+1+i)%span
		if inUse(port) {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		d.lastTry = port - d.opts.PortBase
		return ln, port, nil
	}
	return nil, 0, fmt.Errorf("no free port from %d up", d.opts.PortBase)
}

// instancePort reserves a free loopback port for a child process.
func (d *Driver) instancePort() (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, ErrClosed
	}
	ln, port, err := d.listenFree("127.0.0.1")
	if err != nil {
		return 0, fmt.Errorf("no free port for an instance: %w", err)
	}
	ln.Close()
	d.used[port] = true
	return port, nil
}

func (d *Driver) releasePort(port int) {
	d.mu.Lock()
	delete(d.used, port)
	d.mu.Unlock()
}

// opContext is ctx that also ends when Close begins, so no operation
// outlives the driver.
func (d *Driver) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(d.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// short is a SHA as people read it.
func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}
