package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/shipbot/shipbot"
	"github.com/shipbot/shipbot/internal/config"
	"github.com/shipbot/shipbot/internal/dashboard"
	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/dora"
	awsdriver "github.com/shipbot/shipbot/internal/driver/aws"
	"github.com/shipbot/shipbot/internal/driver/local"
	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/handlers"
	"github.com/shipbot/shipbot/internal/logctx"
	"github.com/shipbot/shipbot/internal/notify"
	"github.com/shipbot/shipbot/internal/outbox"
	"github.com/shipbot/shipbot/internal/promquery"
	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/secrets"
	"github.com/shipbot/shipbot/internal/setup"
	"github.com/shipbot/shipbot/internal/slack"
	"github.com/shipbot/shipbot/internal/store"
	"github.com/shipbot/shipbot/internal/store/record"
	"github.com/shipbot/shipbot/internal/worker"
	"github.com/shipbot/shipbot/queue"
	"github.com/shipbot/shipbot/webhooks"
)

// roles a process can take; several of each may share one Redis.
const (
	roleAll    = "all"
	roleWeb    = "web"
	roleWorker = "worker"
)

// serve runs the bot until ctx ends, then shuts down gracefully: the HTTP
// server stops accepting and finishes in-flight requests, workers stop
// leasing and finish (or leave for resumption) the jobs they hold.
func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, opts ...buildOption) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	role := fs.String("role", roleAll, "all (intake and workers), web (intake only) or worker (workers only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch *role {
	case roleAll, roleWeb, roleWorker:
	default:
		return fmt.Errorf("--role %q is not a role: use all, web or worker", *role)
	}
	dotenv, err := config.ReadDotenv(".env")
	if err != nil {
		return err
	}
	cfg, err := config.Load(getenv, dotenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if cfg.RedisURL == "" && *role != roleAll {
		return fmt.Errorf("--role %s needs REDIS_URL: the embedded store serves a single process, so set REDIS_URL or run `bot serve` with both roles", *role)
	}
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if ownRuntime && cfg.RedisURL == "" {
		tuneGC(getenv, log)
	}

	b, err := build(ctx, cfg, *role, log, opts...)
	if err != nil {
		return err
	}
	defer b.close()
	return b.run(ctx)
}

// redeliveryEvery is how often the App's failed deliveries are swept; the
// first sweep runs at start-up, so a restart after an outage recovers at once.
const redeliveryEvery = 3 * time.Minute

// storeWatchEvery is how often the store is pinged to notice its recovery.
const storeWatchEvery = 2 * time.Second

// awsSweepEvery is how often AWS previews left behind are looked for;
// previewTTL is how long one lives without a push (SPEC §3's default; the
// sweep does not read each repository's preview.ttl).
const (
	awsSweepEvery = time.Hour
	previewTTL    = 72 * time.Hour
)

// driftSweepEvery is how often every environment with a current release
// is looked at for drift (SPEC §6.7: an instance on another release is
// repaired within 5 minutes of appearing; 4 leaves a minute for the repair
// itself). Each sweep reads each repository's configuration from GitHub
// once.
const driftSweepEvery = 4 * time.Minute

// recheckEvery is how often deploys waiting for required checks are
// judged again without a check event.
const recheckEvery = time.Minute

// auditSpoolEvery is how often the embedded store takes in the audit
// entries `bot secrets` spooled in DATA_DIR while this process holds it.
const auditSpoolEvery = 2 * time.Second

