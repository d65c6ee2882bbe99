package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/logctx"
	"github.com/shipbot/shipbot/internal/report"
)

// message is what report renders for d, as a queued job would carry it.
func message(t *testing.T, m report.SlackMessage) Message {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out Message
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func deploy(st report.State) report.SlackDeploy {
	d := report.SlackDeploy{
		Deploy: report.Deploy{
			Env: "production", SHA: "abc1234f9e8d7c6b5a4938271605f4e3d2c1b0a9", Ref: "main", Creator: "alice",
			Kind: report.KindPush, State: st, Total: 4, LogURL: "https://bot.example.com/deploys/7",
			Previous: "def5678a1b2c3d4e5f60718293a4b5c6d7e8f901",
		},
		Repo: "acme/web", Title: "Fix totals & <rounding>",
	}
	if st == report.StateFailure {
		d.Reason, d.FailedInstance = "production-2 failed /healthz", "production-2"
	}
	return d
}

// TestPostUpdateReply is a deploy's life in the channel: posted by name,
// edited by the ID Slack answered, and a thread reply under it, each call
// carrying exactly the rendered text and blocks.
func TestPostUpdateReply(t *testing.T) {
	queued := message(t, report.SlackDeployMessage(deploy(report.StateQueued)))
	failed := message(t, report.SlackDeployMessage(deploy(report.StateFailure)))
	r, ok := report.SlackThreadReply(deploy(report.StateFailure))
	if !ok {
		t.Fatal("a failure has no thread reply")
	}
	reply := message(t, r)

	f := newFake(t,
		call{method: "chat.postMessage", blocks: queued.Blocks, want: map[string]string{
			"channel": "#deploys", "text": queued.Text, "thread_ts": "", "unfurl_links": "false", "unfurl_media": "false",
		}},
		call{method: "chat.update", blocks: failed.Blocks, want: map[string]string{
			"channel": "C0DEPLOYS1", "ts": "1700000000.000001", "text": failed.Text,
		}},
		call{method: "chat.postMessage", blocks: reply.Blocks, want: map[string]string{
			"channel": "C0DEPLOYS1", "thread_ts": "1700000000.000001", "text": reply.Text,
		}},
	)
	c := f.client(t)
	ctx := context.Background()

	ref, err := c.Post(ctx, "#deploys", queued)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Ref{Channel: "C0DEPLOYS1", TS: "1700000000.000001"}); ref != want {
		t.Fatalf("Post: got %+v, want %+v", ref, want)
	}
	if err := c.Update(ctx, ref.Channel, ref.TS, failed); err != nil {
		t.Fatal(err)
	}
	got, err := c.Reply(ctx, ref.Channel, ref.TS, reply)
	if err != nil {
		t.Fatal(err)
	}
	if got.TS == "" || got.TS == ref.TS {
		t.Errorf("Reply: ts %q, want the reply's own", got.TS)
	}
	var sent any
	if err := json.Unmarshal(queued.Blocks, &sent); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(failed.Text, "Failed on production") || !strings.Contains(fmt.Sprint(sent), "Fix totals &amp; &lt;rounding&gt;") {
		t.Errorf("the messages sent are not the rendered ones: %s / %s", failed.Text, queued.Blocks)
	}
}

// TestRateLimitIsWaitedOut: a 429 with a short Retry-After is waited out
// within the call, and the call then succeeds.
func TestRateLimitIsWaitedOut(t *testing.T) {
	m := Message{Text: "hello"}
	f := newFake(t,
		call{method: "chat.postMessage", status: http.StatusTooManyRequests, header: map[string]string{"Retry-After": "1"}, body: `{"ok":false,"error":"ratelimited"}`},
		call{method: "chat.postMessage", want: map[string]string{"channel": "#deploys", "text": "hello"}},
	)
	start := time.Now()
	ref, err := f.client(t).Post(context.Background(), "#deploys", m)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("retried after %v; Slack asked for 1s", took)
	}
	if ref.TS == "" {
		t.Error("no ts after the retry")
	}
}

// TestRateLimitTooLongIsReturned: a Retry-After longer than the client
// waits, or than the context lives, comes back at once as a retryable
// error saying when to retry.
func TestRateLimitTooLongIsReturned(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter string
		ctx        func() (context.Context, context.CancelFunc)
	}{
		{"beyond the client's wait", "120", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }},
		{"beyond the context's deadline", "5", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 2*time.Second)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, call{method: "chat.update", status: http.StatusTooManyRequests, header: map[string]string{"Retry-After": tc.retryAfter}})
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			err := f.client(t).Update(ctx, "C0DEPLOYS1", "1.2", Message{Text: "x"})
			if took := time.Since(start); took > 500*time.Millisecond {
				t.Errorf("took %v: it waited", took)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want *Error", err)
			}
			want, _ := time.ParseDuration(tc.retryAfter + "s")
			if e.Permanent() || e.RetryAfter != want || e.Code != "ratelimited" {
				t.Errorf("got permanent=%v RetryAfter=%v code=%q", e.Permanent(), e.RetryAfter, e.Code)
			}
			if !strings.Contains(e.Error(), "retry after "+want.String()) {
				t.Errorf("error does not say when to retry: %v", e)
			}
		})
	}
}

