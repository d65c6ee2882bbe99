// Package webhooks is the intake: the http.Handler behind POST /webhooks. It
// verifies GitHub's signature, bounds the body, decodes only the few fields
// routing needs, drops events nobody handles, and stores the delivery as a
// durable job before answering 202. It knows event names, not what they mean.
package webhooks

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"math/bits"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shipbot/shipbot/queue"
)

// MaxBody is the largest delivery accepted (GitHub caps payloads at 25 MB).
const MaxBody = 25 << 20

// Enqueuer is what intake needs of the queue.
type Enqueuer interface {
	Enqueue(ctx context.Context, job queue.Job) (queue.Job, error)
}

// Router says whether some handler acts on an event (and action); deliveries
// nobody acts on are answered 202 without being queued. Keeps says which
// top-level members of an event's payload its handlers read (nil: all of
// them): only those are queued (see trim).
type Router interface {
	Accepts(event, action string) bool
	Keeps(event string) func(key []byte) bool
}

// Handler serves POST /webhooks.
type Handler struct {
	secret []byte
	queue  Enqueuer
	router Router
	log    *slog.Logger
	now    func() time.Time
	macs   sync.Pool
	// free holds the memory of finished deliveries for the next ones. A
	// channel rather than a sync.Pool: the pool is emptied by every other
	// garbage collection, and under load (a collection every few
	// milliseconds) each delivery then grew a fresh 24 KB buffer again.
	free  chan *scratch
	names interner
	// refused, when set, is told of each delivery refused because the
	// store failed.
	refused func()
	outcome *prometheus.CounterVec
	latency prometheus.Histogram
}

// scratch is one delivery's memory: the body as read, which is also the
// job's payload (Enqueue does not keep it once it returns), and the answer.
type scratch struct {
	body    []byte
	trimmed []byte // the payload trim left, when it left something out
	answer  []byte
	outline []int32
	sum     [sha256.Size]byte // the body's HMAC
}

// Memory kept for reuse: bodies up to keepBody bytes (GitHub's deliveries
// are mostly a few tens of KB; a rare huge one is left to the collector),
// for up to keepScratch deliveries.
const (
	keepBody    = 1 << 20
	keepScratch = 256
)

// Option configures a Handler.
type Option func(*Handler)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(h *Handler) { h.log = l } }

// WithRefused sets a function called whenever a delivery is refused (503)
// because the store failed: an outage too short for a periodic ping to see
// still leaves a delivery to have redelivered.
func WithRefused(f func()) Option { return func(h *Handler) { h.refused = f } }

// WithRegisterer registers the intake metrics.
func WithRegisterer(r prometheus.Registerer) Option {
	return func(h *Handler) { r.MustRegister(h.outcome, h.latency) }
}

// New returns the intake handler. An empty secret refuses every delivery:
// without a secret there is no way to tell GitHub from anyone else.
func New(secret []byte, q Enqueuer, r Router, opts ...Option) *Handler {
	h := &Handler{
		secret: append([]byte(nil), secret...),
		queue:  q,
		router: r,
		log:    slog.Default(),
		now:    time.Now,
		free:   make(chan *scratch, keepScratch),
		names:  interner{m: map[string]string{}},
		outcome: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shipbot_webhook_deliveries_total",
			Help: "Webhook deliveries by event and outcome (queued, duplicate, ignored, ping, rejected, unavailable).",
		}, []string{"event", "outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shipbot_webhook_ack_seconds",
			Help:    "Time from a delivery's arrival to its answer.",
			Buckets: []float64{.0005, .001, .002, .003, .005, .01, .025, .05, .1, .5},
		}),
	}
	h.macs.New = func() any { return hmac.New(sha256.New, h.secret) }
	for _, o := range opts {
		o(h)
	}
	return h
}

// problem is an answer other than success: the status and one sentence
// saying what happened and what to do. body, when set, is that answer
// already rendered: the answers that need no detail are made once.
type problem struct {
	status  int
	outcome string
	msg     string
	body    []byte
}

func (p *problem) Error() string { return p.msg }

func reject(status int, format string, args ...any) *problem {
	return &problem{status: status, outcome: "rejected", msg: fmt.Sprintf(format, args...)}
}

// fixed is a problem whose answer never varies, rendered once.
func fixed(status int, outcome, msg string) *problem {
	return &problem{status: status, outcome: outcome, msg: msg, body: message(msg)}
}

