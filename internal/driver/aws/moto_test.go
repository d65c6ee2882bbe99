package aws

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/smithy-go/logging"

	"github.com/shipbot/shipbot/internal/driver/aws/awstest"
)

// startMoto is a moto_server of the test's own (awstest.StartMoto).
func startMoto(t *testing.T) string {
	t.Helper()
	return awstest.StartMoto(t)
}

// call is one AWS request as the recorder saw it on the wire.
type call struct {
	Action string     // the API's operation, e.g. "DeregisterTargets"
	Form   url.Values // Query-protocol parameters (EC2, ELBv2)
	JSON   map[string]any
}

// recorder is the SDK's HTTP client in tests: it records every request in
// the order sent and can answer one itself instead of moto (to simulate
// what moto cannot: failed commands, endless draining).
type recorder struct {
	base   *http.Client
	mu     sync.Mutex
	calls  []call
	inject func(c call) *http.Response // nil result: pass to moto
}

func newRecorder() *recorder { return &recorder{base: &http.Client{}} }

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	c := call{}
	if target := req.Header.Get("X-Amz-Target"); target != "" {
		c.Action = target[strings.LastIndex(target, ".")+1:]
		_ = json.Unmarshal(body, &c.JSON)
	} else if form, err := url.ParseQuery(string(body)); err == nil {
		c.Form = form
		c.Action = form.Get("Action")
	}
	r.mu.Lock()
	r.calls = append(r.calls, c)
	inject := r.inject
	r.mu.Unlock()
	if inject != nil {
		if resp := inject(c); resp != nil {
			resp.Request = req
			return resp, nil
		}
	}
	return r.base.Do(req)
}

func (r *recorder) setInject(fn func(c call) *http.Response) {
	r.mu.Lock()
	r.inject = fn
	r.mu.Unlock()
}

// snapshot is the calls so far, optionally only those of actions.
func (r *recorder) snapshot(actions ...string) []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []call
	for _, c := range r.calls {
		if len(actions) == 0 || contains(actions, c.Action) {
			out = append(out, c)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// targetIDs are the Targets.member.N.Id of a Query-protocol ELBv2 call.
func (c call) targetIDs() []string {
	var ids []string
	for n := 1; ; n++ {
		id := c.Form.Get(fmt.Sprintf("Targets.member.%d.Id", n))
		if id == "" {
			return ids
		}
		ids = append(ids, id)
	}
}

func jsonResponse(status int, v any) *http.Response {
	b, _ := json.Marshal(v)
	return &http.Response{
		StatusCode: status, Status: http.StatusText(status), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/x-amz-json-1.1"}, "X-Amzn-Requestid": {"injected"}},
		Body:          io.NopCloser(bytes.NewReader(b)),
		ContentLength: int64(len(b)),
	}
}

func xmlResponse(status int, body string) *http.Response {
	return &http.Response{
		StatusCode: status, Status: http.StatusText(status), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"text/xml"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
	}
}

// setupConfig is cfg for the clients a test sets moto up with (around the
// recorder): each retry the SDK makes is logged with its reason, since a
// retried create that had already been applied shows up later as a
// conflict (InvalidSubnet.Conflict) that is otherwise hard to explain.
func setupConfig(t *testing.T, cfg awssdk.Config) awssdk.Config {
	cfg.ClientLogMode = awssdk.LogRetries
	cfg.Logger = logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
		t.Logf("setup client %s: "+format, append([]any{c}, v...)...)
	})
	return cfg
}