// bot is the wired process.
type bot struct {
	cfg  config.Config
	role string
	log  *slog.Logger
	// redis is the one client the queue and the store share; nil
	// without REDIS_URL.
	redis  *redis.Client
	q      queue.Queue
	reg    *prometheus.Registry
	router *worker.Router
	pool   *worker.Pool
	github *gh.Client
	driver *local.Driver // nil without an App or in the web role
	// aws runs environments and previews on EC2; nil without an App, in
	// the web role, or when the AWS configuration cannot be loaded.
	aws *awsdriver.Driver
	// awsSweep is set when AWS is configured (a region): previews left
	// behind are swept.
	awsSweep bool
	// refused is set when intake refused a delivery because the store
	// failed; the store watch then sweeps for redelivery at its next
	// good ping, however short the outage was.
	refused atomic.Bool
	store   appStore // the deploy store; nil without an App
	// secrets are the values of environments' secrets (bot secrets set);
	// nil without an App.
	secrets *secrets.Store
	// recheck looks at deploys waiting for required checks or a freeze
	// window; nil without an App or in the web role.
	recheck func(context.Context) error
	// alarm wakes recheck when a freeze window ends; nil with recheck.
	alarm *alarm
	// now is the bot's clock: freeze windows, deploy records, the
	// dashboard. time.Now unless a test sets it (withClock).
	now      func() time.Time
	http     *http.Server
	listener net.Listener
	closers  []func() error
	// outboxPool delivers Slack messages and webhooks from their own
	// queue (internal/outbox); nil without an App or in the web role.
	outboxPool *worker.Pool
	outbox     *outbox.Outbox
	// slackCauses are Slack's failures still in effect, for the log
	// (once each) and the dashboard; nil without Slack.
	slackCauses *slack.Causes
	// outboxBackoff replaces cdevents.Backoff for the outbox's retries;
	// nil in production (tests shorten it).
	outboxBackoff func(int) time.Duration
	// engine runs deploys and drift repairs; nil without an App or in the
	// web role.
	engine *deploy.Engine
	// driftEvery is how often drift is swept for: driftSweepEvery unless
	// a test shortens it (withDriftSweep).
	driftEvery time.Duration
	// inProcessDriver: no keeper (withInProcessDriver).
	inProcessDriver bool
	// hostID names this DATA_DIR among the hosts sharing Redis;
	// hostQueue holds the jobs other hosts' workers handed to it, and
	// hostPool runs them. Empty and nil on the embedded store and in the
	// web role.
	hostID    string
	hostQueue queue.Queue
	hostPool  *worker.Pool
}

// buildOption changes how build wires the process; only tests use one.
type buildOption func(*bot)

// withClock runs the bot on now instead of time.Now: a test places the
// bot in a freeze window without waiting for one.
func withClock(now func() time.Time) buildOption {
	return func(b *bot) { b.now = now }
}

// withInProcessDriver runs the local driver's proxies and instances in
// this process, not in a keeper: `bot demo`, which tears everything down
// when it ends.
func withInProcessDriver() buildOption {
	return func(b *bot) { b.inProcessDriver = true }
}

// driverInProcess makes every bot of this process run its local driver in
// process: the tests that call run() inside the test binary set it, since
// a keeper would be that test binary (real-binary tests use a keeper).
var driverInProcess = false

// withDriftSweep sweeps for drift every d instead of driftSweepEvery.
func withDriftSweep(d time.Duration) buildOption {
	return func(b *bot) { b.driftEvery = d }
}

// build wires the process for its role; on an error, what was opened is
// closed again.
func build(ctx context.Context, cfg config.Config, role string, log *slog.Logger, opts ...buildOption) (*bot, error) {
	b := &bot{cfg: cfg, role: role, log: log, reg: newRegistry(role), now: time.Now, driftEvery: driftSweepEvery}
	for _, o := range opts {
		o(b)
	}
	for _, step := range []func(context.Context) error{b.connect, b.wireWork, b.wireHTTP} {
		if err := step(ctx); err != nil {
			b.close()
			return nil, err
		}
	}
	return b, nil
}

// newRegistry is the bot's Prometheus registry, with the Go runtime, the
// process and which build runs.
func newRegistry(role string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shipbot_build_info", Help: "Always 1; labels say which build runs.",
			ConstLabels: prometheus.Labels{"version": version, "commit": commit(), "role": role},
		}, func() float64 { return 1 }),
	)
	return reg
}

// connect opens what the bot keeps its state in and talks to: Redis when
// REDIS_URL is set, the job queue and, with an App, the GitHub client and
// the deploy store.
func (b *bot) connect(ctx context.Context) error {
	if err := b.openRedis(ctx); err != nil {
		return err
	}
	if err := b.openQueue(); err != nil {
		return err
	}
	b.reg.MustRegister(queue.NewCollector(b.q))
	if !b.cfg.HasApp() {
		return nil
	}
	cfg := b.cfg
	c, err := gh.New(gh.Options{AppID: cfg.AppID, PrivateKey: cfg.PrivateKey, BaseURL: cfg.GitHubAPIURL, Registerer: b.reg})
	if err != nil {
		return fmt.Errorf("PRIVATE_KEY or GITHUB_API_URL: %w", err)
	}
	b.github = c
	sec, err := secrets.Open(secrets.Options{Redis: b.redis, Prefix: "shipbot", DataDir: cfg.DataDir, Key: cfg.SecretsKey})
	if err != nil {
		return err
	}
	if err := sec.CheckKey(ctx); err != nil {
		return err
	}
	b.secrets = sec
	if err := b.openStore(); err != nil {
		return err
	}
	// The delivery metrics (DORA), computed from the release history on
	// each scrape.
	b.reg.MustRegister(dora.NewCollector(b.deliveryHistory, dora.Options{Now: b.now}))
	return nil
}

