package secrets

import (
	"fmt"
	"regexp"
	"strings"
)

// ID names one secret: a repository's environment ("preview" for its
// previews) and the variable name. Repository and environment compare
// without case, as GitHub and .github/shipbot.yml compare them.
type ID struct {
	Repo, Env, Name string
}

func (id ID) String() string { return id.Name + " for " + id.Repo + " " + id.Env }

// key is the ID as stored: repository and environment in lower case.
func (id ID) key() ID {
	return ID{Repo: strings.ToLower(id.Repo), Env: strings.ToLower(id.Env), Name: id.Name}
}

// associatedData binds a sealed value to its ID. The parts cannot contain
// NUL (Check), so the encoding is unambiguous.
func (id ID) associatedData() []byte {
	k := id.key()
	return []byte("shipbot secret\x00" + k.Repo + "\x00" + k.Env + "\x00" + k.Name)
}

var (
	repoPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$`)
	// envPattern is what .github/shipbot.yml accepts as an environment name.
	envPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`)
	namePattern = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)
)

// CheckRepo says, in one sentence, what is wrong with repo as OWNER/REPO.
func CheckRepo(repo string) error {
	_, name, _ := strings.Cut(repo, "/")
	if !repoPattern.MatchString(repo) || name == "." || name == ".." {
		return fmt.Errorf("%q is not a repository: write it as OWNER/REPO, e.g. octo-org/web", repo)
	}
	return nil
}

// CheckEnv says what is wrong with env as an environment name.
func CheckEnv(env string) error {
	if !envPattern.MatchString(env) {
		return fmt.Errorf("%q is not an environment name: use letters, digits, '.', '_' and '-', as in .github/shipbot.yml, e.g. production, or preview for previews", env)
	}
	return nil
}

// CheckName says what is wrong with name as a secret's name.
func CheckName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%q is not a secret name: use capital letters, digits and '_', not starting with a digit, e.g. DATABASE_URL", name)
	}
	return nil
}

// Check is the first of CheckRepo, CheckEnv and CheckName to fail.
func (id ID) Check() error {
	if err := CheckRepo(id.Repo); err != nil {
		return err
	}
	if err := CheckEnv(id.Env); err != nil {
		return err
	}
	return CheckName(id.Name)
}
