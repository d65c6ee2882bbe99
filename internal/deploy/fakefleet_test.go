package deploy

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

// fakeFleet is an in-memory model of the place an environment runs — zones,
// processes, rotation and health — that stands in for a real driver the way
// a wire fake stands in for a server: the engine drives it only through the
// Driver (and, as surgingFleet, Surger) methods, and it answers from its own
// state, with per-instance faults injected by the test.
//
// It also watches the safety contract of SPEC §6.1 from the fleet's side,
// on every change of state: it reports through errorf whenever more
// instances are out of rotation because the engine took them out than
// max_unavailable allows, whenever something the engine does (a drain, a
// retire) takes the last serving instance out of rotation, and whenever the
// engine installs on an instance that is still in rotation. A fault that
// makes the last serving instance sick is the fleet's doing, not the
// engine's, and is not reported.
//
// Every call takes a simulated time (latencies, or a fault's drainTakes),
// waited through wait: under testing/synctest that is the bubble's fake
// clock, so calls running side by side overlap as they would for real.
type fakeFleet struct {
	errorf         func(format string, args ...any)
	wait           func(ctx context.Context, d time.Duration) error
	maxUnavailable int
	healthPath     string
	lat            latencies

	mu       sync.Mutex
	insts    map[string]*fakeInstance
	order    []string // ids, in the order they joined the fleet
	faults   map[string]fault
	buildErr map[string]error // by release SHA
	listErr  error
	calls    []string // "drain production-1", "install production-1 abc1234", …
	surges   int
	maxOut   int // most instances out of rotation by the engine's doing at once
}

// fakeInstance is one instance's true state.
type fakeInstance struct {
	id, zone   string
	release    string
	running    bool // its process is up
	inRotation bool
	drained    bool // taken out of rotation by the engine, not yet admitted
	fresh      bool // installed by the engine (a warm-up fault applies)
	checks     int  // health checks since it last started
	surge      bool // started by Surge
}

// latencies are how long each call takes, in simulated time.
type latencies struct {
	list, prepare, drain, install, check, admit, surge, retire time.Duration
}

// fault is what goes wrong on one instance. Release-specific faults let a
// test break the new release and not the previous one (or both).
type fault struct {
	drainFails     bool
	drainTakes     time.Duration // instead of latencies.drain
	installFails   string        // release whose install fails here
	neverHealthyOn string        // release whose health checks always fail here
	warmup         int           // checks that fail after each install before it passes
	sickOn         string        // release on which the instance turns sick …
	sickAfter      int           // … after this many checks
	admitFails     string        // release on which Admit fails here
	retireFails    bool          // Retire fails (a surge instance)
}

// newFakeFleet is a fleet of members as the planner would see them; a
// member that is not Healthy is broken on its release (a fault), one not
// InRotation is out of rotation but not by the engine's doing.
func newFakeFleet(errorf func(string, ...any), maxUnavailable int, members ...Instance) *fakeFleet {
	f := &fakeFleet{
		errorf:         errorf,
		wait:           sleepCtx, // under testing/synctest, the bubble's clock
		maxUnavailable: maxUnavailable,
		healthPath:     "/healthz",
		insts:          map[string]*fakeInstance{},
		faults:         map[string]fault{},
		buildErr:       map[string]error{},
	}
	for _, m := range members {
		f.insts[m.ID] = &fakeInstance{id: m.ID, zone: m.Zone, release: m.Release, running: true, inRotation: m.InRotation}
		f.order = append(f.order, m.ID)
		if !m.Healthy {
			f.faults[m.ID] = fault{neverHealthyOn: m.Release}
		}
	}
	return f
}

// fault sets the faults of instance id, replacing any it had.
func (f *fakeFleet) fault(id string, fl fault) *fakeFleet {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[id] = fl
	return f
}

func (f *fakeFleet) failBuild(sha string, err error) *fakeFleet {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.buildErr[sha] = err
	return f
}

var _ Driver = (*fakeFleet)(nil)

func (f *fakeFleet) Instances(ctx context.Context, _ Target) ([]Instance, error) {
	if err := f.wait(ctx, f.lat.list); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listErr != nil {
		return nil, f.listErr
	}
	out := make([]Instance, 0, len(f.order))
	for _, id := range f.order {
		in := f.insts[id]
		out = append(out, Instance{ID: id, Zone: in.zone, Release: in.release, Healthy: f.healthLocked(in) == nil, InRotation: in.inRotation})
	}
	return out, nil
}

