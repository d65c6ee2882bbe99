package record

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestReasonKindsListsEveryKind: every ReasonKind constant declared here
// is in ReasonKinds, once, so that report's test, which phrases each kind
// in that list, cannot miss a new one.
func TestReasonKindsListsEveryKind(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "reason.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := map[ReasonKind]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			v := spec.(*ast.ValueSpec)
			if id, ok := v.Type.(*ast.Ident); !ok || id.Name != "ReasonKind" {
				continue
			}
			for i, name := range v.Names {
				value, err := strconv.Unquote(v.Values[i].(*ast.BasicLit).Value)
				if err != nil {
					t.Fatalf("%s: %v", name.Name, err)
				}
				if other, dup := declared[ReasonKind(value)]; dup {
					t.Errorf("%s and %s are both %q", other, name.Name, value)
				}
				declared[ReasonKind(value)] = name.Name
			}
		}
	}
	listed := ReasonKinds()
	for kind, name := range declared {
		if n := len(slices.DeleteFunc(slices.Clone(listed), func(k ReasonKind) bool { return k != kind })); n != 1 {
			t.Errorf("%s is in ReasonKinds %d times, want once", name, n)
		}
	}
	if len(listed) != len(declared) {
		t.Errorf("ReasonKinds has %d kinds, %d are declared", len(listed), len(declared))
	}
}

// TestReasonJSON: a reason, with reasons inside it, survives the store.
func TestReasonJSON(t *testing.T) {
	r := Reason{
		Kind: ReasonBatchFailed, Batch: 2,
		Cause: &Reason{Kind: ReasonHealthTimeout, Instance: "i-1", Path: "/healthz", Want: 2, Duration: 2 * time.Minute, Release: "abc", Err: "503"},
		Then:  []Reason{{Kind: ReasonRollbackFailed, Previous: "def", Left: []Placement{{Instance: "i-1", Release: "def", Out: true}}}},
	}
	blob, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back Reason
	if err := json.Unmarshal(blob, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("round trip:\n got %+v\nwant %+v\n%s", back, r, blob)
	}
}
