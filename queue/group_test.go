package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/shipbot/shipbot/internal/testenv"
)

// These tests look inside the Redis queue's groups (issue #17); the
// behaviour both implementations share is in conformance_group_test.go.

func groupTestOptions() Options {
	return Options{
		VisibilityTimeout: 10 * time.Second,
		MaxAttempts:       3,
		Backoff:           func(int) time.Duration { return 50 * time.Millisecond },
		DedupeWindow:      time.Hour,
	}
}

func startGroupRedis(t *testing.T) (*testenv.Redis, *redis.Client) {
	srv := testenv.StartRedis(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), DialerRetries: 1})
	t.Cleanup(func() { client.Close() })
	return srv, client
}

func newGroupQueue(t *testing.T, client *redis.Client, prefix string, opts Options) *Redis {
	q, err := NewRedis(client, prefix, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func testJob(id string) Job {
	return Job{DeliveryID: id, Event: "push", Repo: "octo/app", Payload: []byte(`{"delivery":"` + id + `"}`)}
}

// One group holding a delivery twice, a delivery stored before, and two
// new ones: each new delivery is stored once, in the order of the group,
// and every other call is a duplicate.
func TestRedisEnqueueGroupStoresEachDeliveryOnce(t *testing.T) {
	_, client := startGroupRedis(t)
	q := newGroupQueue(t, client, "g", groupTestOptions())
	ctx := context.Background()
	if _, err := q.Enqueue(ctx, testJob("old")); err != nil {
		t.Fatal(err)
	}
	ids := []string{"a", "b", "a", "old", "c", "b"}
	group := make([]*call[enqueueCall, string], len(ids))
	for i, id := range ids {
		meta := appendJob(nil, Job{DeliveryID: id, Event: "push"})
		group[i] = &call[enqueueCall, string]{in: enqueueCall{
			marker: q.deliveryPrefix + id, meta: meta, payload: []byte("payload " + id + fmt.Sprint(i)),
		}}
	}
	q.sendEnqueues(group)
	for i, c := range group {
		dup := i == 2 || i == 3 || i == 5
		switch {
		case dup && !errors.Is(c.err, ErrDuplicate):
			t.Errorf("call %d (%s) = %q, %v; want ErrDuplicate", i, ids[i], c.out, c.err)
		case !dup && (c.err != nil || c.out == ""):
			t.Errorf("call %d (%s) = %q, %v; want stored", i, ids[i], c.out, c.err)
		}
	}
	msgs, err := client.XRange(ctx, q.stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		got = append(got, m.Values["p"].(string))
	}
	want := []string{`{"delivery":"old"}`, "payload a0", "payload b1", "payload c4"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("stream holds payloads %q, want %q", got, want)
	}
	for _, id := range []string{"a", "b", "c"} {
		if seen, err := q.Seen(ctx, id); err != nil || !seen {
			t.Errorf("Seen(%s) = %v, %v", id, seen, err)
		}
	}
}

// A stream written before issue #17 holds jobs as one blob ("j"); Lease,
// retries and dead letters must still read them.
func TestRedisLeasesJobsOfTheOldEncoding(t *testing.T) {
	_, client := startGroupRedis(t)
	q := newGroupQueue(t, client, "old", groupTestOptions())
	ctx := context.Background()
	if err := q.ensureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	in := testJob("before-upgrade")
	in.InstallationID = 9
	in.EnqueuedAt = unixTime(time.Now().UnixNano())
	eid, err := client.XAdd(ctx, &redis.XAddArgs{Stream: q.stream, Values: []any{"j", appendJob(nil, in)}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	l, err := q.Lease(ctx, "w", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := in
	want.ID, want.Attempt = eid, 1
	if !reflect.DeepEqual(l.Job, want) {
		t.Errorf("leased\n%+v\nwant\n%+v", l.Job, want)
	}
	if err := q.Nack(ctx, l, "again", true); err != nil {
		t.Fatal(err)
	}
	l, err = q.Lease(ctx, "w", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want.Attempt = 2
	if !reflect.DeepEqual(l.Job, want) {
		t.Errorf("retried\n%+v\nwant\n%+v", l.Job, want)
	}
	if err := q.Nack(ctx, l, "for good", false); err != nil {
		t.Fatal(err)
	}
	dead, err := q.Dead(ctx, 1)
	if err != nil || len(dead) != 1 {
		t.Fatalf("Dead = %v, %v", dead, err)
	}
	if !reflect.DeepEqual(dead[0].Job, want) {
		t.Errorf("dead letter\n%+v\nwant\n%+v", dead[0].Job, want)
	}
}

// Entries with the payload apart: raw (written between issue #17's group
// commit and its compression) and compressed (Enqueue now, for a payload
// that shrinks). Both lease, go round a retry (where the scripts join meta
// and payload into one blob) and end as dead letters with the payload
// intact.
func TestRedisJobsWithPayloadApartSurviveRetryAndDeadLetter(t *testing.T) {
	_, client := startGroupRedis(t)
	ctx := context.Background()
	push := pushPayload(t)
	for _, tc := range []struct {
		name string
		add  func(q *Redis, in Job) (string, error)
	}{
		{"raw m and p", func(q *Redis, in Job) (string, error) {
			head := in
			head.Payload = nil
			return client.XAdd(ctx, &redis.XAddArgs{Stream: q.stream, Values: []any{"m", appendRecord(nil, head, ""), "p", in.Payload}}).Result()
		}},
		{"compressed", func(q *Redis, in Job) (string, error) {
			j, err := q.Enqueue(ctx, in)
			if err != nil {
				return "", err
			}
			e, err := client.XRange(ctx, q.stream, j.ID, j.ID).Result()
			if err != nil || len(e) != 1 {
				return "", fmt.Errorf("entry %s: %v %v", j.ID, e, err)
			}
			if p := e[0].Values["p"].(string); len(p) >= len(in.Payload)/2 {
				return "", fmt.Errorf("stored a %d-byte payload as %d bytes", len(in.Payload), len(p))
			}
			return j.ID, nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newGroupQueue(t, client, strings.ReplaceAll(tc.name, " ", "-"), groupTestOptions())
			if err := q.ensureGroup(ctx); err != nil {
				t.Fatal(err)
			}
			in := testJob("apart")
			in.Payload = push
			in.EnqueuedAt = unixTime(time.Now().UnixNano())
			eid, err := tc.add(q, in)
			if err != nil {
				t.Fatal(err)
			}
			want := in
			want.ID, want.Attempt = eid, 1
			for i, how := range []string{"leased", "retried"} {
				l, err := q.Lease(ctx, "w", 3*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				want.Attempt = i + 1
				if l.Job.EnqueuedAt = want.EnqueuedAt; !reflect.DeepEqual(l.Job, want) {
					t.Errorf("%s job %s (attempt %d) with a %d-byte payload; want %s (attempt %d) with %d bytes", how, l.Job.ID, l.Job.Attempt, len(l.Job.Payload), want.ID, want.Attempt, len(want.Payload))
				}
				if err := q.Nack(ctx, l, "no", i == 0); err != nil {
					t.Fatal(err)
				}
			}
			dead, err := q.Dead(ctx, 1)
			if err != nil || len(dead) != 1 {
				t.Fatalf("Dead = %v, %v", dead, err)
			}
			if !bytes.Equal(dead[0].Job.Payload, push) {
				t.Errorf("dead letter holds a %d-byte payload, want the %d-byte push", len(dead[0].Job.Payload), len(push))
			}
		})
	}
}

// Concurrent Lease calls get distinct jobs, each in its own consumer's
// pending list, and nothing is read for a caller that did not ask.
func TestRedisGroupedLeasesAreDistinct(t *testing.T) {
	_, client := startGroupRedis(t)
	q := newGroupQueue(t, client, "lease", groupTestOptions())
	ctx := context.Background()
	const leasers, jobs = 16, 24
	for i := range jobs {
		if _, err := q.Enqueue(ctx, testJob(fmt.Sprintf("l%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	leases := make([]*Lease, leasers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range leasers {
		wg.Go(func() {
			<-start
			l, err := q.Lease(ctx, fmt.Sprintf("c%d", i), time.Second)
			if err != nil {
				t.Errorf("Lease c%d: %v", i, err)
			}
			leases[i] = l
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	holder := map[string]string{}
	for i, l := range leases {
		if prev, ok := holder[l.Job.ID]; ok {
			t.Errorf("job %s leased by %s and c%d", l.Job.ID, prev, i)
		}
		holder[l.Job.ID] = fmt.Sprintf("c%d", i)
	}
	pending, err := client.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: q.stream, Group: q.group, Start: "-", End: "+", Count: 100}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != leasers {
		t.Errorf("%d entries leased, want %d: nothing may be read ahead of a caller", len(pending), leasers)
	}
	for _, p := range pending {
		if holder[p.ID] != p.Consumer {
			t.Errorf("entry %s is pending for %s, but %s leased it", p.ID, p.Consumer, holder[p.ID])
		}
	}
	if s, err := q.Stats(ctx); err != nil || s != (Stats{Ready: jobs - leasers, Leased: leasers}) {
		t.Errorf("Stats = %+v, %v", s, err)
	}
	for _, l := range leases {
		if err := q.Ack(ctx, l); err != nil {
			t.Errorf("Ack %s: %v", l.Job.ID, err)
		}
	}
}

// A stale lease settled in the same group as live ones fails alone.
func TestRedisSettleGroupFailsStaleLeaseAlone(t *testing.T) {
	_, client := startGroupRedis(t)
	opts := groupTestOptions()
	opts.VisibilityTimeout = 100 * time.Millisecond
	q := newGroupQueue(t, client, "settle", opts)
	ctx := context.Background()
	for _, id := range []string{"s1", "s2", "s3", "s4"} {
		if _, err := q.Enqueue(ctx, testJob(id)); err != nil {
			t.Fatal(err)
		}
	}
	var live []*Lease
	for i := range 4 {
		l, err := q.Lease(ctx, fmt.Sprintf("w%d", i), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		live = append(live, l)
	}
	// w0's lease expires and w9 reclaims the job: w0's token is stale.
	stale := live[0]
	reclaimed, err := q.Lease(ctx, "w9", 3*time.Second)
	if err != nil || reclaimed.Job.ID != stale.Job.ID {
		t.Fatalf("reclaim = %+v, %v; want job %s", reclaimed, err, stale.Job.ID)
	}
	live[0] = reclaimed

	// The group as the batcher would send it: acks and an extend mixed.
	settle := func(op byte, l *Lease) *call[settleCall, bool] {
		eid, count, consumer, _ := parseRedisToken(l.Token)
		return &call[settleCall, bool]{in: settleCall{op: op, eid: eid, count: count, consumer: consumer}}
	}
	group := []*call[settleCall, bool]{settle('e', live[1]), settle('a', stale), settle('a', live[0]), settle('a', live[1]), settle('a', live[1])}
	q.sendSettles(group)
	for i, want := range []bool{true, false, true, true, false} {
		if group[i].err != nil || group[i].out != want {
			t.Errorf("settle %d = %v, %v; want %v", i, group[i].out, group[i].err, want)
		}
	}

	// And through the public calls, all at once.
	errs := make([]error, 3)
	var wg sync.WaitGroup
	wg.Go(func() { errs[0] = q.Ack(ctx, stale) })
	wg.Go(func() { errs[1] = q.Extend(ctx, live[2]) })
	wg.Go(func() { errs[2] = q.Ack(ctx, live[3]) })
	wg.Wait()
	if !errors.Is(errs[0], ErrLeaseLost) || errs[1] != nil || errs[2] != nil {
		t.Errorf("stale Ack, Extend, Ack = %v; want ErrLeaseLost, nil, nil", errs)
	}
	if err := q.Ack(ctx, live[2]); err != nil {
		t.Errorf("Ack after Extend = %v", err)
	}
	if s, err := q.Stats(ctx); err != nil || s != (Stats{}) {
		t.Errorf("Stats = %+v, %v; want an empty queue", s, err)
	}
}

// Redis killed while groups are on the wire: every Enqueue that returned
// nil is in the stream once Redis is back (it fsyncs every write), and
// every one that failed says ErrUnavailable.
func TestRedisKilledDuringGroupsKeepsAcknowledgedJobs(t *testing.T) {
	srv, client := startGroupRedis(t)
	q := newGroupQueue(t, client, "kill", groupTestOptions())
	const callers = 64
	var (
		mu      sync.Mutex
		acked   = map[string]string{} // delivery id -> job id
		failed  atomic.Int64
		stop    atomic.Bool
		seq     atomic.Int64
		wg      sync.WaitGroup
		enough  = make(chan struct{})
		tellOne sync.Once
	)
	payload := make([]byte, 24<<10)
	for range callers {
		wg.Go(func() {
			for !stop.Load() {
				id := fmt.Sprintf("k%d", seq.Add(1))
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				j, err := q.Enqueue(ctx, Job{DeliveryID: id, Event: "push", Payload: payload})
				cancel()
				if err != nil {
					if !errors.Is(err, ErrUnavailable) {
						t.Errorf("Enqueue %s = %v, want an error wrapping ErrUnavailable", id, err)
					}
					failed.Add(1)
					continue
				}
				mu.Lock()
				acked[id] = j.ID
				if len(acked) == 300 {
					tellOne.Do(func() { close(enough) })
				}
				mu.Unlock()
			}
		})
	}
	select {
	case <-enough:
	case <-time.After(30 * time.Second):
		stop.Store(true)
		wg.Wait()
		t.Fatal("300 enqueues did not succeed within 30s")
	}
	srv.Kill()
	// Callers keep calling while Redis is down: they must fail, not hang
	// and not succeed.
	deadline := time.Now().Add(30 * time.Second)
	for failed.Load() < callers && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := failed.Load(); n < callers {
		t.Errorf("only %d enqueues failed in 30s while Redis was down", n)
	}
	srv.Start()
	stop.Store(true)
	wg.Wait()

	// After many failed dials, go-redis stops dialling and answers with the
	// last dial error until its background dial (once a second) gets
	// through.
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); client.Ping(ctx).Err() != nil && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	msgs, err := client.XRange(ctx, q.stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	inStream := map[string]string{}
	for _, m := range msgs {
		meta, stored := m.Values["m"].(string), m.Values["p"].(string)
		j, err := decodeParts([]byte(strings.TrimSuffix(meta, "\n")), []byte(stored))
		if err != nil {
			t.Fatalf("entry %s: %v", m.ID, err)
		}
		if prev, ok := inStream[j.DeliveryID]; ok {
			t.Errorf("%s stored twice: %s and %s", j.DeliveryID, prev, m.ID)
		}
		inStream[j.DeliveryID] = m.ID
		if !bytes.Equal(j.Payload, payload) {
			t.Errorf("entry %s holds a payload of %d bytes, want the %d enqueued", m.ID, len(j.Payload), len(payload))
		}
	}
	for id, jobID := range acked {
		if inStream[id] != jobID {
			t.Errorf("Enqueue %s returned job %s, but after the restart the stream has %q", id, jobID, inStream[id])
		}
	}
	t.Logf("%d enqueues acknowledged, %d failed, %d jobs in the stream after the restart", len(acked), failed.Load(), len(inStream))
}

// Close sends what is waiting and ends the groups' goroutines; the
// grouped calls fail after it, as unavailable.
func TestRedisCloseEndsGroups(t *testing.T) {
	_, client := startGroupRedis(t)
	q := newGroupQueue(t, client, "close", groupTestOptions())
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			if _, err := q.Enqueue(ctx, testJob(fmt.Sprintf("c%d", i))); err != nil && !errors.Is(err, ErrUnavailable) {
				t.Errorf("Enqueue during Close = %v", err)
			}
		})
	}
	leased := make(chan error, 1)
	go func() {
		_, err := q.Lease(ctx, "w", 10*time.Second)
		for err == nil {
			_, err = q.Lease(ctx, "w", 10*time.Second)
		}
		leased <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := <-leased; !errors.Is(err, ErrUnavailable) {
		t.Errorf("Lease waiting at Close = %v, want ErrUnavailable", err)
	}
	if _, err := q.Enqueue(ctx, testJob("late")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Enqueue after Close = %v, want ErrUnavailable", err)
	}
	if err := q.Ack(ctx, &Lease{Token: "1-1/1/w"}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ack after Close = %v, want ErrUnavailable", err)
	}
	q.enqueues.mu.Lock()
	q.settles.mu.Lock()
	q.leases.mu.Lock()
	running := q.enqueues.sending + q.settles.sending
	if q.leases.running {
		running++
	}
	q.leases.mu.Unlock()
	q.settles.mu.Unlock()
	q.enqueues.mu.Unlock()
	if running != 0 {
		t.Errorf("%d group goroutines still running after Close", running)
	}
}

// The collector of a Redis queue reports how many calls shared each round
// trip, by operation.
func TestRedisCollectorReportsGroupSizes(t *testing.T) {
	_, client := startGroupRedis(t)
	q := newGroupQueue(t, client, "metrics", groupTestOptions())
	ctx := context.Background()
	if _, err := q.Enqueue(ctx, testJob("m1")); err != nil {
		t.Fatal(err)
	}
	l, err := q.Lease(ctx, "w", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(ctx, l); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(q))
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, f := range families {
		if f.GetName() != "shipbot_queue_group_size" {
			continue
		}
		for _, m := range f.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetHistogram().GetSampleCount()
		}
	}
	for _, op := range []string{"enqueue", "lease", "settle"} {
		if got[op] == 0 {
			t.Errorf("shipbot_queue_group_size{op=%q} counted no round trip; got %v", op, got)
		}
	}
}

// Lease calls that give up early (short waits, contexts that end while a
// read for them is on the wire) lose no job: every job is leased and acked
// exactly once, and none is left leased to a caller that left.
func TestRedisLeasersGivingUpLoseNoJob(t *testing.T) {
	_, client := startGroupRedis(t)
	q := newGroupQueue(t, client, "giveup", groupTestOptions())
	const producers, each, workers = 4, 100, 8
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				if _, err := q.Enqueue(context.Background(), testJob(fmt.Sprintf("g%d-%d", p, i))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var mu sync.Mutex
	acked := map[string]int{}
	var done atomic.Int64
	deadline := time.Now().Add(30 * time.Second)
	for w := range workers {
		wg.Go(func() {
			for n := 0; done.Load() < producers*each && time.Now().Before(deadline); n++ {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(n%4)*time.Millisecond)
				l, err := q.Lease(ctx, fmt.Sprintf("w%d", w), time.Duration(n%3)*time.Millisecond)
				cancel()
				if errors.Is(err, ErrEmpty) || errors.Is(err, context.DeadlineExceeded) || (err == nil && l == nil) {
					continue
				}
				if err != nil {
					t.Errorf("Lease = %v", err)
					return
				}
				// A caller whose context ended while a read for it was on
				// the wire still gets what was read: it must settle it.
				if err := q.Ack(context.Background(), l); err != nil {
					t.Errorf("Ack %s = %v", l.Job.DeliveryID, err)
					return
				}
				mu.Lock()
				acked[l.Job.DeliveryID]++
				mu.Unlock()
				done.Add(1)
			}
		})
	}
	wg.Wait()
	if len(acked) != producers*each {
		t.Errorf("%d of %d jobs acked within 30s", len(acked), producers*each)
	}
	for id, n := range acked {
		if n != 1 {
			t.Errorf("%s acked %d times", id, n)
		}
	}
	if s, err := q.Stats(context.Background()); err != nil || s != (Stats{}) {
		t.Errorf("Stats = %+v, %v; want an empty queue", s, err)
	}
}

// TestClaimRedeliverySentTwice: the same ClaimRedelivery call arriving at
// Redis twice (go-redis resends after a network error, and Redis may have
// run the first) holds the claim both times; another call does not.
func TestClaimRedeliverySentTwice(t *testing.T) {
	_, client := startGroupRedis(t)
	q, err := NewRedis(client, "resend", Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	keys := []string{q.redeliveryPrefix + "guid-1"}
	ttl := time.Minute.Milliseconds()
	for i, attempt := range []string{"attempt-a", "attempt-a", "attempt-b"} {
		n, err := q.scripts.claim.Run(ctx, client, keys, attempt, ttl).Int64()
		if want := int64(map[bool]int{true: 1}[i < 2]); err != nil || n != want {
			t.Errorf("send %d (%s): %d, %v; want %d", i+1, attempt, n, err, want)
		}
	}
	if ok, err := q.ClaimRedelivery(ctx, "guid-1"); err != nil || ok {
		t.Errorf("another call: %v, %v; want false (claimed)", ok, err)
	}
	if ok, err := q.ClaimRedelivery(ctx, "guid-2"); err != nil || !ok {
		t.Errorf("a new id: %v, %v; want true", ok, err)
	}
}
