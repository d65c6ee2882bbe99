package queue

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Every id keeps its own entry: a UUID in capitals, without its dashes or
// with a letter past f is another id than the lowercase UUID, whatever
// form the set keeps it in.
func TestDeliverySetKeepsEachIDApart(t *testing.T) {
	const uuid = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
	u, ok := parseUUID([]byte(uuid))
	if !ok || hex.EncodeToString(u[:]) != strings.ReplaceAll(uuid, "-", "") {
		t.Fatalf("parseUUID(%s) = %x, %v", uuid, u, ok)
	}
	ids := []string{
		uuid,
		strings.ToUpper(uuid),
		strings.ReplaceAll(uuid, "-", ""),
		"72d3162e-cc78-11e3-81ab-4c9367dc095g",
		"72d3162e-cc78-11e3-81ab-4c9367dc09580",
		"72d3162e+cc78-11e3-81ab-4c9367dc0958",
		"d-1",
		"",
	}
	s := newDeliverySet()
	for i, id := range ids {
		s.put([]byte(id), int64(100+i))
	}
	if s.len() != len(ids) || s.uuids.len() != 1 {
		t.Fatalf("%d ids make %d entries, %d of them as UUIDs; want %d, 1", len(ids), s.len(), s.uuids.len(), len(ids))
	}
	for i, id := range ids {
		if exp, ok := s.get([]byte(id)); !ok || exp != int64(100+i) {
			t.Errorf("get(%q) = %d, %v; want %d", id, exp, ok, 100+i)
		}
	}
	// An earlier expiry does not shorten a later one; a later one wins.
	for _, id := range []string{uuid, "d-1"} {
		s.put([]byte(id), 1)
		if exp, _ := s.get([]byte(id)); exp < 100 {
			t.Errorf("put(%q, 1) shortened its expiry to %d", id, exp)
		}
		s.put([]byte(id), 1000)
		if exp, _ := s.get([]byte(id)); exp != 1000 {
			t.Errorf("put(%q, 1000) left expiry %d", id, exp)
		}
		// The sweep of an earlier expiry keeps the id; of its own, drops it.
		s.forget([]byte(id), 999)
		if _, ok := s.get([]byte(id)); !ok {
			t.Errorf("forget(%q) before its expiry dropped it", id)
		}
		s.forget([]byte(id), 1000)
		if _, ok := s.get([]byte(id)); ok {
			t.Errorf("forget(%q) at its expiry kept it", id)
		}
	}
	if s.len() != len(ids)-2 {
		t.Errorf("%d entries left, want %d", s.len(), len(ids)-2)
	}
}

