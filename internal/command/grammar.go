package command

import "strings"

// Grammar is the arguments a command takes. Each reads the words after the
// command word; a Spec names the one its command uses.
type Grammar int

const (
	// AnyArgs takes any words and ignores them (/help: "/help deploy"
	// wants the help text, and refusing it would help no one).
	AnyArgs Grammar = iota + 1
	// OptionalEnv is [ENV] (/status).
	OptionalEnv
	// LockedEnv is ENV, an environment that is locked (/unlock): without
	// it, the reply points to /status to find one.
	LockedEnv
	// EnvReason is ENV [reason...] (/lock); the reason is the rest of the
	// line as typed.
	EnvReason
	// EnvRef is [ENV] [REF] (/deploy).
	EnvRef
	// EnvToRef is [ENV] [to REF] (/rollback).
	EnvToRef
)

// grammars reads each Grammar.
var grammars = map[Grammar]func(*cmdLine) (Command, *Error){
	AnyArgs:     parseAnyArgs,
	OptionalEnv: parseOptionalEnv,
	LockedEnv:   parseLockedEnv,
	EnvReason:   parseEnvReason,
	EnvRef:      parseEnvRef,
	EnvToRef:    parseEnvToRef,
}

// cmdLine is a command line being parsed: the command as "/name", the
// line's text and the words after the command word.
type cmdLine struct {
	cmd   string
	raw   string
	words []word
}

func (l *cmdLine) arg(i int) string { return l.words[i].s }

// isTo reports whether word i is the keyword "to", in any case.
func (l *cmdLine) isTo(i int) bool { return i < len(l.words) && strings.EqualFold(l.words[i].s, "to") }

func parseAnyArgs(*cmdLine) (Command, *Error) { return Command{}, nil }

// [ENV]
func parseOptionalEnv(l *cmdLine) (Command, *Error) {
	var c Command
	if len(l.words) == 0 {
		return c, nil
	}
	if err := l.checkEnv(0); err != nil {
		return c, err
	}
	c.Env = l.arg(0)
	if len(l.words) > 1 {
		return c, l.extra(1, c)
	}
	return c, nil
}

// ENV
func parseLockedEnv(l *cmdLine) (Command, *Error) {
	if len(l.words) == 0 {
		return Command{}, &Error{Kind: MissingEnv}
	}
	if err := l.checkEnv(0); err != nil {
		return Command{}, err
	}
	c := Command{Env: l.arg(0)}
	if len(l.words) > 1 {
		return Command{}, l.extra(1, c)
	}
	return c, nil
}

// ENV [reason...]
func parseEnvReason(l *cmdLine) (Command, *Error) {
	if len(l.words) == 0 {
		return Command{}, &Error{Kind: MissingEnv}
	}
	if err := l.checkEnv(0); err != nil {
		return Command{}, err
	}
	return Command{Env: l.arg(0), Reason: strings.TrimSpace(l.raw[l.words[0].end:])}, nil
}

// [ENV] [REF]
func parseEnvRef(l *cmdLine) (Command, *Error) {
	if l.isTo(0) || l.isTo(1) {
		// "/deploy to staging" or "/deploy staging to abc1234": /rollback's
		// "to" does not belong here.
		i := l.indexTo()
		return Command{}, &Error{Kind: ExtraWords, Word: l.arg(i), Fix: join(l.cmd, without(l.words, i)...)}
	}
	var c Command
	n := len(l.words)
	if n >= 1 {
		if err := l.checkEnv(0); err != nil {
			return c, err
		}
		c.Env = l.arg(0)
	}
	if n >= 2 {
		if err := l.checkRef(1); err != nil {
			return c, err
		}
		c.Ref = l.arg(1)
	}
	if n > 2 {
		return c, l.extra(2, c)
	}
	return c, nil
}

func (l *cmdLine) indexTo() int {
	if l.isTo(0) {
		return 0
	}
	return 1
}

// [ENV] [to REF]
func parseEnvToRef(l *cmdLine) (Command, *Error) {
	var c Command
	i := 0
	if len(l.words) > 0 && !l.isTo(0) {
		if err := l.checkEnv(0); err != nil {
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
			return c, &Error{Kind: MissingTo, Env: c.Env, Ref: l.arg(i)}
		}
		return c, l.extra(i, c)
	}
	return l.toRef(i, c)
}

// toRef reads the ref after the "to" that is word i.
func (l *cmdLine) toRef(i int, c Command) (Command, *Error) {
	if i+1 == len(l.words) {
		return c, &Error{Kind: MissingRef, Env: c.Env, Word: l.arg(i)}
	}
	if err := l.checkRef(i + 1); err != nil {
		return c, err
	}
	c.Ref = l.arg(i + 1)
	if i+2 < len(l.words) {
		return c, l.extra(i+2, c)
	}
	return c, nil
}

// checkEnv checks that word i is an environment name.
func (l *cmdLine) checkEnv(i int) *Error {
	env := l.arg(i)
	if ValidEnv(env) {
		return nil
	}
	e := &Error{Kind: BadEnv, Word: env}
	if fixed := strings.Trim(env, cleanup); fixed != env && ValidEnv(fixed) {
		e.Fix = l.retype(i, fixed)
	}
	return e
}

// checkRef checks that word i is a ref.
func (l *cmdLine) checkRef(i int) *Error {
	ref := l.arg(i)
	rule := refRule(ref)
	if rule == RefValid {
		return nil
	}
	e := &Error{Kind: BadRef, Word: ref, Rule: rule}
	if fixed := strings.Trim(ref, cleanup+"."); fixed != ref && ValidRef(fixed) {
		e.Fix = l.retype(i, fixed)
	}
	return e
}

// cleanup is what people wrap names in or end sentences with.
const cleanup = "`'\"<>()[]{},;:!?*"

// retype is the line with word i replaced by s and extra space removed.
func (l *cmdLine) retype(i int, s string) string {
	args := make([]string, len(l.words))
	for j, w := range l.words {
		args[j] = w.s
	}
	args[i] = s
	return join(l.cmd, args...)
}

// extra is the Error for words from word i on that the command does not
// take, after c was read.
func (l *cmdLine) extra(i int, c Command) *Error {
	ws := make([]string, 0, len(l.words)-i)
	for _, w := range l.words[i:] {
		ws = append(ws, w.s)
	}
	return &Error{Kind: ExtraWords, Word: strings.Join(ws, " "), Env: c.Env, Ref: c.Ref}
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