// deliveryHistory is every environment's release history, newest 1,000
// releases each, for the delivery metrics.
func (b *bot) deliveryHistory(ctx context.Context) ([]dora.History, error) {
	repos, err := b.store.ListRepos(ctx)
	if err != nil {
		return nil, err
	}
	var out []dora.History
	for _, repo := range repos {
		envs, err := b.store.ListEnvironments(ctx, repo)
		if err != nil {
			return nil, err
		}
		for _, env := range envs {
			rels, err := b.store.Releases(ctx, env, 1000)
			if err != nil {
				return nil, err
			}
			out = append(out, dora.HistoryOf(env, rels))
		}
	}
	return out, nil
}

// wireWork routes jobs to the handlers. Outside the web role a worker pool
// runs them, and with an App they act through the engine.
func (b *bot) wireWork(ctx context.Context) error {
	hostname, _ := os.Hostname()
	holder := hostname + "-" + strconv.Itoa(os.Getpid())
	var deps handlers.Deps
	if b.cfg.HasApp() && b.role != roleWeb {
		eng, err := b.buildEngine(ctx, holder)
		if err != nil {
			return err
		}
		b.engine = eng
		h, err := b.openHosts()
		if err != nil {
			return err
		}
		deps = handlers.New(handlers.Base{GitHub: b.github, Store: b.store, Engine: eng, PublicURL: b.cfg.PublicURL, Now: b.now, Secrets: b.secrets, Outbox: b.outbox, Hosts: h}, b.previewers())
		b.alarm = newAlarm(b.now)
		deps.Wake = b.alarm.Wake
		b.recheck = deps.RecheckWaiting
	}
	b.router = worker.NewRouter()
	handlers.Register(b.router, deps)
	if b.role != roleWeb {
		b.pool = worker.NewPool(b.q, b.router, worker.Options{
			Consumer:   holder,
			Size:       jobWorkers,
			Heartbeat:  timingsFor(b.cfg.JobTimeout).heartbeat,
			Logger:     b.log,
			Registerer: b.reg,
		})
	}
	if b.hostQueue != nil {
		b.hostPool = worker.NewPool(b.hostQueue, b.router, worker.Options{
			Consumer:  holder,
			Size:      hostWorkers,
			Heartbeat: timingsFor(b.cfg.JobTimeout).heartbeat,
			Logger:    b.log.With("host", b.hostID),
		})
	}
	return nil
}

// openHosts places local environments' and previews' jobs on the host
// that runs them when several hosts may share the store (Redis): it reads
// this DATA_DIR's host id and opens the host's own queue, which hostPool
// serves. nil (one host runs everything) on the embedded store.
func (b *bot) openHosts() (handlers.Hosts, error) {
	if b.redis == nil {
		return nil, nil
	}
	id, err := readHostID(b.cfg.DataDir)
	if err != nil {
		return nil, err
	}
	opts := queue.Options{VisibilityTimeout: timingsFor(b.cfg.JobTimeout).visibility}
	open := func(prefix string) (queue.Queue, error) {
		return b.queueAt(prefix, "a host's job stream", "", "", opts)
	}
	q, err := open(hostPrefix(id))
	if err != nil {
		return nil, err
	}
	h := &hosts{id: id, store: b.store, open: open}
	b.hostID, b.hostQueue = id, q
	b.reg.MustRegister(queue.NewHostCollector(q, id))
	b.closers = append(b.closers, q.Close, h.close)
	b.log.Info("this DATA_DIR's host", "host", id)
	return h, nil
}

// jobWorkers is how many jobs a process leases and runs at once. Most jobs
// wait on Redis or GitHub rather than use a core, and Redis serves its
// clients in turn: beside an intake answering 64 connections, 16 workers
// finished 18% of the deliveries during the load and 64 workers 79%
// (bench/jobs.sh, issue #17). Idle, each costs a blocking read
// every 100 ms. Rollouts do not count: a job running past
// worker.Options.LongAfter gives its place to another worker.
const jobWorkers = 64

// previewers are the drivers pull requests' previews run on.
func (b *bot) previewers() map[repoconfig.Driver]deploy.Previewer {
	previewers := map[repoconfig.Driver]deploy.Previewer{repoconfig.DriverLocal: b.driver}
	if b.aws != nil {
		previewers[repoconfig.DriverAWS] = b.aws
	}
	return previewers
}

