package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// fileBackend keeps every secret in DATA_DIR/secrets.json (mode 0600),
// apart from the embedded store's bbolt files, which one running bot holds
// open with an exclusive lock: `bot secrets` must be able to write while
// `bot serve` runs. A write takes an flock on DATA_DIR/secrets.lock, reads
// the file, and replaces it whole (temporary file, fsync, rename, fsync of
// the directory), so concurrent writers, in one process or several, never
// lose each other's entries and a reader sees the old file or the new one,
// never half of one. Reads take no lock and read the file afresh.
type fileBackend struct {
	dir, path, lock string
}

// fileName and lockName are the files in DATA_DIR.
const (
	fileName = "secrets.json"
	lockName = "secrets.lock"
)

func newFileBackend(dir string) *fileBackend {
	return &fileBackend{dir: dir, path: filepath.Join(dir, fileName), lock: filepath.Join(dir, lockName)}
}

// secretsFile is the JSON document.
type secretsFile struct {
	Secrets []entry `json:"secrets"`
}

func (f *fileBackend) read() ([]entry, error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s cannot be read (%v): give the bot's user read access to it", f.path, unwrapPath(err))
	}
	var doc secretsFile
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s is not a secrets file (%v): restore it from a backup, or move it away and set the secrets again", f.path, err)
	}
	return doc.Secrets, nil
}

func (f *fileBackend) find(entries []entry, id ID) int {
	k := id.key()
	for i, e := range entries {
		if e.id().key() == k {
			return i
		}
	}
	return -1
}

func (f *fileBackend) get(_ context.Context, id ID) (entry, bool, error) {
	entries, err := f.read()
	if err != nil {
		return entry{}, false, err
	}
	if i := f.find(entries, id); i >= 0 {
		return entries[i], true, nil
	}
	return entry{}, false, nil
}

func (f *fileBackend) list(_ context.Context, repo string) ([]entry, error) {
	entries, err := f.read()
	if err != nil {
		return nil, err
	}
	k := ID{Repo: repo}.key().Repo
	var out []entry
	for _, e := range entries {
		if e.id().key().Repo == k {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fileBackend) some(context.Context) (bool, error) {
	entries, err := f.read()
	return len(entries) > 0, err
}

func (f *fileBackend) where() string { return f.path }

func (f *fileBackend) put(_ context.Context, e entry) error {
	return f.update(func(entries []entry) ([]entry, bool) {
		if i := f.find(entries, e.id()); i >= 0 {
			entries[i] = e
			return entries, true
		}
		return append(entries, e), true
	})
}

func (f *fileBackend) remove(_ context.Context, id ID) (bool, error) {
	found := false
	err := f.update(func(entries []entry) ([]entry, bool) {
		i := f.find(entries, id)
		if i < 0 {
			return entries, false
		}
		found = true
		return append(entries[:i], entries[i+1:]...), true
	})
	return found, err
}

// update changes the file under the lock; change reports whether there is
// anything to write.
func (f *fileBackend) update(change func([]entry) ([]entry, bool)) error {
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return fmt.Errorf("DATA_DIR=%s cannot be created (%v): point it at a writable directory", f.dir, unwrapPath(err))
	}
	unlock, err := f.lockFile()
	if err != nil {
		return err
	}
	defer unlock()
	entries, err := f.read()
	if err != nil {
		return err
	}
	entries, write := change(entries)
	if !write {
		return nil
	}
	b, err := json.MarshalIndent(secretsFile{Secrets: entries}, "", "  ")
	if err != nil {
		return err
	}
	if err := f.replace(append(b, '\n')); err != nil {
		return fmt.Errorf("%s cannot be written (%v): give the bot's user write access to DATA_DIR and check the disk has room", f.path, unwrapPath(err))
	}
	return nil
}

// lockFile takes the exclusive flock every writer takes; unlock releases it.
func (f *fileBackend) lockFile() (unlock func(), err error) {
	lf, err := os.OpenFile(f.lock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s cannot be opened (%v): give the bot's user write access to DATA_DIR", f.lock, unwrapPath(err))
	}
	for {
		err = syscall.Flock(int(lf.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		lf.Close()
		return nil, fmt.Errorf("%s cannot be locked (%v): DATA_DIR must be on a local file system", f.lock, err)
	}
	return func() { lf.Close() }, nil // closing the descriptor releases the lock
}

// replace writes b to a temporary file beside the secrets file and renames
// it over it, syncing both the file and the directory.
func (f *fileBackend) replace(b []byte) error {
	tmp, err := os.CreateTemp(f.dir, "."+fileName+".*") // mode 0600
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename, nothing to remove
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return err
	}
	d, err := os.Open(f.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
