package command

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// MaxCommands is how many command lines one comment may hold. Lines after
// the limit are not parsed; one Error says so.
const MaxCommands = 10

// The command names, as Command.Name holds them.
const (
	Deploy   = "deploy"
	Rollback = "rollback"
	Lock     = "lock"
	Unlock   = "unlock"
	Status   = "status"
	Help     = "help"
)

// names is every command, in the order the help text lists them.
var names = []string{Deploy, Rollback, Lock, Unlock, Status, Help}

// Command is one command line that parsed.
type Command struct {
	// Name is the command, lower case: one of Deploy, Rollback, Lock, Unlock,
	// Status, Help.
	Name string
	// Env is the environment as typed (case kept), or "" when omitted; the
	// caller applies default_environment (/deploy) or production
	// (/rollback), and "" for /status means every environment. Environment
	// names ignore case, so compare with strings.EqualFold.
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

// Kind says which rule a command line broke, so a reply can add what the
// parser cannot know (the help text, the list of environments).
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

// Error is a command line that did not parse.
type Error struct {
	Kind Kind
	// Line is the 1-based line of the comment, Raw its text as in Command.
	Line int
	Raw  string
	// Msg says what is wrong, Hint what to type instead; both are plain
	// sentences that quote the person's own words (escape them for Markdown).
	Msg  string
	Hint string
}

func (e *Error) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// Parse reads the commands in a comment body. Each line that looks like a
// command yields exactly one Command or one Error, in order, for the first
// MaxCommands such lines; one more Error reports any beyond. Parse never
// fails as a whole: text that is not a command is ignored.
func Parse(body string) (cmds []Command, errs []*Error) {
	var b blocks
	seen := 0
	for i, line := range splitLines(body) {
		rest, ok := b.text(line)
		if !ok || !strings.HasPrefix(rest, "/") {
			continue
		}
		raw := strings.TrimRightFunc(rest, unicode.IsSpace)
		words := fields(raw)
		name, known, ok := commandName(words[0].s)
		if !ok {
			continue
		}
		seen++
		if seen > MaxCommands {
			errs = append(errs, &Error{
				Kind: TooMany, Line: i + 1, Raw: raw,
				Msg:  fmt.Sprintf("this comment has more than %d commands; the ones from line %d on were not read", MaxCommands, i+1),
				Hint: fmt.Sprintf("send at most %d commands per comment: post the rest in a new comment", MaxCommands),
			})
			break
		}
		l := &cmdLine{raw: raw, words: words[1:]}
		var cmd Command
		var err *Error
		if !known {
			err = unknown(name, words)
		} else {
			cmd, err = grammar[name](l)
		}
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
// command word and known says whether it is one of ours.
func commandName(first string) (name string, known, ok bool) {
	w := first[1:]
	if w == "" || !isLetter(w[0]) || strings.Contains(w, "/") {
		return "", false, false
	}
	name = strings.ToLower(w)
	_, known = grammar[name]
	return name, known, true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// cmdLine is a command line being parsed: its text and the words after the
// command word.
type cmdLine struct {
	raw   string
	words []word
}

func (l *cmdLine) arg(i int) string { return l.words[i].s }

// isTo reports whether word i is the keyword "to", in any case.
func (l *cmdLine) isTo(i int) bool { return i < len(l.words) && strings.EqualFold(l.words[i].s, "to") }

var grammar = map[string]func(*cmdLine) (Command, *Error){
	Deploy:   parseDeploy,
	Rollback: parseRollback,
	Lock:     parseLock,
	Unlock:   parseUnlock,
	Status:   parseStatus,
	Help:     parseHelp,
}

// /deploy [ENV] [REF]
func parseDeploy(l *cmdLine) (Command, *Error) {
	n := len(l.words)
	if l.isTo(0) || l.isTo(1) {
		// "/deploy to staging" or "/deploy staging to abc1234": /rollback's
		// "to" does not belong here.
		rest := without(l.words, l.indexTo())
		return Command{}, &Error{Kind: ExtraWords,
			Msg:  fmt.Sprintf("/deploy does not take %s", quote(l.arg(l.indexTo()))),
			Hint: "write " + clip(join("/deploy", rest...))}
	}
	var c Command
	if n >= 1 {
		if err := checkEnv("/deploy", l, 0); err != nil {
			return c, err
		}
		c.Env = l.arg(0)
	}
	if n >= 2 {
		if err := checkRef("/deploy", l, 1); err != nil {
			return c, err
		}
		c.Ref = l.arg(1)
	}
	if n > 2 {
		return c, extra(l, 2, "/deploy takes an environment and a ref: "+join("/deploy", c.Env, c.Ref))
	}
	return c, nil
}

func (l *cmdLine) indexTo() int {
	if l.isTo(0) {
		return 0
	}
	return 1
}

// /rollback [ENV] [to REF]
func parseRollback(l *cmdLine) (Command, *Error) {
	var c Command
	i := 0
	if len(l.words) > 0 && !l.isTo(0) {
		if err := checkEnv("/rollback", l, 0); err != nil {
			return c, err
		}
		c.Env = l.arg(0)
		i = 1
	}
	if i == len(l.words) {
		return c, nil
	}
	if !l.isTo(i) {
		// "/rollback staging abc1234": the ref without "to".
		if ValidRef(l.arg(i)) && i+1 == len(l.words) {
			return c, &Error{Kind: MissingTo,
				Msg:  fmt.Sprintf(`%s needs "to" before the ref`, join("/rollback", c.Env, l.arg(i))),
				Hint: "write " + join("/rollback", c.Env, "to", l.arg(i))}
		}
		return c, extra(l, i, "/rollback takes an environment and \"to\" a release: "+
			join("/rollback", c.Env)+" or "+join("/rollback", c.Env, "to", "abc1234"))
	}
	if i+1 == len(l.words) {
		return c, &Error{Kind: MissingRef,
			Msg:  fmt.Sprintf("%s needs the release to go back to after %s", join("/rollback", c.Env), quote(l.arg(i))),
			Hint: "write " + join("/rollback", c.Env, "to", "abc1234") + " with the release's SHA or tag, or " + join("/rollback", c.Env) + " for the one before the current release"}
	}
	if err := checkRef("/rollback", l, i+1); err != nil {
		return c, err
	}
	c.Ref = l.arg(i + 1)
	if i+2 < len(l.words) {
		return c, extra(l, i+2, "/rollback takes an environment and \"to\" a release: "+join("/rollback", c.Env, "to", c.Ref))
	}
	return c, nil
}

// /lock ENV [reason...]
func parseLock(l *cmdLine) (Command, *Error) {
	if len(l.words) == 0 {
		return Command{}, &Error{Kind: MissingEnv,
			Msg:  "/lock needs the environment to lock",
			Hint: "write /lock production, optionally followed by the reason: /lock production release freeze"}
	}
	if err := checkEnv("/lock", l, 0); err != nil {
		return Command{}, err
	}
	return Command{Env: l.arg(0), Reason: strings.TrimSpace(l.raw[l.words[0].end:])}, nil
}

// /unlock ENV
func parseUnlock(l *cmdLine) (Command, *Error) {
	if len(l.words) == 0 {
		return Command{}, &Error{Kind: MissingEnv,
			Msg:  "/unlock needs the environment to unlock",
			Hint: "write /unlock production (/status shows which environments are locked)"}
	}
	if err := checkEnv("/unlock", l, 0); err != nil {
		return Command{}, err
	}
	if len(l.words) > 1 {
		return Command{}, extra(l, 1, "/unlock takes one environment: "+join("/unlock", l.arg(0)))
	}
	return Command{Env: l.arg(0)}, nil
}

// /status [ENV]
func parseStatus(l *cmdLine) (Command, *Error) {
	var c Command
	if len(l.words) == 0 {
		return c, nil
	}
	if err := checkEnv("/status", l, 0); err != nil {
		return c, err
	}
	c.Env = l.arg(0)
	if len(l.words) > 1 {
		return c, extra(l, 1, "/status takes at most one environment: "+join("/status", c.Env)+", or /status for all of them")
	}
	return c, nil
}

// /help. Words after it are ignored: "/help deploy" wants the help text,
// and refusing it would help no one.
func parseHelp(*cmdLine) (Command, *Error) { return Command{}, nil }

// checkEnv checks that word i of l is an environment name.
func checkEnv(cmd string, l *cmdLine, i int) *Error {
	env := l.arg(i)
	if ValidEnv(env) {
		return nil
	}
	hint := "environment names are letters, digits, '.', '-' and '_' (up to 100), starting with a letter or digit; /status lists them"
	if fixed := strings.Trim(env, cleanup); fixed != env && ValidEnv(fixed) {
		hint = "write " + retype(cmd, l, i, fixed)
	}
	return &Error{Kind: BadEnv, Msg: fmt.Sprintf("%s is not an environment name", quote(env)), Hint: hint}
}

// checkRef checks that word i of l is a ref.
func checkRef(cmd string, l *cmdLine, i int) *Error {
	ref := l.arg(i)
	p := refProblem(ref)
	if p == "" {
		return nil
	}
	hint := "use a commit SHA (7 to 40 hex digits), a branch or a tag"
	if fixed := strings.Trim(ref, cleanup+"."); fixed != ref && ValidRef(fixed) {
		hint = "write " + retype(cmd, l, i, fixed)
	}
	return &Error{Kind: BadRef, Msg: fmt.Sprintf("%s is not a SHA, branch or tag: git ref names %s", quote(ref), p), Hint: hint}
}

// cleanup is what people wrap names in or end sentences with.
const cleanup = "`'\"<>()[]{},;:!?*"

// retype is l with word i replaced by s and extra space removed.
func retype(cmd string, l *cmdLine, i int, s string) string {
	args := make([]string, len(l.words))
	for j, w := range l.words {
		args[j] = w.s
	}
	args[i] = s
	return clip(join(cmd, args...))
}

// clip cuts s short when it is long, so a hint that repeats a long line
// stays a hint.
func clip(s string) string {
	const max = 120
	if r := []rune(s); len(r) > max {
		return string(r[:max]) + "…"
	}
	return s
}

// extra is the Error for words from word i on that the command does not take.
func extra(l *cmdLine, i int, hint string) *Error {
	ws := make([]string, 0, len(l.words)-i)
	for _, w := range l.words[i:] {
		ws = append(ws, w.s)
	}
	return &Error{Kind: ExtraWords, Msg: fmt.Sprintf("unexpected %s", quote(strings.Join(ws, " "))), Hint: hint}
}

// without is the words' text except word i.
func without(ws []word, i int) []string {
	var out []string
	for j, w := range ws {
		if j != i {
			out = append(out, w.s)
		}
	}
	return out
}

// join is a command line from a command and its non-empty words.
func join(cmd string, args ...string) string {
	var b strings.Builder
	b.WriteString(cmd)
	for _, a := range args {
		if a != "" {
			b.WriteByte(' ')
			b.WriteString(a)
		}
	}
	return b.String()
}

// quote is s in double quotes, with anything unprintable escaped, and cut
// short when long so one odd word cannot flood a reply.
func quote(s string) string {
	const max = 60
	if r := []rune(s); len(r) > max {
		s = string(r[:max]) + "…"
	}
	return strconv.Quote(s)
}

// unknown is the Error for a command word that is not ours, suggesting the
// nearest one.
func unknown(name string, words []word) *Error {
	e := &Error{Kind: UnknownCommand, Msg: fmt.Sprintf("%s is not a command", quote(words[0].s)),
		Hint: "/help lists the commands"}
	if s := suggest(name); s != "" {
		args := make([]string, 0, len(words)-1)
		for _, w := range words[1:] {
			args = append(args, w.s)
		}
		e.Hint = fmt.Sprintf("did you mean %s? /help lists the commands", clip(join("/"+s, args...)))
	}
	return e
}

// synonyms are words people reach for instead of ours.
var synonyms = map[string]string{
	"ship": Deploy, "release": Deploy, "deployment": Deploy,
	"revert": Rollback, "undo": Rollback, "rollout": Rollback, "roll": Rollback,
	"freeze": Lock, "hold": Lock, "unfreeze": Unlock, "unhold": Unlock,
	"info": Status, "state": Status, "stat": Status,
	"commands": Help, "usage": Help,
}

// suggest is the command name most like word, or "" when none is close.
func suggest(word string) string {
	// Trailing punctuation ("/deploy:", "/status?") is a typo for the command.
	letters := strings.TrimRightFunc(word, func(r rune) bool { return !unicode.IsLetter(r) })
	if _, ok := grammar[letters]; ok {
		return letters
	}
	if s, ok := synonyms[letters]; ok {
		return s
	}
	best, bestD := "", 3
	for _, n := range names {
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
