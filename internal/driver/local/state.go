package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/repoconfig"
)

// stateVersion is the format of state.json and ports.json.
const stateVersion = 1

// portsFile is DataDir/local/ports.json: the proxy port of every environment
// and preview, so that their URLs survive restarts.
type portsFile struct {
	Version   int         `json:"version"`
	Listeners []portEntry `json:"listeners"`
}

type portEntry struct {
	Repo        string `json:"repo"`
	Environment string `json:"environment,omitempty"` // lower case
	Preview     int    `json:"preview,omitempty"`
	Port        int    `json:"port"`
}

// stateFile is DataDir/local/state.json: what every environment and preview
// runs, so that Restore can bring them back after a restart.
type stateFile struct {
	Version int          `json:"version"`
	Fleets  []fleetState `json:"fleets"`
}

type fleetState struct {
	Repo        string      `json:"repo"`
	Environment string      `json:"environment,omitempty"` // as configured; "" for a preview
	Preview     int         `json:"preview,omitempty"`
	Name        string      `json:"-"`
	Instances   int         `json:"instances"`
	App         appState    `json:"app"`
	Health      healthState `json:"health"`
	Slots       []slotState `json:"slots"`
}

type appState struct {
	Build   string `json:"build"`
	Run     string `json:"run"`
	PortEnv string `json:"port_env"`
}

type healthState struct {
	Path         string `json:"path,omitempty"`
	Interval     string `json:"interval,omitempty"`
	HealthyAfter int    `json:"healthy_after,omitempty"`
	Timeout      string `json:"timeout,omitempty"`
}

// slotState is one instance as recorded: its variables, and the names of
// its secrets, never their values (Restore reads them again).
type slotState struct {
	ID      string            `json:"id"`
	Release releaseState      `json:"release"`
	Vars    map[string]string `json:"vars,omitempty"`
	Secrets []string          `json:"secrets,omitempty"`
}

type releaseState struct {
	SHA            string `json:"sha"`
	Ref            string `json:"ref,omitempty"`
	InstallationID int64  `json:"installation_id,omitempty"`
}

func (fs fleetState) key() fleetKey {
	if fs.Preview > 0 {
		return fleetKey{Repo: fs.Repo, PR: fs.Preview}
	}
	return fleetKey{Repo: fs.Repo, Env: strings.ToLower(fs.Environment)}
}

func (d *Driver) statePath() string { return filepath.Join(d.opts.DataDir, "local", "state.json") }
func (d *Driver) portsPath() string { return filepath.Join(d.opts.DataDir, "local", "ports.json") }

func (d *Driver) readPorts() (map[fleetKey]int, error) {
	var pf portsFile
	if err := readJSON(d.portsPath(), &pf); err != nil {
		return nil, err
	}
	out := map[fleetKey]int{}
	for _, e := range pf.Listeners {
		k := fleetKey{Repo: e.Repo, Env: strings.ToLower(e.Environment), PR: e.Preview}
		if validRepo(e.Repo) != nil || (k.Env == "") == (k.PR == 0) || e.Port <= 0 || e.Port > 65535 {
			d.log.Warn("ignoring a bad entry of ports.json", "entry", fmt.Sprintf("%+v", e))
			continue
		}
		out[k] = e.Port
	}
	return out, nil
}

func (d *Driver) readState() (stateFile, error) {
	var st stateFile
	if err := readJSON(d.statePath(), &st); err != nil {
		return st, err
	}
	fleets := st.Fleets[:0]
	for _, fs := range st.Fleets {
		fs.Name = fs.Environment
		if fs.Preview > 0 {
			fs.Name = ""
		}
		if validRepo(fs.Repo) != nil || (fs.Environment == "") == (fs.Preview == 0) {
			d.log.Warn("ignoring a bad entry of state.json", "repo", fs.Repo, "environment", fs.Environment, "preview", fs.Preview)
			continue
		}
		fleets = append(fleets, fs)
	}
	st.Fleets = fleets
	return st, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("local driver: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("local driver: %s is not valid: %w (move it away to start afresh)", path, err)
	}
	return nil
}

