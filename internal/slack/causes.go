package slack

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/shipbot/shipbot/internal/logctx"
)

// Causes remembers the permanent Slack failures still in effect, one per
// cause (a bad token once, not once per message; a missing channel once per
// channel), so that each is logged once and the dashboard can show it with
// its fix until a call shows it is fixed. The zero value is not usable; use
// NewCauses. It is safe for concurrent use.
type Causes struct {
	now func() time.Time

	mu   sync.Mutex
	open map[string]*Cause
}

// Cause is one permanent failure still in effect.
type Cause struct {
	Key         string // what it is about: see Error.Cause
	Code        string // Slack's error code
	Channel     string // "" for the token's failures
	Fix         string // the sentence for the dashboard
	First, Last time.Time
	Count       int // calls that failed with it
}

// NewCauses returns an empty Causes reading time from now (time.Now when nil).
func NewCauses(now func() time.Time) *Causes {
	if now == nil {
		now = time.Now
	}
	return &Causes{now: now, open: map[string]*Cause{}}
}

// Note records the outcome of a call to channel: err nil clears the causes
// that call shows fixed (the token's, and the channel's); a permanent
// *Error is counted, and logged at error level through ctx's logger only
// the first time its cause is seen. It reports whether err was a new
// cause. Transient errors are left to the caller (the job is retried).
func (c *Causes) Note(ctx context.Context, channel string, err error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		for k, v := range c.open {
			if v.Channel == "" || v.Channel == channel {
				logctx.From(ctx).Info("slack: fixed", "code", v.Code, "channel", v.Channel)
				delete(c.open, k)
			}
		}
		return false
	}
	var e *Error
	if !errors.As(err, &e) || !e.Permanent() {
		return false
	}
	key, now := e.Cause(), c.now()
	if v, ok := c.open[key]; ok {
		v.Last, v.Count = now, v.Count+1
		return false
	}
	ch := e.Channel
	if tokenCodes[e.Code] {
		ch = ""
	}
	c.open[key] = &Cause{Key: key, Code: e.Code, Channel: ch, Fix: e.Fix(), First: now, Last: now, Count: 1}
	logctx.From(ctx).Error("slack: "+e.Fix(), "code", e.Code, "channel", e.Channel, "method", e.Method)
	return true
}

// Open is the causes in effect, oldest first, for the dashboard.
func (c *Causes) Open() []Cause {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Cause, 0, len(c.open))
	for _, v := range c.open {
		out = append(out, *v)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].First.Equal(out[j].First) {
			return out[i].First.Before(out[j].First)
		}
		return out[i].Key < out[j].Key
	})
	return out
}
