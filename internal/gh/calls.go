package gh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/go-github/v60/github"

	"github.com/shipbot/shipbot/internal/logctx"
)

// Limits GitHub enforces on what we write.
const (
	MaxStatusDescription = 140   // characters in a deployment status description
	MaxCheckRunText      = 65535 // characters in a check run's summary or text
	MaxCommentBody       = 65536 // characters in a comment
)

func repoOp(verb, owner, repo string) string { return fmt.Sprintf("%s on %s/%s", verb, owner, repo) }

func esc(s string) string { return url.PathEscape(s) }

// --- deployments ---

// DeploymentRequest is a deployment to create.
type DeploymentRequest struct {
	SHA         string // what to deploy; GitHub's ref
	Environment string
	Description string
	Task        string // "deploy" if empty
	Transient   bool   // a preview: torn down after the PR closes
	Production  bool
	Payload     map[string]any // optional, stored with the deployment
	// Marker names the deploy this deployment is for; it goes into the
	// payload as DeploymentMarker. With a marker, a create whose answer was
	// lost is not sent again before FindDeployment looked whether GitHub
	// had carried it out.
	Marker string
}

// DeploymentMarker is the payload key naming the deploy a deployment was
// created for ({"shipbot_deploy": "<deploy id>"}).
const DeploymentMarker = "shipbot_deploy"

// Deployment is a created deployment.
type Deployment struct {
	ID          int64
	SHA         string
	Environment string
	URL         string // API URL
}

// CreateDeployment creates a deployment of req.SHA. It always sends
// auto_merge: false and required_contexts: [] — the bot gates on checks
// itself, and GitHub must neither merge nor refuse on its own.
//
// With req.Marker, an attempt that got no answer or a 5xx may have
// created the deployment all the same, so before each retry it looks for
// the deployment carrying the marker (one read) and returns that one if
// GitHub has it: one deployment per deploy, however the answers were lost.
func (i *Installation) CreateDeployment(ctx context.Context, owner, repo string, req DeploymentRequest) (Deployment, error) {
	if req.Marker == "" {
		return i.createDeployment(ctx, owner, repo, req)
	}
	retry := &retryTransport{policy: i.c.retry}
	for attempt := 1; ; attempt++ {
		d, err := i.createDeployment(withoutAmbiguousRetry(ctx), owner, repo, req)
		if err == nil || !mayHaveApplied(err) || attempt >= retry.policy.MaxAttempts || ctx.Err() != nil {
			return d, err
		}
		found, ok, ferr := i.FindDeployment(ctx, owner, repo, req.SHA, req.Environment, req.Marker)
		if ferr == nil && ok {
			logctx.From(ctx).Info("github: the deployment whose answer was lost exists; using it", "deployment", found.ID, "marker", req.Marker, "err", err)
			return found, nil
		}
		wait := retry.backoff(attempt)
		logctx.From(ctx).Warn("github: creating the deployment got no answer and it does not exist yet; retrying",
			"marker", req.Marker, "attempt", attempt, "wait", wait, "err", err, "lookup_err", ferr)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return Deployment{}, err
		case <-timer.C:
		}
	}
}

// mayHaveApplied: the request got no answer, or a 5xx, so GitHub may have
// carried it out.
func mayHaveApplied(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.Status == 0 || e.Status >= 500)
}

// FindDeployment returns the deployment of sha to environment whose payload
// carries marker as DeploymentMarker (the newest, if several do); found is
// false when there is none.
func (i *Installation) FindDeployment(ctx context.Context, owner, repo, sha, environment, marker string) (d Deployment, found bool, err error) {
	op := repoOp(fmt.Sprintf("look for the deployment of %s to %s", sha, environment), owner, repo)
	opts := &github.DeploymentsListOptions{SHA: sha, Environment: environment, ListOptions: github.ListOptions{PerPage: 100}}
	for {
		list, resp, err := i.gh.Repositories.ListDeployments(ctx, owner, repo, opts)
		if err != nil {
			return Deployment{}, false, wrap(op, err)
		}
		for _, x := range list { // newest first
			if markerOf(x.Payload) == marker {
				return Deployment{ID: x.GetID(), SHA: x.GetSHA(), Environment: x.GetEnvironment(), URL: x.GetURL()}, true, nil
			}
		}
		if resp.NextPage == 0 {
			return Deployment{}, false, nil
		}
		opts.Page = resp.NextPage
	}
}

