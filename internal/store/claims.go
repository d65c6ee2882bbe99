package store

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shipbot/shipbot/internal/store/record"
)

// Claims and installations, the same on both stores.
//
// A claim is a name taken by one holder for a while, atomically across
// every process sharing the store: two workers handed two deliveries of the
// same comment claim the comment's name, and only the one that got it
// acts. The holder is the job's id, so that the job retried after a crash
// (same id) finds the claim its own and carries on.

// MaxClaimKey bounds a claim's name.
const MaxClaimKey = 512

func validateClaim(key, holder string, ttl time.Duration) error {
	switch {
	case key == "" || len(key) > MaxClaimKey:
		return fmt.Errorf("store: claim %q: want a name of 1 to %d bytes", key, MaxClaimKey)
	case holder == "":
		return fmt.Errorf("store: claim %s: empty holder", key)
	case ttl < time.Millisecond:
		return fmt.Errorf("store: claim %s: ttl %v is under a millisecond", key, ttl)
	}
	return nil
}

func validateInstallation(id int64) error {
	if id <= 0 {
		return fmt.Errorf("store: installation %d: not an installation id", id)
	}
	return nil
}

// normalizeInstallation makes in what a read gives back: its id, the
// repositories sorted without repeats, the time in UTC.
func normalizeInstallation(in *record.Installation, id int64) error {
	if in.ID != id {
		return fmt.Errorf("store: installation %d: the id of an installation cannot change (got %d)", id, in.ID)
	}
	for _, r := range in.Repos {
		if err := record.ValidateRepo(r); err != nil {
			return fmt.Errorf("store: installation %d: %w", id, err)
		}
	}
	slices.SortFunc(in.Repos, func(a, b string) int { return strings.Compare(strings.ToLower(a), strings.ToLower(b)) })
	in.Repos = slices.CompactFunc(in.Repos, strings.EqualFold)
	if len(in.Repos) == 0 {
		in.Repos = nil
	}
	in.UpdatedAt = in.UpdatedAt.UTC()
	return nil
}

func sortInstallations(ins []record.Installation) {
	slices.SortFunc(ins, func(a, b record.Installation) int {
		if c := strings.Compare(strings.ToLower(a.Account), strings.ToLower(b.Account)); c != 0 {
			return c
		}
		return int(a.ID - b.ID)
	})
}
