package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"
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
	// Z names how the payload after the meta line is compressed: "" for
	// not at all (every record before issue #17's compression), "s2" for
	// an S2 block. A payload that does not shrink is kept raw.
	Z string `json:"z,omitempty"`
	// O is Job.Outline, as the length of each member in turn (the first
	// from the document's start), in decimal, comma-separated: about 50
	// bytes for a push, where a JSON array of offsets decodes through
	// reflection on every lease.
	O string `json:"o,omitempty"`
	// X is Job.Dropped.
	X []string `json:"x,omitempty"`
}

// appendOutline renders o for jobMeta.O.
func appendOutline(dst []byte, o []int32) []byte {
	prev := int32(0)
	for i, end := range o {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, int64(end-prev), 10)
		prev = end
	}
	return dst
}

// parseOutline reads jobMeta.O back. Anything but increasing offsets
// within a payload of n bytes gives nil: the outline is a hint, and a
// job without one decodes the slow way.
func parseOutline(s string, n int) []int32 {
	if s == "" {
		return nil
	}
	o := make([]int32, 0, strings.Count(s, ",")+1)
	end := 0
	for f := range strings.SplitSeq(s, ",") {
		d, err := strconv.Atoi(f)
		if err != nil || d <= 0 || d > n-end {
			return nil
		}
		end += d
		o = append(o, int32(end))
	}
	return o
}

// Payloads are compressed when stored (issue #17): GitHub's JSON shrinks
// 3.4–3.6× with S2 (BenchmarkRecord: a 24 KB push of 25 commits becomes
// 6,852 bytes in about 14 µs), and every byte not stored is a byte Redis does not
// read, copy, append to its AOF and rewrite, or bbolt does not page.
// Payloads under compressMin are stored raw (a few hundred bytes saved
// are not worth the CPU), and so is one that does not shrink below
// 7/8 of its size.
const (
	compressMin = 1 << 10
	codecS2     = "s2"
)

// maxPayload bounds a stored payload's decoded size: intake refuses bodies
// over 25 MB, so a larger claim is a corrupt record, not a job.
const maxPayload = 32 << 20

// compressInto compresses payload into dst's memory (grown as needed) when
// that is worth it. It returns the bytes to store (payload itself when not
// compressed), the codec to name in the meta line ("" for none) and dst,
// perhaps grown, for the caller to reuse.
func compressInto(dst, payload []byte) (stored []byte, z string, buf []byte) {
	n := s2.MaxEncodedLen(len(payload))
	if len(payload) < compressMin || n < 0 {
		return payload, "", dst
	}
	dst = slices.Grow(dst[:0], n)[:n]
	enc := s2.Encode(dst, payload)
	if len(enc) > len(payload)-len(payload)/8 {
		return payload, "", dst[:0]
	}
	return enc, codecS2, dst[:0]
}

// decompress returns the payload a record stored with codec z.
func decompress(z string, stored []byte) ([]byte, error) {
	switch z {
	case "":
		return bytes.Clone(stored), nil
	case codecS2:
		n, err := s2.DecodedLen(stored)
		if err != nil || n > maxPayload {
			return nil, fmt.Errorf("queue: corrupt job record: compressed payload does not decode (%v)", err)
		}
		p, err := s2.Decode(make([]byte, n), stored)
		if err != nil {
			return nil, fmt.Errorf("queue: corrupt job record: compressed payload does not decode: %w", err)
		}
		return p, nil
	default:
		return nil, fmt.Errorf("queue: job record's payload is compressed with %q, which this version of shipbot cannot read: upgrade it to the version of the process that queued the job", z)
	}
}

// appendJob renders everything but ID and Attempt, which the stores keep
// beside the blob because they change while the blob does not. The meta
// JSON cannot contain a raw newline (encoding/json escapes it), so the first
// newline ends it. The payload follows, compressed if that is worth it.
func appendJob(dst []byte, j Job) []byte {
	withCompressed(j.Payload, func(stored []byte, z string) {
		j.Payload = stored
		dst = appendRecord(dst, j, z)
	})
	return dst
}

// compressBufs holds the buffers payloads are compressed into before they
// are stored: reused, because a fresh one is zeroed first (28 KB for a
// 24 KB payload, 5% of the embedded store's CPU at full rate). A buffer
// over keepCompressBuf (a rare huge payload's) is left to the collector.
var compressBufs = sync.Pool{New: func() any { return new([]byte) }}

const keepCompressBuf = 1 << 20

// withCompressed calls use with payload as it is to be stored (see
// compressInto) and its codec; stored may be a pooled buffer, which is
// reused once use returns, so use must be done with it by then.
func withCompressed(payload []byte, use func(stored []byte, z string)) {
	buf := compressBufs.Get().(*[]byte)
	stored, z, grown := compressInto(*buf, payload)
	use(stored, z)
	if cap(grown) <= keepCompressBuf {
		*buf = grown
		compressBufs.Put(buf)
	}
}

// appendRecord renders j's meta line naming codec z, then j.Payload as it
// is (already compressed with z).
func appendRecord(dst []byte, j Job, z string) []byte {
	var outline []byte
	if len(j.Outline) > 0 {
		var buf [128]byte
		outline = appendOutline(buf[:0], j.Outline)
	}
	meta, err := json.Marshal(jobMeta{
		DeliveryID:     j.DeliveryID,
		Event:          j.Event,
		Action:         j.Action,
		InstallationID: j.InstallationID,
		Repo:           j.Repo,
		EnqueuedAt:     j.EnqueuedAt.UnixNano(),
		Z:              z,
		O:              string(outline),
		X:              j.Dropped,
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
	return decodeParts(b[:i], b[i+1:])
}

// decodeParts decodes a record given as its meta line (without the
// newline) and its stored payload, which it does not keep.
func decodeParts(meta, stored []byte) (Job, error) {
	var m jobMeta
	if err := json.Unmarshal(meta, &m); err != nil {
		return Job{}, fmt.Errorf("queue: corrupt job record: %w", err)
	}
	j := Job{
		DeliveryID:     m.DeliveryID,
		Event:          m.Event,
		Action:         m.Action,
		InstallationID: m.InstallationID,
		Repo:           m.Repo,
		EnqueuedAt:     unixTime(m.EnqueuedAt),
		Dropped:        m.X,
	}
	if len(stored) > 0 || m.Z != "" {
		p, err := decompress(m.Z, stored)
		if err != nil {
			return Job{}, err
		}
		j.Payload = p
	}
	j.Outline = parseOutline(m.O, len(j.Payload))
	return j, nil
}

// unixTime is how both stores turn stored nanoseconds back into a time, so
// a leased job's EnqueuedAt equals the one Enqueue returned.
func unixTime(ns int64) time.Time { return time.Unix(0, ns).UTC() }
