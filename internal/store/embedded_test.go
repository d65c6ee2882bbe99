package store

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/store/record"
	bolt "go.etcd.io/bbolt"
)

// A second bot on the same DATA_DIR must fail with a reason, not hang on
// the file lock.
func TestSecondOpenFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	e, err := OpenEmbedded(path)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	start := time.Now()
	second, err := OpenEmbedded(path)
	if err == nil {
		second.Close()
		t.Fatal("second OpenEmbedded on the same file succeeded")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("second OpenEmbedded took %v to fail", took)
	}
	if !errors.Is(err, record.ErrUnavailable) || !strings.Contains(err.Error(), "in use by another process") {
		t.Errorf("error %q does not say the file is in use", err)
	}
}

// What is left of a lock after a restart is capped by its TTL, so a wall
// clock that stepped back while the process was down cannot stretch it.
func TestReopenedLockNeverOutlivesItsTTL(t *testing.T) {
	ctx := context.Background()
	env := record.EnvKey{Repo: "octo/app", Name: "production"}
	path := filepath.Join(t.TempDir(), "store.db")
	e, err := OpenEmbedded(path)
	if err != nil {
		t.Fatal(err)
	}
	l, ok, err := e.AcquireLock(ctx, env, "a", 200*time.Millisecond)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	e.Close()

	// The file says an hour is left, as it would after the clock went back.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLocks)
		var rec lockRecord
		if err := json.Unmarshal(b.Get([]byte(env.String())), &rec); err != nil {
			return err
		}
		rec.Expires = time.Now().Add(time.Hour).UnixNano()
		blob, _ := json.Marshal(rec)
		return b.Put([]byte(env.String()), blob)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	e, err = OpenEmbedded(path)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, ok, _ := e.AcquireLock(ctx, env, "b", time.Minute); ok {
		t.Fatal("lock free right after reopening")
	}
	if err := e.RenewLock(ctx, l, 200*time.Millisecond); err != nil {
		t.Fatalf("holder lost its lock over a restart: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	b, ok, err := e.AcquireLock(ctx, env, "b", time.Minute)
	if err != nil || !ok {
		t.Fatalf("lock still held past its TTL: %v, %v", ok, err)
	}
	if b.Token <= l.Token {
		t.Errorf("token %d after reopen, want more than %d", b.Token, l.Token)
	}
}
