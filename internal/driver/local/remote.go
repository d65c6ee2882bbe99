package local

import (
	"bytes"
	"context"
	"encoding/json"
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

// Keeper makes the driver run its proxies and instances in a keeper: a
// process of its own (the bot's hidden subcommand) that outlives the bot,
// so that a bot stopped, upgraded or killed fails no request (SPEC §7).
type Keeper struct {
	// Command starts a keeper: the bot's own executable and its hidden
	// subcommand, e.g. {"/usr/local/bin/bot", "keeper"}. The driver adds
	// --data-dir and --config.
	Command []string
	// Lost hears that the keeper died (its instances with it) and that the
	// driver started another, which brought back `restored` environments
	// and previews; err says what did not come back. Optional.
	Lost func(ctx context.Context, restored int, err error)
}

// keeperStartTimeout bounds how long a keeper may take to answer once
// started: one that replaces another first brings every instance up.
const keeperStartTimeout = 3 * time.Minute

// remote is the bot's side of a keeper: every call of the driver the
// engine sees goes to it over keeper.sock, and the keeper asks the bot,
// over bot.sock, for what only the bot has (source tarballs need the
// GitHub token; secrets' values live in the bot's store).
type remote struct {
	d      *Driver
	sock   string
	client *http.Client

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	botSrv *http.Server
}

func keeperSock(dataDir string) string { return filepath.Join(dataDir, "local", "keeper.sock") }
func botSock(dataDir string) string    { return filepath.Join(dataDir, "local", "bot.sock") }

// ownBotSock is the socket one bot answers on besides bot.sock, named
// by its pid and the how-manyth driver of the process it is. Several bots
// (workers) may share a DATA_DIR and its keeper; bot.sock is the last one
// started, and when that one dies the keeper still reaches the others
// through theirs.
func ownBotSock(dataDir string, pid int, n int64) string {
	return filepath.Join(dataDir, "local", "bot-"+strconv.Itoa(pid)+"-"+strconv.FormatInt(n, 10)+".sock")
}

// drivers counts the remotes of this process, for ownBotSock.
var drivers atomic.Int64

// botClient is the keeper's HTTP client to the bots of dataDir: each new
// connection goes to bot.sock, or when no bot answers there to the first
// bot that answers on its own socket. A socket nobody listens on any more
// (its bot was killed) is removed.
func botClient(dataDir string) *http.Client {
	var dialer net.Dialer
	return &http.Client{Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, "unix", botSock(dataDir))
			if err == nil {
				return c, nil
			}
			others, _ := filepath.Glob(filepath.Join(dataDir, "local", "bot-*.sock"))
			for _, p := range others {
				c, derr := dialer.DialContext(ctx, "unix", p)
				if derr == nil {
					return c, nil
				}
				if errors.Is(derr, syscall.ECONNREFUSED) {
					_ = os.Remove(p)
				}
			}
			return nil, err
		},
		MaxIdleConnsPerHost: 16,
	}}
}

// unixClient is an HTTP client whose every connection goes to sock.
func unixClient(sock string) *http.Client {
	var dialer net.Dialer
	return &http.Client{Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: 16,
	}}
}

// newRemote serves bot.sock, adopts the keeper that runs (one of this
// protocol), or starts one (none runs, or one of another protocol, which
// the new one replaces), and watches it.
func newRemote(d *Driver) (*remote, error) {
	// The keeper runs in DataDir: a relative one would point elsewhere.
	abs, err := filepath.Abs(d.opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("local driver: %w", err)
	}
	d.opts.DataDir = abs
	ctx, cancel := context.WithCancel(context.Background())
	r := &remote{d: d, sock: keeperSock(d.opts.DataDir), client: unixClient(keeperSock(d.opts.DataDir)), ctx: ctx, cancel: cancel}
	if err := r.serveBot(); err != nil {
		cancel()
		return nil, err
	}
	if _, err := r.ensure(ctx); err != nil {
		r.close()
		return nil, err
	}
	r.wg.Add(1)
	go r.watch()
	return r, nil
}

