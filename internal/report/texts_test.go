package report

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/repoconfig"
)

// The texts the handlers write without a deploy snapshot: the shipbot/config
// check run, the reasons a wait for checks fails, and the sentences around
// a preview.

func TestConfigFileIsRepoconfigs(t *testing.T) {
	if configFile != repoconfig.FilePath {
		t.Fatalf("report says %q, repoconfig reads %q", configFile, repoconfig.FilePath)
	}
}

func renderCheckRun(name string, cr CheckRunOutput) []byte {
	return fmt.Appendf(nil, "==== check run %s ====\nstatus: %s\nconclusion: %s\ntitle: %s\n\n==== summary ====\n%s\n==== text ====\n%s",
		name, cr.Status, cr.Conclusion, cr.Title, cr.Summary, cr.Text)
}

func TestConfigCheckGolden(t *testing.T) {
	for _, sc := range []struct {
		name     string
		problems []string
	}{
		{"one-problem", []string{".github/shipbot.yml line 3: environments.production.rollout.batches: must be at least 1"}},
		{"three-problems", []string{
			".github/shipbot.yml line 2: app: unknown key \"ap\" (did you mean \"app\"?)",
			".github/shipbot.yml line 7: environments.staging.branch: must be a branch name, not a glob",
			".github/shipbot.yml line 12: preview.ttl: \"3 days\" is not a duration; write e.g. 72h",
		}},
	} {
		t.Run(sc.name, func(t *testing.T) {
			golden(t, filepath.Join("config", sc.name+".golden"), renderCheckRun(ConfigCheckName, ConfigCheck(sc.problems)))
		})
	}
}

// TestChecksReasonsGolden is every reason a deploy waiting for required
// checks fails with, one per line.
func TestChecksReasonsGolden(t *testing.T) {
	var b strings.Builder
	for _, c := range []string{"failure", "error", "cancelled", "timed_out", "action_required", "startup_failure"} {
		b.WriteString(CheckFailed("ci/test", c, newSHA) + "\n")
	}
	b.WriteString(ChecksTimedOut(time.Hour, []string{"ci/test", "lint"}, newSHA) + "\n")
	b.WriteString(ChecksTimedOut(90*time.Minute, []string{"ci/test"}, newSHA) + "\n")
	b.WriteString(EnvironmentGone("staging") + "\n")
	golden(t, filepath.Join("checks", "reasons.golden"), []byte(b.String()))
}

func TestPreviewNotesGolden(t *testing.T) {
	golden(t, filepath.Join("preview", "fork.golden"), []byte(ForkPreviewComment()))
	var b strings.Builder
	for _, d := range []string{"aws", "kubernetes"} {
		b.WriteString(NoPreviewDriver(d) + "\n")
	}
	for _, merged := range []bool{false, true} {
		b.WriteString(PreviewClosed(merged) + "\n")
	}
	golden(t, filepath.Join("preview", "reasons.golden"), []byte(b.String()))
}
