package queue_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shipbot/shipbot/queue"
)

func TestCollectorReportsStats(t *testing.T) {
	q, err := queue.OpenEmbedded(filepath.Join(t.TempDir(), "queue.db"), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	mustEnqueue(t, q, "m1")
	mustEnqueue(t, q, "m2")
	l := mustLease(t, q, "w", 0)
	if err := q.Nack(context.Background(), l, "bad", false); err != nil {
		t.Fatal(err)
	}
	mustLease(t, q, "w", 0)
	mustEnqueue(t, q, "m3")

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(queue.NewCollector(q))
	want := map[string]float64{"ready": 1, "leased": 1, "delayed": 0, "dead": 1, "up": 1}
	if got := gather(t, reg); !equalMaps(got, want) {
		t.Errorf("metrics = %v, want %v", got, want)
	}

	q.Close()
	if got := gather(t, reg); !equalMaps(got, map[string]float64{"up": 0}) {
		t.Errorf("metrics of a closed queue = %v, want only up=0", got)
	}
}

// gather flattens the collector's output to state -> value, with "up" for
// shipbot_queue_up.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			switch f.GetName() {
			case "shipbot_queue_up":
				got["up"] = m.GetGauge().GetValue()
			case "shipbot_queue_jobs":
				for _, lp := range m.GetLabel() {
					if lp.GetName() == "state" {
						got[lp.GetValue()] = m.GetGauge().GetValue()
					}
				}
			default:
				t.Errorf("unexpected metric %s", f.GetName())
			}
		}
	}
	return got
}

func equalMaps(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
