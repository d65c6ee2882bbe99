package jsonscan

import (
	"math/bits"
	"strings"
	"testing"
)

// Block flags every '"', '\\' and control byte, the lowest flag of each
// eight bytes exactly, and reads the bytes past the end of b as zeros.
func TestBlock(t *testing.T) {
	isSpecial := func(c byte) bool { return c == '"' || c == '\\' || c < 0x20 }
	for _, s := range []string{
		strings.Repeat("a", 64),
		`abc"def\ghi` + "\x00\x1f\x7f\xff" + `"#\]]]##"\\]`,
		strings.Repeat(`"#`, 40),
		strings.Repeat(`\]`, 40),
		"short\"",
		"",
	} {
		b := []byte(s)
		for blk := 0; blk < len(b) || blk == 0; blk += 64 {
			m := Block(b, blk)
			for j := 0; j < 64; j++ {
				c := byte(0)
				if blk+j < len(b) {
					c = b[blk+j]
				}
				flagged := m>>j&1 != 0
				if isSpecial(c) && !flagged {
					t.Errorf("%q: byte %d (%q) of the block at %d is not flagged", s, j, c, blk)
				}
				if low := m >> (j &^ 7) & 0xff; flagged && !isSpecial(c) && bits.TrailingZeros64(low) == j&7 {
					t.Errorf("%q: byte %d (%q) of the block at %d is the lowest flag of its eight, wrongly", s, j, c, blk)
				}
			}
		}
	}
}
