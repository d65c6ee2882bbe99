package githubtest

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"
)

// repo is a repository's state.
type repo struct {
	owner, name   string
	id            int64
	defaultBranch string
	installation  int64
	private       bool
	created       time.Time
	branches      map[string]string          // branch → SHA
	files         map[string]map[string]file // ref → path → file
	perms         map[string]string          // login → role
	deployments   []*Deployment
	statuses      map[string][]CommitStatus // SHA → statuses, newest last
	pulls         map[int]*PullRequest      // number → pull request (pulls.go)
	commits       map[string]Commit         // SHA → a commit whose date a test set (commits.go)
	pullCommits   map[int][]string          // number → its commits' SHAs, oldest first, once pushed to (commits.go)
}

type file struct {
	data []byte
	mode fs.FileMode
}

// Deployment is a deployment the bot created, with its statuses in order.
type Deployment struct {
	ID                    int64
	Owner, Repo           string
	Ref, SHA, Task        string
	Environment           string
	Description           string
	Payload               json.RawMessage // as sent; nil if none
	AutoMerge             *bool           // as sent; nil if omitted (GitHub's default is true)
	RequiredContexts      []string        // as sent; nil if omitted (GitHub then checks every context)
	TransientEnvironment  bool
	ProductionEnvironment bool
	Creator               string
	CreatedAt             time.Time
	Statuses              []DeploymentStatus
}

// LastState is the state of the latest status ("" if none).
func (d Deployment) LastState() string {
	if len(d.Statuses) == 0 {
		return ""
	}
	return d.Statuses[len(d.Statuses)-1].State
}

// DeploymentStatus is one status of a Deployment.
type DeploymentStatus struct {
	ID             int64
	State          string
	Description    string
	EnvironmentURL string
	LogURL         string
	Environment    string
	AutoInactive   *bool // as sent; nil if omitted (GitHub's default is true)
	Creator        string
	CreatedAt      time.Time
}

// CheckRun is a check run on a commit: the bot's, or one set by a test with
// AddCheckRun to stand for CI.
type CheckRun struct {
	ID          int64
	Owner, Repo string
	Name        string
	HeadSHA     string
	Status      string // queued, in_progress, completed
	Conclusion  string
	DetailsURL  string
	ExternalID  string
	Title       string
	Summary     string
	Text        string
	StartedAt   time.Time
	CompletedAt time.Time
	AppSlug     string // the App that owns it; the server's App for the bot's runs
	Updates     int    // PATCH requests it received
}

// Comment is an issue or pull-request comment.
type Comment struct {
	ID          int64
	Owner, Repo string
	Number      int
	User        string
	UserType    string // "User" or "Bot"
	Body        string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	Edits       int
	Reactions   []Reaction
}

// Reaction is a reaction to a comment.
type Reaction struct {
	ID      int64
	Content string
	User    string
}

// CommitStatus is a commit status (the older statuses API CI may use).
type CommitStatus struct {
	ID          int64
	Context     string
	State       string // error, failure, pending, success
	Description string
	TargetURL   string
	CreatedAt   time.Time
}

// Delivery is one attempt to deliver a webhook, as GET /app/hook/deliveries
// lists it: a GUID that was redelivered has several.
type Delivery struct {
	ID             int64
	GUID           string
	Event, Action  string
	StatusCode     int    // the bot's answer; 0 for a timeout
	Status         string // "OK" for a 2xx, else a reason; set from StatusCode if empty
	Redelivery     bool
	DeliveredAt    time.Time // now if zero
	Duration       float64
	InstallationID int64
	RepositoryID   int64
}

// ConvertedApp is an App registered through the manifest flow.
type ConvertedApp struct {
	ID                     int64
	Slug, Name             string
	ClientID, ClientSecret string
	WebhookSecret          string
	PEM                    string
	Owner                  string         // the user or organization it was registered for
	Manifest               map[string]any // as posted to the web form (nil if the code came from NewManifestCode)
}

func repoKey(owner, name string) string { return owner + "/" + name }

// repoLocked returns the repository, creating it with defaults. s.mu held.
func (s *Server) repoLocked(owner, name string) *repo {
	k := repoKey(owner, name)
	r := s.repos[k]
	if r == nil {
		r = &repo{
			owner: owner, name: name, id: s.newID(), defaultBranch: "main",
			installation: s.InstallationID, created: time.Now().UTC(),
			branches: map[string]string{}, files: map[string]map[string]file{},
			perms: map[string]string{}, statuses: map[string][]CommitStatus{},
		}
		s.repos[k] = r
	}
	return r
}

func (s *Server) findRepo(owner, name string) *repo { return s.repos[repoKey(owner, name)] }

