package local

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/repoconfig"
)

// What the bot and its keeper say to each other over DataDir/local/keeper.sock
// (keeper.go, remote.go): HTTP, one POST /call/<Method> per driver call
// with callArgs as JSON, answered by a stream of frames, one JSON object a
// line: the call's log lines as they come, then its result or error.

// keeperProtocol names the form of everything in this file. A bot adopts
// a keeper that answers /hello with the same; any other is replaced (the
// handoff, whose form never changes, see keeper.go). A string, so that a
// test can build a binary with another (-ldflags -X).
var keeperProtocol = "1"

// wireTarget is what the driver reads of a deploy.Target: the engine's
// configuration types carry much the driver never sees, some of it not
// JSON at all.
type wireTarget struct {
	Repo      string
	Env       string
	Instances int
	Health    repoconfig.Health
	App       repoconfig.App
	Vars      map[string]string
	Secrets   map[string]string
}

func toWire(t deploy.Target) *wireTarget {
	w := &wireTarget{Repo: t.Repo, App: t.App, Vars: t.Vars, Secrets: t.Secrets}
	if t.Environment != nil {
		w.Env, w.Instances, w.Health = t.Environment.Name, t.Environment.Instances, t.Environment.Health
	}
	return w
}

func (w *wireTarget) target() deploy.Target {
	if w == nil {
		return deploy.Target{}
	}
	t := deploy.Target{Repo: w.Repo, App: w.App, Vars: w.Vars, Secrets: w.Secrets}
	if w.Env != "" {
		t.Environment = &repoconfig.Environment{Name: w.Env, Instances: w.Instances, Health: w.Health}
	}
	return t
}

// wirePreview is what the driver reads of a deploy.Preview.
type wirePreview struct {
	Repo    string
	Number  int
	Health  repoconfig.Health
	App     repoconfig.App
	Vars    map[string]string
	Secrets map[string]string
}

func toWirePreview(p deploy.Preview) *wirePreview {
	return &wirePreview{Repo: p.Repo, Number: p.Number, Health: p.Config.Health, App: p.App, Vars: p.Vars, Secrets: p.Secrets}
}

func (w *wirePreview) preview() deploy.Preview {
	if w == nil {
		return deploy.Preview{}
	}
	return deploy.Preview{Repo: w.Repo, Number: w.Number, Config: repoconfig.Preview{Health: w.Health}, App: w.App, Vars: w.Vars, Secrets: w.Secrets}
}

// callArgs are the arguments of every call; each uses the fields its
// method takes.
type callArgs struct {
	Target   *wireTarget  `json:",omitempty"`
	Preview  *wirePreview `json:",omitempty"`
	Instance deploy.Instance
	Release  deploy.Release
	Path     string    `json:",omitempty"`
	SHA      string    `json:",omitempty"`
	From, To time.Time `json:",omitzero"`
	Repo     string    `json:",omitempty"`
	Env      string    `json:",omitempty"`
	Number   int       `json:",omitempty"`
}

