package webhooks

import (
	"math/bits"
	"strings"
	"sync"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/shipbot/shipbot/internal/jsonscan"
)

// fields are the parts of a delivery that routing needs.
type fields struct {
	action         string // top-level "action"
	installationID int64  // "installation" → "id"
	repo           string // "repository" → "full_name"
}

// maxDepth is encoding/json's nesting limit: 10000 nested arrays or objects
// are valid, one more is not.
const maxDepth = 10000

// Which routing field the next value belongs to (after its key), or which
// top-level object the keys at depth 2 belong to.
const (
	ctxNone = iota
	ctxAction
	ctxInstallation
	ctxRepository
	ctxID
	ctxFullName
)

// scan validates b as one JSON document and, in the same pass, extracts the
// routing fields. It accepts exactly what encoding/json.Valid accepts: RFC
// 8259 JSON with optional surrounding whitespace, nesting up to maxDepth,
// and (like Valid) any bytes ≥ 0x20 inside strings, invalid UTF-8 included.
//
// On failure errOffset is what encoding/json reports as SyntaxError.Offset:
// the number of bytes read up to and including the offending byte, or
// len(b) when the input ends early. The fields are then zero.
//
// Extraction follows decoding the document into map[string]any:
//   - keys are compared after unescaping ("act\u0069on" is "action"), and
//     exactly: case matters (encoding/json's struct decoding would also
//     match "Action"; GitHub never sends that);
//   - only the paths action, installation.id and repository.full_name count,
//     keys of the same name deeper in the document are ignored;
//   - a duplicate key replaces the earlier one, whatever either value is
//     (a later "installation":{} leaves no id);
//   - a missing value, or one of the wrong type (null included), gives the
//     zero value: action and full_name must be strings, and id must be an
//     integer literal in int64's range, so 1e3, 1.0 and 9223372036854775808
//     give 0, as decoding them into an int64 fails;
//   - strings are unescaped the way encoding/json does it, which replaces
//     invalid UTF-8 and unpaired surrogate escapes with U+FFFD.
//
// The returned strings are copies: b may be reused once scan returns. Apart
// from them scan does not allocate.
//
// Strings are most of a webhook's bytes, so scan skips them with a bitmap
// of the bytes that can end one ('"', '\\' and control characters),
// computed for each 64-byte block of b when the scan first reaches it (see
// jsonscan.Block): the end of a string is then one shift and
// a trailing-zeros count away, and only escapes are looked at byte by byte.
// The rest (structure, numbers, literals) is a byte-at-a-time state machine
// with a bit per level of nesting saying object or array.
func scan(b []byte) (f fields, ok bool, errOffset int) { return scanNames(b, nil, nil) }

