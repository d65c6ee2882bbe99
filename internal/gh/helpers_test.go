package gh_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/githubtest"
	"github.com/shipbot/shipbot/internal/testenv"
)

const owner, repo = "acme", "web"

// env is one test's GitHub and the bot's client of it.
type env struct {
	srv  *githubtest.Server
	c    *gh.Client
	in   *gh.Installation
	reg  *prometheus.Registry
	ctx  context.Context
	spec string
}

func specPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(testenv.NodeModule(t, "@octokit/openapi"), "generated", "api.github.com.json")
}

func newEnv(t *testing.T, tb githubtest.TB, opts ...githubtest.Option) *env {
	t.Helper()
	spec := specPath(t)
	if tb == nil {
		tb = t
	}
	srv := githubtest.New(tb, append([]githubtest.Option{githubtest.WithSpec(spec)}, opts...)...)
	srv.AddRepo(owner, repo, githubtest.RepoOptions{})
	reg := prometheus.NewRegistry()
	c, err := gh.New(gh.Options{
		AppID: srv.AppID, PrivateKey: srv.PrivateKeyPEM, BaseURL: srv.URL, Registerer: reg,
		Retry: gh.RetryPolicy{BaseDelay: 5 * time.Millisecond, MaxDelay: 20 * time.Millisecond, MaxWait: 10 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return &env{srv: srv, c: c, in: c.Installation(srv.InstallationID), reg: reg, ctx: ctx, spec: spec}
}

// writes counts the write calls since the last reset.
func (e *env) writes() int { return e.srv.CountWrites() }

// recorder is a githubtest.TB that keeps the errors instead of failing the
// test, to check that the validator catches a bad request.
type recorder struct {
	t      *testing.T
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Helper()                          { r.t.Helper() }
func (r *recorder) Logf(format string, args ...any)  { r.t.Logf(format, args...) }
func (r *recorder) Cleanup(f func())                 { r.t.Cleanup(f) }
func (r *recorder) Skipf(format string, args ...any) { r.t.Skipf(format, args...) }
func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) all() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.errors, "\n---\n")
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.errors)
}

const sha = "0123456789abcdef0123456789abcdef01234567"
