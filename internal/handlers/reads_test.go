package handlers

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/shipbot/shipbot/fixtures"
	"github.com/shipbot/shipbot/internal/worker"
	"github.com/shipbot/shipbot/queue"
)

// payloadTypes is the type each registered event's handler decodes into.
var payloadTypes = map[string]reflect.Type{
	"push":                      reflect.TypeFor[pushEvent](),
	"pull_request":              reflect.TypeFor[prEvent](),
	"issue_comment":             reflect.TypeFor[commentEvent](),
	"check_suite":               reflect.TypeFor[checksEvent](),
	"check_run":                 reflect.TypeFor[checksEvent](),
	"installation":              reflect.TypeFor[installationEvent](),
	"installation_repositories": reflect.TypeFor[installationEvent](),
}

// For every fixture of an event shipbot handles (and a large push), the
// payload as intake queues it (only the top-level members Register says
// the handler reads) decodes to exactly what the whole payload does.
func TestEveryHandlerDecodesTheTrimmedPayloadAsTheWholeOne(t *testing.T) {
	r := worker.NewRouter()
	Register(r, Deps{})
	docs := map[string][]byte{}
	for name := range fixtures.Events {
		docs[name] = fixtures.Webhook(name)
	}
	docs["push (large)"] = fixtures.LargePush(24 << 10)
	seen := map[string]bool{}
	for name, doc := range docs {
		event := strings.Fields(strings.SplitN(name, ".", 2)[0])[0]
		typ, ok := payloadTypes[event]
		if !ok {
			continue
		}
		seen[event] = true
		keep := r.Keeps(event)
		if keep == nil {
			t.Errorf("%s: Register declares no Reads: its payloads are queued whole", event)
			continue
		}
		var members map[string]json.RawMessage
		if err := json.Unmarshal(doc, &members); err != nil {
			t.Fatal(err)
		}
		trimmed := map[string]json.RawMessage{}
		var dropped []string
		for k, v := range members {
			if keep([]byte(k)) {
				trimmed[k] = v
			} else {
				dropped = append(dropped, k)
			}
		}
		small, _ := json.Marshal(trimmed)
		whole, part := reflect.New(typ), reflect.New(typ)
		if err := decode(queue.Job{Event: event, Payload: doc}, whole.Interface()); err != nil {
			t.Fatal(err)
		}
		if err := decode(queue.Job{Event: event, Payload: small, Dropped: dropped}, part.Interface()); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(whole.Interface(), part.Interface()) {
			t.Errorf("%s: decodes to\n%+v\nwhole, and to\n%+v\nwith only %d of its %d members", name, whole.Elem(), part.Elem(), len(trimmed), len(members))
		}
		if name == "push (large)" && len(small) > len(doc)/2 {
			t.Errorf("%s: %d of %d bytes kept (dropped %q)", name, len(small), len(doc), dropped)
		}
	}
	for event := range payloadTypes {
		if !seen[event] && event != "check_run" && event != "installation_repositories" {
			t.Errorf("no fixture of %s", event)
		}
	}
}

// A job queued without a member its handler reads (by an older version's
// intake) fails for good with a sentence that names the member and what to
// do; one without members the handler does not read decodes.
func TestDecodeRefusesAJobQueuedWithoutAMemberItReads(t *testing.T) {
	job := queue.Job{Event: "push", DeliveryID: "d-7", Payload: []byte(`{"ref":"refs/heads/main","after":"abc"}`)}
	var p pushEvent
	job.Dropped = []string{"commits", "Head_Commit"}
	err := decode(job, &p)
	if err == nil || !worker.IsPermanent(err) || !strings.Contains(err.Error(), `"Head_Commit"`) || !strings.Contains(err.Error(), "d-7") {
		t.Errorf("decode = %v; want a permanent error naming Head_Commit and the delivery", err)
	}
	job.Dropped = []string{"commits", "organization", "pusher"}
	if err := decode(job, &p); err != nil || p.Ref != "refs/heads/main" || p.After != "abc" {
		t.Errorf("decode = %v, %+v", err, p)
	}
	// A type that is not a struct reads every member.
	var m map[string]any
	if err := decode(job, &m); err == nil || !bytes.Contains([]byte(err.Error()), []byte(`"commits"`)) {
		t.Errorf("decode into a map = %v", err)
	}
	if !slices.Equal(job.Dropped, []string{"commits", "organization", "pusher"}) {
		t.Errorf("decode changed Dropped: %q", job.Dropped)
	}
}
