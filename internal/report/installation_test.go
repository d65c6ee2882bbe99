package report

import (
	"strings"
	"testing"
)

func TestInstallationTexts(t *testing.T) {
	many := make([]string, 22)
	for i := range many {
		many[i] = "octo/r"
	}
	for _, tc := range []struct{ name, got, want string }{
		{"installed on some", Installed(Installation{Account: "octo", Repos: []string{"octo/a", "octo/b"}}), "Installed on octo: octo/a, octo/b."},
		{"installed on all", Installed(Installation{Account: "octo", All: true}), "Installed on all repositories of octo."},
		{"uninstalled", Uninstalled(Installation{Account: "octo", TornDown: []string{"octo/a#3"}}), "Uninstalled from octo; previews torn down: octo/a#3."},
		{"uninstalled, nothing running", Uninstalled(Installation{Account: "octo"}), "Uninstalled from octo; no previews were running."},
		{"added", ReposAdded(Installation{Account: "octo", Repos: []string{"octo/c"}}), "Repositories added to the installation on octo: octo/c."},
		{"removed", ReposRemoved(Installation{Account: "octo", Repos: []string{"octo/a"}, TornDown: []string{"octo/a#3", "octo/a#4"}}),
			"Repositories removed from the installation on octo: octo/a; previews torn down: octo/a#3, octo/a#4."},
		{"many", ReposAdded(Installation{Account: "octo", Repos: many})[:47], "Repositories added to the installation on octo:"},
		{"preview", PreviewRemovedWithApp(3), "Preview of #3 torn down: the App no longer has access to the repository, so the pull request was not told."},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	if got := ReposAdded(Installation{Account: "octo", Repos: many}); !strings.HasSuffix(got, "octo/r and 2 more.") {
		t.Errorf("22 repositories: %q, want the last 2 counted", got)
	}
}
