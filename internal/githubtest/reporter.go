package githubtest

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// TB is what githubtest needs from a test: *testing.T and *testing.B satisfy
// it. Outside tests (bot demo) use NewLogReporter.
//
// When TB also has Skipf or FailNow (as *testing.T does), githubtest uses
// them when GitHub's REST description is missing: skip on a developer's
// machine, fail when CI is set.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
}

var _ TB = (*LogReporter)(nil)

// LogReporter is a TB that logs instead of failing a test, and remembers the
// errors so a caller can check them. Close runs the cleanups.
type LogReporter struct {
	log *slog.Logger

	mu       sync.Mutex
	errors   []string
	cleanups []func()
}

// NewLogReporter reports to log (slog.Default() if nil).
func NewLogReporter(log *slog.Logger) *LogReporter {
	if log == nil {
		log = slog.Default()
	}
	return &LogReporter{log: log}
}

// Helper does nothing; it exists to satisfy TB.
func (r *LogReporter) Helper() {}

// Errorf logs at error level and records the message.
func (r *LogReporter) Errorf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.errors = append(r.errors, msg)
	r.mu.Unlock()
	r.log.Error(msg)
}

// Logf logs at debug level.
func (r *LogReporter) Logf(format string, args ...any) {
	r.log.Debug(fmt.Sprintf(format, args...))
}

// Cleanup registers f to run on Close, last registered first.
func (r *LogReporter) Cleanup(f func()) {
	r.mu.Lock()
	r.cleanups = append(r.cleanups, f)
	r.mu.Unlock()
}

// Errors returns the messages reported through Errorf so far.
func (r *LogReporter) Errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errors...)
}

// Close runs the registered cleanups.
func (r *LogReporter) Close() {
	r.mu.Lock()
	fs := r.cleanups
	r.cleanups = nil
	r.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// missing reports a missing dependency the way internal/testenv does: a
// failure when CI is set, a skip in a test, a logged warning elsewhere. It
// returns false when the caller should carry on without the dependency.
func missing(t TB, msg string) (stop bool) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Errorf("%s (CI is set, so a missing test dependency is a failure)", msg)
		if f, ok := t.(interface{ FailNow() }); ok {
			f.FailNow()
		}
		return true
	}
	if s, ok := t.(interface{ Skipf(string, ...any) }); ok {
		s.Skipf("%s; skipping (run `npm ci` in the repository root, or `make test`)", msg)
		return true
	}
	t.Logf("%s; serving without schema validation", msg)
	return false
}
