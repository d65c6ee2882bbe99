package handlers

import (
	"encoding"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"reflect"
	"strings"
	"sync"
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
func unmarshal(data []byte, v any) error {
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
	p := pruner{b: data, out: (*bp)[:0]}
	ok := p.document(planOf(t.Elem()))
	*bp = p.out
	if ok && json.Unmarshal(p.out, v) == nil {
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

// member returns the plan for the member whose key is raw (between the
// quotes, escapes not resolved), or nil when no field can take it.
func (p *plan) member(raw []byte) *plan {
	var buf [32]byte
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

// pruner makes the small document: it validates b in one pass (as
// json.Valid would; any failure makes the caller fall back) and appends
// to out the members a plan asks for.
type pruner struct {
	b     []byte
	i     int
	depth int
	out   []byte
}

// document prunes the whole of b by p; false when b is not valid JSON.
func (r *pruner) document(p *plan) bool {
	r.space()
	if r.i < len(r.b) && r.b[r.i] == '{' {
		if !r.object(p) {
			return false
		}
	} else if !r.value(true) {
		return false
	}
	r.space()
	return r.i == len(r.b)
}

func (r *pruner) space() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// object prunes the object at b[i] by p into out.
func (r *pruner) object(p *plan) bool {
	if r.depth++; r.depth > maxDepth {
		return false
	}
	r.i++ // '{'
	r.out = append(r.out, '{')
	first := true
	r.space()
	if r.i < len(r.b) && r.b[r.i] == '}' {
		r.i++
		r.depth--
		r.out = append(r.out, '}')
		return true
	}
	for {
		if r.i >= len(r.b) || r.b[r.i] != '"' {
			return false
		}
		ks := r.i
		if !r.str() {
			return false
		}
		ke := r.i
		r.space()
		if r.i >= len(r.b) || r.b[r.i] != ':' {
			return false
		}
		r.i++
		r.space()
		sub := p.member(r.b[ks+1 : ke-1])
		if sub != nil {
			if !first {
				r.out = append(r.out, ',')
			}
			first = false
			r.out = append(r.out, r.b[ks:ke]...)
			r.out = append(r.out, ':')
		}
		switch {
		case sub == nil:
			if !r.value(false) {
				return false
			}
		case sub != whole && r.i < len(r.b) && r.b[r.i] == '{':
			if !r.object(sub) {
				return false
			}
		default:
			if !r.value(true) {
				return false
			}
		}
		r.space()
		if r.i >= len(r.b) {
			return false
		}
		switch r.b[r.i] {
		case ',':
			r.i++
			r.space()
			continue
		case '}':
			r.i++
			r.depth--
			r.out = append(r.out, '}')
			return true
		}
		return false
	}
}

// value validates the value at b[i] and moves past it, appending it to
// out when keep is set.
func (r *pruner) value(keep bool) bool {
	s := r.i
	if !r.skip() {
		return false
	}
	if keep {
		r.out = append(r.out, r.b[s:r.i]...)
	}
	return true
}

// skip validates the value at b[i] and moves past it.
func (r *pruner) skip() bool {
	if r.i >= len(r.b) {
		return false
	}
	switch c := r.b[r.i]; c {
	case '"':
		return r.str()
	case '{', '[':
		return r.container(c)
	case 't':
		return r.literal("true")
	case 'f':
		return r.literal("false")
	case 'n':
		return r.literal("null")
	}
	return r.number()
}

// container validates the object or array at b[i], open being its first
// byte.
func (r *pruner) container(open byte) bool {
	if r.depth++; r.depth > maxDepth {
		return false
	}
	end := byte(']')
	if open == '{' {
		end = '}'
	}
	r.i++
	r.space()
	if r.i < len(r.b) && r.b[r.i] == end {
		r.i++
		r.depth--
		return true
	}
	for {
		if open == '{' {
			if r.i >= len(r.b) || r.b[r.i] != '"' || !r.str() {
				return false
			}
			r.space()
			if r.i >= len(r.b) || r.b[r.i] != ':' {
				return false
			}
			r.i++
			r.space()
		}
		if !r.skip() {
			return false
		}
		r.space()
		if r.i >= len(r.b) {
			return false
		}
		switch r.b[r.i] {
		case ',':
			r.i++
			r.space()
			continue
		case end:
			r.i++
			r.depth--
			return true
		}
		return false
	}
}

func (r *pruner) literal(lit string) bool {
	if len(r.b)-r.i < len(lit) || string(r.b[r.i:r.i+len(lit)]) != lit {
		return false
	}
	r.i += len(lit)
	return true
}

// number validates a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (r *pruner) number() bool {
	b, i := r.b, r.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return false
	case b[i] == '0':
		i++
	case b[i]-'1' < 9:
		for i++; i < len(b) && b[i]-'0' < 10; i++ {
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		if i++; i >= len(b) || b[i]-'0' >= 10 {
			return false
		}
		for i++; i < len(b) && b[i]-'0' < 10; i++ {
		}
	}
	if i < len(b) && b[i]|0x20 == 'e' {
		if i++; i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i]-'0' >= 10 {
			return false
		}
		for i++; i < len(b) && b[i]-'0' < 10; i++ {
		}
	}
	r.i = i
	return true
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// str validates the string at b[i] (its opening quote) and moves past its
// closing quote. Strings are most of a payload's bytes, so eight bytes are
// looked at a time: a word with no quote, backslash or control character
// is skipped whole; otherwise the lowest such byte (which the zero-byte
// tests flag exactly) is handled on its own.
func (r *pruner) str() bool {
	b, i := r.b, r.i+1
	for {
		for i+8 <= len(b) {
			w := binary.LittleEndian.Uint64(b[i:])
			m := (hasZero(w^(lsb*'"')) | hasZero(w^(lsb*'\\')) | (w-lsb*0x20)&^w) & msb
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) >> 3
			break
		}
		if i >= len(b) {
			return false
		}
		switch c := b[i]; {
		case c == '"':
			r.i = i + 1
			return true
		case c == '\\':
			if i++; i >= len(b) {
				return false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if len(b)-i < 5 || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					return false
				}
				i += 5
			default:
				return false
			}
		case c < 0x20:
			return false
		default:
			i++ // the tail, shorter than a word
		}
	}
}

// hasZero flags, in the high bit of each byte, the zero bytes of w; the
// lowest flag is exact, higher ones may be false after a zero byte.
func hasZero(w uint64) uint64 { return (w - lsb) &^ w & msb }

func isHex(c byte) bool { return c-'0' < 10 || (c|0x20)-'a' < 6 }