// markerOf reads DeploymentMarker from a deployment's payload: an object,
// or (GitHub's older form) a string holding one.
func markerOf(payload json.RawMessage) string {
	var obj map[string]any
	if err := json.Unmarshal(payload, &obj); err != nil {
		var s string
		if json.Unmarshal(payload, &s) != nil || json.Unmarshal([]byte(s), &obj) != nil {
			return ""
		}
	}
	m, _ := obj[DeploymentMarker].(string)
	return m
}

func (i *Installation) createDeployment(ctx context.Context, owner, repo string, req DeploymentRequest) (Deployment, error) {
	op := repoOp("create deployment", owner, repo)
	task := req.Task
	if task == "" {
		task = "deploy"
	}
	desc := truncateRunes(req.Description, MaxStatusDescription)
	body := &github.DeploymentRequest{
		Ref:                   github.String(req.SHA),
		Task:                  github.String(task),
		AutoMerge:             github.Bool(false),
		RequiredContexts:      &[]string{},
		Environment:           github.String(req.Environment),
		Description:           &desc,
		TransientEnvironment:  github.Bool(req.Transient),
		ProductionEnvironment: github.Bool(req.Production),
	}
	if req.Payload != nil || req.Marker != "" {
		payload := make(map[string]any, len(req.Payload)+1)
		for k, v := range req.Payload {
			payload[k] = v
		}
		if req.Marker != "" {
			payload[DeploymentMarker] = req.Marker
		}
		body.Payload = payload
	}
	d, _, err := i.gh.Repositories.CreateDeployment(ctx, owner, repo, body)
	if err != nil {
		var acc *github.AcceptedError
		if errors.As(err, &acc) {
			return Deployment{}, &Error{Op: op, Status: http.StatusAccepted, Message: "GitHub merged the default branch into the ref instead of creating a deployment", Err: err}
		}
		return Deployment{}, wrap(op, err)
	}
	return Deployment{ID: d.GetID(), SHA: d.GetSHA(), Environment: d.GetEnvironment(), URL: d.GetURL()}, nil
}

// DeploymentState is a deployment status's state.
type DeploymentState string

// The states the bot sets.
const (
	DeploymentQueued     DeploymentState = "queued"
	DeploymentInProgress DeploymentState = "in_progress"
	DeploymentSuccess    DeploymentState = "success"
	DeploymentFailure    DeploymentState = "failure"
	DeploymentError      DeploymentState = "error"
	DeploymentInactive   DeploymentState = "inactive"
)

// DeploymentStatus is a status to add to a deployment.
type DeploymentStatus struct {
	State          DeploymentState // sent as is; GitHub rejects anything else
	EnvironmentURL string          // where the deployed app is
	LogURL         string          // the bot's page for the deploy
	Description    string          // cut to 140 characters
}

// CreateDeploymentStatus adds a status to a deployment. It sends
// auto_inactive: false: the engine marks superseded deployments inactive
// itself, with a reason. Statuses are never skipped as unchanged.
func (i *Installation) CreateDeploymentStatus(ctx context.Context, owner, repo string, deploymentID int64, st DeploymentStatus) (int64, error) {
	op := repoOp(fmt.Sprintf("create %s status for deployment %d", st.State, deploymentID), owner, repo)
	body := &github.DeploymentStatusRequest{
		State:        github.String(string(st.State)),
		Description:  github.String(truncateRunes(st.Description, MaxStatusDescription)),
		AutoInactive: github.Bool(false),
	}
	if st.LogURL != "" {
		body.LogURL = github.String(st.LogURL)
	}
	if st.EnvironmentURL != "" {
		body.EnvironmentURL = github.String(st.EnvironmentURL)
	}
	s, _, err := i.gh.Repositories.CreateDeploymentStatus(ctx, owner, repo, deploymentID, body)
	if err != nil {
		return 0, wrap(op, err)
	}
	return s.GetID(), nil
}

// --- check runs ---

// CheckRun is what the bot writes to a check run.
type CheckRun struct {
	Name        string // required to create; kept as is on update when empty
	HeadSHA     string // create only
	Status      string // queued, in_progress, completed
	Conclusion  string // with completed: success, failure, neutral, cancelled, timed_out, action_required, skipped
	DetailsURL  string
	ExternalID  string
	StartedAt   time.Time
	CompletedAt time.Time
	Output      *CheckRunOutput
}

// CheckRunOutput is a check run's text; Summary and Text are cut to 65,535
// characters.
type CheckRunOutput struct {
	Title   string // the check's name if empty
	Summary string
	Text    string
}

