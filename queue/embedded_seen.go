package queue

// deliverySet holds every delivery id the embedded store remembers, with
// its expiry (unix ns), in memory. The file keeps them only in the expiries
// bucket, whose keys start with the expiry and so grow at its right edge;
// an index of the file keyed by the ids themselves, which are random
// (GitHub's are UUIDs), made every checkpoint rewrite about as many pages
// as it brought ids once the index was large, 6 KB written per delivery at
// half a million ids.
//
// An id in GitHub's form (a lowercase UUID) is kept as its 16 bytes in an
// idTable, outside the Go heap: 32–64 bytes of memory each, a slot of 24
// and the slots kept free (BenchmarkDeliverySet). Any other id is kept as
// a string in a map. The expiry stays exact to the nanosecond, as the
// dedupe window is.
type deliverySet struct {
	uuids idTable
	other map[string]int64
}

func newDeliverySet() deliverySet {
	return deliverySet{uuids: newIDTable(), other: make(map[string]int64)}
}

// get returns id's expiry, if the set has it (expired or not).
func (s *deliverySet) get(id []byte) (int64, bool) {
	if u, ok := parseUUID(id); ok {
		return s.uuids.get(u[:])
	}
	exp, ok := s.other[string(id)]
	return exp, ok
}

// holds reports whether id is remembered past now.
func (s *deliverySet) holds(id []byte, now int64) bool {
	exp, ok := s.get(id)
	return ok && exp > now
}

// put remembers id until exp, or keeps the later expiry it has.
func (s *deliverySet) put(id []byte, exp int64) {
	if u, ok := parseUUID(id); ok {
		s.uuids.put(u[:], exp)
		return
	}
	if old, ok := s.other[string(id)]; !ok || old < exp {
		s.other[string(id)] = exp
	}
}

// forget drops id as the sweep reaches its expiry exp, unless it was
// remembered again since, until later.
func (s *deliverySet) forget(id []byte, exp int64) {
	if u, ok := parseUUID(id); ok {
		s.uuids.del(u[:], exp)
		return
	}
	if old, ok := s.other[string(id)]; ok && old <= exp {
		delete(s.other, string(id))
	}
}

func (s *deliverySet) len() int { return s.uuids.len() + len(s.other) }

// free gives the UUIDs' memory back; the set is unusable after.
func (s *deliverySet) free() { s.uuids.free() }

// parseUUID reads id as a UUID in its canonical lowercase form,
// 8-4-4-4-12 hex digits. Only that form: an id in capitals is another id,
// and must not meet its lowercase twin in the same key.
func parseUUID(id []byte) (u [16]byte, ok bool) {
	if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' {
		return u, false
	}
	k := 0 // hex digits read
	for i, c := range id {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			continue
		}
		n := unhex(c)
		if n > 15 {
			return u, false
		}
		if k%2 == 0 {
			n <<= 4
		}
		u[k/2] |= n
		k++
	}
	return u, true
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return 255
}
