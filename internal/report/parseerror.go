package report

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/shipbot/shipbot/internal/command"
)

// What the reply says of a command line that did not parse: what is wrong,
// quoting the person's own words, and what to type instead.

// ParseErrorText is what is wrong with the line e is about and what to
// type instead: the two halves of its sentence in the reply.
func ParseErrorText(e *command.Error) (msg, hint string) {
	if e == nil {
		return "", ""
	}
	switch e.Kind {
	case command.UnknownCommand:
		return quoted(e.Word) + " is not a command", didYouMean(e.Fix)
	case command.ExtraWords:
		return extraWords(e)
	case command.MissingEnv:
		return e.Command + " needs the environment to " + strings.TrimPrefix(e.Command, "/"), missingEnvHint(e)
	case command.MissingTo:
		return join(e.Command, e.Env, e.Ref) + ` needs "to" before the ref`, "write " + join(e.Command, e.Env, "to", e.Ref)
	case command.MissingRef:
		return missingRef(e)
	case command.BadEnv:
		return quoted(e.Word) + " is not an environment name", writeOr(e.Fix, envRules)
	case command.BadRef:
		return quoted(e.Word) + " is not a SHA, branch or tag: git ref names " + refRules[e.Rule], writeOr(e.Fix, "use a commit SHA (7 to 40 hex digits), a branch or a tag")
	case command.TooMany:
		return fmt.Sprintf("this comment has more than %d commands; the ones from line %d on were not read", command.MaxCommands, e.Line),
			fmt.Sprintf("send at most %d commands per comment: post the rest in a new comment", command.MaxCommands)
	}
	return string(e.Kind), ""
}

func didYouMean(fix string) string {
	if fix == "" {
		return "/help lists the commands"
	}
	return "did you mean " + clipLine(fix) + "? /help lists the commands"
}

// extraWords: a word that does not belong where it is (the Fix is the line
// without it), or words after all the command takes.
func extraWords(e *command.Error) (msg, hint string) {
	if e.Fix != "" {
		return e.Command + " does not take " + quoted(e.Word), writeOr(e.Fix, "")
	}
	return "unexpected " + quoted(e.Word), e.Command + " takes " + takes(e)
}

// takes is what the command takes, with the line it would have been: "an
// environment and a ref: /deploy staging abc1234".
func takes(e *command.Error) string {
	cmd := e.Command
	switch e.Grammar {
	case command.EnvRef:
		return "an environment and a ref: " + join(cmd, e.Env, e.Ref)
	case command.EnvToRef:
		if e.Ref != "" {
			return `an environment and "to" a release: ` + join(cmd, e.Env, "to", e.Ref)
		}
		return `an environment and "to" a release: ` + join(cmd, e.Env) + " or " + join(cmd, e.Env, "to", "abc1234")
	case command.LockedEnv:
		return "one environment: " + join(cmd, e.Env)
	case command.OptionalEnv:
		return "at most one environment: " + join(cmd, e.Env) + ", or " + cmd + " for all of them"
	}
	return "no more words: " + join(cmd, e.Env, e.Ref)
}

func missingEnvHint(e *command.Error) string {
	line := e.Command + " production"
	if e.Grammar == command.LockedEnv {
		return "write " + line + " (/status shows which environments are locked)"
	}
	return "write " + line + ", optionally followed by the reason: " + line + " release freeze"
}

func missingRef(e *command.Error) (msg, hint string) {
	bare := join(e.Command, e.Env)
	return bare + " needs the release to go back to after " + quoted(e.Word),
		"write " + join(e.Command, e.Env, "to", "abc1234") + " with the release's SHA or tag, or " + bare + " for the one before the current release"
}

// envRules is the rule of environment names, for a name that breaks it.
var envRules = fmt.Sprintf("environment names are letters, digits, '.', '-' and '_' (up to %d), starting with a letter or digit; /status lists them", command.MaxEnvLen)

// refRules finish the sentence "git ref names ...".
var refRules = map[command.RefRule]string{
	command.RefEmpty:       "cannot be empty",
	command.RefTooLong:     fmt.Sprintf("are at most %d bytes long", command.MaxRefLen),
	command.RefAt:          `cannot be "@"`,
	command.RefLeadingDash: `cannot start with "-"`,
	command.RefSlashEnd:    `cannot start or end with "/"`,
	command.RefDotEnd:      `cannot end with "."`,
	command.RefDotDot:      `cannot contain ".."`,
	command.RefAtBrace:     `cannot contain "@{"`,
	command.RefDoubleSlash: `cannot contain "//"`,
	command.RefNotUTF8:     "must be valid UTF-8",
	command.RefInvisible:   "cannot contain control or invisible characters",
	command.RefSpace:       "cannot contain spaces",
	command.RefSpecial:     `cannot contain any of ~ ^ : ? * [ \`,
	command.RefDotPart:     `cannot have a part starting with "."`,
	command.RefLockPart:    `cannot have a part ending in ".lock"`,
}

// writeOr is "write FIX", or otherwise when there is no fix.
func writeOr(fix, otherwise string) string {
	if fix == "" {
		return otherwise
	}
	return "write " + clipLine(fix)
}

// clipLine cuts a command line short when it is long, so a hint that
// repeats a long line stays a hint.
func clipLine(s string) string {
	const max = 120
	if r := []rune(s); len(r) > max {
		return string(r[:max]) + "…"
	}
	return s
}

// quoted is s in double quotes, with anything unprintable escaped, and cut
// short when long so one odd word cannot flood a reply.
func quoted(s string) string {
	const max = 60
	if r := []rune(s); len(r) > max {
		s = string(r[:max]) + "…"
	}
	return strconv.Quote(s)
}
