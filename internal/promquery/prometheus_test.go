package promquery

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shipbot/shipbot/internal/testenv"
)

// TestQueryRealPrometheus runs the checks of analysis.prometheus against a
// real Prometheus scraping an app of the test's: its checkout errors of
// release abc rise while the test runs, those of release def stay flat.
func TestQueryRealPrometheus(t *testing.T) {
	t.Parallel() // most of it is waiting for Prometheus' first scrapes
	checkoutErrors := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "checkout_errors_total",
		Help: "Checkouts that failed, by release.",
	}, []string{"release"})
	reg := prometheus.NewRegistry()
	reg.MustRegister(checkoutErrors)
	app := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer app.Close()
	checkoutErrors.WithLabelValues("def").Add(3)

	target := strings.TrimPrefix(app.URL, "http://")
	prom := testenv.StartPrometheus(t, target)
	prom.WaitScraped(target)
	c := New(0)
	ctx := context.Background()

	// A rate needs two scrapes of the series in its window.
	rising := `sum(rate(checkout_errors_total{release="abc"}[5s]))`
	deadline := time.Now().Add(15 * time.Second)
	for {
		checkoutErrors.WithLabelValues("abc").Inc()
		got, err := c.Query(ctx, prom.URL(), rising, time.Now())
		if err == nil && got > 0 {
			t.Logf("%s = %v", rising, got)
			break
		}
		if err != nil && !errors.Is(err, ErrNoData) {
			t.Fatalf("%s: %v", rising, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, %v; want > 0 within 15s of the first scrape", rising, got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	tests := []struct {
		name, query string
		at          time.Time
		want        float64
		err         string
	}{
		{name: "flat counter", query: `sum(rate(checkout_errors_total{release="def"}[5s]))`, want: 0},
		{name: "flat increase", query: `sum(increase(checkout_errors_total{release="def"}[5s]))`, want: 0},
		{name: "scalar", query: `scalar(sum(checkout_errors_total{release="def"}))`, want: 3},
		{name: "no such release", query: `sum(rate(checkout_errors_total{release="0ld"}[5s]))`,
			err: "query returned no data: check the metric and label names, and that Prometheus scrapes the app"},
		{name: "no such release, or 0", query: `sum(rate(checkout_errors_total{release="0ld"}[5s])) or vector(0)`, want: 0},
		{name: "before the data", query: `sum(checkout_errors_total{release="def"})`, at: time.Now().Add(-time.Hour),
			err: "query returned no data"},
		{name: "two series", query: `rate(checkout_errors_total[5s])`,
			err: `query returned 2 series ({instance="` + target + `", job="app", release="abc"}, {instance="` + target + `", job="app", release="def"}); aggregate them to one number, e.g. with sum(...)`},
		{name: "range vector", query: `checkout_errors_total{release="def"}[5s]`, err: "query returned a range vector"},
		{name: "string", query: `"checkout"`, err: `query returned no number (unexpected value type "string")`},
		{name: "0/0", query: `sum(rate(checkout_errors_total{release="def"}[5s])) / sum(rate(checkout_errors_total{release="def"}[5s]))`,
			err: "query returned NaN"},
		{name: "0/0 guarded", query: `sum(rate(checkout_errors_total{release="def"}[5s])) / (sum(rate(checkout_errors_total{release="def"}[5s])) > 0) or vector(0)`, want: 0},
		{name: "bad PromQL", query: `sum(rate(checkout_errors_total[5s])`,
			err: "bad query for Prometheus at " + prom.URL() + " (bad_data: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at := tt.at
			if at.IsZero() {
				at = time.Now()
			}
			got, err := c.Query(ctx, prom.URL(), tt.query, at)
			if tt.err == "" {
				if err != nil || got != tt.want {
					t.Fatalf("%s = %v, %v; want %v", tt.query, got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("%s = %v, %v; want an error with %q", tt.query, got, err, tt.err)
			}
		})
	}
}