// TestRateLimitGivesUpAfterTries: Slack rate-limiting every attempt ends
// in the retryable error, not a loop.
func TestRateLimitGivesUpAfterTries(t *testing.T) {
	limited := call{method: "chat.postMessage", status: http.StatusTooManyRequests, header: map[string]string{"Retry-After": "0"}}
	f := newFake(t, limited, limited, limited)
	c := f.client(t)
	c.tries = 3
	_, err := c.Post(context.Background(), "#deploys", Message{Text: "x"})
	var e *Error
	if !errors.As(err, &e) || e.Permanent() || e.Code != "ratelimited" {
		t.Fatalf("got %v", err)
	}
}

// TestPermanentErrors: each refusal a retry cannot fix is permanent and
// says, in one sentence, what to do.
func TestPermanentErrors(t *testing.T) {
	for _, tc := range []struct {
		code, channel, cause, fix string
	}{
		{"invalid_auth", "#deploys", "token:invalid_auth", "SLACK_BOT_TOKEN is not valid: Slack refused it (invalid_auth); set it to the Bot User OAuth Token (xoxb-…) from the Slack app's OAuth & Permissions page."},
		{"not_authed", "#deploys", "token:not_authed", "SLACK_BOT_TOKEN did not reach Slack (not_authed): set it to the Slack app's bot token (xoxb-…)."},
		{"account_inactive", "#deploys", "token:account_inactive", "SLACK_BOT_TOKEN belongs to a Slack app that was uninstalled or deactivated (account_inactive): reinstall the app and set the new bot token."},
		{"token_revoked", "#deploys", "token:token_revoked", "SLACK_BOT_TOKEN was revoked (token_revoked): reinstall the Slack app and set the new bot token."},
		{"channel_not_found", "deploys", "channel:channel_not_found:deploys", "Slack has no channel #deploys that the bot can see (channel_not_found): check notify.slack.channel in .github/shipbot.yml, and invite the bot to a private channel."},
		{"not_in_channel", "#deploys", "channel:not_in_channel:#deploys", "the bot is not in #deploys: invite it with /invite @shipbot."},
		{"is_archived", "C0123ABCDE", "channel:is_archived:C0123ABCDE", "C0123ABCDE is archived (is_archived): unarchive it, or set notify.slack.channel in .github/shipbot.yml to another channel."},
		{"missing_scope", "#deploys", "token:missing_scope", "the Slack app lacks the chat:write scope (missing_scope): add it under OAuth & Permissions, reinstall the app and set the new bot token."},
		{"msg_too_long", "#deploys", "channel:msg_too_long:#deploys", "Slack refused the message as too long (msg_too_long): this is a bug in shipbot; please report it."},
	} {
		t.Run(tc.code, func(t *testing.T) {
			body := `{"ok":false,"error":"` + tc.code + `"}`
			if tc.code == "missing_scope" {
				body = `{"ok":false,"error":"missing_scope","needed":"chat:write","provided":"channels:read"}`
			}
			f := newFake(t, call{method: "chat.postMessage", body: body, want: map[string]string{"channel": tc.channel}})
			_, err := f.client(t).Post(context.Background(), tc.channel, Message{Text: "x"})
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want *Error", err)
			}
			var p interface{ Permanent() bool }
			if !errors.As(err, &p) || !p.Permanent() {
				t.Error("not permanent: the queue would retry it forever")
			}
			if e.Fix() != tc.fix {
				t.Errorf("fix:\n got %s\nwant %s", e.Fix(), tc.fix)
			}
			if e.Cause() != tc.cause {
				t.Errorf("cause %q, want %q", e.Cause(), tc.cause)
			}
			if f.calls() != 1 {
				t.Errorf("%d calls: a permanent error was retried", f.calls())
			}
		})
	}
}

// TestTransientErrors: Slack failing, or not answering, is retryable and
// never a cause to show on the dashboard.
func TestTransientErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		c      call
		status int
		fix    string
	}{
		{"500", call{status: http.StatusInternalServerError, body: "<html>oops</html>"}, 500, "Slack answered 500 Internal Server Error; the job will be retried."},
		{"503", call{status: http.StatusServiceUnavailable, body: "<html>down</html>"}, 503, "Slack answered 503 Service Unavailable; the job will be retried."},
		{"internal_error", call{body: `{"ok":false,"error":"internal_error"}`}, 0, `Slack answered "internal_error"; the job will be retried.`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.method = "chat.postMessage"
			f := newFake(t, tc.c)
			_, err := f.client(t).Post(context.Background(), "#deploys", Message{Text: "x"})
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want *Error", err)
			}
			if e.Permanent() || e.Cause() != "" || e.Status != tc.status || e.Fix() != tc.fix {
				t.Errorf("permanent=%v cause=%q status=%d fix=%q", e.Permanent(), e.Cause(), e.Status, e.Fix())
			}
		})
	}
}

