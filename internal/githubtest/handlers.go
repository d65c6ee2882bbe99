package githubtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// route is one operation githubtest implements. path is GitHub's template;
// a parameter ending in + spans slashes (GitHub's x-multi-segment), for
// matching when no REST description is loaded.
type route struct {
	method, path, op string
	h                handlerFunc
}

var routeTable = []route{
	{"GET", "/app", "apps/get-authenticated", (*Server).getApp},
	{"GET", "/app/installations/{installation_id}", "apps/get-installation", onInstallation((*Server).getInstallation)},
	{"POST", "/app/installations/{installation_id}/access_tokens", "apps/create-installation-access-token", onInstallation((*Server).createAccessToken)},
	{"GET", "/app/hook/deliveries", "apps/list-webhook-deliveries", (*Server).listDeliveries},
	{"POST", "/app/hook/deliveries/{delivery_id}/attempts", "apps/redeliver-webhook-delivery", (*Server).redeliver},
	{"POST", "/app-manifests/{code}/conversions", "apps/create-from-manifest", (*Server).convertManifest},
	{"GET", "/repos/{owner}/{repo}", "repos/get", onRepo((*Server).getRepo)},
	{"GET", "/repos/{owner}/{repo}/deployments", "repos/list-deployments", onRepo((*Server).listDeployments)},
	{"POST", "/repos/{owner}/{repo}/deployments", "repos/create-deployment", onRepoWithBody((*Server).createDeployment)},
	{"POST", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses", "repos/create-deployment-status", onRepoWithBody((*Server).createDeploymentStatus)},
	{"POST", "/repos/{owner}/{repo}/check-runs", "checks/create", onRepoWithBody((*Server).createCheckRun)},
	{"PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}", "checks/update", onRepoWithBody((*Server).updateCheckRun)},
	{"GET", "/repos/{owner}/{repo}/commits/{ref+}/check-runs", "checks/list-for-ref", onRepo((*Server).listCheckRunsForRef)},
	{"GET", "/repos/{owner}/{repo}/commits/{ref+}/status", "repos/get-combined-status-for-ref", onRepo((*Server).combinedStatus)},
	{"GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments", "issues/list-comments", onRepo((*Server).listComments)},
	{"POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", "issues/create-comment", onRepoWithBody((*Server).createComment)},
	{"PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}", "issues/update-comment", onRepoWithBody((*Server).updateComment)},
	{"POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions", "reactions/create-for-issue-comment", onRepoWithBody((*Server).createReaction)},
	{"GET", "/repos/{owner}/{repo}/collaborators/{username}/permission", "repos/get-collaborator-permission-level", onRepo((*Server).getPermission)},
	{"GET", "/repos/{owner}/{repo}/contents/{path+}", "repos/get-content", onRepo((*Server).getContent)},
	{"GET", "/repos/{owner}/{repo}/tarball/{ref+}", "repos/download-tarball-archive", onRepo((*Server).tarballRedirect)},
	{"GET", "/repos/{owner}/{repo}/pulls/{pull_number}", "pulls/get", onRepo((*Server).getPull)},
	{"GET", "/repos/{owner}/{repo}/commits/{ref+}", "repos/get-commit", onRepo((*Server).getCommit)},
	{"GET", "/repos/{owner}/{repo}/pulls/{pull_number}/commits", "pulls/list-commits", (*Server).listPullCommits},
	{"GET", "/user", "users/get-authenticated", (*Server).getAuthenticatedUser},
	{"GET", "/user/installations", "apps/list-installations-for-authenticated-user", (*Server).listUserInstallations},
	{"GET", "/user/installations/{installation_id}/repositories", "apps/list-installation-repos-for-authenticated-user", onInstallation((*Server).listUserInstallationRepos)},
}

func handlerFor(op string) handlerFunc {
	for _, r := range routeTable {
		if r.op == op {
			return r.h
		}
	}
	return nil
}

// Operations lists the GitHub operation ids githubtest implements.
func Operations() []string {
	out := make([]string, len(routeTable))
	for i, r := range routeTable {
		out[i] = r.op
	}
	return out
}

// --- App endpoints (JWT) ---

// onInstallation serves an operation on the installation the path names:
// op runs with s.mu held; 404 unless it is an installation of the calling
// App.
func onInstallation(op func(s *Server, c *reqCtx, in *installation) response) handlerFunc {
	return func(s *Server, c *reqCtx) response {
		id, _ := c.intParam("installation_id")
		s.mu.Lock()
		defer s.mu.Unlock()
		in := s.installations[id]
		if in == nil || in.appID != c.appID {
			return notFound()
		}
		return op(s, c, in)
	}
}

func (s *Server) getApp(c *reqCtx) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.apps[c.appID]
	return response{status: http.StatusOK, body: s.appJSON(a, "octo-org")}
}

