package main

import (
	"context"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/internal/testenv"
)

// TestDemo runs `bot demo --exit` start to finish, as a user would, and
// checks that it tells the whole story and leaves nothing behind: no
// directory, no instance answering.
func TestDemo(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs the sample app many times")
	}
	var out, errOut testenv.Buffer
	port := testenv.FreePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	err := run(ctx, []string{"demo", "--exit", "--port", strconv.Itoa(port)}, func(string) string { return "" }, &out, &errOut)
	text := out.String()
	t.Logf("bot demo printed:\n%s%s", text, errOut.String())
	if err != nil {
		t.Fatalf("bot demo: %v", err)
	}
	for i := 1; i <= demoSteps; i++ {
		if !strings.Contains(text, strconv.Itoa(i)+"/"+strconv.Itoa(demoSteps)+"  ") {
			t.Errorf("step %d missing", i)
		}
	}
	// Every step but the two bad releases succeeds; those are rolled back,
	// the one that fails requests by its error rate.
	if got := strings.Count(text, "✓ "); got != demoSteps-2 {
		t.Errorf("%d successful steps, want %d", got, demoSteps-2)
	}
	if got := strings.Count(text, "✗ production failure: Rolled back"); got != 2 {
		t.Errorf("%d bad releases reported as rolled back, want 2", got)
	}
	if !regexp.MustCompile(`error rate \d+% on f1a4f1a vs \d+(\.\d+)?% on `).MatchString(text) {
		t.Error("the release that fails requests was not halted by its error rate against the release it replaces")
	}
	for _, want := range []string{"pr-42 success", "staging success", "/deploys/rollback-", "http://localhost:" + strconv.Itoa(port) + "/"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}

	// Cleaned up: the directory is gone and no instance answers.
	if m := regexp.MustCompile(`removing (\S+) `).FindStringSubmatch(text); m == nil {
		t.Error("the demo did not say what it removes")
	} else if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("%s still exists after the demo (%v)", m[1], err)
	}
	client := &http.Client{Timeout: time.Second}
	for _, u := range regexp.MustCompile(`open (http://127\.0\.0\.1:\d+)`).FindAllStringSubmatch(text, -1) {
		if resp, err := client.Get(u[1]); err == nil {
			resp.Body.Close()
			t.Errorf("%s still answers after the demo", u[1])
		}
	}
}
