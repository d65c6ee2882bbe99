package slack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// Error is a failed Slack call. The worker asks Permanent() (through
// errors.As on interface{ Permanent() bool }) to choose between retrying
// the job and giving up on it; Fix is the sentence for the dashboard.
type Error struct {
	Method  string // the Web API method, e.g. "chat.postMessage"
	Channel string // the channel as the caller named it
	// Code is Slack's error code ("channel_not_found"), "ratelimited" for
	// a 429, or "" when Slack gave no code (an HTTP error, no answer).
	Code   string
	Status int // the HTTP status when Slack answered other than 200; 0 otherwise
	// RetryAfter is how long Slack asked us to wait; 0 when it did not say.
	RetryAfter time.Duration
	Needed     string // missing_scope: the scopes Slack says the call needs
	Err        error
	bot        string
}

func (e *Error) Error() string {
	return "slack: " + e.Method + " to " + channelName(e.Channel) + ": " + e.Fix()
}

func (e *Error) Unwrap() error { return e.Err }

// Permanent reports whether retrying cannot help: Slack refused the token,
// the channel or the message. Rate limits, Slack's 5xx, timeouts and
// answers that never came are worth another try.
func (e *Error) Permanent() bool {
	_, ok := permanentFix[e.Code]
	return ok
}

// Cause is what the failure is about, for logging it once and showing it
// on the dashboard: the token for the token's failures (one bad token
// fails every channel), else the code and the channel. "" for transient
// failures.
func (e *Error) Cause() string {
	if !e.Permanent() {
		return ""
	}
	if tokenCodes[e.Code] {
		return "token:" + e.Code
	}
	return "channel:" + e.Code + ":" + e.Channel
}

// Fix is the failure in one sentence: what happened and what to do.
func (e *Error) Fix() string {
	ch := channelName(e.Channel)
	if f, ok := permanentFix[e.Code]; ok {
		return f(e, ch)
	}
	switch {
	case e.Code == "ratelimited" && e.RetryAfter > 0:
		return fmt.Sprintf("Slack is rate-limiting the bot; retry after %s (the job will be).", e.RetryAfter.Round(time.Second))
	case e.Code == "ratelimited":
		return "Slack is rate-limiting the bot; the job will be retried."
	case e.Status >= 500:
		return fmt.Sprintf("Slack answered %d %s; the job will be retried.", e.Status, http.StatusText(e.Status))
	case e.Status != 0:
		return fmt.Sprintf("Slack answered HTTP %d %s; check SLACK_API_URL (the job will be retried).", e.Status, http.StatusText(e.Status))
	case e.Code != "":
		return fmt.Sprintf("Slack answered %q; the job will be retried.", e.Code)
	case isTimeout(e.Err):
		return "Slack did not answer in time; the job will be retried."
	default:
		return fmt.Sprintf("no answer from Slack (%v); check SLACK_API_URL and the network (the job will be retried).", e.Err)
	}
}

// tokenCodes are the failures of the token itself, whatever the channel.
var tokenCodes = map[string]bool{
	"invalid_auth": true, "not_authed": true, "account_inactive": true,
	"token_revoked": true, "token_expired": true, "no_permission": true,
	"missing_scope": true, "not_allowed_token_type": true, "ekm_access_denied": true,
}