func (s *Server) getInstallation(_ *reqCtx, in *installation) response {
	return response{status: http.StatusOK, body: s.installationJSON(in)}
}

func (s *Server) createAccessToken(_ *reqCtx, in *installation) response {
	tok := "ghs_" + randHex(18)
	exp := time.Now().Add(s.cfg.tokenTTL).UTC().Truncate(time.Second)
	s.tokens[tok] = token{installation: in.id, expires: exp}
	return response{status: http.StatusCreated, body: obj{
		"token": tok, "expires_at": exp.Format(time.RFC3339), "repository_selection": "all",
		"permissions": obj{"checks": "write", "contents": "read", "deployments": "write", "issues": "write", "metadata": "read", "pull_requests": "write"},
	}}
}

func (s *Server) listDeliveries(c *reqCtx) response {
	q := c.r.URL.Query()
	perPage := perPageOf(q)
	var after int64 = -1
	if cur := q.Get("cursor"); cur != "" {
		n, err := strconv.ParseInt(strings.TrimPrefix(cur, "v1_"), 10, 64)
		if err != nil {
			return errorResponse(http.StatusBadRequest, "Invalid cursor")
		}
		after = n
	}
	status := q.Get("status")
	s.mu.Lock()
	defer s.mu.Unlock()
	list := make([]*Delivery, 0, len(s.deliveries))
	for _, d := range s.deliveries {
		ok := d.StatusCode >= 200 && d.StatusCode < 400
		if (status == "success" && !ok) || (status == "failure" && ok) {
			continue
		}
		list = append(list, d)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].ID > list[j].ID }) // newest first
	start := 0
	if after >= 0 {
		start = sort.Search(len(list), func(i int) bool { return list[i].ID < after })
	}
	end := min(start+perPage, len(list))
	page := make([]any, 0, end-start)
	for _, d := range list[start:end] {
		page = append(page, deliveryJSON(d))
	}
	h := http.Header{}
	if end < len(list) {
		next := fmt.Sprintf("%s/app/hook/deliveries?per_page=%d&cursor=v1_%d", s.URL, perPage, list[end-1].ID)
		if status != "" {
			next += "&status=" + status
		}
		h.Set("Link", fmt.Sprintf(`<%s>; rel="next"`, next))
	}
	return response{status: http.StatusOK, header: h, body: page}
}

func (s *Server) redeliver(c *reqCtx) response {
	id, _ := c.intParam("delivery_id")
	s.mu.Lock()
	var orig *Delivery
	for _, d := range s.deliveries {
		if d.ID == id {
			orig = d
		}
	}
	if orig == nil {
		s.mu.Unlock()
		return notFound()
	}
	s.redeliveries = append(s.redeliveries, id)
	attempt := Delivery{GUID: orig.GUID, Event: orig.Event, Action: orig.Action, StatusCode: 200, Redelivery: true,
		InstallationID: orig.InstallationID, RepositoryID: orig.RepositoryID, Duration: 0.05}
	hook := s.onRedeliver
	if hook != nil {
		attempt.StatusCode, attempt.Status = 0, "pending"
	}
	newID := s.addDeliveryLocked(attempt)
	s.mu.Unlock()
	if hook != nil {
		d := attempt
		d.ID = newID
		go func() {
			code := hook(d)
			s.mu.Lock()
			defer s.mu.Unlock()
			for _, x := range s.deliveries {
				if x.ID == newID {
					x.StatusCode, x.Status = code, deliveryStatus(code)
				}
			}
		}()
	}
	return response{status: http.StatusAccepted, body: obj{}}
}

type manifestCode struct {
	manifest map[string]any
	owner    string
}

