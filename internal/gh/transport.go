package gh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shipbot/shipbot/internal/logctx"
)

// RetryPolicy says how requests are retried.
type RetryPolicy struct {
	// MaxAttempts bounds the attempts per request, the first included
	// (default 4).
	MaxAttempts int
	// BaseDelay is the first backoff after a network error or 5xx; it
	// doubles per attempt, with jitter (default 500ms).
	BaseDelay time.Duration
	// MaxDelay caps one backoff (default 8s).
	MaxDelay time.Duration
	// MaxWait caps how long a rate limit (Retry-After, x-ratelimit-reset)
	// may hold a request; a longer one is returned to the caller at once as
	// a retryable *Error carrying RetryAfter (default 60s).
	MaxWait time.Duration
	// AttemptTimeout bounds how long one attempt waits for GitHub's answer
	// (its headers) before it is given up as a network error; GitHub ends
	// its own requests after 10 s, so a connection still silent long after
	// is lost (default 30s).
	AttemptTimeout time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 4
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = 500 * time.Millisecond
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = 8 * time.Second
	}
	if p.MaxWait <= 0 {
		p.MaxWait = 60 * time.Second
	}
	if p.AttemptTimeout <= 0 {
		p.AttemptTimeout = 30 * time.Second
	}
	return p
}

// errAttemptTimedOut is an attempt that got no answer within
// RetryPolicy.AttemptTimeout: retried like any lost connection.
var errAttemptTimedOut = errors.New("no answer within the attempt timeout")

// noAmbiguousRetry marks a request whose retries its caller makes itself:
// a create that must not be sent again before the caller looked whether
// the first attempt landed.
type noAmbiguousRetry struct{}

// withoutAmbiguousRetry makes the transport hand back, instead of
// retrying, a failure after which the request may have been applied: no
// answer, or a 5xx. Rate limits (nothing applied) are still waited out.
func withoutAmbiguousRetry(ctx context.Context) context.Context {
	return context.WithValue(ctx, noAmbiguousRetry{}, true)
}

func ambiguousRetryOff(ctx context.Context) bool {
	off, _ := ctx.Value(noAmbiguousRetry{}).(bool)
	return off
}