// RepoOptions are a repository's settings for AddRepo.
type RepoOptions struct {
	DefaultBranch string // "main" if empty
	Installation  int64  // the installation that has access; the server's if 0
	Private       bool
}

// AddRepo creates (or updates) a repository. The setters below create the
// repositories they name too; requests for a repository never created are
// answered 404 as GitHub would.
func (s *Server) AddRepo(owner, name string, o RepoOptions) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repoLocked(owner, name)
	if o.DefaultBranch != "" {
		r.defaultBranch = o.DefaultBranch
	}
	if o.Installation != 0 {
		r.installation = o.Installation
	}
	r.private = o.Private
}

// AddInstallation adds an installation of the server's App on account.
func (s *Server) AddInstallation(id int64, account string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.installations[id] = &installation{id: id, appID: s.AppID, account: account}
}

// SetBranch points branch at sha (files set for either ref are found by
// both).
func (s *Server) SetBranch(owner, name, branch, sha string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repoLocked(owner, name).branches[branch] = sha
}

// SetFile sets one file's content at ref (a branch or a SHA).
func (s *Server) SetFile(owner, name, ref, path string, content []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repoLocked(owner, name)
	if r.files[ref] == nil {
		r.files[ref] = map[string]file{}
	}
	r.files[ref][path] = file{data: append([]byte(nil), content...), mode: 0o644}
}

// SetFiles replaces the tree at ref with files (path → content).
func (s *Server) SetFiles(owner, name, ref string, files map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repoLocked(owner, name).files[ref] = textFiles(files)
}

// textFiles are files given as path → content: regular, not executable.
func textFiles(files map[string]string) map[string]file {
	m := make(map[string]file, len(files))
	for p, c := range files {
		m[p] = file{data: []byte(c), mode: 0o644}
	}
	return m
}

// SetTree replaces the tree at ref with the regular files below dir (modes
// kept, so executables stay executable in the tarball).
func (s *Server) SetTree(owner, name, ref, dir string) error {
	m := map[string]file{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		m[filepath.ToSlash(rel)] = file{data: b, mode: info.Mode().Perm()}
		return nil
	})
	if err != nil {
		return fmt.Errorf("githubtest: SetTree %s: %w", dir, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repoLocked(owner, name).files[ref] = m
	return nil
}

// SetPermission gives login a role on the repository: admin, maintain,
// write, triage, read or none. Logins never set have none.
func (s *Server) SetPermission(owner, name, login, role string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repoLocked(owner, name).perms[login] = role
}

// AddComment adds a comment by a person (type User) to issue or pull request
// number and returns its id.
func (s *Server) AddComment(owner, name string, number int, login, body string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repoLocked(owner, name)
	now := time.Now().UTC()
	c := &Comment{ID: s.newID(), Owner: owner, Repo: name, Number: number, User: login, UserType: "User", Body: body, CreatedAt: now, UpdatedAt: now}
	s.comments[c.ID] = c
	return c.ID
}

// AddCheckRun adds a check run owned by another App (AppSlug, "ci" if
// empty), as CI would, and returns its id.
func (s *Server) AddCheckRun(owner, name string, run CheckRun) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repoLocked(owner, name)
	run.ID, run.Owner, run.Repo = s.newID(), owner, name
	if run.AppSlug == "" {
		run.AppSlug = "ci"
	}
	if run.Status == "" {
		run.Status = "completed"
	}
	if run.StartedAt.IsZero() {
		run.StartedAt = time.Now().UTC()
	}
	c := run
	s.checkRuns[run.ID] = &c
	return run.ID
}

// CompleteCheckRun completes check run id with conclusion, as CI would
// when it finishes.
func (s *Server) CompleteCheckRun(id int64, conclusion string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.checkRuns[id]; c != nil {
		c.Status, c.Conclusion, c.CompletedAt = "completed", conclusion, time.Now().UTC()
	}
}

// SetCommitStatus adds a commit status on sha.
func (s *Server) SetCommitStatus(owner, name, sha string, st CommitStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repoLocked(owner, name)
	st.ID = s.newID()
	if st.CreatedAt.IsZero() {
		st.CreatedAt = time.Now().UTC()
	}
	r.statuses[sha] = append(r.statuses[sha], st)
}

// AddDelivery records a delivery attempt of the App's webhook and returns
// its id.
func (s *Server) AddDelivery(d Delivery) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addDeliveryLocked(d)
}

