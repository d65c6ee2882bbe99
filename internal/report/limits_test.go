package report

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// long is n words of text, for reasons and names that do not fit.
func long(word string, n int) string { return strings.TrimSpace(strings.Repeat(word+" ", n)) }

// TestDescriptionLimit: every description is one line of at most 140
// characters; one that had to be cut ends its cut in "…" after a whole
// word, and keeps what comes after the cut (the release).
func TestDescriptionLimit(t *testing.T) {
	reason := long("production-3 failed /healthz with 503 Service Unavailable", 8)
	cases := []struct {
		name     string
		d        Deploy
		suffix   string // must survive the cut
		cutWords string // the text that was cut; the kept part must end on one of its word boundaries
	}{
		{"lock reason", production(func(d *Deploy) {
			d.State, d.LockedBy, d.LockReason = StateLocked, "alice", reason
		}), "", reason},
		{"failure reason", production(func(d *Deploy) {
			d.State, d.Reason, d.RolledBack = StateFailure, reason, []string{"production-3"}
		}), " on abc1234", reason},
		{"failure without rollback", production(func(d *Deploy) { d.State, d.Reason = StateFailure, reason }), " on abc1234", reason},
		{"error reason", production(func(d *Deploy) { d.State, d.Reason = StateError, reason }), "", reason},
		{"rolling back", production(func(d *Deploy) {
			d.State, d.Reason, d.Batches = StateInProgress, reason, fleet(BatchRollingBack, BatchFailed)
		}), "", reason},
		{"preview failure", production(func(d *Deploy) { d.Kind, d.State, d.Reason = KindPreview, StateFailure, reason }), "", reason},
		{"many checks", production(func(d *Deploy) {
			d.State = StateWaitingForChecks
			for i := range 40 {
				d.WaitingOn = append(d.WaitingOn, fmt.Sprintf("ci/integration-suite-%02d", i))
			}
		}), " more", ""},
		{"one enormous check", production(func(d *Deploy) {
			d.State, d.WaitingOn = StateWaitingForChecks, []string{long("check", 60), "lint"}
		}), " and 1 more", long("check", 60)},
		{"an enormous environment name", production(func(d *Deploy) {
			d.State, d.Env = StateQueued, strings.Repeat("e", 300)
		}), "", ""},
		{"a reason with newlines", production(func(d *Deploy) {
			d.State, d.Reason = StateError, "install failed:\n\n"+long("line", 50)
		}), "", ""},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			got := Status(tt.d).Description
			if n := utf8.RuneCountInString(got); n > MaxDescription {
				t.Fatalf("%d characters: %q", n, got)
			}
			if strings.ContainsAny(got, "\n\r\t") || !utf8.ValidString(got) {
				t.Fatalf("not one valid line: %q", got)
			}
			if !strings.Contains(got, "…") && !strings.HasSuffix(got, " more") {
				t.Fatalf("no ellipsis in a cut description: %q", got)
			}
			if !strings.HasSuffix(got, tt.suffix) {
				t.Errorf("%q lost its end %q", got, tt.suffix)
			}
			if tt.cutWords != "" {
				before, _, _ := strings.Cut(got, "…")
				last := before[strings.LastIndexAny(before, " :")+1:]
				if !strings.Contains(" "+tt.cutWords+" ", " "+last+" ") {
					t.Errorf("%q: cut mid-word (%q is not a whole word of the text)", got, last)
				}
			}
			if Status(tt.d).Description != CheckRun(tt.d).Title {
				t.Errorf("the description and the check run's title differ")
			}
		})
	}
	// What fits is never touched.
	for _, sc := range deployScenarios {
		if got := Status(sc.d).Description; strings.Contains(got, "…") {
			t.Errorf("%s: %q was cut", sc.name, got)
		}
	}
}