// hello asks the keeper for its protocol.
func (r *remote) hello(ctx context.Context) (string, error) {
	proto, _, err := r.helloPID(ctx)
	return proto, err
}

// helloPID asks the keeper for its protocol and its pid.
func (r *remote) helloPID(ctx context.Context) (proto string, pid int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://keeper/hello", nil)
	if err != nil {
		return "", 0, err
	}
	// A connection of its own: one kept alive would still reach a keeper
	// being replaced, after its successor has bound the socket's path.
	once := unixClient(r.sock)
	once.Transport.(*http.Transport).DisableKeepAlives = true
	resp, err := once.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	var h struct {
		Protocol string
		PID      int
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return "", 0, fmt.Errorf("the keeper's hello: %w", err)
	}
	return h.Protocol, h.PID, nil
}

// ensure makes a keeper of this protocol answer on keeper.sock: the one
// there, or a new one. started says a new one had to be started.
func (r *remote) ensure(ctx context.Context) (started bool, err error) {
	proto, err := r.hello(ctx)
	if err == nil && proto == keeperProtocol {
		r.d.log.Info("adopted the running keeper", "socket", r.sock)
		return false, nil
	}
	if err == nil {
		r.d.log.Info("the running keeper speaks another protocol; starting one to replace it without dropping requests", "theirs", proto, "ours", keeperProtocol)
	}
	_, err = r.start(ctx)
	return true, err
}

// keeperConfig is the driver's configuration as a keeper gets it.
type keeperConfig struct {
	ProxyHost    string
	PortBase     int
	Env          []string
	BuildTimeout time.Duration
	DrainTimeout time.Duration
	StopTimeout  time.Duration
	StartTimeout time.Duration
}

