package dashboard_test

import (
	"context"
	"html"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/dashboard"
	"github.com/shipbot/shipbot/internal/store/record"
)

// TestHomeShowsFreeze: an environment whose push a freeze window holds
// says so, with the window's end, until that end has passed.
func TestHomeShowsFreeze(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	pushed, until := time.Date(2026, 3, 6, 18, 0, 0, 0, berlin), time.Date(2026, 3, 9, 8, 0, 0, 0, berlin)
	now := pushed.Add(time.Hour)
	f := newFixture(t, func(o *dashboard.Options) { o.Now = func() time.Time { return now } })
	why := record.Reason{Kind: record.ReasonFrozen, Text: "Fri 16:00 - Mon 08:00 Europe/Berlin", TimeZone: "Europe/Berlin", Until: until, At: pushed}
	if err := f.st.PutDeploy(context.Background(), record.Deploy{
		ID: "push-held-production", Env: record.EnvKey{Repo: public, Name: "production"}, SHA: "2222222222222222222222222222222222222222",
		Kind: record.KindPush, State: record.StateWaiting, Why: &why, FrozenUntil: until, CreatedAt: pushed,
	}); err != nil {
		t.Fatal(err)
	}
	const notice = "❄️ Frozen until Mon 08:00 CET (Europe/Berlin): pushes wait, and the newest deploys when the window closes"
	_, body := f.get(t, nil, "/", "Authorization", "Bearer "+token)
	if !strings.Contains(html.UnescapeString(body), notice) || !strings.Contains(body, "Fri 16:00 - Mon 08:00 Europe/Berlin") {
		t.Fatalf("the home page does not show the freeze:\n%s", body)
	}
	if strings.Count(body, `class="frozen"`) != 1 {
		t.Fatalf("the freeze is shown for more than its environment:\n%s", body)
	}

	now = until.Add(time.Second)
	if _, body := f.get(t, nil, "/", "Authorization", "Bearer "+token); strings.Contains(body, `class="frozen"`) {
		t.Fatalf("the freeze is shown after its end:\n%s", body)
	}
}