func (s *Server) convertManifest(c *reqCtx) response {
	code := c.param("code")
	s.mu.Lock()
	mc, ok := s.manifestCodes[code]
	if ok {
		delete(s.manifestCodes, code)
	}
	s.mu.Unlock()
	if !ok || mc == nil {
		return notFound()
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return errorResponse(http.StatusInternalServerError, err.Error())
	}
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	name, _ := mc.manifest["name"].(string)
	if name == "" {
		name = "shipbot"
	}
	owner := mc.owner
	if owner == "" {
		owner = "octocat"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.newID()
	slug := slugify(name)
	if s.appBySlugExistsLocked(slug) {
		slug = fmt.Sprintf("%s-%d", slug, id)
	}
	a := &app{id: id, slug: slug, name: name, key: &key.PublicKey, clientID: "Iv1." + randHex(8), webhookSecret: randHex(20)}
	s.apps[id] = a
	conv := ConvertedApp{ID: id, Slug: slug, Name: name, ClientID: a.clientID, ClientSecret: randHex(20),
		WebhookSecret: a.webhookSecret, PEM: pemText, Owner: owner, Manifest: mc.manifest}
	s.converted = append(s.converted, conv)
	body := s.appJSON(a, owner)
	body["owner"] = s.userJSON(owner, "User")
	if u, ok := mc.manifest["url"].(string); ok && u != "" {
		body["external_url"] = u
	}
	body["client_id"], body["client_secret"], body["webhook_secret"], body["pem"] = conv.ClientID, conv.ClientSecret, conv.WebhookSecret, conv.PEM
	return response{status: http.StatusCreated, body: body}
}

func (s *Server) appBySlugExistsLocked(slug string) bool {
	for _, a := range s.apps {
		if a.slug == slug {
			return true
		}
	}
	return false
}

var nonSlug = regexp.MustCompile(`[^a-z0-9]+`)

func slugify(name string) string {
	return strings.Trim(nonSlug.ReplaceAllString(strings.ToLower(name), "-"), "-")
}

// --- repository endpoints (installation token) ---

// repoFor returns the repository the request names, if the token's
// installation can see it. s.mu held.
func (s *Server) repoFor(c *reqCtx) *repo {
	r := s.findRepo(c.param("owner"), c.param("repo"))
	if r == nil || r.installation != c.installation {
		return nil
	}
	return r
}

// onRepo serves an operation on one repository: op runs with s.mu held and
// r the repository the path names; 404 if the token's installation cannot
// see it.
func onRepo(op func(s *Server, c *reqCtx, r *repo) response) handlerFunc {
	return func(s *Server, c *reqCtx) response {
		s.mu.Lock()
		defer s.mu.Unlock()
		r := s.repoFor(c)
		if r == nil {
			return notFound()
		}
		return op(s, c, r)
	}
}

// checker is a request body with limits of its own (see onRepoWithBody).
type checker interface {
	check() *response // nil if the body is within them
}

// onRepoWithBody is onRepo for an operation that takes a JSON body: a body
// that does not parse (400), or is a checker and fails its check, is
// refused before the repository is looked up.
func onRepoWithBody[T any](op func(s *Server, c *reqCtx, r *repo, in *T) response) handlerFunc {
	return func(s *Server, c *reqCtx) response {
		var in T
		if err := decodeBody(c, &in); err != nil {
			return errorResponse(http.StatusBadRequest, "Problems parsing JSON")
		}
		if ch, ok := any(&in).(checker); ok {
			if resp := ch.check(); resp != nil {
				return *resp
			}
		}
		return onRepo(func(s *Server, c *reqCtx, r *repo) response { return op(s, c, r, &in) })(s, c)
	}
}

func (s *Server) actor(c *reqCtx) string {
	in := s.installations[c.installation]
	if in != nil {
		if a := s.apps[in.appID]; a != nil {
			return s.botLogin(a)
		}
	}
	return s.AppSlug + "[bot]"
}

func (s *Server) getRepo(_ *reqCtx, r *repo) response {
	return response{status: http.StatusOK, body: s.fullRepoJSON(r)}
}

type deploymentInput struct {
	Ref                   string          `json:"ref"`
	Task                  *string         `json:"task"`
	AutoMerge             *bool           `json:"auto_merge"`
	RequiredContexts      *[]string       `json:"required_contexts"`
	Payload               json.RawMessage `json:"payload"`
	Environment           *string         `json:"environment"`
	Description           *string         `json:"description"`
	TransientEnvironment  bool            `json:"transient_environment"`
	ProductionEnvironment *bool           `json:"production_environment"`
}

func (s *Server) createDeployment(c *reqCtx, r *repo, in *deploymentInput) response {
	d := &Deployment{ID: s.newID(), Owner: r.owner, Repo: r.name, Ref: in.Ref, SHA: r.resolve(in.Ref), Task: "deploy",
		Environment: "production", AutoMerge: in.AutoMerge, TransientEnvironment: in.TransientEnvironment,
		Creator: s.actor(c), CreatedAt: time.Now().UTC()}
	if in.Task != nil {
		d.Task = *in.Task
	}
	if in.Environment != nil {
		d.Environment = *in.Environment
	}
	if in.Description != nil {
		d.Description = *in.Description
	}
	d.ProductionEnvironment = d.Environment == "production"
	if in.ProductionEnvironment != nil {
		d.ProductionEnvironment = *in.ProductionEnvironment
	}
	if len(in.Payload) > 0 && string(in.Payload) != "null" && string(in.Payload) != `""` {
		d.Payload = append(json.RawMessage(nil), in.Payload...)
	}
	if in.RequiredContexts != nil {
		d.RequiredContexts = append([]string{}, (*in.RequiredContexts)...)
	} else {
		// GitHub verifies every context on the commit when required_contexts
		// is omitted, and refuses while any is not green.
		for _, st := range latestStatuses(r.statuses[d.SHA]) {
			if st.State != "success" {
				return response{status: http.StatusConflict, body: obj{"message": fmt.Sprintf("Conflict: Commit status checks failed for %s.", in.Ref), "documentation_url": docsURL}}
			}
		}
	}
	r.deployments = append(r.deployments, d)
	return response{status: http.StatusCreated, body: s.deploymentJSON(r, d)}
}

// listDeployments filters by sha, ref, task and environment, newest
// first, as GitHub does.
func (s *Server) listDeployments(c *reqCtx, r *repo) response {
	q := c.r.URL.Query()
	var items []any
	for i := len(r.deployments) - 1; i >= 0; i-- {
		d := r.deployments[i]
		if (q.Has("sha") && q.Get("sha") != d.SHA) || (q.Has("ref") && q.Get("ref") != d.Ref) ||
			(q.Has("task") && q.Get("task") != d.Task) || (q.Has("environment") && q.Get("environment") != d.Environment) {
			continue
		}
		items = append(items, s.deploymentJSON(r, d))
	}
	page, h := s.paginate(c, items)
	return response{status: http.StatusOK, header: h, body: page}
}

type deploymentStatusInput struct {
	State          string `json:"state"`
	TargetURL      string `json:"target_url"`
	LogURL         string `json:"log_url"`
	Description    string `json:"description"`
	Environment    string `json:"environment"`
	EnvironmentURL string `json:"environment_url"`
	AutoInactive   *bool  `json:"auto_inactive"`
}

func (s *Server) createDeploymentStatus(c *reqCtx, r *repo, in *deploymentStatusInput) response {
	id, _ := c.intParam("deployment_id")
	var d *Deployment
	for _, x := range r.deployments {
		if x.ID == id {
			d = x
		}
	}
	if d == nil {
		return notFound()
	}
	if n := utf8.RuneCountInString(in.Description); n > 140 {
		return validationError("DeploymentStatus", "description", fmt.Sprintf("description is too long (maximum is 140 characters, got %d)", n))
	}
	logURL := in.LogURL
	if logURL == "" {
		logURL = in.TargetURL
	}
	if in.Environment != "" {
		d.Environment = in.Environment
	}
	now := time.Now().UTC()
	st := DeploymentStatus{ID: s.newID(), State: in.State, Description: in.Description, EnvironmentURL: in.EnvironmentURL,
		LogURL: logURL, Environment: d.Environment, AutoInactive: in.AutoInactive, Creator: s.actor(c), CreatedAt: now}
	d.Statuses = append(d.Statuses, st)
	// auto_inactive (default true): a success marks the environment's earlier
	// successful, non-transient deployments inactive.
	if in.State == "success" && (in.AutoInactive == nil || *in.AutoInactive) {
		for _, o := range r.deployments {
			if o != d && o.Environment == d.Environment && !o.TransientEnvironment && o.LastState() == "success" {
				o.Statuses = append(o.Statuses, DeploymentStatus{ID: s.newID(), State: "inactive", Environment: o.Environment,
					Description: "superseded by GitHub (auto_inactive)", Creator: "github", CreatedAt: now})
			}
		}
	}
	return response{status: http.StatusCreated, body: s.deploymentStatusJSON(r, d, st)}
}

func validationError(resource, field, msg string) response {
	return response{status: http.StatusUnprocessableEntity, body: obj{
		"message": "Validation Failed", "documentation_url": docsURL,
		"errors": []any{obj{"resource": resource, "field": field, "code": "custom", "message": msg}},
	}}
}

type checkRunInput struct {
	Name        *string `json:"name"`
	HeadSHA     string  `json:"head_sha"`
	DetailsURL  *string `json:"details_url"`
	ExternalID  *string `json:"external_id"`
	Status      *string `json:"status"`
	Conclusion  *string `json:"conclusion"`
	StartedAt   *string `json:"started_at"`
	CompletedAt *string `json:"completed_at"`
	Output      *struct {
		Title   *string `json:"title"`
		Summary *string `json:"summary"`
		Text    *string `json:"text"`
	} `json:"output"`
}

func (in *checkRunInput) apply(run *CheckRun) *response {
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&run.Name, in.Name)
	set(&run.DetailsURL, in.DetailsURL)
	set(&run.ExternalID, in.ExternalID)
	set(&run.Status, in.Status)
	if in.Conclusion != nil {
		run.Conclusion = *in.Conclusion
		run.Status = "completed"
	}
	if in.StartedAt != nil {
		run.StartedAt, _ = time.Parse(time.RFC3339, *in.StartedAt)
	}
	if in.CompletedAt != nil {
		run.CompletedAt, _ = time.Parse(time.RFC3339, *in.CompletedAt)
	}
	if in.Output != nil {
		set(&run.Title, in.Output.Title)
		set(&run.Summary, in.Output.Summary)
		set(&run.Text, in.Output.Text)
	}
	if run.Status == "completed" && run.Conclusion == "" {
		r := validationError("CheckRun", "conclusion", "conclusion is required when status is completed")
		return &r
	}
	if run.Status == "completed" && run.CompletedAt.IsZero() {
		run.CompletedAt = time.Now().UTC()
	}
	return nil
}

