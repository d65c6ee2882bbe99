package worker

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shipbot/shipbot/internal/testenv"
	"github.com/shipbot/shipbot/queue"
)

// acking counts the jobs a pool acked, on the real queue.
type acking struct {
	queue.Queue
	acked atomic.Int64
	done  chan struct{}
	want  int64
}

func (a *acking) Ack(ctx context.Context, l *queue.Lease) error {
	err := a.Queue.Ack(ctx, l)
	if a.acked.Add(1) == a.want {
		close(a.done)
	}
	return err
}

// BenchmarkPoolDrain is the rate at which a pool empties a backlog of b.N
// jobs (24 KB payloads, like GitHub's deliveries) from a real Redis with a
// handler that does nothing: the worker side's own cost per job, leasing
// and acking included (SPEC §11 and issue #17: ≥ 5,000 jobs/s).
func BenchmarkPoolDrain(b *testing.B) {
	r := testenv.StartRedis(b)
	client := redis.NewClient(&redis.Options{Addr: r.Addr(), PoolSize: 64})
	b.Cleanup(func() { client.Close() })
	payload := bytes.Repeat([]byte("x"), 24<<10)
	for _, size := range []int{4, 16, 32} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			q, err := queue.NewRedis(client, fmt.Sprintf("bench%d-%d", size, time.Now().UnixNano()), queue.Options{})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			pipe := make(chan error, 64)
			for i := 0; i < b.N; i++ {
				go func(i int) {
					_, err := q.Enqueue(ctx, queue.Job{DeliveryID: fmt.Sprintf("d-%d", i), Event: "push", Payload: payload})
					pipe <- err
				}(i)
				if i >= 63 {
					if err := <-pipe; err != nil {
						b.Fatal(err)
					}
				}
			}
			for i := 0; i < min(b.N, 63); i++ {
				if err := <-pipe; err != nil {
					b.Fatal(err)
				}
			}
			a := &acking{Queue: q, done: make(chan struct{}), want: int64(b.N)}
			rt := NewRouter()
			rt.Handle("push", func(context.Context, queue.Job) error { return nil })
			p := NewPool(a, rt, Options{Size: size, Logger: quiet()})
			runCtx, stop := context.WithCancel(ctx)
			ended := make(chan struct{})
			b.ResetTimer()
			start := time.Now()
			go func() { p.Run(runCtx); close(ended) }()
			select {
			case <-a.done:
			case <-time.After(5 * time.Minute):
				b.Fatalf("only %d of %d jobs acked", a.acked.Load(), b.N)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			stop()
			<-ended
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
		})
	}
}
