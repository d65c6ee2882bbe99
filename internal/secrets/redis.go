package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// redisBackend keeps one hash per repository, "<prefix>:secrets:<repo>",
// with a field "<env>/<NAME>" per secret (both lower-case repo and env; an
// environment name has no '/'), each a JSON entry. A set or unset is one
// HSET or HDEL, so concurrent writers never lose each other's entries.
type redisBackend struct {
	client *redis.Client
	base   string
}

func (r *redisBackend) hash(repo string) string { return r.base + ID{Repo: repo}.key().Repo }

func field(id ID) string { k := id.key(); return k.Env + "/" + k.Name }

func (r *redisBackend) put(ctx context.Context, e entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := r.client.HSet(ctx, r.hash(e.Repo), field(e.id()), b).Err(); err != nil {
		return r.down("stored", err)
	}
	return nil
}

func (r *redisBackend) get(ctx context.Context, id ID) (entry, bool, error) {
	b, err := r.client.HGet(ctx, r.hash(id.Repo), field(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return entry{}, false, nil
	}
	if err != nil {
		return entry{}, false, r.down("read", err)
	}
	var e entry
	if err := json.Unmarshal(b, &e); err != nil {
		return entry{}, false, r.corrupt(id.Repo, err)
	}
	return e, true, nil
}

func (r *redisBackend) remove(ctx context.Context, id ID) (bool, error) {
	n, err := r.client.HDel(ctx, r.hash(id.Repo), field(id)).Result()
	if err != nil {
		return false, r.down("removed", err)
	}
	return n > 0, nil
}

func (r *redisBackend) list(ctx context.Context, repo string) ([]entry, error) {
	m, err := r.client.HGetAll(ctx, r.hash(repo)).Result()
	if err != nil {
		return nil, r.down("read", err)
	}
	out := make([]entry, 0, len(m))
	for _, v := range m {
		var e entry
		if err := json.Unmarshal([]byte(v), &e); err != nil {
			return nil, r.corrupt(repo, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func (r *redisBackend) down(what string, err error) error {
	return fmt.Errorf("secrets cannot be %s in Redis at %s (%v): check that Redis is up and REDIS_URL points at it", what, r.client.Options().Addr, err)
}

func (r *redisBackend) corrupt(repo string, err error) error {
	return fmt.Errorf("the secrets of %s in Redis (%s) are not shipbot's (%v): something else wrote that key; remove it and set the secrets again", repo, r.hash(repo), err)
}

func (r *redisBackend) some(ctx context.Context) (bool, error) {
	var cursor uint64
	for {
		keys, next, err := r.client.Scan(ctx, cursor, r.base+"*", 1000).Result()
		if err != nil {
			return false, r.down("read", err)
		}
		if len(keys) > 0 {
			return true, nil // Redis deletes a hash with its last field
		}
		if cursor = next; cursor == 0 {
			return false, nil
		}
	}
}

func (r *redisBackend) where() string { return "Redis at " + r.client.Options().Addr }