func (s *Server) createCheckRun(c *reqCtx, r *repo, in *checkRunInput) response {
	run := &CheckRun{Owner: r.owner, Repo: r.name, HeadSHA: in.HeadSHA, Status: "queued", AppSlug: strings.TrimSuffix(s.actor(c), "[bot]")}
	if resp := in.apply(run); resp != nil {
		return *resp
	}
	if run.StartedAt.IsZero() {
		run.StartedAt = time.Now().UTC()
	}
	run.ID = s.newID()
	s.checkRuns[run.ID] = run
	return response{status: http.StatusCreated, body: s.checkRunJSON(r, run)}
}

func (s *Server) updateCheckRun(c *reqCtx, r *repo, in *checkRunInput) response {
	id, _ := c.intParam("check_run_id")
	run := s.checkRuns[id]
	if run == nil || run.Owner != r.owner || run.Repo != r.name {
		return notFound()
	}
	if run.AppSlug != strings.TrimSuffix(s.actor(c), "[bot]") {
		return errorResponse(http.StatusForbidden, "Invalid app_id `"+run.AppSlug+"` - check run can only be modified by the GitHub App that created it.")
	}
	next := *run
	if resp := in.apply(&next); resp != nil {
		return *resp
	}
	next.Updates++
	*run = next
	return response{status: http.StatusOK, body: s.checkRunJSON(r, run)}
}

