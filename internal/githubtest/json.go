package githubtest

import (
	"encoding/base64"
	"fmt"
	"strings"
	"time"
)

// The JSON objects GitHub returns, with every field the REST description
// requires. URLs point at this server.

type obj = map[string]any

func ts(t time.Time) string {
	if t.IsZero() {
		return nowString()
	}
	return t.UTC().Format(time.RFC3339)
}

func tsOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return ts(t)
}

func nodeID(kind string, id int64) string {
	return base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("%s:%d", kind, id)))
}

// userID is a stable id for a login.
func userID(login string) int64 {
	var h int64 = 7
	for _, c := range login {
		h = (h*31 + int64(c)) % 1_000_000_007
	}
	return h
}

func (s *Server) userJSON(login, typ string) obj {
	api := s.URL + "/users/" + login
	id := userID(login)
	return obj{
		"login": login, "id": id, "node_id": nodeID("User", id),
		"avatar_url": s.WebURL + "/avatars/u/" + fmt.Sprint(id), "gravatar_id": "",
		"url": api, "html_url": s.WebURL + "/" + login,
		"followers_url": api + "/followers", "following_url": api + "/following{/other_user}",
		"gists_url": api + "/gists{/gist_id}", "starred_url": api + "/starred{/owner}{/repo}",
		"subscriptions_url": api + "/subscriptions", "organizations_url": api + "/orgs",
		"repos_url": api + "/repos", "events_url": api + "/events{/privacy}",
		"received_events_url": api + "/received_events", "type": typ, "site_admin": false,
	}
}

func (s *Server) botLogin(a *app) string { return a.slug + "[bot]" }

func (s *Server) appJSON(a *app, owner string) obj {
	return obj{
		"id": a.id, "slug": a.slug, "node_id": nodeID("Integration", a.id), "client_id": a.clientID,
		"owner": s.userJSON(owner, "Organization"), "name": a.name, "description": "",
		"external_url": s.WebURL + "/apps/" + a.slug, "html_url": s.WebURL + "/apps/" + a.slug,
		"created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
		"permissions": obj{"checks": "write", "contents": "read", "deployments": "write", "issues": "write", "metadata": "read", "pull_requests": "write"},
		"events":      []string{"check_run", "check_suite", "issue_comment", "pull_request", "push"},
	}
}

func (s *Server) repoAPI(r *repo) string { return s.URL + "/repos/" + r.owner + "/" + r.name }

// minimalRepoJSON has what minimal-repository requires.
func (s *Server) minimalRepoJSON(r *repo) obj {
	api := s.repoAPI(r)
	return obj{
		"id": r.id, "node_id": nodeID("Repository", r.id), "name": r.name, "full_name": r.owner + "/" + r.name,
		"owner": s.userJSON(r.owner, "Organization"), "private": r.private,
		"html_url": s.WebURL + "/" + r.owner + "/" + r.name, "description": nil, "fork": false, "url": api,
		"archive_url": api + "/{archive_format}{/ref}", "assignees_url": api + "/assignees{/user}",
		"blobs_url": api + "/git/blobs{/sha}", "branches_url": api + "/branches{/branch}",
		"collaborators_url": api + "/collaborators{/collaborator}", "comments_url": api + "/comments{/number}",
		"commits_url": api + "/commits{/sha}", "compare_url": api + "/compare/{base}...{head}",
		"contents_url": api + "/contents/{+path}", "contributors_url": api + "/contributors",
		"deployments_url": api + "/deployments", "downloads_url": api + "/downloads", "events_url": api + "/events",
		"forks_url": api + "/forks", "git_commits_url": api + "/git/commits{/sha}", "git_refs_url": api + "/git/refs{/sha}",
		"git_tags_url": api + "/git/tags{/sha}", "issue_comment_url": api + "/issues/comments{/number}",
		"issue_events_url": api + "/issues/events{/number}", "issues_url": api + "/issues{/number}",
		"keys_url": api + "/keys{/key_id}", "labels_url": api + "/labels{/name}", "languages_url": api + "/languages",
		"merges_url": api + "/merges", "milestones_url": api + "/milestones{/number}",
		"notifications_url": api + "/notifications{?since,all,participating}", "pulls_url": api + "/pulls{/number}",
		"releases_url": api + "/releases{/id}", "stargazers_url": api + "/stargazers", "statuses_url": api + "/statuses/{sha}",
		"subscribers_url": api + "/subscribers", "subscription_url": api + "/subscription", "tags_url": api + "/tags",
		"teams_url": api + "/teams", "trees_url": api + "/git/trees{/sha}", "hooks_url": api + "/hooks",
	}
}

