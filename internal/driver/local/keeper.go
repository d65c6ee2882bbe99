package local

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The keeper is the part of the driver that outlives the bot: a process of
// its own, started by the bot in a session of its own, that runs the
// in-process driver (proxies, instances, supervisor, builds, state.json)
// and serves it on DataDir/local/keeper.sock (mode 0600). Its instances
// die with it (Pdeathsig); nothing of it dies with the bot.
//
// Besides the calls of wire.go, whose form may change between versions
// (keeperProtocol), it answers two that never change, so that any keeper
// can be replaced by a newer one without refusing a connection:
//
//	GET  /handoff/listeners  the proxies' listening sockets, passed as
//	                         file descriptors (SCM_RIGHTS) with a JSON
//	                         list of the environment or preview of each
//	POST /handoff/retire     stop accepting, drain, stop the instances, exit
//
// The newcomer takes the listeners, starts every instance on its recorded
// release (fresh ports), health-checks and admits it, starts accepting on
// the same sockets, retires the old keeper and takes over keeper.sock.

// handedListener is one proxy's socket in /handoff/listeners.
type handedListener struct {
	Repo string
	Env  string
	PR   int
}

// RunKeeper is the hidden subcommand `bot keeper --data-dir DIR --config
// JSON` that the driver starts (Options.Keeper). It logs to stderr and
// returns when ctx ends (everything it runs stopped) or once a newer
// keeper has replaced it.
func RunKeeper(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("keeper", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "the bot's DATA_DIR")
	config := fs.String("config", "{}", "the driver's configuration, as the bot gives it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dataDir == "" {
		return errors.New("keeper: --data-dir is required; the bot starts the keeper by itself, there is no need to run it by hand")
	}
	var cfg keeperConfig
	if err := json.Unmarshal([]byte(*config), &cfg); err != nil {
		return fmt.Errorf("keeper: --config: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("keeper", os.Getpid())
	k := &keeper{dataDir: *dataDir, log: log, retired: make(chan struct{})}
	return k.run(ctx, cfg)
}

type keeper struct {
	dataDir string
	log     *slog.Logger
	d       *Driver

	retireOnce sync.Once
	retired    chan struct{} // closed when a newer keeper asks this one to go
}

func (k *keeper) run(ctx context.Context, cfg keeperConfig) error {
	sock := keeperSock(k.dataDir)
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		return fmt.Errorf("keeper: %w", err)
	}
	unlock, err := startLock(k.dataDir)
	if err != nil {
		return err
	}
	defer func() { unlock() }()
	var inherited map[fleetKey]net.Listener
	old := &remote{sock: sock, client: unixClient(sock), ctx: ctx}
	if proto, err := old.hello(ctx); err == nil {
		if proto == keeperProtocol {
			k.log.Info("a keeper of this protocol runs already; leaving it be")
			return nil
		}
		k.log.Info("replacing the running keeper", "theirs", proto, "ours", keeperProtocol)
		if inherited, err = takeListeners(sock); err != nil {
			return fmt.Errorf("keeper: taking the proxies' sockets over from the running keeper: %w", err)
		}
	}
	d, err := New(Options{
		DataDir:      k.dataDir,
		Source:       botSource(k.dataDir),
		Secrets:      botSecrets{client: botClient(k.dataDir)},
		Logger:       k.log,
		BuildTimeout: cfg.BuildTimeout,
		DrainTimeout: cfg.DrainTimeout,
		StopTimeout:  cfg.StopTimeout,
		StartTimeout: cfg.StartTimeout,
		ProxyHost:    cfg.ProxyHost,
		PortBase:     cfg.PortBase,
		Env:          cfg.Env,
		inherited:    inherited,
	})
	for _, ln := range inherited {
		if d == nil || !d.adopted(ln) {
			ln.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("keeper: %w", err)
	}
	k.d = d
	// A keeper started afresh restores when the bot calls Restore (at its
	// start, and when it replaces a dead keeper): then the bot's Restore
	// returns once everything is back in rotation.
	if inherited != nil {
		// Every instance up and admitted before the first request reaches
		// this keeper's proxies: then the old keeper may go.
		if err := d.Restore(ctx); err != nil {
			k.log.Warn("some instances did not come back", "err", err)
		}
		d.serveHeld()
		if err := retire(ctx, old.client); err != nil {
			k.log.Warn("the old keeper did not take its leave; it still serves its connections", "err", err)
		}
	}
	srv, err := k.serve(sock)
	if err != nil {
		_ = d.Close(context.Background())
		return err
	}
	pidPath := filepath.Join(k.dataDir, "local", "keeper.pid")
	if err := writeFileAtomic(pidPath, []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
		k.log.Warn("could not write keeper.pid", "err", err)
	}
	k.log.Info("keeper serving", "socket", sock, "protocol", keeperProtocol)
	unlock()
	unlock = func() {}

	replaced := false
	select {
	case <-ctx.Done():
		k.log.Info("stopping: every instance stops")
	case <-k.retired:
		replaced = true
		k.log.Info("a newer keeper took over: draining and stopping")
	}
	_ = srv.Close()
	cctx, cancel := context.WithTimeout(context.Background(), d.opts.DrainTimeout+d.opts.StopTimeout+5*time.Second)
	defer cancel()
	err = d.Close(cctx)
	// A replaced keeper leaves keeper.sock and keeper.pid alone: they are
	// its successor's, bound and written around the moment it asked this
	// one to go, so checking the pid first would still race with them (it
	// did: the old keeper unlinked the new one's socket, and the bot could
	// no longer reach a keeper that ran).
	if b, rerr := os.ReadFile(pidPath); !replaced && rerr == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		_ = os.Remove(pidPath)
		_ = os.Remove(sock)
	}
	return err
}

// startLock makes keepers start on one DATA_DIR one at a time, until the
// first serves: several bots (workers) may share the DATA_DIR, and each
// starts a keeper when none answers (at start-up, or when the keeper
// died). The one that waited finds the first answering and leaves.
func startLock(dataDir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dataDir, "local", "keeper.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keeper: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("keeper: %w", err)
	}
	return func() { f.Close() }, nil
}

