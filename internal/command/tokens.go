package command

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxEnvLen is the longest environment name a command accepts.
const MaxEnvLen = 100

// MaxRefLen is the longest ref a command accepts (git's own limit is the
// file system's; GitHub's is 255 bytes).
const MaxRefLen = 255

// ValidEnv reports whether s can be an environment name in a command:
// 1 to MaxEnvLen letters, digits, '.', '-' and '_', starting with a letter or
// digit (the same alphabet .github/shipbot.yml accepts).
func ValidEnv(s string) bool {
	if s == "" || len(s) > MaxEnvLen || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// ValidRef reports whether s can be the REF of a command: a commit SHA or a
// branch or tag name by git's check-ref-format rules.
func ValidRef(s string) bool { return refRule(s) == RefValid }

// LooksLikeSHA reports whether ref is 7 to 40 hex digits, an abbreviated or
// full commit SHA. Such a ref may still name a branch; resolving it is the
// caller's business.
func LooksLikeSHA(ref string) bool {
	if len(ref) < 7 || len(ref) > 40 {
		return false
	}
	for i := 0; i < len(ref); i++ {
		if !isHex(ref[i]) {
			return false
		}
	}
	return true
}

// RefRule is a rule of git ref names, the one a ref in a command breaks.
type RefRule int

// The rules, in the order refRule checks them.
const (
	RefValid       RefRule = iota // breaks none
	RefEmpty                      // cannot be empty
	RefTooLong                    // at most MaxRefLen bytes
	RefAt                         // cannot be "@"
	RefLeadingDash                // cannot start with "-"
	RefSlashEnd                   // cannot start or end with "/"
	RefDotEnd                     // cannot end with "."
	RefDotDot                     // cannot contain ".."
	RefAtBrace                    // cannot contain "@{"
	RefDoubleSlash                // cannot contain "//"
	RefNotUTF8                    // must be valid UTF-8
	RefInvisible                  // no control or invisible characters
	RefSpace                      // no spaces
	RefSpecial                    // none of ~ ^ : ? * [ \
	RefDotPart                    // no part starting with "."
	RefLockPart                   // no part ending in ".lock"
)

// refRule is the rule s breaks as a ref, or RefValid. The rules are git's
// check-ref-format (with --branch's ban on a leading '-'), plus: valid
// UTF-8 with no control or invisible formatting characters, which git
// allows but which would let a ref look like another in a reply.
func refRule(s string) RefRule {
	switch {
	case s == "":
		return RefEmpty
	case len(s) > MaxRefLen:
		return RefTooLong
	case s == "@":
		return RefAt
	case s[0] == '-':
		return RefLeadingDash
	case s[0] == '/' || s[len(s)-1] == '/':
		return RefSlashEnd
	case s[len(s)-1] == '.':
		return RefDotEnd
	case strings.Contains(s, ".."):
		return RefDotDot
	case strings.Contains(s, "@{"):
		return RefAtBrace
	case strings.Contains(s, "//"):
		return RefDoubleSlash
	case !utf8.ValidString(s):
		return RefNotUTF8
	}
	if r := runeRule(s); r != RefValid {
		return r
	}
	return partRule(s)
}

// runeRule is the rule a character of s breaks.
func runeRule(s string) RefRule {
	for _, r := range s {
		switch {
		case r < 0x20 || r == 0x7f || unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			return RefInvisible
		case unicode.IsSpace(r):
			return RefSpace
		case strings.ContainsRune(`~^:?*[\`, r):
			return RefSpecial
		}
	}
	return RefValid
}

// partRule is the rule a "/"-separated part of s breaks.
func partRule(s string) RefRule {
	for _, part := range strings.Split(s, "/") {
		switch {
		case strings.HasPrefix(part, "."):
			return RefDotPart
		case strings.HasSuffix(part, ".lock"):
			return RefLockPart
		}
	}
	return RefValid
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
