package repoconfig

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestFileTooLarge(t *testing.T) {
	data := "# " + strings.Repeat("x", maxFileSize) + "\n"
	_, err := Parse([]byte(data), "main")
	want := fmt.Sprintf(".github/shipbot.yml line 1: the file is %d bytes; the limit is 256 KiB", len(data))
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// Merge keys can make a few lines stand for billions of values; the walk
// stops at a budget instead.
func TestMergeBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("environments:\n  l0: &l0 {driver: local, branch: a}\n")
	for i := 1; i <= 7; i++ {
		refs := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 20), ", ")
		fmt.Fprintf(&b, "  l%d: &l%d {<<: [%s]}\n", i, i, refs)
	}
	_, err := Parse([]byte(b.String()), "main")
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("got %v, want Errors", err)
	}
	if !strings.Contains(err.Error(), "once its aliases are followed") {
		t.Errorf("got:\n%v", err)
	}
}

// A mistake repeated through an alias many times is reported once per
// place, and a flood of problems is cut short.
func TestErrorsCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("environments:\n")
	for i := range 150 {
		fmt.Fprintf(&b, "  e%d: {canary: 1}\n", i)
	}
	b.WriteString("default_environment: e0\n")
	_, err := Parse([]byte(b.String()), "main")
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("got %v, want Errors", err)
	}
	if len(es) != maxErrors+1 {
		t.Fatalf("got %d errors, want %d", len(es), maxErrors+1)
	}
	if got, want := es[maxErrors].Error(), ".github/shipbot.yml line 102: and 50 more problems from this line on"; got != want {
		t.Errorf("last line %q, want %q", got, want)
	}
}

// Keys and values that hold line breaks still print one problem per line.
func TestErrorsStayOnOneLine(t *testing.T) {
	_, err := Parse([]byte("environments:\n  \"a\\nb\": {branch: \"x\\ny\"}\ndefault_environment: \"a\\nb\"\n"), "main")
	want := `.github/shipbot.yml line 2: environments."a\nb": "a\nb" is not a usable environment name: use letters, digits, '.', '-' and '_', starting with a letter or digit
.github/shipbot.yml line 2: environments."a\nb".branch: "x\ny" is not a valid branch name`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestOtherLineBreaks(t *testing.T) {
	for _, tt := range []struct{ name, data string }{
		{"CRLF", "app:\r\n  build: make\r\n  run: ./app\x01\r\n"},
		{"CR", "app:\r  build: make\r  run: ./app\x01\r"},
	} {
		_, err := Parse([]byte(tt.data), "main")
		want := ".github/shipbot.yml line 3: the file contains the control character U+0001, which YAML does not allow; remove it"
		if err == nil || err.Error() != want {
			t.Errorf("%s: got %v, want %s", tt.name, err, want)
		}
	}
	_, err := Parse([]byte("app:\r  build: make\r  run: [\r"), "main")
	if err == nil || !strings.HasPrefix(err.Error(), ".github/shipbot.yml line 3: YAML syntax error") {
		t.Errorf("CR syntax error: got %v, want line 3", err)
	}
}
