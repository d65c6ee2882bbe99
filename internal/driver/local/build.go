package local

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
	"github.com/shipbot/shipbot/internal/repoconfig"
)

// builtMarker is written (atomically) next to src once a build succeeded:
// its presence is what makes a repeated Prepare a no-op.
const builtMarker = "built"

// maxExtract bounds what one tarball may unpack to.
const maxExtract = 4 << 30

// buildCall is one build under way; concurrent Prepares of the same release
// wait for it instead of building again.
type buildCall struct {
	done chan struct{}
	err  error
	logs *fanout // where its output goes: every waiting caller's log
}

// Prepare fetches the release's source through Source, extracts it into
// DataDir/builds/<owner>/<repo>/<sha>/<vars>/src and runs app.build there
// (sh -c, bounded by BuildTimeout) with the target's variables, streaming
// the output, secret values masked, to log and to build.log. A release built
// before with the same variables is not built again; concurrent calls for
// one share one build. A failed build's error ends with its last lines of
// output and leaves no marker, so the next Prepare builds afresh.
func (d *Driver) Prepare(ctx context.Context, t deploy.Target, r deploy.Release, log io.Writer) error {
	if d.remote != nil {
		return d.remote.call(ctx, "Prepare", callArgs{Target: toWire(t), Release: r}, log, nil)
	}
	ctx, cancel := d.opContext(ctx)
	defer cancel()
	_, err := d.prepare(ctx, t.Repo, t.App, targetVars(t), r, log)
	return err
}

// buildDir is where a release's tree is built with v and where its
// instances with v run: one directory per SHA and set of variables, named
// by varsKey.
func (d *Driver) buildDir(repo, sha string, v appVars) (string, error) {
	if err := validRepo(repo); err != nil {
		return "", err
	}
	if err := validSHA(sha); err != nil {
		return "", err
	}
	owner, name, _ := strings.Cut(repo, "/")
	return filepath.Join(d.opts.DataDir, "builds", owner, name, sha, d.varsKey(v), "src"), nil
}

func (d *Driver) prepare(ctx context.Context, repo string, app repoconfig.App, v appVars, r deploy.Release, log io.Writer) (string, error) {
	if log == nil {
		log = io.Discard
	}
	src, err := d.buildDir(repo, r.SHA, v)
	if err != nil {
		return "", err
	}
	root := filepath.Dir(src)
	if exists(filepath.Join(root, builtMarker)) {
		fmt.Fprintf(log, "%s@%s is built already (%s)\n", repo, short(r.SHA), src)
		return src, nil
	}
	w := &detachable{w: log}
	defer w.detach() // the build may outlive this caller

	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return "", ErrClosed
	}
	if exists(filepath.Join(root, builtMarker)) { // finished meanwhile
		d.mu.Unlock()
		fmt.Fprintf(log, "%s@%s is built already (%s)\n", repo, short(r.SHA), src)
		return src, nil
	}
	c := d.builds[root]
	joined := c != nil
	if !joined {
		c = &buildCall{done: make(chan struct{}), logs: &fanout{}}
		// The caller hears the build from its first line: its log joins
		// before the build starts writing.
		c.logs.add(w)
		d.builds[root] = c
		d.wg.Add(1)
		if r.Repo == "" {
			r.Repo = repo
		}
		go func() {
			defer d.wg.Done()
			err := d.build(root, app, v, r, c.logs)
			d.mu.Lock()
			delete(d.builds, root)
			c.err = err
			close(c.done)
			d.mu.Unlock()
		}()
	}
	if joined {
		c.logs.add(w)
	}
	d.mu.Unlock()
	if joined {
		fmt.Fprintf(log, "%s@%s is being built by another deploy; waiting for that build\n", repo, short(r.SHA))
	}
	select {
	case <-c.done:
		if c.err != nil {
			return "", c.err
		}
		return src, nil
	case <-ctx.Done():
		return "", fmt.Errorf("waiting for the build of %s@%s: %w", repo, short(r.SHA), ctx.Err())
	}
}

