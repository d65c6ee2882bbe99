package report

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Berlin on a machine without zoneinfo
)

func berlin(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// weekend is a weekly freeze open on Saturday 2025-05-31, lifting on
// Monday morning, summer time in Berlin.
func weekend(t *testing.T) *Freeze {
	return &Freeze{
		Window: "Fri 16:00 - Mon 08:00 Europe/Berlin",
		Until:  time.Date(2025, 6, 2, 8, 0, 0, 0, berlin(t)),
		At:     time.Date(2025, 5, 31, 10, 0, 0, 0, time.UTC),
	}
}

// holidays is a freeze of whole days, open on 2026-12-28, lifting after
// its last day, winter time in Berlin.
func holidays(t *testing.T) *Freeze {
	return &Freeze{
		Window: "2026-12-23 - 2027-01-02 Europe/Berlin",
		Until:  time.Date(2027, 1, 3, 0, 0, 0, 0, berlin(t)),
		At:     time.Date(2026, 12, 28, 9, 0, 0, 0, time.UTC),
		Days:   true,
	}
}

func TestFreezeEnd(t *testing.T) {
	at := time.Date(2025, 5, 31, 10, 0, 0, 0, time.UTC) // a Saturday
	for _, tc := range []struct {
		name string
		f    Freeze
		want string
	}{
		{"weekly, summer time", *weekend(t), "Mon 08:00 CEST (Europe/Berlin)"},
		{"weekly, winter time", Freeze{Until: time.Date(2025, 12, 1, 8, 0, 0, 0, berlin(t)), At: time.Date(2025, 11, 29, 10, 0, 0, 0, time.UTC)}, "Mon 08:00 CET (Europe/Berlin)"},
		{"UTC says its zone once", Freeze{Until: time.Date(2025, 6, 2, 8, 0, 0, 0, time.UTC), At: at}, "Mon 08:00 UTC"},
		{"a zone without an abbreviation", Freeze{Until: time.Date(2025, 6, 2, 8, 0, 0, 0, mustZone(t, "Asia/Dubai")), At: at}, "Mon 08:00 +04 (Asia/Dubai)"},
		{"days are named by date", *holidays(t), "Sun 2027-01-03 00:00 CET (Europe/Berlin)"},
		{"a week or more ahead is named by date", Freeze{Until: time.Date(2025, 6, 7, 10, 0, 0, 0, time.UTC), At: at}, "Sat 2025-06-07 10:00 UTC"},
		{"less than six days ahead is not", Freeze{Until: time.Date(2025, 6, 6, 9, 59, 0, 0, time.UTC), At: at}, "Fri 09:59 UTC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := FreezeEnd(tc.f); got != tc.want {
				t.Errorf("FreezeEnd = %q, want %q", got, tc.want)
			}
		})
	}
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// The replies and the /status table of issue 16: /deploy in an open freeze
// window, by someone below admin and by an admin, and a /deploy written
// before the pull request's newest commit.
func TestFreezeReplyGolden(t *testing.T) {
	lockedAt := time.Date(2025, 5, 31, 9, 0, 0, 0, time.UTC)
	for _, sc := range []struct {
		name string
		r    Reply
	}{
		{"frozen", Reply{CommentID: 17, Commenter: "octocat", Answers: []Answer{
			{Command: "/deploy production", Name: "deploy", Outcome: OutcomeFrozen, Env: "production", Freeze: weekend(t)},
			{Command: "/deploy staging v1.2", Name: "deploy", Outcome: OutcomeFrozen, Env: "staging", Freeze: holidays(t)},
		}}},
		{"freeze-overridden", Reply{CommentID: 18, Commenter: "admin-alice", Answers: []Answer{
			{Command: "/deploy production", Name: "deploy", Outcome: OutcomeDeploying, Env: "production", SHA: newSHA, Ref: "feature/greeting", LogURL: logURL, Freeze: weekend(t)},
			{Command: "/deploy staging", Name: "deploy", Outcome: OutcomeQueuedBehindLock, Env: "staging", SHA: newSHA, Ref: "feature/greeting", LockedBy: "bob", LockReason: "incident 42", LogURL: logURL, Freeze: holidays(t)},
		}}},
		{"head-moved", Reply{CommentID: 19, Commenter: "octocat", Answers: []Answer{
			{Command: "/deploy staging", Name: "deploy", Outcome: OutcomeHeadMoved, Env: "staging", SHA: nextSHA, SeenSHA: newSHA},
			{Command: "/deploy", Name: "deploy", Outcome: OutcomeHeadMoved, Env: "staging", SHA: nextSHA},
		}}},
		{"status-frozen", Reply{CommentID: 20, Commenter: "octocat", Answers: []Answer{
			{Command: "/status", Name: "status", Outcome: OutcomeStatus, Block: StatusTable([]EnvStatus{
				{Env: "production", SHA: newSHA, Ref: "main", By: "alice", At: t0, Freeze: weekend(t),
					Last: []DeployLine{{SHA: newSHA, Ref: "main", By: "alice", Kind: KindPush, State: "success", At: t0}}},
				{Env: "staging", Locked: true, LockedBy: "bob", LockReason: "incident 42", LockedAt: lockedAt, Freeze: holidays(t)},
				{Env: "qa"},
			})},
		}}},
	} {
		t.Run(sc.name, func(t *testing.T) {
			golden(t, filepath.Join("reply", sc.name+".golden"), []byte(ReplyComment(sc.r)))
		})
	}
}

func TestFreezeOutcomesAreRefusals(t *testing.T) {
	for _, o := range []Outcome{OutcomeFrozen, OutcomeHeadMoved} {
		if o.Accepted() {
			t.Errorf("%s is accepted: the refused comment would get 👀", o)
		}
	}
}

// A window as long as a person may write it still fits a table cell on
// one line.
func TestFreezeCellIsOneLine(t *testing.T) {
	f := weekend(t)
	f.Window = strings.Repeat("Fri 16:00 - Mon 08:00 | ", 100)
	table := StatusTable([]EnvStatus{{Env: "production", Freeze: f}})
	if n := strings.Count(table, "\n"); n != 3 {
		t.Errorf("the table has %d lines, want 3:\n%s", n, table)
	}
	row := strings.Split(strings.TrimSuffix(table, "\n"), "\n")[2]
	if strings.Count(row, " | ") != 5 { // between 6 cells: the window's | are escaped
		t.Errorf("the window's | split a cell:\n%s", table)
	}
}
