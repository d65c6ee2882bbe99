package handlers

import (
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/command"
	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/repoconfig"
	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/store/record"
)

const (
	shaHead = "9762dd7c59ddb7ce96dbf359abf7523f36335395"
	shaMain = "ca4c14aa28e89f48d63cdfbb203292dbcd02cfae"
	shaOld  = "1111111111111111111111111111111111111111"
)

func mustConfig(t *testing.T, yml string) *repoconfig.Config {
	t.Helper()
	cfg, err := repoconfig.Parse([]byte(yml), "main")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func parseOne(t *testing.T, line string) command.Command {
	t.Helper()
	cmds, errs := command.Parse(line, commandTable().Specs())
	if len(cmds) != 1 || len(errs) != 0 {
		t.Fatalf("%q parses to %v %v", line, cmds, errs)
	}
	return cmds[0]
}

func TestScreen(t *testing.T) {
	for _, tc := range []struct {
		name, action, login, typ, body string
		act                            bool
	}{
		{"a person's command", "created", "octocat", "User", "/deploy staging", true},
		{"an unknown command is answered", "created", "octocat", "User", "/deplyo staging", true},
		{"edited", "edited", "octocat", "User", "/deploy staging", false},
		{"deleted", "deleted", "octocat", "User", "/deploy staging", false},
		{"this bot", "created", "shipbot[bot]", "Bot", "/deploy staging", false},
		{"another bot", "created", "dependabot[bot]", "Bot", "/deploy production", false},
		{"a bot typed as a user", "created", "renovate[bot]", "User", "/deploy production", false},
		{"no command", "created", "octocat", "User", "LGTM, ship it", false},
		{"a command in a code block", "created", "octocat", "User", "```\n/deploy production\n```", false},
		{"a quoted command", "created", "octocat", "User", "> /deploy production", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, act := screen(tc.action, tc.login, tc.typ, tc.body); act != tc.act {
				t.Errorf("screen = %t, want %t", act, tc.act)
			}
		})
	}
}

func TestEnvironmentFor(t *testing.T) {
	def := repoconfig.Default("main")
	custom := mustConfig(t, "default_environment: qa\nenvironments:\n  qa:\n    driver: local\n  live:\n    branch: main\n")
	one := mustConfig(t, "default_environment: web\nenvironments:\n  web:\n    driver: local\n")
	two := mustConfig(t, "default_environment: blue\nenvironments:\n  blue:\n    driver: local\n  green:\n    driver: local\n")
	// The defaults the commandFuncs of /deploy and /rollback pass; the
	// others pass none.
	deployDflt := func(cfg *repoconfig.Config) string { return cfg.DefaultEnvironment }
	rollbackDflt := func(cfg *repoconfig.Config) string { return rollbackDefault(cfg, "main") }
	none := func(*repoconfig.Config) string { return "" }
	for _, tc := range []struct {
		name      string
		cfg       *repoconfig.Config
		line      string
		byDefault func(*repoconfig.Config) string
		want      string
		outcome   report.Outcome
	}{
		{"named", def, "/deploy staging", deployDflt, "staging", ""},
		{"named in another case", def, "/deploy Production", deployDflt, "production", ""},
		{"deploy defaults to default_environment", def, "/deploy", deployDflt, "staging", ""},
		{"default_environment from the file", custom, "/deploy", deployDflt, "qa", ""},
		{"rollback defaults to production", def, "/rollback", rollbackDflt, "production", ""},
		{"rollback defaults to the default branch's environment", custom, "/rollback", rollbackDflt, "live", ""},
		{"rollback in the only environment", one, "/rollback", rollbackDflt, "web", ""},
		{"rollback with nothing to default to", two, "/rollback", rollbackDflt, "", report.OutcomeNoEnvironment},
		{"unknown", def, "/deploy prod", deployDflt, "", report.OutcomeUnknownEnvironment},
		{"unknown lock", def, "/lock qa", none, "", report.OutcomeUnknownEnvironment},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, refusal := environmentFor(parseOne(t, tc.line), tc.cfg, tc.byDefault(tc.cfg))
			if tc.outcome != "" {
				if refusal == nil || refusal.Outcome != tc.outcome {
					t.Fatalf("got %v %+v, want %s", env, refusal, tc.outcome)
				}
				if len(refusal.Environments) == 0 {
					t.Errorf("the refusal does not list the environments")
				}
				return
			}
			if refusal != nil || env == nil || env.Name != tc.want {
				t.Fatalf("got %+v %+v, want %s", env, refusal, tc.want)
			}
		})
	}
	_, refusal := environmentFor(parseOne(t, "/deploy prod"), def, def.DefaultEnvironment)
	if strings.Join(refusal.Environments, ",") != "production,staging" {
		t.Errorf("unknown environment lists %v", refusal.Environments)
	}
}

