// Package promquery answers the Prometheus checks of canary analysis
// (analysis.prometheus, SPEC §6.8): it evaluates one PromQL expression at
// one instant against the Prometheus a repository's config names, through
// client_golang's API client, and insists that the answer is one number.
//
// Whatever else comes back is an error that says what came back and how to
// change the query. Errors that asking again cannot mend (bad PromQL, a
// URL that is no Prometheus, a query that makes several series) have a
// Permanent() method returning true; the others (Prometheus unreachable,
// slow, or answering no data or NaN for now) do not.
package promquery

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/logctx"
)

// DefaultTimeout bounds one query, from connecting to the last byte of the
// answer, and Prometheus' evaluation of it.
const DefaultTimeout = 10 * time.Second

// ErrNoData is a query that matched no series (an empty vector).
var ErrNoData = errors.New("query returned no data")

// Client queries Prometheus servers by URL. It is safe for concurrent use;
// it keeps one API client per URL, all on one pool of connections.
type Client struct {
	timeout time.Duration
	http    *http.Client

	mu   sync.Mutex
	apis map[string]v1.API
}

var _ deploy.Querier = (*Client)(nil)

// New returns a Client whose queries each take at most timeout, or
// DefaultTimeout when timeout is 0 or less; a shorter deadline in the
// query's context wins.
func New(timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	return &Client{
		timeout: timeout,
		http:    &http.Client{Transport: transport, Timeout: timeout},
		apis:    map[string]v1.API{},
	}
}

// Query evaluates query at the instant at (now when at is zero) against
// the Prometheus at prometheusURL and returns its one number: a scalar, or
// the value of a vector's only sample. Prometheus' warnings are logged to
// the logger in ctx.
func (c *Client) Query(ctx context.Context, prometheusURL, query string, at time.Time) (float64, error) {
	a, err := c.api(prometheusURL)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	v, warnings, _, err := a.Query(ctx, query, at, v1.WithTimeout(c.timeout))
	if err != nil {
		return 0, callError(prometheusURL, time.Since(start), err)
	}
	if len(warnings) > 0 {
		logctx.From(ctx).Warn("Prometheus warned about a query", "url", prometheusURL, "query", query, "warnings", []string(warnings))
	}
	return one(v)
}

// api returns the API client of prometheusURL, made at its first use.
func (c *Client) api(prometheusURL string) (v1.API, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.apis[prometheusURL]; ok {
		return a, nil
	}
	u, err := url.Parse(prometheusURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, permanent{fmt.Errorf("the Prometheus URL %q is not an http(s) URL: set analysis.prometheus.url to one, e.g. http://prometheus:9090", prometheusURL)}
	}
	ac, err := api.NewClient(api.Config{Address: prometheusURL, Client: c.http})
	if err != nil {
		return nil, permanent{fmt.Errorf("the Prometheus URL %q: %w", prometheusURL, err)}
	}
	a := v1.NewAPI(ac)
	c.apis[prometheusURL] = a
	return a, nil
}

// callError says what went wrong, after took, between us and the
// Prometheus at prometheusURL, naming it.
func callError(prometheusURL string, took time.Duration, err error) error {
	var pe *v1.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no answer from Prometheus at %s in %s: %w", prometheusURL, took.Round(time.Millisecond), err)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("query to Prometheus at %s canceled: %w", prometheusURL, err)
	case errors.As(err, &pe) && pe.Type == v1.ErrBadData:
		return permanent{fmt.Errorf("bad query for Prometheus at %s (%w): fix it in analysis.prometheus.checks", prometheusURL, err)}
	case errors.As(err, &pe) && pe.Type == v1.ErrClient:
		// A 4xx that is not Prometheus' own error answer: no such path.
		return permanent{fmt.Errorf("%s does not answer like Prometheus (%w): check analysis.prometheus.url", prometheusURL, err)}
	case errors.As(err, &pe) && pe.Type == v1.ErrBadResponse && strings.HasPrefix(pe.Msg, "unexpected value type"):
		// client_golang reads scalars, vectors and matrices only; a
		// string result ends here.
		return permanent{fmt.Errorf("query returned no number (%s); make it one, e.g. with sum(...)", pe.Msg)}
	case errors.As(err, &pe) && pe.Type == v1.ErrBadResponse:
		return fmt.Errorf("%s gave an answer that is not Prometheus' (%w): check analysis.prometheus.url", prometheusURL, err)
	case errors.As(err, &pe):
		return fmt.Errorf("query to Prometheus at %s: %w", prometheusURL, err)
	}
	return fmt.Errorf("cannot reach Prometheus at %s: %w", prometheusURL, err)
}

// one is the one number of v, or an error saying what v is instead.
func one(v model.Value) (float64, error) {
	switch v := v.(type) {
	case *model.Scalar:
		return number(float64(v.Value))
	case model.Vector:
		switch {
		case len(v) == 0:
			return 0, fmt.Errorf("%w: check the metric and label names, and that Prometheus scrapes the app; "+
				"where no series means 0 (a counter not yet incremented), add `or vector(0)`", ErrNoData)
		case len(v) > 1:
			return 0, permanent{fmt.Errorf("query returned %d series (%s); aggregate them to one number, e.g. with sum(...)", len(v), seriesList(v))}
		case v[0].Histogram != nil:
			return 0, permanent{errors.New("query returned a native histogram; make it one number, e.g. with histogram_quantile(0.99, ...) or histogram_count(...)")}
		}
		return number(float64(v[0].Value))
	case model.Matrix:
		return 0, permanent{errors.New("query returned a range vector; make it one number per series, e.g. with rate(...[1m]), and aggregate them to one, e.g. with sum(...)")}
	case nil:
		return 0, errors.New("empty answer from Prometheus")
	}
	return 0, permanent{fmt.Errorf("query returned a %s, not a number", v.Type())}
}

const divisorHint = "where that means 0, drop a zero divisor and default to 0, e.g. a / (b > 0) or vector(0)"

// number refuses NaN and infinities: no limit can judge them.
func number(f float64) (float64, error) {
	switch {
	case math.IsNaN(f):
		return 0, fmt.Errorf("query returned NaN, as a ratio does when it divides 0 by 0 (no traffic in the window); %s", divisorHint)
	case math.IsInf(f, 0):
		return 0, fmt.Errorf("query returned %v, as a division by 0 does; %s", f, divisorHint)
	}
	return f, nil
}

// seriesList names the first three series of v.
func seriesList(v model.Vector) string {
	var names []string
	for i, s := range v {
		if i == 3 {
			names = append(names, "…")
			break
		}
		names = append(names, s.Metric.String())
	}
	return strings.Join(names, ", ")
}

// permanent marks an error that asking again cannot mend.
type permanent struct{ error }

func (p permanent) Permanent() bool { return true }
func (p permanent) Unwrap() error   { return p.error }