// fullRepoJSON has what full-repository requires.
func (s *Server) fullRepoJSON(r *repo) obj {
	o := s.minimalRepoJSON(r)
	host := strings.TrimPrefix(strings.TrimPrefix(s.WebURL, "http://"), "https://")
	web := s.WebURL + "/" + r.owner + "/" + r.name
	extra := obj{
		"git_url": "git://" + host + "/" + r.owner + "/" + r.name + ".git", "ssh_url": "git@" + host + ":" + r.owner + "/" + r.name + ".git",
		"clone_url": web + ".git", "mirror_url": nil, "svn_url": web, "homepage": nil, "language": "Go",
		"forks_count": 0, "stargazers_count": 0, "watchers_count": 0, "size": 1, "default_branch": r.defaultBranch,
		"open_issues_count": 0, "has_issues": true, "has_projects": false, "has_wiki": false, "has_pages": false,
		"has_discussions": false, "archived": false, "disabled": false, "visibility": visibility(r.private),
		"pushed_at": ts(r.created), "created_at": ts(r.created), "updated_at": ts(r.created),
		"subscribers_count": 0, "network_count": 0, "license": nil, "forks": 0, "open_issues": 0, "watchers": 0,
	}
	for k, v := range extra {
		o[k] = v
	}
	return o
}

func visibility(private bool) string {
	if private {
		return "private"
	}
	return "public"
}

func (s *Server) deploymentJSON(r *repo, d *Deployment) obj {
	url := s.repoAPI(r) + fmt.Sprintf("/deployments/%d", d.ID)
	var payload any = ""
	if len(d.Payload) > 0 {
		payload = d.Payload
	}
	return obj{
		"url": url, "id": d.ID, "node_id": nodeID("Deployment", d.ID), "sha": d.SHA, "ref": d.Ref, "task": d.Task,
		"payload": payload, "original_environment": d.Environment, "environment": d.Environment,
		"description": d.Description, "creator": s.userJSON(d.Creator, "Bot"),
		"created_at": ts(d.CreatedAt), "updated_at": ts(d.CreatedAt),
		"statuses_url": url + "/statuses", "repository_url": s.repoAPI(r),
		"transient_environment": d.TransientEnvironment, "production_environment": d.ProductionEnvironment,
	}
}