func (p *problem) answer() []byte {
	if p.body != nil {
		return p.body
	}
	return message(p.msg)
}

var (
	errNoSecret = fixed(http.StatusServiceUnavailable, "rejected",
		"shipbot has no WEBHOOK_SECRET yet, so it cannot verify deliveries: finish the App setup at the bot's home page")
	errNotPost     = fixed(http.StatusMethodNotAllowed, "rejected", "webhook deliveries must be POST requests")
	errTooLarge    = fixed(http.StatusRequestEntityTooLarge, "rejected", "body is over the 25 MB limit GitHub itself enforces")
	errNoSignature = fixed(http.StatusUnauthorized, "rejected",
		"missing X-Hub-Signature-256 header: set a webhook secret on the GitHub App and the same value in WEBHOOK_SECRET")
	errBadSignature = fixed(http.StatusUnauthorized, "rejected",
		"X-Hub-Signature-256 does not match the body: WEBHOOK_SECRET differs from the GitHub App's webhook secret")
	errNoEvent = fixed(http.StatusBadRequest, "rejected",
		"missing X-GitHub-Event header: deliveries must come from GitHub or `bot receive`")
	errNoDelivery = fixed(http.StatusBadRequest, "rejected",
		"missing X-GitHub-Delivery header: deliveries must come from GitHub or `bot receive`")
	errUnavailable = fixed(http.StatusServiceUnavailable, "unavailable",
		"the job store is unavailable, so this delivery was not queued; shipbot asks GitHub to redeliver it once the store is back")
)

// The answers of the outcomes other than queued, which never vary.
var (
	answerPong      = message("pong")
	answerIgnored   = message("ignored: shipbot does not act on this event")
	answerDuplicate = message("duplicate delivery: already queued")
)

// jsonContentType is shared by every answer: net/http only reads it.
var jsonContentType = []string{"application/json"}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := h.now()
	// Canonical spellings: Header.Get would allocate to canonicalize
	// GitHub's "X-GitHub-…" on every request.
	event := r.Header.Get("X-Github-Event")
	delivery := r.Header.Get("X-Github-Delivery")
	s := h.scratch()
	defer h.release(s)

	status, body, outcome := h.serve(r.Context(), r, s, event, delivery)
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	_, _ = w.Write(body)
	h.outcome.WithLabelValues(metricEvent(event), outcome).Inc()
	h.latency.Observe(h.now().Sub(start).Seconds())
}

func (h *Handler) scratch() *scratch {
	select {
	case s := <-h.free:
		return s
	default:
		return new(scratch)
	}
}

func (h *Handler) release(s *scratch) {
	if cap(s.body) > keepBody {
		s.body = nil
	}
	if cap(s.trimmed) > keepBody {
		s.trimmed = nil
	}
	select {
	case h.free <- s:
	default:
	}
}

// serve answers the delivery: status, body (which may live in s) and the
// outcome for the metrics. Its log lines carry the delivery and event, as
// attributes of each line rather than of a logger made per delivery: with
// the line's level off, a delivery costs the log nothing.
func (h *Handler) serve(ctx context.Context, r *http.Request, s *scratch, event, delivery string) (int, []byte, string) {
	job, p := h.intake(r, s, event, delivery)
	if p == nil && event == "ping" {
		h.logf(ctx, slog.LevelInfo, "ping answered", delivery, event)
		return http.StatusOK, answerPong, "ping"
	}
	if p == nil && !h.router.Accepts(job.Event, job.Action) {
		if h.log.Enabled(ctx, slog.LevelDebug) {
			h.logf(ctx, slog.LevelDebug, "delivery ignored: no handler for this event", delivery, event, slog.String("action", job.Action))
		}
		return http.StatusAccepted, answerIgnored, "ignored"
	}
	if p == nil {
		if keep := h.router.Keeps(job.Event); keep != nil {
			job, s.trimmed = trim(job, keep, s.trimmed, &h.names)
		}
		stored, err := h.queue.Enqueue(ctx, job)
		switch {
		case errors.Is(err, queue.ErrDuplicate):
			h.logf(ctx, slog.LevelInfo, "duplicate delivery acknowledged, not queued again", delivery, event)
			return http.StatusOK, answerDuplicate, "duplicate"
		case err != nil:
			p = errUnavailable
			h.logf(ctx, slog.LevelError, "delivery not queued: job store unavailable", delivery, event, slog.Any("err", err))
			if h.refused != nil {
				h.refused()
			}
		default:
			if h.log.Enabled(ctx, slog.LevelInfo) {
				h.logf(ctx, slog.LevelInfo, "delivery queued", delivery, event, slog.String("job", stored.ID),
					slog.String("action", job.Action), slog.Int64("installation", job.InstallationID), slog.String("repo", job.Repo))
			}
			s.answer = appendJobMessage(s.answer[:0], stored.ID)
			return http.StatusAccepted, s.answer, "queued"
		}
	}
	if p.outcome == "rejected" {
		h.logf(ctx, slog.LevelWarn, "delivery rejected", delivery, event, slog.Int("status", p.status), slog.String("reason", p.msg))
	}
	return p.status, p.answer(), p.outcome
}

