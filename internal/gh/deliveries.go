package gh

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-github/v60/github"

	"github.com/shipbot/shipbot/internal/logctx"
)

// HookDelivery is one attempt GitHub made to deliver a webhook to the App.
// A redelivered webhook has several attempts with the same GUID (the
// X-GitHub-Delivery header).
type HookDelivery struct {
	ID          int64
	GUID        string
	DeliveredAt time.Time
	Redelivery  bool
	Status      string // "OK", or what went wrong
	StatusCode  int    // what the bot answered; 0 if it never did
	Event       string
	Action      string
}

// Failed reports whether the attempt did not reach the bot successfully.
func (d HookDelivery) Failed() bool {
	return d.StatusCode < 200 || d.StatusCode >= 400 || !strings.EqualFold(d.Status, "OK")
}

// retryable reports whether a failed attempt may succeed when delivered
// again: the bot never answered, or answered 5xx (its store unavailable).
// A 4xx (bad signature, malformed body) would fail the same way again, and
// an attempt still pending has not failed yet.
func retryable(d HookDelivery) bool {
	if strings.EqualFold(d.Status, "pending") {
		return false
	}
	return d.StatusCode == 0 || d.StatusCode >= 500
}

// ListHookDeliveries returns the App's webhook delivery attempts since
// since, newest first, following the cursor through every page.
func (c *Client) ListHookDeliveries(ctx context.Context, since time.Time) ([]HookDelivery, error) {
	opts := &github.ListCursorOptions{PerPage: 100}
	var out []HookDelivery
	for {
		page, resp, err := c.app.Apps.ListHookDeliveries(ctx, opts)
		if err != nil {
			return nil, wrap("list the App's webhook deliveries", err)
		}
		older := false
		for _, d := range page {
			at := d.GetDeliveredAt().Time
			if at.Before(since) {
				older = true
				continue
			}
			out = append(out, HookDelivery{
				ID: d.GetID(), GUID: d.GetGUID(), DeliveredAt: at, Redelivery: d.GetRedelivery(),
				Status: d.GetStatus(), StatusCode: d.GetStatusCode(), Event: d.GetEvent(), Action: d.GetAction(),
			})
		}
		if older || resp.Cursor == "" || len(page) == 0 {
			return out, nil
		}
		opts.Cursor = resp.Cursor
	}
}

// RedeliverHookDelivery asks GitHub to deliver attempt id's webhook again.
func (c *Client) RedeliverHookDelivery(ctx context.Context, id int64) error {
	_, _, err := c.app.Apps.RedeliverHookDelivery(ctx, id)
	var acc *github.AcceptedError
	if errors.As(err, &acc) { // 202 is GitHub's success here
		return nil
	}
	return wrap(fmt.Sprintf("redeliver webhook delivery %d", id), err)
}

// DeliveryLedger is what the Redeliverer needs to know about deliveries;
// the queue implements it.
type DeliveryLedger interface {
	// Seen reports whether the bot has stored the delivery with this GUID.
	Seen(ctx context.Context, guid string) (bool, error)
	// ClaimRedelivery records that a redelivery of guid is being asked for;
	// it is true only the first time, for any number of processes.
	ClaimRedelivery(ctx context.Context, guid string) (bool, error)
	// ReleaseRedelivery forgets a claim whose request to GitHub failed, so
	// the next sweep asks again: a failed ask must not lose the delivery.
	ReleaseRedelivery(ctx context.Context, guid string) error
}

// Redeliverer recovers webhooks GitHub failed to deliver. GitHub never
// retries a failed delivery on its own, so a bot that was down (or whose
// store was) would lose them; the Redeliverer lists the App's recent
// deliveries and asks, once per GUID, for those that never got through.
type Redeliverer struct {
	c      *Client
	ledger DeliveryLedger
	window time.Duration
	now    func() time.Time
	// Asked, when set, is told of each redelivery GitHub accepted, for
	// the audit log.
	Asked func(ctx context.Context, d HookDelivery)
}

// NewRedeliverer returns a Redeliverer looking back three days, as far as
// GitHub keeps deliveries.
func NewRedeliverer(c *Client, ledger DeliveryLedger) *Redeliverer {
	return &Redeliverer{c: c, ledger: ledger, window: 72 * time.Hour, now: time.Now}
}

// SweepResult says what a sweep did.
type SweepResult struct {
	Listed      int      // delivery attempts listed
	Failed      int      // GUIDs with no successful attempt
	Redelivered []string // GUIDs redelivery was asked for
}

// maxRedeliveries bounds how often one delivery is redelivered when the
// redelivered attempts fail too.
const maxRedeliveries = 3

