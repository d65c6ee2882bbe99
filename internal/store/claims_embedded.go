package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/shipbot/shipbot/internal/store/record"
)

var (
	bucketClaims        = []byte("claims")        // name -> claimRecord
	bucketInstallations = []byte("installations") // id (uint64, big endian) -> Installation
)

// claimRecord is a claim as the file keeps it. Claims last hours to days,
// so wall-clock expiry is what counts, across restarts too.
type claimRecord struct {
	Holder  string `json:"holder"`
	Expires int64  `json:"expires"` // unix ns
}

// claimSweepEvery bounds how often Claim drops expired claims from the
// file: a sweep reads them all.
const claimSweepEvery = time.Hour

// Claim takes the name key for holder for ttl, unless another holder has
// it and it has not expired; it returns the holder the claim is now
// holder's (holder itself when it took it or had it already). Claiming
// again as the same holder keeps the claim and renews nothing.
func (e *Embedded) Claim(ctx context.Context, key, holder string, ttl time.Duration) (string, error) {
	if err := validateClaim(key, holder, ttl); err != nil {
		return "", err
	}
	now := time.Now()
	sweep := false
	e.mu.Lock()
	if now.Sub(e.claimsSwept) >= claimSweepEvery {
		e.claimsSwept, sweep = now, true
	}
	e.mu.Unlock()
	var got string
	err := e.update(ctx, "claim", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketClaims)
		if sweep {
			if err := dropExpiredClaims(b, now); err != nil {
				return err
			}
		}
		if v := b.Get([]byte(key)); v != nil {
			var c claimRecord
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("store: claim %s: %w", key, err)
			}
			if c.Expires > now.UnixNano() {
				got = c.Holder
				return nil
			}
		}
		blob, err := json.Marshal(claimRecord{Holder: holder, Expires: now.Add(ttl).UnixNano()})
		if err != nil {
			return err
		}
		got = holder
		return b.Put([]byte(key), blob)
	})
	return got, err
}

// ReleaseClaim gives key up if holder has it, so that another delivery may
// act; it does nothing if someone else has it or nobody does.
func (e *Embedded) ReleaseClaim(ctx context.Context, key, holder string) error {
	if err := validateClaim(key, holder, time.Second); err != nil {
		return err
	}
	return e.update(ctx, "release claim", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketClaims)
		v := b.Get([]byte(key))
		if v == nil {
			return nil
		}
		var c claimRecord
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("store: claim %s: %w", key, err)
		}
		if c.Holder != holder {
			return nil
		}
		return b.Delete([]byte(key))
	})
}

func dropExpiredClaims(b *bolt.Bucket, now time.Time) error {
	var expired [][]byte
	err := b.ForEach(func(k, v []byte) error {
		var c claimRecord
		if json.Unmarshal(v, &c) != nil || c.Expires <= now.UnixNano() {
			expired = append(expired, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range expired {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func installationKey(id int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(id)) }

// UpdateInstallation lets fn change installation id inside one
// transaction and returns what was written; fn gets Installation{ID: id}
// when none is kept. An error from fn is returned as is and nothing is
// written.
func (e *Embedded) UpdateInstallation(ctx context.Context, id int64, fn func(*record.Installation) error) (record.Installation, error) {
	if err := validateInstallation(id); err != nil {
		return record.Installation{}, err
	}
	var out record.Installation
	err := e.update(ctx, "update installation", func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketInstallations)
		in := record.Installation{ID: id}
		if v := b.Get(installationKey(id)); v != nil {
			if err := json.Unmarshal(v, &in); err != nil {
				return fmt.Errorf("store: installation %d: %w", id, err)
			}
		}
		if err := fn(&in); err != nil {
			return err
		}
		if err := normalizeInstallation(&in, id); err != nil {
			return err
		}
		blob, err := json.Marshal(in)
		if err != nil {
			return err
		}
		out = in
		return b.Put(installationKey(id), blob)
	})
	return out, err
}

// GetInstallation is installation id as kept; ErrNotFound when none is.
func (e *Embedded) GetInstallation(ctx context.Context, id int64) (record.Installation, error) {
	if err := validateInstallation(id); err != nil {
		return record.Installation{}, err
	}
	var in record.Installation
	err := e.view(ctx, "get installation", func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketInstallations).Get(installationKey(id))
		if v == nil {
			return fmt.Errorf("%w: installation %d", record.ErrNotFound, id)
		}
		return json.Unmarshal(v, &in)
	})
	return in, err
}

// DeleteInstallation forgets installation id; nothing happens if it is
// not kept.
func (e *Embedded) DeleteInstallation(ctx context.Context, id int64) error {
	if err := validateInstallation(id); err != nil {
		return err
	}
	return e.update(ctx, "delete installation", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketInstallations).Delete(installationKey(id))
	})
}

// ListInstallations returns every installation kept, by account.
func (e *Embedded) ListInstallations(ctx context.Context) ([]record.Installation, error) {
	var out []record.Installation
	err := e.view(ctx, "list installations", func(tx *bolt.Tx) error {
		return tx.Bucket(bucketInstallations).ForEach(func(_, v []byte) error {
			var in record.Installation
			if err := json.Unmarshal(v, &in); err != nil {
				return err
			}
			out = append(out, in)
			return nil
		})
	})
	sortInstallations(out)
	return out, err
}