func TestTimeoutIsRetryable(t *testing.T) {
	f := newFake(t, call{method: "chat.postMessage", hold: true})
	c := f.client(t, WithHTTPClient(&http.Client{Timeout: 200 * time.Millisecond}))
	_, err := c.Post(context.Background(), "#deploys", Message{Text: "x"})
	var e *Error
	if !errors.As(err, &e) || e.Permanent() {
		t.Fatalf("got %v, want a retryable *Error", err)
	}
	if e.Fix() != "Slack did not answer in time; the job will be retried." {
		t.Errorf("fix %q", e.Fix())
	}
}

// TestBadBlocksNeverSent: blocks that are not Block Kit fail before any
// call, as a bug to report.
func TestBadBlocksNeverSent(t *testing.T) {
	f := newFake(t)
	for _, blocks := range []string{`{"type":"section"}`, `[{"type":"sparkles"}]`} {
		_, err := f.client(t).Post(context.Background(), "#deploys", Message{Text: "x", Blocks: json.RawMessage(blocks)})
		var e *Error
		if !errors.As(err, &e) || !e.Permanent() || !strings.Contains(e.Fix(), "bug in shipbot") {
			t.Errorf("%s: got %v", blocks, err)
		}
	}
}

func TestNewRefusesBadSettings(t *testing.T) {
	for _, tc := range []struct {
		token string
		opts  []Option
		want  string
	}{
		{"", nil, "SLACK_BOT_TOKEN is empty: set it to the Slack app's bot token (xoxb-…), or unset it to turn Slack off"},
		{"xoxp-123", nil, "SLACK_BOT_TOKEN is not a bot token: use the Bot User OAuth Token (xoxb-…) from the Slack app's OAuth & Permissions page"},
		{token, []Option{WithAPIURL("slack.example.com/api")}, `SLACK_API_URL "slack.example.com/api" is not an http(s) URL: set it to e.g. https://slack.com/api/, or unset it`},
	} {
		if _, err := New(tc.token, tc.opts...); err == nil || err.Error() != tc.want {
			t.Errorf("New(%q): got %v, want %s", tc.token, err, tc.want)
		}
	}
}

// TestCausesLogOnce: a bad token fails every message and every channel but
// is logged and listed once; each missing channel once; a success clears
// what it shows fixed, so a relapse is logged again.
func TestCausesLogOnce(t *testing.T) {
	var logs bytes.Buffer
	ctx := logctx.With(context.Background(), slog.New(slog.NewTextHandler(&logs, nil)))
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	causes := NewCauses(func() time.Time { now = now.Add(time.Second); return now })

	invalid := func(ch string) error { return &Error{Method: "chat.postMessage", Channel: ch, Code: "invalid_auth"} }
	notFound := func(ch string) error {
		return &Error{Method: "chat.postMessage", Channel: ch, Code: "channel_not_found"}
	}
	transient := &Error{Method: "chat.update", Channel: "C1", Status: 500}

	news := []bool{
		causes.Note(ctx, "#deploys", invalid("#deploys")),
		causes.Note(ctx, "#deploys", invalid("#deploys")),
		causes.Note(ctx, "#ops", invalid("#ops")),
		causes.Note(ctx, "#gone", notFound("#gone")),
		causes.Note(ctx, "#old", notFound("#old")),
		causes.Note(ctx, "#gone", notFound("#gone")),
		causes.Note(ctx, "#deploys", transient),
		causes.Note(ctx, "#deploys", errors.New("not ours")),
	}
	if want := []bool{true, false, false, true, true, false, false, false}; !slices.Equal(news, want) {
		t.Errorf("new causes %v, want %v", news, want)
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 3 {
		t.Errorf("%d error lines, want 3:\n%s", n, logs.String())
	}
	open := causes.Open()
	if len(open) != 3 || open[0].Code != "invalid_auth" || open[0].Channel != "" || open[0].Count != 3 ||
		!strings.HasPrefix(open[0].Fix, "SLACK_BOT_TOKEN is not valid") || open[1].Channel != "#gone" || open[1].Count != 2 {
		t.Fatalf("open causes: %+v", open)
	}

	causes.Note(ctx, "#gone", nil) // the token works again, and #gone exists now
	if open := causes.Open(); len(open) != 1 || open[0].Channel != "#old" {
		t.Fatalf("after a success in #gone: %+v", open)
	}
	logs.Reset()
	if !causes.Note(ctx, "#deploys", invalid("#deploys")) || strings.Count(logs.String(), "level=ERROR") != 1 {
		t.Errorf("a token broken again is not logged again:\n%s", logs.String())
	}
}
