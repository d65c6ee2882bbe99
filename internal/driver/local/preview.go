package local

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
)

// EnsurePreview makes the pull request's preview run the release with the
// preview's variables and secrets, behind its own proxy at a URL that stays
// the same for the life of the preview (and across restarts). An update
// builds the release, runs app.release (the preview's release phase), then
// starts the new process, waits for it to pass the preview's health checks
// and puts it in rotation before draining and stopping the old one, so the
// URL never goes dark; a failed update, release phase included, leaves the
// old release serving. Asking again for the release and variables it runs
// is a no-op.
func (d *Driver) EnsurePreview(ctx context.Context, pv deploy.Preview, r deploy.Release, log io.Writer) (string, error) {
	if d.remote != nil {
		var url string
		err := d.remote.call(ctx, "EnsurePreview", callArgs{Preview: toWirePreview(pv), Release: r}, log, &url)
		return url, err
	}
	if pv.Number < 1 {
		return "", fmt.Errorf("%s: preview for pull request %d: not a pull request number", pv.Repo, pv.Number)
	}
	if log == nil {
		log = io.Discard
	}
	ctx, cancel := d.opContext(ctx)
	defer cancel()
	d.mu.Lock()
	f, _, err := d.fleetLocked(fleetKey{Repo: pv.Repo, PR: pv.Number}, "")
	d.mu.Unlock()
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	f.app, f.health = pv.App, pv.Config.Health
	s := f.listed()[0]
	f.mu.Unlock()
	d.saveStateOrLog() // the port, at least

	v := previewVars(pv)
	if _, err := d.prepare(ctx, pv.Repo, pv.App, v, r, log); err != nil {
		return "", fmt.Errorf("preview #%d: %w", pv.Number, err)
	}
	if err := s.lock(ctx); err != nil {
		return "", err
	}
	defer s.unlock()

	f.mu.Lock()
	old := s.proc
	same := old != nil && old.running() && s.release.SHA == r.SHA && s.vars.equal(v) && old.backend.inRotation.Load()
	h := healthOf(f.health)
	f.mu.Unlock()
	if same {
		fmt.Fprintf(log, "preview #%d already runs %s at %s\n", pv.Number, short(r.SHA), f.url)
		return f.url, nil
	}

	if strings.TrimSpace(pv.App.Release) != "" {
		if err := d.release(ctx, pv.Repo, pv.App, v, r, log); err != nil {
			if old != nil && old.running() {
				fmt.Fprintf(log, "preview #%d keeps serving %s\n", pv.Number, short(old.release))
			}
			return "", fmt.Errorf("preview #%d: release phase failed: %w", pv.Number, err)
		}
	}
	p, err := d.startProcess(ctx, f, s, r, v, log)
	if err != nil {
		return "", fmt.Errorf("preview #%d: %w", pv.Number, err)
	}
	abandon := func(err error) (string, error) {
		f.proxy.remove(p.backend)
		d.stop(context.WithoutCancel(ctx), p)
		if old != nil && old.running() {
			fmt.Fprintf(log, "preview #%d keeps serving %s\n", pv.Number, short(old.release))
		}
		return "", fmt.Errorf("preview #%d: %w", pv.Number, err)
	}
	// Until p is adopted, its checks are not recorded on the slot, which
	// still reports the old process.
	if err := d.waitHealthy(ctx, f, s, p, h); err != nil {
		return abandon(err)
	}
	if err := f.proxy.probe(ctx, p.backend, h.Path); err != nil {
		return abandon(fmt.Errorf("instance %s: %s through the proxy: %w", s.id, h.Path, err))
	}

	// Switch: the new process in, the old one out, at once.
	f.mu.Lock()
	s.proc, s.release, s.want = p, r, true
	s.vars, s.unread = v, nil
	s.checkedAt, s.checkErr, s.crashes = time.Now(), nil, 0
	f.proxy.add(p.backend)
	if old != nil {
		f.proxy.remove(old.backend)
	}
	f.mu.Unlock()
	p.settle()
	d.saveStateOrLog()
	if old != nil {
		if err := d.waitDrained(ctx, f, s.id, old.backend); err != nil {
			d.log.Warn("draining the old preview process", "fleet", f.key.String(), "err", err)
		}
		d.stop(context.WithoutCancel(ctx), old)
	}
	fmt.Fprintf(log, "preview #%d serves %s at %s\n", pv.Number, short(r.SHA), f.url)
	return f.url, nil
}

// TeardownPreview stops the preview's instance, closes its proxy and forgets
// its port and state. Tearing down a preview that does not exist is not an
// error. Builds are kept: a push to the PR or a /deploy of its branch
// often builds the same SHA with the same variables again.
func (d *Driver) TeardownPreview(ctx context.Context, pv deploy.Preview) error {
	if d.remote != nil {
		return d.remote.call(ctx, "TeardownPreview", callArgs{Preview: toWirePreview(pv)}, nil, nil)
	}
	k := fleetKey{Repo: pv.Repo, PR: pv.Number}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	f := d.fleets[k]
	_, hasPort := d.ports[k]
	d.mu.Unlock()
	if f == nil && !hasPort {
		return nil
	}
	if f != nil {
		f.mu.Lock()
		slots := make([]*slot, 0, len(f.slots))
		for _, s := range f.slots {
			slots = append(slots, s)
		}
		f.mu.Unlock()
		for _, s := range slots {
			if err := s.lock(ctx); err != nil {
				return err
			}
			f.mu.Lock()
			p := s.proc
			s.proc, s.want, s.release = nil, false, deploy.Release{}
			s.vars, s.unread = appVars{}, nil
			if p != nil {
				f.proxy.remove(p.backend)
			}
			f.mu.Unlock()
			if p != nil {
				_ = d.waitDrained(ctx, f, s.id, p.backend)
				d.stop(ctx, p)
			}
			s.unlock()
		}
		f.proxy.shutdown(ctx)
	}
	d.mu.Lock()
	if d.fleets[k] == f {
		delete(d.fleets, k)
	}
	delete(d.ports, k)
	d.mu.Unlock()
	d.saveStateOrLog()
	d.log.Info("preview torn down", "repo", pv.Repo, "preview", pv.Number)
	return nil
}
