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
func ValidRef(s string) bool { return refProblem(s) == "" }

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

// refProblem says why s is not a usable ref, as the end of the sentence
// "git ref names ...", or "" when it is one. The rules are git's
// check-ref-format (with --branch's ban on a leading '-'), plus: valid UTF-8
// with no control or invisible formatting characters, which git allows but
// which would let a ref look like another in a reply.
func refProblem(s string) string {
	switch {
	case s == "":
		return "cannot be empty"
	case len(s) > MaxRefLen:
		return "are at most 255 bytes long"
	case s == "@":
		return `cannot be "@"`
	case s[0] == '-':
		return `cannot start with "-"`
	case s[0] == '/' || s[len(s)-1] == '/':
		return `cannot start or end with "/"`
	case s[len(s)-1] == '.':
		return `cannot end with "."`
	case strings.Contains(s, ".."):
		return `cannot contain ".."`
	case strings.Contains(s, "@{"):
		return `cannot contain "@{"`
	case strings.Contains(s, "//"):
		return `cannot contain "//"`
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	}
	for _, r := range s {
		switch {
		case r < 0x20 || r == 0x7f || unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			return "cannot contain control or invisible characters"
		case unicode.IsSpace(r):
			return "cannot contain spaces"
		case strings.ContainsRune(`~^:?*[\`, r):
			return "cannot contain any of ~ ^ : ? * [ \\"
		}
	}
	for _, part := range strings.Split(s, "/") {
		switch {
		case strings.HasPrefix(part, "."):
			return `cannot have a part starting with "."`
		case strings.HasSuffix(part, ".lock"):
			return `cannot have a part ending in ".lock"`
		}
	}
	return ""
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
