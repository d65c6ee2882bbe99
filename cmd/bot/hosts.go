package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/shipbot/shipbot/internal/handlers"
	"github.com/shipbot/shipbot/queue"
)

// A host is one DATA_DIR: the keeper there runs its local environments and
// previews, and every worker on that DATA_DIR talks to that keeper. With
// several hosts on one Redis, each local environment or preview belongs to
// the host that first ran a job for it (an owner record, a store claim
// that does not expire), and only that host's workers run its jobs: a
// worker elsewhere hands such a job to the owner's own queue
// (shipbot:host:<id>) before writing anything to GitHub for it.

// hostIDFile holds the DATA_DIR's host id, made once and kept: it must
// survive restarts, or the host's environments would lose their owner.
const hostIDFile = "host-id"

// ownerTTL is how long an owner record lives: for good, in practice. An
// environment's instances stay on its host until someone moves them, so
// ownership must not lapse by itself.
const ownerTTL = 50 * 365 * 24 * time.Hour

// hostWorkers is how many jobs a process runs at once from its host's
// queue: the few jobs other hosts' workers hand over.
const hostWorkers = 8

// hostPrefix is the Redis prefix of host id's queue.
func hostPrefix(id string) string { return "shipbot:host:" + id }

// readHostID reads DATA_DIR/local/host-id, making it the first time. Two
// bots starting at once on one DATA_DIR agree: the file appears whole
// (written aside, then linked into place), and the second link fails.
func readHostID(dataDir string) (string, error) {
	dir := filepath.Join(dataDir, "local")
	path := filepath.Join(dir, hostIDFile)
	if id, err := readID(path); err == nil || !errors.Is(err, os.ErrNotExist) {
		return id, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("DATA_DIR=%s: %s cannot be created (%v): point DATA_DIR at a writable directory", dataDir, dir, err)
	}
	var raw [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, hostIDFile+".*")
	if err != nil {
		return "", fmt.Errorf("DATA_DIR=%s: the host id cannot be written (%v): point DATA_DIR at a writable directory", dataDir, err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(hex.EncodeToString(raw[:]) + "\n")
	if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil {
		return "", fmt.Errorf("DATA_DIR=%s: the host id cannot be written (%v): point DATA_DIR at a writable directory", dataDir, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("DATA_DIR=%s: the host id cannot be written (%v): point DATA_DIR at a writable directory", dataDir, err)
	}
	return readID(path)
}

func readID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(b))
	if id == "" || strings.ContainsAny(id, " \t:/") {
		return "", fmt.Errorf("%s holds %q, which is not a host id: delete the file only if this DATA_DIR runs no environment, else write its old id back", path, id)
	}
	return id, nil
}

// ownerStore is the store's claim, which owner records are.
type ownerStore interface {
	Claim(ctx context.Context, key, holder string, ttl time.Duration) (string, error)
}

// hosts is handlers.Hosts over the store's claims and the hosts' queues.
type hosts struct {
	id    string
	store ownerStore
	open  func(prefix string) (queue.Queue, error)

	mu     sync.Mutex
	queues map[string]queue.Queue // other hosts', opened to hand jobs over
}

var _ handlers.Hosts = (*hosts)(nil)

// ownerKey names the owner record of repo's environment or preview env.
func ownerKey(repo, env string) string {
	return "owner:" + strings.ToLower(repo) + ":" + strings.ToLower(env)
}

func (h *hosts) Owner(ctx context.Context, repo, env string) (string, bool, error) {
	owner, err := h.store.Claim(ctx, ownerKey(repo, env), h.id, ownerTTL)
	if err != nil {
		return "", false, err
	}
	return owner, owner == h.id, nil
}

// Forward queues job on owner's queue under the same delivery id, so that
// a retry of this job (its worker died after handing it over) is refused
// there as a duplicate rather than run twice.
func (h *hosts) Forward(ctx context.Context, job queue.Job, owner string) error {
	q, err := h.queue(owner)
	if err != nil {
		return err
	}
	fwd := queue.Job{DeliveryID: job.DeliveryID, Event: job.Event, Action: job.Action, InstallationID: job.InstallationID, Repo: job.Repo, Payload: job.Payload, Outline: job.Outline, Dropped: job.Dropped}
	if fwd.DeliveryID == "" {
		fwd.DeliveryID = "job-" + job.ID
	}
	if _, err := q.Enqueue(ctx, fwd); err != nil && !errors.Is(err, queue.ErrDuplicate) {
		return err
	}
	return nil
}

func (h *hosts) queue(owner string) (queue.Queue, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if q := h.queues[owner]; q != nil {
		return q, nil
	}
	q, err := h.open(hostPrefix(owner))
	if err != nil {
		return nil, err
	}
	if h.queues == nil {
		h.queues = map[string]queue.Queue{}
	}
	h.queues[owner] = q
	return q, nil
}

func (h *hosts) close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for _, q := range h.queues {
		errs = append(errs, q.Close())
	}
	return errors.Join(errs...)
}