// attempt sends one attempt, giving it up after AttemptTimeout without
// an answer. Once headers arrive the attempt's context lives until the
// body is closed.
func (t *retryTransport) attempt(r *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancel(r.Context())
	timer := time.AfterFunc(t.policy.AttemptTimeout, cancel)
	resp, err := t.next.RoundTrip(r.WithContext(ctx))
	if !timer.Stop() && r.Context().Err() == nil {
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		return nil, fmt.Errorf("%s %s: %w after %s", r.Method, r.URL.Path, errAttemptTimedOut, t.policy.AttemptTimeout)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose ends an attempt's context with its body.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

var (
	_ http.RoundTripper = (*retryTransport)(nil)
	_ http.RoundTripper = (*metricsTransport)(nil)
)

// retryTransport retries network errors and 5xx with exponential backoff and
// jitter, and waits out rate limits as GitHub asks (Retry-After, or
// x-ratelimit-reset once x-ratelimit-remaining is 0). Everything else,
// 401/404/422 included, goes back to the caller at once. It sits above the
// authenticating transport, so a failure to mint an installation token is
// retried (or not) the same way.
type retryTransport struct {
	next   http.RoundTripper
	policy RetryPolicy
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	for attempt := 1; ; attempt++ {
		// A copy per attempt: the transports below set headers on what they
		// are given (ghinstallation's AppsTransport does, in place).
		r := req.Clone(ctx)
		if attempt > 1 {
			if req.Body != nil && req.Body != http.NoBody {
				body, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				r.Body = body
			}
		}
		resp, err := t.attempt(r)
		wait, retry := t.decide(ctx, attempt, resp, err)
		if retry && ambiguousRetryOff(ctx) && (err != nil || resp.StatusCode >= 500) {
			retry = false
		}
		if !retry || attempt >= t.policy.MaxAttempts || (req.Body != nil && req.Body != http.NoBody && req.GetBody == nil) {
			return resp, err
		}
		if wait > t.policy.MaxWait {
			return resp, err
		}
		log := logctx.From(ctx)
		if err != nil {
			log.Warn("github request failed; retrying", "method", req.Method, "path", req.URL.Path, "attempt", attempt, "wait", wait, "err", err)
		} else {
			log.Warn("github answered with a retryable status; retrying", "method", req.Method, "path", req.URL.Path, "status", resp.StatusCode, "attempt", attempt, "wait", wait)
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

// decide reports whether to retry and after how long.
func (t *retryTransport) decide(ctx context.Context, attempt int, resp *http.Response, err error) (time.Duration, bool) {
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return 0, false
		}
		var hte *ghinstallation.HTTPError
		if errors.As(err, &hte) && hte.Response != nil {
			// Minting the installation token got an answer: decide on it.
			// (ghinstallation leaves that response's body open.)
			if hte.Response.Body != nil {
				_, _ = io.Copy(io.Discard, io.LimitReader(hte.Response.Body, 1<<20))
				hte.Response.Body.Close()
				hte.Response.Body = http.NoBody
			}
			code := hte.Response.StatusCode
			if code >= 500 {
				return t.backoff(attempt), true
			}
			if code == http.StatusForbidden || code == http.StatusTooManyRequests {
				return rateLimitWait(hte.Response, time.Now())
			}
			return 0, false
		}
		return t.backoff(attempt), true
	}
	switch code := resp.StatusCode; {
	case code == http.StatusForbidden || code == http.StatusTooManyRequests:
		if d, ok := rateLimitWait(resp, time.Now()); ok {
			return d, true
		}
		if code == http.StatusTooManyRequests || isSecondaryRateLimit(resp) {
			// No header says how long: GitHub asks for at least a minute.
			return time.Minute, true
		}
		return 0, false
	case code == http.StatusInternalServerError, code == http.StatusBadGateway,
		code == http.StatusServiceUnavailable, code == http.StatusGatewayTimeout:
		if d, ok := retryAfter(resp); ok {
			return d, true
		}
		return t.backoff(attempt), true
	}
	return 0, false
}

// backoff is BaseDelay·2^(attempt-1), capped, with jitter in [d/2, d).
func (t *retryTransport) backoff(attempt int) time.Duration {
	d := t.policy.BaseDelay << (attempt - 1)
	if d > t.policy.MaxDelay || d <= 0 {
		d = t.policy.MaxDelay
	}
	return d/2 + rand.N(d/2+1)
}

func retryAfter(resp *http.Response) (time.Duration, bool) {
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(at)), true
	}
	return 0, false
}

// rateLimitWait reads how long GitHub wants us to wait: Retry-After, or
// until x-ratelimit-reset when x-ratelimit-remaining is 0.
func rateLimitWait(resp *http.Response, now time.Time) (time.Duration, bool) {
	if d, ok := retryAfter(resp); ok {
		return d, true
	}
	if resp.Header.Get("X-RateLimit-Remaining") == "0" {
		if reset, err := strconv.ParseInt(resp.Header.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			// A second of slack: the reset is whole seconds and clocks differ.
			return max(0, time.Unix(reset, 0).Sub(now)) + time.Second, true
		}
	}
	return 0, false
}

// isSecondaryRateLimit peeks at a 403's body for GitHub's secondary rate
// limit message, leaving the body readable.
func isSecondaryRateLimit(resp *http.Response) bool {
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	if err != nil {
		return false
	}
	s := strings.ToLower(string(b))
	return strings.Contains(s, "secondary rate limit") || strings.Contains(s, "abuse")
}

// metrics are the API's cost, per installation.
type metrics struct {
	requests *prometheus.CounterVec
	writes   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shipbot_github_requests_total",
			Help: "Requests sent to the GitHub API (every attempt), by installation (\"app\" for the App's own endpoints), method and status (\"error\" when no response came).",
		}, []string{"installation", "method", "status"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shipbot_github_writes_total",
			Help: "Write requests (not GET/HEAD) sent to the GitHub API, minting installation tokens excluded, by installation.",
		}, []string{"installation"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.writes, err = register(reg, m.writes); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// its name (several Clients may share one registry).
func register(reg prometheus.Registerer, c *prometheus.CounterVec) (*prometheus.CounterVec, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, err
	}
	return c, nil
}

type metricsTransport struct {
	next         http.RoundTripper
	installation string
	m            *metrics
}

func (t *metricsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	status := "error"
	if err == nil {
		status = strconv.Itoa(resp.StatusCode)
	}
	t.m.requests.WithLabelValues(t.installation, req.Method, status).Inc()
	if req.Method != http.MethodGet && req.Method != http.MethodHead && !strings.HasSuffix(req.URL.Path, "/access_tokens") {
		t.m.writes.WithLabelValues(t.installation).Inc()
	}
	return resp, err
}
