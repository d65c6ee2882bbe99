package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shipbot/shipbot/internal/store/record"
	"github.com/shipbot/shipbot/internal/testenv"
	bolt "go.etcd.io/bbolt"
)

// auditExportSize is the figure: GET /audit.jsonl of 100,000
// entries in at most 2 s and 50 MB RSS.
const auditExportSize = 100_000

// BenchmarkAuditExport streams the whole audit log of auditExportSize
// entries through EachAudit, encoding each as a line of JSON as the export
// does, on real Redis and on the embedded store. It reports entries/s and
// the most Go heap in use while streaming (sampled every 10,000 entries),
// and the process' RSS at the end (the memory filling the log took is
// given back to the OS first; the embedded file's mapped pages count in
// rss-MB, not in rss-anon-MB).
//
//	go test -run '^$' -bench AuditExport -benchtime 5x ./internal/store/
func BenchmarkAuditExport(b *testing.B) {
	ctx := context.Background()
	b.Run("redis", func(b *testing.B) {
		srv := testenv.StartRedis(b)
		client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		defer client.Close()
		s := NewRedis(client, "bench")
		fillRedisAudit(b, ctx, s, auditExportSize)
		benchAuditExport(b, s.EachAudit)
	})
	b.Run("embedded", func(b *testing.B) {
		e, err := OpenEmbedded(b.TempDir() + "/store.db")
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		fillEmbeddedAudit(b, e, auditExportSize)
		benchAuditExport(b, e.EachAudit)
	})
}

// benchEntry is a plausible entry: a deploy's start, its text and link.
func benchEntry(i int, now time.Time) record.AuditEntry {
	e := record.AuditEntry{
		At: now.Add(-time.Duration(auditExportSize-i) * time.Second), Actor: "octocat",
		Repo: fmt.Sprintf("octo/app%d", i%20), Env: []string{"production", "staging"}[i%2],
		Action: record.AuditActions()[i%len(record.AuditActions())], Outcome: record.OutcomeSuccess,
		Text: "rolling out abc1234 (Merge pull request #42 from octo/feature) in 4 batches",
		Link: "https://shipbot.example.com/deploys/" + strconv.Itoa(i),
	}
	if err := prepareAudit(&e, now); err != nil {
		panic(err)
	}
	return e
}

// fillRedisAudit appends n entries with the store's own script, pipelined.
func fillRedisAudit(b *testing.B, ctx context.Context, r *Redis, n int) {
	if err := r.scripts.appendAudit.Load(ctx, r.client).Err(); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for start := 0; start < n; start += 1000 {
		pipe := r.client.Pipeline()
		for i := start; i < min(start+1000, n); i++ {
			e := benchEntry(i, now)
			blob, _ := json.Marshal(e)
			keys := []string{r.key("audit", "seq"), r.key("audit", "entries"), r.key("audit", "all"), r.key("audit", "repo", e.Repo)}
			r.scripts.appendAudit.EvalSha(ctx, pipe, keys, auditIDPrefix(e.At), blob, auditCutoff(now), auditTrimBatch, r.key("audit", "repo", ""))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// fillEmbeddedAudit appends n entries through appendAuditTx, many to a
// transaction: one fsync each would take minutes.
func fillEmbeddedAudit(b *testing.B, e *Embedded, n int) {
	now := time.Now()
	for start := 0; start < n; start += 10_000 {
		err := e.db.Update(func(tx *bolt.Tx) error {
			for i := start; i < min(start+10_000, n); i++ {
				entry := benchEntry(i, now)
				if err := appendAuditTx(tx, &entry, auditCutoff(now)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func benchAuditExport(b *testing.B, each func(context.Context, record.AuditFilter, func(record.AuditEntry) error) error) {
	var ms runtime.MemStats
	var peak uint64
	debug.FreeOSMemory() // what filling the log took is not the export's
	for b.Loop() {
		w := bufio.NewWriter(io.Discard)
		enc := json.NewEncoder(w)
		count := 0
		err := each(context.Background(), record.AuditFilter{}, func(e record.AuditEntry) error {
			if count++; count%10_000 == 0 {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
			return enc.Encode(e)
		})
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			b.Fatal(err)
		}
		if count != auditExportSize {
			b.Fatalf("streamed %d entries, want %d", count, auditExportSize)
		}
	}
	b.ReportMetric(float64(auditExportSize*b.N)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/export")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
	b.ReportMetric(procStatusMB("VmRSS:"), "rss-MB")
	b.ReportMetric(procStatusMB("RssAnon:"), "rss-anon-MB")
}

// procStatusMB reads a size from /proc/self/status (VmRSS: the resident
// set; RssAnon: its part not backed by a file, which leaves out the
// embedded store's memory-mapped file); 0 where there is no /proc.
func procStatusMB(field string) float64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(status) {
		if rest, ok := bytes.CutPrefix(line, []byte(field)); ok {
			kb, _ := strconv.ParseFloat(string(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte(" kB"))), 64)
			return kb / 1024
		}
	}
	return 0
}
