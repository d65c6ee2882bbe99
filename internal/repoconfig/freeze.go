package repoconfig

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	// Zones are embedded so that a distroless image, which has no
	// /usr/share/zoneinfo, knows Europe/Berlin as well as a laptop does.
	_ "time/tzdata"

	"gopkg.in/yaml.v3"
)

// FreezeWindow is one entry of an environment's freeze: a weekly window
// ("Fri 16:00 - Mon 08:00 Europe/Berlin"), which may wrap the week, or a
// range of whole days ("2026-12-23 - 2027-01-02"), both inclusive. Times
// are wall-clock times in Zone, so a weekly window opens at 16:00 local
// time whether the zone is on summer or winter time that week.
type FreezeWindow struct {
	// Text is the window as written in the file.
	Text string
	Zone *time.Location

	// Weekly: minutes since Monday 00:00 of the start and the end; End <=
	// Start means the window wraps the week.
	Weekly     bool
	Start, End int

	// Dates: the first and the last day, at midnight in Zone.
	From, To time.Time
}

// minutesPerWeek is the length of the week FreezeWindow.Start and End
// count minutes in.
const minutesPerWeek = 7 * 24 * 60

// freezeExample is shown with every malformed window.
const freezeExample = `write a weekly window as "Fri 16:00 - Mon 08:00 Europe/Berlin" (the zone is optional, UTC by default) or whole days as "2026-12-23 - 2027-01-02"`

// ParseFreezeWindow reads one freeze window. Its error says what is wrong
// in words a person can act on; the caller adds the line and an example.
func ParseFreezeWindow(s string) (FreezeWindow, error) {
	w := FreezeWindow{Text: s, Zone: time.UTC}
	from, to, ok := strings.Cut(s, " - ")
	if !ok {
		return w, errors.New(`there is no " - " (a dash with a space on each side) between its start and its end`)
	}
	to, zone := splitZone(strings.TrimSpace(to))
	if zone != "" {
		loc, err := loadZone(zone)
		if err != nil {
			return w, err
		}
		w.Zone = loc
	}
	from = strings.TrimSpace(from)
	if looksLikeDate(from) {
		return w, w.dates(from, to)
	}
	return w, w.weekly(from, to)
}

// splitZone splits "Mon 08:00 Europe/Berlin" into the end and the zone;
// "2027-01-02" and "Mon 08:00" have none.
func splitZone(end string) (string, string) {
	f := strings.Fields(end)
	want := 2 // day and time
	if len(f) > 0 && looksLikeDate(f[0]) {
		want = 1
	}
	if len(f) <= want {
		return end, ""
	}
	return strings.Join(f[:want], " "), strings.Join(f[want:], " ")
}

func loadZone(name string) (*time.Location, error) {
	// "Local" would make the window depend on the bot's machine; the file
	// must mean the same wherever the bot runs.
	if strings.ContainsAny(name, " \t") || strings.EqualFold(name, "local") {
		return nil, fmt.Errorf("%s is not a time zone: use a name from the IANA database such as Europe/Berlin or America/New_York, or leave it out for UTC", quote(name))
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%s is not a time zone: use a name from the IANA database such as Europe/Berlin or America/New_York, or leave it out for UTC", quote(name))
	}
	return loc, nil
}

// looksLikeDate tells a day ("2026-12-23", or a mistaken "23.12.2026")
// from a weekday and time ("Fri 16:00", or a mistaken "16:00").
func looksLikeDate(s string) bool {
	return s != "" && s[0] >= '0' && s[0] <= '9' && !strings.Contains(strings.Fields(s)[0], ":")
}

func (w *FreezeWindow) dates(from, to string) error {
	var err error
	if w.From, err = parseDay(from, w.Zone); err != nil {
		return err
	}
	if w.To, err = parseDay(to, w.Zone); err != nil {
		return err
	}
	if w.To.Before(w.From) {
		return fmt.Errorf("it ends on %s, before it starts on %s: put the earlier day first", to, from)
	}
	return nil
}