func (s *Server) listCheckRunsForRef(c *reqCtx, r *repo) response {
	q := c.r.URL.Query()
	sha := r.resolve(c.param("ref"))
	var runs []*CheckRun
	for _, run := range s.checkRuns {
		if run.Owner != r.owner || run.Repo != r.name || run.HeadSHA != sha {
			continue
		}
		if n := q.Get("check_name"); n != "" && run.Name != n {
			continue
		}
		if st := q.Get("status"); st != "" && run.Status != st {
			continue
		}
		runs = append(runs, run)
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].ID > runs[j].ID })
	if q.Get("filter") != "all" { // latest: the newest run per name
		seen := map[string]bool{}
		latest := runs[:0:0]
		for _, run := range runs {
			if !seen[run.AppSlug+"\x00"+run.Name] {
				seen[run.AppSlug+"\x00"+run.Name] = true
				latest = append(latest, run)
			}
		}
		runs = latest
	}
	items := make([]any, len(runs))
	for i, run := range runs {
		items[i] = s.checkRunJSON(r, run)
	}
	page, h := s.paginate(c, items)
	return response{status: http.StatusOK, header: h, body: obj{"total_count": len(runs), "check_runs": page}}
}

// latestStatuses keeps the newest status per context.
func latestStatuses(all []CommitStatus) []CommitStatus {
	byCtx := map[string]int{}
	var out []CommitStatus
	for _, st := range all {
		if i, ok := byCtx[st.Context]; ok {
			out[i] = st
			continue
		}
		byCtx[st.Context] = len(out)
		out = append(out, st)
	}
	return out
}

