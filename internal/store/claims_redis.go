package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shipbot/shipbot/internal/store/record"
)

// Keys (under the store's prefix):
//
//	claim:<name>          string: the holder, expiring (PX) with the claim
//	installation:<id>     string: the Installation
//	installations         set: the ids of installations kept

// claimLua takes a free claim or reports who has it, in one step: a SET NX
// followed by a GET could find the claim expired in between.
//
// KEYS: claim. ARGV: holder, ttl ms. Returns the holder now.
const claimLua = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return ARGV[1] end
return redis.call('GET', KEYS[1])
`

// releaseClaimLua deletes the claim only if it is still the holder's.
//
// KEYS: claim. ARGV: holder.
const releaseClaimLua = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
`

var (
	claimScript        = redis.NewScript(claimLua)
	releaseClaimScript = redis.NewScript(releaseClaimLua)
)

// Claim takes the name key for holder for ttl, unless another holder has
// it and it has not expired; it returns the holder the claim is now
// holder's (holder itself when it took it or had it already). Claiming
// again as the same holder keeps the claim and renews nothing. Expiry is
// Redis' clock.
func (r *Redis) Claim(ctx context.Context, key, holder string, ttl time.Duration) (string, error) {
	if err := validateClaim(key, holder, ttl); err != nil {
		return "", err
	}
	for range 3 {
		got, err := claimScript.Run(ctx, r.client, []string{r.key("claim", key)}, holder, ttl.Milliseconds()).Text()
		if errors.Is(err, redis.Nil) {
			continue // cannot happen inside one script, but never hand back ""
		}
		if err != nil {
			return "", r.fail("claim", err)
		}
		return got, nil
	}
	return "", fmt.Errorf("store: claim %s: no holder after three tries", key)
}

// ReleaseClaim gives key up if holder has it, so that another delivery may
// act; it does nothing if someone else has it or nobody does.
func (r *Redis) ReleaseClaim(ctx context.Context, key, holder string) error {
	if err := validateClaim(key, holder, time.Second); err != nil {
		return err
	}
	if err := releaseClaimScript.Run(ctx, r.client, []string{r.key("claim", key)}, holder).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return r.fail("release claim", err)
	}
	return nil
}

func (r *Redis) installationKey(id int64) string {
	return r.key("installation", strconv.FormatInt(id, 10))
}

// UpdateInstallation lets fn change installation id and writes it back,
// unless another write came in between, in which case it starts over: fn
// may run more than once. fn gets Installation{ID: id} when none is kept.
// An error from fn is returned as is and nothing is written.
func (r *Redis) UpdateInstallation(ctx context.Context, id int64, fn func(*record.Installation) error) (record.Installation, error) {
	if err := validateInstallation(id); err != nil {
		return record.Installation{}, err
	}
	key := r.installationKey(id)
	for attempt := range txRetries {
		var out record.Installation
		err := r.client.Watch(ctx, func(tx *redis.Tx) error {
			in := record.Installation{ID: id}
			raw, err := tx.Get(ctx, key).Bytes()
			switch {
			case errors.Is(err, redis.Nil):
			case err != nil:
				return err
			default:
				if err := json.Unmarshal(raw, &in); err != nil {
					return errAbort{fmt.Errorf("store: installation %d: %w", id, err)}
				}
			}
			if err := fn(&in); err != nil {
				return errAbort{err}
			}
			if err := normalizeInstallation(&in, id); err != nil {
				return errAbort{err}
			}
			blob, err := json.Marshal(in)
			if err != nil {
				return errAbort{err}
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, key, blob, 0)
				p.SAdd(ctx, r.key("installations"), id)
				return nil
			})
			out = in
			return err
		}, key)
		var abort errAbort
		switch {
		case errors.As(err, &abort):
			return record.Installation{}, abort.err
		case errors.Is(err, redis.TxFailedErr):
			time.Sleep(time.Duration(rand.Int64N(int64(attempt+1) * int64(time.Millisecond))))
			continue
		case err != nil:
			return record.Installation{}, r.fail("update installation", err)
		}
		return out, nil
	}
	return record.Installation{}, fmt.Errorf("store: update installation %d: %d writers in a row got in first", id, txRetries)
}

// GetInstallation is installation id as kept; ErrNotFound when none is.
func (r *Redis) GetInstallation(ctx context.Context, id int64) (record.Installation, error) {
	if err := validateInstallation(id); err != nil {
		return record.Installation{}, err
	}
	raw, err := r.client.Get(ctx, r.installationKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return record.Installation{}, fmt.Errorf("%w: installation %d", record.ErrNotFound, id)
	}
	if err != nil {
		return record.Installation{}, r.fail("get installation", err)
	}
	var in record.Installation
	if err := json.Unmarshal(raw, &in); err != nil {
		return record.Installation{}, fmt.Errorf("store: installation %d: %w", id, err)
	}
	return in, nil
}

// DeleteInstallation forgets installation id; nothing happens if it is
// not kept.
func (r *Redis) DeleteInstallation(ctx context.Context, id int64) error {
	if err := validateInstallation(id); err != nil {
		return err
	}
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, r.installationKey(id))
		p.SRem(ctx, r.key("installations"), id)
		return nil
	})
	if err != nil {
		return r.fail("delete installation", err)
	}
	return nil
}

// ListInstallations returns every installation kept, by account.
func (r *Redis) ListInstallations(ctx context.Context) ([]record.Installation, error) {
	ids, err := r.client.SMembers(ctx, r.key("installations")).Result()
	if err != nil {
		return nil, r.fail("list installations", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	out, err := mgetJSON[record.Installation](ctx, r, "installation", ids, "list installations")
	if err != nil {
		return nil, err
	}
	sortInstallations(out)
	return out, nil
}
