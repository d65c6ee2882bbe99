package command

// Spec is one command as people type it and as the help text shows it.
// The caller declares its commands once, as a Table of Specs each with its
// handler; Parse, the help text, the permission check and the reply all
// read that table, so a new command is one entry.
type Spec struct {
	// Name is the word after "/", lower case: "deploy".
	Name string
	// Synopsis is the command's form as the help text shows it:
	// "/deploy [ENV] [REF]".
	Synopsis string
	// Does says what the command does, for the help text: "deploys this
	// pull request's head commit … to ENV".
	Does string
	// Verb is what the command does to an environment, to finish "only
	// @alice may ___ production": "deploy to", "roll back". Commands that
	// anyone may use need none.
	Verb string
	// Grammar is the arguments the command takes.
	Grammar Grammar
	// Synonyms are words people reach for instead of Name ("ship" for
	// deploy): a line starting with one gets "did you mean /deploy?".
	Synonyms []string
	// Who may run the command.
	Who Who
}

// Who is who may run a command.
type Who int

const (
	// Anyone who can comment on the pull request.
	Anyone Who = iota + 1
	// Deployers are the deployers of the environment the command acts on
	// (.github/shipbot.yml), checked against GitHub when it runs.
	Deployers
)

// Entry is one command of a Table: its Spec, and Run, what the caller
// does when the command comes.
type Entry[H any] struct {
	Spec
	Run H
}

// Table is every command, in the order the help text lists them, with
// what runs each (H). Its names and synonyms must be distinct.
type Table[H any] []Entry[H]

// Specs is the table without its handlers, for Parse and the help text.
func (t Table[H]) Specs() []Spec {
	specs := make([]Spec, len(t))
	for i, e := range t {
		specs[i] = e.Spec
	}
	return specs
}

// Lookup is the entry of the command named name, as Command.Name holds it.
func (t Table[H]) Lookup(name string) (Entry[H], bool) {
	for _, e := range t {
		if e.Name == name {
			return e, true
		}
	}
	return Entry[H]{}, false
}

// find is the spec of the command named name.
func find(specs []Spec, name string) (Spec, bool) {
	for _, s := range specs {
		if s.Name == name {
			return s, true
		}
	}
	return Spec{}, false
}