// build does one fetch, extract and build of a release in root. It runs on
// the driver's context (bounded by BuildTimeout), not a caller's, so a
// caller giving up does not waste the work of another one waiting.
func (d *Driver) build(root string, app repoconfig.App, v appVars, r deploy.Release, log io.Writer) (err error) {
	ctx, cancel := context.WithTimeout(d.ctx, d.opts.BuildTimeout)
	defer cancel()
	src := filepath.Join(root, "src")
	label := r.Repo + "@" + short(r.SHA)
	start := time.Now()
	if err := os.RemoveAll(src); err != nil {
		return fmt.Errorf("build %s: clearing an old attempt: %w", label, err)
	}
	if err := os.MkdirAll(src, 0o755); err != nil {
		return fmt.Errorf("build %s: %w", label, err)
	}
	logf, err := os.Create(filepath.Join(root, "build.log"))
	if err != nil {
		return fmt.Errorf("build %s: %w", label, err)
	}
	defer logf.Close()
	tail := &tailBuffer{max: 64 << 10}
	// Secret values never reach build.log, the caller's log or the error.
	out := v.maskWriter(io.MultiWriter(logf, tail, log))
	defer func() {
		out.Flush()
		if err != nil {
			_ = os.RemoveAll(src) // nothing half-built stays behind
			fmt.Fprintf(logf, "build failed: %v\n", err)
		}
	}()

	fmt.Fprintf(out, "fetching %s\n", label)
	rc, err := d.opts.Source(ctx, r)
	if err != nil {
		return fmt.Errorf("build %s: fetching the source: %w", label, err)
	}
	n, err := extract(rc, src)
	rc.Close()
	if err != nil {
		return fmt.Errorf("build %s: extracting the source tarball: %w", label, err)
	}
	fmt.Fprintf(out, "extracted %d files into %s\n", n, src)

	if strings.TrimSpace(app.Build) != "" {
		fmt.Fprintf(out, "$ %s\n", app.Build)
		cmd := exec.CommandContext(ctx, "sh", "-c", app.Build)
		cmd.Dir = src
		cmd.Env = d.childEnv(v)
		cmd.Stdout, cmd.Stderr = out, out
		err := d.runCmd(cmd)
		out.Flush()
		if err != nil {
			why := err.Error()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				why = fmt.Sprintf("timed out after %s (BuildTimeout)", d.opts.BuildTimeout)
			} else if d.ctx.Err() != nil {
				why = "stopped: the driver is closing"
			}
			return &BuildError{Release: label, Command: app.Build, Reason: why, Tail: lastLines(tail.String(), 20)}
		}
	}
	if err := writeFileAtomic(filepath.Join(root, builtMarker), []byte(time.Now().UTC().Format(time.RFC3339)+"\n")); err != nil {
		return fmt.Errorf("build %s: marking it built: %w", label, err)
	}
	fmt.Fprintf(out, "built %s in %s\n", label, time.Since(start).Round(time.Millisecond))
	return nil
}

// BuildError is a failed app.build, with the end of its output.
type BuildError struct {
	Release string // owner/repo@sha7
	Command string
	Reason  string // exit status, or timeout
	Tail    string // last lines of output
}

func (e *BuildError) Error() string {
	return fmt.Sprintf("build %s failed: `%s`: %s; last lines of output:\n%s", e.Release, e.Command, e.Reason, e.Tail)
}

