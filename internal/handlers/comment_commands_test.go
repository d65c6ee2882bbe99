package handlers

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/shipbot/shipbot/internal/command"
	"github.com/shipbot/shipbot/internal/report"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// replyGoldens are the reviewed replies of internal/report: every command
// has one showing what the bot answers it.
const replyGoldens = "../report/testdata/reply"

// Every command is whole: its help line, who may run it, a grammar that
// reads it, a handler, synonyms that lead to it and a golden reply.
func TestCommandTable(t *testing.T) {
	table := commandTable()
	seen := map[string]string{}
	for _, e := range table {
		t.Run(e.Name, func(t *testing.T) {
			if !regexp.MustCompile(`^[a-z]+$`).MatchString(e.Name) {
				t.Errorf("name %q: commands are lower-case words", e.Name)
			}
			if e.Synopsis != "/"+e.Name && !strings.HasPrefix(e.Synopsis, "/"+e.Name+" ") {
				t.Errorf("synopsis %q does not start with /%s", e.Synopsis, e.Name)
			}
			if strings.TrimSpace(e.Does) == "" || e.Run == nil {
				t.Errorf("no help line or no handler: %+v", e.Spec)
			}
			checkWho(t, e.Spec)
			checkParses(t, e.Spec)
			for _, w := range append([]string{e.Name}, e.Synonyms...) {
				if other, ok := seen[w]; ok {
					t.Errorf("%q is both /%s and /%s", w, other, e.Name)
				}
				seen[w] = e.Name
			}
			checkSynonyms(t, e.Spec)
			checkGoldenReply(t, e.Name)
		})
	}
}

func checkWho(t *testing.T, s command.Spec) {
	t.Helper()
	switch s.Who {
	case command.Anyone:
	case command.Deployers:
		if s.Verb == "" {
			t.Errorf("no verb to refuse /%s with (\"only @alice may ___ production\")", s.Name)
		}
	default:
		t.Errorf("who may run /%s? Who is %d", s.Name, s.Who)
	}
}

// checkParses: the command's grammar reads it, in any case.
func checkParses(t *testing.T, s command.Spec) {
	t.Helper()
	cmds, errs := command.Parse("/"+strings.ToUpper(s.Name)+" production", commandTable().Specs())
	switch {
	case len(cmds) == 1 && cmds[0].Name == s.Name:
	case len(errs) == 1 && errs[0].Command == "/"+s.Name:
	default:
		t.Errorf("/%s production parses to %v %v", s.Name, cmds, errs)
	}
}

// checkSynonyms: each synonym suggests the command, with the words after it.
func checkSynonyms(t *testing.T, s command.Spec) {
	t.Helper()
	for _, syn := range s.Synonyms {
		_, errs := command.Parse("/"+syn+" production", commandTable().Specs())
		if len(errs) != 1 || errs[0].Kind != command.UnknownCommand || errs[0].Fix != "/"+s.Name+" production" {
			t.Errorf("/%s suggests %+v, want /%s", syn, errs, s.Name)
		}
	}
}

// checkGoldenReply: a reviewed reply answers the command, echoing it.
func checkGoldenReply(t *testing.T, name string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(replyGoldens, "*.golden"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden replies in %s: %v", replyGoldens, err)
	}
	echo := regexp.MustCompile("(?m)^\\*\\*`/" + name + "[` ]")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if echo.Match(b) {
			return
		}
	}
	t.Errorf("no golden reply in %s answers /%s: add a scenario to internal/report's reply_test.go", replyGoldens, name)
}

func TestHelpText(t *testing.T) {
	tests := []struct {
		name  string
		envs  []string
		perms map[string]string
	}{
		{"environments", []string{"staging", "production", "Staging", "qa", "preview"}, map[string]string{
			"production": "people with maintain permission or higher",
			"staging":    "people with write\npermission or higher",
			"ignored":    "not listed in envs",
			"QA":         "@alice, @bob",
		}},
		{"no environments", nil, nil},
	}
	specs := commandTable().Specs()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := report.HelpText(specs, tt.envs, tt.perms)
			for range 20 { // map order must not show
				if again := report.HelpText(specs, tt.envs, tt.perms); again != got {
					t.Fatalf("HelpText is not deterministic:\n%s\n---\n%s", got, again)
				}
			}
			golden(t, filepath.Join("testdata", "help-"+strings.ReplaceAll(tt.name, " ", "-")+".golden"), got)
		})
	}
}

