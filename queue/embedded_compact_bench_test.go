package queue

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// BenchmarkEmbeddedCompaction compacts a 100 MB file of which half is live
// (1,800 queued jobs of 24 KB; 1,800 more were acked) while intake runs at
// 1,000 jobs/s, and reports the compaction's time, its pause (commits held
// back), and the intake's worst latency while it ran, next to the worst in
// the half second before it. One iteration is one compaction; use
// -benchtime 3x.
func BenchmarkEmbeddedCompaction(b *testing.B) {
	const jobs = 3600
	var took, paused, worst, worstIdle []time.Duration
	var beforeMB, afterMB float64
	for i := range b.N {
		b.StopTimer()
		tune := defaultTuning()
		tune.compactEvery = time.Hour
		path := filepath.Join(b.TempDir(), fmt.Sprint("queue", i, ".db"))
		e, err := openEmbedded(path, Options{}, tune)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		for j := range jobs {
			if _, err := e.Enqueue(ctx, bigJob(fmt.Sprint("fill-", j))); err != nil {
				b.Fatal(err)
			}
		}
		for range jobs / 2 {
			l, err := e.Lease(ctx, "w", 0)
			if err != nil {
				b.Fatal(err)
			}
			if err := e.Ack(ctx, l); err != nil {
				b.Fatal(err)
			}
		}
		// The acks' deletes are committed with this empty write at the
		// latest.
		if err := e.commit(func(*wtx) error { return nil }); err != nil {
			b.Fatal(err)
		}
		if !e.shouldCompact() {
			b.Fatal("the half-acked file is not due for compaction")
		}

		stop := make(chan struct{})
		var lat []time.Duration
		var mu sync.Mutex
		var wg sync.WaitGroup
		wg.Go(func() {
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				start := time.Now()
				if _, err := e.Enqueue(ctx, bigJob(fmt.Sprint("live-", n))); err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				lat = append(lat, time.Since(start))
				mu.Unlock()
			}
		})
		// The same intake without a compaction, for comparison.
		time.Sleep(500 * time.Millisecond)
		mu.Lock()
		worstIdle = append(worstIdle, slices.Max(lat))
		lat = lat[:0]
		mu.Unlock()
		b.StartTimer()
		err = e.compact()
		b.StopTimer()
		close(stop)
		wg.Wait()
		if err != nil {
			b.Fatal(err)
		}
		r := e.lastCompaction()
		took, paused = append(took, r.Took), append(paused, r.Paused)
		worst = append(worst, slices.Max(lat))
		beforeMB += float64(r.Before) / (1 << 20) / float64(b.N)
		afterMB += float64(r.After) / (1 << 20) / float64(b.N)
		e.Close()
	}
	ms := func(d []time.Duration) float64 { return float64(slices.Max(d).Microseconds()) / 1000 }
	b.ReportMetric(ms(took), "max-took-ms")
	b.ReportMetric(ms(paused), "max-pause-ms")
	b.ReportMetric(ms(worst), "max-enqueue-ms")
	b.ReportMetric(ms(worstIdle), "idle-max-enqueue-ms")
	b.ReportMetric(beforeMB, "before-MB")
	b.ReportMetric(afterMB, "after-MB")
	b.ReportMetric(0, "ns/op")
}