func (s *Server) deploymentStatusJSON(r *repo, d *Deployment, st DeploymentStatus) obj {
	durl := s.repoAPI(r) + fmt.Sprintf("/deployments/%d", d.ID)
	return obj{
		"url": durl + fmt.Sprintf("/statuses/%d", st.ID), "id": st.ID, "node_id": nodeID("DeploymentStatus", st.ID),
		"state": st.State, "creator": s.userJSON(st.Creator, "Bot"), "description": st.Description,
		"environment": st.Environment, "target_url": st.LogURL, "log_url": st.LogURL, "environment_url": st.EnvironmentURL,
		"created_at": ts(st.CreatedAt), "updated_at": ts(st.CreatedAt),
		"deployment_url": durl, "repository_url": s.repoAPI(r),
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (s *Server) checkRunJSON(r *repo, c *CheckRun) obj {
	url := s.repoAPI(r) + fmt.Sprintf("/check-runs/%d", c.ID)
	a := s.appBySlugLocked(c.AppSlug)
	return obj{
		"id": c.ID, "head_sha": c.HeadSHA, "node_id": nodeID("CheckRun", c.ID), "external_id": c.ExternalID,
		"url": url, "html_url": s.WebURL + "/" + r.owner + "/" + r.name + fmt.Sprintf("/runs/%d", c.ID),
		"details_url": nilIfEmpty(c.DetailsURL), "status": c.Status, "conclusion": nilIfEmpty(c.Conclusion),
		"started_at": tsOrNil(c.StartedAt), "completed_at": tsOrNil(c.CompletedAt),
		"output": obj{
			"title": nilIfEmpty(c.Title), "summary": nilIfEmpty(c.Summary), "text": nilIfEmpty(c.Text),
			"annotations_count": 0, "annotations_url": url + "/annotations",
		},
		"name": c.Name, "check_suite": obj{"id": userID("suite:" + c.HeadSHA + c.AppSlug)},
		"app": s.appJSON(a, r.owner), "pull_requests": []any{},
	}
}

// appBySlugLocked returns the App with slug, or a stand-in for another
// App (CI). s.mu held.
func (s *Server) appBySlugLocked(slug string) *app {
	for _, a := range s.apps {
		if a.slug == slug {
			return a
		}
	}
	return &app{id: userID("app:" + slug), slug: slug, name: slug, clientID: "Iv1." + slug}
}

func (s *Server) commentJSON(r *repo, c *Comment) obj {
	return obj{
		"id": c.ID, "node_id": nodeID("IssueComment", c.ID),
		"url":      s.repoAPI(r) + fmt.Sprintf("/issues/comments/%d", c.ID),
		"html_url": s.WebURL + "/" + r.owner + "/" + r.name + fmt.Sprintf("/pull/%d#issuecomment-%d", c.Number, c.ID),
		"body":     c.Body, "user": s.userJSON(c.User, c.UserType),
		"created_at": ts(c.CreatedAt), "updated_at": ts(c.UpdatedAt),
		"issue_url":          s.repoAPI(r) + fmt.Sprintf("/issues/%d", c.Number),
		"author_association": "NONE",
	}
}

func (s *Server) reactionJSON(re Reaction, userType string) obj {
	return obj{"id": re.ID, "node_id": nodeID("Reaction", re.ID), "user": s.userJSON(re.User, userType), "content": re.Content, "created_at": nowString()}
}

func (s *Server) contentFileJSON(r *repo, path, ref string, f file) obj {
	sha := gitBlobSHA(f.data)
	self := s.repoAPI(r) + "/contents/" + path + "?ref=" + ref
	gitURL := s.repoAPI(r) + "/git/blobs/" + sha
	html := s.WebURL + "/" + r.owner + "/" + r.name + "/blob/" + ref + "/" + path
	name := path[strings.LastIndex(path, "/")+1:]
	return obj{
		"type": "file", "encoding": "base64", "size": len(f.data), "name": name, "path": path,
		"content": wrapBase64(f.data), "sha": sha, "url": self, "git_url": gitURL, "html_url": html,
		"download_url": s.WebURL + "/raw/" + r.owner + "/" + r.name + "/" + ref + "/" + path,
		"_links":       obj{"git": gitURL, "html": html, "self": self},
	}
}

// wrapBase64 encodes as GitHub does: base64 with a newline every 60 chars.
func wrapBase64(b []byte) string {
	enc := base64.StdEncoding.EncodeToString(b)
	var sb strings.Builder
	for len(enc) > 60 {
		sb.WriteString(enc[:60])
		sb.WriteByte('\n')
		enc = enc[60:]
	}
	sb.WriteString(enc)
	sb.WriteByte('\n')
	return sb.String()
}

func (s *Server) commitStatusJSON(r *repo, sha string, st CommitStatus) obj {
	return obj{
		"description": nilIfEmpty(st.Description), "id": st.ID, "node_id": nodeID("StatusContext", st.ID),
		"state": st.State, "context": st.Context, "target_url": nilIfEmpty(st.TargetURL), "avatar_url": nil,
		"url": s.repoAPI(r) + "/statuses/" + sha, "created_at": ts(st.CreatedAt), "updated_at": ts(st.CreatedAt),
	}
}

func deliveryJSON(d *Delivery) obj {
	var action any
	if d.Action != "" {
		action = d.Action
	}
	var inst, repoID any
	if d.InstallationID != 0 {
		inst = d.InstallationID
	}
	if d.RepositoryID != 0 {
		repoID = d.RepositoryID
	}
	return obj{
		"id": d.ID, "guid": d.GUID, "delivered_at": ts(d.DeliveredAt), "redelivery": d.Redelivery,
		"duration": d.Duration, "status": d.Status, "status_code": d.StatusCode, "event": d.Event,
		"action": action, "installation_id": inst, "repository_id": repoID,
	}
}

func (s *Server) installationJSON(in *installation) obj {
	a := s.apps[s.AppID]
	return obj{
		"id": in.id, "account": s.userJSON(in.account, "Organization"), "repository_selection": "all",
		"access_tokens_url": s.URL + fmt.Sprintf("/app/installations/%d/access_tokens", in.id),
		"repositories_url":  s.URL + "/installation/repositories",
		"html_url":          s.WebURL + fmt.Sprintf("/organizations/%s/settings/installations/%d", in.account, in.id),
		"app_id":            a.id, "app_slug": a.slug, "target_id": userID(in.account), "target_type": "Organization",
		"permissions": obj{"checks": "write", "contents": "read", "deployments": "write", "issues": "write", "metadata": "read", "pull_requests": "write"},
		"events":      []string{"check_run", "check_suite", "issue_comment", "pull_request", "push"},
		"created_at":  "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
		"single_file_name": nil, "suspended_by": nil, "suspended_at": nil,
	}
}
