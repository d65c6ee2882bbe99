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
// Open addressing with linear probing: a slot is the id's 16 bytes and its
// expiry (unix ns, little-endian); an expiry of zero marks an empty slot.
// Deleting moves the entries after the hole back into it (Knuth's
// Algorithm R), so there are no tombstones and a lookup stops at the first
// empty slot. The table doubles when three quarters full; it is used under
// the store's mutex.
type idTable struct {
	mem   []byte // len(mem) == slotSize << (64 - shift)
	shift uint   // 64 - log2(slots)
	n     int
	seed  uint64
}

const (
	slotSize     = 24
	minTableBits = 10 // 1,024 slots, 24 KB
)

func newIDTable() idTable {
	return idTable{mem: allocSlots(slotSize << minTableBits), shift: 64 - minTableBits, seed: rand.Uint64()}
}

func (t *idTable) slots() uint64 { return uint64(len(t.mem) / slotSize) }

// home is the slot a probe for k starts at. The seed keeps ids chosen to
// collide from lining up on purpose.
func (t *idTable) home(k []byte) uint64 {
	h := binary.LittleEndian.Uint64(k) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(k[8:]), 31) ^ t.seed
	return (h * 0x9e3779b97f4a7c15) >> t.shift
}

func (t *idTable) slot(i uint64) []byte { return t.mem[i*slotSize : (i+1)*slotSize] }

func slotExp(s []byte) int64 { return int64(binary.LittleEndian.Uint64(s[16:])) }

// find returns the slot of k, or the empty slot where it would go.
func (t *idTable) find(k []byte) (i uint64, found bool) {
	mask := t.slots() - 1
	for i = t.home(k); ; i = (i + 1) & mask {
		s := t.slot(i)
		if slotExp(s) == 0 {
			return i, false
		}
		if bytes.Equal(s[:16], k) {
			return i, true
		}
	}
}

func (t *idTable) get(k []byte) (int64, bool) {
	i, ok := t.find(k)
	if !ok {
		return 0, false
	}
	return slotExp(t.slot(i)), true
}

// put stores k with exp, or keeps the later expiry k has. An expiry at or
// before the epoch is stored as 1 ns after it: zero marks an empty slot.
func (t *idTable) put(k []byte, exp int64) {
	exp = max(exp, 1)
	i, ok := t.find(k)
	s := t.slot(i)
	if ok {
		if slotExp(s) < exp {
			binary.LittleEndian.PutUint64(s[16:], uint64(exp))
		}
		return
	}
	copy(s, k)
	binary.LittleEndian.PutUint64(s[16:], uint64(exp))
	t.n++
	if uint64(t.n)*4 > t.slots()*3 {
		t.grow()
	}
}

// del removes k if its expiry is at or before exp.
func (t *idTable) del(k []byte, exp int64) {
	i, ok := t.find(k)
	if !ok || slotExp(t.slot(i)) > exp {
		return
	}
	mask := t.slots() - 1
	// Close the hole at i: an entry further along the run may move back
	// into it unless its home lies cyclically in (i, j], past the hole.
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		s := t.slot(j)
		if slotExp(s) == 0 {
			break
		}
		h := t.home(s[:16])
		if i <= j {
			if i < h && h <= j {
				continue
			}
		} else if i < h || h <= j {
			continue
		}
		copy(t.slot(i), s)
		i = j
	}
	clear(t.slot(i))
	t.n--
}

func (t *idTable) grow() {
	old := t.mem
	t.mem = allocSlots(2 * len(old))
	t.shift--
	for off := 0; off < len(old); off += slotSize {
		s := old[off : off+slotSize]
		if slotExp(s) != 0 {
			i, _ := t.find(s[:16])
			copy(t.slot(i), s)
		}
	}
	freeSlots(old)
}

// free gives the table's memory back; the table is unusable after.
func (t *idTable) free() {
	if t.mem != nil {
		freeSlots(t.mem)
		t.mem = nil
	}
}
