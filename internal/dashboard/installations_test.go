package dashboard_test

import (
	"context"
	"strings"
	"testing"

	"github.com/shipbot/shipbot/internal/store/record"
)

// The home page lists where the App is installed: everything for the
// operator, and for a signed-in user only the repositories they can read.
func TestHomeListsInstalledRepositories(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	for _, in := range []record.Installation{
		{ID: 51, Account: "octo-org", Selection: "selected", Repos: []string{public, hidden}},
		{ID: 52, Account: "elsewhere", Selection: "all", Repos: []string{"elsewhere/tool"}},
	} {
		if _, err := f.st.UpdateInstallation(ctx, in.ID, func(r *record.Installation) error { *r = in; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	_, body := f.get(t, nil, "/", "Authorization", "Bearer "+token)
	for _, want := range []string{"Installed on", `data-installed="` + public + `"`, `data-installed="` + hidden + `"`,
		`data-installed="elsewhere/tool"`, "(all repositories)"} {
		if !strings.Contains(body, want) {
			t.Errorf("the operator's home page lacks %q:\n%s", want, body)
		}
	}
	_, body = f.signInWithGitHub(t, "/")
	if !strings.Contains(body, `data-installed="`+public+`"`) {
		t.Errorf("a signed-in user does not see %s among the installed repositories:\n%s", public, body)
	}
	for _, leak := range []string{`data-installed="` + hidden + `"`, "elsewhere"} {
		if strings.Contains(body, leak) {
			t.Errorf("a signed-in user sees %q, which they cannot read:\n%s", leak, body)
		}
	}
}
