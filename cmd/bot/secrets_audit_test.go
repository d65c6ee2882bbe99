package main

import (
	"context"
	"encoding/json"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/store"
	"github.com/shipbot/shipbot/internal/store/record"
)

// secretsAuditRun sets a secret, removes it, and removes it again (which
// fails), as `bot secrets` does: the three entries the audit log must get.
func secretsAuditRun(t *testing.T, e secretsEnv) {
	t.Helper()
	if _, _, err := e.run(t, nil, secretValue+"\n", "set", "octo-org/web", "production", "DATABASE_URL"); err != nil {
		t.Fatal(err)
	}
	// list changes nothing and writes no entry.
	if _, _, err := e.run(t, nil, "", "list", "octo-org/web"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.run(t, nil, "", "unset", "octo-org/web", "production", "DATABASE_URL"); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := e.run(t, nil, "", "unset", "octo-org/web", "production", "DATABASE_URL"); err == nil || stderr != "" {
		t.Fatalf("unset of a secret not set: %v, stderr %q", err, stderr)
	}
}

// checkSecretsAudit checks the entries secretsAuditRun wrote, newest
// first, and that none holds the value.
func checkSecretsAudit(t *testing.T, got []record.AuditEntry) {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ action, outcome, text string }{
		{record.ActionSecretUnset, record.OutcomeFailure, "DATABASE_URL: "},
		{record.ActionSecretUnset, record.OutcomeSuccess, "DATABASE_URL removed with bot secrets"},
		{record.ActionSecretSet, record.OutcomeSuccess, "DATABASE_URL set with bot secrets"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d audit entries, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Actor != "cli:"+u.Username || g.Repo != "octo-org/web" || g.Env != "production" || g.Action != w.action || g.Outcome != w.outcome ||
			!strings.HasPrefix(g.Text, w.text) || g.ID == "" || time.Since(g.At) > time.Minute {
			t.Errorf("entry %d = %+v; want %s %s %q… by cli:%s in octo-org/web production", i, g, w.action, w.outcome, w.text, u.Username)
		}
		if b, _ := json.Marshal(g); strings.Contains(string(b), "hunter2") {
			t.Errorf("entry %d holds the value: %s", i, b)
		}
	}
}

func allAudit(t *testing.T, log interface {
	EachAudit(context.Context, record.AuditFilter, func(record.AuditEntry) error) error
}) []record.AuditEntry {
	t.Helper()
	var out []record.AuditEntry
	if err := log.EachAudit(context.Background(), record.AuditFilter{}, func(e record.AuditEntry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSecretsAuditRedis: with Redis, `bot secrets` appends straight to
// the audit log there.
func TestSecretsAuditRedis(t *testing.T) {
	e := redisSecrets(t)
	secretsAuditRun(t, e)
	url := e.env["REDIS_URL"]
	checkSecretsAudit(t, allAudit(t, store.NewRedis(redisClient(t, url), "shipbot")))
	assertRedisLacks(t, url, "hunter2")
}

// TestSecretsAuditSpool: on the embedded store, held by another opener
// (a running bot), `bot secrets` spools its entries in DATA_DIR; the
// holder's import puts them in the log, once.
func TestSecretsAuditSpool(t *testing.T) {
	e := embeddedSecrets(t)
	dir := e.env["DATA_DIR"]
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "state.db")
	es, err := store.OpenEmbedded(path)
	if err != nil {
		t.Fatal(err)
	}
	secretsAuditRun(t, e)
	spool, err := os.ReadFile(filepath.Join(dir, store.AuditSpoolName))
	if err != nil || strings.Count(string(spool), "\n") != 3 || strings.Contains(string(spool), "hunter2") {
		t.Fatalf("spool: %v\n%s", err, spool)
	}
	ctx := context.Background()
	if n, err := es.ImportAuditSpool(ctx, dir); n != 3 || err != nil {
		t.Fatalf("import: %d, %v", n, err)
	}
	if n, err := es.ImportAuditSpool(ctx, dir); n != 0 || err != nil {
		t.Fatalf("import again: %d, %v", n, err)
	}
	checkSecretsAudit(t, allAudit(t, es))
	if err := es.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"state.db", store.AuditSpoolName, "secrets.json"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || strings.Contains(string(b), "hunter2") {
			t.Errorf("%s: %v, or it holds the value", name, err)
		}
	}
}

// TestSecretsAuditWhileServing: the running bot takes in what `bot
// secrets` spooled within seconds, and shows it at /audit.jsonl.
func TestSecretsAuditWhileServing(t *testing.T) {
	e := embeddedSecrets(t)
	b := startBot(t, map[string]string{"DATA_DIR": e.env["DATA_DIR"], "SECRETS_KEY": e.env["SECRETS_KEY"], "DASHBOARD_TOKEN": dashboardToken})
	secretsAuditRun(t, e)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var got []record.AuditEntry
		for line := range strings.SplitSeq(strings.TrimSpace(dashboardGet(t, b.url+"/audit.jsonl?repo=octo-org/web")), "\n") {
			var x record.AuditEntry
			if line != "" && json.Unmarshal([]byte(line), &x) == nil && strings.HasPrefix(x.Action, "secret.") {
				got = append(got, x)
			}
		}
		if len(got) == 3 {
			checkSecretsAudit(t, got)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20s the bot's audit log has %d of the 3 entries: %+v\n%s", len(got), got, b.logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
