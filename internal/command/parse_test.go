package command

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// wantErr is what a test checks of an Error: all of Kind and Line, Raw
// when raw is set, and when is is set, all that the reply says it with
// (Command, Grammar, Word, Env, Ref, Rule and Fix). internal/handlers
// tests the sentences.
type wantErr struct {
	kind Kind
	line int
	raw  string
	is   *Error
}

func cmd(line int, name, env, ref, reason, raw string) Command {
	return Command{Name: name, Env: env, Ref: ref, Reason: reason, Line: line, Raw: raw}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []Command
		errs []wantErr
	}{
		// Every form in SPEC §4.
		{name: "deploy bare", body: "/deploy",
			want: []Command{cmd(1, Deploy, "", "", "", "/deploy")}},
		{name: "deploy env", body: "/deploy staging",
			want: []Command{cmd(1, Deploy, "staging", "", "", "/deploy staging")}},
		{name: "deploy env sha", body: "/deploy staging abc1234",
			want: []Command{cmd(1, Deploy, "staging", "abc1234", "", "/deploy staging abc1234")}},
		{name: "deploy env full sha", body: "/deploy production 0123456789abcdef0123456789abcdef01234567",
			want: []Command{cmd(1, Deploy, "production", "0123456789abcdef0123456789abcdef01234567", "", "/deploy production 0123456789abcdef0123456789abcdef01234567")}},
		{name: "deploy env branch", body: "/deploy staging feature/login-v2",
			want: []Command{cmd(1, Deploy, "staging", "feature/login-v2", "", "/deploy staging feature/login-v2")}},
		{name: "deploy env tag", body: "/deploy production v1.4.2",
			want: []Command{cmd(1, Deploy, "production", "v1.4.2", "", "/deploy production v1.4.2")}},
		{name: "rollback bare", body: "/rollback",
			want: []Command{cmd(1, Rollback, "", "", "", "/rollback")}},
		{name: "rollback env", body: "/rollback staging",
			want: []Command{cmd(1, Rollback, "staging", "", "", "/rollback staging")}},
		{name: "rollback env to ref", body: "/rollback staging to abc1234",
			want: []Command{cmd(1, Rollback, "staging", "abc1234", "", "/rollback staging to abc1234")}},
		{name: "rollback to ref without env", body: "/rollback to v1.4.1",
			want: []Command{cmd(1, Rollback, "", "v1.4.1", "", "/rollback to v1.4.1")}},
		{name: "lock env", body: "/lock production",
			want: []Command{cmd(1, Lock, "production", "", "", "/lock production")}},
		{name: "lock env reason kept as typed", body: "/lock production  release freeze:  see #12 ",
			want: []Command{cmd(1, Lock, "production", "", "release freeze:  see #12", "/lock production  release freeze:  see #12")}},
		{name: "unlock env", body: "/unlock production",
			want: []Command{cmd(1, Unlock, "production", "", "", "/unlock production")}},
		{name: "status bare", body: "/status",
			want: []Command{cmd(1, Status, "", "", "", "/status")}},
		{name: "status env", body: "/status staging",
			want: []Command{cmd(1, Status, "staging", "", "", "/status staging")}},
		{name: "help", body: "/help",
			want: []Command{cmd(1, Help, "", "", "", "/help")}},
		{name: "help ignores words after it", body: "/help deploy",
			want: []Command{cmd(1, Help, "", "", "", "/help deploy")}},
		{name: "env with dots dashes underscores", body: "/deploy eu-west.canary_2",
			want: []Command{cmd(1, Deploy, "eu-west.canary_2", "", "", "/deploy eu-west.canary_2")}},

		// Where a command may be.
		{name: "several commands with text between", body: "Looks good.\n/deploy staging\nthen\n/status\n",
			want: []Command{cmd(2, Deploy, "staging", "", "", "/deploy staging"), cmd(4, Status, "", "", "", "/status")}},
		{name: "up to three spaces of indentation", body: "   /deploy staging",
			want: []Command{cmd(1, Deploy, "staging", "", "", "/deploy staging")}},
		{name: "four spaces is indented code", body: "text\n\n    /deploy staging"},
		{name: "tab is indented code", body: "\t/deploy staging"},
		{name: "space then tab is indented code", body: "  \t/deploy staging"},
		{name: "mid sentence", body: "please /deploy staging when ready"},
		{name: "slash word after list marker", body: "- /deploy staging"},
		{name: "slash alone", body: "/\n/ deploy staging\n/  "},
		{name: "path at line start", body: "/etc/hosts is wrong\n/usr/bin/env"},
		{name: "digit after slash", body: "/2 of the checks failed"},
		{name: "inline code", body: "`/deploy staging` deploys it"},
		{name: "inline code double backticks", body: "``/deploy staging``"},
		{name: "quoted", body: "> /deploy production\n>/rollback\n  > /lock production"},
		{name: "reply quoting a command then giving one", body: "> /deploy production\n\n/status production",
			want: []Command{cmd(3, Status, "production", "", "", "/status production")}},
		{name: "backtick fence", body: "```\n/deploy production\n```\n/status",
			want: []Command{cmd(4, Status, "", "", "", "/status")}},
		{name: "tilde fence", body: "~~~\n/deploy production\n~~~\n/status",
			want: []Command{cmd(4, Status, "", "", "", "/status")}},
		{name: "fence with info string", body: "```sh\n/deploy production\n```\n/status",
			want: []Command{cmd(4, Status, "", "", "", "/status")}},
		{name: "indented fence", body: "   ~~~ text\n/deploy production\n   ~~~\n/status",
			want: []Command{cmd(4, Status, "", "", "", "/status")}},
		{name: "longer fence needs as long a close", body: "````\n```\n/deploy production\n````\n/status",
			want: []Command{cmd(5, Status, "", "", "", "/status")}},
		{name: "other fence char does not close", body: "```\n~~~\n/deploy production\n```\n/status",
			want: []Command{cmd(5, Status, "", "", "", "/status")}},
		{name: "close fence with text after is not a close", body: "```\n``` x\n/deploy production\n```\n/status",
			want: []Command{cmd(5, Status, "", "", "", "/status")}},
		{name: "unclosed fence runs to the end", body: "```\n/deploy production\n/status"},
		{name: "inline code that looks like a fence", body: "```x```\n/status",
			want: []Command{cmd(2, Status, "", "", "", "/status")}},
		{name: "fence in a list item", body: "1. run\n   ```\n   /deploy production\n   ```\n/status",
			want: []Command{cmd(5, Status, "", "", "", "/status")}},
		{name: "fence in a bullet item", body: "- run\n  ```\n  /deploy production\n  ```\n/status",
			want: []Command{cmd(5, Status, "", "", "", "/status")}},
		{name: "quoted fence ends with the quote", body: "> ```\n> /deploy production\n/status",
			want: []Command{cmd(3, Status, "", "", "", "/status")}},
		{name: "line continuing a quote is quoted", body: "> can we ship?\n/deploy production\n\n/status",
			want: []Command{cmd(4, Status, "", "", "", "/status")}},
		{name: "nested quote", body: ">> /deploy production\n> > /lock production\n\n/status",
			want: []Command{cmd(4, Status, "", "", "", "/status")}},
		{name: "blank quote line ends the paragraph", body: "> ok\n>\n/status",
			want: []Command{cmd(3, Status, "", "", "", "/status")}},
		{name: "closed quoted fence", body: "> ```\n> /deploy production\n> ```\n/status",
			want: []Command{cmd(4, Status, "", "", "", "/status")}},
		{name: "inline html comment across lines", body: "note <!-- hidden\n/deploy production\n-->\n/status",
			want: []Command{cmd(4, Status, "", "", "", "/status")}},
		{name: "inline html comment ends with the paragraph", body: "a <!-- b\n\n/status",
			want: []Command{cmd(3, Status, "", "", "", "/status")}},
		{name: "html comment closed then reopened", body: "<!-- a --> <!-- b\n/deploy production\n-->\n/status",
			want: []Command{cmd(4, Status, "", "", "", "/status")}},
		{name: "fence inside html comment is not a fence", body: "<!--\n```\n-->\n/status",
			want: []Command{cmd(4, Status, "", "", "", "/status")}},
		{name: "html comment inside fence is not a comment", body: "```\n<!--\n```\n/status",
			want: []Command{cmd(4, Status, "", "", "", "/status")}},
		{name: "html comment", body: "<!--\n/deploy production\n-->\n/status",
			want: []Command{cmd(4, Status, "", "", "", "/status")}},
		{name: "one line html comment", body: "<!-- /deploy production -->\n/status",
			want: []Command{cmd(2, Status, "", "", "", "/status")}},

		// Spelling.
		{name: "mixed case command", body: "/Deploy Staging",
			want: []Command{cmd(1, Deploy, "Staging", "", "", "/Deploy Staging")}},
		{name: "upper case rollback and to", body: "/ROLLBACK Production TO V1.2",
			want: []Command{cmd(1, Rollback, "Production", "V1.2", "", "/ROLLBACK Production TO V1.2")}},
		{name: "mixed case to without env", body: "/rollback To abc1234",
			want: []Command{cmd(1, Rollback, "", "abc1234", "", "/rollback To abc1234")}},
		{name: "crlf", body: "hi\r\n/deploy staging  \r\n/status\r\n",
			want: []Command{cmd(2, Deploy, "staging", "", "", "/deploy staging"), cmd(3, Status, "", "", "", "/status")}},
		{name: "lone cr ends a line", body: "hi\r/unlock staging",
			want: []Command{cmd(2, Unlock, "staging", "", "", "/unlock staging")}},
		{name: "tabs between words and trailing whitespace", body: "/deploy\tstaging\t abc1234 \t",
			want: []Command{cmd(1, Deploy, "staging", "abc1234", "", "/deploy\tstaging\t abc1234")}},
		{name: "unicode space between words", body: "/deploy\u00a0staging",
			want: []Command{cmd(1, Deploy, "staging", "", "", "/deploy\u00a0staging")}},

		// Unknown commands.
		{name: "typo suggests the command", body: "/deplyo staging",
			errs: []wantErr{{kind: UnknownCommand, line: 1, raw: "/deplyo staging", is: &Error{Word: "/deplyo", Fix: "/deploy staging"}}}},
		{name: "typo in short command", body: "/lokc production",
			errs: []wantErr{{kind: UnknownCommand, line: 1, is: &Error{Word: "/lokc", Fix: "/lock production"}}}},
		{name: "prefix suggests the command", body: "/roll staging",
			errs: []wantErr{{kind: UnknownCommand, line: 1, is: &Error{Word: "/roll", Fix: "/rollback staging"}}}},
		{name: "synonym suggests the command", body: "/revert production",
			errs: []wantErr{{kind: UnknownCommand, line: 1, is: &Error{Word: "/revert", Fix: "/rollback production"}}}},
		{name: "trailing punctuation suggests the command", body: "/deploy: staging",
			errs: []wantErr{{kind: UnknownCommand, line: 1, is: &Error{Word: "/deploy:", Fix: "/deploy staging"}}}},
		{name: "nothing close", body: "/shrug",
			errs: []wantErr{{kind: UnknownCommand, line: 1, is: &Error{Word: "/shrug"}}}},
		{name: "unknown among good ones", body: "/deploy staging\n/deplyo production\n/status",
			want: []Command{cmd(1, Deploy, "staging", "", "", "/deploy staging"), cmd(3, Status, "", "", "", "/status")},
			errs: []wantErr{{kind: UnknownCommand, line: 2}}},

		// Extra words, missing words.
		{name: "unlock extra words", body: "/unlock staging now",
			errs: []wantErr{{kind: ExtraWords, line: 1, is: &Error{Command: "/unlock", Grammar: LockedEnv, Word: "now", Env: "staging"}}}},
		{name: "deploy extra words", body: "/deploy staging abc1234 please",
			errs: []wantErr{{kind: ExtraWords, line: 1, is: &Error{Command: "/deploy", Grammar: EnvRef, Word: "please", Env: "staging", Ref: "abc1234"}}}},
		{name: "deploy with to", body: "/deploy to staging",
			errs: []wantErr{{kind: ExtraWords, line: 1, is: &Error{Command: "/deploy", Grammar: EnvRef, Word: "to", Fix: "/deploy staging"}}}},
		{name: "deploy env to ref", body: "/deploy staging to abc1234",
			errs: []wantErr{{kind: ExtraWords, line: 1, is: &Error{Command: "/deploy", Grammar: EnvRef, Word: "to", Fix: "/deploy staging abc1234"}}}},
		{name: "status extra words", body: "/status staging production",
			errs: []wantErr{{kind: ExtraWords, line: 1, is: &Error{Command: "/status", Grammar: OptionalEnv, Word: "production", Env: "staging"}}}},
		{name: "rollback extra words after ref", body: "/rollback staging to abc1234 now",
			errs: []wantErr{{kind: ExtraWords, line: 1, is: &Error{Command: "/rollback", Grammar: EnvToRef, Word: "now", Env: "staging", Ref: "abc1234"}}}},
		{name: "rollback without to", body: "/rollback staging abc1234",
			errs: []wantErr{{kind: MissingTo, line: 1, is: &Error{Command: "/rollback", Grammar: EnvToRef, Env: "staging", Ref: "abc1234"}}}},
		{name: "rollback words that are not a ref", body: "/rollback staging please now",
			errs: []wantErr{{kind: ExtraWords, line: 1, is: &Error{Command: "/rollback", Grammar: EnvToRef, Word: "please now", Env: "staging"}}}},
		{name: "rollback to nothing", body: "/rollback staging to",
			errs: []wantErr{{kind: MissingRef, line: 1, is: &Error{Command: "/rollback", Grammar: EnvToRef, Word: "to", Env: "staging"}}}},
		{name: "rollback TO nothing keeps the word as typed", body: "/rollback staging TO",
			errs: []wantErr{{kind: MissingRef, line: 1, is: &Error{Command: "/rollback", Grammar: EnvToRef, Word: "TO", Env: "staging"}}}},
		{name: "rollback bare to", body: "/rollback to",
			errs: []wantErr{{kind: MissingRef, line: 1, is: &Error{Command: "/rollback", Grammar: EnvToRef, Word: "to"}}}},
		{name: "lock without env", body: "/lock",
			errs: []wantErr{{kind: MissingEnv, line: 1, is: &Error{Command: "/lock", Grammar: EnvReason}}}},
		{name: "unlock without env", body: "/unlock  ",
			errs: []wantErr{{kind: MissingEnv, line: 1, raw: "/unlock"}}},

		// Bad tokens.
		{name: "bad env", body: "/deploy st@ging",
			errs: []wantErr{{kind: BadEnv, line: 1, is: &Error{Command: "/deploy", Grammar: EnvRef, Word: "st@ging"}}}},
		{name: "env wrapped in backticks", body: "/deploy `staging`",
			errs: []wantErr{{kind: BadEnv, line: 1, is: &Error{Command: "/deploy", Grammar: EnvRef, Word: "`staging`", Fix: "/deploy staging"}}}},
		{name: "env with trailing comma", body: "/lock production, freeze",
			errs: []wantErr{{kind: BadEnv, line: 1, is: &Error{Command: "/lock", Grammar: EnvReason, Word: "production,", Fix: "/lock production freeze"}}}},
		{name: "env starting with dash", body: "/status -v",
			errs: []wantErr{{kind: BadEnv, line: 1}}},
		{name: "env too long", body: "/status " + strings.Repeat("a", 101),
			errs: []wantErr{{kind: BadEnv, line: 1}}},
		{name: "env of 100 characters", body: "/status " + strings.Repeat("a", 100),
			want: []Command{cmd(1, Status, strings.Repeat("a", 100), "", "", "/status "+strings.Repeat("a", 100))}},
		{name: "ref with dot dot", body: "/deploy staging main..feature",
			errs: []wantErr{{kind: BadRef, line: 1, is: &Error{Command: "/deploy", Grammar: EnvRef, Word: "main..feature", Rule: RefDotDot}}}},
		{name: "ref with leading dash", body: "/deploy staging -f",
			errs: []wantErr{{kind: BadRef, line: 1}}},
		{name: "ref with tilde", body: "/deploy staging HEAD~1",
			errs: []wantErr{{kind: BadRef, line: 1}}},
		{name: "ref ending in .lock", body: "/rollback staging to v1.lock",
			errs: []wantErr{{kind: BadRef, line: 1}}},
		{name: "ref with reflog syntax", body: "/deploy staging main@{1}",
			errs: []wantErr{{kind: BadRef, line: 1}}},
		{name: "ref with colon gets a fix", body: "/deploy staging main:",
			errs: []wantErr{{kind: BadRef, line: 1, is: &Error{Command: "/deploy", Grammar: EnvRef, Word: "main:", Rule: RefSpecial, Fix: "/deploy staging main"}}}},
		{name: "ref ending a sentence gets a fix", body: "/rollback production to v1.4.1.",
			errs: []wantErr{{kind: BadRef, line: 1, is: &Error{Command: "/rollback", Grammar: EnvToRef, Word: "v1.4.1.", Rule: RefDotEnd, Fix: "/rollback production to v1.4.1"}}}},
		{name: "ref with invisible character", body: "/deploy staging ma\u200din",
			errs: []wantErr{{kind: BadRef, line: 1}}},

		{name: "a long line is suggested whole", body: "/deplyo staging " + strings.Repeat("word ", 1000),
			errs: []wantErr{{kind: UnknownCommand, line: 1, is: &Error{Word: "/deplyo", Fix: "/deploy staging " + strings.TrimSpace(strings.Repeat("word ", 1000))}}}},

		// The limit.
		{name: "ten commands", body: strings.Repeat("/status\n", 10),
			want: statuses(10)},
		{name: "eleven commands", body: strings.Repeat("/status\n", 11),
			want: statuses(10),
			errs: []wantErr{{kind: TooMany, line: 11, raw: "/status", is: &Error{}}}},
		{name: "errors count towards the limit", body: strings.Repeat("/nope\n", 10) + "/status\n/status",
			errs: append(unknowns(10), wantErr{kind: TooMany, line: 11})},
		{name: "excluded lines do not count", body: "```\n" + strings.Repeat("/status\n", 20) + "```\n" + strings.Repeat("/status\n", 10),
			want: statusesFrom(23, 10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmds, errs := parse(tt.body)
			if !reflect.DeepEqual(cmds, tt.want) {
				t.Errorf("commands:\n got %+v\nwant %+v", cmds, tt.want)
			}
			if len(errs) != len(tt.errs) {
				t.Fatalf("got %d errors %v, want %d", len(errs), errs, len(tt.errs))
			}
			for i, w := range tt.errs {
				e := errs[i]
				if e.Kind != w.kind || e.Line != w.line {
					t.Errorf("error %d: got %s on line %d (%+v), want %s on line %d", i, e.Kind, e.Line, e, w.kind, w.line)
				}
				if w.raw != "" && e.Raw != w.raw {
					t.Errorf("error %d raw %q, want %q", i, e.Raw, w.raw)
				}
				if e.Raw == "" {
					t.Errorf("error %d has no raw text: %+v", i, e)
				}
				if w.is != nil {
					got := *e
					got.Kind, got.Line, got.Raw = "", 0, ""
					if !reflect.DeepEqual(got, *w.is) {
						t.Errorf("error %d:\n got %+v\nwant %+v", i, got, *w.is)
					}
				}
			}
		})
	}
}

