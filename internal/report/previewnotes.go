package report

import "fmt"

// The sentences around a preview that are not its state row: why none is
// built, why one could not run, why one was torn down.

// ForkPreviewComment is the preview comment of a pull request from a fork
// when the configuration leaves fork previews off.
func ForkPreviewComment() string {
	return PreviewMarker + "\nNo preview for this pull request: it comes from a fork, and `preview.forks` is off in `" + configFile + "` on the default branch.\n"
}

// NoPreviewDriver is why a preview could not run: the bot has no driver of
// that name (for "aws": its AWS configuration did not load).
func NoPreviewDriver(driver string) string {
	if driver == "aws" {
		return "the bot has no working AWS configuration (see its log); fix it or set preview.driver: local"
	}
	return fmt.Sprintf("previews with driver %q are not supported", driver)
}

// PreviewClosed is why a pull request's preview was torn down.
func PreviewClosed(merged bool) string {
	if merged {
		return "the pull request was merged"
	}
	return "the pull request was closed"
}