// serve answers on keeper.sock. The socket file is not removed when the
// listener closes: a newer keeper may have bound the path meanwhile.
func (k *keeper) serve(sock string) (*http.Server, error) {
	_ = os.Remove(sock) // a dead keeper's, or the one being replaced
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("keeper: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(sock, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("keeper: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(struct {
			Protocol string
			PID      int
		}{keeperProtocol, os.Getpid()})
	})
	mux.HandleFunc("GET /watch", k.serveWatch)
	mux.HandleFunc("POST /call/{method}", k.serveCall)
	mux.HandleFunc("GET /handoff/listeners", k.serveListeners)
	mux.HandleFunc("POST /handoff/retire", func(w http.ResponseWriter, _ *http.Request) {
		k.retireOnce.Do(func() { close(k.retired) })
		w.WriteHeader(http.StatusOK)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}

// serveWatch answers headers and then nothing, until the bot or this
// keeper goes: the bot's way to learn at once that the keeper died.
func (k *keeper) serveWatch(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	select {
	case <-r.Context().Done():
	case <-k.retired:
	}
}

func (k *keeper) serveCall(w http.ResponseWriter, r *http.Request) {
	call := keeperCalls[r.PathValue("method")]
	if call == nil {
		http.Error(w, "no such call: "+r.PathValue("method")+" (a bot of another version?)", http.StatusNotFound)
		return
	}
	var a callArgs
	if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
		http.Error(w, "bad arguments: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fw := &frameWriter{enc: json.NewEncoder(w), flush: w.(http.Flusher).Flush}
	result, err := call(r.Context(), k.d, a, fw)
	fw.end(result, err)
}

// serveListeners passes the proxies' listening sockets to the keeper
// replacing this one. Both accept on them until this one retires, so no
// connection is refused meanwhile.
func (k *keeper) serveListeners(w http.ResponseWriter, _ *http.Request) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "cannot hand over", http.StatusInternalServerError)
		return
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	var list []handedListener
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	k.d.mu.Lock()
	for key, f := range k.d.fleets {
		tl, ok := f.ln.(*net.TCPListener)
		if !ok {
			continue
		}
		file, err := tl.File()
		if err != nil {
			k.log.Warn("a proxy's socket cannot be handed over", "fleet", key.String(), "err", err)
			continue
		}
		files = append(files, file)
		list = append(list, handedListener(key))
	}
	k.d.mu.Unlock()
	payload, _ := json.Marshal(list)
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f.Fd())
	}
	if _, _, err := conn.(*net.UnixConn).WriteMsgUnix(payload, syscall.UnixRights(fds...), nil); err != nil {
		k.log.Warn("handing the proxies' sockets over failed", "err", err)
		return
	}
	k.log.Info("handed the proxies' sockets over", "proxies", len(list))
}

// takeListeners asks the keeper on sock for its proxies' sockets.
func takeListeners(sock string) (map[fleetKey]net.Listener, error) {
	c, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	uc := c.(*net.UnixConn)
	_ = uc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(uc, "GET /handoff/listeners HTTP/1.1\r\nHost: keeper\r\n\r\n"); err != nil {
		return nil, err
	}
	buf := make([]byte, 1<<20)
	oob := make([]byte, syscall.CmsgSpace(4*1024))
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	rest, err := io.ReadAll(uc)
	if err != nil {
		return nil, err
	}
	payload := append(buf[:n:n], rest...)
	var fds []int
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		got, err := syscall.ParseUnixRights(&m)
		if err != nil {
			return nil, err
		}
		fds = append(fds, got...)
	}
	out := map[fleetKey]net.Listener{}
	var list []handedListener
	if err := json.Unmarshal(payload, &list); err != nil || len(list) != len(fds) {
		for _, fd := range fds {
			syscall.Close(fd)
		}
		return nil, fmt.Errorf("the running keeper's answer is not a list of %d sockets: %q", len(fds), payload)
	}
	for i, h := range list {
		f := os.NewFile(uintptr(fds[i]), "proxy")
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			for _, ln := range out {
				ln.Close()
			}
			return nil, err
		}
		out[fleetKey(h)] = ln
	}
	return out, nil
}

// retire tells the old keeper to go.
func retire(ctx context.Context, client *http.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://keeper/handoff/retire", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	client.CloseIdleConnections()
	return nil
}