// wireHTTP mounts the role's routes and listens on PORT.
func (b *bot) wireHTTP(context.Context) error {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", b.readyz)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(b.reg, promhttp.HandlerOpts{})))
	var handler http.Handler = e
	if b.role != roleWorker {
		intake, err := b.mountIntake(e)
		if err != nil {
			return err
		}
		handler = intakeFirst(intake, e)
	}
	var err error
	b.listener, err = net.Listen("tcp", ":"+strconv.Itoa(b.cfg.Port))
	if err != nil {
		return fmt.Errorf("PORT=%d cannot be listened on (%v): choose a free port", b.cfg.Port, err)
	}
	b.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute, // a 25 MB delivery on a slow link
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(b.log.Handler(), slog.LevelWarn),
	}
	return nil
}

// mountIntake mounts POST /webhooks and the pages: the dashboard, or
// without an App the setup that registers one. It returns the intake, for
// intakeFirst.
func (b *bot) mountIntake(e *echo.Echo) (http.Handler, error) {
	intake := webhooks.New(b.cfg.WebhookSecret, b.q, b.router, webhooks.WithLogger(b.log), webhooks.WithRegisterer(b.reg),
		webhooks.WithRefused(func() { b.refused.Store(true) }))
	e.POST("/webhooks", echo.WrapHandler(intake))
	if b.cfg.HasApp() {
		return intake, b.mountDashboard(e)
	}
	return intake, b.mountSetup(e)
}

// intakeFirst hands POST /webhooks straight to intake and everything else
// to rest. Deliveries are the one hot path, and echo's router, context and
// response wrapper were a measurable part of a delivery's CPU for nothing
// intake uses. rest keeps its own POST /webhooks route, so any other
// method, or a spelling of the path that echo would not route there (it
// routes by the raw path when there is one), gets echo's answer as before.
func intakeFirst(intake, rest http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/webhooks" && r.URL.RawPath == "" {
			intake.ServeHTTP(w, r)
			return
		}
		rest.ServeHTTP(w, r)
	})
}

// mountSetup serves the home page of a bot without an App: it registers
// one through GitHub's manifest flow and saves the credentials to .env.
func (b *bot) mountSetup(e *echo.Echo) error {
	sp, err := setup.New(setup.Options{
		Manifest:  shipbot.AppManifest,
		PublicURL: b.cfg.PublicURL,
		APIURL:    b.cfg.GitHubAPIURL,
		EnvDir:    ".",
		OnConfigured: func(c gh.AppCredentials) {
			b.log.Info("GitHub App registered and saved to .env; restart the bot to use it", "app_id", c.ID, "app", c.Slug)
		},
	})
	if err != nil {
		return err
	}
	h := echo.WrapHandler(sp)
	e.GET("/", h)
	e.Any("/setup/*", h)
	return nil
}

// The job lease and the deploy lock are timed together, all from
// JOB_TIMEOUT (the queue's visibility timeout, 30s by default). After a
// crash the dead bot's lock expires at most lockTTL after its last renewal,
// and its job can be reclaimed no sooner than visibility - heartbeat after
// the crash. lockTTL must be shorter than that: otherwise the retried job
// finds the dead holder's lock, leaves the deploy to it, and the deploy
// stays in progress for good (SPEC §8: a dead worker's job carries on).
type jobTimings struct {
	visibility time.Duration // queue: a lease not extended for this long is reclaimed
	heartbeat  time.Duration // worker: how often a running job extends its lease
	lockTTL    time.Duration // engine: renewed every lockTTL/3 while a deploy runs
}

func timingsFor(visibility time.Duration) jobTimings {
	return jobTimings{visibility: visibility, heartbeat: visibility / 3, lockTTL: visibility / 2}
}

// appStore is everything the bot keeps about deploys, in Redis or
// DATA_DIR/state.db: what the engine, the handlers and the dashboard read
// and write.
type appStore interface {
	deploy.Store
	handlers.Store
	dashboard.Store
	Releases(ctx context.Context, env record.EnvKey, n int) ([]record.Release, error)
}

// openStore opens the deploy store: Redis when REDIS_URL is set, else
// DATA_DIR/state.db.
func (b *bot) openStore() error {
	if b.redis != nil {
		b.store = store.NewRedis(b.redis, "shipbot")
		return nil
	}
	path := filepath.Join(b.cfg.DataDir, "state.db")
	es, err := store.OpenEmbedded(path)
	if err != nil {
		return fmt.Errorf("DATA_DIR: the deploy store %s cannot be opened (%v): is another bot using this DATA_DIR? Give each process its own, or use REDIS_URL", path, err)
	}
	b.closers = append(b.closers, es.Close)
	b.store = es
	return nil
}

