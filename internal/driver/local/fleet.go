package local

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/repoconfig"
)

// zone is the one zone of the local driver: every instance is on this machine.
const zone = "local"

// fleetKey names the instances behind one proxy: an environment of a
// repository, or the preview of one pull request.
type fleetKey struct {
	Repo string // owner/name
	Env  string // environment name, lower case; "" for a preview
	PR   int    // pull request number for a preview; 0 for an environment
}

func (k fleetKey) String() string {
	if k.PR > 0 {
		return fmt.Sprintf("%s preview #%d", k.Repo, k.PR)
	}
	return k.Repo + " " + k.Env
}

// fleet is an environment or a preview: its slots and the proxy in front.
type fleet struct {
	key    fleetKey
	url    string
	proxy  *proxy
	ln     net.Listener // the proxy's, handed to a keeper that replaces this one
	served bool         // the proxy accepts on ln; guarded by Driver.mu

	mu     sync.Mutex
	name   string // environment name as configured: instance ids start with it
	app    repoconfig.App
	health repoconfig.Health
	count  int              // configured instances (1 for a preview)
	slots  map[string]*slot // by lower-case id
}

// slot is one instance of a fleet: a place a process runs, with a stable id.
type slot struct {
	id    string
	index int  // 1..count; 0 for a surge slot
	surge bool // started by Surge, not part of the configured fleet
	op    chan struct{}

	// Guarded by fleet.mu.
	release   deploy.Release // what it runs, or ran last; SHA "" never deployed
	vars      appVars        // what it runs with: a restart gives the process the same
	unread    []string       // names of secrets in vars not read yet (restored from state.json)
	proc      *process       // current process; nil when none was started
	want      bool           // should be in rotation: admitted and not drained since
	checkedAt time.Time      // last health check
	checkErr  error          // its result
	crashes   int            // unexpected exits in a row, for restart backoff
}

func newSlot(id string, index int) *slot {
	return &slot{id: id, index: index, op: make(chan struct{}, 1)}
}

// lock serializes lifecycle operations on the slot (install, restart,
// retire), so that exactly one of them replaces its process at a time.
func (s *slot) lock(ctx context.Context) error {
	select {
	case s.op <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("instance %s is busy with another operation: %w", s.id, ctx.Err())
	}
}

func (s *slot) unlock() { <-s.op }

// slotID is the id of the fleet's i-th instance: "<env>-<i>", or "pr-<N>" for
// a preview. Called with f.mu held.
func (f *fleet) slotID(i int) string {
	if f.key.PR > 0 {
		return "pr-" + strconv.Itoa(f.key.PR)
	}
	return f.name + "-" + strconv.Itoa(i)
}

// ensureSlots creates the configured slots. Called with f.mu held.
func (f *fleet) ensureSlots() {
	for i := 1; i <= f.count; i++ {
		id := f.slotID(i)
		if f.slots[strings.ToLower(id)] == nil {
			f.slots[strings.ToLower(id)] = newSlot(id, i)
		}
	}
}

// listed is the configured slots, in order. Called with f.mu held.
func (f *fleet) listed() []*slot {
	out := make([]*slot, 0, f.count)
	for i := 1; i <= f.count; i++ {
		out = append(out, f.slots[strings.ToLower(f.slotID(i))])
	}
	return out
}

// extras is the non-surge slots beyond the configured count (the
// environment shrank) that still have a process. Called with f.mu held.
func (f *fleet) extras() []*slot {
	var out []*slot
	for _, s := range f.slots {
		if !s.surge && s.index > f.count && s.proc != nil {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b *slot) int { return cmp.Compare(a.index, b.index) })
	return out
}

// slot finds an instance by id.
func (f *fleet) slot(id string) (*slot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.slots[strings.ToLower(id)]; s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("instance %s is not an instance of %s (it has %s)", id, f.key, strings.Join(f.ids(), ", "))
}

// ids lists the slot ids, for error messages. Called with f.mu held.
func (f *fleet) ids() []string {
	out := make([]string, 0, len(f.slots))
	for _, s := range f.slots {
		out = append(out, s.id)
	}
	slices.Sort(out)
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}

