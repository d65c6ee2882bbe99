package repoconfig

import (
	"strings"
	"testing"
	"time"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestFreezeOpensAndCloses: weekly windows are wall-clock times in their
// zone, so Europe/Berlin's Fri 16:00 - Mon 08:00 opens at 15:00 UTC in
// winter and 14:00 UTC in summer, and closes on the right instant across
// both summer-time changes of 2026 (29 March, 25 October).
func TestFreezeOpensAndCloses(t *testing.T) {
	weekend := "Fri 16:00 - Mon 08:00 Europe/Berlin"
	for _, tc := range []struct {
		name, window, at string
		open             bool
		until            string
	}{
		{"spring: the minute before", weekend, "2026-03-27T14:59:00Z", false, ""},
		{"spring: opens at 16:00 CET", weekend, "2026-03-27T15:00:00Z", true, "2026-03-30T06:00:00Z"},
		{"spring: Sunday 02:30, a time that does not exist", weekend, "2026-03-29T00:30:00Z", true, "2026-03-30T06:00:00Z"},
		{"spring: still open at 07:59 CEST", weekend, "2026-03-30T05:59:00Z", true, "2026-03-30T06:00:00Z"},
		{"spring: closed at 08:00 CEST", weekend, "2026-03-30T06:00:00Z", false, ""},
		{"autumn: the minute before 16:00 CEST", weekend, "2026-10-23T13:59:00Z", false, ""},
		{"autumn: opens at 16:00 CEST", weekend, "2026-10-23T14:00:00Z", true, "2026-10-26T07:00:00Z"},
		{"autumn: the repeated hour", weekend, "2026-10-25T00:30:00Z", true, "2026-10-26T07:00:00Z"},
		{"autumn: still open at 07:59 CET", weekend, "2026-10-26T06:59:00Z", true, "2026-10-26T07:00:00Z"},
		{"autumn: closed at 08:00 CET", weekend, "2026-10-26T07:00:00Z", false, ""},
		{"midweek", weekend, "2026-10-28T12:00:00Z", false, ""},
		{"no zone is UTC", "Fri 16:00 - Mon 08:00", "2026-03-27T16:00:00Z", true, "2026-03-30T08:00:00Z"},
		{"no zone: closed an hour before", "Fri 16:00 - Mon 08:00", "2026-03-27T15:59:59Z", false, ""},
		{"within one day", "Wed 12:00 - Wed 13:00", "2026-12-02T12:30:00Z", true, "2026-12-02T13:00:00Z"},
		{"within one day, after", "Wed 12:00 - Wed 13:00", "2026-12-02T13:00:00Z", false, ""},
		{"to the end of Sunday", "Sat 00:00 - Sun 24:00", "2026-12-06T23:59:00Z", true, "2026-12-07T00:00:00Z"},
		{"full day names", "friday 16:00 - monday 8:00", "2026-12-06T10:00:00Z", true, "2026-12-07T08:00:00Z"},
		{"days: before the first", "2026-12-23 - 2027-01-02", "2026-12-22T23:59:59Z", false, ""},
		{"days: the first midnight", "2026-12-23 - 2027-01-02", "2026-12-23T00:00:00Z", true, "2027-01-03T00:00:00Z"},
		{"days: the last day is inclusive", "2026-12-23 - 2027-01-02", "2027-01-02T23:59:00Z", true, "2027-01-03T00:00:00Z"},
		{"days: after", "2026-12-23 - 2027-01-02", "2027-01-03T00:00:00Z", false, ""},
		{"days in a zone", "2026-12-23 - 2026-12-23 America/New_York", "2026-12-24T04:59:00Z", true, "2026-12-24T05:00:00Z"},
		{"one day in a zone, before", "2026-12-23 - 2026-12-23 America/New_York", "2026-12-23T04:59:00Z", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := ParseFreezeWindow(tc.window)
			if err != nil {
				t.Fatal(err)
			}
			open, until := w.OpenAt(utc(tc.at))
			if open != tc.open {
				t.Fatalf("%s at %s: open %t, want %t", tc.window, tc.at, open, tc.open)
			}
			if open && !until.Equal(utc(tc.until)) {
				t.Errorf("%s at %s: until %s, want %s", tc.window, tc.at, until.UTC().Format(time.RFC3339), tc.until)
			}
		})
	}
}

