package gh_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/gh"
	"github.com/shipbot/shipbot/internal/githubtest"
)

// ledger is an in-memory gh.DeliveryLedger.
type ledger struct {
	mu      sync.Mutex
	seen    map[string]bool
	claimed map[string]bool
}

func newLedger(seen ...string) *ledger {
	l := &ledger{seen: map[string]bool{}, claimed: map[string]bool{}}
	for _, g := range seen {
		l.seen[g] = true
	}
	return l
}

func (l *ledger) Seen(_ context.Context, guid string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[guid], nil
}

func (l *ledger) ClaimRedelivery(_ context.Context, guid string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.claimed[guid] {
		return false, nil
	}
	l.claimed[guid] = true
	return true, nil
}

func (l *ledger) ReleaseRedelivery(_ context.Context, guid string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.claimed, guid)
	return nil
}

var _ gh.DeliveryLedger = (*ledger)(nil)

func TestRedelivererAsksOnceForFailedUnseen(t *testing.T) {
	e := newEnv(t, nil)
	failedUnseen := e.srv.AddDelivery(githubtest.Delivery{GUID: "guid-failed-unseen", Event: "push", StatusCode: 503})
	e.srv.AddDelivery(githubtest.Delivery{GUID: "guid-failed-processed", Event: "pull_request", Action: "opened", StatusCode: 0})
	e.srv.AddDelivery(githubtest.Delivery{GUID: "guid-ok", Event: "issue_comment", Action: "created", StatusCode: 202})
	// Redelivered by hand earlier and then delivered fine: nothing to do.
	e.srv.AddDelivery(githubtest.Delivery{GUID: "guid-recovered", Event: "push", StatusCode: 500})
	e.srv.AddDelivery(githubtest.Delivery{GUID: "guid-recovered", Event: "push", StatusCode: 200, Redelivery: true})
	// Older than GitHub's three days.
	e.srv.AddDelivery(githubtest.Delivery{GUID: "guid-old", Event: "push", StatusCode: 502, DeliveredAt: time.Now().Add(-80 * time.Hour)})

	r := gh.NewRedeliverer(e.c, newLedger("guid-failed-processed"))
	for sweep := 1; sweep <= 2; sweep++ {
		res, err := r.Sweep(e.ctx)
		if err != nil {
			t.Fatalf("sweep %d: %v", sweep, err)
		}
		t.Logf("sweep %d: %+v", sweep, res)
	}
	got := e.srv.Redeliveries()
	if len(got) != 1 || got[0] != failedUnseen {
		t.Fatalf("redeliveries = %v, want exactly [%d] (guid-failed-unseen, once)", got, failedUnseen)
	}
	// The redelivery shows as a new attempt with the same GUID.
	n := 0
	for _, d := range e.srv.Deliveries() {
		if d.GUID == "guid-failed-unseen" && d.Redelivery {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d redelivery attempts listed, want 1", n)
	}
}

func TestListHookDeliveriesPagesAndStopsAtWindow(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 30 {
		e.srv.AddDelivery(githubtest.Delivery{GUID: fmt.Sprintf("old-%d", i), StatusCode: 200, DeliveredAt: time.Now().Add(-100 * time.Hour)})
	}
	for i := range 230 {
		e.srv.AddDelivery(githubtest.Delivery{GUID: fmt.Sprintf("new-%d", i), StatusCode: 200})
	}
	list, err := e.c.ListHookDeliveries(e.ctx, time.Now().Add(-72*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 230 {
		t.Errorf("%d deliveries, want the 230 recent ones", len(list))
	}
	seen := map[string]bool{}
	for _, d := range list {
		if seen[d.GUID] {
			t.Fatalf("%s listed twice", d.GUID)
		}
		seen[d.GUID] = true
	}
	if n := attempts(e.srv, "apps/list-webhook-deliveries"); n != 3 {
		t.Errorf("%d pages fetched, want 3 (100+100+30, stopping at the first old one)", n)
	}
	for _, c := range e.srv.Calls() {
		if c.Operation == "apps/list-webhook-deliveries" && c.Auth != "jwt" {
			t.Errorf("deliveries listed with %s auth", c.Auth)
		}
	}
}

func TestRedelivererRun(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.AddDelivery(githubtest.Delivery{GUID: "g1", Event: "push", StatusCode: 503})
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		gh.NewRedeliverer(e.c, newLedger()).Run(ctx, 20*time.Millisecond)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(e.srv.Redeliveries()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(60 * time.Millisecond) // a few more sweeps
	cancel()
	<-done
	if got := e.srv.Redeliveries(); len(got) != 1 {
		t.Errorf("redeliveries = %v, want one", got)
	}
}

func TestRedelivererAsksAgainAfterAFailedRequest(t *testing.T) {
	e := newEnv(t, nil)
	lost := e.srv.AddDelivery(githubtest.Delivery{GUID: "guid-lost", Event: "push", StatusCode: 502})
	// GitHub refuses the first request for a redelivery.
	e.srv.Fault("POST", "/app/hook/deliveries/{delivery_id}/attempts", githubtest.Fault{Status: 422, Times: 1})

	r := gh.NewRedeliverer(e.c, newLedger())
	if _, err := r.Sweep(e.ctx); err == nil {
		t.Fatal("first sweep: want the refused request reported")
	}
	if got := e.srv.Redeliveries(); len(got) != 0 {
		t.Fatalf("redeliveries after the refused request = %v, want none", got)
	}
	res, err := r.Sweep(e.ctx)
	if err != nil || len(res.Redelivered) != 1 {
		t.Fatalf("second sweep: %+v, %v; want the delivery asked for again", res, err)
	}
	if _, err := r.Sweep(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.srv.Redeliveries(); len(got) != 1 || got[0] != lost {
		t.Fatalf("redeliveries = %v, want exactly [%d] once", got, lost)
	}
}

// A redelivery that fails in turn with a 5xx (the store down again when it
// arrived) is asked for again, at most three times in all; one refused
// with a 4xx is not.
func TestRedelivererAsksAgainWhenTheRedeliveryFails(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answers []int // what the bot answers each redelivery, the last repeated
		want    int   // redeliveries asked for over 6 sweeps
	}{
		{"store down once more", []int{503, 202}, 2},
		{"no answer, then fine", []int{0, 202}, 2},
		{"store never back", []int{503}, 3},
		{"refused with 401", []int{401}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.srv.AddDelivery(githubtest.Delivery{GUID: "guid-flaky", Event: "push", StatusCode: 503})
			var mu sync.Mutex
			n := 0
			answered := make(chan struct{}, 10)
			e.srv.OnRedeliver(func(githubtest.Delivery) int {
				mu.Lock()
				defer mu.Unlock()
				code := tc.answers[min(n, len(tc.answers)-1)]
				n++
				answered <- struct{}{}
				return code
			})
			r := gh.NewRedeliverer(e.c, newLedger())
			asked := 0
			for sweep := 1; sweep <= 6; sweep++ {
				res, err := r.Sweep(e.ctx)
				if err != nil {
					t.Fatalf("sweep %d: %v", sweep, err)
				}
				asked += len(res.Redelivered)
				for range res.Redelivered {
					<-answered
				}
				// The attempt's answer is recorded after the hook returns.
				waitFor(t, func() bool {
					for _, d := range e.srv.Deliveries() {
						if d.Status == "pending" {
							return false
						}
					}
					return true
				})
			}
			if asked != tc.want || len(e.srv.Redeliveries()) != tc.want {
				t.Errorf("asked %d times (GitHub saw %d), want %d", asked, len(e.srv.Redeliveries()), tc.want)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
	}
}
