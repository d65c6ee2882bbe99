package promquery

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/logctx"
)

// fakePrometheus answers /api/v1/query the way Prometheus' HTTP API does
// (https://prometheus.io/docs/prometheus/latest/querying/api/): the body
// for each query is in answers, keyed by the query; the evaluation time
// asked for is echoed into the result where a body has %TIME%.
func fakePrometheus(t *testing.T, answers map[string]answer) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		if err := r.ParseForm(); err != nil {
			t.Errorf("parse form: %v", err)
		}
		a, ok := answers[r.Form.Get("query")]
		if !ok {
			t.Errorf("unexpected query %q", r.Form.Get("query"))
			w.WriteHeader(http.StatusTeapot)
			return
		}
		if a.delay > 0 {
			select {
			case <-time.After(a.delay):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if a.status == 0 {
			a.status = http.StatusOK
		}
		w.WriteHeader(a.status)
		_, _ = w.Write([]byte(strings.ReplaceAll(a.body, "%TIME%", r.Form.Get("time"))))
	}))
	t.Cleanup(srv.Close)
	return srv
}

type answer struct {
	status int
	body   string
	delay  time.Duration
}

func success(resultType, result string) answer {
	return answer{body: `{"status":"success","data":{"resultType":"` + resultType + `","result":` + result + `}}`}
}

func TestQueryShapes(t *testing.T) {
	answers := map[string]answer{
		"scalar":       success("scalar", `[%TIME%,"0.25"]`),
		"one":          success("vector", `[{"metric":{"release":"abc"},"value":[%TIME%,"3"]}]`),
		"none":         success("vector", `[]`),
		"three":        success("vector", `[{"metric":{"instance":"a"},"value":[1,"1"]},{"metric":{"instance":"b"},"value":[1,"2"]},{"metric":{"instance":"c"},"value":[1,"3"]}]`),
		"five":         success("vector", `[{"metric":{"i":"1"},"value":[1,"1"]},{"metric":{"i":"2"},"value":[1,"1"]},{"metric":{"i":"3"},"value":[1,"1"]},{"metric":{"i":"4"},"value":[1,"1"]},{"metric":{"i":"5"},"value":[1,"1"]}]`),
		"matrix":       success("matrix", `[{"metric":{"release":"abc"},"values":[[1,"1"],[2,"2"]]}]`),
		"string":       success("string", `[1,"hello"]`),
		"nan":          success("vector", `[{"metric":{},"value":[1,"NaN"]}]`),
		"inf":          success("scalar", `[1,"+Inf"]`),
		"-inf":         success("vector", `[{"metric":{},"value":[1,"-Inf"]}]`),
		"histogram":    success("vector", `[{"metric":{},"histogram":[1,{"count":"2","sum":"0.5","buckets":[[0,"0.1","0.5","2"]]}]}]`),
		"warned":       {body: `{"status":"success","warnings":["PromQL info: metric might not be a counter"],"data":{"resultType":"scalar","result":[1,"7"]}}`},
		"bad(":         {status: http.StatusBadRequest, body: `{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:4: parse error: unclosed left parenthesis"}`},
		"unavailable":  {status: http.StatusServiceUnavailable, body: `<html>upstream down</html>`},
		"execution":    {status: http.StatusUnprocessableEntity, body: `{"status":"error","errorType":"execution","error":"expanding series: too many samples"}`},
		"notjson":      {body: `<html>a login page</html>`},
		"slow":         {delay: 2 * time.Second, body: `{}`},
		"emptysuccess": {body: `{"status":"success","data":{"resultType":"vector","result":null}}`},
	}
	srv := fakePrometheus(t, answers)
	c := New(300 * time.Millisecond)
	at := time.Date(2026, 3, 4, 5, 6, 7, 500_000_000, time.UTC)

	tests := []struct {
		query     string
		want      float64
		err       string // a part of the error; "" = no error
		permanent bool
		noData    bool
		logged    string // a part of what is logged
	}{
		{query: "scalar", want: 0.25},
		{query: "one", want: 3},
		{query: "warned", want: 7, logged: `msg="Prometheus warned about a query" url=` + srv.URL + ` query=warned warnings="[PromQL info: metric might not be a counter]"`},
		{query: "none", err: "query returned no data: check the metric and label names, and that Prometheus scrapes the app", noData: true},
		{query: "emptysuccess", err: "query returned no data", noData: true},
		{query: "three", err: `query returned 3 series ({instance="a"}, {instance="b"}, {instance="c"}); aggregate them to one number, e.g. with sum(...)`, permanent: true},
		{query: "five", err: `query returned 5 series ({i="1"}, {i="2"}, {i="3"}, …)`, permanent: true},
		{query: "matrix", err: "query returned a range vector; make it one number per series, e.g. with rate(...[1m])", permanent: true},
		{query: "string", err: `query returned no number (unexpected value type "string"); make it one, e.g. with sum(...)`, permanent: true},
		{query: "nan", err: "query returned NaN, as a ratio does when it divides 0 by 0"},
		{query: "inf", err: "query returned +Inf, as a division by 0 does"},
		{query: "-inf", err: "query returned -Inf"},
		{query: "histogram", err: "query returned a native histogram", permanent: true},
		{query: "bad(", err: "bad query for Prometheus at " + srv.URL + " (bad_data: invalid parameter \"query\": 1:4: parse error: unclosed left parenthesis): fix it in analysis.prometheus.checks", permanent: true},
		{query: "unavailable", err: "query to Prometheus at " + srv.URL + ": server_error: server error: 503"},
		{query: "execution", err: "query to Prometheus at " + srv.URL + ": execution: expanding series: too many samples"},
		{query: "notjson", err: srv.URL + " gave an answer that is not Prometheus'"},
		{query: "slow", err: "no answer from Prometheus at " + srv.URL + " in "},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			var log strings.Builder
			ctx := logctx.With(context.Background(), slog.New(slog.NewTextHandler(&log, nil)))
			got, err := c.Query(ctx, srv.URL, tt.query, at)
			if !strings.Contains(log.String(), tt.logged) || (tt.logged == "" && log.Len() > 0) {
				t.Errorf("logged %q, want %q", log.String(), tt.logged)
			}
			if tt.err == "" {
				if err != nil || got != tt.want {
					t.Fatalf("Query = %v, %v; want %v", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Query = %v, want an error with %q", got, tt.err)
			}
			if !strings.Contains(err.Error(), tt.err) {
				t.Errorf("error %q\n does not contain %q", err, tt.err)
			}
			if p := isPermanent(err); p != tt.permanent {
				t.Errorf("permanent = %v, want %v (%v)", p, tt.permanent, err)
			}
			if errors.Is(err, ErrNoData) != tt.noData {
				t.Errorf("errors.Is(err, ErrNoData) = %v, want %v", !tt.noData, tt.noData)
			}
		})
	}
}