// The help text names each environment's deployers as the configuration
// has them.
func TestHelpTextFromConfig(t *testing.T) {
	cfg := mustConfig(t, "environments:\n  staging:\n    allow_branches: true\n  production:\n    deployers: admin\n  qa:\n    deployers: [alice, Bob]\n")
	got := helpText(cfg)
	for _, want := range []string{
		"- `production`: people with admin permission\n",
		"- `qa`: @alice, @Bob\n",
		"- `staging`: people with write permission or higher\n",
		"| `/deploy [ENV] [REF]` |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("help text lacks %q:\n%s", want, got)
		}
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

// What the reply says of lines that are not commands as written: the
// message (by substring, when msg is set) and the hint (exactly, when hint
// is set), for the real table of commands.
func TestParseErrorText(t *testing.T) {
	long := "/deploy staging " + strings.TrimSpace(strings.Repeat("word ", 1000))
	for _, tc := range []struct{ body, msg, hint string }{
		{"/deplyo staging", `"/deplyo" is not a command`, "did you mean /deploy staging? /help lists the commands"},
		{"/lokc production", "", "did you mean /lock production? /help lists the commands"},
		{"/roll staging", "", "did you mean /rollback staging? /help lists the commands"},
		{"/revert production", "", "did you mean /rollback production? /help lists the commands"},
		{"/deploy: staging", "", "did you mean /deploy staging? /help lists the commands"},
		{"/shrug", `"/shrug" is not a command`, "/help lists the commands"},
		{"/unlock staging now", `unexpected "now"`, "/unlock takes one environment: /unlock staging"},
		{"/deploy staging abc1234 please", `unexpected "please"`, "/deploy takes an environment and a ref: /deploy staging abc1234"},
		{"/deploy to staging", `/deploy does not take "to"`, "write /deploy staging"},
		{"/deploy staging to abc1234", "", "write /deploy staging abc1234"},
		{"/status staging production", "", "/status takes at most one environment: /status staging, or /status for all of them"},
		{"/rollback staging to abc1234 now", "", `/rollback takes an environment and "to" a release: /rollback staging to abc1234`},
		{"/rollback staging abc1234", `/rollback staging abc1234 needs "to" before the ref`, "write /rollback staging to abc1234"},
		{"/rollback staging please now", "", `/rollback takes an environment and "to" a release: /rollback staging or /rollback staging to abc1234`},
		{"/rollback staging to", `/rollback staging needs the release to go back to after "to"`,
			"write /rollback staging to abc1234 with the release's SHA or tag, or /rollback staging for the one before the current release"},
		{"/lock", "/lock needs the environment to lock", "write /lock production, optionally followed by the reason: /lock production release freeze"},
		{"/unlock  ", "/unlock needs the environment to unlock", "write /unlock production (/status shows which environments are locked)"},
		{"/deploy st@ging", `"st@ging" is not an environment name`,
			"environment names are letters, digits, '.', '-' and '_' (up to 100), starting with a letter or digit; /status lists them"},
		{"/deploy `staging`", "", "write /deploy staging"},
		{"/lock production, freeze", "", "write /lock production freeze"},
		{"/deploy staging main..feature", `"main..feature" is not a SHA, branch or tag: git ref names cannot contain ".."`,
			"use a commit SHA (7 to 40 hex digits), a branch or a tag"},
		{"/deploy staging main:", "", "write /deploy staging main"},
		{"/rollback production to v1.4.1.", "", "write /rollback production to v1.4.1"},
		{"/deploy staging " + strings.Repeat("x", 300), `is not a SHA, branch or tag: git ref names are at most 255 bytes long`, ""},
		{"/deplyo staging " + strings.Repeat("word ", 1000), "", "did you mean " + long[:120] + "…? /help lists the commands"},
		{strings.Repeat("/status\n", 11), "this comment has more than 10 commands; the ones from line 11 on were not read",
			"send at most 10 commands per comment: post the rest in a new comment"},
	} {
		_, errs := command.Parse(tc.body, commandTable().Specs())
		if len(errs) != 1 {
			t.Errorf("%.40q: %d errors, want 1", tc.body, len(errs))
			continue
		}
		msg, hint := report.ParseErrorText(errs[0])
		if !strings.Contains(msg, tc.msg) || tc.hint != "" && hint != tc.hint || hint == "" {
			t.Errorf("%.40q:\n got %q; %q\nwant %q; %q", tc.body, msg, hint, tc.msg, tc.hint)
		}
	}
}

// Whatever people type, what the reply says of a line that did not parse
// is a message and a hint, both short enough to read.
func FuzzParseErrorText(f *testing.F) {
	for _, s := range []string{
		"/deplyo staging", "/unlock staging now", "/rollback staging abc1234", "/lock", "/unlock", "/deploy st@ging",
		"/deploy staging main..x", "/deploy x a@{1}", strings.Repeat("/status\n", 12), "/deploy \xff\xfe", "/lock é\u200d",
		"/rollback to", "/deploy to staging", "/status a b", "/rollback a b c", "/revert " + strings.Repeat("é", 500),
	} {
		f.Add(s)
	}
	specs := commandTable().Specs()
	f.Fuzz(func(t *testing.T, body string) {
		_, errs := command.Parse(body, specs)
		for _, e := range errs {
			msg, hint := report.ParseErrorText(e)
			if msg == "" || hint == "" || msg == string(e.Kind) {
				t.Errorf("%+v reads %q; %q", e, msg, hint)
			}
			if len(msg) > 1000 || len(hint) > 1000 {
				t.Errorf("line %d: overlong message or hint %q; %q", e.Line, msg, hint)
			}
		}
	})
}
