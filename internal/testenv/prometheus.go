package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
)

// PrometheusJob is the job name of the targets StartPrometheus scrapes.
const PrometheusJob = "app"

// Prometheus is a prometheus child process owned by one test: a real
// Prometheus server scraping the test's targets every second.
type Prometheus struct {
	t    testing.TB
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// StartPrometheus starts the real prometheus (Debian package prometheus)
// on a free loopback port, with a temporary storage directory and a
// configuration that scrapes each of targets (host:port, path /metrics)
// every second as job PrometheusJob, waits until it is ready, and stops it
// when the test ends.
//
// Prometheus hands the targets of its configuration to its scrapers
// only every 5 s, so the first scrape comes about 5 s after the start;
// WaitScraped waits for it.
func StartPrometheus(t testing.TB, targets ...string) *Prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		Missing(t, "prometheus is not on PATH (Debian package prometheus)")
	}
	// A port another test's server took in the meantime makes this one
	// exit: try again on another port.
	var log string
	for attempt := 0; attempt < 3; attempt++ {
		p := &Prometheus{t: t, dir: t.TempDir(), port: FreePort(t), done: make(chan struct{})}
		if p.start(bin, targets) {
			return p
		}
		log = p.Log()
	}
	t.Fatalf("testenv: prometheus did not start on a port of its own in 3 attempts; its last log:\n%s", log)
	return nil
}

// start starts the server and waits until it is ready; false when it
// exited at start (its port was taken) or did not get ready within 20 s.
func (p *Prometheus) start(bin string, targets []string) bool {
	t := p.t
	t.Helper()
	config := filepath.Join(p.dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(scrapeConfig(targets)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--config.file="+config,
		"--storage.tsdb.path="+filepath.Join(p.dir, "data"),
		"--web.listen-address="+p.Addr(),
		"--log.level=warn")
	logf, err := os.Create(filepath.Join(p.dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := StartChild(cmd); err != nil {
		logf.Close()
		t.Fatalf("testenv: start prometheus: %v", err)
	}
	p.cmd = cmd
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-p.done
	}
	if !p.waitReady() {
		stop()
		return false
	}
	t.Cleanup(stop)
	return true
}

// scrapeConfig is a configuration scraping targets every second.
func scrapeConfig(targets []string) string {
	quoted := make([]string, len(targets))
	for i, target := range targets {
		quoted[i] = strconv.Quote(target)
	}
	return fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: %s
    static_configs:
      - targets: [%s]
`, PrometheusJob, strings.Join(quoted, ", "))
}

// URL is the server's base URL, e.g. http://127.0.0.1:41234.
func (p *Prometheus) URL() string { return "http://" + p.Addr() }

// Addr is host:port of the server.
func (p *Prometheus) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// Log is what the server wrote so far.
func (p *Prometheus) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "prometheus.log"))
	return string(b)
}

// waitReady waits until /-/ready answers 200 from a listener of the
// server's own (ListensOn); false when the server exited or 20 s passed.
func (p *Prometheus) waitReady() bool {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return false
		default:
		}
		resp, err := client.Get(p.URL() + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && ListensOn(p.cmd.Process.Pid, p.port) {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// WaitScraped waits until Prometheus has scraped target (one of the
// host:port targets it was started with) successfully at least once, or
// fails the test saying what the last scrape found.
func (p *Prometheus) WaitScraped(target string) {
	p.t.Helper()
	c, err := api.NewClient(api.Config{Address: p.URL()})
	if err != nil {
		p.t.Fatal(err)
	}
	prom := v1.NewAPI(c)
	last := "not among the active targets yet"
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		res, err := prom.Targets(ctx)
		cancel()
		if err != nil {
			last = "GET /api/v1/targets: " + err.Error()
		}
		for _, at := range res.Active {
			if string(at.Labels["instance"]) != target {
				continue
			}
			if at.Health == v1.HealthGood {
				return
			}
			last = fmt.Sprintf("health %s, last scrape %s, last error %q", at.Health, at.LastScrape.Format(time.RFC3339Nano), at.LastError)
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.t.Fatalf("testenv: prometheus did not scrape %s within 20s: %s\n%s", target, last, p.Log())
}
