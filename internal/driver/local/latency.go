package local

import (
	"math"
	"math/bits"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
)

// Latency buckets are log-linear: each power of two of nanoseconds from
// 2^10 (1.02 µs) to 2^40 (18.3 min) is split into 16 equal buckets, so a
// bucket's upper bound is at most 17/16 of its lower bound (a growth factor
// of 1.03 to 1.0625 from one bucket to the next) and the bucket's geometric
// middle is within 3.1% of every latency in it. A percentile read from the
// buckets is therefore within 3.1% of the exact one. Under 1.02 µs is one
// bucket, read as 0.5 µs; 18.3 min and over is one bucket, read as 18.3 min.
// A bucket is found with two shifts, no logarithm: it is on the proxy's hot
// path.
const (
	subBits    = 4
	subBuckets = 1 << subBits
	minExp     = 10
	maxExp     = 40
	nBuckets   = 1 + (maxExp-minExp)*subBuckets + 1
)

// bucketOf is the latency bucket of d.
func bucketOf(d time.Duration) int {
	switch {
	case d < 1<<minExp:
		return 0
	case d >= 1<<maxExp:
		return nBuckets - 1
	}
	e := bits.Len64(uint64(d)) - 1 // 2^e <= d < 2^(e+1)
	sub := int(uint64(d)>>(e-subBits)) & (subBuckets - 1)
	return 1 + (e-minExp)*subBuckets + sub
}

// bucketBounds is the latencies bucket i holds: [lo, hi).
func bucketBounds(i int) (lo, hi time.Duration) {
	switch {
	case i <= 0:
		return 0, 1 << minExp
	case i >= nBuckets-1:
		return 1 << maxExp, math.MaxInt64
	}
	e, sub := minExp+(i-1)/subBuckets, (i-1)%subBuckets
	step := time.Duration(1) << (e - subBits)
	return time.Duration(subBuckets+sub) * step, time.Duration(subBuckets+sub+1) * step
}

// bucketMiddle is what a latency in bucket i reads as: the geometric middle
// of its bounds.
func bucketMiddle(i int) time.Duration {
	lo, hi := bucketBounds(i)
	switch {
	case i <= 0:
		return hi / 2
	case i >= nBuckets-1:
		return lo
	}
	return time.Duration(math.Sqrt(float64(lo) * float64(hi)))
}

// figures is a merged window of one release's traffic: requests by latency
// bucket, and how many of them were errors.
type figures struct {
	hist   [nBuckets]uint64
	errors uint64
}

func (f *figures) requests() uint64 {
	var n uint64
	for _, c := range f.hist {
		n += c
	}
	return n
}

// p99 is the 99th percentile latency by nearest rank: the latency of the
// ⌈0.99·n⌉-th fastest request, read from its bucket. 0 with no requests.
func (f *figures) p99() time.Duration {
	n := f.requests()
	if n == 0 {
		return 0
	}
	rank := (99*n + 99) / 100
	var seen uint64
	for i, c := range f.hist {
		seen += c
		if seen >= rank {
			return bucketMiddle(i)
		}
	}
	return bucketMiddle(nBuckets - 1) // not reached
}

// secondSlowest is the latency of the second slowest request, read from its
// bucket; 0 with fewer than 2 requests.
func (f *figures) secondSlowest() time.Duration {
	var seen uint64
	for i := nBuckets - 1; i >= 0; i-- {
		seen += f.hist[i]
		if seen >= 2 {
			return bucketMiddle(i)
		}
	}
	return 0
}

func (f *figures) traffic() deploy.Traffic {
	return deploy.Traffic{Requests: int64(f.requests()), Errors: int64(f.errors), P99: f.p99(), SecondSlowest: f.secondSlowest()}
}
