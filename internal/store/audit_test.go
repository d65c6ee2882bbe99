package store

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shipbot/shipbot/internal/store/record"
	"github.com/shipbot/shipbot/internal/testenv"
	bolt "go.etcd.io/bbolt"
)

// Reads skip an index entry whose entry is gone, so the conformance suite
// cannot see a trim that leaves one behind; this looks inside.
func TestAuditTrimLeavesNoIndexBehind(t *testing.T) {
	ctx := context.Background()
	aged := record.AuditEntry{At: time.Now().Add(-record.AuditRetention - time.Hour), Actor: "octocat", Repo: "octo/other",
		Env: "production", Action: record.ActionLock, Outcome: record.OutcomeSuccess}
	fresh := record.AuditEntry{Actor: "octocat", Repo: "octo/app", Action: record.ActionUnlock, Outcome: record.OutcomeSuccess}

	t.Run("redis", func(t *testing.T) {
		srv := testenv.StartRedis(t)
		client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		defer client.Close()
		s := NewRedis(client, "trim")
		for _, e := range []record.AuditEntry{aged, fresh} {
			if _, err := s.AppendAudit(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		for key, want := range map[string]int64{
			s.key("audit", "repo", "octo/other"): 0, s.key("audit", "all"): 1, s.key("audit", "repo", "octo/app"): 1,
		} {
			if n := client.ZCard(ctx, key).Val(); n != want {
				t.Errorf("%s holds %d IDs, want %d", key, n, want)
			}
		}
		if n := client.HLen(ctx, s.key("audit", "entries")).Val(); n != 1 {
			t.Errorf("%d entries kept, want 1", n)
		}
	})

	t.Run("embedded", func(t *testing.T) {
		e, err := OpenEmbedded(t.TempDir() + "/store.db")
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		for _, x := range []record.AuditEntry{aged, fresh} {
			if _, err := e.AppendAudit(ctx, x); err != nil {
				t.Fatal(err)
			}
		}
		err = e.db.View(func(tx *bolt.Tx) error {
			repos := tx.Bucket(bucketAuditRepos)
			if n := repos.Bucket([]byte("octo/other")).Stats().KeyN; n != 0 {
				t.Errorf("octo/other's index holds %d IDs, want 0", n)
			}
			if n := tx.Bucket(bucketAudit).Stats().KeyN; n != 1 {
				t.Errorf("%d entries kept, want 1", n)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