func parseDay(s string, loc *time.Location) (time.Time, error) {
	t, err := time.ParseInLocation("2006-01-02", s, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s is not a day: write it as YYYY-MM-DD, e.g. 2026-12-23", quote(s))
	}
	return t, nil
}

func (w *FreezeWindow) weekly(from, to string) error {
	w.Weekly = true
	var err error
	if w.Start, err = parseWeekTime(from); err != nil {
		return err
	}
	w.Start %= minutesPerWeek // Sun 24:00 is Mon 00:00
	if w.End, err = parseWeekTime(to); err != nil {
		return err
	}
	if w.Start == w.End {
		return errors.New("it starts and ends at the same moment of the week, so it is either empty or the whole week: give it a length")
	}
	return nil
}

// weekdays are the days a window may name, Monday first, as minutes since
// Monday 00:00 count them.
var weekdays = []string{"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}

// parseWeekTime reads "Fri 16:00" as minutes since Monday 00:00.
func parseWeekTime(s string) (int, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, fmt.Errorf("%s is not a day and a time: write e.g. Fri 16:00", quote(s))
	}
	day := weekday(f[0])
	if day < 0 {
		return 0, fmt.Errorf("%s is not a day of the week: use Mon, Tue, Wed, Thu, Fri, Sat or Sun", quote(f[0]))
	}
	m, err := clock(f[1])
	if err != nil {
		return 0, err
	}
	return day*24*60 + m, nil
}

// weekday is the index in weekdays of "Fri", "fri", "Friday"; -1 for none.
func weekday(s string) int {
	s = strings.ToLower(s)
	if len(s) < 3 {
		return -1
	}
	for i, d := range weekdays {
		if s == d || s == d[:3] {
			return i
		}
	}
	return -1
}

// clock reads "16:00" (or "8:00") as minutes since midnight; "24:00" is
// the end of the day.
func clock(s string) (int, error) {
	bad := fmt.Errorf("%s is not a time of day: write it as HH:MM on the 24-hour clock, e.g. 08:00 or 16:30", quote(s))
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) < 1 || len(h) > 2 || len(m) != 2 {
		return 0, bad
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || hh == 24 && mm != 0 {
		return 0, bad
	}
	return hh*60 + mm, nil
}

// OpenAt reports whether the window is open at t and, if so, when it
// closes next.
func (w FreezeWindow) OpenAt(t time.Time) (bool, time.Time) {
	if !w.Weekly {
		end := w.To.AddDate(0, 0, 1)
		return !t.Before(w.From) && t.Before(end), end
	}
	local := t.In(w.Zone)
	m := minuteOfWeek(local)
	open := w.Start < w.End && w.Start <= m && m < w.End ||
		w.Start > w.End && (m >= w.Start || m < w.End)
	if !open {
		return false, time.Time{}
	}
	return true, w.next(local, w.End)
}

// minuteOfWeek is t's wall-clock minute since Monday 00:00.
func minuteOfWeek(t time.Time) int {
	day := (int(t.Weekday()) + 6) % 7 // Monday 0
	return day*24*60 + t.Hour()*60 + t.Minute()
}

// next is the first instant after local whose wall clock is minute m of
// the week, in the window's zone.
func (w FreezeWindow) next(local time.Time, m int) time.Time {
	days := (m/(24*60) - minuteOfWeek(local)/(24*60) + 7) % 7
	y, mo, d := local.Date()
	hh, mm := m%(24*60)/60, m%60
	at := time.Date(y, mo, d+days, hh, mm, 0, 0, w.Zone)
	if !at.After(local) {
		at = time.Date(y, mo, d+days+7, hh, mm, 0, 0, w.Zone)
	}
	return at
}

// Freeze is an environment's freeze windows.
type Freeze []FreezeWindow