// A file written before the delivery ids moved to memory has them in a
// bucket keyed by id as well as in the expiries bucket: opened now, it
// de-duplicates the ids still in their window, forgets the others, and
// its bucket by id is emptied.
func TestFileFromBeforeTheSetStillDeduplicates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queue.db")
	db, err := bolt.Open(path, 0o600, boltOptions())
	if err != nil {
		t.Fatal(err)
	}
	live := time.Now().Add(time.Hour).UnixNano()
	gone := time.Now().Add(-time.Minute).UnixNano()
	old := map[string]int64{
		"72d3162e-cc78-11e3-81ab-4c9367dc0958": live,
		"old-live":                             live,
		"old-gone":                             gone,
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range buckets {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		for id, exp := range old {
			v := binary.BigEndian.AppendUint64(nil, uint64(exp))
			if err := tx.Bucket([]byte(bucketDeliveries)).Put([]byte(id), v); err != nil {
				return err
			}
			k := append(append(v, kindDelivery), id...)
			if err := tx.Bucket([]byte(bucketExpiries)).Put(k, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	e := openTest(t, path, Options{}, testTuning())
	ctx := context.Background()
	for id, exp := range old {
		seen, err := e.Seen(ctx, id)
		if err != nil || seen != (exp == live) {
			t.Errorf("Seen(%s) = %v, %v; want %v", id, seen, err, exp == live)
		}
		_, err = e.Enqueue(ctx, Job{DeliveryID: id})
		if exp == live && !errors.Is(err, ErrDuplicate) {
			t.Errorf("Enqueue(%s), remembered for an hour more: %v, want ErrDuplicate", id, err)
		}
		if exp == gone && err != nil {
			t.Errorf("Enqueue(%s), past its window: %v", id, err)
		}
	}
	if n := bucketKeys(t, e, bucketDeliveries); n != 0 {
		t.Errorf("the bucket by id still has %d ids", n)
	}
}

// forgetExpired deletes forgetRound expired ids per commit and says when
// there may be more; the rounds leave nothing expired in the file or in
// memory, and an id remembered again until later stays in both.
func TestForgetExpiredTakesRoundsAndEmptiesMemory(t *testing.T) {
	e := openTest(t, filepath.Join(t.TempDir(), "queue.db"), Options{}, testTuning())
	past := time.Now().Add(-time.Second).UnixNano()
	later := time.Now().Add(time.Hour).UnixNano()
	n := forgetRound + 50
	remember1 := func(id string, exp int64) func(*wtx) error {
		return func(tx *wtx) error { return remember(tx, kindDelivery, []byte(id), exp) }
	}
	err := e.commit(func(tx *wtx) error {
		for i := range n {
			if err := remember1(fmt.Sprintf("x-%d", i), past)(tx); err != nil {
				return err
			}
		}
		if err := remember1("again", past)(tx); err != nil {
			return err
		}
		return remember1("again", later)(tx)
	})
	if err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	for i := range n {
		e.seen.put(fmt.Appendf(nil, "x-%d", i), past)
	}
	e.seen.put([]byte("again"), past)
	e.seen.put([]byte("again"), later)
	e.mu.Unlock()

	now := time.Now()
	rounds := 0
	for more := true; more; rounds++ {
		if rounds > 3 {
			t.Fatal("forgetExpired still finds more after 3 rounds")
		}
		if more, err = e.forgetExpired(now); err != nil {
			t.Fatal(err)
		}
	}
	if rounds != 2 {
		t.Errorf("%d expired ids took %d rounds, want 2", n+1, rounds)
	}
	e.mu.Lock()
	left := e.seen.len()
	e.mu.Unlock()
	if x := bucketKeys(t, e, bucketExpiries); left != 1 || x != 1 {
		t.Errorf("%d ids left in memory and %d in the file; want only the one remembered again", left, x)
	}
	if seen, err := e.Seen(context.Background(), "again"); err != nil || !seen {
		t.Errorf("Seen(again) = %v, %v; want true", seen, err)
	}
}

// BenchmarkDeliverySet remembers b.N GitHub-style delivery ids (random
// UUIDs): ns/op is one put, B/id the memory the set holds per id (its
// table, outside the Go heap, and what the heap holds after a GC),
// heap-B/id the part in the Go heap, grow-ms the longest put (one that
// doubled a shard; ns/op includes timing every put).
// Run with a count large enough for the map's growth to average out, e.g.
// -benchtime 1000000x.
func BenchmarkDeliverySet(b *testing.B) {
	ids := make([][]byte, b.N)
	r := rand.NewChaCha8([32]byte{7})
	for i := range ids {
		ids[i] = randomUUID(r)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	s := newDeliverySet()
	var longest time.Duration
	for i, id := range ids {
		// The longest put is one that doubled a shard: the longest pause
		// the store's mutex sees from the table.
		start := time.Now()
		s.put(id, int64(i+1))
		longest = max(longest, time.Since(start))
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if s.len() != b.N {
		b.Fatalf("%d ids in the set, want %d", s.len(), b.N)
	}
	heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	b.ReportMetric((heap+float64(s.uuids.bytes()))/float64(b.N), "B/id")
	b.ReportMetric(heap/float64(b.N), "heap-B/id")
	b.ReportMetric(float64(longest.Microseconds())/1000, "grow-ms")
	runtime.KeepAlive(ids)
	s.free()
}

// BenchmarkEmbeddedOpenRemembering opens a file that remembers b.N
// delivery ids (random UUIDs, as GitHub's): ns/op is the time opening
// takes per id, reading them back into memory.
func BenchmarkEmbeddedOpenRemembering(b *testing.B) {
	path := filepath.Join(b.TempDir(), "queue.db")
	e, err := openEmbedded(path, Options{}, testTuning())
	if err != nil {
		b.Fatal(err)
	}
	r := rand.NewChaCha8([32]byte{9})
	exp := time.Now().Add(time.Hour).UnixNano()
	for done := 0; done < b.N; {
		n := min(b.N-done, forgetRound)
		err := e.commit(func(tx *wtx) error {
			for range n {
				if err := remember(tx, kindDelivery, randomUUID(r), exp); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		done += n
	}
	if err := e.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	e, err = openEmbedded(path, Options{}, testTuning())
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	if n := e.seen.len(); n != b.N {
		b.Fatalf("%d ids remembered after opening, want %d", n, b.N)
	}
}

// The id table answers as a map does through puts, deletes and growth,
// from the default size and from shards of two slots, where every run of
// entries wraps around the end of its shard.
func TestIDTableMatchesAMap(t *testing.T) {
	for _, start := range []uint{minShardBits, 1} {
		t.Run(fmt.Sprintf("%d slots a shard", 1<<start), func(t *testing.T) {
			tab := newIDTableBits(start)
			tab.seed = 12345
			defer tab.free()
			r := rand.New(rand.NewPCG(1, uint64(start)))
			keys := make([][16]byte, 5000)
			for i := range keys {
				binary.LittleEndian.PutUint64(keys[i][:], r.Uint64())
				binary.LittleEndian.PutUint64(keys[i][8:], r.Uint64())
			}
			model := map[[16]byte]int64{}
			check := func(op int) {
				t.Helper()
				if tab.len() != len(model) {
					t.Fatalf("op %d: table holds %d ids, the map %d", op, tab.len(), len(model))
				}
				for _, k := range keys {
					want, wok := model[k]
					got, gok := tab.get(k[:])
					if got != want || gok != wok {
						t.Fatalf("op %d: get(%x) = %d, %v; the map has %d, %v", op, k, got, gok, want, wok)
					}
				}
				occupied := 0
				for si := range tab.shards {
					sh := &tab.shards[si]
					n := 0
					for i := range sh.slots() {
						if s := sh.slot(i); slotExp(s) != 0 {
							n++
							if _, ok := model[[16]byte(s[:16])]; !ok {
								t.Fatalf("op %d: shard %d slot %d holds %x, which the map does not have", op, si, i, s[:16])
							}
							if got, _ := tab.shard(s[:16]); got != sh {
								t.Fatalf("op %d: %x is in shard %d, not its own", op, s[:16], si)
							}
						}
					}
					if n != sh.n {
						t.Fatalf("op %d: shard %d has %d slots occupied and counts %d", op, si, n, sh.n)
					}
					occupied += n
				}
				if occupied != tab.len() {
					t.Fatalf("op %d: %d slots occupied for %d ids", op, occupied, tab.len())
				}
			}
			for op := range 60000 {
				// Grow to all 5,000 keys, then shrink and grow again.
				live := len(keys)
				if op/20000 == 1 {
					live = 300
				}
				k := keys[r.IntN(live)]
				exp := r.Int64N(1000) + 1
				switch c := r.IntN(10); {
				case c < 5 && op/20000 != 1:
					tab.put(k[:], exp)
					model[k] = max(model[k], exp)
				default:
					// Deletes happen at the expiry or later only.
					tab.del(k[:], exp)
					if old, ok := model[k]; ok && old <= exp {
						delete(model, k)
					}
					if op/20000 == 1 {
						k = keys[live+r.IntN(len(keys)-live)]
						tab.del(k[:], 1000)
						delete(model, k)
					}
				}
				if op%5000 == 4999 {
					check(op)
				}
			}
			check(60000)
		})
	}
}

// randomUUID is 16 bytes of r as a delivery id in GitHub's form.
func randomUUID(r *rand.ChaCha8) []byte {
	var u [16]byte
	_, _ = r.Read(u[:]) // never fails
	h := hex.EncodeToString(u[:])
	return []byte(h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:])
}
