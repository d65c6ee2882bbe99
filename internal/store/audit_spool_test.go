package store

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/store/record"
)

func spoolEntry(text string) record.AuditEntry {
	return record.AuditEntry{Actor: "cli:alice", Repo: "octo-org/web", Env: "production", Action: record.ActionSecretSet, Outcome: record.OutcomeSuccess, Text: text}
}

func auditTexts(t *testing.T, e *Embedded) []string {
	t.Helper()
	var out []string
	err := e.EachAudit(context.Background(), record.AuditFilter{}, func(a record.AuditEntry) error {
		out = append(out, a.Text)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(out) // oldest first
	return out
}

// TestAuditSpool: entries spooled while another opener holds the store
// reach the log at the next import, with their own time, once each — also
// when an import died before it emptied the spool — and a torn line costs
// only itself.
func TestAuditSpool(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e, err := OpenEmbedded(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	spool := filepath.Join(dir, AuditSpoolName)

	if n, err := e.ImportAuditSpool(ctx, dir); n != 0 || err != nil {
		t.Fatalf("import without a spool: %d, %v", n, err)
	}
	at := time.Now().UTC().Add(-24 * time.Hour).Truncate(time.Second)
	first := spoolEntry("A set")
	first.At = at
	for _, x := range []record.AuditEntry{first, spoolEntry("B set")} {
		if err := SpoolAudit(dir, x); err != nil {
			t.Fatal(err)
		}
	}
	if err := SpoolAudit(dir, record.AuditEntry{Actor: "cli:alice", Action: "secret.peek", Outcome: record.OutcomeSuccess}); err == nil {
		t.Fatal("an entry the log would refuse was spooled")
	}
	spooled, _ := os.ReadFile(spool)
	if n, err := e.ImportAuditSpool(ctx, dir); n != 2 || err != nil {
		t.Fatalf("import: %d, %v", n, err)
	}
	if got := auditTexts(t, e); !slices.Equal(got, []string{"A set", "B set"}) {
		t.Fatalf("log %q", got)
	}
	page, _ := e.ListAudit(ctx, record.AuditFilter{Limit: 2})
	if old := page.Entries[1]; !old.At.Equal(at) || old.Actor != "cli:alice" || old.Env != "production" {
		t.Fatalf("imported entry %+v; want it as spooled, at %v", old, at)
	}
	if b, _ := os.ReadFile(spool); len(b) != 0 {
		t.Fatalf("spool after the import: %q", b)
	}

	// The bot died after the import's transaction, before emptying the
	// spool: the same bytes are still there, and one more entry after them.
	if err := os.WriteFile(spool, spooled, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := SpoolAudit(dir, spoolEntry("C set")); err != nil {
		t.Fatal(err)
	}
	if n, err := e.ImportAuditSpool(ctx, dir); n != 1 || err != nil {
		t.Fatalf("import after a torn import: %d, %v", n, err)
	}
	if got := auditTexts(t, e); !slices.Equal(got, []string{"A set", "B set", "C set"}) {
		t.Fatalf("log %q", got)
	}

	// A writer died mid-line: the next entry still lands.
	if err := os.WriteFile(spool, []byte(`{"actor":"cli:bob","act`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := SpoolAudit(dir, spoolEntry("D set")); err != nil {
		t.Fatal(err)
	}
	n, err := e.ImportAuditSpool(ctx, dir)
	if n != 1 || err == nil || !strings.Contains(err.Error(), "1 unreadable lines") {
		t.Fatalf("import with a torn line: %d, %v", n, err)
	}
	if got := auditTexts(t, e); !slices.Equal(got, []string{"A set", "B set", "C set", "D set"}) {
		t.Fatalf("log %q", got)
	}
}