// OpenAt is the window open at t, if any, and when the freeze lifts: the
// end of that window, or later when another window is open at that moment
// (a holiday freeze that ends on a frozen weekend lifts after the weekend).
func (f Freeze) OpenAt(t time.Time) (FreezeWindow, time.Time, bool) {
	var first FreezeWindow
	until, found := t, false
	// Each step moves past one window's end; more steps than windows would
	// mean a window reopens at its own end, which parsing rules out.
	for range len(f) + 1 {
		w, end, ok := f.openOne(until)
		if !ok {
			break
		}
		if !found {
			first, found = w, true
		}
		until = end
	}
	return first, until, found
}

// openOne is the open window at t that closes last.
func (f Freeze) openOne(t time.Time) (FreezeWindow, time.Time, bool) {
	var best FreezeWindow
	var bestEnd time.Time
	for _, w := range f {
		if open, end := w.OpenAt(t); open && end.After(bestEnd) {
			best, bestEnd = w, end
		}
	}
	return best, bestEnd, !bestEnd.IsZero()
}

// overlap is the index of an earlier window of the same kind that w
// overlaps, or -1. A weekly window and a range of days may overlap (a
// holiday freeze over a frozen weekend); two of one kind never need to.
func overlap(ws []FreezeWindow, w FreezeWindow) int {
	for i, o := range ws {
		if o.Weekly != w.Weekly {
			continue
		}
		if w.Weekly && weeklyOverlap(o, w) || !w.Weekly && !w.From.After(o.To) && !o.From.After(w.To) {
			return i
		}
	}
	return -1
}

// weeklyOverlap compares two weekly windows over a year of their real
// instants, so that windows in different zones compare correctly across
// summer time.
func weeklyOverlap(a, b FreezeWindow) bool {
	ia, ib := a.instants(), b.instants()
	for _, x := range ia {
		for _, y := range ib {
			if x[0].Before(y[1]) && y[0].Before(x[1]) {
				return true
			}
		}
	}
	return false
}

// instants are the window's openings and closings over 2026, a fixed year
// so that parsing the same file always says the same.
func (w FreezeWindow) instants() [][2]time.Time {
	var out [][2]time.Time
	monday := time.Date(2025, 12, 29, 0, 0, 0, 0, w.Zone) // a Monday
	for week := range 54 {
		base := monday.AddDate(0, 0, 7*week)
		start := time.Date(base.Year(), base.Month(), base.Day(), 0, w.Start, 0, 0, w.Zone)
		end := time.Date(base.Year(), base.Month(), base.Day(), 0, w.End, 0, 0, w.Zone)
		if w.End <= w.Start {
			end = end.AddDate(0, 0, 7)
		}
		out = append(out, [2]time.Time{start, end})
	}
	slices.SortFunc(out, func(x, y [2]time.Time) int { return cmp.Compare(x[0].UnixNano(), y[0].UnixNano()) })
	return out
}

// freeze reads an environment's freeze: a list of windows, or one.
func (p *parser) freeze(path string, n *yaml.Node) Freeze {
	n = deref(n)
	items := []*yaml.Node{n}
	switch {
	case isNull(n):
		return nil
	case n.Kind == yaml.SequenceNode:
		if !p.spend(n.Line, len(n.Content)) {
			return nil
		}
		items = n.Content
	}
	var f Freeze
	lines := []int{}
	for i, item := range items {
		ipath := path
		if n.Kind == yaml.SequenceNode {
			ipath = fmt.Sprintf("%s[%d]", path, i)
		}
		s, ok := p.text(ipath, item)
		if !ok {
			continue
		}
		w, err := ParseFreezeWindow(s)
		if err != nil {
			p.errf(item.Line, ipath, "%s: %s; %s", quote(s), err, freezeExample)
			continue
		}
		if j := overlap(f, w); j >= 0 {
			p.errf(item.Line, ipath, "%s overlaps %s (line %d): merge them into one window", quote(s), quote(f[j].Text), lines[j])
			continue
		}
		f, lines = append(f, w), append(lines, item.Line)
	}
	return f
}