// TestFreezeLiftsAfterTheLastWindow: a holiday freeze that ends on a
// frozen weekend lifts when the weekend does.
func TestFreezeLiftsAfterTheLastWindow(t *testing.T) {
	var f Freeze
	for _, s := range []string{"2026-12-23 - 2027-01-01", "Fri 16:00 - Mon 08:00"} {
		w, err := ParseFreezeWindow(s)
		if err != nil {
			t.Fatal(err)
		}
		f = append(f, w)
	}
	w, until, open := f.OpenAt(utc("2026-12-31T12:00:00Z"))
	if !open || w.Text != "2026-12-23 - 2027-01-01" || !until.Equal(utc("2027-01-04T08:00:00Z")) {
		t.Fatalf("open %t in %q until %s; want the holiday window, until Mon 2027-01-04 08:00", open, w.Text, until)
	}
	if _, _, open := f.OpenAt(utc("2027-01-04T08:00:00Z")); open {
		t.Fatal("still frozen when both windows are closed")
	}
}

// TestFreezeConfig: the key as §3 shows it, and a single window.
func TestFreezeConfig(t *testing.T) {
	cfg, err := Parse([]byte(`environments:
  production:
    freeze:
      - Fri 16:00 - Mon 08:00 Europe/Berlin
      - 2026-12-23 - 2027-01-02
  staging:
    freeze: Sat 00:00 - Sun 24:00
`), "main")
	if err != nil {
		t.Fatal(err)
	}
	prod, staging := cfg.Environments["production"].Freeze, cfg.Environments["staging"].Freeze
	if len(prod) != 2 || !prod[0].Weekly || prod[0].Zone.String() != "Europe/Berlin" || prod[1].Weekly || len(staging) != 1 {
		t.Fatalf("production %+v, staging %+v", prod, staging)
	}
}

// badFreezes are freeze mistakes and the exact lines Parse prints for them.
var badFreezes = []struct {
	name, window string
	want         string
}{
	{"no dash", "Fri 16:00 Mon 08:00", `there is no " - " (a dash with a space on each side) between its start and its end`},
	{"dash without spaces", "Fri 16:00-Mon 08:00", `there is no " - " (a dash with a space on each side) between its start and its end`},
	{"bad day", "Fry 16:00 - Mon 08:00", `"Fry" is not a day of the week: use Mon, Tue, Wed, Thu, Fri, Sat or Sun`},
	{"bad end day", "Fri 16:00 - Mo 08:00", `"Mo" is not a day of the week: use Mon, Tue, Wed, Thu, Fri, Sat or Sun`},
	{"bad hour", "Fri 25:00 - Mon 08:00", `"25:00" is not a time of day: write it as HH:MM on the 24-hour clock, e.g. 08:00 or 16:30`},
	{"bad minute", "Fri 16:60 - Mon 08:00", `"16:60" is not a time of day: write it as HH:MM on the 24-hour clock, e.g. 08:00 or 16:30`},
	{"am/pm", "Fri 4pm - Mon 8am", `"4pm" is not a time of day: write it as HH:MM on the 24-hour clock, e.g. 08:00 or 16:30`},
	{"no time", "Fri - Mon", `"Fri" is not a day and a time: write e.g. Fri 16:00`},
	{"unknown zone", "Fri 16:00 - Mon 08:00 Europe/Berln", `"Europe/Berln" is not a time zone: use a name from the IANA database such as Europe/Berlin or America/New_York, or leave it out for UTC`},
	{"abbreviation as zone", "Fri 16:00 - Mon 08:00 CEST", `"CEST" is not a time zone: use a name from the IANA database such as Europe/Berlin or America/New_York, or leave it out for UTC`},
	{"local is no zone", "Fri 16:00 - Mon 08:00 Local", `"Local" is not a time zone: use a name from the IANA database such as Europe/Berlin or America/New_York, or leave it out for UTC`},
	{"zone with spaces", "Fri 16:00 - Mon 08:00 Europe / Berlin", `"Europe / Berlin" is not a time zone: use a name from the IANA database such as Europe/Berlin or America/New_York, or leave it out for UTC`},
	{"zone on the start", "Fri 16:00 Europe/Berlin - Mon 08:00", `"Fri 16:00 Europe/Berlin" is not a day and a time: write e.g. Fri 16:00`},
	{"empty week", "Mon 08:00 - Mon 08:00", `it starts and ends at the same moment of the week, so it is either empty or the whole week: give it a length`},
	{"bad date", "2026-12-32 - 2027-01-02", `"2026-12-32" is not a day: write it as YYYY-MM-DD, e.g. 2026-12-23`},
	{"day first", "23.12.2026 - 02.01.2027", `"23.12.2026" is not a day: write it as YYYY-MM-DD, e.g. 2026-12-23`},
	{"american date", "12/23/2026 - 01/02/2027", `"12/23/2026" is not a day: write it as YYYY-MM-DD, e.g. 2026-12-23`},
	{"time without a day", "16:00 - 18:00", `"16:00" is not a day and a time: write e.g. Fri 16:00`},
	{"end before start", "2027-01-02 - 2026-12-23", `it ends on 2026-12-23, before it starts on 2027-01-02: put the earlier day first`},
	{"date and weekday mixed", "2026-12-23 - Mon 08:00", `"Mon 08:00" is not a day: write it as YYYY-MM-DD, e.g. 2026-12-23`},
}