// fleetLocked returns the fleet for k, creating it and starting its proxy on
// its recorded port (or a new one) the first time. Called with d.mu held.
func (d *Driver) fleetLocked(k fleetKey, name string) (*fleet, bool, error) {
	if d.closed {
		return nil, false, ErrClosed
	}
	if f := d.fleets[k]; f != nil {
		return f, false, nil
	}
	if err := validRepo(k.Repo); err != nil {
		return nil, false, err
	}
	ln := d.opts.inherited[k]
	port := d.ports[k]
	if ln != nil {
		port = ln.Addr().(*net.TCPAddr).Port
	} else if port != 0 {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(d.opts.ProxyHost, strconv.Itoa(port)))
		if err != nil {
			d.log.Warn("recorded proxy port is taken; picking another, so the URL changes", "fleet", k.String(), "port", port, "err", err)
			delete(d.ports, k)
			ln = nil
		}
	}
	if ln == nil {
		var err error
		ln, port, err = d.listenFree(d.opts.ProxyHost)
		if err != nil {
			return nil, false, fmt.Errorf("no port for the proxy of %s: %w", k, err)
		}
	}
	d.ports[k] = port
	f := &fleet{
		key:   k,
		url:   "http://" + net.JoinHostPort(d.opts.ProxyHost, strconv.Itoa(port)),
		name:  name,
		slots: map[string]*slot{},
	}
	if k.PR > 0 {
		f.count = 1
		f.ensureSlots()
	}
	f.proxy = newProxy(k.String(), d.log.With("fleet", k.String()))
	f.ln = ln
	d.fleets[k] = f
	if !d.holding {
		d.serveLocked(f)
	}
	return f, true, nil
}

// serveLocked makes f's proxy accept. Called with d.mu held.
func (d *Driver) serveLocked(f *fleet) {
	if f.served {
		return
	}
	f.served = true
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		f.proxy.serve(f.ln)
	}()
}

// serveHeld makes every proxy accept that waited for it (a keeper taking
// over: its instances are in rotation now).
func (d *Driver) serveHeld() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.holding = false
	for _, f := range d.fleets {
		d.serveLocked(f)
	}
}

// adopted says whether a proxy uses ln.
func (d *Driver) adopted(ln net.Listener) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range d.fleets {
		if f.ln == ln {
			return true
		}
	}
	return false
}

// restoredFleets counts the environments and previews with an instance
// running a release.
func (d *Driver) restoredFleets() int {
	d.mu.Lock()
	fleets := make([]*fleet, 0, len(d.fleets))
	for _, f := range d.fleets {
		fleets = append(fleets, f)
	}
	d.mu.Unlock()
	n := 0
	for _, f := range fleets {
		f.mu.Lock()
		for _, s := range f.slots {
			if s.proc != nil && s.proc.running() && s.release.SHA != "" {
				n++
				break
			}
		}
		f.mu.Unlock()
	}
	return n
}

// fleetFor is the fleet of a target, with its configuration brought up to
// date from the target.
func (d *Driver) fleetFor(t deploy.Target) (*fleet, error) {
	if t.Environment == nil {
		return nil, fmt.Errorf("%s: the target has no environment", t.Repo)
	}
	env := t.Environment
	if env.Name == "" {
		return nil, fmt.Errorf("%s: the environment has no name", t.Repo)
	}
	if env.Instances < 1 {
		return nil, fmt.Errorf("%s %s: %d instances configured; the local driver runs 1 or more (set instances:)", t.Repo, env.Name, env.Instances)
	}
	d.mu.Lock()
	f, created, err := d.fleetLocked(fleetKey{Repo: t.Repo, Env: strings.ToLower(env.Name)}, env.Name)
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	changed := created || f.name != env.Name || !f.app.Equal(t.App) || f.health != env.Health || f.count != env.Instances
	f.name, f.app, f.health, f.count = env.Name, t.App, env.Health, env.Instances
	f.ensureSlots()
	f.mu.Unlock()
	if changed {
		d.saveStateOrLog()
	}
	return f, nil
}

