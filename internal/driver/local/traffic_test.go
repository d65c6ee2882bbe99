package local

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
)

// t0 is where the window tests' clock starts: recording takes the time of
// each request, so the tests choose it.
var t0 = time.Unix(1_700_000_000, 0)

func at(d time.Duration) time.Time { return t0.Add(d) }

func read(tr *traffic, release string, from, to time.Time) deploy.Traffic {
	return tr.window(release, from, to).traffic()
}

func TestTrafficWindows(t *testing.T) {
	tr := newTraffic()
	rt := tr.of("abc", t0)
	for range 3 {
		rt.record(at(200*time.Millisecond), 10*time.Millisecond, 200)
	}
	rt.record(at(1500*time.Millisecond), 20*time.Millisecond, 503)
	rt.record(at(1500*time.Millisecond), 20*time.Millisecond, 500)
	rt.record(at(1600*time.Millisecond), time.Second, codeFailed)
	rt.record(at(1700*time.Millisecond), 5*time.Millisecond, codeCanceled)
	rt.record(at(1800*time.Millisecond), 5*time.Millisecond, 404)
	for range 4 {
		rt.record(at(3100*time.Millisecond), 100*time.Millisecond, 200)
	}
	// A recorder late for its second counts in the current one.
	rt.record(at(2900*time.Millisecond), 100*time.Millisecond, 200)

	reads := func(d time.Duration) time.Duration { return bucketMiddle(bucketOf(d)) }
	tests := []struct {
		name     string
		from, to time.Time
		want     deploy.Traffic
	}{
		{"all", at(0), at(4 * time.Second), deploy.Traffic{Requests: 13, Errors: 3, P99: reads(time.Second), SecondSlowest: reads(100 * time.Millisecond)}},
		{"one second", at(time.Second), at(2 * time.Second), deploy.Traffic{Requests: 5, Errors: 3, P99: reads(time.Second), SecondSlowest: reads(20 * time.Millisecond)}},
		{"widened to the seconds it overlaps", at(1900 * time.Millisecond), at(1950 * time.Millisecond), deploy.Traffic{Requests: 5, Errors: 3, P99: reads(time.Second), SecondSlowest: reads(20 * time.Millisecond)}},
		{"a second without requests", at(2 * time.Second), at(3 * time.Second), deploy.Traffic{}},
		{"up to just past a second's start", at(2 * time.Second), at(3*time.Second + time.Nanosecond), deploy.Traffic{Requests: 5, P99: reads(100 * time.Millisecond), SecondSlowest: reads(100 * time.Millisecond)}},
		{"before anything", at(-time.Hour), at(0), deploy.Traffic{}},
		{"after everything", at(4 * time.Second), at(time.Hour), deploy.Traffic{}},
		{"empty", at(time.Second), at(time.Second), deploy.Traffic{}},
		{"backwards", at(4 * time.Second), at(0), deploy.Traffic{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := read(tr, "abc", tc.from, tc.to); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	if got := read(tr, "def", at(0), at(time.Hour)); got != (deploy.Traffic{}) {
		t.Errorf("a release never seen: %+v, want zero", got)
	}
}

func TestTrafficKeepsTwoHours(t *testing.T) {
	tr := newTraffic()
	rt := tr.of("abc", t0)
	rt.record(at(0), time.Millisecond, 200)
	rt.record(at(time.Hour), time.Millisecond, 200)
	rt.record(at(trafficRetention-time.Second), time.Millisecond, 200)
	if got := read(tr, "abc", at(0), at(3*time.Hour)); got.Requests != 3 {
		t.Fatalf("%d requests in the last two hours, want 3", got.Requests)
	}
	rt.record(at(trafficRetention+time.Second), time.Millisecond, 200)
	if got := read(tr, "abc", at(0), at(3*time.Hour)); got.Requests != 3 {
		t.Errorf("%d requests, want 3: the first, over two hours old, gone", got.Requests)
	}
	if got := read(tr, "abc", at(time.Hour), at(time.Hour+time.Second)); got.Requests != 1 {
		t.Errorf("%d requests an hour and a second ago, want 1", got.Requests)
	}
}

// TestTrafficSealsASecondOnlyOnceNoRecorderHoldsIt plays a recorder that
// took the current second just before the next one began and adds to it
// after: its request is not lost.
func TestTrafficSealsASecondOnlyOnceNoRecorderHoldsIt(t *testing.T) {
	tr := newTraffic()
	rt := tr.of("abc", t0)
	rt.record(at(0), time.Millisecond, 200)
	slow := rt.cur.Load()
	slow.pins.Add(1) // the slow recorder pinned it and saw it unsealed

	rt.record(at(time.Second), time.Millisecond, 200) // the next second begins
	if !slow.sealed.Load() || len(rt.pending) != 1 || len(rt.sealed) != 0 {
		t.Fatalf("sealed %t, %d pending, %d sealed: want the pinned second marked sealed and kept pending", slow.sealed.Load(), len(rt.pending), len(rt.sealed))
	}
	if slow.add(bucketOf(time.Millisecond), false) {
		t.Error("a new recorder added to a sealed second")
	}
	slow.hist[bucketOf(time.Millisecond)].Add(1) // the slow recorder's add
	slow.errors.Add(1)
	slow.pins.Add(-1)
	if got := read(tr, "abc", at(0), at(time.Second)); got.Requests != 2 || got.Errors != 1 {
		t.Errorf("while pending: %+v, want 2 requests, 1 error", got)
	}

	rt.record(at(2*time.Second), time.Millisecond, 200)
	if len(rt.pending) != 0 || len(rt.sealed) != 2 {
		t.Fatalf("%d pending, %d sealed; want both past seconds sealed", len(rt.pending), len(rt.sealed))
	}
	if got := read(tr, "abc", at(0), at(time.Second)); got.Requests != 2 || got.Errors != 1 {
		t.Errorf("once sealed: %+v, want 2 requests, 1 error", got)
	}
	if got := read(tr, "abc", at(0), at(3*time.Second)); got.Requests != 4 {
		t.Errorf("%d requests in all, want 4", got.Requests)
	}
}

// TestTrafficRecordersAndReadersAtOnce runs under -race in CI: recorders
// cross seconds while readers merge windows; nothing is lost.
func TestTrafficRecordersAndReadersAtOnce(t *testing.T) {
	tr := newTraffic()
	rt := tr.of("abc", t0)
	const recorders, each = 4, 3000
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if got := read(tr, "abc", at(0), at(time.Minute)); got.Requests > recorders*each {
					t.Errorf("%d requests, more than were sent", got.Requests)
					return
				}
			}
		})
	}
	var wg sync.WaitGroup
	for r := range recorders {
		wg.Go(func() {
			for i := range each {
				code := 200
				if i%10 == r {
					code = 502
				}
				rt.record(at(time.Duration(i)*5*time.Millisecond), time.Duration(i)*time.Microsecond, code)
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	want := deploy.Traffic{Requests: recorders * each, Errors: recorders * each / 10}
	if got := read(tr, "abc", at(0), at(time.Minute)); got.Requests != want.Requests || got.Errors != want.Errors {
		t.Errorf("got %+v, want %+v", got, want)
	}
	var perSecond int64
	for s := range 16 {
		perSecond += read(tr, "abc", at(time.Duration(s)*time.Second), at(time.Duration(s+1)*time.Second)).Requests
	}
	if perSecond != want.Requests {
		t.Errorf("the seconds add up to %d requests, want %d", perSecond, want.Requests)
	}
}

func TestTrafficForgetsIdleReleasesNoProcessRuns(t *testing.T) {
	tr := newTraffic()
	recent := tr.of("recent", t0)
	recent.record(at(time.Hour), time.Millisecond, 200)
	running := tr.of("running", t0)
	tr.of("idle", t0).record(at(time.Minute), time.Millisecond, 200)
	tr.of("handed out late", at(time.Hour))

	tr.forget(at(trafficRetention+30*time.Minute), map[*releaseTraffic]bool{running: true})
	var kept []string
	for _, rt := range tr.list() {
		kept = append(kept, rt.release)
	}
	if want := []string{"handed out late", "recent", "running"}; !slices.Equal(kept, want) {
		t.Errorf("kept %q, want %q", kept, want)
	}
	if tr.of("recent", at(3*time.Hour)) != recent {
		t.Error("a kept release's figures were made afresh")
	}
}

func TestRecordAllocatesNothing(t *testing.T) {
	rt := newTraffic().of("abc", t0)
	rt.record(at(0), time.Millisecond, 200)
	allocs := testing.AllocsPerRun(1000, func() {
		rt.record(at(500*time.Millisecond), 3*time.Millisecond, 200)
		rt.record(at(500*time.Millisecond), 30*time.Millisecond, codeFailed)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per record, want 0", allocs)
	}
}

// BenchmarkRecord is what the proxy adds to a request: two clock reads and
// a record, from parallel requests of one release.
func BenchmarkRecord(b *testing.B) {
	rt := newTraffic().of("abc", time.Now())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			start := time.Now()
			end := time.Now()
			rt.record(end, end.Sub(start), 200)
		}
	})
}