// huge is a deploy whose every list and text is far past GitHub's limits.
func huge() Deploy {
	d := production(func(d *Deploy) {
		d.State, d.StartedAt, d.FinishedAt = StateFailure, t0, at(time.Hour)
		d.Reason = strings.Repeat("a very long reason ", 10000)
		d.FailedInstance = "web-1000-0"
	})
	for i := range 2000 {
		b := Batch{Index: i, Canary: i == 0, Zone: strings.Repeat("z", 1000), State: BatchRolledBack, Started: t0, Finished: at(time.Second)}
		for j := range 20 {
			id := fmt.Sprintf("web-%d-%d", i, j)
			b.Instances = append(b.Instances, id)
			d.RolledBack = append(d.RolledBack, id)
		}
		d.Batches = append(d.Batches, b)
		d.Notes = append(d.Notes, strings.Repeat("note ", 1000))
	}
	d.Total = 40000
	return d
}

func TestCheckRunLimits(t *testing.T) {
	cr := CheckRun(huge())
	for name, s := range map[string]string{"summary": cr.Summary, "text": cr.Text} {
		if len(s) > MaxCheckRunText {
			t.Errorf("%s is %d bytes, over %d", name, len(s), MaxCheckRunText)
		}
		if !utf8.ValidString(s) {
			t.Errorf("%s is not valid UTF-8", name)
		}
	}
	if !strings.Contains(cr.Text, "**web-1000-0** (failed)") {
		t.Errorf("the failed batch is not in the table:\n%s", cr.Text)
	}
	if rows := strings.Count(cr.Text, "\n| ") - 2; rows != maxTableRows { // less the header and its rule
		t.Errorf("%d table rows, want %d", rows, maxTableRows)
	}
	if !strings.Contains(cr.Summary, "and 1980 more notes") || !strings.Contains(cr.Summary, "and 39990 more") {
		t.Errorf("the summary does not say what it left out:\n%s", cr.Summary)
	}
}

// TestTableByteLimit: rows wide enough that 30 of them pass GitHub's limit
// end the table early with a "… N more batches" row, still a valid table.
func TestTableByteLimit(t *testing.T) {
	wide := strings.Repeat("🚀", maxName) // 4 bytes a character
	d := production(func(d *Deploy) { d.State = StateInProgress })
	for i := range 30 {
		b := Batch{Index: i, Zone: wide, State: BatchPending}
		for j := range maxCellNames {
			b.Instances = append(b.Instances, fmt.Sprintf("%s-%d-%d", wide, i, j))
		}
		d.Batches = append(d.Batches, b)
	}
	text := CheckRun(d).Text
	if len(text) > MaxCheckRunText {
		t.Fatalf("text is %d bytes", len(text))
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "| … | | … ") || !strings.Contains(last, "more batches") {
		t.Fatalf("the table does not end with a \"… N more batches\" row: %q", last)
	}
	if strings.Contains(text, "cut to fit") {
		t.Errorf("the table was clipped instead of ending on a row")
	}
	for _, l := range lines[2:] {
		if !strings.HasPrefix(l, "| ") || !strings.HasSuffix(l, " |") {
			t.Errorf("not a table row: %.60q", l)
		}
	}
}

func TestPreviewCommentLimits(t *testing.T) {
	p := Preview{SHA: newSHA, URL: "https://" + strings.Repeat("x", 70000), State: PreviewFailed, Reason: strings.Repeat("r ", 50000)}
	if got := PreviewComment(p); len(got) > MaxCommentBody || !strings.HasPrefix(got, PreviewMarker+"\n") {
		t.Errorf("comment of %d bytes, starting %.40q", len(got), got)
	}
}