func (s *Server) combinedStatus(c *reqCtx, r *repo) response {
	sha := r.resolve(c.param("ref"))
	sts := latestStatuses(r.statuses[sha])
	state := "success"
	if len(sts) == 0 {
		state = "pending"
	}
	for _, st := range sts {
		switch st.State {
		case "error", "failure":
			state = "failure"
		case "pending":
			if state == "success" {
				state = "pending"
			}
		}
	}
	items := make([]any, len(sts))
	for i, st := range sts {
		items[i] = s.commitStatusJSON(r, sha, st)
	}
	page, h := s.paginate(c, items)
	return response{status: http.StatusOK, header: h, body: obj{
		"state": state, "statuses": page, "sha": sha, "total_count": len(sts),
		"repository": s.minimalRepoJSON(r), "commit_url": s.repoAPI(r) + "/commits/" + sha,
		"url": s.repoAPI(r) + "/commits/" + sha + "/status",
	}}
}

func (s *Server) listComments(c *reqCtx, r *repo) response {
	n, _ := strconv.Atoi(c.param("issue_number"))
	list := s.commentsLocked(r.owner, r.name, n)
	items := make([]any, len(list))
	for i := range list {
		items[i] = s.commentJSON(r, &list[i])
	}
	page, h := s.paginate(c, items)
	return response{status: http.StatusOK, header: h, body: page}
}

const maxCommentBody = 65536

// commentInput is the body of creating or editing a comment.
type commentInput struct {
	Body string `json:"body"`
}

func (in *commentInput) check() *response {
	if utf8.RuneCountInString(in.Body) > maxCommentBody {
		r := validationError("IssueComment", "body", "Body is too long (maximum is 65536 characters)")
		return &r
	}
	return nil
}

func (s *Server) createComment(c *reqCtx, r *repo, in *commentInput) response {
	n, _ := strconv.Atoi(c.param("issue_number"))
	now := time.Now().UTC()
	cm := &Comment{ID: s.newID(), Owner: r.owner, Repo: r.name, Number: n, User: s.actor(c), UserType: "Bot", Body: in.Body, CreatedAt: now, UpdatedAt: now}
	s.comments[cm.ID] = cm
	return response{status: http.StatusCreated, body: s.commentJSON(r, cm)}
}

func (s *Server) updateComment(c *reqCtx, r *repo, in *commentInput) response {
	cm := s.commentFor(c, r)
	if cm == nil {
		return notFound()
	}
	if cm.User != s.actor(c) {
		s.t.Errorf("githubtest: the bot edited comment %d by %s, which is not its own", cm.ID, cm.User)
		return errorResponse(http.StatusForbidden, "Resource not accessible by integration")
	}
	cm.Body, cm.UpdatedAt = in.Body, time.Now().UTC()
	cm.Edits++
	return response{status: http.StatusOK, body: s.commentJSON(r, cm)}
}

// commentFor returns the comment the path names, if it is on r. s.mu held.
func (s *Server) commentFor(c *reqCtx, r *repo) *Comment {
	id, _ := c.intParam("comment_id")
	cm := s.comments[id]
	if cm == nil || cm.Owner != r.owner || cm.Repo != r.name {
		return nil
	}
	return cm
}

