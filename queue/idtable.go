package queue

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
)

// idTable is a hash set of 16-byte ids (GitHub's delivery UUIDs), each with
// an expiry, in memory outside the Go heap where the platform allows it
// (see allocSlots): 32–64 bytes per id, 48 MB for a million. In a Go map a
// million took 56 MB of heap, and the garbage collector lets the heap grow
// to a multiple of what is live (three times, at the embedded store's
// GOGC=200), so they held about 170 MB of RSS.
//
// The ids are spread over idShards shards by their hash, each a table of
// its own that doubles when three quarters full: a doubling holds the
// store's mutex while it copies one shard, a 64th of the ids (about 1 ms
// at a million, where one table took 73 ms).
//
// Each shard is open addressing with linear probing: a slot is the id's 16
// bytes and its expiry (unix ns, little-endian); an expiry of zero marks an
// empty slot. Deleting moves the entries after the hole back into it
// (Knuth's Algorithm R), so there are no tombstones and a lookup stops at
// the first empty slot. The table is used under the store's mutex.
type idTable struct {
	shards [idShards]idShard
	seed   uint64
}

type idShard struct {
	mem   []byte // len(mem) == slotSize << (64 - shift)
	shift uint   // 64 - log2(slots)
	n     int
}

const (
	slotSize     = 24
	idShardBits  = 6
	idShards     = 1 << idShardBits
	minShardBits = 7 // 128 slots, 3 KB, not resident until written
)

func newIDTable() idTable { return newIDTableBits(minShardBits) }

// newIDTableBits starts every shard at 2^b slots.
func newIDTableBits(b uint) idTable {
	t := idTable{seed: rand.Uint64()}
	for i := range t.shards {
		t.shards[i] = idShard{mem: allocSlots(slotSize << b), shift: 64 - b}
	}
	return t
}

// shard hashes k's 16 bytes, mixed with the seed, which keeps ids chosen
// to collide from lining up on purpose. The hash's top idShardBits pick
// the shard; h is the bits below them, for the slot (see home).
func (t *idTable) shard(k []byte) (s *idShard, h uint64) {
	x := binary.LittleEndian.Uint64(k) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(k[8:]), 31) ^ t.seed
	x *= 0x9e3779b97f4a7c15
	return &t.shards[x>>(64-idShardBits)], x << idShardBits
}

// len is how many ids the table holds.
func (t *idTable) len() int {
	n := 0
	for i := range t.shards {
		n += t.shards[i].n
	}
	return n
}

func (t *idTable) get(k []byte) (int64, bool) {
	s, h := t.shard(k)
	i, ok := s.find(k, h)
	if !ok {
		return 0, false
	}
	return slotExp(s.slot(i)), true
}

// put stores k with exp, or keeps the later expiry k has. An expiry at or
// before the epoch is stored as 1 ns after it: zero marks an empty slot.
func (t *idTable) put(k []byte, exp int64) {
	exp = max(exp, 1)
	s, h := t.shard(k)
	i, ok := s.find(k, h)
	sl := s.slot(i)
	if ok {
		if slotExp(sl) < exp {
			binary.LittleEndian.PutUint64(sl[16:], uint64(exp))
		}
		return
	}
	copy(sl, k)
	binary.LittleEndian.PutUint64(sl[16:], uint64(exp))
	s.n++
	if uint64(s.n)*4 > s.slots()*3 {
		s.grow(t)
	}
}

// del removes k if its expiry is at or before exp.
func (t *idTable) del(k []byte, exp int64) {
	s, h := t.shard(k)
	i, ok := s.find(k, h)
	if !ok || slotExp(s.slot(i)) > exp {
		return
	}
	mask := s.slots() - 1
	// Close the hole at i: an entry further along the run may move back
	// into it unless its home lies cyclically in (i, j], past the hole.
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		sl := s.slot(j)
		if slotExp(sl) == 0 {
			break
		}
		_, hj := t.shard(sl[:16])
		home := s.home(hj)
		if i <= j {
			if i < home && home <= j {
				continue
			}
		} else if i < home || home <= j {
			continue
		}
		copy(s.slot(i), sl)
		i = j
	}
	clear(s.slot(i))
	s.n--
}

// free gives the table's memory back; the table is unusable after.
func (t *idTable) free() {
	for i := range t.shards {
		if s := &t.shards[i]; s.mem != nil {
			freeSlots(s.mem)
			s.mem = nil
		}
	}
}

// bytes is the memory the table holds.
func (t *idTable) bytes() int {
	n := 0
	for i := range t.shards {
		n += len(t.shards[i].mem)
	}
	return n
}

func (s *idShard) slots() uint64 { return uint64(len(s.mem) / slotSize) }

func (s *idShard) slot(i uint64) []byte { return s.mem[i*slotSize : (i+1)*slotSize] }

// home is the slot a probe for an id starts at, from its hash with the
// shard's bits shifted out.
func (s *idShard) home(h uint64) uint64 { return h >> s.shift }

func slotExp(sl []byte) int64 { return int64(binary.LittleEndian.Uint64(sl[16:])) }

// find returns the slot of k (whose hash, shard bits shifted out, is h),
// or the empty slot where it would go.
func (s *idShard) find(k []byte, h uint64) (i uint64, found bool) {
	mask := s.slots() - 1
	for i = s.home(h); ; i = (i + 1) & mask {
		sl := s.slot(i)
		if slotExp(sl) == 0 {
			return i, false
		}
		if bytes.Equal(sl[:16], k) {
			return i, true
		}
	}
}

func (s *idShard) grow(t *idTable) {
	old := s.mem
	s.mem = allocSlots(2 * len(old))
	s.shift--
	for off := 0; off < len(old); off += slotSize {
		sl := old[off : off+slotSize]
		if slotExp(sl) != 0 {
			_, h := t.shard(sl[:16])
			i, _ := s.find(sl[:16], h)
			copy(s.slot(i), sl)
		}
	}
	freeSlots(old)
}