// restoreFrom fills a fleet just created at start-up from its recorded state.
func (f *fleet) restoreFrom(fs fleetState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fs.Preview == 0 {
		f.name = fs.Environment
	}
	f.count = max(fs.Instances, 1)
	f.app = repoconfig.App{Build: fs.App.Build, Run: fs.App.Run, PortEnv: fs.App.PortEnv}
	interval, _ := time.ParseDuration(fs.Health.Interval)
	timeout, _ := time.ParseDuration(fs.Health.Timeout)
	f.health = repoconfig.Health{Path: fs.Health.Path, Interval: interval, HealthyAfter: fs.Health.HealthyAfter, Timeout: timeout}
	f.ensureSlots()
	for _, ss := range fs.Slots {
		s := f.slots[strings.ToLower(ss.ID)]
		if s == nil {
			s = newSlot(ss.ID, extraIndex(f.name, ss.ID))
			if s.index == 0 {
				continue // not a slot id of this fleet
			}
			f.slots[strings.ToLower(ss.ID)] = s
		}
		s.release = deploy.Release{Repo: fs.Repo, SHA: ss.Release.SHA, Ref: ss.Release.Ref, InstallationID: ss.Release.InstallationID}
		s.vars, s.unread = appVars{vars: ss.Vars}, ss.Secrets
	}
}

// extraIndex is the index of "<name>-<i>", or 0.
func extraIndex(name, id string) int {
	rest, ok := strings.CutPrefix(strings.ToLower(id), strings.ToLower(name)+"-")
	if !ok {
		return 0
	}
	var i int
	if _, err := fmt.Sscanf(rest, "%d", &i); err != nil || fmt.Sprint(i) != rest || i < 1 {
		return 0
	}
	return i
}

// saveState writes state.json and ports.json from what the driver holds now.
func (d *Driver) saveState() error {
	d.stateMu.Lock()
	defer d.stateMu.Unlock()
	var st stateFile
	var pf portsFile
	st.Version, pf.Version = stateVersion, stateVersion
	d.mu.Lock()
	for k, port := range d.ports {
		pf.Listeners = append(pf.Listeners, portEntry{Repo: k.Repo, Environment: k.Env, Preview: k.PR, Port: port})
	}
	fleets := make([]*fleet, 0, len(d.fleets))
	for _, f := range d.fleets {
		fleets = append(fleets, f)
	}
	d.mu.Unlock()
	for _, f := range fleets {
		if fs, ok := f.state(); ok {
			st.Fleets = append(st.Fleets, fs)
		}
	}
	slices.SortFunc(pf.Listeners, func(a, b portEntry) int {
		return strings.Compare(fmt.Sprint(a.Repo, a.Environment, a.Preview), fmt.Sprint(b.Repo, b.Environment, b.Preview))
	})
	slices.SortFunc(st.Fleets, func(a, b fleetState) int {
		return strings.Compare(fmt.Sprint(a.Repo, a.Environment, a.Preview), fmt.Sprint(b.Repo, b.Environment, b.Preview))
	})
	for _, file := range []struct {
		path string
		v    any
	}{{d.portsPath(), pf}, {d.statePath(), st}} {
		b, err := json.MarshalIndent(file.v, "", "  ")
		if err != nil {
			return err
		}
		if err := writeFileAtomic(file.path, append(b, '\n')); err != nil {
			return fmt.Errorf("local driver: writing %s: %w", file.path, err)
		}
	}
	return nil
}

func (d *Driver) saveStateOrLog() {
	if err := d.saveState(); err != nil {
		d.log.Error("could not record the driver's state; a restart may not restore it", "err", err)
	}
}

