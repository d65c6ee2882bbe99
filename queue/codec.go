package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// maxDeliveryIDLen keeps delivery ids usable as keys in both stores (bbolt
// refuses keys over 32 KiB); GitHub's are 36-character UUIDs.
const maxDeliveryIDLen = 1024

func (o Options) withDefaults() Options {
	if o.VisibilityTimeout <= 0 {
		o.VisibilityTimeout = 30 * time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.Backoff == nil {
		o.Backoff = defaultBackoff
	}
	if o.DedupeWindow <= 0 {
		o.DedupeWindow = 7 * 24 * time.Hour
	}
	return o
}

// defaultBackoff doubles from 1s up to 5 minutes; the jitter (half the delay
// at most) keeps jobs that failed together, say during a GitHub outage, from
// coming back together.
func defaultBackoff(attempt int) time.Duration {
	const base, ceiling = time.Second, 5 * time.Minute
	d := ceiling
	if attempt >= 1 && attempt <= 10 {
		d = min(base<<(attempt-1), ceiling)
	}
	return d/2 + rand.N(d/2+1)
}

func (o Options) backoff(attempt int) time.Duration {
	return max(o.Backoff(attempt), 0)
}

func validateJob(j Job) error {
	switch {
	case j.DeliveryID == "":
		return errors.New("queue: job has no delivery id")
	case len(j.DeliveryID) > maxDeliveryIDLen:
		return fmt.Errorf("queue: delivery id is %d bytes, more than %d", len(j.DeliveryID), maxDeliveryIDLen)
	}
	return nil
}

// jobMeta is the part of a Job small enough to decode cheaply; the payload
// follows it raw, because base64 in JSON would grow a 24 KB payload by a
// third and cost a decode on every lease.
type jobMeta struct {
	DeliveryID     string `json:"d"`
	Event          string `json:"e,omitempty"`
	Action         string `json:"a,omitempty"`
	InstallationID int64  `json:"i,omitempty"`
	Repo           string `json:"r,omitempty"`
	EnqueuedAt     int64  `json:"t"`
}

// appendJob renders everything but ID and Attempt, which the stores keep
// beside the blob because they change while the blob does not. The meta
// JSON cannot contain a raw newline (encoding/json escapes it), so the first
// newline ends it.
func appendJob(dst []byte, j Job) []byte {
	meta, err := json.Marshal(jobMeta{
		DeliveryID:     j.DeliveryID,
		Event:          j.Event,
		Action:         j.Action,
		InstallationID: j.InstallationID,
		Repo:           j.Repo,
		EnqueuedAt:     j.EnqueuedAt.UnixNano(),
	})
	if err != nil {
		// Strings and integers always marshal.
		panic(fmt.Sprintf("queue: encode job meta: %v", err))
	}
	dst = slices.Grow(dst, len(meta)+1+len(j.Payload))
	dst = append(dst, meta...)
	dst = append(dst, '\n')
	return append(dst, j.Payload...)
}

// decodeJob copies the payload, since b may be bbolt's read-only mmap.
func decodeJob(b []byte) (Job, error) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return Job{}, errors.New("queue: corrupt job record: no meta line")
	}
	var m jobMeta
	if err := json.Unmarshal(b[:i], &m); err != nil {
		return Job{}, fmt.Errorf("queue: corrupt job record: %w", err)
	}
	j := Job{
		DeliveryID:     m.DeliveryID,
		Event:          m.Event,
		Action:         m.Action,
		InstallationID: m.InstallationID,
		Repo:           m.Repo,
		EnqueuedAt:     unixTime(m.EnqueuedAt),
	}
	if p := b[i+1:]; len(p) > 0 {
		j.Payload = bytes.Clone(p)
	}
	return j, nil
}

// unixTime is how both stores turn stored nanoseconds back into a time, so
// a leased job's EnqueuedAt equals the one Enqueue returned.
func unixTime(ns int64) time.Time { return time.Unix(0, ns).UTC() }
