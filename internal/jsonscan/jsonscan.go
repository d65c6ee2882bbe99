// Package jsonscan holds the parts of a fast JSON validator that the
// intake's routing scanner (package webhooks) and the handlers' pruner
// share. Both accept exactly what encoding/json.Valid accepts; both skip
// strings, most of a webhook's bytes, with a bitmap of the bytes that can
// end one, computed for each 64-byte block of the input when a scan first
// reaches it (see Block). Structure, numbers and literals are a byte at a
// time.
//
// Functions that can fail return an index past what they read, or, negated,
// the offset encoding/json's SyntaxError reports: the number of bytes read
// up to and including the offending byte, or len(b) when the input ends
// early.
package jsonscan

import "encoding/binary"

const (
	lsb = 0x0101010101010101 // the low bit of every byte
	msb = 0x8080808080808080 // the high bit of every byte
)

// Block returns the bitmap of the 64-byte block of b at blk (a multiple of
// 64 below len(b)), bit j for b[blk+j], flagging the bytes that can end the
// fast path through a string: '"', '\\' and control characters. Bytes past
// the end of b read as zero, a control character, so a string that runs
// off the end stops there. Every such byte is flagged, and the lowest flag
// of each eight bytes is exact; flags above it in the same eight can be
// false (see special), so whoever moves past a flag must check the byte at
// the next one.
func Block(b []byte, blk int) uint64 {
	var p *[64]byte
	if blk+64 <= len(b) {
		p = (*[64]byte)(b[blk:])
	} else {
		var pad [64]byte
		copy(pad[:], b[blk:])
		p = &pad
	}
	return gather(special(binary.LittleEndian.Uint64(p[0:]))) |
		gather(special(binary.LittleEndian.Uint64(p[8:])))<<8 |
		gather(special(binary.LittleEndian.Uint64(p[16:])))<<16 |
		gather(special(binary.LittleEndian.Uint64(p[24:])))<<24 |
		gather(special(binary.LittleEndian.Uint64(p[32:])))<<32 |
		gather(special(binary.LittleEndian.Uint64(p[40:])))<<40 |
		gather(special(binary.LittleEndian.Uint64(p[48:])))<<48 |
		gather(special(binary.LittleEndian.Uint64(p[56:])))<<56
}

// gather packs the high bits of m's eight bytes into its low byte, byte j's
// into bit j: shifted down they sit at bits 8j, and the multiplier adds a
// copy of bit 8j at bit 56+j, the partial products never overlapping.
func gather(m uint64) uint64 { return (m >> 7) * 0x0102040810204080 >> 56 }

// special flags, in the high bit of each byte, the bytes of w (eight bytes
// of a string, little-endian) that end the fast path: '"', '\\' and the
// control characters below 0x20. '"' ^ 0x02 is 0x20, so one subtraction
// finds both '"' and the control characters; a second finds '\\'.
//
// Every byte that ends the fast path is flagged, and the lowest flag is
// exact, but a borrow out of a flagged byte can flag bytes above it that
// are not special: '#' above '"' and ']' above '\\' (and runs of them), as
// in the string "\"#". Whoever reads past the lowest flag must check.
func special(w uint64) uint64 {
	x := w ^ (lsb * 0x02)
	y := w ^ (lsb * '\\')
	return ((x - lsb*0x21) | (y - lsb)) &^ w & msb
}

// wsMask has the bits of JSON's four whitespace bytes.
const wsMask = 1<<' ' | 1<<'\t' | 1<<'\n' | 1<<'\r'

// SkipSpace returns the index of the first byte at or after i that is not
// JSON whitespace, and that byte; len(b) and 0 at the end.
func SkipSpace(b []byte, i int) (int, byte) {
	for ; i < len(b); i++ {
		if c := b[i]; c > ' ' || wsMask>>c&1 == 0 {
			return i, c
		}
	}
	return len(b), 0
}

// EscapeEnd checks the escape sequence at b[i] (a backslash) and returns
// the index just past it, or the error offset, negated.
func EscapeEnd(b []byte, i int) int {
	n := len(b)
	if i++; i >= n {
		return -n
	}
	switch b[i] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return i + 1
	case 'u':
		for k := 0; k < 4; k++ {
			if i++; i >= n {
				return -n
			}
			if !IsHex(b[i]) {
				return -(i + 1)
			}
		}
		return i + 1
	}
	return -(i + 1)
}

// IsHex reports whether c is a hexadecimal digit.
func IsHex(c byte) bool { return c-'0' < 10 || (c|0x20)-'a' < 6 }

// LiteralEnd checks the literal true, false or null that b[i] starts (by
// its first byte) and returns the index just past it, or the error offset,
// negated: the first byte that differs, or the end of input.
func LiteralEnd(b []byte, i int) int {
	lit := "null"
	switch b[i] {
	case 't':
		lit = "true"
	case 'f':
		lit = "false"
	}
	for k := 0; k < len(lit); k++ {
		if i+k >= len(b) {
			return -len(b)
		}
		if b[i+k] != lit[k] {
			return -(i + k + 1)
		}
	}
	return i + len(lit)
}

// NumberEnd checks the number b[i] starts (b[i] is '-' or a digit),
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, and returns the index
// just past it, or the error offset, negated; intEnd is the end of its
// integer part, so the number is an integer literal when intEnd == end.
func NumberEnd(b []byte, i int) (end, intEnd int) {
	n := len(b)
	if b[i] == '-' {
		if i++; i >= n {
			return -n, 0
		}
	}
	switch c := b[i]; {
	case c == '0':
		i++
	case c-'1' < 9:
		for i++; i < n && b[i]-'0' < 10; i++ {
		}
	default:
		return -(i + 1), 0
	}
	intEnd = i
	if i < n && b[i] == '.' {
		if i++; i >= n {
			return -n, 0
		}
		if b[i]-'0' >= 10 {
			return -(i + 1), 0
		}
		for i++; i < n && b[i]-'0' < 10; i++ {
		}
	}
	if i < n && b[i]|0x20 == 'e' {
		if i++; i < n && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= n {
			return -n, 0
		}
		if b[i]-'0' >= 10 {
			return -(i + 1), 0
		}
		for i++; i < n && b[i]-'0' < 10; i++ {
		}
	}
	return i, intEnd
}
