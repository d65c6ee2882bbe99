package local

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestLatencyBucketsHoldTheirLatencies(t *testing.T) {
	// Every bucket's bounds follow on from the previous one's, and grow by
	// at most 1/16.
	_, prevHi := bucketBounds(0)
	for i := 1; i < nBuckets-1; i++ {
		lo, hi := bucketBounds(i)
		if lo != prevHi {
			t.Fatalf("bucket %d starts at %d, the one before ends at %d", i, lo, prevHi)
		}
		if g := float64(hi) / float64(lo); g > 17.0/16 {
			t.Fatalf("bucket %d: [%d, %d) grows by %.4f", i, lo, hi, g)
		}
		for _, d := range []time.Duration{lo, (lo + hi) / 2, hi - 1} {
			if got := bucketOf(d); got != i {
				t.Fatalf("bucketOf(%d) = %d, want %d: [%d, %d)", d, got, i, lo, hi)
			}
		}
		prevHi = hi
	}
	if lo, _ := bucketBounds(nBuckets - 1); lo != prevHi || bucketOf(prevHi) != nBuckets-1 || bucketOf(time.Duration(math.MaxInt64)) != nBuckets-1 {
		t.Errorf("the overflow bucket does not follow on from %d", prevHi)
	}
	for _, d := range []time.Duration{-time.Second, 0, 1, 1<<minExp - 1} {
		if bucketOf(d) != 0 {
			t.Errorf("bucketOf(%d) = %d, want 0", d, bucketOf(d))
		}
	}

	// Any latency reads as its bucket's middle, within 3.1%.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		d := time.Duration(math.Exp(rng.Float64()*math.Log(float64(time.Hour/time.Microsecond)))) * time.Microsecond
		if d < 1<<minExp || d >= 1<<maxExp {
			continue // the under- and overflow buckets
		}
		if e := relErr(bucketMiddle(bucketOf(d)), d); e > 0.031 {
			t.Fatalf("%s reads as %s: %.2f%% off", d, bucketMiddle(bucketOf(d)), 100*e)
		}
	}
}

func relErr(got, want time.Duration) float64 {
	return math.Abs(float64(got)-float64(want)) / float64(want)
}

// TestP99IsWithinFivePercent compares the p99 read from the buckets with
// the exact p99 (nearest rank) of random samples of several shapes.
func TestP99IsWithinFivePercent(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ms := float64(time.Millisecond)
	shapes := []struct {
		name string
		draw func() float64 // nanoseconds
	}{
		{"log-uniform 50µs to 30s", func() float64 { return 50e3 * math.Exp(rng.Float64()*math.Log(30e9/50e3)) }},
		{"exponential, mean 20ms", func() float64 { return rng.ExpFloat64() * 20 * ms }},
		{"normal 80ms ± 5ms", func() float64 { return math.Max(0, 80*ms+5*ms*rng.NormFloat64()) }},
		{"fast with a slow 2% tail", func() float64 {
			if rng.Float64() < 0.02 {
				return 1500*ms + 500*ms*rng.Float64()
			}
			return 0.3*ms + 0.2*ms*rng.Float64()
		}},
		{"lognormal around 1ms", func() float64 { return ms * math.Exp(rng.NormFloat64()) }},
	}
	for _, shape := range shapes {
		for _, n := range []int{1, 7, 100, 101, 1000, 12345, 200000} {
			samples := make([]time.Duration, n)
			var f figures
			for i := range samples {
				samples[i] = time.Duration(shape.draw())
				f.hist[bucketOf(samples[i])]++
			}
			slices.Sort(samples)
			exact := samples[int(math.Ceil(0.99*float64(n)))-1]
			got := f.p99()
			if e := relErr(got, exact); e > 0.05 {
				t.Errorf("%s, %d samples: p99 %s, exact %s: %.2f%% off", shape.name, n, got, exact, 100*e)
			}
			if f.requests() != uint64(n) {
				t.Errorf("%s: %d requests, want %d", shape.name, f.requests(), n)
			}
		}
	}
	var none figures
	if none.p99() != 0 {
		t.Errorf("p99 of nothing = %s, want 0", none.p99())
	}
}