// TestQueryTime: the instant asked for is the instant evaluated.
func TestQueryTime(t *testing.T) {
	srv := fakePrometheus(t, map[string]answer{"time()": success("scalar", `[%TIME%,"%TIME%"]`)})
	at := time.Date(2026, 3, 4, 5, 6, 7, 500_000_000, time.UTC)
	got, err := New(0).Query(context.Background(), srv.URL, "time()", at)
	if err != nil {
		t.Fatal(err)
	}
	if want := float64(at.UnixMilli()) / 1000; got != want {
		t.Errorf("time() at %s = %v, want %v", at, got, want)
	}
}

func TestQueryURLs(t *testing.T) {
	c := New(time.Second)
	tests := []struct{ url, err string }{
		{"prometheus:9090", `the Prometheus URL "prometheus:9090" is not an http(s) URL`},
		{"", `the Prometheus URL "" is not an http(s) URL`},
		{"ftp://prometheus", `is not an http(s) URL`},
	}
	for _, tt := range tests {
		_, err := c.Query(context.Background(), tt.url, "up", time.Now())
		if err == nil || !strings.Contains(err.Error(), tt.err) || !isPermanent(err) {
			t.Errorf("Query(%q) error = %v, want a permanent one with %q", tt.url, err, tt.err)
		}
	}

	// Not Prometheus: a server with no /api/v1/query.
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	_, err := c.Query(context.Background(), srv.URL, "up", time.Now())
	if err == nil || !strings.Contains(err.Error(), srv.URL+" does not answer like Prometheus (client_error: client error: 404): check analysis.prometheus.url") || !isPermanent(err) {
		t.Errorf("Query(not Prometheus) error = %v", err)
	}
}

// TestQueryUnreachable: a closed port is an error naming the URL, which
// asking again may mend.
func TestQueryUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, err := New(time.Second).Query(context.Background(), url, "up", time.Now())
	if err == nil || !strings.Contains(err.Error(), "cannot reach Prometheus at "+url+": ") || isPermanent(err) {
		t.Fatalf("Query(closed port) error = %v, want a transient one naming %s", err, url)
	}
}

// TestQueryCanceled: the caller's context bounds the query too.
func TestQueryCanceled(t *testing.T) {
	srv := fakePrometheus(t, map[string]answer{"slow": {delay: 5 * time.Second, body: `{}`}})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := New(0).Query(ctx, srv.URL, "slow", time.Now())
	if err == nil || !strings.HasPrefix(err.Error(), "no answer from Prometheus at "+srv.URL+" in ") {
		t.Fatalf("Query error = %v, want no answer from %s", err, srv.URL)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Query took %s with a 100ms context", took)
	}
}

// TestQueryConcurrent: one Client serves many goroutines and URLs.
func TestQueryConcurrent(t *testing.T) {
	a := fakePrometheus(t, map[string]answer{"x": success("scalar", `[1,"1"]`)})
	b := fakePrometheus(t, map[string]answer{"x": success("scalar", `[1,"2"]`)})
	c := New(0)
	errs := make(chan error, 40)
	for i := range 40 {
		url, want := a.URL, 1.0
		if i%2 == 1 {
			url, want = b.URL, 2.0
		}
		go func() {
			got, err := c.Query(context.Background(), url, "x", time.Time{})
			if err == nil && got != want {
				err = errors.New("got " + strconv.FormatFloat(got, 'g', -1, 64) + " from " + url)
			}
			errs <- err
		}()
	}
	for range 40 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := len(c.apis); n != 2 {
		t.Errorf("%d API clients for 2 URLs", n)
	}
}

func isPermanent(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent()
}