// frame is one line of a call's answer.
type frame struct {
	Log    string          `json:"log,omitempty"`
	Done   bool            `json:"done,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Err    string          `json:"err,omitempty"`
	Closed bool            `json:"closed,omitempty"` // the error is ErrClosed
}

// callErr is the error a frame carries, ErrClosed kept as itself so that
// callers can tell a closing driver from a failure.
func (f frame) callErr() error {
	switch {
	case f.Closed:
		return ErrClosed
	case f.Err != "":
		return errors.New(f.Err)
	}
	return nil
}

// frameWriter writes a call's log to its answer as frames, flushing each,
// until detached (a build may outlive the call that started it).
type frameWriter struct {
	mu    sync.Mutex
	enc   *json.Encoder
	flush func()
	gone  bool
}

func (w *frameWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gone {
		return len(p), nil
	}
	if err := w.enc.Encode(frame{Log: string(p)}); err != nil {
		w.gone = true
		return len(p), nil // the bot went away: the work goes on without its log
	}
	w.flush()
	return len(p), nil
}

func (w *frameWriter) end(result any, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gone {
		return
	}
	w.gone = true
	f := frame{Done: true}
	if err != nil {
		f.Err, f.Closed = err.Error(), errors.Is(err, ErrClosed)
	} else if result != nil {
		b, merr := json.Marshal(result)
		if merr != nil {
			f.Err = "keeper: " + merr.Error()
		}
		f.Result = b
	}
	_ = w.enc.Encode(f)
	w.flush()
}

// keeperCall is one method of the driver as the keeper serves it.
type keeperCall func(ctx context.Context, d *Driver, a callArgs, log io.Writer) (any, error)

// keeperCalls are the driver's methods the bot forwards: one entry each,
// delegating to the in-process driver the keeper runs.
var keeperCalls = map[string]keeperCall{
	"URL": func(_ context.Context, d *Driver, a callArgs, _ io.Writer) (any, error) {
		return d.URL(a.Repo, a.Env), nil
	},
	"PreviewURL": func(_ context.Context, d *Driver, a callArgs, _ io.Writer) (any, error) {
		return d.PreviewURL(a.Repo, a.Number), nil
	},
	"Runs": func(_ context.Context, d *Driver, a callArgs, _ io.Writer) (any, error) {
		return d.Runs(a.Repo, a.Env), nil
	},
	"Instances": func(ctx context.Context, d *Driver, a callArgs, _ io.Writer) (any, error) {
		return d.Instances(ctx, a.Target.target())
	},
	"Drain": func(ctx context.Context, d *Driver, a callArgs, _ io.Writer) (any, error) {
		return nil, d.Drain(ctx, a.Target.target(), a.Instance)
	},
	"Install": func(ctx context.Context, d *Driver, a callArgs, log io.Writer) (any, error) {
		return nil, d.Install(ctx, a.Target.target(), a.Instance, a.Release, log)
	},
	"Check": func(ctx context.Context, d *Driver, a callArgs, _ io.Writer) (any, error) {
		return nil, d.Check(ctx, a.Target.target(), a.Instance, a.Path)
	},
	"Admit": func(ctx context.Context, d *Driver, a callArgs, _ io.Writer) (any, error) {
		return nil, d.Admit(ctx, a.Target.target(), a.Instance)
	},
	"Surge": func(ctx context.Context, d *Driver, a callArgs, log io.Writer) (any, error) {
		return d.Surge(ctx, a.Target.target(), a.Release, log)
	},
	"Retire": func(ctx context.Context, d *Driver, a callArgs, _ io.Writer) (any, error) {
		return nil, d.Retire(ctx, a.Target.target(), a.Instance)
	},
	"Prepare": func(ctx context.Context, d *Driver, a callArgs, log io.Writer) (any, error) {
		return nil, d.Prepare(ctx, a.Target.target(), a.Release, log)
	},
	"Release": func(ctx context.Context, d *Driver, a callArgs, log io.Writer) (any, error) {
		return nil, d.Release(ctx, a.Target.target(), a.Release, log)
	},
	"EnsurePreview": func(ctx context.Context, d *Driver, a callArgs, log io.Writer) (any, error) {
		return d.EnsurePreview(ctx, a.Preview.preview(), a.Release, log)
	},
	"TeardownPreview": func(ctx context.Context, d *Driver, a callArgs, _ io.Writer) (any, error) {
		return nil, d.TeardownPreview(ctx, a.Preview.preview())
	},
	"Traffic": func(ctx context.Context, d *Driver, a callArgs, _ io.Writer) (any, error) {
		return d.Traffic(ctx, a.Target.target(), a.SHA, a.From, a.To)
	},
	"Restore": func(ctx context.Context, d *Driver, _ callArgs, _ io.Writer) (any, error) {
		return nil, d.Restore(ctx)
	},
	"Restored": func(_ context.Context, d *Driver, _ callArgs, _ io.Writer) (any, error) {
		return d.restoredFleets(), nil
	},
	"Figures": func(_ context.Context, d *Driver, _ callArgs, _ io.Writer) (any, error) {
		return d.figures(), nil
	},
}