// A read commenter deploys, rolls back, locks and unlocks nothing, by any
// spelling; /status and /help are for anyone.
func TestPermitted(t *testing.T) {
	cfg := mustConfig(t, "environments:\n  staging:\n    allow_branches: true\n  production:\n    deployers: maintain\n  qa:\n    deployers: [alice, Bob]\n")
	for _, tc := range []struct {
		line  string
		login string
		perm  repoconfig.Permission
		ok    bool
		need  string
	}{
		{"/deploy staging", "mona", repoconfig.PermRead, false, "write"},
		{"/DEPLOY staging", "mona", repoconfig.PermRead, false, "write"},
		{"/Rollback staging", "mona", repoconfig.PermRead, false, "write"},
		{"/rollback staging to abc1234", "mona", repoconfig.PermTriage, false, "write"},
		{"/lock staging", "mona", repoconfig.PermRead, false, "write"},
		{"/unlock staging", "mona", repoconfig.PermNone, false, "write"},
		{"/deploy staging", "mona", repoconfig.PermWrite, true, ""},
		{"/deploy production", "mona", repoconfig.PermWrite, false, "maintain"},
		{"/deploy production", "mona", repoconfig.PermAdmin, true, ""},
		{"/deploy qa", "bob", repoconfig.PermWrite, true, ""},
		{"/deploy qa", "carol", repoconfig.PermAdmin, false, "@alice,@Bob"},
		{"/deploy qa", "alice", repoconfig.PermRead, false, "write"},
		{"/status staging", "mona", repoconfig.PermRead, true, ""},
		{"/help", "mona", repoconfig.PermNone, true, ""},
	} {
		t.Run(tc.line+" by "+tc.login+" with "+tc.perm.String(), func(t *testing.T) {
			c := parseOne(t, tc.line)
			env, ok := cfg.Environment(c.Env)
			if !ok {
				env = cfg.Environments["staging"]
			}
			e, _ := commandTable().Lookup(c.Name)
			a := permitted(e.Spec, c, env, tc.login, tc.perm)
			if (a == nil) != tc.ok {
				t.Fatalf("permitted = %+v, want ok %t", a, tc.ok)
			}
			if a == nil {
				return
			}
			need := a.NeedMin
			if len(a.NeedLogins) > 0 {
				need = "@" + strings.Join(a.NeedLogins, ",@")
			}
			if a.Outcome != report.OutcomeNoPermission || need != tc.need || a.Have != tc.perm.String() {
				t.Errorf("refusal %+v, want need %s", a, tc.need)
			}
			if a.Verb == "" || a.Verb != e.Verb {
				t.Errorf("refusal verb %q, want the table's %q", a.Verb, e.Verb)
			}
		})
	}
}

// deciders are the pure core of the commands for deployers, as their
// commandFuncs call it.
var deciders = map[string]func(decideInput) decision{
	"deploy": decideDeploy, "rollback": decideRollback, "lock": decideLock, "unlock": decideUnlock,
}

