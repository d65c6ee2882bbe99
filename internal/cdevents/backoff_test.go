package cdevents

import (
	"testing"
	"time"
)

func TestBackoffSchedule(t *testing.T) {
	want := []time.Duration{
		10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second,
		320 * time.Second, 640 * time.Second, 1280 * time.Second, 2560 * time.Second,
		time.Hour, time.Hour,
	}
	for i, w := range want {
		if got := Backoff(i + 1); got != w {
			t.Errorf("Backoff(%d) = %s, want %s", i+1, got, w)
		}
	}
	if got := Backoff(1000); got != time.Hour {
		t.Errorf("Backoff(1000) = %s, want the 1h cap", got)
	}
	if got := Backoff(0); got != 10*time.Second {
		t.Errorf("Backoff(0) = %s, want the first delay", got)
	}
}

// Following the schedule from the first attempt, a receiver that never
// answers is tried for 24 h and no longer: the last attempt falls inside
// the 24 h, the one after it would not.
func TestRetriesLastTwentyFourHours(t *testing.T) {
	first := time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)
	now, attempts := first, 1
	for !Expired(first, now.Add(Backoff(attempts))) {
		now = now.Add(Backoff(attempts))
		attempts++
	}
	if attempts != MaxAttempts() || attempts != 32 {
		t.Errorf("%d attempts, MaxAttempts() = %d, documented 32", attempts, MaxAttempts())
	}
	if span := now.Sub(first); span < 23*time.Hour || span >= RetryFor {
		t.Errorf("last attempt %s after the first, want within the last hour of 24 h", span)
	}
	if Expired(first, first.Add(RetryFor-time.Second)) || !Expired(first, first.Add(RetryFor)) {
		t.Error("Expired should turn true at exactly 24 h")
	}
}
