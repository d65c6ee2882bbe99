package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/shipbot/shipbot/internal/store/record"
	bolt "go.etcd.io/bbolt"
)

// The audit log in the embedded file, beside the buckets listed there.
var (
	bucketAudit      = []byte("audit")       // entry ID -> the entry's JSON (without its ID); its sequence numbers IDs
	bucketAuditRepos = []byte("audit-repos") // per repo: entry ID -> nothing
)

// AppendAudit adds e to the audit log and returns it as kept, with its ID
// and At (now, when zero). The log is append-only: entries are never
// changed, and each append first removes up to a hundred entries older
// than record.AuditRetention.
func (e *Embedded) AppendAudit(ctx context.Context, entry record.AuditEntry) (record.AuditEntry, error) {
	now := time.Now()
	if err := prepareAudit(&entry, now); err != nil {
		return record.AuditEntry{}, err
	}
	err := e.update(ctx, "append audit", func(tx *bolt.Tx) error {
		return appendAuditTx(tx, &entry, auditCutoff(now))
	})
	if err != nil {
		return record.AuditEntry{}, err
	}
	return entry, nil
}

// appendAuditTx trims, then writes entry (prepared) and sets its ID.
func appendAuditTx(tx *bolt.Tx, entry *record.AuditEntry, cutoff string) error {
	log, repos := tx.Bucket(bucketAudit), tx.Bucket(bucketAuditRepos)
	if err := trimAudit(log, repos, cutoff); err != nil {
		return err
	}
	seq, err := log.NextSequence()
	if err != nil {
		return err
	}
	blob, err := json.Marshal(entry)
	if err != nil {
		return err
	}
	id := []byte(auditID(entry.At, seq))
	if err := log.Put(id, blob); err != nil {
		return err
	}
	if entry.Repo != "" {
		index, err := repos.CreateBucketIfNotExists([]byte(entry.Repo))
		if err != nil {
			return err
		}
		if err := index.Put(id, nil); err != nil {
			return err
		}
	}
	entry.ID = string(id)
	return nil
}

// trimAudit removes up to auditTrimBatch entries with IDs below cutoff.
func trimAudit(log, repos *bolt.Bucket, cutoff string) error {
	type aged struct{ id, repo []byte }
	var old []aged
	c := log.Cursor()
	for k, v := c.First(); k != nil && len(old) < auditTrimBatch && string(k) < cutoff; k, v = c.Next() {
		var e struct {
			Repo string `json:"repo"`
		}
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("store: audit entry %s: %w", k, err)
		}
		old = append(old, aged{id: bytes.Clone(k), repo: []byte(e.Repo)})
	}
	for _, x := range old {
		if index := repos.Bucket(x.repo); len(x.repo) > 0 && index != nil {
			if err := index.Delete(x.id); err != nil {
				return err
			}
		}
		if err := log.Delete(x.id); err != nil {
			return err
		}
	}
	return nil
}

// ListAudit returns a page of the entries f picks, newest first.
func (e *Embedded) ListAudit(ctx context.Context, f record.AuditFilter) (record.AuditPage, error) {
	return listAudit(ctx, f, e.auditRange)
}

// EachAudit calls fn with every entry f picks (at most f.Limit when set),
// newest first, a thousand at a time, each batch read in a transaction of
// its own: an export of the whole log holds one batch in memory, and a
// slow reader never holds a transaction open.
func (e *Embedded) EachAudit(ctx context.Context, f record.AuditFilter, fn func(record.AuditEntry) error) error {
	return eachAudit(ctx, f, e.auditRange, fn)
}

func (e *Embedded) auditRange(ctx context.Context, repo, lo, hi string, n int) ([]record.AuditEntry, error) {
	out := make([]record.AuditEntry, 0, min(n, auditBatch))
	err := e.view(ctx, "audit", func(tx *bolt.Tx) error {
		log := tx.Bucket(bucketAudit)
		index := log
		if repo != "" {
			if index = tx.Bucket(bucketAuditRepos).Bucket([]byte(repo)); index == nil {
				return nil
			}
		}
		c := index.Cursor()
		var k []byte
		if hi == "" {
			k, _ = c.Last()
		} else if k, _ = c.Seek([]byte(hi)); k == nil {
			k, _ = c.Last() // every ID is below hi
		} else {
			k, _ = c.Prev()
		}
		for ; k != nil && len(out) < n && string(k) >= lo; k, _ = c.Prev() {
			v := log.Get(k)
			if v == nil {
				continue
			}
			var entry record.AuditEntry
			if err := json.Unmarshal(v, &entry); err != nil {
				return fmt.Errorf("store: audit entry %s: %w", k, err)
			}
			entry.ID = string(k)
			out = append(out, entry)
		}
		return nil
	})
	return out, err
}