func TestFreezeErrors(t *testing.T) {
	for _, tc := range badFreezes {
		t.Run(tc.name, func(t *testing.T) {
			checkParseErrors(t, freezeFile(tc.window), []string{
				`.github/shipbot.yml line 4: environments.production.freeze[0]: ` + quote(tc.window) + `: ` + tc.want + `; ` + freezeExample,
			})
		})
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"overlapping weeks", freezeFile("Fri 16:00 - Mon 08:00", "Sun 12:00 - Sun 18:00"),
			`.github/shipbot.yml line 5: environments.production.freeze[1]: "Sun 12:00 - Sun 18:00" overlaps "Fri 16:00 - Mon 08:00" (line 4): merge them into one window`},
		{"overlapping weeks in two zones", freezeFile("Fri 16:00 - Fri 18:00 Europe/Berlin", "Fri 14:30 - Fri 15:30"),
			`.github/shipbot.yml line 5: environments.production.freeze[1]: "Fri 14:30 - Fri 15:30" overlaps "Fri 16:00 - Fri 18:00 Europe/Berlin" (line 4): merge them into one window`},
		{"overlapping days", freezeFile("2026-12-23 - 2027-01-02", "2027-01-02 - 2027-01-05"),
			`.github/shipbot.yml line 5: environments.production.freeze[1]: "2027-01-02 - 2027-01-05" overlaps "2026-12-23 - 2027-01-02" (line 4): merge them into one window`},
		{"not text", "environments:\n  production:\n    freeze:\n      - {from: Fri}\n",
			`.github/shipbot.yml line 4: environments.production.freeze[0]: expected a single value, got a mapping`},
	} {
		t.Run(tc.name, func(t *testing.T) { checkParseErrors(t, tc.yaml, []string{tc.want}) })
	}
	// A weekly window may overlap a range of days: a holiday freeze over a
	// frozen weekend is the usual case.
	if _, err := Parse([]byte(freezeFile("Fri 16:00 - Mon 08:00", "2026-12-23 - 2027-01-02")), "main"); err != nil {
		t.Fatal(err)
	}
}

func freezeFile(windows ...string) string {
	var b strings.Builder
	b.WriteString("environments:\n  production:\n    freeze:\n")
	for _, w := range windows {
		b.WriteString("      - " + w + "\n")
	}
	return b.String()
}

// FuzzFreeze: a window parses or says why in one line, never panics, and a
// window that parses is open until an instant after the one asked about.
func FuzzFreeze(f *testing.F) {
	for _, tc := range badFreezes {
		f.Add(tc.window, int64(0))
	}
	f.Add("Fri 16:00 - Mon 08:00 Europe/Berlin", int64(1774623600))
	f.Add("2026-12-23 - 2027-01-02", int64(1798000000))
	f.Add("Sat 00:00 - Sun 24:00 Pacific/Chatham", int64(1790000000))
	f.Fuzz(func(t *testing.T, s string, unix int64) {
		w, err := ParseFreezeWindow(s)
		if err != nil {
			if msg := err.Error(); msg == "" || strings.ContainsAny(msg, "\n") {
				t.Fatalf("%q: error %q is not one line", s, msg)
			}
			return
		}
		at := time.Unix(unix%(1<<34), 0)
		if open, until := w.OpenAt(at); open && !until.After(at) {
			t.Fatalf("%q open at %s until %s", s, at, until)
		}
		if w.Weekly && w.Start == w.End {
			t.Fatalf("%q: an empty weekly window parsed", s)
		}
	})
}
