package command

import (
	"reflect"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "/deploy", "/deploy staging abc1234", "/rollback production to v1.2", "/rollback to x",
		"/lock production freeze for #12", "/unlock production", "/status", "/help me",
		"/Deploy Staging\r\n/ROLLBACK prod TO abc1234 \r\n", "```\n/deploy\n```\n/status", "~~~ sh\n/lock x\n",
		"> /deploy\n    /deploy\n\t/deploy\n`/deploy`", "<!--\n/deploy\n-->", "- ```\n  /deploy\n  ```",
		"/deplyo staging", "/unlock staging now", "/rollback staging abc1234", "/lock", "/deploy st@ging",
		"/deploy staging main..x", "/deploy x a@{1}", "/ \n/\n/etc/hosts", strings.Repeat("/status\n", 12),
		"/deploy \xff\xfe", "/lock é\u200d", "/rollback to", "/deploy to staging",
		"> q\n/deploy\n\n/status", "a <!-- b\n/deploy\n-->\n/status", "> ```\n> x\n/status",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		cmds, errs := parse(body)

		lines := countLines(body)
		if n := len(cmds) + len(errs); n > lines || n > MaxCommands+1 {
			t.Fatalf("%d commands and %d errors from %d lines", len(cmds), len(errs), lines)
		}
		seen := map[int]bool{}
		for _, c := range cmds {
			checkCommand(t, c)
			checkLine(t, seen, c.Line, lines, c.Raw)
		}
		for _, e := range errs {
			checkError(t, e)
			checkLine(t, seen, e.Line, lines, e.Raw)
		}

		again, againErrs := parse(body)
		if !reflect.DeepEqual(cmds, again) || !reflect.DeepEqual(errs, againErrs) {
			t.Fatalf("Parse is not deterministic")
		}

		// Line endings do not matter.
		if !strings.Contains(body, "\r") {
			crlf, crlfErrs := parse(strings.ReplaceAll(body, "\n", "\r\n"))
			if !reflect.DeepEqual(cmds, crlf) || !reflect.DeepEqual(errs, crlfErrs) {
				t.Fatalf("CRLF changes the result")
			}
		}

		// Nothing in a code block that never closes, or in a quote, is a
		// command.
		fence := strings.Repeat("`", longestRun(body, '`')+3)
		if c, e := parse(fence + "\n" + body); len(c)+len(e) != 0 {
			t.Fatalf("fenced body gave %v %v", c, e)
		}
		quoted := "> " + strings.Join(splitLines(body), "\n> ")
		if c, e := parse(quoted); len(c)+len(e) != 0 {
			t.Fatalf("quoted body gave %v %v", c, e)
		}
	})
}

// checkCommand checks what c's grammar promises.
func checkCommand(t *testing.T, c Command) {
	t.Helper()
	spec, ok := find(specs, c.Name)
	if !ok {
		t.Errorf("unknown name %q", c.Name)
	}
	g := spec.Grammar
	if c.Env != "" && !ValidEnv(c.Env) {
		t.Errorf("line %d: invalid env %q", c.Line, c.Env)
	}
	if (g == EnvReason || g == LockedEnv) && c.Env == "" {
		t.Errorf("line %d: /%s without an environment", c.Line, c.Name)
	}
	if c.Ref != "" && !ValidRef(c.Ref) {
		t.Errorf("line %d: invalid ref %q: rule %d", c.Line, c.Ref, refRule(c.Ref))
	}
	if c.Ref != "" && g != EnvRef && g != EnvToRef {
		t.Errorf("line %d: ref on /%s", c.Line, c.Name)
	}
	if c.Reason != "" && (g != EnvReason || strings.ContainsAny(c.Reason, "\r\n")) {
		t.Errorf("line %d: reason %q on /%s", c.Line, c.Reason, c.Name)
	}
}

// checkError checks that e holds what its Kind is said with.
func checkError(t *testing.T, e *Error) {
	t.Helper()
	known := e.Kind != UnknownCommand && e.Kind != TooMany
	if e.Line < 1 || e.Kind == "" || known != (e.Command != "") || known != (e.Grammar != 0) {
		t.Errorf("incomplete error %+v", e)
	}
	switch e.Kind {
	case UnknownCommand, ExtraWords, MissingRef, BadEnv, BadRef:
		if e.Word == "" {
			t.Errorf("line %d: %s without the word", e.Line, e.Kind)
		}
	case MissingTo:
		if !ValidRef(e.Ref) {
			t.Errorf("line %d: missing to before %q, not a ref", e.Line, e.Ref)
		}
	}
	if (e.Kind == BadRef) != (e.Rule != RefValid) {
		t.Errorf("line %d: %s with rule %d", e.Line, e.Kind, e.Rule)
	}
	if e.Fix != "" && (!strings.HasPrefix(e.Fix, "/") || strings.ContainsAny(e.Fix, "\r\n")) {
		t.Errorf("line %d: fix %q", e.Line, e.Fix)
	}
}

func checkLine(t *testing.T, seen map[int]bool, line, lines int, raw string) {
	t.Helper()
	if line < 1 || line > lines {
		t.Errorf("line %d outside 1..%d", line, lines)
	}
	if seen[line] {
		t.Errorf("two results for line %d", line)
	}
	seen[line] = true
	if !strings.HasPrefix(raw, "/") || strings.ContainsAny(raw, "\r\n") {
		t.Errorf("line %d: raw %q", line, raw)
	}
}

func longestRun(s string, c byte) int {
	best, n := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			n++
			best = max(best, n)
		} else {
			n = 0
		}
	}
	return best
}

// countLines counts lines as Markdown does: \r\n, \r and \n each end one.
func countLines(s string) int {
	n := 1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\n':
			n++
		case '\r':
			n++
			if i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
		}
	}
	return n
}
