package handlers

import (
	"path/filepath"
	"testing"

	"github.com/shipbot/shipbot/internal/store"
)

// Both stores are what the handlers need.
var (
	_ Store = (*store.Embedded)(nil)
	_ Store = (*store.Redis)(nil)
)

// openStore is an embedded store in the test's directory.
func openStore(t *testing.T) *store.Embedded {
	t.Helper()
	st, err := store.OpenEmbedded(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