// lookup is the fleet and slot of an instance the engine names.
func (d *Driver) lookup(t deploy.Target, inst deploy.Instance) (*fleet, *slot, error) {
	f, err := d.fleetFor(t)
	if err != nil {
		return nil, nil, err
	}
	s, err := f.slot(inst.ID)
	if err != nil {
		return nil, nil, err
	}
	return f, s, nil
}

// Instances lists the environment's configured instances: release, whether
// the process is up and passed its last health check (run now when the last
// is older than the health interval), and whether the proxy routes to it. An
// environment never deployed has its slots with Release "" and nothing
// running, which the planner treats as nothing to protect. Surge instances
// are not listed: they are the engine's to retire. Instances beyond a lowered
// instance count are retired here once a configured one is serving.
func (d *Driver) Instances(ctx context.Context, t deploy.Target) ([]deploy.Instance, error) {
	if d.remote != nil {
		var out []deploy.Instance
		err := d.remote.call(ctx, "Instances", callArgs{Target: toWire(t)}, nil, &out)
		return out, err
	}
	f, err := d.fleetFor(t)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	slots := f.listed()
	h := healthOf(f.health)
	f.mu.Unlock()

	var wg sync.WaitGroup
	for _, s := range slots {
		f.mu.Lock()
		p, stale := s.proc, time.Since(s.checkedAt) >= h.Interval
		f.mu.Unlock()
		if p != nil && p.running() && stale {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = d.checkSlot(ctx, f, s, p, h.Path)
			}()
		}
	}
	wg.Wait()

	out := make([]deploy.Instance, 0, len(slots))
	serving := false
	f.mu.Lock()
	for _, s := range slots {
		out = append(out, f.instance(s))
		serving = serving || (out[len(out)-1].Healthy && out[len(out)-1].InRotation)
	}
	extras := f.extras()
	f.mu.Unlock()
	if serving {
		for _, s := range extras {
			d.log.Info("retiring instance beyond the configured count", "fleet", f.key.String(), "instance", s.id)
			if err := d.retire(ctx, f, s); err != nil {
				d.log.Warn("could not retire extra instance", "fleet", f.key.String(), "instance", s.id, "err", err)
			}
		}
	}
	return out, nil
}

// Runs reports whether this driver runs the environment: one of its
// instances here ran a release. A local environment belongs to the host
// that runs it (SPEC §8); the drift sweep repairs only those, so that a
// bot sharing Redis with others never starts another host's environment.
func (d *Driver) Runs(repo, env string) bool {
	if d.remote != nil {
		var runs bool
		if err := d.remote.quick("Runs", callArgs{Repo: repo, Env: env}, &runs); err != nil {
			d.log.Warn("the keeper cannot say whether it runs the environment", "repo", repo, "environment", env, "err", err)
		}
		return runs
	}
	d.mu.Lock()
	f := d.fleets[fleetKey{Repo: repo, Env: strings.ToLower(env)}]
	d.mu.Unlock()
	if f == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.slots {
		if s.release.SHA != "" {
			return true
		}
	}
	return false
}

// instance is the engine's view of a slot. Called with f.mu held.
func (f *fleet) instance(s *slot) deploy.Instance {
	p := s.proc
	return deploy.Instance{
		ID:         s.id,
		Zone:       zone,
		Release:    s.release.SHA,
		Healthy:    p != nil && p.running() && s.checkErr == nil && !s.checkedAt.IsZero() && s.checkedAt.After(p.started),
		InRotation: p != nil && p.backend.inRotation.Load(),
	}
}

// Drain takes the instance out of rotation and waits until the proxy has no
// request in flight to it, at most DrainTimeout (then it returns nil and logs
// what was still in flight: the bound is the contract).
func (d *Driver) Drain(ctx context.Context, t deploy.Target, inst deploy.Instance) error {
	if d.remote != nil {
		return d.remote.call(ctx, "Drain", callArgs{Target: toWire(t), Instance: inst}, nil, nil)
	}
	f, s, err := d.lookup(t, inst)
	if err != nil {
		return err
	}
	return d.drain(ctx, f, s)
}