type reactionInput struct {
	Content string `json:"content"`
}

func (s *Server) createReaction(c *reqCtx, r *repo, in *reactionInput) response {
	cm := s.commentFor(c, r)
	if cm == nil {
		return notFound()
	}
	user := s.actor(c)
	for _, re := range cm.Reactions {
		if re.User == user && re.Content == in.Content {
			return response{status: http.StatusOK, body: s.reactionJSON(re, "Bot")}
		}
	}
	re := Reaction{ID: s.newID(), Content: in.Content, User: user}
	cm.Reactions = append(cm.Reactions, re)
	return response{status: http.StatusCreated, body: s.reactionJSON(re, "Bot")}
}

// legacyPermission maps a role to the permission field GitHub still sends
// next to role_name.
func legacyPermission(role string) string {
	switch role {
	case "admin":
		return "admin"
	case "maintain", "write":
		return "write"
	case "triage", "read":
		return "read"
	}
	return "none"
}

func (s *Server) getPermission(c *reqCtx, r *repo) response {
	login := c.param("username")
	role, ok := r.perms[login]
	if !ok {
		role = "none"
	}
	user := s.userJSON(login, "User")
	user["role_name"] = role
	return response{status: http.StatusOK, body: obj{"permission": legacyPermission(role), "role_name": role, "user": user}}
}

func (s *Server) getContent(c *reqCtx, r *repo) response {
	p := strings.Trim(c.param("path"), "/")
	ref := c.r.URL.Query().Get("ref")
	if ref == "" {
		ref = r.defaultBranch
	}
	files, ok := r.filesAt(ref)
	if !ok {
		return errorResponse(http.StatusNotFound, "No commit found for the ref "+ref)
	}
	f, ok := files[p]
	if !ok {
		return notFound()
	}
	return response{status: http.StatusOK, body: s.contentFileJSON(r, p, ref, f)}
}

func (s *Server) tarballRedirect(c *reqCtx, r *repo) response {
	ref := c.param("ref")
	if _, ok := r.filesAt(ref); !ok {
		return notFound()
	}
	tok := randHex(16)
	s.downloads[tok] = download{owner: r.owner, repo: r.name, ref: ref, expires: time.Now().Add(5 * time.Minute)}
	loc := fmt.Sprintf("%s%s%s/%s/legacy.tar.gz/%s?token=%s", s.WebURL, codeloadPrefix, url.PathEscape(r.owner), url.PathEscape(r.name), ref, tok)
	h := http.Header{}
	h.Set("Location", loc)
	return response{status: http.StatusFound, header: h}
}

// paginate serves one page of items by page/per_page with GitHub's Link
// header.
func (s *Server) paginate(c *reqCtx, items []any) ([]any, http.Header) {
	q := c.r.URL.Query()
	perPage := perPageOf(q)
	page, _ := strconv.Atoi(q.Get("page"))
	if page < 1 {
		page = 1
	}
	last := max(1, (len(items)+perPage-1)/perPage)
	start := min((page-1)*perPage, len(items))
	end := min(start+perPage, len(items))
	h := http.Header{}
	link := func(p int, rel string) string {
		q2 := url.Values{}
		for k, v := range q {
			q2[k] = v
		}
		q2.Set("page", strconv.Itoa(p))
		q2.Set("per_page", strconv.Itoa(perPage))
		return fmt.Sprintf(`<%s%s?%s>; rel="%s"`, s.WebURL, c.r.URL.Path, q2.Encode(), rel)
	}
	var links []string
	if page < last {
		links = append(links, link(page+1, "next"), link(last, "last"))
	}
	if page > 1 {
		links = append(links, link(1, "first"), link(page-1, "prev"))
	}
	if len(links) > 0 {
		h.Set("Link", strings.Join(links, ", "))
	}
	return append([]any{}, items[start:end]...), h
}

func perPageOf(q url.Values) int {
	n, err := strconv.Atoi(q.Get("per_page"))
	if err != nil || n < 1 {
		return 30
	}
	return min(n, 100)
}

// gitBlobSHA is the SHA git gives a blob with this content.
func gitBlobSHA(b []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(b))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}