func (s *Server) addDeliveryLocked(d Delivery) int64 {
	d.ID = s.newID()
	if d.DeliveredAt.IsZero() {
		d.DeliveredAt = time.Now().UTC()
	}
	if d.Status == "" {
		d.Status = deliveryStatus(d.StatusCode)
	}
	if d.Event == "" {
		d.Event = "ping"
	}
	s.deliveries = append(s.deliveries, &d)
	return d.ID
}

func deliveryStatus(code int) string {
	switch {
	case code == 0:
		return "timed out"
	case code >= 200 && code < 300:
		return "OK"
	}
	return fmt.Sprintf("Invalid HTTP Response: %d", code)
}

// OnRedeliver sets a function called (in its own goroutine) for each
// redelivery the App requests; it returns the status code the bot answered,
// recorded on the new attempt. Without one, redeliveries succeed with 200.
func (s *Server) OnRedeliver(f func(Delivery) int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onRedeliver = f
}

// NewManifestCode returns a one-time code as GitHub's App-manifest flow
// hands to the redirect URL; POST /app-manifests/{code}/conversions
// exchanges it. The web form at WebURL/settings/apps/new issues codes too.
func (s *Server) NewManifestCode() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	code := randHex(10)
	s.manifestCodes[code] = &manifestCode{}
	return code
}

// Deployments returns the repository's deployments, oldest first.
func (s *Server) Deployments(owner, name string) []Deployment {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.findRepo(owner, name)
	if r == nil {
		return nil
	}
	out := make([]Deployment, 0, len(r.deployments))
	for _, d := range r.deployments {
		c := *d
		c.Statuses = append([]DeploymentStatus(nil), d.Statuses...)
		out = append(out, c)
	}
	return out
}

// CheckRuns returns the repository's check runs, oldest first.
func (s *Server) CheckRuns(owner, name string) []CheckRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []CheckRun
	for _, c := range s.checkRuns {
		if c.Owner == owner && c.Repo == name {
			out = append(out, *c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// CheckRun returns one check run.
func (s *Server) CheckRun(id int64) (CheckRun, bool) {
	return copyOf(s, s.checkRuns, id, func(c *CheckRun) CheckRun { return *c })
}

// copyOf returns a copy, made by cp, of the thing with this id in m, one
// of s's maps.
func copyOf[T any](s *Server, m map[int64]*T, id int64, cp func(*T) T) (T, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := m[id]
	if !ok {
		var zero T
		return zero, false
	}
	return cp(v), true
}

// Comments returns the comments on issue or pull request number, oldest
// first.
func (s *Server) Comments(owner, name string, number int) []Comment {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commentsLocked(owner, name, number)
}

func (s *Server) commentsLocked(owner, name string, number int) []Comment {
	var out []Comment
	for _, c := range s.comments {
		if c.Owner == owner && c.Repo == name && c.Number == number {
			out = append(out, c.copy())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Comment returns one comment.
func (s *Server) Comment(id int64) (Comment, bool) {
	return copyOf(s, s.comments, id, (*Comment).copy)
}

// copy is c with reactions of its own.
func (c *Comment) copy() Comment {
	cc := *c
	cc.Reactions = append([]Reaction(nil), c.Reactions...)
	return cc
}

// Deliveries returns every delivery attempt, oldest first.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Delivery, 0, len(s.deliveries))
	for _, d := range s.deliveries {
		out = append(out, *d)
	}
	return out
}

// Redeliveries returns the ids of the deliveries the App asked to redeliver,
// in order.
func (s *Server) Redeliveries() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.redeliveries...)
}

// ConvertedApps returns the Apps created through the manifest flow.
func (s *Server) ConvertedApps() []ConvertedApp {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ConvertedApp(nil), s.converted...)
}

var shaRe = regexp.MustCompile(`^[0-9a-f]{40}$`)

// resolveLocked turns a ref into a SHA: a branch's SHA, a SHA itself, or a
// stable made-up SHA for anything else.
func (r *repo) resolve(ref string) string {
	if sha, ok := r.branches[ref]; ok {
		return sha
	}
	if shaRe.MatchString(ref) {
		return ref
	}
	sum := sha1.Sum([]byte(r.owner + "/" + r.name + "@" + ref))
	return hex.EncodeToString(sum[:])
}

// filesAt returns the tree at ref: set for that ref, or for the SHA its
// branch points at, or for a branch pointing at it.
func (r *repo) filesAt(ref string) (map[string]file, bool) {
	if m, ok := r.files[ref]; ok {
		return m, true
	}
	if sha, ok := r.branches[ref]; ok {
		if m, ok := r.files[sha]; ok {
			return m, true
		}
	}
	for b, sha := range r.branches {
		if sha == ref {
			if m, ok := r.files[b]; ok {
				return m, true
			}
		}
	}
	return nil, false
}