func (d *Driver) drain(ctx context.Context, f *fleet, s *slot) error {
	f.mu.Lock()
	s.want = false
	p := s.proc
	if p != nil {
		f.proxy.remove(p.backend)
	}
	f.mu.Unlock()
	if p == nil {
		return nil
	}
	d.log.Debug("draining", "fleet", f.key.String(), "instance", s.id, "in_flight", p.backend.inflight.Load())
	return d.waitDrained(ctx, f, s.id, p.backend)
}

func (d *Driver) waitDrained(ctx context.Context, f *fleet, id string, b *backend) error {
	if b.inflight.Load() == 0 {
		return nil
	}
	timer := time.NewTimer(d.opts.DrainTimeout)
	defer timer.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for b.inflight.Load() > 0 {
		select {
		case <-tick.C:
		case <-timer.C:
			d.log.Warn("drain bound passed with requests still in flight", "fleet", f.key.String(), "instance", id, "in_flight", b.inflight.Load(), "bound", d.opts.DrainTimeout)
			return nil
		case <-ctx.Done():
			return fmt.Errorf("draining instance %s: %w", id, ctx.Err())
		case <-d.ctx.Done():
			return fmt.Errorf("draining instance %s: %w", id, ErrClosed)
		}
	}
	return nil
}

// Install puts the release on the instance: its old process (if any) is
// stopped gracefully and a new one started from the release's build on a new
// port; Install returns once the new process accepts connections. The build
// is made first if Prepare has not run. The instance stays out of rotation
// (an instance found in rotation is drained first).
func (d *Driver) Install(ctx context.Context, t deploy.Target, inst deploy.Instance, r deploy.Release, log io.Writer) error {
	if d.remote != nil {
		return d.remote.call(ctx, "Install", callArgs{Target: toWire(t), Instance: inst, Release: r}, log, nil)
	}
	f, s, err := d.lookup(t, inst)
	if err != nil {
		return err
	}
	ctx, cancel := d.opContext(ctx)
	defer cancel()
	v := targetVars(t)
	if _, err := d.prepare(ctx, t.Repo, t.App, v, r, log); err != nil {
		return fmt.Errorf("install %s on %s: %w", short(r.SHA), s.id, err)
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.unlock()
	if err := d.drain(ctx, f, s); err != nil {
		return err
	}
	f.mu.Lock()
	old := s.proc
	f.mu.Unlock()
	if old != nil {
		d.stop(ctx, old)
	}
	p, err := d.startProcess(ctx, f, s, r, v, log)
	f.mu.Lock()
	s.release, s.proc, s.checkedAt, s.checkErr, s.crashes = r, p, time.Time{}, nil, 0
	s.vars, s.unread = v, nil
	f.mu.Unlock()
	if p != nil {
		p.settle()
	}
	d.saveStateOrLog()
	if err != nil {
		return fmt.Errorf("install %s on %s: %w", short(r.SHA), s.id, err)
	}
	d.log.Debug("installed", "fleet", f.key.String(), "instance", s.id, "release", short(r.SHA), "port", p.port)
	return nil
}

// Check runs one GET of path against the instance's own port, not through
// the proxy, with a short timeout; a 2xx answer is healthy. The result is
// what Instances reports until the next check.
func (d *Driver) Check(ctx context.Context, t deploy.Target, inst deploy.Instance, path string) error {
	if d.remote != nil {
		return d.remote.call(ctx, "Check", callArgs{Target: toWire(t), Instance: inst, Path: path}, nil, nil)
	}
	f, s, err := d.lookup(t, inst)
	if err != nil {
		return err
	}
	f.mu.Lock()
	p := s.proc
	f.mu.Unlock()
	if path == "" {
		path = healthOf(repoconfig.Health{}).Path
	}
	return d.checkSlot(ctx, f, s, p, path)
}

// Admit puts the instance back into rotation and returns once a request to
// its health path, sent the way the proxy sends traffic to it, succeeds
// (retried for a few seconds). If it never does, the instance is taken out
// of rotation again and the error says why.
func (d *Driver) Admit(ctx context.Context, t deploy.Target, inst deploy.Instance) error {
	if d.remote != nil {
		return d.remote.call(ctx, "Admit", callArgs{Target: toWire(t), Instance: inst}, nil, nil)
	}
	f, s, err := d.lookup(t, inst)
	if err != nil {
		return err
	}
	f.mu.Lock()
	p := s.proc
	path := healthOf(f.health).Path
	f.mu.Unlock()
	return d.admit(ctx, f, s, p, path)
}

// admitTimeout bounds Admit's confirmation through the proxy's transport.
const admitTimeout = 5 * time.Second

func (d *Driver) admit(ctx context.Context, f *fleet, s *slot, p *process, path string) error {
	if p == nil || !p.running() {
		return fmt.Errorf("admit %s: %w", s.id, d.notRunning(s, p))
	}
	f.mu.Lock()
	if s.proc != p {
		f.mu.Unlock()
		return fmt.Errorf("admit %s: its process was replaced meanwhile", s.id)
	}
	s.want = true
	f.proxy.add(p.backend)
	f.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, admitTimeout)
	defer cancel()
	var last error
	for {
		last = f.proxy.probe(ctx, p.backend, path)
		if last == nil {
			d.log.Debug("admitted", "fleet", f.key.String(), "instance", s.id)
			return nil
		}
		select {
		case <-time.After(50 * time.Millisecond):
			continue
		case <-p.done:
			last = d.notRunning(s, p)
		case <-ctx.Done():
		}
		break
	}
	f.mu.Lock()
	if s.proc == p {
		s.want = false
	}
	f.proxy.remove(p.backend)
	f.mu.Unlock()
	return fmt.Errorf("admit %s: in rotation but %s through the proxy failed: %w; taken out of rotation again", s.id, path, last)
}

