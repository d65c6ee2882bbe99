package repoconfig

import (
	"fmt"
	"strings"
)

// FilePath is where a repository keeps its shipbot configuration.
const FilePath = ".github/shipbot.yml"

// Error is one problem in a configuration file.
type Error struct {
	Line int    // 1-based line in the file
	Path string // dotted key path, e.g. environments.production.rollout.batch; empty for the file as a whole
	Msg  string // what is wrong and how to fix it
}

func (e *Error) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("%s line %d: %s", FilePath, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s line %d: %s: %s", FilePath, e.Line, e.Path, e.Msg)
}

// Errors is every problem Parse found, sorted by line. It is what Parse
// returns as its error; use errors.As to reach the individual problems.
type Errors []*Error

// Error prints one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.Is and errors.As look at each problem.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}