// logf logs msg about the delivery when level is on. Callers whose
// attributes cost something to make check h.log.Enabled first.
func (h *Handler) logf(ctx context.Context, level slog.Level, msg, delivery, event string, attrs ...slog.Attr) {
	if !h.log.Enabled(ctx, level) {
		return
	}
	var all [8]slog.Attr
	all[0], all[1] = slog.String("delivery", delivery), slog.String("event", event)
	n := 2 + copy(all[2:], attrs)
	h.log.LogAttrs(ctx, level, msg, all[:n]...)
}

// intake verifies and decodes the delivery into a job, or says why not.
// The job's payload is s.body: handed to the queue as it is, never copied.
func (h *Handler) intake(r *http.Request, s *scratch, event, delivery string) (queue.Job, *problem) {
	if len(h.secret) == 0 {
		return queue.Job{}, errNoSecret
	}
	if r.Method != http.MethodPost {
		return queue.Job{}, errNotPost
	}
	if r.ContentLength > MaxBody {
		return queue.Job{}, reject(http.StatusRequestEntityTooLarge, "body is %d bytes, over the 25 MB limit GitHub itself enforces", r.ContentLength)
	}
	sig := r.Header.Get("X-Hub-Signature-256")
	if sig == "" {
		return queue.Job{}, errNoSignature
	}
	raw, p := readBody(r.Body, r.ContentLength, s.body[:0])
	s.body = raw
	if p != nil {
		return queue.Job{}, p
	}
	if !h.verify(sig, raw, &s.sum) {
		return queue.Job{}, errBadSignature
	}
	if event == "" {
		return queue.Job{}, errNoEvent
	}
	if delivery == "" {
		return queue.Job{}, errNoDelivery
	}
	return decode(event, delivery, r.Header.Get("Content-Type"), raw, &h.names, &s.outline)
}

// readBody reads the whole body into buf (growing it when it must) and
// returns it, or 413 past MaxBody. A body of known length is read into a
// buffer of that size at once: growing one by doubling, as bytes.Buffer
// does, allocated and cleared 64 KB in steps for every new 24 KB buffer.
func readBody(body io.Reader, length int64, buf []byte) ([]byte, *problem) {
	if length >= 0 {
		n := int(length)
		if cap(buf) < n {
			buf = make([]byte, 0, max(roundUp(n), 4096))
		}
		buf = buf[:n]
		if _, err := io.ReadFull(body, buf); err != nil {
			return buf[:0], reject(http.StatusBadRequest, "could not read the request body: %v", err)
		}
		return buf, nil
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, max(cap(buf), 32<<10))...)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):min(cap(buf), MaxBody+1)])
		buf = buf[:len(buf)+n]
		switch {
		case len(buf) > MaxBody:
			return buf[:0], errTooLarge
		case err == io.EOF:
			return buf, nil
		case err != nil:
			return buf[:0], reject(http.StatusBadRequest, "could not read the request body: %v", err)
		}
	}
}

// roundUp is the power of two at or above n, so that a buffer fits the
// slightly larger delivery that comes next.
func roundUp(n int) int {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len(uint(n-1))
}