// checkTimeout bounds one health check.
const checkTimeout = 2 * time.Second

// checkSlot checks the slot's process p and records the result on the slot
// when p is still its process.
func (d *Driver) checkSlot(ctx context.Context, f *fleet, s *slot, p *process, path string) error {
	var err error
	if p == nil || !p.running() {
		err = d.notRunning(s, p)
	} else {
		err = p.check(ctx, path)
	}
	f.mu.Lock()
	if s.proc == p {
		s.checkedAt, s.checkErr = time.Now(), err
	}
	f.mu.Unlock()
	if err != nil {
		return fmt.Errorf("instance %s: %w", s.id, err)
	}
	return nil
}

func (d *Driver) notRunning(s *slot, p *process) error {
	if p == nil {
		return errors.New("not running (nothing installed yet)")
	}
	return fmt.Errorf("not running: %s", p.exitSummary())
}

// waitHealthy checks p every interval until it passes healthy_after times in
// a row, failing after the health timeout, when the process exits, or when
// ctx ends.
func (d *Driver) waitHealthy(ctx context.Context, f *fleet, s *slot, p *process, h repoconfig.Health) error {
	h = healthOf(h)
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	passes := 0
	var last error
	for {
		last = d.checkSlot(ctx, f, s, p, h.Path)
		if last == nil {
			passes++
			if passes >= h.HealthyAfter {
				return nil
			}
		} else {
			passes = 0
		}
		select {
		case <-time.After(h.Interval):
		case <-p.done:
			return fmt.Errorf("instance %s %s", s.id, d.notRunning(s, p))
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return fmt.Errorf("instance %s not healthy %d times in a row within %s: %w", s.id, h.HealthyAfter, h.Timeout, last)
		}
	}
}

