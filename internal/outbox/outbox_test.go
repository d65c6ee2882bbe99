package outbox

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/shipbot/shipbot/internal/cdevents"
	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/slack"
	"github.com/shipbot/shipbot/internal/slack/slackfake"
	"github.com/shipbot/shipbot/internal/store"
	"github.com/shipbot/shipbot/internal/store/record"
	"github.com/shipbot/shipbot/internal/worker"
	"github.com/shipbot/shipbot/queue"
)

// fixture is an Outbox on the real embedded queue and store, delivering to
// a fake Slack; jobs are run by hand, one lease at a time, so a test
// decides the order.
type fixture struct {
	q       *queue.Embedded
	st      *store.Embedded
	sl      *slackfake.Server
	ob      *Outbox
	router  *worker.Router
	now     time.Time
	sent    []string // webhook deliveries: url + " " + event id
	sendErr error
	mu      sync.Mutex
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	q, err := queue.OpenEmbedded(filepath.Join(dir, "notify.db"), QueueOptions(time.Second, func(int) time.Duration { return time.Millisecond }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	st, err := store.OpenEmbedded(filepath.Join(dir, "shipbot.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{q: q, st: st, sl: slackfake.New(t, "#deploys"), now: time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)}
	sc, err := slack.New(slackfake.Token, slack.WithAPIURL(f.sl.URL))
	if err != nil {
		t.Fatal(err)
	}
	f.ob, err = New(Options{Queue: q, Deploys: st, Slack: sc, Sender: f, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	f.router = worker.NewRouter()
	f.ob.Register(f.router)
	d := record.Deploy{ID: "d1", Env: record.EnvKey{Repo: "octo/app", Name: "production"}, SHA: "abc", Kind: record.KindPush, State: record.StateRunning}
	if err := st.PutDeploy(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	return f
}

// Send is the fixture's webhook sender.
func (f *fixture) Send(_ context.Context, url string, e event.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sendErr != nil {
		return f.sendErr
	}
	f.sent = append(f.sent, url+" "+e.ID())
	return nil
}

// run leases the next job and runs its handler as the worker would,
// returning the handler's error; ok is false when no job was ready.
func (f *fixture) run(t *testing.T) (err error, ok bool) {
	t.Helper()
	ctx := context.Background()
	l, lerr := f.q.Lease(ctx, "test", 50*time.Millisecond)
	if errors.Is(lerr, queue.ErrEmpty) {
		return nil, false
	}
	if lerr != nil {
		t.Fatal(lerr)
	}
	h := map[string]func(context.Context, queue.Job) error{EventSlack: f.ob.handleSlack, EventSlackReply: f.ob.handleSlackReply, EventWebhook: f.ob.handleWebhook}[l.Job.Event]
	err = h(ctx, l.Job)
	if err == nil {
		_ = f.q.Ack(ctx, l)
	} else {
		_ = f.q.Nack(ctx, l, err.Error(), !worker.IsPermanent(err))
	}
	return err, true
}

// drain runs the jobs until none is ready, failing at the first error.
func (f *fixture) drain(t *testing.T) {
	t.Helper()
	for {
		err, ok := f.run(t)
		if !ok {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func msg(s string) report.SlackMessage {
	return report.SlackMessage{Text: s, Blocks: []report.SlackBlock{{Type: "section", Text: &report.SlackText{Type: "mrkdwn", Text: s}}}}
}

// An update that arrives after a newer one (a retry, another worker) is
// dropped: the message never goes back to an older state.
func TestSlackNewestStateWins(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, s := range []struct {
		seq  int64
		text string
	}{{1, "queued"}, {3, "batch 2"}, {2, "batch 1"}} {
		if err := f.ob.Slack(ctx, "d1", "octo/app", "#deploys", s.seq, msg(s.text)); err != nil {
			t.Fatal(err)
		}
	}
	f.drain(t)
	m := f.sl.Messages()
	if len(m) != 1 || m[0].Text() != "batch 2" || len(m[0].Texts) != 2 {
		t.Fatalf("messages %+v, want one, posted as queued and edited once to batch 2", m)
	}
	d, _ := f.st.GetDeploy(ctx, "d1")
	if d.Slack == nil || d.Slack.TS != m[0].TS || d.Slack.Channel != m[0].Channel || d.Slack.Seq != 3 {
		t.Errorf("the deploy record keeps %+v, want the message's ts, channel ID and seq 3", d.Slack)
	}
	// Queuing the same rendering again sends nothing new.
	if err := f.ob.Slack(ctx, "d1", "octo/app", "#deploys", 3, msg("batch 2")); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.run(t); ok {
		t.Error("a rendering queued twice was queued twice")
	}
}

// While one job sends the message, another does not send too: a newer
// rendering waits and is retried, an older one is dropped. A claim whose
// holder died lapses.
func TestSlackOneSendAtATime(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.ob.claimSend(ctx, slackJob{Deploy: "d1", Channel: "#deploys", Seq: 4}); err != nil {
		t.Fatal(err)
	}
	if err := f.ob.Slack(ctx, "d1", "octo/app", "#deploys", 3, msg("older")); err != nil {
		t.Fatal(err)
	}
	if err, _ := f.run(t); err != nil {
		t.Fatalf("a rendering older than the one being sent: %v, want it dropped", err)
	}
	if err := f.ob.Slack(ctx, "d1", "octo/app", "#deploys", 5, msg("running")); err != nil {
		t.Fatal(err)
	}
	if err, _ := f.run(t); !errors.Is(err, errBusy) {
		t.Fatalf("a newer rendering while another is sent: %v, want errBusy", err)
	}
	if n := len(f.sl.Messages()); n != 0 {
		t.Fatalf("%d messages posted while another job held the message", n)
	}
	// The claim lapses (its holder died): the retry posts.
	f.now = f.now.Add(3 * time.Minute)
	time.Sleep(5 * time.Millisecond) // the retry's backoff
	if err, ok := f.run(t); err != nil || !ok {
		t.Fatalf("the retry after the claim lapsed: %v (ran %t)", err, ok)
	}
	if m := f.sl.Messages(); len(m) != 1 || m[0].Text() != "running" {
		t.Fatalf("messages %+v", m)
	}
	if d, _ := f.st.GetDeploy(ctx, "d1"); d.Slack.BusySeq != 0 || !d.Slack.BusyUntil.IsZero() || d.Slack.Seq != 5 {
		t.Errorf("after the send the record keeps %+v, want it free at seq 5", d.Slack)
	}
}

// Many renderings sent at once by many workers reach Slack in order: the
// message ends on the newest, and is posted once.
func TestSlackConcurrentRenderings(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const n = 12
	for i := 1; i <= n; i++ {
		if err := f.ob.Slack(ctx, "d1", "octo/app", "#deploys", int64(i), msg("state "+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
				if err, ok := f.run(t); !ok && err == nil {
					if st, _ := f.q.Stats(ctx); st.Ready+st.Delayed+st.Leased == 0 {
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	m := f.sl.Messages()
	if len(m) != 1 || m[0].Text() != "state "+strconv.Itoa(n) {
		t.Fatalf("messages %+v, want one ending on state %d", m, n)
	}
	for i := 1; i < len(m[0].Texts); i++ {
		a, _ := strconv.Atoi(strings.TrimPrefix(m[0].Texts[i-1], "state "))
		b, _ := strconv.Atoi(strings.TrimPrefix(m[0].Texts[i], "state "))
		if b <= a {
			t.Fatalf("Slack saw state %d after state %d: %q", b, a, m[0].Texts)
		}
	}
}

// A failed post gives the claim back, so the retry posts at once; Slack
// refusing the token is permanent.
func TestSlackDownThenBack(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.sl.Fail(http.StatusInternalServerError)
	if err := f.ob.Slack(ctx, "d1", "octo/app", "#deploys", 1, msg("queued")); err != nil {
		t.Fatal(err)
	}
	err, _ := f.run(t)
	if err == nil || worker.IsPermanent(err) {
		t.Fatalf("Slack answering 500: %v, want a retryable error", err)
	}
	f.sl.Fail(0)
	time.Sleep(5 * time.Millisecond)
	if err, ok := f.run(t); err != nil || !ok {
		t.Fatalf("the retry once Slack is back: %v (ran %t)", err, ok)
	}
	if n := len(f.sl.Messages()); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}

	bad, err := slack.New("xoxb-not-the-token", slack.WithAPIURL(f.sl.URL))
	if err != nil {
		t.Fatal(err)
	}
	causes := slack.NewCauses(nil)
	f.ob.o.Slack, f.ob.o.Causes = bad, causes
	if err := f.ob.Slack(ctx, "d1", "octo/app", "#deploys", 2, msg("running")); err != nil {
		t.Fatal(err)
	}
	if err, _ := f.run(t); !worker.IsPermanent(err) {
		t.Fatalf("a refused token: %v, want a permanent error", err)
	}
	if open := causes.Open(); len(open) != 1 || !strings.Contains(open[0].Fix, "SLACK_BOT_TOKEN") {
		t.Errorf("the dashboard's causes %+v, want the token's, naming SLACK_BOT_TOKEN", open)
	}
}

// The thread reply waits for the message, and is posted once.
func TestSlackReplyOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if err := f.ob.SlackReply(ctx, "d1", "octo/app", "#deploys", msg("why")); err != nil {
		t.Fatal(err)
	}
	if err, _ := f.run(t); !errors.Is(err, errNoTS) {
		t.Fatalf("a reply before the message: %v, want errNoTS", err)
	}
	if err := f.ob.Slack(ctx, "d1", "octo/app", "#deploys", 1, msg("failed")); err != nil {
		t.Fatal(err)
	}
	// The message and the reply's retry, in whichever order the queue
	// hands them out: the reply waits for the message.
	for range 10 {
		time.Sleep(5 * time.Millisecond)
		if err, _ := f.run(t); err != nil && !errors.Is(err, errNoTS) {
			t.Fatal(err)
		}
	}
	if err := f.ob.SlackReply(ctx, "d1", "octo/app", "#deploys", msg("why")); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.run(t); ok {
		t.Error("a second reply was queued")
	}
	m := f.sl.Messages()
	if len(m) != 2 || m[1].ThreadTS != m[0].TS || m[1].Text() != "why" {
		t.Fatalf("messages %+v, want the message and one reply in its thread", m)
	}
}

// Webhooks: one job per receiver, the same event queued twice is sent
// once; a permanent refusal is not retried; 24 h after the first try a
// delivery is given up.
func TestWebhookDelivery(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	e, err := cdevents.ServiceUpgraded(cdevents.Meta{ID: "deploy-d1-upgraded", Source: "https://bot.example.com", Time: f.now},
		cdevents.Release{Repo: "octo/app", Environment: "production", SHA: "abc"})
	if err != nil {
		t.Fatal(err)
	}
	urls := []string{"https://a.example.com/cd", "https://b.example.com/cd"}
	for range 2 {
		if err := f.ob.Webhooks(ctx, "octo/app", urls, e); err != nil {
			t.Fatal(err)
		}
	}
	f.drain(t)
	if strings.Join(f.sent, ",") != "https://a.example.com/cd deploy-d1-upgraded,https://b.example.com/cd deploy-d1-upgraded" {
		t.Fatalf("sent %v, want the event once to each receiver", f.sent)
	}

	e2, _ := cdevents.ServiceUpgraded(cdevents.Meta{ID: "deploy-d2-upgraded", Source: "https://bot.example.com", Time: f.now},
		cdevents.Release{Repo: "octo/app", Environment: "production", SHA: "def"})
	f.sendErr = &cdevents.DeliveryError{URL: urls[0], Outcome: cdevents.Retryable, Status: 503}
	if err := f.ob.Webhooks(ctx, "octo/app", urls[:1], e2); err != nil {
		t.Fatal(err)
	}
	if err, _ := f.run(t); err == nil || worker.IsPermanent(err) {
		t.Fatalf("a 503: %v, want a retryable error", err)
	}
	f.now = f.now.Add(cdevents.RetryFor)
	time.Sleep(5 * time.Millisecond)
	if err, _ := f.run(t); !worker.IsPermanent(err) || !strings.Contains(err.Error(), "24 h") {
		t.Fatalf("a retry 24 h after the first try: %v, want it given up", err)
	}
}
