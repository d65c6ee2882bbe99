package queue_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	got := map[string]float64{}
	for key, v := range gatherAll(t, reg) {
		switch state, ok := strings.CutPrefix(key, "shipbot_queue_jobs,state="); {
		case key == "shipbot_queue_up":
			got["up"] = v
		case strings.HasPrefix(key, "shipbot_queue_group_size") || key == "shipbot_queue_commit_seconds":
			// histograms: TestCollectorReportsCommits
		case ok:
			got[state] = v
		default:
			t.Errorf("unexpected metric %s", key)
		}
	}
	return got
}

// gatherAll flattens every gauge to "name,label=value,..." -> value.
func gatherAll(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, lp := range m.GetLabel() {
				key += "," + lp.GetName() + "=" + lp.GetValue()
			}
			got[key] = m.GetGauge().GetValue()
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

// A host's own queue is reported beside the main one under names of its
// own, labelled with the host, without the main queue's group sizes.
func TestHostCollectorBesideTheMainOne(t *testing.T) {
	main, host := openEmbeddedQueue(t), openEmbeddedQueue(t)
	mustEnqueue(t, main, "m1")
	mustEnqueue(t, host, "h1")
	mustEnqueue(t, host, "h2")
	mustLease(t, host, "w", 0)

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(queue.NewCollector(main), queue.NewHostCollector(host, "host-a"))
	got := gatherAll(t, reg)
	for k, v := range map[string]float64{
		"shipbot_queue_jobs,state=ready":                   1,
		"shipbot_host_queue_jobs,host=host-a,state=ready":  1,
		"shipbot_host_queue_jobs,host=host-a,state=leased": 1,
		"shipbot_host_queue_up,host=host-a":                1,
	} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v; all: %v", k, g, ok, v, got)
		}
	}
}

func openEmbeddedQueue(t *testing.T) queue.Queue {
	t.Helper()
	q, err := queue.OpenEmbedded(filepath.Join(t.TempDir(), "queue.db"), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// The embedded store reports its journal appends (how many Enqueues each
// carried) and its commits (how many writes each carried, how long each
// took on disk); the enqueued jobs reach a commit within a checkpoint's
// delay.
func TestCollectorReportsCommits(t *testing.T) {
	q := openEmbeddedQueue(t)
	for _, id := range []string{"c1", "c2", "c3"} {
		mustEnqueue(t, q, id)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(queue.NewCollector(q))
	var counts map[string]float64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		counts = map[string]float64{}
		for _, f := range families {
			for _, m := range f.GetMetric() {
				h := m.GetHistogram()
				if h == nil {
					continue
				}
				name := f.GetName()
				for _, l := range m.GetLabel() {
					name += "/" + l.GetValue()
				}
				counts[name+" count"] += float64(h.GetSampleCount())
				counts[name+" sum"] += h.GetSampleSum()
			}
		}
		if counts["shipbot_queue_commit_seconds count"] >= 1 || time.Now().After(deadline) {
			break
		}
	}
	if counts["shipbot_queue_group_size/journal sum"] != 3 || counts["shipbot_queue_commit_seconds count"] < 1 || counts["shipbot_queue_group_size/commit count"] < 1 {
		t.Errorf("histograms %v, want 3 enqueues journaled and a commit counted", counts)
	}
}
