package command

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// MaxCommands is how many command lines one comment may hold. Lines after
// the limit are not parsed; one Error says so.
const MaxCommands = 10

// Command is one command line that parsed.
type Command struct {
	// Name is the command, lower case: the Name of one of the Specs it was
	// parsed with.
	Name string
	// Env is the environment as typed (case kept), or "" when omitted; the
	// caller applies the command's default, and "" for /status means every
	// environment. Environment names ignore case, so compare with
	// strings.EqualFold.
	Env string
	// Ref is the SHA, branch or tag given to /deploy, or after "to" in
	// /rollback; "" when omitted.
	Ref string
	// Reason is the rest of a /lock line after the environment, trimmed.
	Reason string
	// Line is the 1-based line of the comment the command is on.
	Line int
	// Raw is the line as typed, without indentation or trailing space.
	Raw string
}

// Kind says which rule a command line broke, so a reply can say what is
// wrong and add what the parser cannot know (the help text, the list of
// environments).
type Kind string

// The kinds of Error.
const (
	UnknownCommand Kind = "unknown command"     // reply with the help text too
	ExtraWords     Kind = "extra words"         // more words than the command takes
	MissingEnv     Kind = "missing environment" // /lock or /unlock without one
	MissingTo      Kind = "missing to"          // /rollback ENV REF without "to"
	MissingRef     Kind = "missing ref"         // "to" with nothing after it
	BadEnv         Kind = "bad environment"     // not an environment name
	BadRef         Kind = "bad ref"             // not a SHA, branch or tag
	TooMany        Kind = "too many commands"   // more than MaxCommands lines
)

// Error is a command line that did not parse: which rule it broke and the
// words involved, for internal/report to say what is wrong and what to type
// instead. The fields a Kind does not use are empty.
type Error struct {
	Kind Kind
	// Line is the 1-based line of the comment, Raw its text as in Command.
	Line int
	Raw  string
	// Command is the command as "/name", lower case, and Grammar its
	// grammar; empty for UnknownCommand and TooMany.
	Command string
	Grammar Grammar
	// Word is what the error is about, as typed: the command word that is
	// not a command (with its "/"), the extra words, the "to" that does not
	// belong (ExtraWords with a Fix) or has nothing after it (MissingRef),
	// the environment or ref that is not one.
	Word string
	// Env and Ref are what the line named before it broke the rule; for
	// MissingTo, Ref is the word that reads as the ref.
	Env, Ref string
	// Rule is the git rule a BadRef breaks.
	Rule RefRule
	// Fix is the line to type instead when the parser can tell (the
	// command a typo or synonym means, the line without a word that does
	// not belong, a name without the punctuation around it); "" otherwise.
	// It repeats the person's words, so it may be long.
	Fix string
}

func (e *Error) Error() string {
	if e.Word == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Kind)
	}
	return fmt.Sprintf("line %d: %s %s", e.Line, e.Kind, strconv.Quote(e.Word))
}

// Parse reads the commands in a comment body: the commands specs describe.
// Each line that looks like a command yields exactly one Command or one
// Error, in order, for the first MaxCommands such lines; one more Error
// reports any beyond. Parse never fails as a whole: text that is not a
// command is ignored.
func Parse(body string, specs []Spec) (cmds []Command, errs []*Error) {
	var b blocks
	seen := 0
	for i, line := range splitLines(body) {
		rest, ok := b.text(line)
		if !ok || !strings.HasPrefix(rest, "/") {
			continue
		}
		raw := strings.TrimRightFunc(rest, unicode.IsSpace)
		words := fields(raw)
		name, ok := commandName(words[0].s)
		if !ok {
			continue
		}
		seen++
		if seen > MaxCommands {
			errs = append(errs, &Error{Kind: TooMany, Line: i + 1, Raw: raw})
			break
		}
		cmd, err := parseLine(specs, name, raw, words)
		if err != nil {
			err.Line, err.Raw = i+1, raw
			errs = append(errs, err)
			continue
		}
		cmd.Name, cmd.Line, cmd.Raw = name, i+1, raw
		cmds = append(cmds, cmd)
	}
	return cmds, errs
}

// parseLine reads a command line whose command word is name (lower case).
func parseLine(specs []Spec, name, raw string, words []word) (Command, *Error) {
	spec, ok := find(specs, name)
	if !ok {
		return Command{}, unknown(specs, name, words)
	}
	l := &cmdLine{cmd: "/" + name, raw: raw, words: words[1:]}
	c, err := grammars[spec.Grammar](l)
	if err != nil {
		err.Command, err.Grammar = l.cmd, spec.Grammar
	}
	return c, err
}

// word is a whitespace-separated word of a line and where it ends.
type word struct {
	s   string
	end int
}

// fields splits s at Unicode white space, keeping where each word ends so
// /lock's reason can be taken as typed.
func fields(s string) []word {
	var ws []word
	start := -1
	for i, r := range s {
		if unicode.IsSpace(r) {
			if start >= 0 {
				ws = append(ws, word{s[start:i], i})
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		ws = append(ws, word{s[start:], len(s)})
	}
	return ws
}

// commandName reads the first word of a line that starts with "/". ok is
// false when the line is not a command at all: "/" alone, "/ deploy",
// "/123", or a path such as "/etc/hosts". Otherwise name is the lower-cased
// command word, ours or not.
func commandName(first string) (name string, ok bool) {
	w := first[1:]
	if w == "" || !isLetter(w[0]) || strings.Contains(w, "/") {
		return "", false
	}
	return strings.ToLower(w), true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// unknown is the Error for a command word that is not ours, with the
// nearest command as the Fix.
func unknown(specs []Spec, name string, words []word) *Error {
	e := &Error{Kind: UnknownCommand, Word: words[0].s}
	if s := suggest(specs, name); s != "" {
		args := make([]string, 0, len(words)-1)
		for _, w := range words[1:] {
			args = append(args, w.s)
		}
		e.Fix = join("/"+s, args...)
	}
	return e
}

// suggest is the name of the command most like word, or "" when none is
// close.
func suggest(specs []Spec, word string) string {
	// Trailing punctuation ("/deploy:", "/status?") is a typo for the command.
	letters := strings.TrimRightFunc(word, func(r rune) bool { return !unicode.IsLetter(r) })
	if _, ok := find(specs, letters); ok {
		return letters
	}
	for _, s := range specs {
		if slices.Contains(s.Synonyms, letters) {
			return s.Name
		}
	}
	return nearest(specs, letters)
}

// nearest is the name of the command at the smallest edit distance from
// letters, or "" when none is close.
func nearest(specs []Spec, letters string) string {
	best, bestD := "", 3
	for _, s := range specs {
		n := s.Name
		d := distance(letters, n)
		if len(letters) >= 3 && (strings.HasPrefix(n, letters) || strings.HasPrefix(letters, n)) {
			d = min(d, 1)
		}
		if d > 2 || len(n) <= 4 && d > 1 {
			continue // two typos in a four-letter word is another word
		}
		if d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// distance is the optimal string alignment distance between a and b
// (Levenshtein plus swapping two adjacent letters), capped at 3.
func distance(a, b string) int {
	if len(a) > 40 {
		return 3
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return min(prev[len(b)], 3)
}
