package queue

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// statsTimeout keeps a slow or unreachable store from stalling the whole
// scrape; Prometheus' own default scrape timeout is 10s.
const statsTimeout = 2 * time.Second

type collector struct {
	q    Queue
	jobs *prometheus.Desc
	up   *prometheus.Desc
	// groups: report the queue's group sizes (the main queue only; a
	// second queue's would collide with its series).
	groups bool
}

// NewCollector reports the queue's Stats at scrape time as
// shipbot_queue_jobs{state="ready|leased|delayed|dead"}, and
// shipbot_queue_up, which is 0 when Stats failed: the jobs series are then
// left out rather than reported as zeros that would look like an empty
// queue. For a queue that groups concurrent calls into one round trip
// (Redis), it adds shipbot_queue_group_size{op="enqueue|lease|settle"};
// for the embedded store, shipbot_queue_group_size{op="journal|commit"} and
// shipbot_queue_commit_seconds.
func NewCollector(q Queue) prometheus.Collector {
	c := newCollector(q, "shipbot_queue", "the queue", nil)
	c.groups = true
	return c
}

// NewHostCollector reports a host's own queue (the jobs other hosts' workers
// handed to this DATA_DIR's host) as shipbot_host_queue_jobs{host,state}
// and shipbot_host_queue_up{host}, the same way.
func NewHostCollector(q Queue, host string) prometheus.Collector {
	return newCollector(q, "shipbot_host_queue", "this host's own queue", prometheus.Labels{"host": host})
}

func newCollector(q Queue, name, what string, constLabels prometheus.Labels) *collector {
	return &collector{
		q: q,
		jobs: prometheus.NewDesc(name+"_jobs",
			"Jobs in "+what+" by state; dead counts the dead letters kept.",
			[]string{"state"}, constLabels),
		up: prometheus.NewDesc(name+"_up",
			"Whether the store of "+what+" answered the last scrape.", nil, constLabels),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.jobs
	ch <- c.up
	if g, ok := c.q.(grouper); ok && c.groups {
		g.groupSizes().Describe(ch)
	}
	if t, ok := c.q.(committer); ok && c.groups {
		t.commitTimes().Describe(ch)
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	// Collect has no context of its own: the scrape's request is not
	// passed down by client_golang.
	if g, ok := c.q.(grouper); ok && c.groups {
		g.groupSizes().Collect(ch)
	}
	if t, ok := c.q.(committer); ok && c.groups {
		t.commitTimes().Collect(ch)
	}
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	s, err := c.q.Stats(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for _, v := range []struct {
		state string
		n     int64
	}{{"ready", s.Ready}, {"leased", s.Leased}, {"delayed", s.Delayed}, {"dead", s.Dead}} {
		ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(v.n), v.state)
	}
}

// grouper is a queue whose concurrent calls share round trips (Redis) or
// commits (embedded).
type grouper interface {
	groupSizes() *prometheus.HistogramVec
}

func (r *Redis) groupSizes() *prometheus.HistogramVec { return r.groupSize }

func (e *Embedded) groupSizes() *prometheus.HistogramVec { return e.groupSize }

// committer is a queue that commits to a disk of its own (embedded).
type committer interface {
	commitTimes() prometheus.Histogram
}

func (e *Embedded) commitTimes() prometheus.Histogram { return e.commitTime }

// newCommitTimeHistogram is the embedded store's commit time: where a
// webhook's acknowledgement waits on the disk.
func newCommitTimeHistogram() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "shipbot_queue_commit_seconds",
		Help:    "Time of each commit of the embedded store, its fsyncs included.",
		Buckets: []float64{.00025, .0005, .001, .002, .003, .005, .01, .025, .1},
	})
}

// newGroupSizeHistogram counts calls per round trip: near 1 at low load,
// growing with load; a mean stuck at groupMaxJobs says the store is the
// bottleneck.
func newGroupSizeHistogram() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "shipbot_queue_group_size",
		Help:    "Calls that shared one round trip to the queue's store, by operation: enqueue, lease (reads), settle (acks and extends); commit for the embedded store (writes per commit).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 8),
	}, []string{"op"})
}
