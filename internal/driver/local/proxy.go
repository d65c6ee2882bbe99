package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"
)

// maxReplayBody is the largest request body the proxy buffers so that it
// can send the request again to another instance.
const maxReplayBody = 1 << 20

// backend is one instance's process as the proxy sees it: where to send
// requests, the release it runs and the figures its requests count in, how
// many are in flight, and whether it is in rotation. Each has its own
// connection pool, closed when the process stops.
type backend struct {
	instance   string
	addr       string
	traffic    *releaseTraffic // of the release the process runs
	transport  *http.Transport
	inflight   atomic.Int64
	inRotation atomic.Bool
}

// newBackend is the backend of an instance's process that runs release
// and listens on port.
func (p *proxy) newBackend(instance, release string, port int) *backend {
	dialer := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	return &backend{
		instance: instance,
		addr:     fmt.Sprintf("127.0.0.1:%d", port),
		traffic:  p.traffic.of(release, time.Now()),
		transport: &http.Transport{
			Proxy:               nil,
			DialContext:         dialer.DialContext,
			MaxIdleConns:        0,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			// The client's Accept-Encoding passes through untouched.
			DisableCompression: true,
		},
	}
}

// proxy is the reverse proxy of one environment or preview: it routes each
// request to the in-rotation instance with the fewest requests in flight
// (round-robin among equals), and measures each release's traffic.
type proxy struct {
	label    string
	log      *slog.Logger
	rp       *httputil.ReverseProxy
	traffic  *traffic
	mu       sync.Mutex // writers of rotation
	rotation atomic.Pointer[[]*backend]
	rr       atomic.Uint64

	srvMu sync.Mutex
	srv   *http.Server
}

var errNoneInRotation = errors.New("no instance in rotation")

func newProxy(label string, log *slog.Logger) *proxy {
	p := &proxy{label: label, log: log, traffic: newTraffic()}
	p.rotation.Store(&[]*backend{})
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme = "http"
			r.Out.URL.Host = "instance" // the transport picks the instance
			r.SetXForwarded()
		},
		Transport:    (*routingTransport)(p),
		ErrorHandler: p.fail,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		BufferPool:   bufferPool{},
	}
	return p
}

func (p *proxy) serve(ln net.Listener) {
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	p.srvMu.Lock()
	if p.srv == nil {
		p.srv = srv
	}
	stopped := p.srv != srv
	p.srvMu.Unlock()
	if stopped {
		ln.Close()
		return
	}
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		p.log.Error("proxy stopped serving", "err", err)
	}
}

// shutdown stops the listener and waits for requests in flight, bounded by
// ctx; then it closes what is left.
func (p *proxy) shutdown(ctx context.Context) {
	p.srvMu.Lock()
	srv := p.srv
	if srv == nil {
		p.srv = &http.Server{} // serve, if it comes later, sees it stopped
	}
	p.srvMu.Unlock()
	if srv == nil {
		return
	}
	if err := srv.Shutdown(ctx); err != nil {
		_ = srv.Close()
	}
}

// add puts b in rotation.
func (p *proxy) add(b *backend) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b.inRotation.Load() {
		return
	}
	old := *p.rotation.Load()
	list := make([]*backend, 0, len(old)+1)
	list = append(list, old...)
	list = append(list, b)
	b.inRotation.Store(true)
	p.rotation.Store(&list)
}

// remove takes b out of rotation: no request picks it from now on (one that
// already counted itself in flight may still be sent).
func (p *proxy) remove(b *backend) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b.inRotation.Store(false)
	old := *p.rotation.Load()
	list := make([]*backend, 0, len(old))
	for _, o := range old {
		if o != b {
			list = append(list, o)
		}
	}
	p.rotation.Store(&list)
}

// pick chooses an in-rotation backend other than not and counts the request
// in flight on it. A drain sets inRotation false and then waits for the
// count to reach 0; pick counts first and checks inRotation second, so one
// of the two always sees the other.
func (p *proxy) pick(not *backend) *backend {
	for range 4 {
		list := *p.rotation.Load()
		n := uint64(len(list))
		if n == 0 {
			return nil
		}
		start := p.rr.Add(1)
		var best *backend
		var bestLoad int64
		for i := range n {
			b := list[(start+i)%n]
			if b == not {
				continue
			}
			if l := b.inflight.Load(); best == nil || l < bestLoad {
				best, bestLoad = b, l
			}
		}
		if best == nil {
			return nil
		}
		best.inflight.Add(1)
		if best.inRotation.Load() {
			return best
		}
		best.inflight.Add(-1)
	}
	return nil
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(*p.rotation.Load()) == 0 {
		http.Error(w, fmt.Sprintf("shipbot: no instance of %s is in rotation", p.label), http.StatusServiceUnavailable)
		return
	}
	p.rp.ServeHTTP(w, r)
}

