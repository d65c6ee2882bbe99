package deploy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/shipbot/shipbot/internal/store/record"
)

// Mask is what a secret's value is replaced with in logs and texts.
const Mask = "••••"

// ResolveVars is what the processes of repo's environment env get (SPEC
// §7): vars are appEnv then envEnv (later wins), secrets the values of
// names read from src. A secret never set, or one that cannot be read, is
// the reason returned: the deploy fails before anything is touched.
func ResolveVars(ctx context.Context, src SecretSource, repo, env string, appEnv, envEnv map[string]string, names []string) (vars, secrets map[string]string, why *record.Reason) {
	vars = make(map[string]string, len(appEnv)+len(envEnv))
	maps.Copy(vars, appEnv)
	maps.Copy(vars, envEnv)
	if len(names) == 0 {
		return vars, nil, nil
	}
	secrets = make(map[string]string, len(names))
	for _, name := range names {
		if src == nil {
			return nil, nil, &record.Reason{Kind: record.ReasonSecretMissing, Repo: repo, Env: env, Text: name}
		}
		v, err := src.Secret(ctx, repo, env, name)
		switch {
		case errors.Is(err, ErrSecretNotSet):
			return nil, nil, &record.Reason{Kind: record.ReasonSecretMissing, Repo: repo, Env: env, Text: name}
		case err != nil:
			return nil, nil, &record.Reason{Kind: record.ReasonSecretUnreadable, Repo: repo, Env: env, Text: name, Err: err.Error()}
		}
		secrets[name] = v
	}
	return vars, secrets, nil
}

// masker replaces secret values with Mask, longest first so that a value
// containing another is masked whole. The zero masker masks nothing.
type masker struct {
	values []string
}

func newMasker(secrets map[string]string) masker {
	var vs []string
	for _, v := range secrets {
		if v != "" {
			vs = append(vs, v)
		}
	}
	slices.SortFunc(vs, func(a, b string) int { return len(b) - len(a) })
	return masker{values: slices.Compact(vs)}
}

// String is s with every secret value masked.
func (m masker) String(s string) string {
	for _, v := range m.values {
		s = strings.ReplaceAll(s, v, Mask)
	}
	return s
}

// Reason masks every text a reason carries from elsewhere (a driver's
// error, a process's output), within reasons too.
func (m masker) Reason(r *record.Reason) {
	if len(m.values) == 0 || r == nil {
		return
	}
	r.Err, r.Text = m.String(r.Err), m.String(r.Text)
	m.Reason(r.Cause)
	for i := range r.Then {
		m.Reason(&r.Then[i])
	}
}

// MaskSecrets is s with every value of secrets masked.
func MaskSecrets(s string, secrets map[string]string) string { return newMasker(secrets).String(s) }

// maskWriter masks secret values in what it passes on to w, a line at a
// time, so that a value split over two writes is masked too; Flush passes
// on what is left of an unfinished last line.
type maskWriter struct {
	m   masker
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// NewMaskWriter masks every value of secrets in what it writes to w; call
// Flush at the end. With no secrets it is w itself, with a Flush that
// does nothing.
func NewMaskWriter(w io.Writer, secrets map[string]string) interface {
	io.Writer
	Flush()
} {
	return &maskWriter{m: newMasker(secrets), w: w}
}

func (mw *maskWriter) Write(p []byte) (int, error) {
	if len(mw.m.values) == 0 {
		return mw.w.Write(p)
	}
	mw.mu.Lock()
	defer mw.mu.Unlock()
	mw.buf = append(mw.buf, p...)
	if i := bytes.LastIndexByte(mw.buf, '\n'); i >= 0 {
		_, err := io.WriteString(mw.w, mw.m.String(string(mw.buf[:i+1])))
		mw.buf = append(mw.buf[:0], mw.buf[i+1:]...)
		if err != nil {
			return len(p), err
		}
	}
	return len(p), nil
}

func (mw *maskWriter) Flush() {
	mw.mu.Lock()
	defer mw.mu.Unlock()
	if len(mw.buf) > 0 {
		_, _ = io.WriteString(mw.w, mw.m.String(string(mw.buf)))
		mw.buf = mw.buf[:0]
	}
}
