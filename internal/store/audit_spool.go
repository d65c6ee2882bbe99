package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/shipbot/shipbot/internal/store/record"
	bolt "go.etcd.io/bbolt"
)

// The audit spool is how a process that cannot open the embedded file
// writes to its audit log: `bot secrets`, while a running `bot serve`
// holds the file locked. The writer appends the entry, one JSON line, to
// DATA_DIR/AuditSpoolName under an exclusive flock on that file, and
// fsyncs; the bot that holds the store imports the spool (ImportAuditSpool)
// when it starts and every few seconds, and empties it. A spool written
// while no bot runs waits for the next start.
//
// An import appends the spool's entries and records, in the same bbolt
// transaction, the length and SHA-256 of the spool bytes it imported; it
// empties the spool after. An import that finds the spool still starting
// with exactly those bytes (the bot died between the two steps) skips
// them, so every entry lands once.

// AuditSpoolName is the spool's file name in DATA_DIR.
const AuditSpoolName = "audit-spool.jsonl"

var (
	bucketAuditSpool = []byte("audit-spool") // "imported" -> length (8 bytes) and SHA-256 of the last import
	keySpoolImported = []byte("imported")
)

// SpoolAudit checks e as the log would and appends it to the spool in
// dir; At is set now when zero, so the entry keeps the time of the
// action, not of the import.
func SpoolAudit(dir string, e record.AuditEntry) error {
	if err := prepareAudit(&e, time.Now()); err != nil {
		return err
	}
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("DATA_DIR=%s cannot be created (%v): point it at a writable directory", dir, err)
	}
	path := filepath.Join(dir, AuditSpoolName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("the audit spool %s cannot be opened (%v): give this user write access to DATA_DIR", path, err)
	}
	defer f.Close() // closing releases the lock
	if err := flock(f); err != nil {
		return fmt.Errorf("the audit spool %s cannot be locked (%v): DATA_DIR must be on a local file system", path, err)
	}
	// A writer that died mid-line must not take this entry with it.
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err == nil && last[0] != '\n' {
			line = append([]byte{'\n'}, line...)
		}
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("the audit spool %s cannot be written (%v): check the disk has room", path, err)
	}
	return f.Sync()
}

// ImportAuditSpool moves the entries spooled in dir into the audit log and
// empties the spool; it returns how many it appended. A line that cannot
// be read (a writer that died mid-line) is dropped, and said in the error,
// after the others are imported.
func (e *Embedded) ImportAuditSpool(ctx context.Context, dir string) (int, error) {
	path := filepath.Join(dir, AuditSpoolName)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("the audit spool %s cannot be opened (%v): give the bot's user write access to it", path, err)
	}
	defer f.Close()
	if err := flock(f); err != nil {
		return 0, fmt.Errorf("the audit spool %s cannot be locked (%v): DATA_DIR must be on a local file system", path, err)
	}
	all, err := io.ReadAll(f)
	if err != nil || len(all) == 0 {
		return 0, err
	}
	n, bad, err := e.importSpooled(ctx, all)
	if err != nil {
		return 0, err
	}
	if err := f.Truncate(0); err != nil {
		return n, fmt.Errorf("the audit spool %s cannot be emptied (%v); its entries are in the log and will not be imported twice", path, err)
	}
	if err := f.Sync(); err != nil {
		return n, err
	}
	if bad > 0 {
		return n, fmt.Errorf("the audit spool %s had %d unreadable lines: dropped", path, bad)
	}
	return n, nil
}

// importSpooled appends the entries of the spool's content all that an
// earlier import did not, and records all as imported, in one transaction.
func (e *Embedded) importSpooled(ctx context.Context, all []byte) (n, bad int, err error) {
	mark := spoolMark(all)
	now := time.Now()
	err = e.update(ctx, "import the audit spool", func(tx *bolt.Tx) error {
		n, bad = 0, 0
		b, err := tx.CreateBucketIfNotExists(bucketAuditSpool)
		if err != nil {
			return err
		}
		rest := all
		if prev := b.Get(keySpoolImported); len(prev) == len(mark) {
			if done := binary.BigEndian.Uint64(prev); done <= uint64(len(all)) && bytes.Equal(spoolMark(all[:done]), prev) {
				rest = all[done:]
			}
		}
		for line := range bytes.SplitSeq(rest, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			var entry record.AuditEntry
			if json.Unmarshal(line, &entry) != nil || prepareAudit(&entry, now) != nil {
				bad++
				continue
			}
			if err := appendAuditTx(tx, &entry, auditCutoff(now)); err != nil {
				return err
			}
			n++
		}
		return b.Put(keySpoolImported, mark)
	})
	return n, bad, err
}

// spoolMark is the length of b and its SHA-256.
func spoolMark(b []byte) []byte {
	sum := sha256.Sum256(b)
	return append(binary.BigEndian.AppendUint64(nil, uint64(len(b))), sum[:]...)
}

// flock takes f's exclusive lock, waiting for it.
func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