// permanentFix phrases each failure a retry cannot fix.
var permanentFix = map[string]func(e *Error, ch string) string{
	"invalid_auth": func(*Error, string) string {
		return "SLACK_BOT_TOKEN is not valid: Slack refused it (invalid_auth); set it to the Bot User OAuth Token (xoxb-…) from the Slack app's OAuth & Permissions page."
	},
	"not_authed": func(*Error, string) string {
		return "SLACK_BOT_TOKEN did not reach Slack (not_authed): set it to the Slack app's bot token (xoxb-…)."
	},
	"account_inactive": func(*Error, string) string {
		return "SLACK_BOT_TOKEN belongs to a Slack app that was uninstalled or deactivated (account_inactive): reinstall the app and set the new bot token."
	},
	"token_revoked": func(*Error, string) string {
		return "SLACK_BOT_TOKEN was revoked (token_revoked): reinstall the Slack app and set the new bot token."
	},
	"token_expired": func(*Error, string) string {
		return "SLACK_BOT_TOKEN has expired (token_expired): turn off token rotation for the Slack app, or set a fresh bot token."
	},
	"not_allowed_token_type": func(*Error, string) string {
		return "SLACK_BOT_TOKEN is not a bot token (not_allowed_token_type): use the Bot User OAuth Token (xoxb-…)."
	},
	"missing_scope": func(e *Error, _ string) string {
		need := "chat:write"
		if e.Needed != "" {
			need = e.Needed
		}
		return "the Slack app lacks the " + need + " scope (missing_scope): add it under OAuth & Permissions, reinstall the app and set the new bot token."
	},
	"no_permission": func(*Error, string) string {
		return "the Slack workspace does not let the bot do this (no_permission): ask a workspace admin to allow the app."
	},
	"ekm_access_denied": func(*Error, string) string {
		return "the Slack workspace's key management blocks the bot (ekm_access_denied): ask a workspace admin."
	},
	"channel_not_found": func(_ *Error, ch string) string {
		return "Slack has no channel " + ch + " that the bot can see (channel_not_found): check notify.slack.channel in .github/shipbot.yml, and invite the bot to a private channel."
	},
	"not_in_channel": func(e *Error, ch string) string {
		return "the bot is not in " + ch + ": invite it with /invite @" + e.botName() + "."
	},
	"is_archived": func(_ *Error, ch string) string {
		return ch + " is archived (is_archived): unarchive it, or set notify.slack.channel in .github/shipbot.yml to another channel."
	},
	"restricted_action": func(_ *Error, ch string) string {
		return "a Slack workspace setting stops the bot posting in " + ch + " (restricted_action): ask a workspace admin to allow it."
	},
	"message_not_found": func(_ *Error, ch string) string {
		return "the deploy's message in " + ch + " was deleted (message_not_found), so it cannot be edited; the next deploy posts a new one."
	},
	"cant_update_message": func(_ *Error, ch string) string {
		return "the bot may not edit the deploy's message in " + ch + " (cant_update_message); the next deploy posts a new one."
	},
	"invalid_blocks": func(e *Error, _ string) string {
		return "Slack refused the message's blocks (" + detail(e) + "): this is a bug in shipbot; please report it with this line."
	},
	"invalid_blocks_format": func(e *Error, _ string) string {
		return "Slack refused the message's blocks (" + detail(e) + "): this is a bug in shipbot; please report it with this line."
	},
	"msg_too_long": func(*Error, string) string {
		return "Slack refused the message as too long (msg_too_long): this is a bug in shipbot; please report it."
	},
	"no_text": func(*Error, string) string {
		return "Slack refused a message with no text (no_text): this is a bug in shipbot; please report it."
	},
	"invalid_arguments": func(e *Error, _ string) string {
		return "Slack refused the call's arguments (" + detail(e) + "): this is a bug in shipbot; please report it."
	},
}

func (e *Error) botName() string {
	if e.bot == "" {
		return "shipbot"
	}
	return e.bot
}

// detail is Slack's code with what it said about it, if anything.
func detail(e *Error) string {
	var sr slack.SlackErrorResponse
	if errors.As(e.Err, &sr) && len(sr.ResponseMetadata.Messages) > 0 {
		return e.Code + ": " + strings.Join(sr.ResponseMetadata.Messages, "; ")
	}
	if e.Code == "invalid_blocks" && e.Err != nil && !errors.As(e.Err, &sr) {
		return e.Err.Error() // ours: the blocks did not decode
	}
	return e.Code
}

// channelName is a channel as people read it: "#deploys" for a name, an
// ID as it is.
func channelName(ch string) string {
	if ch == "" || strings.HasPrefix(ch, "#") || isChannelID(ch) {
		return ch
	}
	return "#" + ch
}

// isChannelID reports whether ch looks like a Slack conversation ID
// (C…, G…, D… in upper case and digits).
func isChannelID(ch string) bool {
	if len(ch) < 9 || !strings.ContainsRune("CGD", rune(ch[0])) {
		return false
	}
	for _, r := range ch {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// classify turns what slack-go returned into *Error.
func classify(method, channel, bot string, err error) *Error {
	e := &Error{Method: method, Channel: channel, Err: err, bot: bot}
	var (
		rl *slack.RateLimitedError
		sc slack.StatusCodeError
		sr slack.SlackErrorResponse
	)
	switch {
	case errors.As(err, &rl):
		e.Code, e.Status, e.RetryAfter = "ratelimited", http.StatusTooManyRequests, rl.RetryAfter
	case errors.As(err, &sc):
		e.Status = sc.Code
		if sc.Code == http.StatusTooManyRequests {
			e.Code = "ratelimited" // a 429 without Retry-After
		}
	case errors.As(err, &sr):
		e.Code, e.Needed = sr.Err, sr.Needed
	}
	return e
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
