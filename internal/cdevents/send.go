package cdevents

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// DefaultTimeout bounds one delivery: connecting, sending and the answer.
const DefaultTimeout = 10 * time.Second

// maxRedirects bounds the same-host redirects a delivery follows.
const maxRedirects = 5

// Outcome is what became of one delivery attempt.
type Outcome int

const (
	// Delivered: the receiver answered 2xx.
	Delivered Outcome = iota
	// Retryable: a 5xx, a 429, a timeout or no connection; try again later.
	Retryable
	// Permanent: another 4xx, a redirect not followed, a refused address;
	// the same delivery cannot succeed.
	Permanent
)

func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case Retryable:
		return "retryable"
	}
	return "permanent"
}

// OutcomeOf classifies what Send returned: nil is Delivered, a
// *DeliveryError says itself, and anything else (the caller's context ended)
// is Retryable.
func OutcomeOf(err error) Outcome {
	var de *DeliveryError
	switch {
	case err == nil:
		return Delivered
	case errors.As(err, &de):
		return de.Outcome
	}
	return Retryable
}

// DeliveryError is a delivery that did not get a 2xx. Its Permanent method
// is what the worker asks to choose between retrying and dead-lettering.
type DeliveryError struct {
	URL        string        // as Redact shows it
	Outcome    Outcome       // Retryable or Permanent
	Status     int           // the receiver's answer; 0 when none came
	RetryAfter time.Duration // what a 429 or 503 asked for; 0 if it did not say
	Location   string        // where a redirect that was not followed pointed
	Err        error         // the transport's error, when no answer came
	reason     string        // the sentence's middle, set by the classifier
}

func (e *DeliveryError) Error() string {
	return "webhook " + e.URL + " " + e.reason
}

// Permanent reports whether retrying cannot help.
func (e *DeliveryError) Permanent() bool { return e.Outcome == Permanent }

func (e *DeliveryError) Unwrap() error { return e.Err }

// Sender posts events to receivers. It is safe for concurrent use.
type Sender struct {
	secret  string
	timeout time.Duration
	client  *http.Client
}

// Option configures a Sender.
type Option func(*Sender)

// WithTimeout replaces DefaultTimeout (tests use a short one).
func WithTimeout(d time.Duration) Option {
	return func(s *Sender) { s.timeout = d }
}

// NewSender returns a Sender that signs with secret (EVENTS_SECRET); with
// an empty secret deliveries go unsigned. The Sender dials directly, never
// through HTTP_PROXY, so that the address it refuses is the receiver's.
func NewSender(secret string, opts ...Option) *Sender {
	s := &Sender{secret: secret, timeout: DefaultTimeout}
	for _, o := range opts {
		o(s)
	}
	dialer := &net.Dialer{Timeout: s.timeout, Control: refuseAddress}
	s.client = &http.Client{
		Transport: &http.Transport{
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			TLSHandshakeTimeout:   s.timeout,
			ResponseHeaderTimeout: s.timeout,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       90 * time.Second,
		},
		CheckRedirect: sameHostRedirect,
	}
	return s
}

// Close releases the Sender's idle connections.
func (s *Sender) Close() { s.client.CloseIdleConnections() }

// Send posts e to rawURL once and returns nil when the receiver answered
// 2xx; otherwise a *DeliveryError (or, when ctx ended first, an error
// wrapping ctx's). Redirects are followed only when they are 307 or 308 to
// the same scheme, host and port (up to 5), which keep the method and the
// signed body; any other redirect is a Permanent failure naming where it
// pointed.
func (s *Sender) Send(ctx context.Context, rawURL string, e event.Event) error {
	body, err := Encode(e)
	if err != nil {
		return &DeliveryError{URL: rawURL, Outcome: Permanent, Err: err,
			reason: fmt.Sprintf("was not sent: the event %s does not encode (%v)", e.ID(), err)}
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &DeliveryError{URL: fmt.Sprintf("%q", rawURL), Outcome: Permanent, Err: err,
			reason: "is not an http or https URL; fix it in notify.webhooks"}
	}
	shown := Redact(u)
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return &DeliveryError{URL: shown, Outcome: Permanent, Err: err, reason: fmt.Sprintf("cannot be posted to (%v); fix it in notify.webhooks", err)}
	}
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set("User-Agent", "shipbot-cdevents")
	if s.secret != "" {
		req.Header.Set(SignatureHeader, Sign(s.secret, body))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("webhook %s: the delivery was interrupted: %w", shown, ctx.Err())
		}
		return s.transportError(shown, err)
	}
	defer resp.Body.Close()
	snippet := readSnippet(resp.Body)
	return classify(shown, resp, snippet)
}

