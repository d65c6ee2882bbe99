package cdevents

import "time"

// RetryFor is how long a delivery is retried after its first attempt.
const RetryFor = 24 * time.Hour

// The schedule: 10 s after the first failed attempt, doubling (20 s, 40 s,
// … 42m40s) up to one hour, then hourly. A receiver down for a minute gets
// its events within about a minute of coming back; one down for a day is
// still tried every hour. That is 32 attempts in the 24 h (MaxAttempts).
const (
	firstBackoff = 10 * time.Second
	maxBackoff   = time.Hour
)

// Backoff is the delay before attempt n+1 after attempt n (counted from 1)
// failed. It matches queue.Options.Backoff.
func Backoff(attempt int) time.Duration {
	d := firstBackoff
	for i := 1; i < attempt && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// Expired reports whether a delivery first attempted at first must be given
// up at now: the 24 h are over. A job that failed at now retries only if
// !Expired(first, now.Add(Backoff(attempt))).
func Expired(first, now time.Time) bool {
	return now.Sub(first) >= RetryFor
}

// MaxAttempts is how many attempts the schedule makes within RetryFor when
// each answer is immediate: what a queue's attempt limit must allow at least.
func MaxAttempts() int {
	n, elapsed := 1, time.Duration(0)
	for {
		elapsed += Backoff(n)
		if elapsed >= RetryFor {
			return n
		}
		n++
	}
}
