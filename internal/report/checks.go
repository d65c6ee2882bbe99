package report

import (
	"fmt"
	"strings"
	"time"
)

// The reasons a deploy waiting for its required checks fails; the
// deployment status and the check run show them.

// CheckFailed says that the required check name ended red (its check-run
// conclusion, or its commit status state) on sha.
func CheckFailed(name, conclusion, sha string) string {
	return fmt.Sprintf("required check %s %s on %s", name, redWord(conclusion), Short(sha))
}

// redWord is how a red conclusion reads after the check's name.
func redWord(conclusion string) string {
	switch conclusion {
	case "failure", "error":
		return "failed"
	case "cancelled":
		return "was cancelled"
	case "timed_out":
		return "timed out"
	case "action_required":
		return "needs action"
	}
	return "ended " + conclusion
}

// ChecksTimedOut says that the required checks still pending on sha did
// not finish within the bound on the wait.
func ChecksTimedOut(within time.Duration, pending []string, sha string) string {
	return fmt.Sprintf("required checks did not finish within %s: %s still pending on %s", within, strings.Join(pending, ", "), Short(sha))
}

// EnvironmentGone says that a deploy's environment was removed from the
// configuration while the deploy waited.
func EnvironmentGone(env string) string {
	return fmt.Sprintf("environment %s is no longer in %s", env, configFile)
}