// buildEngine wires the deploy engine over the store: the local driver
// fetching sources from GitHub, and the GitHub notifier.
func (b *bot) buildEngine(ctx context.Context, holder string) (*deploy.Engine, error) {
	cfg := b.cfg
	keeper, err := b.keeper()
	if err != nil {
		return nil, err
	}
	drv, err := local.New(local.Options{
		DataDir: cfg.DataDir,
		Logger:  b.log,
		// Instances brought back after a restart read their secrets again.
		Secrets: b.secrets,
		Source: func(ctx context.Context, r deploy.Release) (io.ReadCloser, error) {
			owner, name, _ := strings.Cut(r.Repo, "/")
			return b.github.Installation(r.InstallationID).DownloadTarball(ctx, owner, name, r.SHA)
		},
		Keeper: keeper,
	})
	if err != nil {
		return nil, fmt.Errorf("DATA_DIR: the local driver cannot start: %w", err)
	}
	b.driver = drv
	// The proxies' per-release figures, RED metrics of every app for free.
	b.reg.MustRegister(drv.Collector())
	b.closers = append(b.closers, func() error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
		defer cancel()
		return drv.Close(cctx)
	})
	ob, err := b.buildOutbox(ctx, holder)
	if err != nil {
		return nil, err
	}
	n, err := notify.New(notify.Options{
		Installation:   func(id int64) notify.GitHub { return b.github.Installation(id) },
		PublicURL:      cfg.PublicURL,
		EnvironmentURL: drv.URL,
		Outbox:         ob,
		WebURL:         dashboard.WebURL(cfg.GitHubAPIURL),
		Logger:         b.log,
	})
	if err != nil {
		return nil, err
	}
	drivers := map[repoconfig.Driver]deploy.Driver{repoconfig.DriverLocal: drv}
	b.buildAWS(ctx)
	if b.aws != nil {
		drivers[repoconfig.DriverAWS] = b.aws
	}
	return deploy.NewEngine(deploy.EngineOptions{
		Store:     b.store,
		Drivers:   drivers,
		Notifier:  n,
		LockTTL:   timingsFor(b.cfg.JobTimeout).lockTTL,
		Holder:    holder,
		Now:       b.now,
		Querier:   promquery.New(0),
		Secrets:   b.secrets,
		PublicURL: cfg.PublicURL,
	})
}

// keeper is how the local driver starts its keeper (this executable's
// hidden subcommand) and reports one that died; nil in process.
func (b *bot) keeper() (*local.Keeper, error) {
	if b.inProcessDriver || driverInProcess {
		return nil, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("the local driver's keeper is this executable, whose path cannot be found: %w", err)
	}
	return &local.Keeper{Command: []string{exe, "keeper"}, Lost: b.auditKeeperLost}, nil
}

// auditKeeperLost writes to the audit log that the keeper died (its
// instances with it: requests failed meanwhile) and what came back.
func (b *bot) auditKeeperLost(ctx context.Context, restored int, err error) {
	e := record.AuditEntry{
		Actor: record.ActorShipbot, Action: record.ActionKeeperRestored, Outcome: record.OutcomeSuccess,
		Text: fmt.Sprintf("the local driver's keeper died; restored %d environments and previews", max(restored, 0)),
	}
	if err != nil {
		e.Outcome = record.OutcomeFailure
		e.Text += "; not everything came back: " + err.Error()
	}
	if _, aerr := b.store.AppendAudit(ctx, e); aerr != nil {
		b.log.Warn("audit log: the keeper's death was not written", "err", aerr)
	}
}

// buildAWS loads the AWS configuration from the SDK's standard chain
// (AWS_REGION, AWS_ENDPOINT_URL, profiles, instance roles) for the aws
// driver. AWS is optional: without it, environments with driver aws fail
// their deploys saying so, and the bot runs on.
func (b *bot) buildAWS(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ac, err := awsconfig.LoadDefaultConfig(lctx)
	if err != nil {
		b.log.Warn("AWS configuration cannot be loaded: environments and previews with driver aws will fail until it is fixed", "err", err)
		return
	}
	d, err := awsdriver.New(awsdriver.Options{Config: &ac})
	if err != nil {
		b.log.Warn("the aws driver cannot start: environments and previews with driver aws will fail until it is fixed", "err", err)
		return
	}
	b.aws, b.awsSweep = d, ac.Region != ""
}

