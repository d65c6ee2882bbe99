package githubtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// serveCodeload serves the archive a tarball redirect points at, as
// codeload.github.com does: authenticated by the short-lived token in the
// query, not by the caller's credentials (which must not follow the
// redirect to another host).
func (s *Server) serveCodeload(w http.ResponseWriter, r *http.Request, start time.Time) {
	call := Call{Time: start, Method: r.Method, Path: r.URL.Path, Operation: "codeload", Auth: "none"}
	if r.Header.Get("Authorization") != "" {
		s.t.Errorf("githubtest: the archive download %s was sent with an Authorization header; the redirect target authenticates by the token in its URL and is another host, so the bot's credentials must not be forwarded to it", r.URL.Path)
	}
	if f, ok := s.takeFault(r.Method, r.URL.Path, ""); ok {
		if s.stall(w, r, call, f) {
			return
		}
		if f.Status != 0 {
			s.record(call, f.Status, true)
			http.Error(w, http.StatusText(f.Status), f.Status)
			return
		}
	}
	s.mu.Lock()
	dl, ok := s.downloads[r.URL.Query().Get("token")]
	var rp *repo
	if ok {
		rp = s.findRepo(dl.owner, dl.repo)
	}
	var files map[string]file
	var sha string
	if rp != nil && time.Now().Before(dl.expires) {
		files, ok = rp.filesAt(dl.ref)
		sha = rp.resolve(dl.ref)
	} else {
		ok = false
	}
	s.mu.Unlock()
	if !ok {
		s.record(call, http.StatusNotFound, false)
		http.Error(w, "404: Not Found", http.StatusNotFound)
		return
	}
	top := tarballTop(dl.owner, dl.repo, sha)
	b, err := buildTarball(top, sha, files)
	if err != nil {
		s.t.Errorf("githubtest: build tarball: %v", err)
		s.record(call, http.StatusInternalServerError, false)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.record(call, http.StatusOK, false)
	w.Header().Set("Content-Type", "application/x-gzip")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%s.tar.gz", top))
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	_, _ = w.Write(b)
}

// Tarball packs files (path → content) the way GitHub's tarball endpoint
// serves owner/repo at commit sha, for tests of code that unpacks releases
// without a server to fetch them from.
func Tarball(owner, repo, sha string, files map[string]string) ([]byte, error) {
	return buildTarball(tarballTop(owner, repo, sha), sha, textFiles(files))
}

// tarballTop is the directory GitHub puts a tarball's files in.
func tarballTop(owner, repo, sha string) string { return owner + "-" + repo + "-" + sha[:7] }

// buildTarball makes a gzip tarball laid out as GitHub's: a pax global
// header carrying the commit SHA, then everything below one directory
// named owner-repo-sha7/.
func buildTarball(top, sha string, files map[string]file) ([]byte, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	mtime := time.Unix(1700000000, 0)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": sha}, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	dirs := map[string]bool{}
	writeDir := func(d string) error {
		if dirs[d] {
			return nil
		}
		dirs[d] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: top + "/" + d, Mode: 0o775, ModTime: mtime, Format: tar.FormatPAX})
	}
	if err := writeDir(""); err != nil {
		return nil, err
	}
	for _, p := range paths {
		parts := strings.Split(p, "/")
		for i := 1; i < len(parts); i++ {
			if err := writeDir(strings.Join(parts[:i], "/") + "/"); err != nil {
				return nil, err
			}
		}
		f := files[p]
		mode := int64(0o664)
		if f.mode&0o111 != 0 {
			mode = 0o775
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: top + "/" + p, Mode: mode, Size: int64(len(f.data)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// manifestKeys are the keys GitHub documents for an App manifest.
var manifestKeys = map[string]bool{
	"name": true, "url": true, "hook_attributes": true, "redirect_url": true, "callback_urls": true,
	"setup_url": true, "description": true, "public": true, "default_events": true, "default_permissions": true,
	"request_oauth_on_install": true, "setup_on_update": true,
}

// serveWeb handles the browser side of the App-manifest flow: the form post
// to /settings/apps/new (or /organizations/ORG/settings/apps/new), which on
// github.com asks the user to confirm and then redirects to the manifest's
// redirect_url with a code and the state. It reports whether it handled r.
func (s *Server) serveWeb(w http.ResponseWriter, r *http.Request, body []byte) bool {
	owner := ""
	switch {
	case r.URL.Path == "/settings/apps/new":
		owner = "octocat"
	case strings.HasPrefix(r.URL.Path, "/organizations/") && strings.HasSuffix(r.URL.Path, "/settings/apps/new"):
		owner = strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/organizations/"), "/settings/apps/new")
		if owner == "" || strings.Contains(owner, "/") {
			return false
		}
	default:
		return false
	}
	call := Call{Time: time.Now(), Method: r.Method, Path: r.URL.Path, Operation: "web/create-app-from-manifest", Auth: "none"}
	fail := func(format string, args ...any) bool {
		msg := fmt.Sprintf(format, args...)
		s.t.Errorf("githubtest: App manifest form: %s", msg)
		s.record(call, http.StatusUnprocessableEntity, false)
		http.Error(w, msg, http.StatusUnprocessableEntity)
		return true
	}
	if r.Method != http.MethodPost {
		return fail("%s %s: GitHub expects the manifest as a form POST", r.Method, r.URL.Path)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return fail("form body: %v", err)
	}
	raw := form.Get("manifest")
	if raw == "" {
		return fail("no manifest field in the form")
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return fail("manifest is not a JSON object: %v", err)
	}
	var unknown []string
	for k := range m {
		if !manifestKeys[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fail("manifest has keys GitHub does not know: %s", strings.Join(unknown, ", "))
	}
	if u, _ := m["url"].(string); !absoluteURL(u) {
		return fail("manifest url %q must be an absolute URL", u)
	}
	if ha, ok := m["hook_attributes"].(map[string]any); ok && ha["active"] != false {
		if u, _ := ha["url"].(string); !absoluteURL(u) {
			return fail("manifest hook_attributes.url %q must be an absolute URL", u)
		}
	}
	redirect, _ := m["redirect_url"].(string)
	if !absoluteURL(redirect) {
		return fail("manifest redirect_url %q must be an absolute URL, or GitHub cannot send the code back", redirect)
	}
	code := randHex(10)
	s.mu.Lock()
	s.manifestCodes[code] = &manifestCode{manifest: m, owner: owner}
	s.mu.Unlock()
	u, _ := url.Parse(redirect)
	q := u.Query()
	q.Set("code", code)
	if st := r.URL.Query().Get("state"); st != "" {
		q.Set("state", st)
	}
	u.RawQuery = q.Encode()
	s.record(call, http.StatusFound, false)
	http.Redirect(w, r, u.String(), http.StatusFound)
	return true
}

func absoluteURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
