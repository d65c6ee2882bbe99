package queue_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shipbot/shipbot/internal/testenv"
	"github.com/shipbot/shipbot/queue"
)

// payloadSize is the signed webhook SPEC §11 measures intake with.
const payloadSize = 24 << 10

var benchStores = []struct {
	name string
	open func(b *testing.B) queue.Queue
}{
	{"redis", func(b *testing.B) queue.Queue {
		srv := testenv.StartRedis(b)
		client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		b.Cleanup(func() { client.Close() })
		q, err := queue.NewRedis(client, "bench", queue.Options{})
		if err != nil {
			b.Fatal(err)
		}
		return q
	}},
	{"embedded", func(b *testing.B) queue.Queue {
		q, err := queue.OpenEmbedded(filepath.Join(b.TempDir(), "queue.db"), queue.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { q.Close() })
		return q
	}},
}

// BenchmarkEnqueue is intake's share of a webhook: a durable, deduplicated
// store of a 24 KB payload, from many concurrent requests.
func BenchmarkEnqueue(b *testing.B) {
	for _, st := range benchStores {
		b.Run(st.name, func(b *testing.B) {
			q := st.open(b)
			payload := make([]byte, payloadSize)
			var seq atomic.Int64
			b.SetBytes(payloadSize)
			b.SetParallelism(8) // concurrent webhook requests, not CPUs
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					job := queue.Job{
						DeliveryID: fmt.Sprintf("bench-%d", seq.Add(1)),
						Event:      "push",
						Repo:       "octo/app",
						Payload:    payload,
					}
					if _, err := q.Enqueue(context.Background(), job); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkLeaseLatency measures SPEC §11's "job stored → worker has it" at
// 1,000 jobs/s: one producer paced by a ticker, one worker blocked in
// Lease, acks handed to another goroutine so the worker is back in Lease at
// once. enqueue-p50/p99 run from the start of Enqueue (so they include the
// fsync) to Lease returning; stored-p50/p99 from Enqueue returning (zero
// when the worker had the job first).
func BenchmarkLeaseLatency(b *testing.B) {
	for _, st := range benchStores {
		b.Run(st.name, func(b *testing.B) {
			q := st.open(b)
			ctx := context.Background()
			n := b.N
			start := make([]time.Time, n)
			stored := make([]time.Time, n)
			leased := make([]time.Time, n)

			acks := make(chan *queue.Lease, 1024)
			var wg sync.WaitGroup
			wg.Go(func() {
				for l := range acks {
					if err := q.Ack(ctx, l); err != nil {
						b.Error(err)
					}
				}
			})
			consumed := make(chan struct{})
			go func() {
				defer close(consumed)
				for range n {
					l, err := q.Lease(ctx, "bench", 10*time.Second)
					now := time.Now()
					if err != nil {
						b.Error(err)
						return
					}
					leased[binary.BigEndian.Uint64(l.Job.Payload)] = now
					acks <- l
				}
			}()

			payload := make([]byte, payloadSize)
			tick := time.NewTicker(time.Millisecond)
			b.ResetTimer()
			for i := range n {
				<-tick.C
				binary.BigEndian.PutUint64(payload, uint64(i))
				job := queue.Job{DeliveryID: fmt.Sprintf("lat-%d-%d", n, i), Event: "push", Payload: payload}
				start[i] = time.Now()
				if _, err := q.Enqueue(ctx, job); err != nil {
					b.Fatal(err)
				}
				stored[i] = time.Now()
			}
			tick.Stop()
			<-consumed
			b.StopTimer()
			close(acks)
			wg.Wait()

			fromStart := make([]time.Duration, n)
			fromStored := make([]time.Duration, n)
			for i := range n {
				fromStart[i] = leased[i].Sub(start[i])
				fromStored[i] = max(leased[i].Sub(stored[i]), 0)
			}
			report(b, "enqueue", fromStart)
			report(b, "stored", fromStored)
			b.ReportMetric(0, "ns/op") // paced, so time per op says nothing
		})
	}
}

func report(b *testing.B, name string, d []time.Duration) {
	slices.Sort(d)
	pct := func(p float64) float64 {
		return float64(d[min(len(d)-1, int(p*float64(len(d))))].Microseconds())
	}
	b.ReportMetric(pct(0.50), name+"-p50-µs")
	b.ReportMetric(pct(0.99), name+"-p99-µs")
}