func TestDecide(t *testing.T) {
	cfg := repoconfig.Default("main")
	staging, production := cfg.Environments["staging"], cfg.Environments["production"]
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	openPR := gh.PullRequest{Number: 42, State: "open", HeadSHA: shaHead, HeadRef: "feature/greeting"}
	lock := &record.EnvLock{By: "alice", Reason: "release freeze", At: at.Add(-time.Hour)}
	base := func(line string, env *repoconfig.Environment) decideInput {
		return decideInput{Env: env, Commenter: "octocat", CommentID: 7, CommentAt: at, PublicURL: "https://bot.example.com/", PR: openPR}
	}
	for _, tc := range []struct {
		name    string
		line    string
		env     *repoconfig.Environment
		with    func(*decideInput)
		outcome report.Outcome
		effect  effect
		sha     string
	}{
		{"deploy the PR head", "/deploy staging", staging, nil, report.OutcomeDeploying, effectDeploy, shaHead},
		{"deploy a ref", "/deploy staging v1.2", staging, func(in *decideInput) { in.RefSHA, in.RefFound = shaOld, true }, report.OutcomeDeploying, effectDeploy, shaOld},
		{"deploy an unknown ref", "/deploy staging nope", staging, nil, report.OutcomeUnknownRef, effectNone, ""},
		{"deploy a closed PR", "/deploy staging", staging, func(in *decideInput) { in.PR.State = "closed" }, report.OutcomeClosed, effectNone, ""},
		{"deploy to a locked environment queues", "/deploy staging", staging, func(in *decideInput) { in.Lock = lock }, report.OutcomeQueuedBehindLock, effectDeploy, shaHead},
		{"branch deploy without allow_branches", "/deploy production", production, func(in *decideInput) { in.BranchHead = shaMain }, report.OutcomeBranchesNotAllowed, effectNone, ""},
		{"the branch's own head without allow_branches", "/deploy production main", production, func(in *decideInput) { in.RefSHA, in.RefFound, in.BranchHead = shaMain, true, shaMain }, report.OutcomeDeploying, effectDeploy, shaMain},
		{"the PR head equal to the branch head", "/deploy production", production, func(in *decideInput) { in.BranchHead = shaHead }, report.OutcomeDeploying, effectDeploy, shaHead},
		{"a retried deploy keeps its release", "/deploy staging", staging, func(in *decideInput) {
			in.Existing, in.PR.HeadSHA = &record.Deploy{SHA: shaOld, Ref: "feature/greeting"}, shaHead
		}, report.OutcomeDeploying, effectDeploy, shaOld},
		{"rollback to the previous release", "/rollback", production, func(in *decideInput) {
			in.Current, in.Target = &record.Release{SHA: shaMain}, &record.Release{SHA: shaOld, Ref: "main", By: "alice", At: at}
		}, report.OutcomeRollingBack, effectDeploy, shaOld},
		{"rollback with no earlier release", "/rollback", production, func(in *decideInput) { in.Current = &record.Release{SHA: shaMain} }, report.OutcomeNoEarlierRelease, effectNone, shaMain},
		{"rollback with no release at all", "/rollback", production, nil, report.OutcomeNoEarlierRelease, effectNone, ""},
		{"rollback to a release never seen", "/rollback production to deadbee", production, func(in *decideInput) { in.Current = &record.Release{SHA: shaMain} }, report.OutcomeUnknownRelease, effectNone, ""},
		{"rollback to the current release", "/rollback production to ca4c14a", production, func(in *decideInput) {
			in.Current, in.Target = &record.Release{SHA: shaMain}, &record.Release{SHA: shaMain}
		}, report.OutcomeAlreadyCurrent, effectNone, shaMain},
		{"rollback of a locked environment queues", "/rollback", production, func(in *decideInput) {
			in.Lock, in.Current, in.Target = lock, &record.Release{SHA: shaMain}, &record.Release{SHA: shaOld}
		}, report.OutcomeQueuedBehindLock, effectDeploy, shaOld},
		{"lock", "/lock production release freeze", production, nil, report.OutcomeLocked, effectLock, ""},
		{"lock a locked environment", "/lock production", production, func(in *decideInput) { in.Lock = lock }, report.OutcomeAlreadyLocked, effectNone, ""},
		{"lock again on a retried job", "/lock production", production, func(in *decideInput) {
			in.Lock = &record.EnvLock{By: "octocat", At: at.Add(time.Second)}
		}, report.OutcomeLocked, effectNone, ""},
		{"unlock", "/unlock production", production, func(in *decideInput) { in.Lock, in.Pending = lock, 1 }, report.OutcomeUnlocked, effectUnlock, ""},
		{"unlock an unlocked environment", "/unlock production", production, nil, report.OutcomeNotLocked, effectNone, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := base(tc.line, tc.env)
			in.Cmd = parseOne(t, tc.line)
			if tc.with != nil {
				tc.with(&in)
			}
			d := deciders[in.Cmd.Name](in)
			if d.answer.Outcome != tc.outcome || d.effect != tc.effect {
				t.Fatalf("decide = %s/%d, want %s/%d (%+v)", d.answer.Outcome, d.effect, tc.outcome, tc.effect, d.answer)
			}
			if d.answer.SHA != tc.sha {
				t.Errorf("answer names %q, want %q", d.answer.SHA, tc.sha)
			}
			if d.effect != effectDeploy {
				return
			}
			r := d.request
			wantKind, wantID := record.KindComment, "comment-7-"+tc.env.Name
			if in.Cmd.Name == "rollback" {
				wantKind, wantID = record.KindRollback, "rollback-7-"+tc.env.Name
			}
			if r.ID != wantID || r.Kind != wantKind || r.Creator != "octocat" || r.Release.SHA != tc.sha {
				t.Errorf("request %+v", r)
			}
			if d.answer.LogURL != "https://bot.example.com/deploys/"+wantID {
				t.Errorf("log URL %q", d.answer.LogURL)
			}
		})
	}
}