// healthOf fills the defaults of repoconfig into h.
func healthOf(h repoconfig.Health) repoconfig.Health {
	h.Path = cmp.Or(h.Path, "/healthz")
	if !strings.HasPrefix(h.Path, "/") {
		h.Path = "/" + h.Path
	}
	h.Interval = cmp.Or(h.Interval, 2*time.Second)
	h.HealthyAfter = cmp.Or(h.HealthyAfter, 2)
	h.Timeout = cmp.Or(h.Timeout, 2*time.Minute)
	return h
}

// Surge starts an extra instance, "<env>-surge-K", on the release, waits for
// it to pass the environment's health checks, puts it in rotation and
// returns it. On failure nothing of it is left.
func (d *Driver) Surge(ctx context.Context, t deploy.Target, r deploy.Release, log io.Writer) (deploy.Instance, error) {
	if d.remote != nil {
		var out deploy.Instance
		err := d.remote.call(ctx, "Surge", callArgs{Target: toWire(t), Release: r}, log, &out)
		return out, err
	}
	f, err := d.fleetFor(t)
	if err != nil {
		return deploy.Instance{}, err
	}
	ctx, cancel := d.opContext(ctx)
	defer cancel()
	v := targetVars(t)
	if _, err := d.prepare(ctx, t.Repo, t.App, v, r, log); err != nil {
		return deploy.Instance{}, fmt.Errorf("surge %s: %w", short(r.SHA), err)
	}
	f.mu.Lock()
	var s *slot
	for k := 1; s == nil; k++ {
		id := fmt.Sprintf("%s-surge-%d", f.name, k)
		if f.slots[strings.ToLower(id)] == nil {
			s = newSlot(id, 0)
			s.surge = true
			f.slots[strings.ToLower(id)] = s
		}
	}
	s.release, s.vars = r, v
	h := healthOf(f.health)
	f.mu.Unlock()
	fail := func(err error) (deploy.Instance, error) {
		f.mu.Lock()
		p := s.proc
		s.proc = nil
		delete(f.slots, strings.ToLower(s.id))
		f.mu.Unlock()
		if p != nil {
			f.proxy.remove(p.backend)
			d.stop(context.WithoutCancel(ctx), p)
		}
		return deploy.Instance{}, fmt.Errorf("surge %s: %w", short(r.SHA), err)
	}
	if err := s.lock(ctx); err != nil {
		return fail(err)
	}
	defer s.unlock()
	p, err := d.startProcess(ctx, f, s, r, v, log)
	if err != nil {
		return fail(err)
	}
	f.mu.Lock()
	s.proc = p
	f.mu.Unlock()
	p.settle()
	if err := d.waitHealthy(ctx, f, s, p, h); err != nil {
		return fail(err)
	}
	if err := d.admit(ctx, f, s, p, h.Path); err != nil {
		return fail(err)
	}
	d.log.Info("surge instance in rotation", "fleet", f.key.String(), "instance", s.id, "release", short(r.SHA))
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.instance(s), nil
}

// Retire drains and stops an instance Surge started and forgets it. Retiring
// one that is already gone is not an error.
func (d *Driver) Retire(ctx context.Context, t deploy.Target, inst deploy.Instance) error {
	if d.remote != nil {
		return d.remote.call(ctx, "Retire", callArgs{Target: toWire(t), Instance: inst}, nil, nil)
	}
	f, err := d.fleetFor(t)
	if err != nil {
		return err
	}
	f.mu.Lock()
	s := f.slots[strings.ToLower(inst.ID)]
	f.mu.Unlock()
	if s == nil {
		return nil
	}
	if !s.surge {
		return fmt.Errorf("retire %s: it is one of the environment's configured instances, not a surge instance", inst.ID)
	}
	return d.retire(ctx, f, s)
}

// retire drains, stops and forgets a slot.
func (d *Driver) retire(ctx context.Context, f *fleet, s *slot) error {
	if err := d.drain(ctx, f, s); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.unlock()
	f.mu.Lock()
	p := s.proc
	s.proc = nil
	if s.surge || s.index > f.count {
		delete(f.slots, strings.ToLower(s.id))
	}
	f.mu.Unlock()
	if p != nil {
		d.stop(ctx, p)
	}
	d.saveStateOrLog()
	return nil
}
