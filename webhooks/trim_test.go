package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/shipbot/shipbot/fixtures"
	"github.com/shipbot/shipbot/queue"
)

// trimmed runs doc through intake's scan and then trim, keeping the
// members whose raw key is in keep.
func trimmed(t *testing.T, doc []byte, keep ...string) queue.Job {
	t.Helper()
	j, p := decode("push", "d", "application/json", doc, nil, new([]int32))
	if p != nil {
		t.Fatal(p.msg)
	}
	out, _ := trim(j, func(k []byte) bool { return slices.Contains(keep, string(k)) }, nil, nil)
	return out
}

// checkTrim: the trimmed document is JSON whose members are the original's
// less the dropped ones, with the same values, and its outline is the one
// intake's scan finds in it.
func checkTrim(t *testing.T, orig []byte, j queue.Job) {
	t.Helper()
	var before, after map[string]json.RawMessage
	if err := json.Unmarshal(orig, &before); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(j.Payload, &after); err != nil {
		t.Fatalf("trimmed payload is not JSON: %v\n%s", err, j.Payload)
	}
	for _, d := range j.Dropped {
		if _, ok := before[d]; !ok {
			t.Errorf("dropped %q, which the payload does not have", d)
		}
		delete(before, d)
	}
	if len(before) != len(after) {
		t.Errorf("trimmed payload has members %v, want %v", keys(after), keys(before))
	}
	for k, v := range before {
		if !bytes.Equal(bytes.TrimSpace(after[k]), bytes.TrimSpace(v)) {
			t.Errorf("member %q is %s after trimming, %s before", k, after[k], v)
		}
	}
	if got, want := j.Outline, fixtures.Outline(j.Payload); !slices.Equal(got, want) {
		t.Errorf("outline %v, want %v for %s", got, want, j.Payload)
	}
}

func keys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestTrimLeavesOutWhatNoHandlerReads(t *testing.T) {
	spaced := []byte(" {\n \"a\" : [1, {\"b\":\"}\"}] ,\t\"c\\u0022\":\"x\\\"\" , \"d\":null,\"e\":-1.5e3 } ")
	for _, tc := range []struct {
		name    string
		doc     []byte
		keep    []string
		dropped []string
	}{
		{"first member", []byte(`{"a":1,"b":{"c":[2]},"c":"}"}`), []string{"b", "c"}, []string{"a"}},
		{"last member", []byte(`{"a":1,"b":{"c":[2]},"c":"}"}`), []string{"a", "b"}, []string{"c"}},
		{"middle", []byte(`{"a":1,"b":{"c":[2]},"c":"}"}`), []string{"a", "c"}, []string{"b"}},
		{"all of them", []byte(`{"a":1,"b":2}`), nil, []string{"a", "b"}},
		{"whitespace and escapes", spaced, []string{"a", `c\u0022`}, []string{"d", "e"}},
		{"an escaped key dropped", spaced, []string{"a", "d", "e"}, []string{`c"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := trimmed(t, tc.doc, tc.keep...)
			if !slices.Equal(j.Dropped, tc.dropped) {
				t.Errorf("dropped %q, want %q", j.Dropped, tc.dropped)
			}
			checkTrim(t, tc.doc, j)
		})
	}
}

// A payload that loses nothing, and one trim cannot read members of, are
// queued as they came.
func TestTrimKeepsWhatItCannotOrNeedNotTrim(t *testing.T) {
	for name, doc := range map[string][]byte{
		"nothing to drop": []byte(`{"a":1,"b":2}`),
		"empty object":    []byte(`{}`),
		"array":           []byte(`[{"a":1}]`),
		"scalar":          []byte(`"a"`),
	} {
		j := trimmed(t, doc, "a", "b")
		if !bytes.Equal(j.Payload, doc) || j.Dropped != nil {
			t.Errorf("%s: payload %s, dropped %q; want it as it came", name, j.Payload, j.Dropped)
		}
	}
	// An outline that is not the payload's leaves it whole.
	j := queue.Job{Payload: []byte(`{"a":1,"b":2}`), Outline: []int32{3, 100}}
	if got, _ := trim(j, func([]byte) bool { return false }, nil, nil); !reflect.DeepEqual(got, j) {
		t.Errorf("with a wrong outline: %+v", got)
	}
}

// Every fixture, and a large push, keeping random subsets of their members.
func TestTrimFixturesKeepingRandomMembers(t *testing.T) {
	docs := fixtures.Webhooks()
	docs["large push"] = fixtures.LargePush(24 << 10)
	rng := rand.New(rand.NewPCG(1, 2))
	for name, doc := range docs {
		var members map[string]json.RawMessage
		if err := json.Unmarshal(doc, &members); err != nil {
			t.Fatal(err)
		}
		for range 20 {
			var keep []string
			for k := range members {
				if rng.IntN(2) == 0 {
					keep = append(keep, k)
				}
			}
			j := trimmed(t, doc, keep...)
			if len(j.Dropped)+len(keep) != len(members) {
				t.Errorf("%s: kept %d and dropped %d of %d members", name, len(keep), len(j.Dropped), len(members))
			}
			checkTrim(t, doc, j)
		}
	}
}

// Intake queues the trimmed payload with what it dropped, and routes it
// by the fields of the whole one.
func TestIntakeQueuesOnlyWhatTheHandlersRead(t *testing.T) {
	q := &recordingQueue{}
	srv := httptest.NewServer(New([]byte("secret"), q, keepRouter{"ref", "after", "repository"}, WithLogger(discardLogger())))
	t.Cleanup(srv.Close)
	body := fixtures.LargePush(24 << 10)
	req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", "d-1")
	req.Header.Set("X-Hub-Signature-256", Sign([]byte("secret"), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || len(q.jobs) != 1 {
		t.Fatalf("status %d, %d jobs queued", resp.StatusCode, len(q.jobs))
	}
	j := q.jobs[0]
	if !slices.Contains(j.Dropped, "commits") || !slices.Contains(j.Dropped, "installation") || slices.Contains(j.Dropped, "ref") {
		t.Errorf("dropped %q", j.Dropped)
	}
	if j.InstallationID != fixtures.InstallationID || j.Repo == "" {
		t.Errorf("routed to installation %d, repo %q", j.InstallationID, j.Repo)
	}
	if len(j.Payload) >= len(body)/2 {
		t.Errorf("queued %d of the push's %d bytes", len(j.Payload), len(body))
	}
	checkTrim(t, body, j)
}

// recordingQueue keeps a copy of each job it is given.
type recordingQueue struct {
	mu   sync.Mutex
	jobs []queue.Job
}

func (q *recordingQueue) Enqueue(_ context.Context, j queue.Job) (queue.Job, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	j.Payload = bytes.Clone(j.Payload)
	j.ID = "1"
	q.jobs = append(q.jobs, j)
	return j, nil
}

type keepRouter []string

func (keepRouter) Accepts(string, string) bool { return true }
func (r keepRouter) Keeps(string) func(key []byte) bool {
	return func(k []byte) bool { return slices.Contains(r, string(k)) }
}
