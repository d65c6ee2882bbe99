package store_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/shipbot/shipbot/internal/store/record"
)

// recent is a moment within the audit log's retention, which t0 is not.
var recent = time.Now().UTC().Add(-48 * time.Hour).Truncate(time.Second)

var auditIDPattern = regexp.MustCompile(`^\d{8}T\d{6}\.\d{6}Z-\d{12}$`)

var auditCases = []conformanceCase{
	{name: "AuditAppendsAndLists", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		in := record.AuditEntry{
			At: recent.In(time.FixedZone("CET", 3600)).Add(123456789 * time.Nanosecond), Actor: "octocat",
			Repo: "octo/app", Env: "production", Action: record.ActionDeployFinished, Outcome: record.OutcomeFailure,
			Text: "batch 2 of 3: i-0abc health timed out — ünïcödé", Link: "https://bot.example.com/deploys/dep-1",
		}
		got := mustAppend(t, f.s, in)
		want := in
		want.At = recent.Add(123456 * time.Microsecond)
		want.ID = got.ID
		if !auditIDPattern.MatchString(got.ID) || !strings.HasPrefix(got.ID, want.At.Format("20060102T150405.000000Z")) {
			t.Errorf("ID %q is not the entry's time and a sequence", got.ID)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("AppendAudit returned\n %+v\nwant\n %+v", got, want)
		}
		page, err := f.s.ListAudit(ctx, record.AuditFilter{})
		if err != nil || page.Next != "" || !reflect.DeepEqual(page.Entries, []record.AuditEntry{want}) {
			t.Errorf("ListAudit = %+v, %v; want the entry alone", page, err)
		}

		// At defaults to now; IDs grow.
		before := time.Now()
		now := mustAppend(t, f.s, audit("shipbot", "", "", time.Time{}))
		if now.At.Before(before.Add(-time.Second)) || now.At.After(time.Now().Add(time.Second)) || now.At.Location() != time.UTC {
			t.Errorf("At = %v, want about now in UTC", now.At)
		}
		if now.ID <= got.ID {
			t.Errorf("a later entry's ID %q is not above %q", now.ID, got.ID)
		}

		// A long text keeps its start, whole characters, and says it was cut.
		long := mustAppend(t, f.s, record.AuditEntry{Actor: "octocat", Repo: "octo/app", Action: record.ActionConfigError,
			Outcome: record.OutcomeError, Text: strings.Repeat("é", record.MaxAuditText)})
		if len(long.Text) > record.MaxAuditText || !utf8.ValidString(long.Text) || !strings.HasPrefix(long.Text, "éé") || !strings.HasSuffix(long.Text, "…") {
			t.Errorf("a long text was kept as %d bytes: %q...", len(long.Text), long.Text[:10])
		}
		all := allAudit(t, f.s, record.AuditFilter{})
		if len(all) != 3 || all[0] != long {
			t.Errorf("EachAudit = %d entries, newest %+v", len(all), all[0])
		}
	}},

	{name: "AuditEntryIsValidated", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		ok := audit("octocat", "octo/app", "production", recent)
		for name, change := range map[string]func(e *record.AuditEntry){
			"an ID":               func(e *record.AuditEntry) { e.ID = "mine" },
			"no actor":            func(e *record.AuditEntry) { e.Actor = "" },
			"control actor":       func(e *record.AuditEntry) { e.Actor = "a\nb" },
			"unknown action":      func(e *record.AuditEntry) { e.Action = "deployed" },
			"unknown outcome":     func(e *record.AuditEntry) { e.Outcome = "ok" },
			"bad repo":            func(e *record.AuditEntry) { e.Repo = "octo" },
			"env without repo":    func(e *record.AuditEntry) { e.Repo = "" },
			"control env":         func(e *record.AuditEntry) { e.Env = "a\x00b" },
			"link not http":       func(e *record.AuditEntry) { e.Link = "javascript:alert(1)" },
			"link not absolute":   func(e *record.AuditEntry) { e.Link = "/deploys/1" },
			"time past year 9999": func(e *record.AuditEntry) { e.At = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		} {
			e := ok
			change(&e)
			if _, err := f.s.AppendAudit(ctx, e); err == nil || errors.Is(err, record.ErrUnavailable) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s: AppendAudit = %v, want a one-line validation error", name, err)
			}
		}
		if all := allAudit(t, f.s, record.AuditFilter{}); len(all) != 0 {
			t.Errorf("refused entries were kept: %+v", all)
		}
		for _, action := range record.AuditActions() {
			e := ok
			e.Action = action
			mustAppend(t, f.s, e)
		}
		for _, outcome := range record.AuditOutcomes() {
			e := ok
			e.Outcome = outcome
			mustAppend(t, f.s, e)
		}
	}},

	{name: "AuditFilters", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		var log []record.AuditEntry // in the order appended
		actors := []string{"octocat", "hubot", record.ActorShipbot}
		repos := []string{"octo/app", "octo/other", ""}
		for i := range 60 {
			repo := repos[i%3]
			env := []string{"production", "staging", ""}[i/3%3]
			if repo == "" {
				env = ""
			}
			// Out of time order, and some in the same millisecond.
			at := recent.Add(time.Duration((i*37)%60/2) * time.Minute).Add(time.Duration(i%2) * time.Microsecond)
			log = append(log, mustAppend(t, f.s, audit(actors[i/2%3], repo, env, at)))
		}
		at := func(i int) time.Time { return recent.Add(time.Duration(i) * time.Minute) }
		for _, flt := range []record.AuditFilter{
			{},
			{Repo: "octo/app"},
			{Repo: "octo/none"},
			{Env: "production"},
			{Actor: "hubot"},
			{Actor: "nobody"},
			{Repo: "octo/app", Env: "staging"},
			{Repo: "octo/other", Actor: "octocat"},
			{Env: "production", Actor: record.ActorShipbot},
			{Since: at(10)},
			{Before: at(10)},
			{Since: at(10), Before: at(20)},
			{Since: at(10).Add(time.Nanosecond), Before: at(20).Add(time.Nanosecond)},
			{Repo: "octo/app", Env: "production", Actor: "octocat", Since: at(5), Before: at(25)},
			{Limit: 7},
			{Actor: "hubot", Limit: 5},
			{Since: recent.Add(time.Hour)},
			{Before: recent},
		} {
			want := expectAudit(log, flt)
			if flt.Limit > 0 {
				want = want[:min(flt.Limit, len(want))]
			}
			got := allAudit(t, f.s, flt)
			if !slices.Equal(auditIDs(got), auditIDs(want)) {
				t.Errorf("EachAudit(%s): %s", describe(flt), diffIDs(auditIDs(got), auditIDs(want)))
			}
			page, err := f.s.ListAudit(ctx, flt)
			wantPage := want[:min(len(want), cmp.Or(flt.Limit, record.AuditPageDefault))]
			if err != nil || !slices.Equal(auditIDs(page.Entries), auditIDs(wantPage)) {
				t.Errorf("ListAudit(%s) = %v, %v; want %v", describe(flt), auditIDs(page.Entries), err, auditIDs(wantPage))
			}
		}
		// Since is inclusive, Before exclusive, at the entry's own time.
		one := log[17]
		if got := allAudit(t, f.s, record.AuditFilter{Since: one.At, Before: one.At.Add(time.Microsecond)}); !slices.Contains(auditIDs(got), one.ID) {
			t.Errorf("Since = an entry's At left it out")
		}
		if got := allAudit(t, f.s, record.AuditFilter{Before: one.At}); slices.Contains(auditIDs(got), one.ID) {
			t.Errorf("Before = an entry's At kept it")
		}
	}},

	{name: "AuditPagesWithoutGapsOrDuplicates", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		var log []record.AuditEntry
		for i := range 137 {
			// Runs of seven in the same microsecond, across two repositories.
			at := recent.Add(time.Duration(i/7) * time.Millisecond)
			log = append(log, mustAppend(t, f.s, audit("octocat", []string{"octo/app", "octo/other"}[i%2], "production", at)))
		}
		for _, flt := range []record.AuditFilter{{Limit: 10}, {Limit: 7, Repo: "octo/app"}, {Limit: 1, Actor: "octocat"}, {Limit: 9, Since: recent.Add(3 * time.Millisecond)}} {
			want := expectAudit(log, flt) // before the entry appended between pages
			var got []string
			pages := 0
			for {
				page, err := f.s.ListAudit(ctx, flt)
				if err != nil {
					t.Fatalf("ListAudit(%s): %v", describe(flt), err)
				}
				pages++
				got = append(got, auditIDs(page.Entries)...)
				if page.Next == "" {
					break
				}
				if pages > len(want) {
					t.Fatalf("ListAudit(%s): %d pages and no end", describe(flt), pages)
				}
				if len(page.Entries) != flt.Limit {
					t.Fatalf("ListAudit(%s): a page of %d before the last", describe(flt), len(page.Entries))
				}
				if pages == 2 {
					// A newer entry between pages shows on none of the later ones.
					log = append(log, mustAppend(t, f.s, audit("octocat", "octo/app", "production", time.Time{})))
				}
				flt.Cursor = page.Next
			}
			if !slices.Equal(got, auditIDs(want)) {
				t.Errorf("pages of %s: %s", describe(flt), diffIDs(got, auditIDs(want)))
			}
			if wantPages := (len(want) + flt.Limit - 1) / flt.Limit; pages != max(wantPages, 1) {
				t.Errorf("pages of %s: %d, want %d", describe(flt), pages, wantPages)
			}
		}
		// The default page is record.AuditPageDefault entries.
		page, err := f.s.ListAudit(ctx, record.AuditFilter{})
		if err != nil || len(page.Entries) != record.AuditPageDefault || page.Next != page.Entries[len(page.Entries)-1].ID {
			t.Errorf("default page: %d entries, next %q, %v", len(page.Entries), page.Next, err)
		}
	}},

	{name: "AuditFilterErrorsSayWhatToDo", run: func(t *testing.T, f *fixture) {
		ctx := context.Background()
		mustAppend(t, f.s, audit("octocat", "octo/app", "production", recent))
		for _, c := range []struct {
			flt  record.AuditFilter
			says string
		}{
			{record.AuditFilter{Repo: "octo"}, "write it as owner/name"},
			{record.AuditFilter{Limit: record.AuditPageMax + 1}, fmt.Sprintf("ask for %d or fewer", record.AuditPageMax)},
			{record.AuditFilter{Limit: -1}, "ask for 1 to"},
			{record.AuditFilter{Since: recent, Before: recent}, "pick a since earlier"},
			{record.AuditFilter{Cursor: "page-2"}, "start again from the first page"},
			{record.AuditFilter{Cursor: "20261301T000000.000000Z-000000000001"}, "start again from the first page"},
		} {
			_, err := f.s.ListAudit(ctx, c.flt)
			if err == nil || errors.Is(err, record.ErrUnavailable) || !strings.Contains(err.Error(), c.says) || strings.Contains(err.Error(), "\n") {
				t.Errorf("ListAudit(%s) = %v; want one line saying %q", describe(c.flt), err, c.says)
			}
			if c.flt.Limit > record.AuditPageMax {
				continue // EachAudit has no page to bound
			}
			called := false
			err = f.s.EachAudit(ctx, c.flt, func(record.AuditEntry) error { called = true; return nil })
			if err == nil || called {
				t.Errorf("EachAudit(%s) = %v, called %v; want the error and no entries", describe(c.flt), err, called)
			}
		}
	}},

	{name: "AuditNewestFirstWithinAMillisecond", run: func(t *testing.T, f *fixture) {
		var appended []string
		for range 120 {
			appended = append(appended, mustAppend(t, f.s, audit("octocat", "octo/app", "production", recent)).ID)
		}
		for range 120 { // now: many fall in one millisecond
			appended = append(appended, mustAppend(t, f.s, audit("octocat", "octo/app", "", time.Time{})).ID)
		}
		if !slices.IsSorted(appended) {
			t.Errorf("IDs do not grow in the order of appends: %v", appended)
		}
		slices.Reverse(appended)
		for _, flt := range []record.AuditFilter{{}, {Repo: "octo/app"}} {
			if got := auditIDs(allAudit(t, f.s, flt)); !slices.Equal(got, appended) {
				t.Errorf("EachAudit(%s) is not the reverse of the order of appends: %s", describe(flt), diffIDs(got, appended))
			}
		}
	}},

	{name: "AuditTrimsPast400Days", run: func(t *testing.T, f *fixture) {
		now := time.Now()
		mustAppend(t, f.s, audit("octocat", "octo/app", "production", now.Add(-record.AuditRetention-time.Hour)))
		agedOther := mustAppend(t, f.s, audit("hubot", "octo/other", "", now.Add(-record.AuditRetention-time.Minute)))
		// An entry stays until the next append, which removes what aged.
		if got := auditIDs(allAudit(t, f.s, record.AuditFilter{})); !slices.Equal(got, []string{agedOther.ID}) {
			t.Errorf("after two aged appends the log is %v, want the last alone", got)
		}
		kept := mustAppend(t, f.s, audit("octocat", "octo/app", "production", now.Add(-record.AuditRetention+time.Hour)))
		fresh := mustAppend(t, f.s, audit("octocat", "octo/app", "staging", time.Time{}))
		for _, flt := range []record.AuditFilter{{}, {Repo: "octo/app"}, {Env: "production"}} {
			want := auditIDs(expectAudit([]record.AuditEntry{kept, fresh}, flt))
			if got := auditIDs(allAudit(t, f.s, flt)); !slices.Equal(got, want) {
				t.Errorf("EachAudit(%s) after trimming = %v, want %v", describe(flt), got, want)
			}
		}
		if got := allAudit(t, f.s, record.AuditFilter{Repo: "octo/other"}); len(got) != 0 {
			t.Errorf("a trimmed entry is still listed for its repository: %v", auditIDs(got))
		}
	}},

	{name: "AuditConcurrentAppendsLoseNothing", run: func(t *testing.T, f *fixture) {
		const writers, each = 8, 25
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					e := audit(fmt.Sprintf("w%d", w), "octo/app", "production", time.Time{})
					e.Text = fmt.Sprint(i)
					if _, err := f.s.AppendAudit(context.Background(), e); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		all := allAudit(t, f.s, record.AuditFilter{})
		if len(all) != writers*each {
			t.Fatalf("%d entries after %d appends", len(all), writers*each)
		}
		seen := map[string]bool{}
		next := map[string]int{} // per writer, the Text expected next, newest first
		for w := range writers {
			next[fmt.Sprintf("w%d", w)] = each - 1
		}
		for _, e := range all {
			if seen[e.ID] {
				t.Errorf("ID %s twice", e.ID)
			}
			seen[e.ID] = true
			if e.Text != fmt.Sprint(next[e.Actor]) {
				t.Errorf("%s's entry %s came where %d was due", e.Actor, e.Text, next[e.Actor])
			}
			next[e.Actor]--
		}
	}},

	{name: "AuditStreamsAcrossBatches", run: func(t *testing.T, f *fixture) {
		// More entries than one read fetches (a thousand), so the walk
		// carries on from batch to batch, with filters checked after the
		// read and without.
		var log []record.AuditEntry
		for i := range 2100 {
			e := audit([]string{"octocat", "hubot", "shipbot"}[i%3], "octo/app", []string{"production", "staging"}[i%2], recent.Add(time.Duration(i/5)*time.Millisecond))
			log = append(log, mustAppend(t, f.s, e))
		}
		for _, flt := range []record.AuditFilter{{}, {Repo: "octo/app"}, {Actor: "hubot"}, {Env: "staging"}, {Limit: 1500}, {Actor: "octocat", Limit: 600}} {
			want := expectAudit(log, flt)
			if flt.Limit > 0 {
				want = want[:min(flt.Limit, len(want))]
			}
			if got := auditIDs(allAudit(t, f.s, flt)); !slices.Equal(got, auditIDs(want)) {
				t.Errorf("EachAudit(%s): %s", describe(flt), diffIDs(got, auditIDs(want)))
			}
		}
	}},

	{name: "AuditEachStopsWhenTold", run: func(t *testing.T, f *fixture) {
		for range 12 {
			mustAppend(t, f.s, audit("octocat", "octo/app", "", recent))
		}
		stop := errors.New("client went away")
		calls := 0
		err := f.s.EachAudit(context.Background(), record.AuditFilter{}, func(record.AuditEntry) error {
			if calls++; calls == 5 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || calls != 5 {
			t.Errorf("EachAudit = %v after %d calls; want fn's error after 5", err, calls)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := f.s.EachAudit(ctx, record.AuditFilter{}, func(record.AuditEntry) error { return nil }); !errors.Is(err, context.Canceled) {
			t.Errorf("EachAudit with a cancelled context = %v", err)
		}
	}},

	{name: "AuditSurvivesRestart", needsRestart: true, run: func(t *testing.T, f *fixture) {
		var before []record.AuditEntry
		for i := range 3 {
			before = append(before, mustAppend(t, f.s, audit("octocat", "octo/app", "production", recent.Add(time.Duration(i)*time.Second))))
		}
		s := f.restart(t)
		slices.Reverse(before)
		if got := allAudit(t, s, record.AuditFilter{Repo: "octo/app"}); !reflect.DeepEqual(got, before) {
			t.Errorf("after restart EachAudit = %+v, want %+v", got, before)
		}
		// The sequence carries on: an entry in the same microsecond as the
		// newest comes after it.
		again := mustAppend(t, s, audit("octocat", "octo/app", "production", before[0].At))
		if again.ID <= before[0].ID {
			t.Errorf("ID after restart %s, want above %s", again.ID, before[0].ID)
		}
	}},
}

func audit(actor, repo, env string, at time.Time) record.AuditEntry {
	return record.AuditEntry{At: at, Actor: actor, Repo: repo, Env: env, Action: record.ActionDeployStarted,
		Outcome: record.OutcomeSuccess, Text: "rolling out abc1234", Link: "https://bot.example.com/deploys/d1"}
}

func mustAppend(t *testing.T, s api, e record.AuditEntry) record.AuditEntry {
	t.Helper()
	got, err := s.AppendAudit(context.Background(), e)
	if err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	return got
}

func allAudit(t *testing.T, s api, f record.AuditFilter) []record.AuditEntry {
	t.Helper()
	var out []record.AuditEntry
	if err := s.EachAudit(context.Background(), f, func(e record.AuditEntry) error { out = append(out, e); return nil }); err != nil {
		t.Fatalf("EachAudit(%s): %v", describe(f), err)
	}
	return out
}

// expectAudit is what f picks from log (entries in the order appended),
// newest first, worked out without the store's IDs: by At, then by the
// order of appends.
func expectAudit(log []record.AuditEntry, f record.AuditFilter) []record.AuditEntry {
	var out []record.AuditEntry
	for i := len(log) - 1; i >= 0; i-- {
		e := log[i]
		if (f.Repo == "" || e.Repo == f.Repo) && (f.Env == "" || e.Env == f.Env) && (f.Actor == "" || e.Actor == f.Actor) &&
			(f.Since.IsZero() || !e.At.Before(f.Since)) && (f.Before.IsZero() || e.At.Before(f.Before)) {
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b record.AuditEntry) int { return b.At.Compare(a.At) })
	return out
}

func auditIDs(es []record.AuditEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

func describe(f record.AuditFilter) string {
	var parts []string
	for _, kv := range [][2]string{{"repo", f.Repo}, {"env", f.Env}, {"actor", f.Actor}, {"cursor", f.Cursor}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	if !f.Since.IsZero() {
		parts = append(parts, "since="+f.Since.Sub(recent).String())
	}
	if !f.Before.IsZero() {
		parts = append(parts, "before="+f.Before.Sub(recent).String())
	}
	if f.Limit != 0 {
		parts = append(parts, fmt.Sprint("limit=", f.Limit))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// diffIDs says briefly how got differs from want.
func diffIDs(got, want []string) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	at := func(ids []string) string {
		if i < len(ids) {
			return ids[i]
		}
		return "the end"
	}
	return fmt.Sprintf("%d IDs, want %d; first difference at %d: %s, want %s", len(got), len(want), i, at(got), at(want))
}