// sweepAWSPreviews removes AWS previews nobody tore down: of closed pull
// requests (as the store knows them), or without a push for previewTTL.
func (b *bot) sweepAWSPreviews(ctx context.Context) {
	isOpen := func(ctx context.Context, repo string, n int) (bool, error) {
		p, err := b.store.GetPreview(ctx, repo, n)
		if errors.Is(err, record.ErrNotFound) {
			return true, nil // unknown here: only the TTL removes it
		}
		if err != nil {
			return false, err
		}
		return !p.Closed, nil
	}
	every(ctx, awsSweepEvery, true, func() {
		swept, err := b.aws.SweepPreviews(ctx, isOpen, previewTTL)
		for _, s := range swept {
			b.log.Info("swept an AWS preview left behind", "repo", s.Repo, "pr", s.Number, "region", s.Region, "reason", s.Reason)
		}
		if err != nil && ctx.Err() == nil {
			b.log.Warn("the sweep of AWS previews did not finish; it runs again in an hour", "err", err)
		}
	})
}

// sweepDrift repairs drift every driftEvery, first at once, until ctx
// ends: in each environment with a current release, the instances found
// on another release are brought to it (Engine.Repair).
func (b *bot) sweepDrift(ctx context.Context) {
	every(ctx, b.driftEvery, true, func() {
		if err := b.repairDrift(ctx); err != nil && ctx.Err() == nil {
			b.log.Warn("the drift sweep did not finish everywhere; it runs again in "+b.driftEvery.String(), "err", err)
		}
	})
}

// repairDrift is one drift sweep over every repository the store knows.
// An environment is repaired with the repository's configuration as the
// default branch has it now, as a deploy would be; one the configuration
// no longer names is left alone. A local environment is repaired only by
// the bot whose local driver runs it; aws environments by any worker (the
// deploy lock keeps several bots on one Redis from repairing one twice).
func (b *bot) repairDrift(ctx context.Context) error {
	repos, err := b.store.ListRepos(ctx)
	if err != nil {
		return fmt.Errorf("list repositories: %w", err)
	}
	var errs []error
	for _, repo := range repos {
		errs = append(errs, b.repairRepo(ctx, repo))
	}
	return errors.Join(errs...)
}

// repairRepo sweeps one repository's environments that have a current
// release; the configuration is read only when there is one.
func (b *bot) repairRepo(ctx context.Context, repo string) error {
	envs, err := b.store.ListEnvironments(ctx, repo)
	if err != nil {
		return fmt.Errorf("list the environments of %s: %w", repo, err)
	}
	var names []string
	var installation int64
	for _, env := range envs {
		cur, err := b.store.CurrentRelease(ctx, env)
		if errors.Is(err, record.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read the current release of %s: %w", env, err)
		}
		names = append(names, env.Name)
		if d, err := b.store.GetDeploy(ctx, cur.DeployID); err == nil && d.InstallationID != 0 {
			installation = d.InstallationID
		}
	}
	if len(names) == 0 || installation == 0 {
		return nil
	}
	owner, name, _ := strings.Cut(repo, "/")
	data, _, err := b.github.Installation(installation).ReadFile(ctx, owner, name, repoconfig.FilePath, "")
	if err != nil {
		return fmt.Errorf("read %s of %s: %w", repoconfig.FilePath, repo, err)
	}
	// The branch only names which pushes deploy; a repair does not need it.
	cfg, err := repoconfig.Parse(data, "")
	if err != nil {
		return fmt.Errorf("%s of %s cannot be read, so its environments are not repaired until it is fixed: %w", repoconfig.FilePath, repo, err)
	}
	var errs []error
	for _, n := range names {
		env, ok := cfg.Environment(n)
		if !ok || !b.repairs(repo, env) {
			continue
		}
		res, err := b.engine.Repair(ctx, deploy.Target{Repo: repo, Environment: env, App: cfg.App, Notify: cfg.Notify})
		switch {
		case err != nil:
			errs = append(errs, err)
		case res.Held != "":
			b.log.Info("drift found, repair held: the next sweep looks again", "repo", repo, "environment", env.Name, "instances", len(res.Found), "held", string(res.Held))
		}
	}
	return errors.Join(errs...)
}

// repairs reports whether this bot repairs env's drift: aws environments
// when the aws driver is up, local ones its local driver runs.
func (b *bot) repairs(repo string, env *repoconfig.Environment) bool {
	switch env.Driver {
	case repoconfig.DriverAWS:
		return b.aws != nil
	case repoconfig.DriverLocal:
		return b.driver != nil && b.driver.Runs(repo, env.Name)
	}
	return false
}