// Sweep asks for a redelivery of each delivery in the window whose attempts
// all failed, that the bot never stored, and whose redelivery has not been
// asked for before. A redelivery that failed in turn with no answer or a
// 5xx (the store down again when it arrived, say) is asked for again, once
// per failed attempt and at most maxRedeliveries times in all; one the bot
// refused with a 4xx is not. A request GitHub refuses (other than 404: the
// delivery is gone) releases the claim, so the next sweep asks again.
func (r *Redeliverer) Sweep(ctx context.Context) (SweepResult, error) {
	var res SweepResult
	list, err := r.c.ListHookDeliveries(ctx, r.now().Add(-r.window))
	if err != nil {
		return res, err
	}
	res.Listed = len(list)
	// Newest first: the first attempt seen per GUID is its latest.
	type guidState struct {
		ok           bool
		latest       HookDelivery
		redeliveries int // attempts that were redeliveries
	}
	byGUID := map[string]*guidState{}
	var order []string
	for _, d := range list {
		if d.GUID == "" {
			continue
		}
		g := byGUID[d.GUID]
		if g == nil {
			g = &guidState{latest: d}
			byGUID[d.GUID] = g
			order = append(order, d.GUID)
		}
		if !d.Failed() {
			g.ok = true
		}
		if d.Redelivery {
			g.redeliveries++
		}
	}
	log := logctx.From(ctx)
	var errs []error
	for _, guid := range order {
		g := byGUID[guid]
		if g.ok {
			continue
		}
		res.Failed++
		seen, err := r.ledger.Seen(ctx, guid)
		if err != nil {
			errs = append(errs, fmt.Errorf("redeliver %s: %w", guid, err))
			continue
		}
		if seen {
			continue // stored after all (e.g. GitHub timed out on a slow 2xx)
		}
		// The first request is claimed by GUID; a further one by the
		// failed attempt it answers, so each failed attempt is asked
		// about once however many bots sweep.
		claim := guid
		if g.redeliveries > 0 {
			if !g.latest.Redelivery || !retryable(g.latest) || g.redeliveries >= maxRedeliveries {
				continue
			}
			claim = guid + "#" + strconv.FormatInt(g.latest.ID, 10)
		}
		first, err := r.ledger.ClaimRedelivery(ctx, claim)
		if err != nil {
			errs = append(errs, fmt.Errorf("redeliver %s: %w", guid, err))
			continue
		}
		if !first {
			continue
		}
		if err := r.c.RedeliverHookDelivery(ctx, g.latest.ID); err != nil {
			var ge *Error
			if errors.As(err, &ge) && ge.Status == http.StatusNotFound {
				log.Warn("webhook delivery is gone; cannot redeliver it", "delivery", guid, "event", g.latest.Event)
				continue
			}
			// Not asked after all: give the claim back so that the next
			// sweep (this process's or another's) tries again.
			if rerr := r.ledger.ReleaseRedelivery(ctx, claim); rerr != nil {
				err = errors.Join(err, fmt.Errorf("redeliver %s: the next sweep will skip it: %w", guid, rerr))
			}
			errs = append(errs, err)
			continue
		}
		log.Info("asked GitHub to redeliver a failed webhook", "delivery", guid, "event", g.latest.Event, "status", g.latest.Status)
		res.Redelivered = append(res.Redelivered, guid)
		if r.Asked != nil {
			r.Asked(ctx, g.latest)
		}
	}
	return res, errors.Join(errs...)
}

// Run sweeps now and then every interval until ctx ends.
func (r *Redeliverer) Run(ctx context.Context, every time.Duration) {
	log := logctx.From(ctx)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if res, err := r.Sweep(ctx); err != nil && ctx.Err() == nil {
			log.Error("webhook redelivery sweep failed; trying again next time", "err", err, "redelivered", len(res.Redelivered))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// AppCredentials are what GitHub returns when an App is created from a
// manifest.
type AppCredentials struct {
	ID            int64
	Slug          string
	Name          string
	HTMLURL       string // the App's page; /installations/new below it installs it
	ClientID      string
	ClientSecret  string
	WebhookSecret string
	PEM           string
}

// ConvertManifest exchanges the code GitHub's App-manifest flow handed to
// the redirect URL for the new App's credentials (POST
// /app-manifests/{code}/conversions, unauthenticated). The code works once
// and expires after an hour.
func ConvertManifest(ctx context.Context, baseURL string, transport http.RoundTripper, code string) (AppCredentials, error) {
	base, err := ParseBaseURL(baseURL)
	if err != nil {
		return AppCredentials{}, err
	}
	if transport == nil {
		transport = http.DefaultTransport
	}
	// No retries: the code is spent by the first attempt GitHub processes.
	g := newGitHub(&http.Client{Transport: transport}, base)
	cfg, _, err := g.Apps.CompleteAppManifest(ctx, code)
	if err != nil {
		e := wrap("create the App from its manifest", err)
		var ge *Error
		if errors.As(e, &ge) && ge.Status == http.StatusNotFound {
			ge.Message = "the code is unknown, used or expired (codes work once, within an hour): register the App again from the setup page"
		}
		return AppCredentials{}, e
	}
	return AppCredentials{
		ID: cfg.GetID(), Slug: cfg.GetSlug(), Name: cfg.GetName(), HTMLURL: cfg.GetHTMLURL(),
		ClientID: cfg.GetClientID(), ClientSecret: cfg.GetClientSecret(), WebhookSecret: cfg.GetWebhookSecret(), PEM: cfg.GetPEM(),
	}, nil
}