// scanNames is scan taking the action and repository names from names, so
// that the names every delivery repeats are not allocated each time. The
// strings it returns are still never views of b. With outline, it also
// appends there where each member of b's top-level object ends (the
// offset just past its value); what it appended means nothing unless ok.
func scanNames(b []byte, names *interner, outline *[]int32) (f fields, ok bool, errOffset int) {
	var (
		n     = len(b)
		i     int // the next byte to look at
		c     byte
		depth int
		stack [maxDepth/64 + 1]uint64 // bit d: the container at depth d is an object

		s, e  int  // a string's contents are b[s:e]
		esc   bool // and have escapes
		isKey bool // the string is a key, not a value

		ctx  = ctxNone // what the next value is, set by its key
		vctx int       // what the value being scanned is
		in   = ctxNone // at depth 2: ctxInstallation or ctxRepository if inside that object
		kbuf [16]byte  // an unescaped key

		// Strings are skipped with the bitmap of string-ending bytes
		// (jsonscan.Block) of the 64-byte block at blk, bit j for
		// b[blk+j]. Blocks are aligned at multiples of 64 and mapped when
		// the scan first needs them.
		blk  = -64
		mask uint64
	)

value:
	i, c = jsonscan.SkipSpace(b, i)
	if i >= n {
		return fields{}, false, n
	}
	vctx, ctx = ctx, ctxNone
	if c == '"' {
		isKey = false
		goto str
	}
	switch c {
	case '{', '[':
		if depth++; depth > maxDepth {
			return fields{}, false, i + 1
		}
		isObject := c == '{'
		end := byte(']')
		if isObject {
			end = '}'
			stack[depth>>6] |= 1 << (depth & 63)
			if depth == 2 {
				in = vctx
			}
		} else {
			stack[depth>>6] &^= 1 << (depth & 63)
		}
		if i, c = jsonscan.SkipSpace(b, i+1); i < n && c == end {
			i++
			depth--
			goto after
		}
		if isObject {
			goto key
		}
		goto value
	case 't', 'f', 'n':
		if i = jsonscan.LiteralEnd(b, i); i < 0 {
			return fields{}, false, -i
		}
		goto after
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		s = i
		if i, e = jsonscan.NumberEnd(b, i); i < 0 {
			return fields{}, false, -i
		}
		if vctx == ctxID && e == i {
			f.installationID = parseInt(b[s:e])
		}
		goto after
	}
	return fields{}, false, i + 1

str: // b[i] is the opening quote of a key (isKey) or a value
	// The loop below has a twin in the handlers' pruner (prune, in
	// internal/handlers/decode.go). Shared as a jsonscan method, with the
	// block and its bitmap in a struct, it made both scans 7–10% slower
	// (BenchmarkScan 7.8 → 8.6 µs): here they stay in registers.
	i++
	s = i
	esc = false
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
		return fields{}, false, n
	}
	if c = b[i]; c != '"' {
		switch {
		case c == '\\':
			esc = true
			if i = jsonscan.EscapeEnd(b, i); i < 0 {
				return fields{}, false, -i
			}
		case c < 0x20:
			return fields{}, false, i + 1
		default: // a false flag (see jsonscan.Block)
			i++
		}
		goto strLoop
	}
	e = i
	i++
	if isKey {
		goto colon
	}
	switch vctx {
	case ctxAction:
		f.action = names.string(b[s:e], esc)
	case ctxFullName:
		f.repo = names.string(b[s:e], esc)
	}

after: // a value ended just before b[i]
	// A member of the top level, if the top level is an object (its bit,
	// depth 1, in stack).
	if depth == 1 && outline != nil && stack[0]>>1&1 != 0 {
		*outline = append(*outline, int32(i))
	}
	i, c = jsonscan.SkipSpace(b, i)
	if depth == 0 {
		if i < n {
			return fields{}, false, i + 1
		}
		return f, true, 0
	}
	if i >= n {
		return fields{}, false, n
	}
	switch c {
	case ',':
		i++
		if stack[depth>>6]>>(depth&63)&1 != 0 {
			goto key
		}
		goto value
	case '}':
		if stack[depth>>6]>>(depth&63)&1 != 0 {
			i++
			depth--
			goto after
		}
	case ']':
		if stack[depth>>6]>>(depth&63)&1 == 0 {
			i++
			depth--
			goto after
		}
	}
	return fields{}, false, i + 1

key: // in an object, after '{' or ','
	i, c = jsonscan.SkipSpace(b, i)
	if i >= n {
		return fields{}, false, n
	}
	if c != '"' {
		return fields{}, false, i + 1
	}
	isKey = true
	goto str

colon: // the key b[s:e] ended just before b[i]
	i, c = jsonscan.SkipSpace(b, i)
	if i >= n {
		return fields{}, false, n
	}
	if c != ':' {
		return fields{}, false, i + 1
	}
	i++
	if depth == 1 || depth == 2 && in != ctxNone {
		k := b[s:e]
		if esc {
			k = unescapeKey(k, &kbuf)
		}
		switch {
		case depth == 1:
			switch string(k) {
			case "action":
				ctx, f.action = ctxAction, ""
			case "installation":
				ctx, f.installationID = ctxInstallation, 0
			case "repository":
				ctx, f.repo = ctxRepository, ""
			}
		case in == ctxInstallation:
			if string(k) == "id" {
				ctx, f.installationID = ctxID, 0
			}
		default: // ctxRepository
			if string(k) == "full_name" {
				ctx, f.repo = ctxFullName, ""
			}
		}
	}
	goto value
}