// every runs fn every d (first at once when now is set) until ctx ends.
func every(ctx context.Context, d time.Duration, now bool, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	if now {
		fn()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fn()
	}
}

// openRedis connects to REDIS_URL when it is set: the queue and the store
// share the one client.
func (b *bot) openRedis(ctx context.Context) error {
	if b.cfg.RedisURL == "" {
		return nil
	}
	ro, err := redis.ParseURL(b.cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL cannot be parsed (%v): use e.g. redis://localhost:6379/0", err)
	}
	if ro.PoolSize == 0 {
		// Every idle worker (the jobs' and the outbox's) holds a
		// connection in a blocking read; intake and the store need
		// go-redis' usual share beside them.
		ro.PoolSize = 10*runtime.GOMAXPROCS(0) + jobWorkers + hostWorkers + worker.DefaultSize
	}
	client := redis.NewClient(ro)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		client.Close()
		var unknownCA x509.UnknownAuthorityError
		var invalid x509.CertificateInvalidError
		var hostname x509.HostnameError
		if errors.As(err, &unknownCA) || errors.As(err, &invalid) || errors.As(err, &hostname) {
			return fmt.Errorf("REDIS_URL: Redis at %s answered over TLS with a certificate this machine does not accept (%v): add its CA to the system's trust store or point SSL_CERT_FILE at it, and check that the URL's host is the one the certificate names", ro.Addr, err)
		}
		return fmt.Errorf("REDIS_URL: Redis at %s does not answer (%v): start Redis, fix REDIS_URL, or unset it to use the embedded store", ro.Addr, err)
	}
	b.redis = client
	b.closers = append(b.closers, client.Close)
	return nil
}

// openQueue opens the job queue: in Redis when REDIS_URL is set, else
// DATA_DIR/shipbot.db.
func (b *bot) openQueue() error {
	q, err := b.queueAt("shipbot", "the job stream", "shipbot.db", "the embedded store", queue.Options{VisibilityTimeout: timingsFor(b.cfg.JobTimeout).visibility})
	b.q = q
	return err
}

// queueAt opens a queue: in Redis under prefix when REDIS_URL is set, else
// in DATA_DIR/file, which is closed with the bot. inRedis and inFile name
// it in the errors.
func (b *bot) queueAt(prefix, inRedis, file, inFile string, opts queue.Options) (queue.Queue, error) {
	if b.redis != nil {
		q, err := queue.NewRedis(b.redis, prefix, opts)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: cannot set up %s in Redis at %s: %w", inRedis, b.redis.Options().Addr, err)
		}
		return q, nil
	}
	dir := b.cfg.DataDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("DATA_DIR=%s cannot be created (%v): point it at a writable directory", dir, err)
	}
	path := filepath.Join(dir, file)
	q, err := queue.OpenEmbedded(path, opts)
	if err != nil {
		return nil, fmt.Errorf("DATA_DIR: %s %s cannot be opened (%v): is another bot using this DATA_DIR? Give each process its own, or use REDIS_URL", inFile, path, err)
	}
	b.closers = append(b.closers, q.Close)
	return q, nil
}

func (b *bot) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := b.q.Ping(ctx); err != nil {
		return c.String(http.StatusServiceUnavailable, "not ready: the job store is unreachable\n")
	}
	return c.String(http.StatusOK, "ready\n")
}

// run serves until ctx ends, then shuts down in order: stop accepting
// deliveries, finish in-flight requests, stop workers.
func (b *bot) run(ctx context.Context) error {
	b.log.Info("shipbot started", "version", version, "role", b.role, "addr", b.listener.Addr().String(),
		"store", map[bool]string{true: "redis", false: "embedded"}[b.cfg.RedisURL != ""], "app_configured", b.cfg.HasApp())
	if !b.cfg.HasApp() {
		b.log.Warn("no GitHub App configured (APP_ID is unset): webhooks are refused until APP_ID, PRIVATE_KEY and WEBHOOK_SECRET are set")
	}
	var wg sync.WaitGroup
	b.background(ctx, &wg)
	serveErr := make(chan error, 1)
	go func() { serveErr <- b.http.Serve(b.listener) }()

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}
	b.log.Info("shutting down: finishing in-flight requests and jobs")
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if serr := b.http.Shutdown(sctx); serr != nil {
		b.log.Warn("HTTP shutdown did not finish cleanly", "err", serr)
	}
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	b.log.Info("shipbot stopped")
	return err
}

