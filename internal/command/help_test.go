package command

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

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
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := HelpText(tt.envs, tt.perms)
			for range 20 { // map order must not show
				if again := HelpText(tt.envs, tt.perms); again != got {
					t.Fatalf("HelpText is not deterministic:\n%s\n---\n%s", got, again)
				}
			}
			golden(t, filepath.Join("testdata", "help-"+strings.ReplaceAll(tt.name, " ", "-")+".golden"), got)
		})
	}
}

func TestCode(t *testing.T) {
	for in, want := range map[string]string{
		"staging": "`staging`", "a`b": "`` a`b ``", "a``b": "``` a``b ```", "a\nb": "`a b`",
	} {
		if got := code(in); got != want {
			t.Errorf("code(%q) = %q, want %q", in, got, want)
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
