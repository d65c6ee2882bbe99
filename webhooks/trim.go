package webhooks

import (
	"bytes"

	"github.com/shipbot/shipbot/queue"
)

// trim leaves out of job's payload the top-level members that keep does
// not want (keep is given each member's key as it is between the quotes),
// writing what is left into dst's memory. The job's outline is made for
// the smaller document, and Dropped names what was left out. A payload
// without an outline (not an object, or an empty one) and a payload that
// loses nothing come back as they are.
//
// Only whole top-level members go, found with the outline intake's scan
// made, so trimming costs a copy of what is kept: a 24 KB push keeps
// about 7 KB (its commits, 18 KB, are read by no handler), and the store
// then compresses, writes and keeps a third of the bytes.
func trim(job queue.Job, keep func(key []byte) bool, dst []byte, names *interner) (queue.Job, []byte) {
	b, outline := job.Payload, job.Outline
	start := bytes.IndexByte(b, '{')
	if len(outline) == 0 || start < 0 {
		return job, dst
	}
	out := append(dst[:0], '{')
	var kept []int32
	var dropped []string
	prev := start + 1
	for _, e := range outline {
		end := int(e)
		// A member is `"key": value`, after whitespace and, past the
		// first, a comma: its key starts at the first quote.
		q := bytes.IndexByte(b[prev:end], '"')
		if q < 0 {
			return job, dst // not the outline of this payload
		}
		k := prev + q
		ke := keyEnd(b, k+1, end)
		if ke < 0 {
			return job, dst
		}
		key := b[k+1 : ke]
		if keep(key) {
			if len(kept) > 0 {
				out = append(out, ',')
			}
			out = append(out, b[k:end]...)
			kept = append(kept, int32(len(out)))
		} else {
			dropped = append(dropped, names.string(key, bytes.IndexByte(key, '\\') >= 0))
		}
		prev = end
	}
	if len(dropped) == 0 {
		return job, out[:0]
	}
	out = append(out, '}')
	job.Payload, job.Outline, job.Dropped = out, kept, dropped
	return job, out
}

// keyEnd returns the index of the quote that closes the string whose
// contents start at b[i], or -1 when none does before end.
func keyEnd(b []byte, i, end int) int {
	for ; i < end; i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}
