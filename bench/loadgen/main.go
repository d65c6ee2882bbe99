// Command loadgen posts signed webhook deliveries to a running bot, at a fixed
// rate or as fast as it can, and reports throughput and latency percentiles.
// Every delivery has a fresh X-GitHub-Delivery so each one is really queued:
// a random UUID, as GitHub sends, so that a store indexing the ids meets
// them in no particular order.
//
//	go run ./bench/loadgen -url http://127.0.0.1:3000/webhooks -secret S -payload FILE -rate 1000 -duration 10s
package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	target := flag.String("url", "http://127.0.0.1:3000/webhooks", "webhook endpoint")
	secret := flag.String("secret", "", "webhook secret")
	payloadFile := flag.String("payload", "", "JSON payload file")
	event := flag.String("event", "pull_request", "X-GitHub-Event")
	rate := flag.Int("rate", 0, "requests per second (0: as fast as -concurrency allows)")
	duration := flag.Duration("duration", 10*time.Second, "how long to send (bounded: at most 2m)")
	concurrency := flag.Int("concurrency", 64, "connections / in-flight requests")
	flag.Parse()
	if *secret == "" || *payloadFile == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -secret and -payload are required")
		os.Exit(2)
	}
	if *duration > 2*time.Minute {
		*duration = 2 * time.Minute
	}
	body, err := os.ReadFile(*payloadFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	mac := hmac.New(sha256.New, []byte(*secret))
	mac.Write(body)
	sig := "sha256=" + hex.EncodeToString(mac.Sum(nil))

	client := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: *concurrency, MaxConnsPerHost: *concurrency,
		DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
	}, Timeout: 10 * time.Second}

	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	var fails atomic.Int64
	statuses := sync.Map{}
	var mu sync.Mutex
	lat := make([]time.Duration, 0, 1<<20)
	send := func() {
		req, _ := http.NewRequest(http.MethodPost, *target, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", *event)
		req.Header.Set("X-GitHub-Delivery", deliveryID())
		req.Header.Set("X-Hub-Signature-256", sig)
		start := time.Now()
		resp, err := client.Do(req)
		d := time.Since(start)
		if err != nil {
			fails.Add(1)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		c, _ := statuses.LoadOrStore(resp.StatusCode, new(atomic.Int64))
		c.(*atomic.Int64).Add(1)
		if resp.StatusCode/100 != 2 {
			fails.Add(1)
		}
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
	}

	begin := time.Now()
	var wg sync.WaitGroup
	if *rate > 0 {
		// Open-loop: requests leave on schedule whether or not earlier ones
		// have returned, so slow answers show up as latency, not lower rate.
		sem := make(chan struct{}, *concurrency*4)
		interval := time.Second / time.Duration(*rate)
		next := time.Now()
		for ctx.Err() == nil {
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			select {
			case sem <- struct{}{}:
			default:
				fails.Add(1) // the bot is so far behind that we cannot keep the schedule
				continue
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer func() { <-sem }(); send() }()
		}
	} else {
		for i := 0; i < *concurrency; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					send()
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(begin)

	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(float64(len(lat))*p))]
	}
	fmt.Printf("requests %d in %.1fs = %.0f req/s (payload %d bytes, rate %d, concurrency %d)\n",
		len(lat), elapsed.Seconds(), float64(len(lat))/elapsed.Seconds(), len(body), *rate, *concurrency)
	fmt.Printf("latency p50 %v  p90 %v  p99 %v  p99.9 %v  max %v\n", pct(.50), pct(.90), pct(.99), pct(.999), pct(1))
	fmt.Printf("failures %d;", fails.Load())
	statuses.Range(func(k, v any) bool { fmt.Printf(" %d×%d", v.(*atomic.Int64).Load(), k); return true })
	fmt.Println()
	if fails.Load() > 0 {
		os.Exit(1)
	}
}

// deliveryID is a random (version 4) UUID in GitHub's lowercase form.
func deliveryID() string {
	var u [16]byte
	binary.BigEndian.PutUint64(u[:8], rand.Uint64())
	binary.BigEndian.PutUint64(u[8:], rand.Uint64())
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