// state is the fleet as recorded; ok is false for one that never ran
// anything (only its port is worth keeping).
func (f *fleet) state() (fleetState, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fs := fleetState{
		Repo:      f.key.Repo,
		Preview:   f.key.PR,
		Instances: f.count,
		App:       appState{Build: f.app.Build, Run: f.app.Run, PortEnv: f.app.PortEnv},
		Health:    healthState{Path: f.health.Path, HealthyAfter: f.health.HealthyAfter},
	}
	if f.key.PR == 0 {
		fs.Environment = f.name
	}
	if f.health.Interval > 0 {
		fs.Health.Interval = f.health.Interval.String()
	}
	if f.health.Timeout > 0 {
		fs.Health.Timeout = f.health.Timeout.String()
	}
	for _, s := range f.slots {
		if s.surge || s.release.SHA == "" {
			continue // a surge instance is the running deploy's to retire, not to restore
		}
		if s.index > f.count && s.proc == nil {
			continue
		}
		names := s.unread // not read again yet: still needed
		if names == nil {
			names = s.vars.names()
		}
		fs.Slots = append(fs.Slots, slotState{
			ID:      s.id,
			Release: releaseState{SHA: s.release.SHA, Ref: s.release.Ref, InstallationID: s.release.InstallationID},
			Vars:    s.vars.vars,
			Secrets: names,
		})
	}
	slices.SortFunc(fs.Slots, func(a, b slotState) int { return strings.Compare(a.ID, b.ID) })
	return fs, len(fs.Slots) > 0 || f.count > 0 && f.app.Run != ""
}

// Restore brings every environment and preview recorded in state.json back
// up on its recorded releases, at its recorded URL: each instance is built
// if its build is gone, started with its recorded variables and the values
// of its secrets read again through Options.Secrets, health-checked and put
// in rotation; one whose secret cannot be read stays down, logged. It is
// the local driver's drift repair (SPEC §6.7) after a restart, and safe to
// call again: instances already running are left alone. Instances that do
// not come up healthy stay out of rotation (and are reported unhealthy); the
// error lists them.
func (d *Driver) Restore(ctx context.Context) error {
	if d.remote != nil {
		return d.remote.call(ctx, "Restore", callArgs{}, nil, nil)
	}
	ctx, cancel := d.opContext(ctx)
	defer cancel()
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	fleets := make([]*fleet, 0, len(d.fleets))
	for _, f := range d.fleets {
		fleets = append(fleets, f)
	}
	d.mu.Unlock()

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, f := range fleets {
		f.mu.Lock()
		var slots []*slot
		for _, s := range f.slots {
			if s.release.SHA != "" && !s.surge && (s.proc == nil || !s.proc.running()) {
				slots = append(slots, s)
			}
		}
		f.mu.Unlock()
		for _, s := range slots {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := d.restoreSlot(ctx, f, s); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("restore %s %s: %w", f.key, s.id, err))
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (d *Driver) restoreSlot(ctx context.Context, f *fleet, s *slot) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	rel, app, h, v, unread, env := s.release, f.app, healthOf(f.health), s.vars, s.unread, f.name
	running := s.proc != nil && s.proc.running()
	f.mu.Unlock()
	if running {
		s.unlock()
		return nil
	}
	if len(unread) > 0 {
		secrets, err := d.restoreSecrets(ctx, f.key, env, unread)
		if err != nil {
			s.unlock()
			d.log.Error("instance stays down: "+err.Error(), "fleet", f.key.String(), "instance", s.id, "release", short(rel.SHA))
			return err
		}
		v.secrets = secrets
		f.mu.Lock()
		s.vars, s.unread = v, nil
		f.mu.Unlock()
	}
	if _, err := d.prepare(ctx, f.key.Repo, app, v, rel, io.Discard); err != nil {
		s.unlock()
		return err
	}
	p, err := d.startProcess(ctx, f, s, rel, v, io.Discard)
	if err != nil {
		s.unlock()
		return err
	}
	f.mu.Lock()
	s.proc, s.checkedAt, s.checkErr = p, time.Time{}, nil
	f.mu.Unlock()
	p.settle()
	s.unlock()
	if err := d.waitHealthy(ctx, f, s, p, h); err != nil {
		return err
	}
	if err := d.admit(ctx, f, s, p, h.Path); err != nil {
		return err
	}
	d.log.Info("instance restored", "fleet", f.key.String(), "instance", s.id, "release", short(rel.SHA), "url", f.url)
	return nil
}
