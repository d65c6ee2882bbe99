package report

import (
	"fmt"
	"strings"
	"time"
	// Zones are embedded so that a distroless image says "CET" for
	// Europe/Berlin as a laptop does (repoconfig embeds them too).
	_ "time/tzdata"

	"github.com/shipbot/shipbot/internal/store/record"
)

// HeldFreeze is a freeze window holding a deploy: a push while the window is
// open waits until it closes.
type HeldFreeze struct {
	Window string    // the window as written, e.g. "Fri 16:00 - Mon 08:00 Europe/Berlin"
	Zone   string    // the window's IANA time zone; "" or "UTC" for UTC
	Until  time.Time // when the freeze lifts
	Since  time.Time // when it began to hold the deploy
}

// FrozenUntil is when the freeze lifts, as people read it:
// "frozen until Mon 08:00 CET (Europe/Berlin)" — the weekday and time in
// the window's zone, its abbreviation at that instant, and the zone's name;
// "frozen until Mon 08:00 UTC" for UTC. A freeze that lifts 6 days or more
// after it began to hold the deploy is said with the date too:
// "frozen until Sun 2027-01-03 00:00 CET (Europe/Berlin)". The text depends
// only on f, never on the time of rendering.
func FrozenUntil(f HeldFreeze) string {
	return "frozen until " + liftsAt(f)
}

// liftsAt is the instant a freeze lifts in words, without "frozen until":
// FreezeEnd, in the window's zone.
func liftsAt(f HeldFreeze) string {
	loc := time.UTC
	if zone := oneLine(f.Zone); zone != "" && zone != "UTC" {
		if l, err := time.LoadLocation(zone); err == nil {
			loc = l
		}
	}
	return FreezeEnd(Freeze{Window: f.Window, Until: f.Until.In(loc), At: f.Since})
}

// freezeOf is the freeze a ReasonFrozen says.
func freezeOf(r record.Reason) HeldFreeze {
	return HeldFreeze{Window: r.Text, Zone: r.TimeZone, Until: r.Until, Since: r.At}
}

// frozenReason phrases record.ReasonFrozen:
// `frozen until Mon 08:00 CET (Europe/Berlin) by the freeze window "Fri
// 16:00 - Mon 08:00 Europe/Berlin"`, then the checks it also waits for.
func frozenReason(r record.Reason) string {
	s := FrozenUntil(freezeOf(r))
	if w := oneLine(r.Text); w != "" {
		s += fmt.Sprintf(" by the freeze window %q", w)
	}
	if len(r.Checks) > 0 {
		s += "; waiting for required checks: " + strings.Join(r.Checks, ", ")
	}
	return s
}

// FreezeNotice is what the dashboard says of an environment a freeze
// window holds, from the reason its held deploy waits for:
// "❄️ Frozen until Mon 08:00 CET (Europe/Berlin): pushes wait and the
// newest deploys when the window closes". "" when r is not a freeze.
func FreezeNotice(r record.Reason) string {
	if r.Kind != record.ReasonFrozen {
		return ""
	}
	return "❄️ Frozen until " + liftsAt(freezeOf(r)) + ": pushes wait, and the newest deploys when the window closes"
}

// frozenLine is the headline of a held deploy: "Frozen until Mon 08:00
// CET (Europe/Berlin)", then the checks it also waits for as many as fit.
func frozenLine(d Deploy) string {
	lead := "Frozen until the window closes"
	if d.Frozen != nil {
		lead = "Frozen until " + liftsAt(*d.Frozen)
	}
	if len(d.WaitingOn) == 0 {
		return lead
	}
	return waitingLine(lead+"; waiting for checks: ", d.WaitingOn)
}

// frozenDetail is what the check run says of a held deploy.
func frozenDetail(d Deploy) []string {
	env := md(d.Env)
	s := fmt.Sprintf("**%s is frozen**", env)
	if d.Frozen != nil {
		s += " until " + md(liftsAt(*d.Frozen))
		if w := oneLine(d.Frozen.Window); w != "" {
			s += " by the freeze window " + code(w)
		}
	}
	out := []string{s + ".", fmt.Sprintf("This deploy starts when the window closes. A newer push to %s before then replaces it.", env)}
	if len(d.WaitingOn) > 0 {
		checks := make([]string, 0, len(d.WaitingOn))
		for _, c := range d.WaitingOn {
			checks = append(checks, code(c))
		}
		out = append(out, fmt.Sprintf("It also waits for %s on %s to pass: %s. If one fails, so does this deploy.",
			plural(len(checks), "required check", "required checks"), code(Short(d.SHA)), list(checks, maxListedChecks)))
	}
	return out
}