func statuses(n int) []Command { return statusesFrom(1, n) }

func statusesFrom(line, n int) []Command {
	var cs []Command
	for i := range n {
		cs = append(cs, cmd(line+i, Status, "", "", "", "/status"))
	}
	return cs
}

func unknowns(n int) []wantErr {
	var ws []wantErr
	for i := range n {
		ws = append(ws, wantErr{kind: UnknownCommand, line: i + 1})
	}
	return ws
}

// Error() is for logs; internal/report says it to people.
func TestErrorString(t *testing.T) {
	_, errs := parse("hello\n/unlock staging now\n/lock")
	if len(errs) != 2 {
		t.Fatalf("got %d errors", len(errs))
	}
	var err error = errs[0]
	if got, want := err.Error(), `line 2: extra words "now"`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := errs[1].Error(), `line 3: missing environment`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestValidRef(t *testing.T) {
	for _, tt := range []struct {
		ref  string
		want bool
	}{
		{"abc1234", true}, {"main", true}, {"feature/x-y_z", true}, {"v1.2.3", true},
		{"refs/heads/main", true}, {"café", true}, {"a.b", true},
		{"", false}, {"-x", false}, {"a..b", false}, {"a b", false}, {"a~1", false},
		{"a^", false}, {"a:b", false}, {"a?", false}, {"a*", false}, {"a[b", false},
		{`a\b`, false}, {"x.lock", false}, {"x.lock/y", false}, {"a@{0}", false}, {"@", false},
		{"/a", false}, {"a/", false}, {"a//b", false}, {"a.", false}, {".a", false},
		{"a/.b", false}, {"a\x00b", false}, {"a\x7fb", false}, {"\xff", false},
		{strings.Repeat("a", 255), true}, {strings.Repeat("a", 256), false},
	} {
		if got := ValidRef(tt.ref); got != tt.want {
			t.Errorf("ValidRef(%q) = %v, want %v (rule %d)", tt.ref, got, tt.want, refRule(tt.ref))
		}
	}
}

func TestLooksLikeSHA(t *testing.T) {
	for ref, want := range map[string]bool{
		"abc1234": true, "ABC1234": true, strings.Repeat("f", 40): true,
		"abc123": false, strings.Repeat("f", 41): false, "abc123g": false, "main": false,
	} {
		if got := LooksLikeSHA(ref); got != want {
			t.Errorf("LooksLikeSHA(%q) = %v, want %v", ref, got, want)
		}
	}
}

func TestSuggest(t *testing.T) {
	for word, want := range map[string]string{
		"deplyo": Deploy, "depoly": Deploy, "dpeloy": Deploy, "dep": Deploy, "deployment": Deploy,
		"rollbak": Rollback, "rolback": Rollback, "unlcok": Unlock, "statsu": Status, "hepl": Help,
		"lock!": Lock, "xyz": "", "s": "", "hello": "", "cc": "", strings.Repeat("x", 500): "",
	} {
		if got := suggest(specs, word); got != want {
			t.Errorf("suggest(%q) = %q, want %q", word, got, want)
		}
	}
}

func Example() {
	cmds, errs := Parse("Ship it!\n/deploy staging\n/rollback production abc1234\n```\n/lock production\n```", specs)
	for _, c := range cmds {
		fmt.Printf("line %d: %s %q %q\n", c.Line, c.Name, c.Env, c.Ref)
	}
	for _, e := range errs {
		fmt.Printf("line %d: %s: %s %q %q\n", e.Line, e.Kind, e.Command, e.Env, e.Ref)
	}
	// Output:
	// line 2: deploy "staging" ""
	// line 3: missing to: /rollback "production" "abc1234"
}
