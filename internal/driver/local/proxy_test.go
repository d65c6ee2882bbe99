package local

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// startProxy serves a bare proxy on a free port.
func startProxy(t *testing.T) (*proxy, string) {
	t.Helper()
	p := newProxy("acme/web test", slog.New(slog.DiscardHandler))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); p.serve(ln) }()
	t.Cleanup(func() {
		p.shutdown(context.Background())
		<-done
	})
	return p, "http://" + ln.Addr().String()
}

// backendOf is the backend of srv behind p, running release.
func backendOf(t *testing.T, p *proxy, srv *httptest.Server, release string) *backend {
	t.Helper()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	return p.newBackend(fmt.Sprintf("b%d", port), release, port)
}

func TestProxyNoInstanceInRotation(t *testing.T) {
	_, url := startProxy(t)
	code, body, err := get(url + "/x")
	if err != nil || code != 503 || body != "shipbot: no instance of acme/web test is in rotation\n" {
		t.Fatalf("%d %q %v; want 503 with one line", code, body, err)
	}
}

func TestProxyRetriesARefusedConnectionOnAnotherInstance(t *testing.T) {
	p, url := startProxy(t)
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
	}))
	defer ok.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	goneB := backendOf(t, p, gone, "gone")
	gone.Close() // refuses connections from now on
	okB := backendOf(t, p, ok, "ok")
	p.add(goneB)
	p.add(okB)

	for i := range 10 {
		code, body, err := get(url + "/a")
		if err != nil || code != 200 || body != "GET /a " {
			t.Fatalf("GET %d: %d %q %v", i, code, body, err)
		}
		resp, err := client.Post(url+"/b", "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "POST /b payload" {
			t.Fatalf("POST %d: %d %q; want the body replayed on the live instance", i, resp.StatusCode, b)
		}
	}
	if n := goneB.inflight.Load() + okB.inflight.Load(); n != 0 {
		t.Errorf("%d requests still counted in flight", n)
	}

	// Only the dead one left: a one-line 502.
	p.remove(okB)
	code, body, _ := get(url + "/a")
	if code != 502 || strings.Count(body, "\n") != 1 || !strings.Contains(body, goneB.instance) {
		t.Errorf("%d %q; want a one-line 502 naming the instance", code, body)
	}
}

func TestProxyStreamsAndCountsInFlight(t *testing.T) {
	p, url := startProxy(t)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "second\n")
	}))
	defer srv.Close()
	b := backendOf(t, p, srv, "srv")
	p.add(b)

	resp, err := client.Get(url + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	line, err := rd.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first chunk %q %v: not flushed through", line, err)
	}
	if n := b.inflight.Load(); n != 1 {
		t.Errorf("in flight while streaming: %d, want 1", n)
	}
	// A drain waits for the stream to end.
	p.remove(b)
	drained := make(chan struct{})
	go func() {
		for b.inflight.Load() > 0 {
			time.Sleep(time.Millisecond)
		}
		close(drained)
	}()
	select {
	case <-drained:
		t.Fatal("drained while a response was still streaming")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	rest, _ := io.ReadAll(rd)
	if string(rest) != "second\n" {
		t.Errorf("rest %q", rest)
	}
	select {
	case <-drained:
	case <-time.After(2 * time.Second):
		t.Fatal("still in flight after the stream ended")
	}
}

func TestProxyStreamsALargeBodyWithoutBufferingIt(t *testing.T) {
	p, url := startProxy(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	}))
	defer srv.Close()
	p.add(backendOf(t, p, srv, "srv"))
	const size = 3 * maxReplayBody
	// Unknown length (chunked), so the proxy finds out it is large by reading.
	resp, err := client.Post(url+"/upload", "application/octet-stream", io.LimitReader(zeros{}, size))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != fmt.Sprint(size) {
		t.Fatalf("%d %q; want the whole %d bytes through", resp.StatusCode, b, size)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
