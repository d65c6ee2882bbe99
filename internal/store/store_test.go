package store

import (
	"github.com/shipbot/shipbot/internal/store/record"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEnvKeyParsesWhatStringWrites(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want record.EnvKey
		bad  bool
	}{
		{name: "plain", in: "octo/app:production", want: record.EnvKey{Repo: "octo/app", Name: "production"}},
		{name: "colon in environment", in: "octo/app:eu:west", want: record.EnvKey{Repo: "octo/app", Name: "eu:west"}},
		{name: "space in environment", in: "octo/app:pr 12", want: record.EnvKey{Repo: "octo/app", Name: "pr 12"}},
		{name: "no environment", in: "octo/app", bad: true},
		{name: "empty environment", in: "octo/app:", bad: true},
		{name: "no owner", in: "app:production", bad: true},
		{name: "nested repo", in: "octo/app/x:production", bad: true},
		{name: "control character", in: "octo/app:a\x00b", bad: true},
		{name: "too long", in: "octo/app:" + strings.Repeat("x", 256), bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := record.ParseEnvKey(tc.in)
			if tc.bad {
				if err == nil {
					t.Errorf("ParseEnvKey(%q) = %+v, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseEnvKey(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			if got.String() != tc.in {
				t.Errorf("String() = %q, want %q", got.String(), tc.in)
			}
		})
	}
}

func TestLogTail(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		max      int
		want     string
	}{
		{name: "short", in: "a\nb\n", max: 10, want: "a\nb\n"},
		{name: "starts at a line", in: "first\nsecond\nthird\n", max: 15, want: "second\nthird\n"},
		{name: "one long line", in: "abcdefghij", max: 4, want: "ghij"},
		{name: "never mid-character", in: "xxéééé", max: 7, want: "ééé"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := logTail(tc.in, tc.max)
			if got != tc.want {
				t.Errorf("logTail(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
			}
			if len(got) > tc.max || !utf8.ValidString(got) {
				t.Errorf("logTail(%q, %d) = %q: too long or cut a character", tc.in, tc.max, got)
			}
		})
	}
}
