package store

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shipbot/shipbot/internal/store/record"
	"github.com/shipbot/shipbot/internal/testenv"
)

// TestAcquireLockSentTwice: go-redis sends a command again after a network
// error, and Redis may have run the first (killed after its AOF write,
// before answering). The same AcquireLock attempt arriving twice must get
// its lock both times, not "held by someone else"; another attempt, of the
// same holder or not, must not.
func TestAcquireLockSentTwice(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { client.Close() })
	r := NewRedis(client, "shipbot")
	ctx := context.Background()
	env := record.EnvKey{Repo: "octo-org/hello-world", Name: "production"}
	keys := []string{r.key("lock", env.String()), r.key("fence", env.String())}
	ttl := (10 * time.Second).Milliseconds()

	first, err := r.scripts.acquire.Run(ctx, client, keys, "worker-1", ttl, "attempt-a").Int64()
	if err != nil || first == 0 {
		t.Fatalf("first send: token %d, %v", first, err)
	}
	again, err := r.scripts.acquire.Run(ctx, client, keys, "worker-1", ttl, "attempt-a").Int64()
	if err != nil || again != first {
		t.Fatalf("the same attempt sent again: token %d, %v; want %d", again, err, first)
	}
	for _, other := range []struct{ holder, attempt string }{{"worker-1", "attempt-b"}, {"worker-2", "attempt-a2"}} {
		if tok, err := r.scripts.acquire.Run(ctx, client, keys, other.holder, ttl, other.attempt).Int64(); err != nil || tok != 0 {
			t.Errorf("another attempt (%s, %s): token %d, %v; want 0 (held)", other.holder, other.attempt, tok, err)
		}
	}
	// The lease the retried attempt got is the lease: renew and release work.
	l := record.Lease{Env: env, Holder: "worker-1", Token: first}
	if err := r.RenewLock(ctx, l, 10*time.Second); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if err := r.ReleaseLock(ctx, l); err != nil {
		t.Fatalf("release: %v", err)
	}
	if _, ok, err := r.AcquireLock(ctx, env, "worker-2", 10*time.Second); err != nil || !ok {
		t.Fatalf("after release: ok %v, %v", ok, err)
	}
}
