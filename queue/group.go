package queue

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// batcher is group commit: concurrent calls share one round trip to the
// store. A call waits in pending; a sender takes everything pending (up to
// maxCalls calls or maxBytes) and sends it as one group. A lone call at low
// load finds no sender running and sends its own group from its own
// goroutine, so it pays no added latency, not even the hand-off to a sender
// goroutine and back; under load, calls that arrive while a group is on
// the wire form the next group, which a sender goroutine takes. That next
// group waits at most maxWait for its round trip to end: then another
// sender (up to maxSends at once) takes it, so a slow round trip does not
// hold up everything behind it.
//
// Senders are goroutines that exist only while calls are pending: each
// takes groups until none is left, then ends. Close lets them send what is
// pending and waits for them.
type batcher[In, Out any] struct {
	// send does one group's round trip and sets out or err on every call.
	send     func(calls []*call[In, Out])
	maxCalls int
	maxBytes int
	maxWait  time.Duration
	maxSends int
	// observe is told each group's size, for shipbot_queue_group_size.
	observe func(n int)

	mu           sync.Mutex
	pending      []*call[In, Out]
	pendingBytes int
	sending      int
	timer        *time.Timer
	timerSet     bool
	closed       bool
	wg           sync.WaitGroup
}

// A call moves from callWaiting to callTaken (a sender has it) or to
// callAbandoned (its caller's context ended first); exactly one of the two
// wins the compare-and-swap.
const (
	callWaiting int32 = iota
	callTaken
	callAbandoned
)

type call[In, Out any] struct {
	in    In
	size  int
	since time.Time
	state atomic.Int32
	out   Out
	err   error
	done  chan struct{}
}

func newBatcher[In, Out any](maxCalls, maxBytes, maxSends int, maxWait time.Duration, observe func(int), send func([]*call[In, Out])) *batcher[In, Out] {
	b := &batcher[In, Out]{send: send, maxCalls: maxCalls, maxBytes: maxBytes, maxWait: maxWait, maxSends: maxSends, observe: observe}
	b.timer = time.AfterFunc(time.Hour, b.waited)
	b.timer.Stop()
	return b
}

// errGroupClosed is what a grouped call gets after Close; callers report
// it as unavailable, since to intake a queue shutting down is a store it
// cannot reach.
var errGroupClosed = errors.New("queue: closed")

// do queues in for the next group and returns its result. A caller whose
// context ends before a sender took its call leaves at once, and nothing of
// it is sent; once taken, it waits for the round trip, because the group on
// the wire may still be reading in (a payload the caller will reuse).
func (b *batcher[In, Out]) do(ctx context.Context, in In, size int) (Out, error) {
	var zero Out
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	c := &call[In, Out]{in: in, size: size, done: make(chan struct{})}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return zero, errGroupClosed
	}
	c.since = time.Now()
	b.pending = append(b.pending, c)
	b.pendingBytes += size
	lead := false
	switch {
	case b.sending == 0:
		// Nothing is on the wire, so nothing is pending but c.
		b.sending++
		b.wg.Add(1)
		lead = true
	case b.sending >= b.maxSends:
	case len(b.pending) >= b.maxCalls || b.pendingBytes >= b.maxBytes:
		b.startLocked()
	case !b.timerSet:
		b.timerSet = true
		b.timer.Reset(b.maxWait)
	}
	b.mu.Unlock()
	if lead {
		b.lead(c)
		// Another sender may have taken c first (see waited).
		<-c.done
		return c.out, c.err
	}

	select {
	case <-c.done:
		return c.out, c.err
	case <-ctx.Done():
	}
	if c.state.CompareAndSwap(callWaiting, callAbandoned) {
		return zero, ctx.Err()
	}
	<-c.done
	return c.out, c.err
}

func (b *batcher[In, Out]) startLocked() {
	b.sending++
	b.wg.Add(1)
	go b.run()
}

// waited starts another sender for a group that has waited maxWait behind
// the round trips in flight.
func (b *batcher[In, Out]) waited() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.timerSet = false
	if len(b.pending) == 0 || b.sending >= b.maxSends {
		return
	}
	if left := b.maxWait - time.Since(b.pending[0].since); left > 0 {
		b.timerSet = true
		b.timer.Reset(left)
		return
	}
	b.startLocked()
}

// lead sends groups as a sender would until one has carried c, its
// caller's own call (the first one does: nothing else was pending); calls
// that came meanwhile go to a sender goroutine, which takes over the
// caller's place in sending, and the caller returns.
func (b *batcher[In, Out]) lead(c *call[In, Out]) {
	for c.state.Load() == callWaiting {
		b.mu.Lock()
		group := b.takeLocked()
		b.mu.Unlock()
		if len(group) == 0 {
			break
		}
		b.sendGroup(group)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.pending) > 0 {
		go b.run()
		return
	}
	b.sending--
	b.wg.Done()
}

func (b *batcher[In, Out]) run() {
	defer b.wg.Done()
	for {
		b.mu.Lock()
		group := b.takeLocked()
		if len(group) == 0 {
			b.sending--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.sendGroup(group)
	}
}

func (b *batcher[In, Out]) sendGroup(group []*call[In, Out]) {
	if b.observe != nil {
		b.observe(len(group))
	}
	b.send(group)
	for _, c := range group {
		close(c.done)
	}
}

// takeLocked removes the next group from pending, skipping abandoned calls.
func (b *batcher[In, Out]) takeLocked() []*call[In, Out] {
	var group []*call[In, Out]
	bytes, i := 0, 0
	for ; i < len(b.pending) && len(group) < b.maxCalls; i++ {
		c := b.pending[i]
		if len(group) > 0 && bytes+c.size > b.maxBytes {
			break
		}
		b.pendingBytes -= c.size
		if c.state.CompareAndSwap(callWaiting, callTaken) {
			group = append(group, c)
			bytes += c.size
		}
	}
	n := copy(b.pending, b.pending[i:])
	clear(b.pending[n:])
	b.pending = b.pending[:n]
	return group
}

// close refuses new calls and waits until what is pending was sent.
func (b *batcher[In, Out]) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.wg.Wait()
}
