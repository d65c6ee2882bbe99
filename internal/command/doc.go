// Package command owns how the commands people type in pull request
// comments are read ("/deploy staging", "/rollback production to v1.4.2"):
// the Spec of a command (name, synopsis, help line, grammar, synonyms, who
// may run it), the Table a caller declares its commands in, the grammars
// and Parse.
//
// It is pure: Parse turns a comment body into Commands and Errors and does no
// I/O. Whether an environment exists, whether the commenter may use it and
// what a ref resolves to are the handler's business; this package only
// decides what was asked for, and, when the text cannot be read as a command,
// which rule it broke and what the person could type instead. Saying so in
// sentences is internal/report's business, as is the help text.
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
