package main

import (
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/config"
)

// TestLockExpiresBeforeAJobIsReclaimed pins the relation serve.go's timings
// depend on, for every JOB_TIMEOUT the configuration accepts: a crashed
// bot's deploy lock must be gone by the time its job is handed to another
// worker, or the deploy is never finished.
func TestLockExpiresBeforeAJobIsReclaimed(t *testing.T) {
	for _, v := range []time.Duration{config.MinJobTimeout, 4 * time.Second, config.DefaultJobTimeout, 7 * time.Minute} {
		tm := timingsFor(v)
		if tm.lockTTL >= tm.visibility-tm.heartbeat {
			t.Errorf("JOB_TIMEOUT %s: lockTTL %s must be shorter than visibility %s - heartbeat %s", v, tm.lockTTL, tm.visibility, tm.heartbeat)
		}
		if tm.heartbeat*2 > tm.visibility {
			t.Errorf("JOB_TIMEOUT %s: heartbeat %s leaves no room for one missed beat within visibility %s", v, tm.heartbeat, tm.visibility)
		}
	}
	if tm := timingsFor(config.DefaultJobTimeout); tm.heartbeat != 10*time.Second || tm.lockTTL != 15*time.Second {
		t.Errorf("the defaults moved: %+v", tm)
	}
}