func TestDeployIDIsStable(t *testing.T) {
	if deployID(record.KindComment, 5, "Staging") != deployID(record.KindComment, 5, "staging") {
		t.Error("the environment's case changes the deploy id")
	}
	if deployID(record.KindComment, 5, "staging") == deployID(record.KindRollback, 5, "staging") || deployID(record.KindComment, 5, "staging") == deployID(record.KindComment, 6, "staging") {
		t.Error("deploy ids collide")
	}
	if got := deployID(record.KindComment, 5, "Staging"); got != "comment-5-staging" {
		t.Errorf("deploy id %q, want comment-5-staging (ids of earlier attempts must stay the same)", got)
	}
}

// TestDecideCarriesCommitTime: /deploy of the pull request's head carries
// the head's committer date to the engine (lead time); a named ref has
// none read; a retried job keeps what the first attempt recorded.
func TestDecideCarriesCommitTime(t *testing.T) {
	staging := repoconfig.Default("main").Environments["staging"]
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	committed := at.Add(-time.Hour)
	for _, tc := range []struct {
		name string
		line string
		with func(*decideInput)
		want time.Time
	}{
		{"the PR head", "/deploy staging", func(in *decideInput) { in.HeadCommittedAt = committed }, committed},
		{"the PR head, its date unknown", "/deploy staging", nil, time.Time{}},
		{"a named ref", "/deploy staging v1.2", func(in *decideInput) { in.RefSHA, in.RefFound = shaOld, true }, time.Time{}},
		{"a retried job", "/deploy staging", func(in *decideInput) {
			in.Existing = &record.Deploy{SHA: shaOld, CommittedAt: committed.Add(-time.Hour)}
		}, committed.Add(-time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := decideInput{Env: staging, Commenter: "octocat", CommentID: 7, CommentAt: at,
				PR: gh.PullRequest{Number: 42, State: "open", HeadSHA: shaHead, HeadRef: "feature/greeting"}}
			in.Cmd = parseOne(t, tc.line)
			if tc.with != nil {
				tc.with(&in)
			}
			d := deciders[in.Cmd.Name](in)
			if d.effect != effectDeploy || !d.request.Release.CommittedAt.Equal(tc.want) {
				t.Fatalf("decide = %s, committed at %v; want a deploy committed at %v", d.answer.Outcome, d.request.Release.CommittedAt, tc.want)
			}
		})
	}
}
