package main

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestHostIDIsOnePerDataDir: bots starting at once on one DATA_DIR agree
// on its host id, a restart reads the same one, another DATA_DIR gets
// another, and a damaged file stops start-up saying what to do.
func TestHostIDIsOnePerDataDir(t *testing.T) {
	dir := t.TempDir()
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := readHostID(dir)
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id == "" || id != ids[0] {
			t.Fatalf("bots starting together on one DATA_DIR got host ids %v", ids)
		}
	}
	if again, err := readHostID(dir); err != nil || again != ids[0] {
		t.Errorf("after a restart the host id is %q (%v), want %q", again, err, ids[0])
	}
	if other, err := readHostID(t.TempDir()); err != nil || other == ids[0] {
		t.Errorf("another DATA_DIR got host id %q (%v), want one of its own", other, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "local", hostIDFile), []byte("a:b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readHostID(dir); err == nil || !strings.Contains(err.Error(), "not a host id") {
		t.Errorf("a damaged host-id file: %v, want an error naming it", err)
	}
}
