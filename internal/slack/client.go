// Package slack posts, edits and threads shipbot's deploy messages through
// Slack's Web API (chat.postMessage, chat.update), over slack-go. It sends
// what package report renders and knows nothing of deploys; it owns the
// wire: the token, the base URL (SLACK_API_URL), Slack's rate limits, and
// sorting Slack's failures into those a retry can fix and those an operator
// must (Error, Causes).
package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// DefaultAPIURL is Slack's Web API.
const DefaultAPIURL = "https://slack.com/api/"

// Message is a message to send: the plain text Slack shows where blocks
// cannot be, and Block Kit blocks as JSON. Its JSON is the JSON of
// report.SlackMessage, so a queued job can carry one as it was rendered.
type Message struct {
	Text   string          `json:"text"`
	Blocks json.RawMessage `json:"blocks,omitempty"`
}

// Ref is a message Slack accepted: the channel's ID as Slack answered it and
// the message's timestamp. Keep both: chat.update wants the channel's ID,
// not the "#deploys" a message may have been posted with.
type Ref struct {
	Channel string `json:"channel"`
	TS      string `json:"ts"`
}

// Client sends messages with one bot token.
type Client struct {
	api     *slack.Client
	bot     string        // the bot's name in Slack, for "/invite @name"
	maxWait time.Duration // the longest Retry-After waited out in a call
	tries   int           // attempts per call while Slack answers 429
}

// Option configures a Client.
type Option func(*clientConfig)

type clientConfig struct {
	apiURL  string
	http    *http.Client
	bot     string
	maxWait time.Duration
}

// WithAPIURL sets the Web API's base URL (SLACK_API_URL), e.g. a test
// server's. The default is DefaultAPIURL.
func WithAPIURL(u string) Option { return func(c *clientConfig) { c.apiURL = u } }

// WithHTTPClient sets the HTTP client; the default has a 10 s timeout so
// that a hung Slack cannot hold a job.
func WithHTTPClient(h *http.Client) Option { return func(c *clientConfig) { c.http = h } }

// WithBotName sets the bot user's name in Slack (default "shipbot"), used
// in the fix for not_in_channel.
func WithBotName(name string) Option {
	return func(c *clientConfig) { c.bot = strings.TrimPrefix(name, "@") }
}

// WithMaxRateLimitWait sets the longest Retry-After a call waits out before
// trying again (default 30 s). A longer one, or one the context's deadline
// would not survive, returns a retryable *Error with RetryAfter instead.
func WithMaxRateLimitWait(d time.Duration) Option { return func(c *clientConfig) { c.maxWait = d } }

// New returns a Client for a bot token (xoxb-…).
func New(token string, opts ...Option) (*Client, error) {
	cfg := clientConfig{apiURL: DefaultAPIURL, bot: "shipbot", maxWait: 30 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	token = strings.TrimSpace(token)
	switch {
	case token == "":
		return nil, errors.New("SLACK_BOT_TOKEN is empty: set it to the Slack app's bot token (xoxb-…), or unset it to turn Slack off")
	case !strings.HasPrefix(token, "xoxb-"):
		return nil, errors.New("SLACK_BOT_TOKEN is not a bot token: use the Bot User OAuth Token (xoxb-…) from the Slack app's OAuth & Permissions page")
	}
	if !strings.HasPrefix(cfg.apiURL, "http://") && !strings.HasPrefix(cfg.apiURL, "https://") {
		return nil, fmt.Errorf("SLACK_API_URL %q is not an http(s) URL: set it to e.g. %s, or unset it", cfg.apiURL, DefaultAPIURL)
	}
	if !strings.HasSuffix(cfg.apiURL, "/") {
		cfg.apiURL += "/" // slack-go appends the method name to it
	}
	if cfg.http == nil {
		cfg.http = &http.Client{Timeout: 10 * time.Second}
	}
	api := slack.New(token, slack.OptionAPIURL(cfg.apiURL), slack.OptionHTTPClient(cfg.http))
	return &Client{api: api, bot: cfg.bot, maxWait: cfg.maxWait, tries: 3}, nil
}

// Post posts m in channel (a name, "#deploys", or an ID) and returns where
// it landed.
func (c *Client) Post(ctx context.Context, channel string, m Message) (Ref, error) {
	return c.send(ctx, "chat.postMessage", channel, m, func(opts []slack.MsgOption) (string, string, error) {
		return c.api.PostMessageContext(ctx, channel, opts...)
	})
}

// Update replaces the message at ts in channel (its ID, from Ref) with m.
func (c *Client) Update(ctx context.Context, channel, ts string, m Message) error {
	_, err := c.send(ctx, "chat.update", channel, m, func(opts []slack.MsgOption) (string, string, error) {
		ch, t, _, err := c.api.UpdateMessageContext(ctx, channel, ts, opts...)
		return ch, t, err
	})
	return err
}

// Reply posts m in the thread of the message at ts in channel.
func (c *Client) Reply(ctx context.Context, channel, ts string, m Message) (Ref, error) {
	return c.send(ctx, "chat.postMessage", channel, m, func(opts []slack.MsgOption) (string, string, error) {
		return c.api.PostMessageContext(ctx, channel, append(opts, slack.MsgOptionTS(ts))...)
	})
}

// send makes one call, waiting out Slack's short rate limits, and turns a
// failure into *Error.
func (c *Client) send(ctx context.Context, method, channel string, m Message, call func([]slack.MsgOption) (string, string, error)) (Ref, error) {
	opts, err := options(m)
	if err != nil {
		return Ref{}, &Error{Method: method, Channel: channel, Code: "invalid_blocks", Err: err, bot: c.bot}
	}
	for try := 1; ; try++ {
		ch, ts, err := call(opts)
		if err == nil {
			return Ref{Channel: ch, TS: ts}, nil
		}
		// Only a 429 that said when (Retry-After) is waited out here.
		var rl *slack.RateLimitedError
		if !errors.As(err, &rl) || try >= c.tries || !c.wait(ctx, rl.RetryAfter) {
			return Ref{}, classify(method, channel, c.bot, err)
		}
	}
}

// wait sleeps d when d is short and ctx will still be alive afterwards; it
// reports whether it did. A long wait is the queue's to make: a job blocked
// here would hold a worker that other repositories' deploys need.
func (c *Client) wait(ctx context.Context, d time.Duration) bool {
	if d > c.maxWait {
		return false
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// options are the chat.* arguments for m. Blocks are decoded through
// slack-go's Block types, so a message with a malformed block fails here,
// before Slack sees it.
func options(m Message) ([]slack.MsgOption, error) {
	opts := []slack.MsgOption{
		slack.MsgOptionText(m.Text, false), // report escaped what people wrote; escaping again would show "&amp;amp;"
		slack.MsgOptionDisableLinkUnfurl(),
		slack.MsgOptionDisableMediaUnfurl(),
	}
	if len(m.Blocks) > 0 && string(m.Blocks) != "null" {
		var bs slack.Blocks
		if err := json.Unmarshal(m.Blocks, &bs); err != nil {
			return nil, fmt.Errorf("the message's blocks are not Block Kit JSON: %w", err)
		}
		for _, b := range bs.BlockSet {
			if _, unknown := b.(*slack.UnknownBlock); unknown {
				return nil, fmt.Errorf("the message has a block of unknown type %q", b.BlockType())
			}
		}
		opts = append(opts, slack.MsgOptionBlocks(bs.BlockSet...))
	}
	return opts, nil
}
