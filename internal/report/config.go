package report

import (
	"fmt"
	"strings"
)

// configFile is where a repository keeps its shipbot configuration
// (repoconfig.FilePath; a test keeps the two equal).
const configFile = ".github/shipbot.yml"

// ConfigCheckName is the check run that reports a bad configuration file.
const ConfigCheckName = "shipbot/config"

// ConfigCheck is the shipbot/config check run failing a commit whose
// configuration file has problems, naming each (with its key and line, as
// the parser wrote it): nothing deploys on a guess.
func ConfigCheck(problems []string) CheckRunOutput {
	title := fmt.Sprintf("%s has %s: not deploying", configFile, plural(len(problems), "problem", "problems"))
	var b strings.Builder
	b.WriteString("shipbot read `" + configFile + "` from the default branch and will not deploy on a guess. Fix these and push again:\n\n")
	for _, p := range problems {
		b.WriteString("- " + p + "\n")
	}
	return CheckRunOutput{Status: "completed", Conclusion: "failure", Title: title, Summary: b.String()}
}
