package testenv

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// TestStartPrometheus: the server starts, scrapes the target it was given
// and answers queries about it.
func TestStartPrometheus(t *testing.T) {
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte("# TYPE shipbot_test_answer gauge\nshipbot_test_answer 42\n"))
	}))
	defer exporter.Close()
	target := strings.TrimPrefix(exporter.URL, "http://")

	start := time.Now()
	p := StartPrometheus(t, target)
	t.Logf("ready after %s", time.Since(start).Round(time.Millisecond))
	p.WaitScraped(target)
	t.Logf("scraped after %s", time.Since(start).Round(time.Millisecond))

	c, err := api.NewClient(api.Config{Address: p.URL()})
	if err != nil {
		t.Fatal(err)
	}
	v, _, _, err := v1.NewAPI(c).Query(context.Background(), `shipbot_test_answer{job="`+PrometheusJob+`"}`, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	vec, ok := v.(model.Vector)
	if !ok || len(vec) != 1 || vec[0].Value != 42 || string(vec[0].Metric["instance"]) != target {
		t.Fatalf("shipbot_test_answer = %v, want 42 from %s", v, target)
	}
}