type checkRunBody struct {
	Name        string            `json:"name,omitempty"`
	HeadSHA     string            `json:"head_sha,omitempty"`
	DetailsURL  string            `json:"details_url,omitempty"`
	ExternalID  string            `json:"external_id,omitempty"`
	Status      string            `json:"status,omitempty"`
	Conclusion  string            `json:"conclusion,omitempty"`
	StartedAt   *github.Timestamp `json:"started_at,omitempty"`
	CompletedAt *github.Timestamp `json:"completed_at,omitempty"`
	Output      *checkRunOutput   `json:"output,omitempty"`
}

type checkRunOutput struct {
	Title   string `json:"title"`
	Summary string `json:"summary"`
	Text    string `json:"text,omitempty"`
}

func (r CheckRun) body(create bool) checkRunBody {
	b := checkRunBody{Name: r.Name, DetailsURL: r.DetailsURL, ExternalID: r.ExternalID, Status: r.Status,
		Conclusion: r.Conclusion, StartedAt: timestamp(r.StartedAt), CompletedAt: timestamp(r.CompletedAt)}
	if create {
		b.HeadSHA = r.HeadSHA
	}
	if r.Output != nil {
		title := r.Output.Title
		if title == "" {
			title = r.Name
		}
		b.Output = &checkRunOutput{Title: title, Summary: truncateBytes(r.Output.Summary, MaxCheckRunText), Text: truncateBytes(r.Output.Text, MaxCheckRunText)}
	}
	return b
}

// fingerprint is what makes two writes the same: everything but the
// timestamps, which change on every call without changing what people see.
func (b checkRunBody) fingerprint() string {
	b.StartedAt, b.CompletedAt, b.HeadSHA = nil, nil, ""
	out, _ := json.Marshal(b)
	return string(out)
}

// CreateCheckRun creates a check run and returns its id.
func (i *Installation) CreateCheckRun(ctx context.Context, owner, repo string, run CheckRun) (int64, error) {
	op := repoOp(fmt.Sprintf("create check run %q", run.Name), owner, repo)
	body := run.body(true)
	req, err := i.gh.NewRequest(http.MethodPost, fmt.Sprintf("repos/%s/%s/check-runs", esc(owner), esc(repo)), body)
	if err != nil {
		return 0, &Error{Op: op, Err: err}
	}
	var out github.CheckRun
	if _, err := i.gh.Do(ctx, req, &out); err != nil {
		return 0, wrap(op, err)
	}
	i.c.checkRuns.set(checkRunKey(out.GetID()), body.fingerprint())
	return out.GetID(), nil
}

func checkRunKey(id int64) string { return fmt.Sprint(id) }

// UpdateCheckRun updates a check run. It sends nothing, and reports false,
// when the content is what this process last wrote to that run.
func (i *Installation) UpdateCheckRun(ctx context.Context, owner, repo string, id int64, run CheckRun) (wrote bool, err error) {
	op := repoOp(fmt.Sprintf("update check run %d", id), owner, repo)
	body := run.body(false)
	fp := body.fingerprint()
	if last, ok := i.c.checkRuns.get(checkRunKey(id)); ok && last == fp {
		return false, nil
	}
	req, err := i.gh.NewRequest(http.MethodPatch, fmt.Sprintf("repos/%s/%s/check-runs/%d", esc(owner), esc(repo), id), body)
	if err != nil {
		return false, &Error{Op: op, Err: err}
	}
	if _, err := i.gh.Do(ctx, req, nil); err != nil {
		i.c.checkRuns.del(checkRunKey(id))
		return false, wrap(op, err)
	}
	i.c.checkRuns.set(checkRunKey(id), fp)
	return true, nil
}

// CheckRunInfo is a check run as read back (the bot's own or CI's).
type CheckRunInfo struct {
	ID         int64
	Name       string
	Status     string
	Conclusion string
	AppSlug    string
	AppID      int64
}

