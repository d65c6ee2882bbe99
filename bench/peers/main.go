// Command peers is what shipbot's intake is measured against in
// bench/sidebyside.sh: the same signed deliveries, the same load generator,
// one system at a time. It is a separate module so that the bot's go.mod
// does not carry go-githubapp.
//
//	peers -mode hmac        HTTP + HMAC, nothing stored (the floor of any intake)
//	peers -mode hmac-redis  HTTP + HMAC + one Redis round trip per delivery:
//	                        SET NX on the delivery id and XADD, in one script
//	                        (the floor of a durable intake with one round trip)
//	peers -mode githubapp   a minimal github.com/palantir/go-githubapp server:
//	                        its dispatcher with a handler that does nothing,
//	                        nothing stored (non-durable)
package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/palantir/go-githubapp/githubapp"
	"github.com/redis/go-redis/v9"
)

func main() {
	mode := flag.String("mode", "hmac", "hmac, hmac-redis or githubapp")
	addr := flag.String("addr", "127.0.0.1:3100", "listen address")
	secret := flag.String("secret", "", "webhook secret")
	redisURL := flag.String("redis", "", "Redis URL (hmac-redis)")
	flag.Parse()
	if *secret == "" {
		log.Fatal("peers: -secret is required")
	}
	var h http.Handler
	switch *mode {
	case "hmac":
		h = &floor{secret: []byte(*secret)}
	case "hmac-redis":
		opt, err := redis.ParseURL(*redisURL)
		if err != nil {
			log.Fatalf("peers: -redis: %v", err)
		}
		opt.PoolSize = 128
		c := redis.NewClient(opt)
		if err := c.Ping(context.Background()).Err(); err != nil {
			log.Fatalf("peers: Redis at %s: %v", opt.Addr, err)
		}
		h = &floor{secret: []byte(*secret), redis: c}
	case "githubapp":
		h = githubapp.NewEventDispatcher([]githubapp.EventHandler{nothing{}}, *secret)
	default:
		log.Fatalf("peers: unknown -mode %q", *mode)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks", h)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(os.Stderr, "peers: %s on %s\n", *mode, *addr)
	log.Fatal(srv.ListenAndServe())
}

// nothing is a go-githubapp handler for the events the load generator sends.
type nothing struct{}

func (nothing) Handles() []string { return []string{"pull_request", "push"} }
func (nothing) Handle(context.Context, string, string, []byte) error {
	return nil
}

// enqueue is the one round trip of hmac-redis: dedupe and store atomically.
var enqueue = redis.NewScript(`if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return false end
return redis.call('XADD', KEYS[2], '*', 'j', ARGV[2])`)

// floor verifies the signature and, with Redis, stores the delivery.
type floor struct {
	secret []byte
	redis  *redis.Client
	bufs   sync.Pool
}

func (f *floor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	buf, _ := f.bufs.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	defer f.bufs.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, 25<<20)); err != nil {
		http.Error(w, "cannot read the body", http.StatusBadRequest)
		return
	}
	if !f.valid(r.Header.Get("X-Hub-Signature-256"), buf.Bytes()) {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if f.redis != nil {
		err := enqueue.Run(r.Context(), f.redis, []string{"d:" + r.Header.Get("X-GitHub-Delivery"), "jobs"}, 7*24*3600*1000, buf.Bytes()).Err()
		switch {
		case err == redis.Nil:
			w.WriteHeader(http.StatusOK)
			return
		case err != nil:
			http.Error(w, "store unavailable", http.StatusServiceUnavailable)
			return
		}
	}
	w.WriteHeader(http.StatusAccepted)
}

func (f *floor) valid(header string, body []byte) bool {
	const prefix = "sha256="
	if len(header) != len(prefix)+64 || header[:len(prefix)] != prefix {
		return false
	}
	var want [32]byte
	if _, err := hex.Decode(want[:], []byte(header[len(prefix):])); err != nil {
		return false
	}
	mac := hmac.New(sha256.New, f.secret)
	mac.Write(body)
	return hmac.Equal(mac.Sum(nil), want[:])
}
