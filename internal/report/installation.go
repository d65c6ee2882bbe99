package report

import (
	"fmt"
	"strings"
)

// Installation is what an installation or installation_repositories event
// did, for its audit entry.
type Installation struct {
	Account string
	// All: the App was installed on all of the account's repositories.
	All   bool
	Repos []string // the repositories the event named
	// TornDown are the previews torn down because the App lost the
	// repository ("owner/name#N").
	TornDown []string
}

// maxListed bounds the repositories an audit entry names one by one.
const maxListed = 20

// Installed is the audit text of the App being installed.
func Installed(in Installation) string {
	if in.All {
		return fmt.Sprintf("Installed on all repositories of %s.", in.Account)
	}
	return fmt.Sprintf("Installed on %s: %s.", in.Account, repoList(in.Repos))
}

// Uninstalled is the audit text of the App being uninstalled.
func Uninstalled(in Installation) string {
	return fmt.Sprintf("Uninstalled from %s; %s", in.Account, tornDown(in.TornDown))
}

// ReposAdded is the audit text of repositories given to the App.
func ReposAdded(in Installation) string {
	return fmt.Sprintf("Repositories added to the installation on %s: %s.", in.Account, repoList(in.Repos))
}

// ReposRemoved is the audit text of repositories taken from the App.
func ReposRemoved(in Installation) string {
	return fmt.Sprintf("Repositories removed from the installation on %s: %s; %s", in.Account, repoList(in.Repos), tornDown(in.TornDown))
}

// PreviewRemovedWithApp is the audit text of one preview torn down
// because the App can no longer act on its repository: nothing was said
// on the pull request, which the App cannot write to any more.
func PreviewRemovedWithApp(number int) string {
	return fmt.Sprintf("Preview of #%d torn down: the App no longer has access to the repository, so the pull request was not told.", number)
}

func tornDown(previews []string) string {
	if len(previews) == 0 {
		return "no previews were running."
	}
	return "previews torn down: " + repoList(previews) + "."
}

func repoList(repos []string) string {
	if len(repos) == 0 {
		return "no repositories named"
	}
	if len(repos) <= maxListed {
		return strings.Join(repos, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(repos[:maxListed], ", "), len(repos)-maxListed)
}
