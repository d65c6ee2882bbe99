package handlers

import (
	"encoding"
	"encoding/json"
	"math/bits"
	"reflect"
	"strings"
	"sync"

	"github.com/shipbot/shipbot/internal/jsonscan"
)

// unmarshal decodes data into v (a pointer) exactly as json.Unmarshal
// does, but fast for the large payloads GitHub sends when v is a small
// struct: encoding/json walks every byte of a 24 KB delivery through its
// general state machine twice (validation, then decoding with skips), about
// 100 µs, though a handler reads a dozen fields of it.
//
// Instead one validating pass over data copies out only the members of
// objects whose key could name a field of v's type (a superset: case and
// escapes are not resolved, that is left to encoding/json), and
// json.Unmarshal decodes that small document. Everything encoding/json
// decides — which key matches which field, duplicates, null, type
// mismatches — it still decides, on the same members in the same order.
// When data is not valid JSON, or the small document does not decode,
// json.Unmarshal runs on data itself, so errors are exactly its errors.
//
// outline is the payload's Job.Outline, or nil: where each top-level member
// of data ends, so members no field can take are stepped over, not
// scanned. It is only ever set for a document intake validated.
func unmarshal(data []byte, outline []int32, v any) error {
	t := reflect.TypeOf(v)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return json.Unmarshal(data, v)
	}
	bp := prunedBufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 64<<10 { // a rare huge one is not kept
			prunedBufs.Put(bp)
		}
	}()
	small, ok := prune((*bp)[:0], data, planOf(t.Elem()), outline)
	*bp = small
	if ok && json.Unmarshal(small, v) == nil {
		return nil
	}
	// Decoding again from the start sets the same fields to the same
	// values, so what v holds afterwards is what json.Unmarshal leaves.
	return json.Unmarshal(data, v)
}

var prunedBufs = sync.Pool{New: func() any { return new([]byte) }}

// plan is what of a JSON object a struct type can use: its fields' JSON
// names, lowercased, with the plan of each field that is itself a struct.
type plan struct {
	names []string
	subs  []*plan // nil: the member is copied whole
}

// whole is the plan of a member copied as it is: a field that is not a
// struct, or a key that cannot be compared cheaply (escapes, non-ASCII).
var whole = &plan{}

var plans sync.Map // reflect.Type → *plan

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func planOf(t reflect.Type) *plan {
	if p, ok := plans.Load(t); ok {
		return p.(*plan)
	}
	p := buildPlan(t, map[reflect.Type]*plan{})
	plans.Store(t, p)
	return p
}

// buildPlan follows encoding/json's view of t's fields loosely: a field it
// could fill from a member is always in the plan; two fields whose names
// differ only in case share an entry copied whole.
func buildPlan(t reflect.Type, seen map[reflect.Type]*plan) *plan {
	if p, ok := seen[t]; ok {
		return p // a recursive type
	}
	p := &plan{}
	seen[t] = p
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
				add(ft) // promoted fields; encoding/json reaches unexported embedded structs too
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			sub := whole
			if ft.Kind() == reflect.Struct && !unmarshals(ft) {
				sub = buildPlan(ft, seen)
			}
			p.add(strings.ToLower(name), sub)
		}
	}
	add(t)
	return p
}

func (p *plan) add(name string, sub *plan) {
	for i, n := range p.names {
		if n == name {
			p.subs[i] = whole
			return
		}
	}
	p.names = append(p.names, name)
	p.subs = append(p.subs, sub)
}

// unmarshals reports whether encoding/json hands values of t to t's own
// decoding method rather than walking its fields.
func unmarshals(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return t.Implements(jsonUnmarshaler) || pt.Implements(jsonUnmarshaler) ||
		t.Implements(textUnmarshaler) || pt.Implements(textUnmarshaler)
}

// maxPlanName is the longest name member compares; a key longer than it
// matches no field (reads keeps everything for a type with a longer one).
const maxPlanName = 32

// member returns the plan for the member whose key is raw (between the
// quotes, escapes not resolved), or nil when no field can take it.
func (p *plan) member(raw []byte) *plan {
	var buf [maxPlanName]byte
	if len(raw) > len(buf) {
		for _, c := range raw {
			if c == '\\' || c >= 0x80 {
				return whole
			}
		}
		return nil // longer than any name we compare
	}
	k := buf[:len(raw)]
	for i, c := range raw {
		switch {
		case c == '\\' || c >= 0x80:
			// encoding/json folds some non-ASCII letters to ASCII ones
			// (K, ſ): let it judge.
			return whole
		case c-'A' < 26:
			c += 'a' - 'A'
		}
		k[i] = c
	}
	for i, n := range p.names {
		if n == string(k) {
			return p.subs[i]
		}
	}
	return nil
}

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

// frame is an object being pruned: the plan for its members, and whether
// none of them has been copied yet.
type frame struct {
	p     *plan
	first bool
}