// parseInt converts a valid JSON integer literal (optional '-', no leading
// zeros) to int64, or returns 0 if it is out of range, as decoding it into
// an int64 with encoding/json fails.
func parseInt(d []byte) int64 {
	neg := d[0] == '-'
	if neg {
		d = d[1:]
	}
	if len(d) > 19 {
		return 0
	}
	var u uint64
	for _, c := range d {
		u = u*10 + uint64(c-'0') // cannot overflow uint64 with 19 digits
	}
	switch {
	case !neg && u <= 1<<63-1:
		return int64(u)
	case neg && u <= 1<<63:
		return -int64(u) // -(1<<63) wraps to itself, as wanted
	}
	return 0
}

// unescapeKey unescapes a key with escapes into buf, for comparison with
// the wanted keys. Keys that cannot be one of them (longer than buf, or not
// ASCII) come back empty.
func unescapeKey(raw []byte, buf *[16]byte) []byte {
	k := 0
	for i := 0; i < len(raw); k++ {
		if k == len(buf) {
			return nil
		}
		c := raw[i]
		if c != '\\' {
			buf[k] = c
			i++
			continue
		}
		if raw[i+1] == 'u' {
			r := hex4(raw[i+2:])
			if r >= utf8.RuneSelf {
				return nil
			}
			buf[k] = byte(r)
			i += 6
			continue
		}
		buf[k] = unescapeByte(raw[i+1])
		i += 2
	}
	return buf[:k]
}

// unescapeByte is the byte the escape \c stands for, c not 'u'.
func unescapeByte(c byte) byte {
	switch c {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	}
	return c // '"', '\\' or '/'
}

// hex4 decodes four hex digits already checked by escapeEnd.
func hex4(h []byte) rune {
	var r rune
	for _, c := range h[:4] {
		switch {
		case c <= '9':
			c -= '0'
		case c <= 'F':
			c -= 'A' - 10
		default:
			c -= 'a' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// interner hands out one string per distinct routing name: actions and
// repositories recur in every delivery. It is bounded, since a signed
// delivery can still name anything: past maxNames, new names are simply
// allocated each time.
type interner struct {
	mu sync.RWMutex
	m  map[string]string
}

const maxNames = 4096

// string is unquote(raw, esc), from the table when it can be; a nil
// interner just unquotes.
func (in *interner) string(raw []byte, esc bool) string {
	if in == nil || esc || !utf8.Valid(raw) {
		return unquote(raw, esc)
	}
	in.mu.RLock()
	s, ok := in.m[string(raw)] // the lookup does not allocate
	in.mu.RUnlock()
	if ok {
		return s
	}
	s = string(raw)
	in.mu.Lock()
	if len(in.m) < maxNames {
		in.m[s] = s
	}
	in.mu.Unlock()
	return s
}

// unquote returns the value of a validated JSON string's contents (raw,
// between the quotes) as encoding/json decodes it, in new memory.
func unquote(raw []byte, esc bool) string {
	if !esc && utf8.Valid(raw) {
		return string(raw)
	}
	var sb strings.Builder
	sb.Grow(len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		switch {
		case c == '\\':
			switch c = raw[i+1]; c {
			case 'u':
				r := hex4(raw[i+2:])
				i += 6
				if utf16.IsSurrogate(r) {
					// Only a high half followed by an escaped low half is
					// a pair; otherwise this half becomes U+FFFD and the
					// next escape, if any, is decoded on its own.
					d := unicode.ReplacementChar
					if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
						if d = utf16.DecodeRune(r, hex4(raw[i+2:])); d != unicode.ReplacementChar {
							i += 6
						}
					}
					r = d
				}
				sb.WriteRune(r)
			default:
				sb.WriteByte(unescapeByte(c))
				i += 2
			}
		case c < utf8.RuneSelf:
			sb.WriteByte(c)
			i++
		default:
			r, size := utf8.DecodeRune(raw[i:]) // invalid bytes become U+FFFD, one each
			sb.WriteRune(r)
			i += size
		}
	}
	return sb.String()
}
