package repoconfig

import (
	"reflect"
	"testing"
)

func TestEnvironmentLookup(t *testing.T) {
	cfg := mustParse(t, `
environments:
  Production: {}
  staging: {}
  eu-1:
    branch: release
`)
	for _, tt := range []struct{ ask, want string }{
		{"production", "Production"},
		{"PRODUCTION", "Production"},
		{"staging", "staging"},
		{"Staging", "staging"},
		{"eu-1", "eu-1"},
		{"prod", ""},
		{"", ""},
	} {
		env, ok := cfg.Environment(tt.ask)
		if got := ""; ok {
			got = env.Name
			if got != tt.want {
				t.Errorf("Environment(%q) = %s, want %q", tt.ask, got, tt.want)
			}
		} else if tt.want != "" {
			t.Errorf("Environment(%q) not found, want %s", tt.ask, tt.want)
		}
	}
	if got, want := cfg.EnvironmentNames(), []string{"Production", "eu-1", "staging"}; !reflect.DeepEqual(got, want) {
		t.Errorf("EnvironmentNames() = %v, want %v", got, want)
	}
}

func TestForBranch(t *testing.T) {
	cfg := mustParse(t, `
environments:
  production: {}
  staging:
    branch: develop
  qa: {}
`+"default_environment: qa\n")
	for _, tt := range []struct{ branch, want string }{
		{"main", "production"},
		{"refs/heads/main", "production"},
		{"develop", "staging"},
		{"Main", ""},
		{"feature/x", ""},
		{"refs/tags/main", ""},
		{"", ""},
	} {
		got := ""
		if env := cfg.ForBranch(tt.branch); env != nil {
			got = env.Name
		}
		if got != tt.want {
			t.Errorf("ForBranch(%q) = %q, want %q", tt.branch, got, tt.want)
		}
	}
	if env := Default("").ForBranch(""); env != nil {
		t.Errorf("with no default branch, ForBranch(\"\") = %s, want none", env.Name)
	}
}

func TestParsePermission(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Permission
		ok   bool
	}{
		{"admin", PermAdmin, true},
		{"maintain", PermMaintain, true},
		{"write", PermWrite, true},
		{"triage", PermTriage, true},
		{"read", PermRead, true},
		{"none", PermNone, true},
		{"Write", PermWrite, true},
		{"push", PermNone, false},
		{"", PermNone, false},
	} {
		got, ok := ParsePermission(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParsePermission(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	if PermMaintain.String() != "maintain" || Permission(42).String() != "Permission(42)" {
		t.Errorf("String: %q, %q", PermMaintain, Permission(42))
	}
}

func TestDeployersAllows(t *testing.T) {
	write := Deployers{Min: PermWrite}
	maintain := Deployers{Min: PermMaintain}
	listed := Deployers{Logins: []string{"alice", "Bob"}}
	for _, tt := range []struct {
		name  string
		d     Deployers
		login string
		p     Permission
		want  bool
	}{
		{"write allows write", write, "x", PermWrite, true},
		{"write allows admin", write, "x", PermAdmin, true},
		{"write refuses triage", write, "x", PermTriage, false},
		{"write refuses read", write, "x", PermRead, false},
		{"maintain refuses write", maintain, "x", PermWrite, false},
		{"maintain allows maintain", maintain, "x", PermMaintain, true},
		{"list allows a listed writer", listed, "alice", PermWrite, true},
		{"list ignores case", listed, "bob", PermAdmin, true},
		{"list refuses others, even admins", listed, "carol", PermAdmin, false},
		{"list refuses a listed reader", listed, "alice", PermRead, false},
		{"zero value means write", Deployers{}, "x", PermWrite, true},
		{"zero value refuses triage", Deployers{}, "x", PermTriage, false},
	} {
		if got := tt.d.Allows(tt.login, tt.p); got != tt.want {
			t.Errorf("%s: Allows(%q, %v) = %v", tt.name, tt.login, tt.p, got)
		}
	}
}

func TestDescriptions(t *testing.T) {
	for _, tt := range []struct {
		got, want string
	}{
		{Deployers{Min: PermWrite}.String(), "people with write permission or higher"},
		{Deployers{Min: PermMaintain}.String(), "people with maintain permission or higher"},
		{Deployers{Min: PermAdmin}.String(), "people with admin permission"},
		{Deployers{Logins: []string{"alice"}}.String(), "alice"},
		{Deployers{Logins: []string{"alice", "bob", "carol"}}.String(), "alice, bob and carol"},
		{Amount{Count: 3}.String(), "3"},
		{Amount{Percent: 25}.String(), "25%"},
		{Amount{Percent: 12.5}.String(), "12.5%"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
