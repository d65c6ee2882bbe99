// Package command owns the grammar of the commands people type in pull
// request comments ("/deploy staging", "/rollback production to v1.4.2") and
// the help text that describes them.
//
// It is pure: Parse turns a comment body into Commands and Errors and does no
// I/O. Whether an environment exists, whether the commenter may use it and
// what a ref resolves to are the handler's business; this package only
// decides what was asked for, and, when the text cannot be read as a command,
// what the person should type instead.
//
// What counts as a command line follows how GitHub renders the comment, so
// that only text a reader sees as a command runs: a line whose first
// non-blank character (after at most 3 spaces, as in Markdown) is "/"
// followed by a word. Lines in fenced code blocks (``` or ~~~), indented
// code (4+ columns), HTML comments and quotes (">") are never commands, and
// neither is a "/word" in the middle of a sentence or inside inline code.
// Where Markdown's rules are ambiguous the parser errs towards "not a
// command": a command that does not run is noticed; one that runs by
// surprise is a deploy.
package command
