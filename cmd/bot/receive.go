package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/shipbot/shipbot/internal/config"
	"github.com/shipbot/shipbot/webhooks"
)

// receive signs a payload file with WEBHOOK_SECRET and posts it to a running
// bot with the headers GitHub sends, so a delivery can be replayed by hand.
func receive(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("receive", flag.ContinueOnError)
	fs.SetOutput(stderr)
	event := fs.String("e", "", "event name, as in X-GitHub-Event (push, pull_request, ...)")
	file := fs.String("p", "", "payload file (JSON)")
	target := fs.String("url", "http://localhost:3000/webhooks", "where to deliver")
	delivery := fs.String("delivery", "", "X-GitHub-Delivery to send (default: a new random id)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *event == "" || *file == "" || fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("receive needs -e EVENT and -p FILE, e.g. bot receive -e push -p fixtures/webhooks/push.json")
	}
	dotenv, err := config.ReadDotenv(".env")
	if err != nil {
		return err
	}
	cfg, err := config.Load(getenv, dotenv)
	if err != nil {
		return err
	}
	if len(cfg.WebhookSecret) == 0 {
		return fmt.Errorf("WEBHOOK_SECRET is not set: set it to the running bot's webhook secret so the delivery can be signed")
	}
	body, err := os.ReadFile(*file)
	if err != nil {
		return fmt.Errorf("cannot read the payload file: %w", err)
	}
	if !json.Valid(body) {
		return fmt.Errorf("%s is not valid JSON: GitHub only sends JSON payloads", *file)
	}
	id := *delivery
	if id == "" {
		id = newDeliveryID()
	}
	code, status, answer, err := deliver(ctx, *target, *event, id, cfg.WebhookSecret, cfg.AppID, body)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %s → %s\n%s", *event, id, status, answer)
	if len(answer) > 0 && answer[len(answer)-1] != '\n' {
		fmt.Fprintln(stdout)
	}
	if code >= 300 {
		return fmt.Errorf("the bot answered %s", status)
	}
	return nil
}

// deliver posts a payload to a bot with the headers and signatures GitHub
// sends, and returns the HTTP status (code and line) and the body of the
// answer.
func deliver(ctx context.Context, target, event, id string, secret []byte, appID int64, body []byte) (code int, status string, answer []byte, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, "", nil, fmt.Errorf("--url %q: %w", target, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "GitHub-Hookshot/shipbot-receive")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", id)
	req.Header.Set("X-GitHub-Hook-ID", "0")
	req.Header.Set("X-GitHub-Hook-Installation-Target-Type", "integration")
	req.Header.Set("X-GitHub-Hook-Installation-Target-ID", fmt.Sprint(appID))
	req.Header.Set("X-Hub-Signature-256", webhooks.Sign(secret, body))
	mac := hmac.New(sha1.New, secret)
	mac.Write(body)
	req.Header.Set("X-Hub-Signature", "sha1="+hex.EncodeToString(mac.Sum(nil)))

	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", nil, fmt.Errorf("delivery to %s failed: %w (is the bot running? start it with `bot serve`)", target, err)
	}
	defer resp.Body.Close()
	answer, _ = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, resp.Status, answer, nil
}

// newDeliveryID returns a random UUID, the form GitHub's delivery ids take.
func newDeliveryID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