// transportError is a delivery that got no answer.
func (s *Sender) transportError(shown string, err error) error {
	var ra *refusedAddrError
	if errors.As(err, &ra) {
		return &DeliveryError{URL: shown, Outcome: Permanent, Err: err,
			reason: fmt.Sprintf("was not posted to: it resolves to %s, which is %s; point notify.webhooks at the receiver's routable address", ra.addr, ra.why)}
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &DeliveryError{URL: shown, Outcome: Retryable, Err: err,
			reason: fmt.Sprintf("did not answer within %s; the delivery will be retried", s.timeout)}
	}
	return &DeliveryError{URL: shown, Outcome: Retryable, Err: err,
		reason: fmt.Sprintf("could not be reached (%s); the delivery will be retried", rootCause(err))}
}

// classify turns the receiver's answer into nil or a *DeliveryError.
func classify(shown string, resp *http.Response, snippet string) error {
	code := resp.StatusCode
	status := strconv.Itoa(code) + " " + http.StatusText(code)
	e := &DeliveryError{URL: shown, Status: code}
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusTooManyRequests || code >= 500:
		e.Outcome = Retryable
		e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"))
		e.reason = "answered " + status + "; the delivery will be retried"
		if e.RetryAfter > 0 {
			e.reason += fmt.Sprintf(", not before the %s it asked for", e.RetryAfter)
		}
	case code >= 300 && code < 400:
		e.Outcome = Permanent
		loc, _ := resp.Location()
		if loc != nil {
			e.Location = Redact(loc)
		}
		e.reason = "answered " + status + redirectReason(resp, loc)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		e.Outcome = Permanent
		e.reason = "answered " + status + said(snippet) + "; check that the receiver verifies " + SignatureHeader + " with the bot's EVENTS_SECRET"
	default:
		e.Outcome = Permanent
		e.reason = "answered " + status + said(snippet) + "; retrying will not help, so fix the URL in notify.webhooks or the receiver"
	}
	return e
}

func redirectReason(resp *http.Response, loc *url.URL) string {
	switch {
	case loc == nil:
		return " without a Location; a receiver must answer 2xx, so fix the receiver"
	case resp.StatusCode != http.StatusTemporaryRedirect && resp.StatusCode != http.StatusPermanentRedirect:
		return " to " + Redact(loc) + ", which would turn the POST into a GET and is not followed; put that URL in notify.webhooks"
	case !sameOrigin(resp.Request.URL, loc):
		return " to " + Redact(loc) + ", another host, which is not followed; put that URL in notify.webhooks if it is the receiver"
	}
	return fmt.Sprintf(" to %s after %d redirects already, which is not followed; put the final URL in notify.webhooks", Redact(loc), maxRedirects)
}

// sameHostRedirect follows 307 and 308 (which keep the method and body) to
// the same origin only, and stops at maxRedirects; the stopped 3xx answer
// is then classified.
func sameHostRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return http.ErrUseLastResponse
	}
	code := req.Response.StatusCode
	if code != http.StatusTemporaryRedirect && code != http.StatusPermanentRedirect {
		return http.ErrUseLastResponse
	}
	if !sameOrigin(via[0].URL, req.URL) {
		return http.ErrUseLastResponse
	}
	return nil
}

func sameOrigin(a, b *url.URL) bool {
	if a == nil || b == nil {
		return false
	}
	return a.Scheme == b.Scheme && strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

// refusedAddrError is the dialer refusing an address (see refused).
type refusedAddrError struct {
	addr netip.Addr
	why  string
}

func (e *refusedAddrError) Error() string {
	return fmt.Sprintf("refusing to connect to %s: %s", e.addr, e.why)
}

// refuseAddress runs before every connection, after name resolution: a
// name that resolved to a safe address when the config was read but to the
// metadata service now (DNS rebinding) is still refused.
func refuseAddress(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("cdevents: dialing %q, which is not an IP address and port", address)
	}
	if why := refused(ap.Addr()); why != "" {
		return &refusedAddrError{addr: ap.Addr().Unmap(), why: why}
	}
	return nil
}

// readSnippet drains the answer (so the connection can be reused) and keeps
// its start, on one line, for the error of a refused delivery.
func readSnippet(r io.Reader) string {
	const keep, drain = 200, 64 << 10
	b, _ := io.ReadAll(io.LimitReader(r, drain))
	s := strings.Join(strings.Fields(string(b[:min(len(b), keep)])), " ")
	if len(b) > keep {
		s += "…"
	}
	return s
}

func said(snippet string) string {
	if snippet == "" {
		return ""
	}
	return fmt.Sprintf(" (%q)", snippet)
}

// retryAfter reads Retry-After in seconds or as an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t).Round(time.Second), 0)
	}
	return 0
}

// rootCause is the innermost error's text: "connect: connection refused"
// rather than the whole Post "..." chain, which repeats the URL.
func rootCause(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Op + ": " + oe.Err.Error()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}
