package report

import (
	"strings"
	"testing"

	"github.com/shipbot/shipbot/internal/command"
)

// Every kind of parse error is said in its own words, with a hint. The
// sentences for real command lines are tested in internal/handlers, with
// the real table of commands.
func TestParseErrorTextEveryKind(t *testing.T) {
	for _, e := range []*command.Error{
		{Kind: command.UnknownCommand, Word: "/x"},
		{Kind: command.ExtraWords, Command: "/x", Grammar: command.OptionalEnv, Word: "y"},
		{Kind: command.MissingEnv, Command: "/x", Grammar: command.EnvReason},
		{Kind: command.MissingTo, Command: "/x", Grammar: command.EnvToRef, Ref: "y"},
		{Kind: command.MissingRef, Command: "/x", Grammar: command.EnvToRef, Word: "to"},
		{Kind: command.BadEnv, Command: "/x", Grammar: command.OptionalEnv, Word: "-y"},
		{Kind: command.BadRef, Command: "/x", Grammar: command.EnvRef, Word: "-y", Rule: command.RefLeadingDash},
		{Kind: command.TooMany, Line: 11},
	} {
		msg, hint := ParseErrorText(e)
		if msg == "" || hint == "" || msg == string(e.Kind) {
			t.Errorf("%s: %q, %q", e.Kind, msg, hint)
		}
	}
	if msg, hint := ParseErrorText(nil); msg != "" || hint != "" {
		t.Errorf("no error: %q, %q", msg, hint)
	}
}

// Every git rule a ref can break finishes "git ref names ...".
func TestParseErrorTextEveryRefRule(t *testing.T) {
	for r := command.RefEmpty; r <= command.RefLockPart; r++ {
		msg, _ := ParseErrorText(&command.Error{Kind: command.BadRef, Word: "x", Rule: r})
		if strings.HasSuffix(msg, "git ref names ") {
			t.Errorf("rule %d has no words", r)
		}
	}
	if len(refRules) != int(command.RefLockPart) {
		t.Errorf("%d rules have words, want %d", len(refRules), command.RefLockPart)
	}
}
