package main

import "testing"

// TestLockExpiresBeforeAJobIsReclaimed pins the relation serve.go's
// constants depend on: a crashed bot's deploy lock must be gone by the time
// its job is handed to another worker, or the deploy is never finished.
func TestLockExpiresBeforeAJobIsReclaimed(t *testing.T) {
	if lockTTL >= jobVisibility-jobHeartbeat {
		t.Fatalf("lockTTL %s must be shorter than jobVisibility %s - jobHeartbeat %s", lockTTL, jobVisibility, jobHeartbeat)
	}
	if jobHeartbeat*2 > jobVisibility {
		t.Fatalf("jobHeartbeat %s leaves no room for one missed beat within jobVisibility %s", jobHeartbeat, jobVisibility)
	}
}