func (p *proxy) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, errNoneInRotation):
		http.Error(w, fmt.Sprintf("shipbot: no instance of %s is in rotation", p.label), http.StatusServiceUnavailable)
	case r.Context().Err() != nil:
		// The client went away; nobody reads this answer.
		w.WriteHeader(http.StatusBadGateway)
	default:
		p.log.Warn("proxy request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		http.Error(w, fmt.Sprintf("shipbot: %s: %v", p.label, err), http.StatusBadGateway)
	}
}

// probe sends GET path to b the way the proxy sends traffic to it (its
// transport and connection pool), without counting it in flight.
func (p *proxy) probe(ctx context.Context, b *backend, path string) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := b.transport.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s answered %s", path, resp.Status)
	}
	return nil
}

// routingTransport is the proxy's RoundTripper: it picks the instance, and
// when the instance fails before any byte of a response, sends the request
// once more to another in-rotation instance if the body can be replayed and
// the first instance cannot have acted on it (it refused the connection, or
// the method is idempotent). The request counts in the figures of the
// release of the instance that answered, or of the last one tried.
type routingTransport proxy

func (t *routingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := (*proxy)(t)
	replayable, body, stream, err := bufferBody(req)
	if err != nil {
		return nil, err
	}
	start := time.Now() // a slow client's upload is not the release's latency
	var tried *backend
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		b := p.pick(tried)
		if b == nil {
			break
		}
		out := *req
		u := *req.URL
		u.Host = b.addr
		out.URL = &u
		switch {
		case body != nil:
			out.Body = io.NopCloser(bytes.NewReader(body))
			out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
			out.ContentLength = int64(len(body))
		case stream != nil:
			out.Body = stream
		}
		resp, err := b.transport.RoundTrip(&out)
		if err == nil {
			end := time.Now()
			b.traffic.record(end, end.Sub(start), resp.StatusCode)
			resp.Body = countBody(resp.Body, b)
			return resp, nil
		}
		b.inflight.Add(-1)
		tried, lastErr = b, fmt.Errorf("instance %s: %w", b.instance, err)
		if attempt > 0 || !replayable || req.Context().Err() != nil || !(isDialError(err) || idempotent(req.Method)) {
			break
		}
		p.log.Debug("instance failed before answering; retrying on another", "instance", b.instance, "err", err)
	}
	if tried == nil {
		return nil, errNoneInRotation
	}
	code := codeFailed
	if req.Context().Err() != nil {
		code = codeCanceled
	}
	end := time.Now()
	tried.traffic.record(end, end.Sub(start), code)
	return nil, lastErr
}

// bufferBody reads a small request body into memory so that it can be sent
// twice. A large (or unknown-length, over-the-limit) body is streamed: then
// stream is what to send, and the request is not replayable.
func bufferBody(req *http.Request) (replayable bool, body []byte, stream io.ReadCloser, err error) {
	if req.Body == nil || req.Body == http.NoBody {
		return true, nil, nil, nil
	}
	if req.ContentLength > maxReplayBody {
		return false, nil, nil, nil
	}
	buf, err := io.ReadAll(io.LimitReader(req.Body, maxReplayBody+1))
	if err != nil {
		return false, nil, nil, fmt.Errorf("reading the request body: %w", err)
	}
	if len(buf) > maxReplayBody {
		return false, nil, struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), req.Body), req.Body}, nil
	}
	return true, buf, nil, nil
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// countBody makes the response count as in flight on b until the proxy has
// finished with it (ReverseProxy always closes it). An upgraded connection's
// body is a ReadWriteCloser and must stay one.
func countBody(rc io.ReadCloser, b *backend) io.ReadCloser {
	c := &countedBody{ReadCloser: rc, b: b}
	if rwc, ok := rc.(io.ReadWriteCloser); ok {
		return &countedRWC{countedBody: c, w: rwc}
	}
	return c
}

type countedBody struct {
	io.ReadCloser
	b    *backend
	once sync.Once
}

func (c *countedBody) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(func() { c.b.inflight.Add(-1) })
	return err
}

type countedRWC struct {
	*countedBody
	w io.Writer
}

func (c *countedRWC) Write(p []byte) (int, error) { return c.w.Write(p) }

// bufferPool lends ReverseProxy its copy buffers.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }
