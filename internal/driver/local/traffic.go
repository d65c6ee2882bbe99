package local

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shipbot/shipbot/internal/deploy"
)

// Every proxy measures the traffic it sends to each release (SPEC §6.8):
// requests, errors (5xx answers and failed requests) and latency, in
// one-second slots, so that the engine can read a release's figures since
// any time in the last trafficRetention (Driver.Traffic), and in running
// totals that Prometheus scrapes (Driver.Collector). A request counts for
// the release of the instance that answered it, or of the last one tried
// when it failed; a request the proxy answers itself (no instance in
// rotation) belongs to no release and is not counted. The figures are in
// memory: a restart of the bot starts them afresh.

// trafficRetention is how long a release's seconds are kept: long enough
// to read, at the end of a long rollout, the window of the same length
// before it started.
const trafficRetention = 2 * time.Hour

// Status codes of requests that got no answer from the instance. They are
// below 100, so they index releaseTraffic.codes next to real status codes.
const (
	// codeFailed: the instance gave no answer (connection refused or reset,
	// timed out); the client got a 502. An error of the release.
	codeFailed = 0
	// codeCanceled: the client went away before the answer's headers. Not
	// an error of the release (a slow release shows in its latency).
	codeCanceled = 1
	// maxCode is the largest status code net/http passes on.
	maxCode = 999
)

// isError says whether a request with this code counts against its
// release: a 5xx answer or no answer.
func isError(code int) bool {
	return code == codeFailed || code >= 500 && code <= 599
}

// releaseTraffic is what one proxy measured of one release. The proxy's hot
// path only adds to atomics: the running totals, and the current second,
// which an atomic pointer finds. The mutex is taken once a second, by the
// first request of a new second, and by readers.
type releaseTraffic struct {
	release string // full SHA

	// Running totals since it was made, for Prometheus.
	codes      [maxCode + 1]atomic.Uint64 // by status code, and codeFailed, codeCanceled
	latency    [len(promBounds) + 1]atomic.Uint64
	latencySum atomic.Int64 // nanoseconds

	cur     atomic.Pointer[second] // the newest second with a request
	touched atomic.Int64           // unix second it was last handed to a backend

	mu      sync.Mutex
	pending []*second      // past seconds still dense, oldest first (a recorder may hold one)
	sealed  []sealedSecond // oldest first, none older than trafficRetention before cur
}

// second is one second of a release's traffic while requests may still be
// added to it. pins counts recorders adding to it; sealed, once set, turns
// new ones away, so that when pins is 0 the counts are final.
type second struct {
	sec    int64 // unix time
	pins   atomic.Int32
	sealed atomic.Bool
	errors atomic.Uint32
	hist   [nBuckets]atomic.Uint32
}

// sealedSecond is a past second in the little space it needs: only the
// latency buckets that have requests.
type sealedSecond struct {
	sec     int64
	errors  uint32
	buckets []bucketCount
}

type bucketCount struct {
	bucket uint16
	n      uint32
}

func newReleaseTraffic(release string, now time.Time) *releaseTraffic {
	rt := &releaseTraffic{release: release}
	rt.touched.Store(now.Unix())
	return rt
}

// record counts one request answered at `at` (or failed then), d after the
// proxy began to send it, with code the client got (or codeFailed,
// codeCanceled). It takes no lock and allocates nothing but, once a second,
// the new second.
func (rt *releaseTraffic) record(at time.Time, d time.Duration, code int) {
	if code < 0 || code > maxCode {
		code = codeFailed // net/http passes no such code on
	}
	rt.codes[code].Add(1)
	rt.latency[promBucketOf(d)].Add(1)
	rt.latencySum.Add(int64(d))
	bucket, isErr, sec := bucketOf(d), isError(code), at.Unix()
	for {
		s := rt.cur.Load()
		if s == nil || s.sec < sec {
			s = rt.advance(sec)
		}
		// A recorder late by a second or more counts in the newer second.
		if s.add(bucket, isErr) {
			return
		}
	}
}

// add counts a request in s unless s is sealed (then it is no longer the
// current second: the caller tries that one).
func (s *second) add(bucket int, isErr bool) bool {
	s.pins.Add(1)
	defer s.pins.Add(-1)
	if s.sealed.Load() {
		return false
	}
	s.hist[bucket].Add(1)
	if isErr {
		s.errors.Add(1)
	}
	return true
}

// advance makes sec the current second, unless a newer one is, and seals
// and expires past seconds.
func (rt *releaseTraffic) advance(sec int64) *second {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	cur := rt.cur.Load()
	if cur != nil && cur.sec >= sec {
		return cur
	}
	s := &second{sec: sec}
	rt.cur.Store(s)
	if cur != nil {
		rt.pending = append(rt.pending, cur)
	}
	rt.seal()
	rt.expire(sec - int64(trafficRetention/time.Second))
	return s
}

// seal turns pending seconds into sealed ones, oldest first, stopping at
// one a recorder is still adding to (the next call gets it). Setting
// sealed before reading pins, where a recorder pins before reading sealed,
// means one of the two always sees the other. Called with rt.mu held.
func (rt *releaseTraffic) seal() {
	for len(rt.pending) > 0 {
		s := rt.pending[0]
		s.sealed.Store(true)
		if s.pins.Load() != 0 {
			return
		}
		rt.sealed = append(rt.sealed, s.compact())
		rt.pending[0] = nil
		rt.pending = rt.pending[1:]
	}
}

func (s *second) compact() sealedSecond {
	n := 0
	for i := range s.hist {
		if s.hist[i].Load() != 0 {
			n++
		}
	}
	out := sealedSecond{sec: s.sec, errors: s.errors.Load(), buckets: make([]bucketCount, 0, n)}
	for i := range s.hist {
		if c := s.hist[i].Load(); c != 0 {
			out.buckets = append(out.buckets, bucketCount{bucket: uint16(i), n: c})
		}
	}
	return out
}

// expire drops sealed seconds before the unix second limit. Readers may
// hold the old slice: it is only ever cut at the front and appended to
// past its end, never written in place. Called with rt.mu held.
func (rt *releaseTraffic) expire(limit int64) {
	i := sort.Search(len(rt.sealed), func(i int) bool { return rt.sealed[i].sec >= limit })
	rt.sealed = rt.sealed[i:]
}

// window merges the seconds that overlap [from, to): a request counts by
// the second it was answered in, so a window is widened to whole seconds.
func (rt *releaseTraffic) window(from, to time.Time) *figures {
	first, end := from.Unix(), to.Unix()
	if to.Nanosecond() > 0 {
		end++
	}
	rt.mu.Lock()
	rt.seal()
	sealed := rt.sealed
	live := append(slices.Clone(rt.pending), rt.cur.Load())
	rt.mu.Unlock()

	f := &figures{}
	i := sort.Search(len(sealed), func(i int) bool { return sealed[i].sec >= first })
	for ; i < len(sealed) && sealed[i].sec < end; i++ {
		for _, b := range sealed[i].buckets {
			f.hist[b.bucket] += uint64(b.n)
		}
		f.errors += uint64(sealed[i].errors)
	}
	// A live second may be sealed meanwhile, into a part of sealed this
	// snapshot does not reach: it counts once, from its dense counts.
	for _, s := range live {
		if s == nil || s.sec < first || s.sec >= end {
			continue
		}
		for b := range s.hist {
			f.hist[b] += uint64(s.hist[b].Load())
		}
		f.errors += uint64(s.errors.Load())
	}
	return f
}

// lastActive is the unix second of its last request, or of when a backend
// was last made for it, whichever is later.
func (rt *releaseTraffic) lastActive() int64 {
	last := rt.touched.Load()
	if s := rt.cur.Load(); s != nil {
		last = max(last, s.sec)
	}
	return last
}

// traffic is one proxy's figures, by release.
type traffic struct {
	mu       sync.Mutex
	releases map[string]*releaseTraffic // by full SHA
}

func newTraffic() *traffic {
	return &traffic{releases: map[string]*releaseTraffic{}}
}

// of is the figures of release, made the first time; a backend made for
// the release records into them.
func (t *traffic) of(release string, now time.Time) *releaseTraffic {
	t.mu.Lock()
	defer t.mu.Unlock()
	rt := t.releases[release]
	if rt == nil {
		rt = newReleaseTraffic(release, now)
		t.releases[release] = rt
	}
	rt.touched.Store(now.Unix())
	return rt
}

// window is release's figures over [from, to); zero when it had no request
// then, or none at all.
func (t *traffic) window(release string, from, to time.Time) *figures {
	t.mu.Lock()
	rt := t.releases[release]
	t.mu.Unlock()
	if rt == nil || !to.After(from) {
		return &figures{}
	}
	return rt.window(from, to)
}

// list is every release's figures, by SHA.
func (t *traffic) list() []*releaseTraffic {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*releaseTraffic, 0, len(t.releases))
	for _, rt := range t.releases {
		out = append(out, rt)
	}
	slices.SortFunc(out, func(a, b *releaseTraffic) int { return strings.Compare(a.release, b.release) })
	return out
}

// forget drops the figures of releases that no process runs (running
// says which figures a live process's backend records into) and that had
// no request for trafficRetention: by then none of their seconds is left,
// and their Prometheus series go with them.
func (t *traffic) forget(now time.Time, running map[*releaseTraffic]bool) {
	limit := now.Add(-trafficRetention).Unix()
	t.mu.Lock()
	defer t.mu.Unlock()
	for sha, rt := range t.releases {
		if !running[rt] && rt.lastActive() < limit {
			delete(t.releases, sha)
		}
	}
}

// forgetIdleTraffic drops, in every proxy, the figures of releases no
// process runs any more and that had no request for trafficRetention, so
// that the releases a long-lived driver has seen do not pile up.
func (d *Driver) forgetIdleTraffic(now time.Time) {
	d.mu.Lock()
	running := make(map[*releaseTraffic]bool, len(d.procs))
	for p := range d.procs {
		running[p.backend.traffic] = true
	}
	fleets := make([]*fleet, 0, len(d.fleets))
	for _, f := range d.fleets {
		fleets = append(fleets, f)
	}
	d.mu.Unlock()
	for _, f := range fleets {
		f.proxy.traffic.forget(now, running)
	}
}

// Traffic is what the environment's instances running release (a full
// SHA) answered through the environment's proxy in the seconds that overlap
// [from, to): requests, errors (5xx answers and requests that got no
// answer) and the p99 time to the answer's headers, within 3.1%. An
// environment or release with no requests then is a zero Traffic. The
// figures reach back trafficRetention (2 hours).
func (d *Driver) Traffic(_ context.Context, t deploy.Target, release string, from, to time.Time) (deploy.Traffic, error) {
	if d.remote != nil {
		var out deploy.Traffic
		err := d.remote.quick("Traffic", callArgs{Target: toWire(t), SHA: release, From: from, To: to}, &out)
		return out, err
	}
	if t.Environment == nil || t.Environment.Name == "" {
		return deploy.Traffic{}, fmt.Errorf("%s: traffic: the target has no environment", t.Repo)
	}
	d.mu.Lock()
	closed := d.closed
	f := d.fleets[fleetKey{Repo: t.Repo, Env: strings.ToLower(t.Environment.Name)}]
	d.mu.Unlock()
	if closed {
		return deploy.Traffic{}, ErrClosed
	}
	if f == nil {
		return deploy.Traffic{}, nil
	}
	return f.proxy.traffic.window(release, from, to).traffic(), nil
}
