package report

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestFormatDuration(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{-time.Second, "0s"},
		{300 * time.Microsecond, "0s"},
		{850 * time.Millisecond, "850ms"},
		{999*time.Millisecond + 600*time.Microsecond, "1s"},
		{time.Second, "1s"},
		{41*time.Second + 400*time.Millisecond, "41s"},
		{4*time.Minute + 12*time.Second, "4m12s"},
		{4 * time.Minute, "4m"},
		{time.Hour + 5*time.Minute, "1h5m"},
		{2 * time.Hour, "2h"},
		{time.Hour + 2*time.Second, "1h0m2s"},
	} {
		if got := FormatDuration(tt.d); got != tt.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestFormatTimeIsUTC(t *testing.T) {
	tokyo := time.FixedZone("JST", 9*60*60)
	if got, want := FormatTime(t0.In(tokyo)), "2025-06-01 12:00:00 UTC"; got != want {
		t.Errorf("FormatTime = %q, want %q", got, want)
	}
	if got := FormatTime(time.Time{}); got != "" {
		t.Errorf("FormatTime(zero) = %q, want empty", got)
	}
}

func TestShort(t *testing.T) {
	for in, want := range map[string]string{newSHA: "abc1234", "v1": "v1", "abc1234": "abc1234", "": ""} {
		if got := Short(in); got != want {
			t.Errorf("Short(%q) = %q, want %q", in, got, want)
		}
	}
}

// Progress is the one place the progress line is built; its shape is SPEC §5's.
func TestProgress(t *testing.T) {
	d := production(func(d *Deploy) { d.State = StateInProgress })
	for _, tt := range []struct {
		name    string
		batches []Batch
		done    int
		total   int
		want    string
	}{
		{"before the canary", fleet(), 0, 12, "batch 1 of 4 · 0/12 instances on abc1234"},
		{"canary running", fleet(BatchInstalling), 0, 12, "batch 1 of 4 · 0/12 instances on abc1234"},
		{"after the canary", fleet(BatchDone, BatchDraining), 1, 12, "batch 2 of 4 · 1/12 instances on abc1234"},
		{"the spec's example", fleet(BatchDone, BatchBaking), 3, 12, "batch 2 of 4 · 3/12 instances on abc1234"},
		{"during the last batch", fleet(BatchDone, BatchDone, BatchDone, BatchAdmitting), 9, 12, "batch 4 of 4 · 9/12 instances on abc1234"},
		{"all done", fleet(BatchDone, BatchDone, BatchDone, BatchDone), 12, 12, "4 of 4 batches done · 12/12 instances on abc1234"},
		{"one batch done", []Batch{{State: BatchDone}}, 1, 1, "1 of 1 batch done · 1/1 instances on abc1234"},
		{"nothing to do", nil, 3, 3, "nothing to do · 3/3 instances on abc1234"},
		{"not planned yet", nil, 0, 12, "planning the rollout of abc1234"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := d
			d.Batches, d.Done, d.Total = tt.batches, tt.done, tt.total
			if got := Progress(d); got != tt.want {
				t.Errorf("Progress = %q, want %q", got, tt.want)
			}
		})
	}
	short := production(func(d *Deploy) { d.SHA, d.Batches, d.Done, d.Total = "v1", fleet(BatchDone), 1, 12 })
	if got, want := Progress(short), "batch 2 of 4 · 1/12 instances on v1"; got != want {
		t.Errorf("a short release: Progress = %q, want %q", got, want)
	}
}

func TestFit(t *testing.T) {
	for _, tt := range []struct {
		name, in string
		n        int
		want     string
	}{
		{"fits", "release freeze", 140, "release freeze"},
		{"exactly", "abcde", 5, "abcde"},
		{"cut after a word", "the quick brown fox", 12, "the quick…"},
		{"no dangling punctuation", "alpha, beta, gamma", 14, "alpha, beta…"},
		{"one long word is cut mid-word, with the ellipsis", strings.Repeat("x", 20), 10, "xxxxxxxxx…"},
		{"a short first word is not a boundary worth keeping", "a " + strings.Repeat("y", 20), 10, "a yyyyyyy…"},
		{"runes, not bytes", "ééééé ééééé", 8, "ééééé…"},
		{"n of 1", "abc", 1, "…"},
		{"n of 0", "abc", 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := fit(tt.in, tt.n)
			if got != tt.want {
				t.Errorf("fit(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
			if n := utf8.RuneCountInString(got); n > max(tt.n, 0) {
				t.Errorf("fit(%q, %d) has %d characters", tt.in, tt.n, n)
			}
		})
	}
}

// FuzzFit: whatever the text, a cut is at most n characters, valid UTF-8,
// ends in "…", and keeps a prefix of the original.
func FuzzFit(f *testing.F) {
	f.Add("Queued behind the lock on production held by @alice: release freeze", 40)
	f.Add(strings.Repeat("word ", 60), 140)
	f.Add("日本語のテキスト 日本語のテキスト", 7)
	f.Fuzz(func(t *testing.T, s string, n int) {
		if !utf8.ValidString(s) || n < 1 || n > 500 {
			t.Skip()
		}
		got := fit(s, n)
		if utf8.RuneCountInString(got) > n || !utf8.ValidString(got) {
			t.Fatalf("fit(%q, %d) = %q", s, n, got)
		}
		if got == s {
			return
		}
		kept, ok := strings.CutSuffix(got, "…")
		if !ok || !strings.HasPrefix(s, kept) {
			t.Fatalf("fit(%q, %d) = %q: not a prefix and an ellipsis", s, n, got)
		}
	})
}

func TestMarkdownEscaping(t *testing.T) {
	if got, want := code("a`b"), "`` a`b ``"; got != want {
		t.Errorf("code = %q, want %q", got, want)
	}
	if got, want := md("x <!-- y\nz"), "x &lt;!-- y z"; got != want {
		t.Errorf("md = %q, want %q", got, want)
	}
	if got, want := link("a]b", "https://x/a b(c)"), `[a\]b](https://x/a%20b%28c%29)`; got != want {
		t.Errorf("link = %q, want %q", got, want)
	}
	// A pipe or a newline in an instance name must not break the table.
	d := production(func(d *Deploy) {
		d.State, d.Batches = StateInProgress, []Batch{{Zone: "a|b", Instances: []string{"x|y", "z\nw"}, State: BatchInstalling}}
	})
	for _, line := range strings.Split(strings.TrimSpace(CheckRun(d).Text), "\n")[2:] {
		if cells := strings.Count(strings.ReplaceAll(line, `\|`, ""), "|"); cells != 6 {
			t.Errorf("row %q has %d unescaped pipes, want 6", line, cells)
		}
	}
}

func TestDeliverySummary(t *testing.T) {
	for _, tc := range []struct {
		d    Delivery
		want string
	}{
		{Delivery{Days: 30, Deploys: 1}, "1 deploy in 30 days · none failed"},
		{Delivery{Days: 30, Deploys: 12, Failures: 3, Restores: 2, Restore: 90 * time.Second},
			"12 deploys in 30 days · 25% failed or rolled back · restored in 1m30s (median)"},
		{Delivery{Days: 30, Deploys: 2, Failures: 2}, "2 deploys in 30 days · 100% failed or rolled back"},
		{Delivery{Days: 30, Deploys: 4, LeadTimes: 3, LeadTime: 2*time.Hour + 5*time.Minute},
			"4 deploys in 30 days · none failed · commit to live in 2h5m (median)"},
	} {
		if got := DeliverySummary(tc.d); got != tc.want {
			t.Errorf("DeliverySummary(%+v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
