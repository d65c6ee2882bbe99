package queue

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// A lone call sends its own group from its caller's goroutine: no sender
// goroutine is woken and waited for.
func TestBatcherLoneCallSendsFromItsOwnGoroutine(t *testing.T) {
	var stack string
	b := newBatcher(8, 1<<20, 4, time.Hour, nil, func(calls []*call[int, int]) {
		buf := make([]byte, 64<<10)
		stack = string(buf[:runtime.Stack(buf, false)])
		for _, c := range calls {
			c.out = c.in * 10
		}
	})
	defer b.close()
	out, err := b.do(context.Background(), 4, 1)
	if err != nil || out != 40 {
		t.Fatalf("do = %d, %v; want 40", out, err)
	}
	// The caller's goroutine has do on its stack; a sender's starts at run.
	if !strings.Contains(stack, ").do(") {
		t.Errorf("the group was sent from another goroutine:\n%s", stack)
	}
}

// Calls that arrive while the lone caller's group is on the wire form the
// next group, which a sender goroutine sends: the caller returns as soon as
// its own group is back instead of sending the others'.
func TestBatcherLeaderHandsOnTheCallsThatCameMeanwhile(t *testing.T) {
	firstOnWire, releaseFirst := make(chan struct{}), make(chan struct{})
	leaderBack := make(chan struct{})
	var mu sync.Mutex
	var sizes []int
	sent := map[int]int{}
	b := newBatcher(8, 1<<20, 4, time.Hour, nil, func(calls []*call[int, int]) {
		mu.Lock()
		n := len(sizes)
		sizes = append(sizes, len(calls))
		for _, c := range calls {
			sent[c.in]++
			c.out = c.in * 10
		}
		mu.Unlock()
		switch n {
		case 0:
			close(firstOnWire)
			<-releaseFirst
		case 1:
			// Sent by a sender goroutine, not by the leader, which has
			// returned by now.
			select {
			case <-leaderBack:
			case <-time.After(10 * time.Second):
				t.Error("the second group went out before the leader returned: the leader is sending it")
			}
		}
	})
	defer b.close()
	ctx := context.Background()
	go func() {
		defer close(leaderBack)
		if out, err := b.do(ctx, 1, 1); err != nil || out != 10 {
			t.Errorf("leader's do = %d, %v; want 10", out, err)
		}
	}()
	<-firstOnWire
	var wg sync.WaitGroup
	for i := 2; i <= 4; i++ {
		wg.Go(func() {
			if out, err := b.do(ctx, i, 1); err != nil || out != i*10 {
				t.Errorf("do(%d) = %d, %v", i, out, err)
			}
		})
	}
	for {
		b.mu.Lock()
		n := len(b.pending)
		b.mu.Unlock()
		if n == 3 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(releaseFirst)
	allBack := make(chan struct{})
	go func() { wg.Wait(); <-leaderBack; close(allBack) }()
	select {
	case <-allBack:
	case <-time.After(10 * time.Second):
		t.Fatal("calls that came while the leader's group was on the wire were never sent")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) != 2 || sizes[0] != 1 || sizes[1] != 3 {
		t.Errorf("groups of %v; want [1 3]", sizes)
	}
	for i := 1; i <= 4; i++ {
		if sent[i] != 1 {
			t.Errorf("call %d sent %d times", i, sent[i])
		}
	}
	b.mu.Lock()
	if b.sending != 0 {
		t.Errorf("%d senders still counted after every call returned", b.sending)
	}
	b.mu.Unlock()
}