// prune validates b in one pass (as json.Valid would; false for anything
// it rejects) and appends to out the members the plan root asks for: the
// small document. It is the intake's routing scanner (package webhooks) in
// shape: a byte-at-a-time state machine for structure, strings skipped
// with jsonscan's 64-byte bitmaps, a bit per level of nesting saying object
// or array. The objects being pruned are always the outermost ones, depths
// 1 to pd; below them a member's value is either skipped or, once it ends,
// copied whole. With outline (see queue.Job.Outline), a top-level member
// no field takes is stepped over to where outline says it ends; an outline
// that cannot be right (an end not past the value's start, or past b) is
// dropped, and the scan goes on byte by byte.
func prune(out, b []byte, root *plan, outline []int32) ([]byte, bool) {
	var (
		n     = len(b)
		i     int
		c     byte
		depth int
		stack [maxDepth/64 + 1]uint64 // bit d: the container at depth d is an object

		pd     int // the containers at depths 1..pd are objects being pruned
		fa     [8]frame
		frames = fa[:0] // their plans, outermost first
		keep   = -1     // where the member value being copied whole starts

		ks    int  // the key that just ended started at b[ks], its quote
		isKey bool // the string being skipped is a key
		top   int  // how many top-level members have begun
		blk   = -64
		mask  uint64 // jsonscan.Block(b, blk)
	)
	if i, c = jsonscan.SkipSpace(b, 0); c == '{' && i < n {
		frames = append(frames, frame{root, true})
		goto open
	}
	keep = i // not an object: the whole document is copied

value: // a value starts at b[i] or after whitespace
	if i, c = jsonscan.SkipSpace(b, i); i >= n {
		return out, false
	}
	switch c {
	case '"':
		isKey = false
		goto str
	case '{', '[':
		if depth++; depth > maxDepth {
			return out, false
		}
		end := byte(']')
		if c == '{' {
			end = '}'
			stack[depth>>6] |= 1 << (depth & 63)
		} else {
			stack[depth>>6] &^= 1 << (depth & 63)
		}
		if i, c = jsonscan.SkipSpace(b, i+1); i < n && c == end {
			i++
			depth--
			goto after
		}
		if end == '}' {
			goto key
		}
		goto value
	case 't', 'f', 'n':
		if i = jsonscan.LiteralEnd(b, i); i < 0 {
			return out, false
		}
		goto after
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		if i, _ = jsonscan.NumberEnd(b, i); i < 0 {
			return out, false
		}
		goto after
	}
	return out, false

open: // b[i] opens an object pruned by frames[len(frames)-1]
	if depth++; depth > maxDepth {
		return out, false
	}
	stack[depth>>6] |= 1 << (depth & 63)
	pd = depth
	out = append(out, '{')
	if i, c = jsonscan.SkipSpace(b, i+1); i < n && c == '}' {
		i++
		goto closePruned
	}
	goto key

closePruned: // the object being pruned at depth pd ended just before b[i]
	out = append(out, '}')
	frames = frames[:len(frames)-1]
	pd--
	depth--
	goto after

str: // b[i] is the opening quote of a key (isKey) or of a value
	// The intake scanner has this loop too (webhooks/scan.go says why it
	// is not shared).
	i++
strLoop:
	if i-blk >= 64 {
		blk = i &^ 63
		mask = jsonscan.Block(b, blk)
	}
	if m := mask >> (uint(i) & 63); m != 0 {
		i += bits.TrailingZeros64(m)
	} else {
		i = blk + 64
		goto strLoop
	}
	if i >= n {
		return out, false
	}
	if c = b[i]; c != '"' {
		switch {
		case c == '\\':
			if i = jsonscan.EscapeEnd(b, i); i < 0 {
				return out, false
			}
		case c < 0x20:
			return out, false
		default: // a false flag (see jsonscan.Block)
			i++
		}
		goto strLoop
	}
	i++
	if isKey {
		goto colon
	}

after: // a value ended just before b[i]
	if keep >= 0 && depth == pd {
		out = append(out, b[keep:i]...)
		keep = -1
	}
	i, c = jsonscan.SkipSpace(b, i)
	if depth == 0 {
		return out, i == n
	}
	if i >= n {
		return out, false
	}
	switch isObject := stack[depth>>6]>>(depth&63)&1 != 0; {
	case c == ',':
		i++
		if isObject {
			goto key
		}
		goto value
	case c == '}' && isObject:
		i++
		if depth == pd {
			goto closePruned
		}
		depth--
		goto after
	case c == ']' && !isObject:
		i++
		depth--
		goto after
	}
	return out, false

key: // in an object, after '{' or ','
	if i, c = jsonscan.SkipSpace(b, i); i >= n || c != '"' {
		return out, false
	}
	ks = i
	isKey = true
	goto str

colon: // the key b[ks:i] (quotes included) ended just before b[i]
	{
		ke := i
		if i, c = jsonscan.SkipSpace(b, i); i >= n || c != ':' {
			return out, false
		}
		if depth != pd {
			i++
			goto value
		}
		f := &frames[len(frames)-1]
		sub := f.p.member(b[ks+1 : ke-1])
		i, c = jsonscan.SkipSpace(b, i+1)
		if depth == 1 {
			if top++; sub == nil && top <= len(outline) {
				if end := int(outline[top-1]); end > i && end <= n {
					i = end
					goto after
				}
				outline = nil
			}
		}
		if sub == nil {
			goto value
		}
		if !f.first {
			out = append(out, ',')
		}
		f.first = false
		out = append(out, b[ks:ke]...)
		out = append(out, ':')
		if sub != whole && c == '{' && i < n {
			frames = append(frames, frame{sub, true})
			goto open
		}
		keep = i
		goto value
	}
}
