// Package redistest is the Redis side of the store's and the queue's
// conformance suites: a real redis-server (testenv.StartRedis) and
// miniredis, each as a Target the suites open clients of and may restart,
// take away or let time pass for. It is a package of its own so that the
// many users of testenv do not link a Redis client and miniredis.
package redistest

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/shipbot/shipbot/internal/testenv"
)

// Target is a Redis server the cases of a conformance suite run against.
type Target struct {
	addr string
	// Restart takes the server away and brings it back with its data; nil
	// when the target cannot (miniredis keeps nothing).
	Restart func()
	// Outage makes the server unreachable for the rest of the case.
	Outage func(t *testing.T)
	// Sleep lets d pass for the server too: miniredis expires keys only
	// when told time moved.
	Sleep func(d time.Duration)
}

// Real starts redis-server for the test: one server that the cases of a
// suite share, telling their data apart by key prefix.
func Real(t *testing.T) *Target {
	srv := testenv.StartRedis(t)
	return &Target{
		addr:    srv.Addr(),
		Restart: srv.Restart,
		Outage:  func(t *testing.T) { srv.Kill(); t.Cleanup(srv.Start) },
		Sleep:   time.Sleep,
	}
}

// Mini starts a miniredis for one case; it is only a faster extra, real
// Redis is the reference.
func Mini(t *testing.T) *Target {
	m := miniredis.RunT(t)
	return &Target{
		addr:   m.Addr(),
		Outage: func(*testing.T) { m.Close() },
		Sleep:  func(d time.Duration) { time.Sleep(d); m.FastForward(d) },
	}
}

// Client returns a client of the target, closed when t ends. It dials once
// per attempt instead of five, which keeps the outage cases short.
func (tg *Target) Client(t *testing.T) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: tg.addr, DialerRetries: 1})
	t.Cleanup(func() { c.Close() })
	return c
}

// MiniLacks runs probe against a fresh miniredis, which does not implement
// all of Redis: probe's error says what it lacks that the code under test
// relies on.
func MiniLacks(probe func(ctx context.Context, c *redis.Client) error) error {
	m, err := miniredis.Run()
	if err != nil {
		return err
	}
	defer m.Close()
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer c.Close()
	return probe(context.Background(), c)
}
