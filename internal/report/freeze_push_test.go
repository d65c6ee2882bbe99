package report

import (
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/store/record"
)

func TestFrozenUntil(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    HeldFreeze
		want string
	}{
		{"winter: CET", HeldFreeze{Zone: "Europe/Berlin", Since: time.Date(2026, 3, 6, 18, 0, 0, 0, berlin), Until: time.Date(2026, 3, 9, 8, 0, 0, 0, berlin)},
			"frozen until Mon 08:00 CET (Europe/Berlin)"},
		{"summer: CEST, the abbreviation at that instant", HeldFreeze{Zone: "Europe/Berlin", Since: time.Date(2026, 3, 27, 18, 0, 0, 0, berlin), Until: time.Date(2026, 3, 30, 8, 0, 0, 0, berlin)},
			"frozen until Mon 08:00 CEST (Europe/Berlin)"},
		{"UTC is said once", HeldFreeze{Zone: "UTC", Since: time.Date(2026, 3, 6, 18, 0, 0, 0, time.UTC), Until: time.Date(2026, 3, 9, 8, 0, 0, 0, time.UTC)},
			"frozen until Mon 08:00 UTC"},
		{"no zone is UTC", HeldFreeze{Until: time.Date(2026, 3, 9, 8, 0, 0, 0, berlin)},
			"frozen until Mon 07:00 UTC"},
		{"a holiday freeze 6 days or more ahead: with the date", HeldFreeze{Zone: "Europe/Berlin", Since: time.Date(2026, 12, 23, 9, 0, 0, 0, berlin), Until: time.Date(2027, 1, 3, 0, 0, 0, 0, berlin)},
			"frozen until Sun 2027-01-03 00:00 CET (Europe/Berlin)"},
		{"the last days of a holiday freeze: the weekday is enough", HeldFreeze{Zone: "UTC", Since: time.Date(2026, 12, 30, 9, 0, 0, 0, time.UTC), Until: time.Date(2027, 1, 3, 0, 0, 0, 0, time.UTC)},
			"frozen until Sun 00:00 UTC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FrozenUntil(tt.f); got != tt.want {
				t.Errorf("FrozenUntil = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFreezeNotice(t *testing.T) {
	r := reasonSamples[record.ReasonFrozen]
	r.Kind = record.ReasonFrozen
	if got, want := FreezeNotice(r), "❄️ Frozen until Mon 08:00 CET (Europe/Berlin): pushes wait, and the newest deploys when the window closes"; got != want {
		t.Errorf("FreezeNotice = %q, want %q", got, want)
	}
	if got := FreezeNotice(record.Reason{Kind: record.ReasonLocked}); got != "" {
		t.Errorf("FreezeNotice of a lock = %q", got)
	}
}