// CheckRunsForRef returns the latest check runs on sha, all pages.
func (i *Installation) CheckRunsForRef(ctx context.Context, owner, repo, sha string) ([]CheckRunInfo, error) {
	op := repoOp("list check runs for "+sha, owner, repo)
	opts := &github.ListCheckRunsOptions{ListOptions: github.ListOptions{PerPage: 100}}
	var out []CheckRunInfo
	for {
		res, resp, err := i.gh.Checks.ListCheckRunsForRef(ctx, owner, repo, sha, opts)
		if err != nil {
			return nil, wrap(op, err)
		}
		for _, r := range res.CheckRuns {
			out = append(out, CheckRunInfo{ID: r.GetID(), Name: r.GetName(), Status: r.GetStatus(), Conclusion: r.GetConclusion(),
				AppSlug: r.GetApp().GetSlug(), AppID: r.GetApp().GetID()})
		}
		if resp.NextPage == 0 {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
}

// FindCheckRun returns the check run named name on sha whose external_id
// is externalID, the newest if several are; found is false when there is
// none. It finds what a create whose answer was lost made.
func (i *Installation) FindCheckRun(ctx context.Context, owner, repo, sha, name, externalID string) (id int64, found bool, err error) {
	op := repoOp(fmt.Sprintf("look for check run %q on %s", name, sha), owner, repo)
	opts := &github.ListCheckRunsOptions{CheckName: github.String(name), Filter: github.String("all"), ListOptions: github.ListOptions{PerPage: 100}}
	for {
		res, resp, err := i.gh.Checks.ListCheckRunsForRef(ctx, owner, repo, sha, opts)
		if err != nil {
			return 0, false, wrap(op, err)
		}
		for _, r := range res.CheckRuns {
			if r.GetExternalID() == externalID && r.GetID() > id {
				id, found = r.GetID(), true
			}
		}
		if resp.NextPage == 0 {
			return id, found, nil
		}
		opts.Page = resp.NextPage
	}
}

// CommitStatus is one context of a combined status.
type CommitStatus struct {
	Context     string
	State       string // error, failure, pending, success
	Description string
	TargetURL   string
}

// CombinedStatus is a commit's combined status (the statuses API, which
// some CI still uses instead of check runs).
type CombinedStatus struct {
	State    string // failure, pending, success
	Statuses []CommitStatus
}

// CombinedStatus returns sha's combined status, all pages.
func (i *Installation) CombinedStatus(ctx context.Context, owner, repo, sha string) (CombinedStatus, error) {
	op := repoOp("read combined status of "+sha, owner, repo)
	opts := &github.ListOptions{PerPage: 100}
	var out CombinedStatus
	for {
		cs, resp, err := i.gh.Repositories.GetCombinedStatus(ctx, owner, repo, sha, opts)
		if err != nil {
			return CombinedStatus{}, wrap(op, err)
		}
		out.State = cs.GetState()
		for _, s := range cs.Statuses {
			out.Statuses = append(out.Statuses, CommitStatus{Context: s.GetContext(), State: s.GetState(), Description: s.GetDescription(), TargetURL: s.GetTargetURL()})
		}
		if resp.NextPage == 0 {
			return out, nil
		}
		opts.Page = resp.NextPage
	}
}

// --- comments and reactions ---

// Comment is an issue or pull-request comment.
type Comment struct {
	ID      int64
	HTMLURL string
	Body    string
	User    string
}

func commentOf(c *github.IssueComment) Comment {
	return Comment{ID: c.GetID(), HTMLURL: c.GetHTMLURL(), Body: c.GetBody(), User: c.GetUser().GetLogin()}
}

// ReplyToComment posts a new comment on issue or pull request number.
func (i *Installation) ReplyToComment(ctx context.Context, owner, repo string, number int, body string) (Comment, error) {
	op := repoOp(fmt.Sprintf("comment on #%d", number), owner, repo)
	c, _, err := i.gh.Issues.CreateComment(ctx, owner, repo, number, &github.IssueComment{Body: github.String(truncateRunes(body, MaxCommentBody))})
	if err != nil {
		return Comment{}, wrap(op, err)
	}
	return commentOf(c), nil
}

// AddReaction reacts to an issue comment ("eyes" when the bot accepts a
// command). Reacting twice is harmless: GitHub keeps one.
func (i *Installation) AddReaction(ctx context.Context, owner, repo string, commentID int64, content string) error {
	op := repoOp(fmt.Sprintf("react %q to comment %d", content, commentID), owner, repo)
	_, _, err := i.gh.Reactions.CreateIssueCommentReaction(ctx, owner, repo, commentID, content)
	return wrap(op, err)
}

// UpsertStickyComment keeps one comment by the bot on issue or pull request
// number, found by marker (a hidden HTML comment such as
// "<!-- shipbot:preview -->", added to body if missing): it edits that
// comment, or creates it. Nothing is sent when the body is what the comment
// already says; wrote reports whether a write happened.
func (i *Installation) UpsertStickyComment(ctx context.Context, owner, repo string, number int, marker, body string) (c Comment, wrote bool, err error) {
	op := repoOp(fmt.Sprintf("update the sticky comment %s on #%d", marker, number), owner, repo)
	if strings.TrimSpace(marker) == "" {
		return Comment{}, false, &Error{Op: op, Status: http.StatusUnprocessableEntity, Message: "empty marker", Err: errors.New("gh: UpsertStickyComment needs a marker")}
	}
	if !strings.Contains(body, marker) {
		body = marker + "\n" + body
	}
	body = truncateRunes(body, MaxCommentBody)
	key := fmt.Sprintf("%d/%s/%s#%d/%s", i.id, owner, repo, number, marker)

	if cached, ok := i.c.comments.get(key); ok {
		var id int64
		var last string
		if _, err := fmt.Sscanf(cached, "%d", &id); err == nil {
			_, last, _ = strings.Cut(cached, "\x00")
		}
		if id != 0 && last == body {
			return Comment{ID: id, Body: body}, false, nil
		}
		if id != 0 {
			got, err := i.editComment(ctx, owner, repo, id, body)
			if err == nil {
				i.c.comments.set(key, fmt.Sprintf("%d\x00%s", id, body))
				return got, true, nil
			}
			i.c.comments.del(key)
			var er *github.ErrorResponse
			if !errors.As(err, &er) || er.Response == nil || er.Response.StatusCode != http.StatusNotFound {
				return Comment{}, false, wrap(op, err)
			}
			// Deleted by someone: find or create it again below.
		}
	}

	login, err := i.c.BotLogin(ctx)
	if err != nil {
		return Comment{}, false, err
	}
	existing, err := i.findComment(ctx, owner, repo, number, login, marker)
	if err != nil {
		return Comment{}, false, wrap(op, err)
	}
	if existing != nil {
		if existing.GetBody() == body {
			i.c.comments.set(key, fmt.Sprintf("%d\x00%s", existing.GetID(), body))
			return commentOf(existing), false, nil
		}
		got, err := i.editComment(ctx, owner, repo, existing.GetID(), body)
		if err != nil {
			return Comment{}, false, wrap(op, err)
		}
		i.c.comments.set(key, fmt.Sprintf("%d\x00%s", got.ID, body))
		return got, true, nil
	}
	created, _, err := i.gh.Issues.CreateComment(ctx, owner, repo, number, &github.IssueComment{Body: github.String(body)})
	if err != nil {
		return Comment{}, false, wrap(op, err)
	}
	i.c.comments.set(key, fmt.Sprintf("%d\x00%s", created.GetID(), body))
	return commentOf(created), true, nil
}

func (i *Installation) editComment(ctx context.Context, owner, repo string, id int64, body string) (Comment, error) {
	c, _, err := i.gh.Issues.EditComment(ctx, owner, repo, id, &github.IssueComment{Body: github.String(body)})
	if err != nil {
		return Comment{}, err
	}
	return commentOf(c), nil
}

// findComment returns the oldest comment by login containing marker.
func (i *Installation) findComment(ctx context.Context, owner, repo string, number int, login, marker string) (*github.IssueComment, error) {
	opts := &github.IssueListCommentsOptions{ListOptions: github.ListOptions{PerPage: 100}}
	for {
		list, resp, err := i.gh.Issues.ListComments(ctx, owner, repo, number, opts)
		if err != nil {
			return nil, err
		}
		for _, c := range list {
			if strings.EqualFold(c.GetUser().GetLogin(), login) && strings.Contains(c.GetBody(), marker) {
				return c, nil
			}
		}
		if resp.NextPage == 0 {
			return nil, nil
		}
		opts.Page = resp.NextPage
	}
}

// --- repository reads ---

// Permission is a person's role on a repository.
type Permission string

// Roles, weakest first.
const (
	PermissionNone     Permission = "none"
	PermissionRead     Permission = "read"
	PermissionTriage   Permission = "triage"
	PermissionWrite    Permission = "write"
	PermissionMaintain Permission = "maintain"
	PermissionAdmin    Permission = "admin"
)

var permissionRank = map[Permission]int{PermissionNone: 0, PermissionRead: 1, PermissionTriage: 2, PermissionWrite: 3, PermissionMaintain: 4, PermissionAdmin: 5}

// AtLeast reports whether p grants at least q.
func (p Permission) AtLeast(q Permission) bool { return permissionRank[p] >= permissionRank[q] }

// CollaboratorPermission returns login's role on the repository: role_name
// when it is one of GitHub's roles (it tells maintain and triage apart),
// else the older permission field (custom roles map to their base). A login
// GitHub does not know has none.
func (i *Installation) CollaboratorPermission(ctx context.Context, owner, repo, login string) (Permission, error) {
	op := repoOp("read the permission of "+login, owner, repo)
	req, err := i.gh.NewRequest(http.MethodGet, fmt.Sprintf("repos/%s/%s/collaborators/%s/permission", esc(owner), esc(repo), esc(login)), nil)
	if err != nil {
		return PermissionNone, &Error{Op: op, Err: err}
	}
	// go-github v60's RepositoryPermissionLevel has no role_name.
	var out struct {
		Permission string `json:"permission"`
		RoleName   string `json:"role_name"`
	}
	if _, err := i.gh.Do(ctx, req, &out); err != nil {
		var er *github.ErrorResponse
		if errors.As(err, &er) && er.Response != nil && er.Response.StatusCode == http.StatusNotFound {
			return PermissionNone, nil
		}
		return PermissionNone, wrap(op, err)
	}
	if _, ok := permissionRank[Permission(out.RoleName)]; ok {
		return Permission(out.RoleName), nil
	}
	if _, ok := permissionRank[Permission(out.Permission)]; ok {
		return Permission(out.Permission), nil
	}
	return PermissionNone, nil
}

// ReadFile returns a file's content at ref; ref "" means the default branch
// (where .github/shipbot.yml is read from). found is false when the file or
// ref does not exist, which for the config file is normal.
func (i *Installation) ReadFile(ctx context.Context, owner, repo, path, ref string) (content []byte, found bool, err error) {
	op := repoOp("read "+path, owner, repo)
	var opts *github.RepositoryContentGetOptions
	if ref != "" {
		opts = &github.RepositoryContentGetOptions{Ref: ref}
	}
	f, dir, resp, err := i.gh.Repositories.GetContents(ctx, owner, repo, path, opts)
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusNotFound {
			return nil, false, nil
		}
		return nil, false, wrap(op, err)
	}
	if f == nil || dir != nil {
		return nil, false, &Error{Op: op, Status: http.StatusUnprocessableEntity, Message: path + " is a directory, not a file", Err: errors.New("gh: not a file")}
	}
	s, err := f.GetContent()
	if err != nil {
		return nil, false, &Error{Op: op, Status: http.StatusUnprocessableEntity, Message: "undecodable content: " + err.Error(), Err: err}
	}
	return []byte(s), true, nil
}

// DefaultBranch returns the repository's default branch.
func (i *Installation) DefaultBranch(ctx context.Context, owner, repo string) (string, error) {
	r, _, err := i.gh.Repositories.Get(ctx, owner, repo)
	if err != nil {
		return "", wrap(repoOp("read the repository", owner, repo), err)
	}
	return r.GetDefaultBranch(), nil
}

// DownloadTarball returns the gzip tarball of the repository at sha. The API
// answers with a redirect to a short-lived archive URL that carries its own
// token; that URL is fetched without the installation's credentials. The
// caller closes the reader.
func (i *Installation) DownloadTarball(ctx context.Context, owner, repo, sha string) (io.ReadCloser, error) {
	op := repoOp("download the tarball of "+sha, owner, repo)
	u, resp, err := i.gh.Repositories.GetArchiveLink(ctx, owner, repo, github.Tarball, &github.RepositoryContentGetOptions{Ref: sha}, 1)
	if err != nil {
		if resp != nil && resp.StatusCode >= 300 {
			return nil, &Error{Op: op, Status: resp.StatusCode, Message: http.StatusText(resp.StatusCode), Err: err}
		}
		return nil, wrap(op, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, &Error{Op: op, Err: err}
	}
	res, err := i.download.Do(req)
	if err != nil {
		return nil, &Error{Op: op, Err: err}
	}
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		return nil, &Error{Op: op, Status: res.StatusCode, Message: "archive download failed: " + res.Status, Err: errors.New(res.Status)}
	}
	return res.Body, nil
}

// truncateRunes cuts s to at most n characters, ending in "…" when cut.
func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// truncateBytes cuts s to at most n bytes (so at most n characters too) at
// a character boundary, saying so at the end.
func truncateBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const note = "\n\n… (truncated)"
	cut := n - len(note)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + note
}