// background starts the process's loops, each on wg: the worker pool, the
// redelivery of failed deliveries, the recheck of deploys waiting for
// checks, the AWS preview sweep and the restore of local instances.
func (b *bot) background(ctx context.Context, wg *sync.WaitGroup) {
	if b.pool != nil {
		wg.Add(1)
		go func() { defer wg.Done(); b.pool.Run(ctx) }()
	}
	if b.outboxPool != nil {
		wg.Add(1)
		go func() { defer wg.Done(); b.outboxPool.Run(ctx) }()
	}
	if b.hostPool != nil {
		wg.Add(1)
		go func() { defer wg.Done(); b.hostPool.Run(ctx) }()
	}
	if b.github != nil && b.role != roleWorker {
		// GitHub never retries a failed delivery: ask for redelivery of
		// every failed one the store does not have, once.
		rd := gh.NewRedeliverer(b.github, b.q)
		if b.store != nil {
			rd.Asked = b.auditRedelivery
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			rd.Run(logctx.With(ctx, b.log), redeliveryEvery)
		}()
		go func() {
			defer wg.Done()
			b.sweepOnRecovery(logctx.With(ctx, b.log), rd)
		}()
	}
	if b.recheck != nil {
		// Check events GitHub never delivered must not leave a deploy
		// waiting for good; the wait for checks is bounded here too; and
		// a push a freeze held runs when the window closes (the alarm).
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.recheckLoop(ctx)
		}()
	}
	if es, ok := b.store.(*store.Embedded); ok {
		wg.Add(1)
		go func() { defer wg.Done(); b.importAuditSpool(ctx, es) }()
	}
	if b.aws != nil && b.awsSweep {
		wg.Add(1)
		go func() { defer wg.Done(); b.sweepAWSPreviews(logctx.With(ctx, b.log)) }()
	}
	if b.driver != nil {
		// Bring the local environments back up on their releases, then
		// sweep for drift: the first sweep would otherwise find the local
		// instances Restore is still starting.
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.driver.Restore(ctx); err != nil && ctx.Err() == nil {
				b.log.Warn("some local instances did not come back after the restart", "err", err)
			}
			if b.engine != nil {
				b.sweepDrift(logctx.With(ctx, b.log))
			}
		}()
	}
}

// importAuditSpool moves the entries `bot secrets` spooled (it cannot
// open the store this process holds) into the audit log: at once, for
// what was spooled while no bot ran, then every auditSpoolEvery.
func (b *bot) importAuditSpool(ctx context.Context, es *store.Embedded) {
	every(ctx, auditSpoolEvery, true, func() {
		n, err := es.ImportAuditSpool(ctx, b.cfg.DataDir)
		if n > 0 {
			b.log.Info("audit entries taken in from the spool", "entries", n)
		}
		if err != nil && ctx.Err() == nil {
			b.log.Warn("the audit spool could not be taken in; trying again shortly", "err", err)
		}
	})
}

// recheckLoop judges the waiting deploys every recheckEvery and whenever
// the alarm rings, until ctx ends; it owns the alarm and stops it.
func (b *bot) recheckLoop(ctx context.Context) {
	defer b.alarm.stop()
	t := time.NewTicker(recheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-b.alarm.C:
		}
		if err := b.recheck(logctx.With(ctx, b.log)); err != nil && ctx.Err() == nil {
			b.log.Warn("could not look at the deploys waiting for checks or a freeze; trying again in a minute", "err", err)
		}
	}
}

// sweepOnRecovery watches the store and, when it answers again after an
// outage, sweeps for redelivery at once: deliveries refused with 503 while
// it was down come back within seconds instead of at the next periodic
// sweep. An outage shorter than the ping interval counts too when intake
// refused a delivery during it.
func (b *bot) sweepOnRecovery(ctx context.Context, rd *gh.Redeliverer) {
	down := false
	every(ctx, storeWatchEvery, false, func() {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := b.q.Ping(pctx)
		cancel()
		switch {
		case err != nil && !down:
			down = true
			b.log.Error("job store unreachable: deliveries are refused with 503 until it is back", "err", err)
		case err == nil && (b.refused.Swap(false) || down):
			// Swap first: a sweep after an outage covers the refusals
			// made during it too.
			down = false
			b.log.Info("job store reachable again: asking GitHub to redeliver what was refused")
			if _, err := rd.Sweep(ctx); err != nil && ctx.Err() == nil {
				b.log.Error("redelivery sweep after the outage failed; the periodic sweep will try again", "err", err)
			}
		}
	})
}

func (b *bot) close() {
	for i := len(b.closers) - 1; i >= 0; i-- {
		_ = b.closers[i]()
	}
}