// extract unpacks a gzipped tarball as GitHub serves it (every entry under
// one top-level directory, which is stripped) into dst. Entries with
// absolute names or .. components are refused, and every write goes through
// an os.Root, so no symlink in the archive can lead a write outside dst.
func extract(r io.Reader, dst string) (files int, err error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return 0, err
	}
	defer gz.Close()
	root, err := os.OpenRoot(dst)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	tr := tar.NewReader(gz)
	top := ""
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return files, err
		}
		switch h.Typeflag {
		case tar.TypeXGlobalHeader, tar.TypeXHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
			continue // metadata (GitHub's pax header carries the commit id)
		}
		name, err := entryName(h.Name)
		if err != nil {
			return files, err
		}
		first, rest, _ := strings.Cut(name, "/")
		if top == "" {
			top = first
		} else if first != top {
			return files, fmt.Errorf("%q is outside the top-level directory %q: not a tarball as GitHub serves it", h.Name, top)
		}
		if rest == "" {
			if h.Typeflag != tar.TypeDir {
				return files, fmt.Errorf("%q is not under a top-level directory: not a tarball as GitHub serves it", h.Name)
			}
			continue
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(rest, 0o755); err != nil {
				return files, err
			}
		case tar.TypeReg:
			total += h.Size
			if total > maxExtract {
				return files, fmt.Errorf("the tarball unpacks to more than %d bytes", int64(maxExtract))
			}
			if err := root.MkdirAll(path.Dir(rest), 0o755); err != nil {
				return files, err
			}
			mode := os.FileMode(h.Mode).Perm() | 0o600
			f, err := root.OpenFile(rest, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
			if err != nil {
				return files, err
			}
			_, err = io.Copy(f, io.LimitReader(tr, h.Size))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return files, err
			}
			files++
		case tar.TypeSymlink:
			if err := root.MkdirAll(path.Dir(rest), 0o755); err != nil {
				return files, err
			}
			if err := root.Symlink(h.Linkname, rest); err != nil {
				return files, err
			}
		case tar.TypeLink:
			target, err := entryName(h.Linkname)
			if err != nil {
				return files, err
			}
			tfirst, trest, _ := strings.Cut(target, "/")
			if tfirst != top || trest == "" {
				return files, fmt.Errorf("hard link %q points outside the tree", h.Name)
			}
			if err := root.MkdirAll(path.Dir(rest), 0o755); err != nil {
				return files, err
			}
			if err := root.Link(trest, rest); err != nil {
				return files, err
			}
		default:
			// Devices, FIFOs: nothing a build needs.
		}
	}
	if top == "" {
		return 0, errors.New("the tarball is empty")
	}
	return files, nil
}

// entryName checks and cleans a tar entry's name.
func entryName(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\\") || filepath.IsAbs(name) {
		return "", fmt.Errorf("%q: absolute or unusual path in the tarball", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("%q: .. in a path in the tarball", name)
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return "", fmt.Errorf("%q: empty path in the tarball", name)
	}
	return clean, nil
}

func validRepo(repo string) error {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || !safePart(owner) || !safePart(name) {
		return fmt.Errorf("%q is not a repository as owner/name", repo)
	}
	return nil
}

func validSHA(sha string) error {
	if !safePart(sha) {
		return fmt.Errorf("release %q is not a commit SHA", sha)
	}
	return nil
}

// safePart is a name that can be one path component as it is.
func safePart(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 200 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// safeName turns any name (an environment's) into one path component.
func safeName(s string) string {
	if safePart(s) {
		return s
	}
	s = url.PathEscape(s)
	s = strings.ReplaceAll(s, "/", "%2F")
	if s == "." || s == ".." || s == "" {
		s = "_" + s
	}
	return s
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// writeFileAtomic writes a file under a temporary name and renames it into
// place, so a reader never sees it half-written.
func writeFileAtomic(name string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// detachable forwards writes to w until detach; afterwards writes are
// dropped, so a build outliving its caller never writes to the caller's log.
type detachable struct {
	mu sync.Mutex
	w  io.Writer
}

func (d *detachable) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.w != nil {
		_, _ = d.w.Write(p)
	}
	return len(p), nil
}

func (d *detachable) detach() {
	d.mu.Lock()
	d.w = nil
	d.mu.Unlock()
}

// fanout writes to every writer added, each call serialized.
type fanout struct {
	mu sync.Mutex
	ws []io.Writer
}

func (f *fanout) add(w io.Writer) {
	f.mu.Lock()
	f.ws = append(f.ws, w)
	f.mu.Unlock()
}

func (f *fanout) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.ws {
		_, _ = w.Write(p)
	}
	return len(p), nil
}
