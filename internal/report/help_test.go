package report

import (
	"strings"
	"testing"
)

// The help text's code spans (its golden file is internal/handlers', which
// renders it from the real table of commands).
func TestHelpCode(t *testing.T) {
	for in, want := range map[string]string{
		"staging": "`staging`", "a`b": "`` a`b ``", "a``b": "``` a``b ```", "a\nb": "`a b`",
	} {
		if got := code(in); got != want {
			t.Errorf("code(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDeployers(t *testing.T) {
	for _, tc := range []struct {
		logins []string
		least  string
		want   string
	}{
		{nil, "write", "people with write permission or higher"},
		{nil, "maintain", "people with maintain permission or higher"},
		{nil, "admin", "people with admin permission"},
		{[]string{"alice", "@Bob"}, "write", "@alice, @Bob"},
	} {
		if got := Deployers(tc.logins, tc.least); got != tc.want {
			t.Errorf("Deployers(%v, %s) = %q, want %q", tc.logins, tc.least, got, tc.want)
		}
	}
}

func TestAndList(t *testing.T) {
	for n, want := range []string{"", "a", "a and b", "a, b and c"} {
		if got := andList(strings.Split("abc", "")[:n]); got != want {
			t.Errorf("andList of %d = %q, want %q", n, got, want)
		}
	}
}
