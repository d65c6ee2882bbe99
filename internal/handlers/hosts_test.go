package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/store"
	"github.com/shipbot/shipbot/queue"
)

// queueHosts is Hosts as the bot wires it (cmd/bot/hosts.go), over the
// store's claims, with every host's queue an embedded one: host name →
// queue.
type queueHosts struct {
	id     string
	st     *store.Embedded
	queues map[string]queue.Queue
}

func (h queueHosts) Owner(ctx context.Context, repo, env string) (string, bool, error) {
	owner, err := h.st.Claim(ctx, "owner:"+strings.ToLower(repo)+":"+strings.ToLower(env), h.id, time.Hour)
	return owner, owner == h.id, err
}

func (h queueHosts) Forward(ctx context.Context, job queue.Job, owner string) error {
	fwd := queue.Job{DeliveryID: job.DeliveryID, Event: job.Event, Action: job.Action, InstallationID: job.InstallationID, Repo: job.Repo, Payload: job.Payload}
	if _, err := h.queues[owner].Enqueue(ctx, fwd); err != nil && !errors.Is(err, queue.ErrDuplicate) {
		return err
	}
	return nil
}

// twoHosts is hosts a and b over st, each with its own queue.
func twoHosts(t *testing.T, st *store.Embedded) (a, b queueHosts) {
	t.Helper()
	queues := map[string]queue.Queue{}
	for _, id := range []string{"a", "b"} {
		q, err := queue.OpenEmbedded(filepath.Join(t.TempDir(), "q.db"), queue.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		queues[id] = q
	}
	return queueHosts{id: "a", st: st, queues: queues}, queueHosts{id: "b", st: st, queues: queues}
}

// handedTo leases the one job handed to host h, failing when there is none.
func handedTo(t *testing.T, h queueHosts) queue.Job {
	t.Helper()
	ctx := context.Background()
	l, err := h.queues[h.id].Lease(ctx, "w", 100*time.Millisecond)
	if err != nil {
		t.Fatalf("host %s's queue: %v", h.id, err)
	}
	if err := h.queues[h.id].Ack(ctx, l); err != nil {
		t.Fatal(err)
	}
	return l.Job
}

// TestPreviewJobsRunOnTheirHost: a local preview built by host a is host
// a's. Host b, handed its synchronize and its close, writes nothing to
// GitHub and builds nothing: it hands each job to a's queue, and a runs it.
func TestPreviewJobsRunOnTheirHost(t *testing.T) {
	w := newPRWorld(t, "")
	a, b := twoHosts(t, w.st)
	onA, onB := w.deps, w.deps
	onA.Hosts, onB.Hosts = a, b
	run := func(deps Deps, action, head string) queue.Job {
		t.Helper()
		p := map[string]any{
			"action": action, "number": 7,
			"pull_request": map[string]any{
				"merged": false,
				"head":   map[string]any{"sha": head, "ref": "feature", "repo": map[string]any{"full_name": "octo-org/web"}},
				"base":   map[string]any{"repo": map[string]any{"full_name": "octo-org/web"}},
			},
			"repository":   map[string]any{"full_name": "octo-org/web", "default_branch": "main"},
			"installation": map[string]any{"id": w.srv.InstallationID},
		}
		body, _ := json.Marshal(p)
		job := queue.Job{ID: "j-" + action, DeliveryID: "del-" + action, Event: "pull_request", Action: action,
			InstallationID: w.srv.InstallationID, Repo: "octo-org/web", Payload: body}
		if err := deps.pullRequest(context.Background(), job); err != nil {
			t.Fatalf("%s: %v", action, err)
		}
		return job
	}

	run(onA, "opened", prHead)
	if len(w.srv.Deployments("octo-org", "web")) != 1 || len(w.drv.ensured) != 1 {
		t.Fatalf("host a did not build the preview: %d deployments, built %v", len(w.srv.Deployments("octo-org", "web")), w.drv.ensured)
	}

	for _, step := range []struct{ action, head string }{{"synchronize", prHead2}, {"closed", prHead2}} {
		w.srv.ResetCalls()
		built, torn := len(w.drv.ensured), w.drv.torn
		sent := run(onB, step.action, step.head)
		if n := w.srv.CountWrites(); n != 0 {
			t.Errorf("%s on host b: %d GitHub writes before handing the job over, want 0", step.action, n)
		}
		if len(w.drv.ensured) != built || w.drv.torn != torn {
			t.Errorf("%s on host b: the preview was built or torn down there", step.action)
		}
		got := handedTo(t, a)
		if got.DeliveryID != sent.DeliveryID || string(got.Payload) != string(sent.Payload) {
			t.Fatalf("%s: host a was handed %q, want the delivery %q as it came", step.action, got.DeliveryID, sent.DeliveryID)
		}
		if err := onA.pullRequest(context.Background(), got); err != nil {
			t.Fatalf("%s on host a: %v", step.action, err)
		}
	}
	if w.drv.ensured[len(w.drv.ensured)-1] != prHead2 || w.drv.torn != 1 {
		t.Errorf("host a built %v and tore down %d times, want %s last and one teardown", w.drv.ensured, w.drv.torn, prHead2[:7])
	}
	w.checkClosed(t)
	if _, err := b.queues["b"].Lease(context.Background(), "w", 10*time.Millisecond); !errors.Is(err, queue.ErrEmpty) {
		t.Errorf("host b's own queue: %v, want nothing handed to it", err)
	}
}

// TestCommentJobsRunOnTheirHost: /deploy staging (local, host a's) leased
// by host b: no reaction, no reply, no deploy there; b gives the comment's
// claim up and hands the job to a, which answers it once and deploys. A
// comment with no local target (/status) is answered where it is leased.
func TestCommentJobsRunOnTheirHost(t *testing.T) {
	w := newCommentWorld(t, "")
	a, b := twoHosts(t, w.st)
	if _, here, err := a.Owner(context.Background(), "octo-org/web", "staging"); err != nil || !here {
		t.Fatalf("host a claiming staging: %v %v", here, err)
	}
	w.cs.Hosts = b
	w.srv.ResetCalls()
	id := w.comment(t, "created", "octocat", "User", "/deploy staging", true)
	if n := w.srv.CountWrites(); n != 0 {
		t.Errorf("host b wrote %d times to GitHub for a comment it handed over, want 0", n)
	}
	if len(w.eng.deploys) != 0 {
		t.Fatalf("host b deployed %v", w.eng.deploys)
	}
	job := handedTo(t, a)
	job.ID = "j-on-a" // a queue of its own gives it an id of its own
	if err := (Deps{Base: Base{GitHub: w.cs.GitHub, Store: w.st, Engine: w.eng, PublicURL: w.cs.PublicURL, Hosts: a}}).issueComment(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	if got := w.replies(id); len(got) != 1 {
		t.Fatalf("%d replies after host a ran the comment, want 1", len(got))
	}
	if len(w.eng.deploys) != 1 || w.eng.deploys[0].Target.Environment.Name != "staging" {
		t.Fatalf("deploys after host a ran the comment: %v", w.eng.deploys)
	}

	status := w.comment(t, "created", "octocat", "User", "/status", true)
	if got := w.replies(status); len(got) != 1 {
		t.Errorf("/status on host b: %d replies, want 1 (it runs anywhere)", len(got))
	}
}
