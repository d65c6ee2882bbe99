package report

import "time"

// Freeze is an environment's open freeze window, as a reply or /status
// names it.
type Freeze struct {
	// Window is the window as written in .github/shipbot.yml:
	// "Fri 16:00 - Mon 08:00 Europe/Berlin".
	Window string
	// Until is when the freeze lifts, in the zone of the window it ends
	// with: the end of Window, or later when another window is open then.
	Until time.Time
	// At is when the freeze was found open. An Until a week or more after
	// it is named by its date, since a weekday alone would be ambiguous.
	At time.Time
	// Days: Window is a range of whole days, which people think of by
	// date, so Until is named by its date too.
	Days bool
}

// weekAhead is how far ahead a weekday alone names a day unambiguously.
const weekAhead = 6 * 24 * time.Hour

// FreezeEnd is when a freeze lifts, as people read it: the weekday, time,
// zone abbreviation and IANA zone, "Mon 08:00 CET (Europe/Berlin)", with the
// date when a weekday is not enough, "Sun 2027-01-03 00:00 CET
// (Europe/Berlin)". Every text that names a freeze's end says it this way.
func FreezeEnd(f Freeze) string {
	layout := "Mon 15:04 MST"
	if f.Days || !f.At.IsZero() && f.Until.Sub(f.At) >= weekAhead {
		layout = "Mon 2006-01-02 15:04 MST"
	}
	s := f.Until.Format(layout)
	// "UTC (UTC)" says nothing twice; "CET (Europe/Berlin)" says which
	// CET, and which rules its summer time follows.
	if zone := f.Until.Location().String(); zone != f.Until.Format("MST") {
		s += " (" + zone + ")"
	}
	return s
}

// frozen is "frozen until Mon 08:00 CET (Europe/Berlin) by the freeze window
// `Fri 16:00 - Mon 08:00 Europe/Berlin`".
func frozen(f Freeze) string {
	return "frozen until " + FreezeEnd(f) + " by the freeze window " + code(fit(f.Window, maxNote))
}

// frozenRefusal is the answer to a /deploy refused by an open freeze.
func frozenRefusal(a Answer) string {
	f := Freeze{}
	if a.Freeze != nil {
		f = *a.Freeze
	}
	return "❄️ " + envName(a.Env) + " is " + frozen(f) + " in " + code(configFile) + ", so nothing was deployed. " +
		"Comment again once the freeze has lifted, or ask someone with admin permission: admins may deploy through a freeze. " +
		code("/rollback "+a.Env) + " is never frozen."
}

// freezeOverridden is what a /deploy by an admin through an open freeze
// adds to its sentence; "" when no freeze was open.
func freezeOverridden(a Answer) string {
	if a.Freeze == nil {
		return ""
	}
	return " ❄️ Freeze overridden: " + envName(a.Env) + " is " + frozen(*a.Freeze) + ", and your admin permission deploys through it."
}
