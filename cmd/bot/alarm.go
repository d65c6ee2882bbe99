package main

import (
	"slices"
	"sync"
	"time"
)

// maxAlarms bounds the instants an alarm remembers: one per freeze window
// end that holds a push, so a handful; beyond it the farthest are dropped
// and the minute sweep releases what they held.
const maxAlarms = 1000

// alarm wakes the sweep of waiting deploys at instants the handlers ask
// for (the end of a freeze window), so that a held push starts when the
// window closes rather than up to a minute later. It keeps one timer, for
// the earliest instant; the recheck loop owns it and stops it on shutdown.
type alarm struct {
	now func() time.Time
	// C receives when an instant is reached; it holds one wake-up, so
	// instants reached together wake the loop once.
	C chan struct{}

	mu      sync.Mutex
	at      []time.Time // future instants, earliest first, each once
	timer   *time.Timer
	stopped bool
}

func newAlarm(now func() time.Time) *alarm {
	return &alarm{now: now, C: make(chan struct{}, 1)}
}

// Wake asks for a wake-up at t; an instant already asked for, or past, is
// not added again.
func (a *alarm) Wake(t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped || !t.After(a.now()) {
		return
	}
	i, found := slices.BinarySearchFunc(a.at, t, func(x, y time.Time) int { return x.Compare(y) })
	if found {
		return
	}
	a.at = slices.Insert(a.at, i, t)
	if len(a.at) > maxAlarms {
		a.at = a.at[:maxAlarms]
	}
	a.arm()
}

// arm drops the instants reached and sets the timer for the earliest one
// left. a.mu is held.
func (a *alarm) arm() {
	now := a.now()
	for len(a.at) > 0 && !a.at[0].After(now) {
		a.at = a.at[1:]
	}
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	if len(a.at) == 0 || a.stopped {
		return
	}
	a.timer = time.AfterFunc(a.at[0].Sub(now), a.ring)
}

// ring wakes the loop and arms the timer for the next instant.
func (a *alarm) ring() {
	select {
	case a.C <- struct{}{}:
	default:
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.arm()
}

// stop ends the timer; later Wake calls do nothing.
func (a *alarm) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopped = true
	a.arm()
}
