package dora

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Source lists the release history of every environment to report, one
// History per environment, read at scrape time.
type Source func(ctx context.Context) ([]History, error)

// Options configure a Collector.
type Options struct {
	Window Window
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Timeout bounds one call of the Source, so a slow store cannot stall
	// the whole scrape; 0 means DefaultTimeout.
	Timeout time.Duration
}

// DefaultTimeout is Options.Timeout when unset; Prometheus' own default
// scrape timeout is 10s, and the rest of /metrics needs some of it.
const DefaultTimeout = 3 * time.Second

// Collector exposes each environment's Metrics as gauges with repo and
// environment labels, computed on every scrape from its Source:
//
//	shipbot_dora_deploys_per_day            deploys per day over the window
//	shipbot_dora_change_failure_rate        failed or rolled back ÷ all, 0 to 1
//	shipbot_dora_lead_time_seconds          median, commit to success
//	shipbot_dora_time_to_restore_seconds    median, failed change to the next success
//	shipbot_dora_up                         0 when the Source failed
//
// A figure with nothing to measure (no deploys, no lead times, no
// restores) is left out rather than reported as 0, which would read as
// perfect. When the Source fails only shipbot_dora_up is reported.
type Collector struct {
	source  Source
	o       Options
	perDay  *prometheus.Desc
	cfr     *prometheus.Desc
	lead    *prometheus.Desc
	restore *prometheus.Desc
	up      *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns a Collector reading from source.
func NewCollector(source Source, o Options) *Collector {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	labels := []string{"repo", "environment"}
	window := " over the last " + strconv.Itoa(o.Window.days()) + " days"
	return &Collector{
		source: source,
		o:      o,
		perDay: prometheus.NewDesc("shipbot_dora_deploys_per_day",
			"Deploys (releases, whatever their result) per day"+window+".", labels, nil),
		cfr: prometheus.NewDesc("shipbot_dora_change_failure_rate",
			"Share of deploys that failed or were rolled back, 0 to 1,"+window+".", labels, nil),
		lead: prometheus.NewDesc("shipbot_dora_lead_time_seconds",
			"Median time from a commit's timestamp to its first successful release,"+window+".", labels, nil),
		restore: prometheus.NewDesc("shipbot_dora_time_to_restore_seconds",
			"Median time from a failed or rolled-back release to the next success,"+window+".", labels, nil),
		up: prometheus.NewDesc("shipbot_dora_up",
			"Whether the release history could be read at the last scrape.", nil, nil),
	}
}

// Describe sends the gauges' descriptions.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.perDay, c.cfr, c.lead, c.restore, c.up} {
		ch <- d
	}
}

// Collect reads the history and sends each environment's figures.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	// client_golang passes Collect no context of the scrape.
	ctx, cancel := context.WithTimeout(context.Background(), c.o.Timeout)
	defer cancel()
	hs, err := c.source(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	now := c.o.Now()
	for _, h := range hs {
		m := Compute(h, c.o.Window, now)
		labels := []string{h.Env.Repo, h.Env.Name}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
		}
		gauge(c.perDay, m.DeploysPerDay())
		if rate, ok := m.ChangeFailureRate(); ok {
			gauge(c.cfr, rate)
		}
		if m.LeadTimes > 0 {
			gauge(c.lead, m.LeadTime.Seconds())
		}
		if m.Restores > 0 {
			gauge(c.restore, m.TimeToRestore.Seconds())
		}
	}
}