// decode is intake's work beyond the signature: find the JSON document,
// check it is JSON, and read only the fields routing needs. scan does both
// in one pass over the bytes without building a tree, which keeps a 24 KB
// delivery in the microseconds (SPEC §11). Validation reads to the end: a
// malformed body is 400 (SPEC §9), never a job that cannot decode.
//
// The same pass notes where each top-level member ends (Job.Outline), into
// outline, scratch memory the caller owns; the job gets its own copy.
func decode(event, delivery, contentType string, raw []byte, names *interner, outline *[]int32) (queue.Job, *problem) {
	payload, p := payloadOf(contentType, raw)
	if p != nil {
		return queue.Job{}, p
	}
	*outline = (*outline)[:0]
	f, ok, _ := scanNames(payload, names, outline)
	if !ok {
		return queue.Job{}, reject(http.StatusBadRequest, "body is not valid JSON: %s", syntaxError(payload))
	}
	var members []int32
	if len(*outline) > 0 {
		members = slices.Clone(*outline)
	}
	return queue.Job{
		DeliveryID:     delivery,
		Event:          event,
		Action:         f.action,
		InstallationID: f.installationID,
		Repo:           f.repo,
		Payload:        payload,
		Outline:        members,
	}, nil
}

// payloadOf returns the JSON document of a delivery sent either as
// application/json or as application/x-www-form-urlencoded (payload=...).
func payloadOf(contentType string, raw []byte) ([]byte, *problem) {
	mt := "application/json"
	// GitHub sends exactly this; parsing it costs as much as scanning the
	// whole body, so the general parser is only for everything else.
	if contentType != "" && contentType != "application/json" {
		var err error
		if mt, _, err = mime.ParseMediaType(contentType); err != nil {
			return nil, reject(http.StatusUnsupportedMediaType, "Content-Type %q cannot be parsed: set the App's webhook content type to application/json", contentType)
		}
	}
	switch mt {
	case "application/json":
		return raw, nil
	case "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(raw))
		if err != nil {
			return nil, reject(http.StatusBadRequest, "form body cannot be parsed: %v", err)
		}
		p := form.Get("payload")
		if p == "" {
			return nil, reject(http.StatusBadRequest, "form body has no payload field: GitHub sends the JSON as payload=...")
		}
		return []byte(p), nil
	default:
		return nil, reject(http.StatusUnsupportedMediaType, "Content-Type %s is not a webhook content type: use application/json", mt)
	}
}

// verify checks header against body's HMAC, computed into sum: memory
// the caller owns, since hash.Hash's Sum makes its argument escape.
func (h *Handler) verify(header string, body []byte, sum *[sha256.Size]byte) bool {
	const prefix = "sha256="
	if len(header) != len(prefix)+2*sha256.Size || header[:len(prefix)] != prefix {
		return false
	}
	var want [sha256.Size]byte
	for i := range want {
		hi, ok1 := unhex(header[len(prefix)+2*i])
		lo, ok2 := unhex(header[len(prefix)+2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		want[i] = hi<<4 | lo
	}
	mac := h.macs.Get().(hash.Hash)
	defer h.macs.Put(mac)
	mac.Reset()
	mac.Write(body)
	return hmac.Equal(mac.Sum(sum[:0]), want[:])
}

// syntaxError explains why a body is not JSON. It runs only on the error
// path, so it may use the slower standard decoder to find the offset.
func syntaxError(b []byte) string {
	var v any
	err := json.Unmarshal(b, &v)
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("%v at byte %d", se, se.Offset)
	case err != nil:
		return err.Error()
	default:
		return "unexpected content"
	}
}

// Sign returns the X-Hub-Signature-256 value GitHub would send for body.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// metricEvent bounds the label's cardinality: event names are chosen by
// whoever sends the request, and only signed ones are GitHub's.
func metricEvent(event string) string {
	if len(event) > 40 {
		return "other"
	}
	for i := 0; i < len(event); i++ {
		c := event[i]
		if (c < 'a' || c > 'z') && c != '_' {
			return "other"
		}
	}
	return event
}

// unhex is the value of one hex digit (hex.Decode would need the header
// copied to a []byte).
func unhex(c byte) (byte, bool) {
	switch {
	case c-'0' < 10:
		return c - '0', true
	case c-'a' < 6:
		return c - 'a' + 10, true
	case c-'A' < 6:
		return c - 'A' + 10, true
	}
	return 0, false
}

func message(msg string) []byte {
	b, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{msg})
	return append(b, '\n')
}

// appendJobMessage appends the answer to a queued delivery.
func appendJobMessage(dst []byte, id string) []byte {
	dst = append(dst, `{"message":"queued","job":`...)
	dst = strconv.AppendQuote(dst, id)
	return append(dst, "}\n"...)
}