func (f *fakeFleet) Prepare(ctx context.Context, _ Target, r Release, log io.Writer) error {
	f.record("prepare " + short(r.SHA))
	fmt.Fprintf(log, "building %s\n", short(r.SHA))
	if err := f.wait(ctx, f.lat.prepare); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.buildErr[r.SHA]
}

func (f *fakeFleet) Drain(ctx context.Context, _ Target, inst Instance) error {
	f.mu.Lock()
	in, err := f.instanceLocked(inst.ID)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	f.calls = append(f.calls, "drain "+inst.ID)
	fl := f.faults[inst.ID]
	if fl.drainFails {
		f.mu.Unlock()
		return fmt.Errorf("%s: deregistering from rotation timed out", inst.ID)
	}
	before := f.servingLocked()
	in.inRotation, in.drained = false, true
	f.checkLocked("drain "+inst.ID, before)
	f.mu.Unlock()

	d := f.lat.drain
	if fl.drainTakes > 0 {
		d = fl.drainTakes
	}
	return f.wait(ctx, d) // in-flight requests finishing
}

func (f *fakeFleet) Install(ctx context.Context, _ Target, inst Instance, r Release, log io.Writer) error {
	f.mu.Lock()
	in, err := f.instanceLocked(inst.ID)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	f.calls = append(f.calls, "install "+inst.ID+" "+short(r.SHA))
	if in.inRotation {
		f.errorf("engine installed %s on %s while it was in rotation", short(r.SHA), inst.ID)
	}
	f.mu.Unlock()

	fmt.Fprintf(log, "installing %s\n", short(r.SHA))
	if err := f.wait(ctx, f.lat.install); err != nil {
		return err
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.faults[inst.ID].installFails == r.SHA {
		// The old process is gone and the new one never started.
		in.release, in.running = "", false
		f.checkLocked("failed install on "+inst.ID, -1)
		fmt.Fprintf(log, "install script exited with status 1\n")
		return fmt.Errorf("%s: install script exited with status 1", inst.ID)
	}
	in.release, in.running, in.fresh, in.checks = r.SHA, true, true, 0
	f.checkLocked("install on "+inst.ID, -1)
	fmt.Fprintf(log, "running %s\n", short(r.SHA))
	return nil
}

func (f *fakeFleet) Check(ctx context.Context, _ Target, inst Instance, path string) error {
	if path != f.healthPath {
		f.errorf("engine checked %s on %s, the configured path is %s", path, inst.ID, f.healthPath)
	}
	if err := f.wait(ctx, f.lat.check); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	in, err := f.instanceLocked(inst.ID)
	if err != nil {
		return err
	}
	f.calls = append(f.calls, "check "+inst.ID)
	err = f.healthLocked(in)
	in.checks++
	f.checkLocked("check of "+inst.ID, -1)
	return err
}

func (f *fakeFleet) Admit(ctx context.Context, _ Target, inst Instance) error {
	if err := f.wait(ctx, f.lat.admit); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	in, err := f.instanceLocked(inst.ID)
	if err != nil {
		return err
	}
	f.calls = append(f.calls, "admit "+inst.ID)
	if rel := f.faults[inst.ID].admitFails; rel != "" && rel == in.release {
		return fmt.Errorf("%s: target did not turn healthy in rotation", inst.ID)
	}
	if err := f.healthLocked(in); err != nil {
		return fmt.Errorf("%s: not healthy in rotation: %w", inst.ID, err)
	}
	in.inRotation, in.drained = true, false
	f.checkLocked("admit "+inst.ID, -1)
	return nil
}

// healthLocked is the truth a health check sees now.
func (f *fakeFleet) healthLocked(in *fakeInstance) error {
	fl := f.faults[in.id]
	switch {
	case !in.running:
		return fmt.Errorf("GET %s: connection refused", f.healthPath)
	case fl.neverHealthyOn != "" && fl.neverHealthyOn == in.release:
		return fmt.Errorf("GET %s: 503 Service Unavailable", f.healthPath)
	case in.fresh && in.checks < fl.warmup:
		return fmt.Errorf("GET %s: 503 Service Unavailable (starting)", f.healthPath)
	case fl.sickOn != "" && fl.sickOn == in.release && in.checks >= fl.sickAfter:
		return fmt.Errorf("GET %s: 500 Internal Server Error", f.healthPath)
	}
	return nil
}

func (f *fakeFleet) servingLocked() int {
	n := 0
	for _, in := range f.insts {
		if in.inRotation && f.healthLocked(in) == nil {
			n++
		}
	}
	return n
}

// checkLocked is the invariant checker, run after every change of state.
// servingBefore is how many served before a change that took an instance
// out of rotation, or -1 for a change that cannot.
func (f *fakeFleet) checkLocked(change string, servingBefore int) {
	out := 0
	for _, in := range f.insts {
		if in.drained {
			out++
		}
	}
	f.maxOut = max(f.maxOut, out)
	if out > f.maxUnavailable {
		f.errorf("after %s: %d instances are out of rotation at once, max_unavailable is %d", change, out, f.maxUnavailable)
	}
	if servingBefore > 0 && f.servingLocked() == 0 {
		f.errorf("%s took the last serving instance out of rotation (%d served before)", change, servingBefore)
	}
}

func (f *fakeFleet) instanceLocked(id string) (*fakeInstance, error) {
	in, ok := f.insts[id]
	if !ok {
		return nil, fmt.Errorf("%s: no such instance", id)
	}
	return in, nil
}

func (f *fakeFleet) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

// state is every instance as it is now.
func (f *fakeFleet) state() map[string]Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]Instance{}
	for id, in := range f.insts {
		out[id] = Instance{ID: id, Zone: in.zone, Release: in.release, Healthy: f.healthLocked(in) == nil, InRotation: in.inRotation}
	}
	return out
}