// TestDeterministic: the same snapshot renders to the same bytes, twice, and
// whatever the time zone its times came in; a copy renders the same as the
// original. The bot compares what it would write with what it wrote.
func TestDeterministic(t *testing.T) {
	tokyo := time.FixedZone("JST", 9*60*60)
	inTokyo := func(ts ...*time.Time) {
		for _, t := range ts {
			*t = t.In(tokyo)
		}
	}
	for _, sc := range append(deployScenarios, struct {
		name string
		d    Deploy
	}{"huge", huge()}) {
		t.Run(sc.name, func(t *testing.T) {
			first, second := everything(sc.d), everything(sc.d)
			if !reflect.DeepEqual(first, second) {
				t.Fatal("two renderings differ")
			}
			d := sc.d
			d.Batches = append([]Batch(nil), d.Batches...)
			inTokyo(&d.StartedAt, &d.FinishedAt)
			for i := range d.Batches {
				inTokyo(&d.Batches[i].Started, &d.Batches[i].Finished)
			}
			if !reflect.DeepEqual(first, everything(d)) {
				t.Error("rendering depends on the time zone")
			}
		})
	}
	for _, sc := range previewScenarios {
		p := sc.p
		p.UpdatedAt = p.UpdatedAt.In(tokyo)
		first, second := PreviewComment(sc.p), PreviewComment(sc.p)
		if first != second || first != PreviewComment(p) {
			t.Errorf("%s: preview comment not deterministic", sc.name)
		}
	}
}

func everything(d Deploy) []any { return []any{Status(d), CheckRun(d), Progress(d)} }

func TestPreviewComment(t *testing.T) {
	for _, sc := range previewScenarios {
		got := PreviewComment(sc.p)
		if !strings.HasPrefix(got, PreviewMarker+"\n") {
			t.Errorf("%s: does not start with the marker: %.60q", sc.name, got)
		}
		if strings.Count(got, PreviewMarker) != 1 {
			t.Errorf("%s: the marker appears more than once", sc.name)
		}
		torn := sc.p.State == PreviewTornDown
		if torn != strings.Contains(got, "Preview torn down.") {
			t.Errorf("%s: \"Preview torn down.\" present = %v", sc.name, !torn)
		}
		if torn && strings.Contains(got, sc.p.URL) {
			t.Errorf("%s: a torn-down preview still links to %s", sc.name, sc.p.URL)
		}
	}
	// A reason cannot smuggle in a second marker, or hide the rest in an HTML comment.
	got := PreviewComment(Preview{SHA: newSHA, State: PreviewFailed, Reason: PreviewMarker + " <!-- x"})
	if strings.Count(got, PreviewMarker) != 1 || strings.Count(got, "<!--") != 1 {
		t.Errorf("reason not escaped:\n%s", got)
	}
}

func TestTornDownPreviewHasNoEnvironmentURL(t *testing.T) {
	for _, sc := range deployScenarios {
		st := Status(sc.d)
		if gone := sc.d.Kind == KindPreview && sc.d.State == StateInactive; gone != (st.EnvironmentURL == "") {
			t.Errorf("%s: environment_url %q", sc.name, st.EnvironmentURL)
		}
	}
}

// Every state has a GitHub deployment state and check-run status GitHub accepts.
func TestStatesMapOntoGitHub(t *testing.T) {
	deployment := map[string]bool{"queued": true, "in_progress": true, "success": true, "failure": true, "error": true, "inactive": true}
	conclusion := map[string]bool{"success": true, "failure": true, "cancelled": true, "neutral": true}
	for _, s := range []State{StateQueued, StateWaitingForChecks, StateLocked, StateSuperseded, StateInProgress, StateSuccess, StateFailure, StateError, StateInactive, StateCancelled, "bogus"} {
		d := production(func(d *Deploy) { d.State = s })
		if st := Status(d).State; !deployment[st] {
			t.Errorf("%s: deployment state %q", s, st)
		}
		cr := CheckRun(d)
		switch cr.Status {
		case "queued", "in_progress":
			if cr.Conclusion != "" {
				t.Errorf("%s: %s with conclusion %q", s, cr.Status, cr.Conclusion)
			}
		case "completed":
			if !conclusion[cr.Conclusion] {
				t.Errorf("%s: conclusion %q", s, cr.Conclusion)
			}
		default:
			t.Errorf("%s: check run status %q", s, cr.Status)
		}
	}
}
