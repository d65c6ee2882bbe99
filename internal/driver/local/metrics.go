package local

import "time"

// promBounds are the upper bounds of the buckets of
// shipbot_proxy_request_duration_seconds: from a fast loopback answer to
// a slow page.
var promBounds = [...]time.Duration{
	1 * time.Millisecond,
	2500 * time.Microsecond,
	5 * time.Millisecond,
	10 * time.Millisecond,
	25 * time.Millisecond,
	50 * time.Millisecond,
	100 * time.Millisecond,
	250 * time.Millisecond,
	500 * time.Millisecond,
	1 * time.Second,
	2500 * time.Millisecond,
	5 * time.Second,
	10 * time.Second,
}

// promBucketOf is the first Prometheus bucket that holds d; len(promBounds)
// is +Inf.
func promBucketOf(d time.Duration) int {
	for i, le := range promBounds {
		if d <= le {
			return i
		}
	}
	return len(promBounds)
}
