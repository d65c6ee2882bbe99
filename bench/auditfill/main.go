// Command auditfill appends N plausible entries to the audit log of the
// store in Redis at -redis (prefix "shipbot", as `bot serve` uses), through
// the store's own AppendAudit, for bench/audit.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shipbot/shipbot/internal/store"
	"github.com/shipbot/shipbot/internal/store/record"
)

func main() {
	url := flag.String("redis", "", "Redis URL")
	n := flag.Int("n", 100_000, "entries to append")
	flag.Parse()
	opt, err := redis.ParseURL(*url)
	if err != nil {
		log.Fatalf("-redis: %v", err)
	}
	client := redis.NewClient(opt)
	defer client.Close()
	st := store.NewRedis(client, "shipbot")
	ctx := context.Background()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= *n {
					return
				}
				e := record.AuditEntry{
					Actor: "octocat", Repo: fmt.Sprintf("octo/app%d", i%20), Env: []string{"production", "staging"}[i%2],
					Action: record.ActionDeployStarted, Outcome: record.OutcomeSuccess,
					Text: "rolling out abc1234 (Merge pull request #42 from octo/feature) in 4 batches",
					Link: "https://shipbot.example.com/deploys/" + strconv.Itoa(i),
				}
				if _, err := st.AppendAudit(ctx, e); err != nil {
					log.Fatal(err)
				}
			}
		}()
	}
	wg.Wait()
	fmt.Fprintf(os.Stderr, "appended %d entries in %s\n", *n, time.Since(start).Round(time.Millisecond))
}
