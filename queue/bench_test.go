package queue_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/shipbot/shipbot/fixtures"
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

// fsyncModes are the two ways Redis is run: the tests' appendfsync always
// (every acknowledged write is on disk, so a round trip includes an fsync)
// and everysec, which bench/intake.sh and most deployments use, where the
// CPU of both sides is what counts.
var fsyncModes = []string{"always", "everysec"}

// openRedisBench starts a redis-server of the benchmark's own with
// appendfsync fsync and a queue on it whose metrics reg gathers.
func openRedisBench(b *testing.B, fsync string) (queue.Queue, *prometheus.Registry, *cpuMeter) {
	srv := testenv.StartRedis(b)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 128})
	b.Cleanup(func() { client.Close() })
	if err := client.ConfigSet(context.Background(), "appendfsync", fsync).Err(); err != nil {
		b.Fatal(err)
	}
	// The backlog a benchmark builds (hundreds of MB) would make Redis
	// rewrite its append-only file again and again, forking each time; a
	// queue whose workers keep up stays small, so that cost is not the
	// queue's.
	if err := client.ConfigSet(context.Background(), "auto-aof-rewrite-percentage", "0").Err(); err != nil {
		b.Fatal(err)
	}
	q, err := queue.NewRedis(client, "bench", queue.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { q.Close() })
	reg := prometheus.NewRegistry()
	reg.MustRegister(queue.NewCollector(q))
	return q, reg, &cpuMeter{b: b, client: client}
}

// cpuMeter tells the CPU time Redis and this process spent between start
// and report: on two cores shared by both, throughput is CPU per job.
type cpuMeter struct {
	b             *testing.B
	client        *redis.Client
	redis0, self0 time.Duration
}

func (m *cpuMeter) start() { m.redis0, m.self0 = m.redisCPU(), selfCPU(m.b) }

func (m *cpuMeter) report(jobs int) {
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(jobs) }
	m.b.ReportMetric(per(m.redisCPU()-m.redis0), "redis-cpu-µs/job")
	m.b.ReportMetric(per(selfCPU(m.b)-m.self0), "go-cpu-µs/job")
}

func (m *cpuMeter) redisCPU() time.Duration {
	info, err := m.client.Info(context.Background(), "cpu").Result()
	if err != nil {
		m.b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEnqueueLatency is one webhook request at a time, a 24 KB push
// of 25 commits every millisecond: the p50 and p99 of Enqueue alone, with
// nothing else in flight, so that its own overhead shows (on everysec, a
// round trip and Redis' write; on always, an fsync too).
func BenchmarkEnqueueLatency(b *testing.B) {
	for _, fsync := range fsyncModes {
		b.Run("fsync="+fsync, func(b *testing.B) {
			q, _, _ := openRedisBench(b, fsync)
			ctx := context.Background()
			payload := fixtures.LargePush(payloadSize)
			took := make([]time.Duration, 0, b.N)
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			b.ResetTimer()
			for i := range b.N {
				<-tick.C
				job := queue.Job{DeliveryID: fmt.Sprintf("one-%d-%d", b.N, i), Event: "push", Payload: payload}
				start := time.Now()
				if _, err := q.Enqueue(ctx, job); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			b.StopTimer()
			report(b, "enqueue", took)
			b.ReportMetric(0, "ns/op") // paced, so time per op says nothing
		})
	}
}

// BenchmarkEnqueueConcurrent is intake under load (issue #17): 64 webhook
// requests at once, each storing a 24 KB push of 25 commits (about 8 KB
// once compressed, as intake stores it; a buffer of zeros compressed to
// almost nothing and hid what Redis does with the bytes) from a buffer it
// reuses for the next, as intake does. jobs/s is the throughput;
// group-size the mean number of jobs that shared one round trip to Redis.
func BenchmarkEnqueueConcurrent(b *testing.B) {
	for _, fsync := range fsyncModes {
		b.Run("fsync="+fsync, func(b *testing.B) { benchEnqueueConcurrent(b, fsync) })
	}
}

func benchEnqueueConcurrent(b *testing.B, fsync string) {
	const callers = 64
	q, reg, cpu := openRedisBench(b, fsync)
	ctx := context.Background()
	var next atomic.Int64
	before := groupSizes(b, reg)
	b.SetBytes(payloadSize)
	b.ResetTimer()
	cpu.start()
	start := time.Now()
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			payload := fixtures.LargePush(payloadSize)
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				binary.BigEndian.PutUint64(payload, uint64(i))
				job := queue.Job{DeliveryID: fmt.Sprintf("conc-%d-%d", b.N, i), Event: "push", Repo: "octo/app", Payload: payload}
				if _, err := q.Enqueue(ctx, job); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	cpu.report(b.N)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
	reportGroupSize(b, "enqueue", before, groupSizes(b, reg))
}

// BenchmarkDrain is the workers' side (issue #17): a backlog of b.N jobs
// with 24 KB payloads, stored before the timer starts, drained by 16
// workers that lease and ack each job at once (a handler that does
// nothing). jobs/s is the drain rate.
func BenchmarkDrain(b *testing.B) {
	for _, fsync := range fsyncModes {
		b.Run("fsync="+fsync, func(b *testing.B) { benchDrain(b, fsync) })
	}
}

func benchDrain(b *testing.B, fsync string) {
	const workers, fillers = 16, 64
	q, reg, cpu := openRedisBench(b, fsync)
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range fillers {
		wg.Go(func() {
			payload := fixtures.LargePush(payloadSize)
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				job := queue.Job{DeliveryID: fmt.Sprintf("drain-%d-%d", b.N, i), Event: "push", Payload: payload}
				if _, err := q.Enqueue(ctx, job); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	before := groupSizes(b, reg)
	var done atomic.Int64
	b.ResetTimer()
	cpu.start()
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			consumer := fmt.Sprintf("w%d", w)
			for done.Load() < int64(b.N) {
				l, err := q.Lease(ctx, consumer, 100*time.Millisecond)
				if errors.Is(err, queue.ErrEmpty) {
					continue
				}
				if err != nil {
					b.Error(err)
					return
				}
				if err := q.Ack(ctx, l); err != nil {
					b.Error(err)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	cpu.report(b.N)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
	reportGroupSize(b, "lease", before, groupSizes(b, reg))
	reportGroupSize(b, "settle", before, groupSizes(b, reg))
}

// groupSizes reads shipbot_queue_group_size as op -> [sum, count]; empty
// when the queue groups nothing (the code before issue #17).
func groupSizes(b *testing.B, reg *prometheus.Registry) map[string][2]float64 {
	families, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	out := map[string][2]float64{}
	for _, f := range families {
		if f.GetName() != "shipbot_queue_group_size" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" {
					h := m.GetHistogram()
					out[l.GetValue()] = [2]float64{h.GetSampleSum(), float64(h.GetSampleCount())}
				}
			}
		}
	}
	return out
}

func reportGroupSize(b *testing.B, op string, before, after map[string][2]float64) {
	a, ok := after[op]
	if !ok {
		return
	}
	if n := a[1] - before[op][1]; n > 0 {
		b.ReportMetric((a[0]-before[op][0])/n, op+"-group-size")
	}
}