// callsTo are the calls that named instance id ("drain id", "check id", …).
func (f *fakeFleet) callsTo(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if fields := strings.Fields(c); len(fields) > 1 && fields[1] == id {
			out = append(out, c)
		}
	}
	return out
}

// callsOf are the calls of the given kinds ("drain", "install", …), in order.
func (f *fakeFleet) callsOf(kinds ...string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if slices.Contains(kinds, strings.Fields(c)[0]) {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeFleet) mostOut() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxOut
}

// surgingFleet is a fakeFleet whose driver can start extra instances.
type surgingFleet struct{ *fakeFleet }

var _ Surger = surgingFleet{}

func (f surgingFleet) Surge(ctx context.Context, _ Target, r Release, log io.Writer) (Instance, error) {
	if err := f.wait(ctx, f.lat.surge); err != nil {
		return Instance{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.surges++
	id := fmt.Sprintf("surge-%d", f.surges)
	f.calls = append(f.calls, "surge "+id+" "+short(r.SHA))
	in := &fakeInstance{id: id, release: r.SHA, running: true, inRotation: true, surge: true}
	if err := f.healthLocked(in); err != nil {
		return Instance{}, fmt.Errorf("%s did not turn healthy: %w", id, err)
	}
	f.insts[id] = in
	f.order = append(f.order, id)
	fmt.Fprintf(log, "started %s on %s\n", id, short(r.SHA))
	f.checkLocked("surge "+id, -1)
	return Instance{ID: id, Release: r.SHA, Healthy: true, InRotation: true}, nil
}

func (f surgingFleet) Retire(ctx context.Context, _ Target, inst Instance) error {
	f.mu.Lock()
	in, err := f.instanceLocked(inst.ID)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	f.calls = append(f.calls, "retire "+inst.ID)
	if !in.surge {
		f.errorf("engine retired %s, which Surge did not start", inst.ID)
	}
	if f.faults[inst.ID].retireFails {
		f.mu.Unlock()
		return fmt.Errorf("%s: process did not exit", inst.ID)
	}
	before := f.servingLocked()
	delete(f.insts, inst.ID)
	f.order = slices.DeleteFunc(f.order, func(id string) bool { return id == inst.ID })
	f.checkLocked("retire "+inst.ID, before)
	f.mu.Unlock()
	return f.wait(ctx, f.lat.retire)
}
