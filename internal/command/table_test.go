package command

import "testing"

// The commands the parser's tests read: shipbot's own, as far as the parser
// sees them (internal/handlers declares the real table and tests its
// synonyms and texts).
const (
	Deploy   = "deploy"
	Rollback = "rollback"
	Lock     = "lock"
	Unlock   = "unlock"
	Status   = "status"
	Help     = "help"
)

var table = Table[int]{
	{Spec: Spec{Name: Deploy, Grammar: EnvRef, Who: Deployers, Synonyms: []string{"ship", "release", "deployment"}}, Run: 1},
	{Spec: Spec{Name: Rollback, Grammar: EnvToRef, Who: Deployers, Synonyms: []string{"revert", "undo", "rollout", "roll"}}, Run: 2},
	{Spec: Spec{Name: Lock, Grammar: EnvReason, Who: Deployers, Synonyms: []string{"freeze", "hold"}}, Run: 3},
	{Spec: Spec{Name: Unlock, Grammar: LockedEnv, Who: Deployers, Synonyms: []string{"unfreeze", "unhold"}}, Run: 4},
	{Spec: Spec{Name: Status, Grammar: OptionalEnv, Who: Anyone, Synonyms: []string{"info", "state", "stat"}}, Run: 5},
	{Spec: Spec{Name: Help, Grammar: AnyArgs, Who: Anyone, Synonyms: []string{"commands", "usage"}}, Run: 6},
}

var specs = table.Specs()

func parse(body string) ([]Command, []*Error) { return Parse(body, specs) }

func TestTable(t *testing.T) {
	if len(specs) != len(table) || specs[1].Name != Rollback || specs[1].Grammar != EnvToRef {
		t.Errorf("Specs = %+v", specs)
	}
	if e, ok := table.Lookup(Unlock); !ok || e.Run != 4 || e.Grammar != LockedEnv {
		t.Errorf("Lookup(unlock) = %+v, %t", e, ok)
	}
	if _, ok := table.Lookup("Deploy"); ok {
		t.Error("Lookup matches a name that is not lower case")
	}
	if _, ok := table.Lookup("ship"); ok {
		t.Error("Lookup matches a synonym")
	}
}

// Every grammar is read: a Spec can name any of them.
func TestGrammars(t *testing.T) {
	for g := AnyArgs; g <= EnvToRef; g++ {
		cmds, errs := Parse("/x staging", []Spec{{Name: "x", Grammar: g}})
		if len(cmds)+len(errs) != 1 {
			t.Errorf("grammar %d: %v %v", g, cmds, errs)
		}
	}
	if len(grammars) != int(EnvToRef) {
		t.Errorf("%d grammars, want %d", len(grammars), EnvToRef)
	}
}