// start starts a keeper in a session of its own, so that no signal meant
// for the bot (a terminal's ^C, a kill of its process group) reaches it,
// and waits until it answers with this protocol. ours is false when the
// keeper that answers is not the one this call started: another bot on
// the DATA_DIR started one at the same time, and this one left it be.
func (r *remote) start(ctx context.Context) (ours bool, err error) {
	o := r.d.opts
	if len(o.Keeper.Command) == 0 {
		return false, errors.New("local driver: Options.Keeper.Command is empty: it needs the command that starts a keeper")
	}
	cfg, err := json.Marshal(keeperConfig{ProxyHost: o.ProxyHost, PortBase: o.PortBase, Env: o.Env,
		BuildTimeout: o.BuildTimeout, DrainTimeout: o.DrainTimeout, StopTimeout: o.StopTimeout, StartTimeout: o.StartTimeout})
	if err != nil {
		return false, err
	}
	logPath := filepath.Join(o.DataDir, "local", "keeper.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return false, fmt.Errorf("local driver: the keeper's log: %w", err)
	}
	defer logf.Close()
	args := append(append([]string{}, o.Keeper.Command[1:]...), "--data-dir", o.DataDir, "--config", string(cfg))
	cmd := exec.Command(o.Keeper.Command[0], args...)
	cmd.Dir = o.DataDir
	// Nothing of the bot's environment (its GitHub key among it): the
	// keeper's children get PATH and HOME only, and so does the keeper.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("local driver: starting the keeper (%s): %w", o.Keeper.Command[0], err)
	}
	exited := make(chan error, 1)
	// Reaps the keeper should it die while this bot runs; a keeper that
	// outlives the bot is reaped by whoever adopts it.
	go func() { exited <- cmd.Wait() }()
	r.d.log.Info("started a keeper", "pid", cmd.Process.Pid, "log", logPath)

	ctx, cancel := context.WithTimeout(ctx, keeperStartTimeout)
	defer cancel()
	for {
		proto, pid, err := r.helloPID(ctx)
		if err == nil && proto == keeperProtocol {
			return pid == cmd.Process.Pid, nil
		}
		select {
		case err := <-exited:
			if proto, herr := r.hello(ctx); herr == nil && proto == keeperProtocol {
				return false, nil // another bot's keeper started first; this one left it be
			}
			return false, fmt.Errorf("local driver: the keeper exited (%v) before answering; see %s:\n%s", err, logPath, lastLines(tailOf(logPath), 20))
		case <-ctx.Done():
			return false, fmt.Errorf("local driver: the keeper did not answer within %s; see %s", keeperStartTimeout, logPath)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func tailOf(path string) string {
	b, _ := readTail(path, 8<<10)
	return string(b)
}

// watch holds a connection to the keeper; when it breaks and this bot is
// not closing, the keeper died (its instances with it): it starts another,
// which restores what state.json records, and says so through Lost.
func (r *remote) watch() {
	defer r.wg.Done()
	for {
		err := r.hold()
		if r.ctx.Err() != nil {
			return
		}
		if proto, herr := r.hello(r.ctx); herr == nil && proto == keeperProtocol {
			time.Sleep(100 * time.Millisecond) // a passing fault: the keeper answers
			continue
		}
		began := time.Now()
		r.d.log.Error("the local driver's keeper died, and its instances with it; starting another", "err", err)
		restored, ours, rerr := r.recover()
		if r.ctx.Err() != nil {
			return
		}
		r.d.log.Warn("a new keeper runs", "restored", restored, "after", time.Since(began).Round(time.Millisecond), "err", rerr, "started_here", ours)
		// Bots sharing the DATA_DIR all see the death; the one whose
		// keeper won tells of it, once.
		if r.d.opts.Keeper.Lost != nil && ours {
			r.d.opts.Keeper.Lost(r.ctx, restored, rerr)
		}
		if rerr != nil && restored < 0 {
			select {
			case <-time.After(time.Second):
			case <-r.ctx.Done():
				return
			}
		}
	}
}

// recover starts a keeper and waits for it to restore; restored is -1
// when none could be started. ours says the keeper is the one this bot
// started (see start).
func (r *remote) recover() (restored int, ours bool, err error) {
	ours, err = r.start(r.ctx)
	if err != nil {
		return -1, true, err
	}
	err = r.call(r.ctx, "Restore", callArgs{}, nil, nil)
	if cerr := r.call(r.ctx, "Restored", callArgs{}, nil, &restored); cerr != nil {
		return restored, ours, errors.Join(err, cerr)
	}
	return restored, ours, err
}

// hold is one long GET /watch, which the keeper answers with headers and
// then nothing until it goes away.
func (r *remote) hold() error {
	req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, "http://keeper/watch", nil)
	if err != nil {
		return err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// call runs method in the keeper with a, writing its log lines to log as
// they come and its result into out.
func (r *remote) call(ctx context.Context, method string, a callArgs, log io.Writer, out any) error {
	if r.ctx.Err() != nil {
		return ErrClosed
	}
	body, err := json.Marshal(a)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://keeper/call/"+method, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("local driver: the keeper does not answer (%w); the bot starts another when it died, so try again", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("local driver: the keeper refused %s: %s", method, strings.TrimSpace(string(msg)))
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var f frame
		if err := dec.Decode(&f); err != nil {
			return fmt.Errorf("local driver: the keeper went away during %s: %w", method, err)
		}
		if f.Log != "" && log != nil {
			_, _ = io.WriteString(log, f.Log)
		}
		if !f.Done {
			continue
		}
		if err := f.callErr(); err != nil {
			return err
		}
		if out != nil && len(f.Result) > 0 {
			return json.Unmarshal(f.Result, out)
		}
		return nil
	}
}

// quick is call for the driver's methods that take no context.
func (r *remote) quick(method string, a callArgs, out any) error {
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	return r.call(ctx, method, a, nil, out)
}

func (r *remote) figures() ([]releaseFigures, error) {
	var out []releaseFigures
	err := r.quick("Figures", callArgs{}, &out)
	return out, err
}

// close leaves the keeper and all it runs alone.
func (r *remote) close() {
	r.cancel()
	if r.botSrv != nil {
		_ = r.botSrv.Close()
	}
	r.wg.Wait()
	r.client.CloseIdleConnections()
}

// serveBot answers the keeper's questions on bot.sock (mode 0600: secret
// values pass over it).
func (r *remote) serveBot() error {
	own := ownBotSock(r.d.opts.DataDir, os.Getpid(), drivers.Add(1))
	_ = os.Remove(own) // a dead bot's of the same pid
	ln, err := net.Listen("unix", own)
	if err != nil {
		return fmt.Errorf("local driver: %w", err)
	}
	if err := os.Chmod(own, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("local driver: %w", err)
	}
	// bot.sock becomes another name of the same socket, in one step (a
	// link renamed over it): bots starting together each leave a working
	// bot.sock, and the last one wins.
	tmp := own + ".link"
	_ = os.Remove(tmp)
	if err := os.Link(own, tmp); err == nil {
		if err := os.Rename(tmp, botSock(r.d.opts.DataDir)); err != nil {
			_ = os.Remove(tmp)
			r.d.log.Warn("bot.sock cannot be pointed at this bot; the keeper reaches it on its own socket", "err", err)
		}
	} else {
		r.d.log.Warn("bot.sock cannot be pointed at this bot; the keeper reaches it on its own socket", "err", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /tarball", r.serveTarball)
	mux.HandleFunc("POST /secret", r.serveSecret)
	r.botSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		_ = r.botSrv.Serve(ln)
	}()
	return nil
}

func (r *remote) serveTarball(w http.ResponseWriter, req *http.Request) {
	var rel deploy.Release
	if err := json.NewDecoder(req.Body).Decode(&rel); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc, err := r.d.opts.Source(req.Context(), rel)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/gzip")
	_, _ = io.Copy(w, rc)
}

// secretAnswer is bot.sock's answer to POST /secret.
type secretAnswer struct {
	Value  string
	NotSet bool
	Err    string
}

func (r *remote) serveSecret(w http.ResponseWriter, req *http.Request) {
	var q struct{ Repo, Env, Name string }
	if err := json.NewDecoder(req.Body).Decode(&q); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var a secretAnswer
	if r.d.opts.Secrets == nil {
		a.Err = "the bot has no secrets store"
	} else if v, err := r.d.opts.Secrets.Secret(req.Context(), q.Repo, q.Env, q.Name); errors.Is(err, deploy.ErrSecretNotSet) {
		a.NotSet = true
	} else if err != nil {
		a.Err = err.Error()
	} else {
		a.Value = v
	}
	_ = json.NewEncoder(w).Encode(a)
}

// botSource is the keeper's deploy.Source: the bot fetches the tarball.
func botSource(dataDir string) deploy.Source {
	client := botClient(dataDir)
	return func(ctx context.Context, rel deploy.Release) (io.ReadCloser, error) {
		body, err := json.Marshal(rel)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://bot/tarball", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("the bot, which fetches sources, does not answer (%w): start it", err)
		}
		if resp.StatusCode != http.StatusOK {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			resp.Body.Close()
			return nil, errors.New(strings.TrimSpace(string(msg)))
		}
		return resp.Body, nil
	}
}

// botSecrets is the keeper's deploy.SecretSource: the bot reads them.
type botSecrets struct{ client *http.Client }

func (b botSecrets) Secret(ctx context.Context, repo, env, name string) (string, error) {
	body, err := json.Marshal(struct{ Repo, Env, Name string }{repo, env, name})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://bot/secret", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("the bot, which holds secrets, does not answer (%w): start it", err)
	}
	defer resp.Body.Close()
	var a secretAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return "", fmt.Errorf("the bot's answer: %w", err)
	}
	switch {
	case a.NotSet:
		return "", deploy.ErrSecretNotSet
	case a.Err != "":
		return "", errors.New(a.Err)
	}
	return a.Value, nil
}
