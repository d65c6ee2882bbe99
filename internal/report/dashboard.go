package report

// The dashboard's sentences: what its sign-in and error pages say. The
// pages' own headings live in their templates; anything that explains
// what happened and what to do is built here, like every other text.

// Dashboard sentences that name nothing.
const (
	DashboardWrongToken     = "That is not the dashboard token."
	DashboardNoGitHubSignIn = "Sign-in with GitHub is not configured."
	DashboardSignInExpired  = "The sign-in took too long or did not start here. Please try again."
	DashboardNoUser         = "GitHub did not say who you are. Please try again."
	DashboardNoRepositories = "GitHub did not list your repositories. Please try again."
	DashboardStoreDown      = "The deploy store did not answer. Try again in a moment."
	DashboardBearerWrong    = "the bearer token is not the dashboard token"
	DashboardSignInFirst    = "sign in first: send Authorization: Bearer DASHBOARD_TOKEN, or a session cookie from /auth/signin"
)

// DashboardSignInRefused: GitHub answered the sign-in with an error code.
func DashboardSignInRefused(code string) string { return "GitHub did not sign you in (" + code + ")." }

// DashboardExchangeFailed: GitHub did not turn the sign-in's code into a token.
func DashboardExchangeFailed(err error) string {
	return "GitHub did not accept the sign-in: " + err.Error()
}

// DashboardReposFailed: the signed-in user's repositories could not be read.
func DashboardReposFailed(err error) string {
	return "GitHub did not list your repositories: " + err.Error() + ". Try again in a moment."
}

// DashboardNoDeploy: the deploy does not exist, or the viewer may not see it.
func DashboardNoDeploy(id string) string { return "There is no deploy " + id + " that you can see." }

// DashboardNoSuchRepo: the audit log was asked for a repository the viewer
// cannot read (or that does not exist).
const DashboardNoSuchRepo = "There is no repository by that name that you can see."

// AuditBadSince: /audit's since filter is neither a date nor a time.
func AuditBadSince(s string) string {
	return "since=" + s + " is not a date: write a day like 2026-12-01, or a time like 2026-12-01T09:00:00Z."
}

// AuditRedelivery is the audit log's text for a redelivery the bot asked
// GitHub for: which delivery, and how it had failed.
func AuditRedelivery(guid, event, action, status string) string {
	what := event
	if action != "" {
		what += "." + action
	}
	return "asked GitHub to redeliver " + what + " delivery " + guid + ", which had failed: " + oneLine(status)
}
