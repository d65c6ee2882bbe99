package handlers

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/fixtures"
)

// Types that exercise what encoding/json does beyond the handlers' payload
// types (decodeTypes has both), each decoded both ways.
type (
	// untagged fields, a tag with options, a skipped field, a map, a
	// slice of structs, an interface, a recursive type, a pointer to an
	// embedded struct and two names equal but for case.
	oddPayload struct {
		Action  string
		Number  int64             `json:"number,omitempty"`
		Skipped string            `json:"-"`
		Labels  map[string]string `json:"labels"`
		Commits []struct {
			ID string `json:"id"`
		} `json:"commits"`
		Any    any       `json:"any"`
		When   time.Time `json:"when"`
		Parent *oddPayload
		*origin
		Ref string `json:"ref"`
		REF string `json:"REF"`
	}
)

// decodeTypes is every handler's payload type (payloadTypes, each type
// once, by its name) and oddPayload.
func decodeTypes() map[string]func() any {
	types := map[string]func() any{"odd": func() any { return new(oddPayload) }}
	for _, t := range payloadTypes {
		types[t.Name()] = func() any { return reflect.New(t).Interface() }
	}
	return types
}

// sameAsUnmarshal fails unless unmarshal leaves what json.Unmarshal leaves
// and returns the same error: without an outline, and for a valid object
// with the outline intake would give it.
func sameAsUnmarshal(t *testing.T, data []byte) {
	t.Helper()
	outlines := map[string][]int32{"no outline": nil}
	if json.Valid(data) {
		if o := fixtures.Outline(data); o != nil {
			outlines["outline"] = o
		}
	}
	for name, newV := range decodeTypes() {
		for how, outline := range outlines {
			want, got := newV(), newV()
			wantErr := json.Unmarshal(data, want)
			gotErr := unmarshal(data, outline, got)
			if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
				t.Fatalf("%s, %s: error %v, json.Unmarshal says %v\npayload: %.300s", name, how, gotErr, wantErr, data)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s, %s: decoded\n%+v\njson.Unmarshal decodes\n%+v\npayload: %.300s", name, how, got, want, data)
			}
		}
	}
}

// With an outline, the members no field takes are stepped over, not read:
// bytes there that are not JSON at all go unnoticed. An outline that
// cannot be right is dropped, and the document is read as without one.
func TestUnmarshalStepsOverWhatTheOutlineSkips(t *testing.T) {
	doc := []byte(`{"ref":"refs/heads/a", "commits":[not json at all}} , "after":"b2"}`)
	outline := []int32{int32(strings.Index(string(doc), ",")), int32(strings.LastIndex(string(doc), ",") - 1), int32(len(doc) - 1)}
	var p pushEvent
	if err := unmarshal(doc, outline, &p); err != nil || p.Ref != "refs/heads/a" || p.After != "b2" {
		t.Errorf("unmarshal with the outline = %+v, %v; want ref and after, no error", p, err)
	}
	if err := unmarshal(doc, nil, &p); err == nil {
		t.Error("unmarshal without the outline accepted a document that is not JSON")
	}
	good := []byte(`{"ref":"refs/heads/a","commits":[{"id":"1"}],"after":"b2"}`)
	for _, bad := range [][]int32{{5, 6, 7}, {21, 1 << 30, 59}, {21}} {
		var p pushEvent
		if err := unmarshal(good, bad, &p); err != nil || p.Ref != "refs/heads/a" || p.After != "b2" {
			t.Errorf("unmarshal with the wrong outline %v = %+v, %v; want ref and after, no error", bad, p, err)
		}
	}
}

func TestUnmarshalMatchesEncodingJSON(t *testing.T) {
	for name, payload := range fixtures.Webhooks() {
		t.Run(name, func(t *testing.T) { sameAsUnmarshal(t, payload) })
	}
	t.Run("push24k", func(t *testing.T) { sameAsUnmarshal(t, push24k(t)) })
	t.Run("pull_request24k", func(t *testing.T) { sameAsUnmarshal(t, pullRequest24k(t)) })
	for _, tc := range []struct{ name, payload string }{
		{"keys in another case", `{"REF":"refs/heads/a","Sender":{"LOGIN":"x"},"ReF":"b"}`},
		{"escaped key", `{"r\u0065f":"refs/heads/e","sender":{"l\u006fgin":"y"}}`},
		{"folding non-ASCII key", `{"ſender":{"login":"long s"},"\u017fender":{"login":"long s escaped"}}`},
		{"duplicate objects merge", `{"sender":{"login":"a"},"sender":{},"head_commit":{"id":"1"},"head_commit":{"timestamp":"t"}}`},
		{"duplicate then null", `{"head_commit":{"id":"1"},"head_commit":null}`},
		{"null struct", `{"sender":null,"installation":null,"repository":null}`},
		{"wrong type leaf", `{"ref":5,"after":"x"}`},
		{"wrong type struct", `{"sender":"bob","ref":"r"}`},
		{"wrong type deep", `{"installation":{"id":"12"}}`},
		{"array for struct", `{"sender":[1,2],"check_suite":[]}`},
		{"number forms", `{"number":-0.5e+3,"installation":{"id":12345678901234567890},"x":[0,-1,1.25,2E-7]}`},
		{"big id", `{"installation":{"id":9223372036854775807}}`},
		{"empty objects", `{"sender":{},"pull_request":{"head":{},"base":{"repo":{}}},"issue":{"pull_request":{}}}`},
		{"odd fields", `{"action":"x","ACTION":"y","Skipped":"s","-":"dash","labels":{"a":"b"},"commits":[{"id":"1","x":2},{"id":"2"}],"any":{"k":[1,"2",null,true]},"when":"2024-01-02T03:04:05Z","parent":{"action":"p","parent":{"number":3}},"REF":"upper","ref":"lower"}`},
		{"bad time", `{"when":"yesterday"}`},
		{"comment", `{"comment":{"id":1,"body":"/deploy\nstaging \"q\" \u00e9 \ud83d\ude00","created_at":"2024-01-02T03:04:05Z","user":{"login":"a","type":"User"}}}`},
		{"control character in skipped string", "{\"x\":\"a\tb\"}"},
		{"bad escape in skipped string", `{"x":"\q"}`},
		{"bad unicode escape", `{"x":"\u12G4"}`},
		{"invalid UTF-8", "{\"ref\":\"\xff\xfe\",\"x\":\"\xc3\"}"},
		{"truncated", `{"ref":"refs/heads/main",`},
		{"truncated string", `{"ref":"refs/hea`},
		{"trailing garbage", `{"ref":"a"} x`},
		{"two documents", `{} {}`},
		{"missing colon", `{"ref" "a"}`},
		{"missing comma", `{"ref":"a" "after":"b"}`},
		{"trailing comma", `{"ref":"a",}`},
		{"bad literal", `{"deleted":tru}`},
		{"bad number", `{"x":01}`},
		{"bad fraction", `{"x":1.}`},
		{"bad exponent", `{"x":1e}`},
		{"lone minus", `{"x":-}`},
		{"not an object", `["ref"]`},
		{"string", `"ref"`},
		{"null document", `null`},
		{"empty", ``},
		{"whitespace", " \t\r\n{ \"ref\" : \"a\" , \"sender\" : { \"login\" : \"b\" } } \n"},
		{"deep nesting", `{"x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`},
		{"nesting at the limit", `{"x":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`},
		{"long key", `{"` + strings.Repeat("k", 40) + `":1,"` + strings.Repeat("\\u006b", 40) + `":2,"ref":"r"}`},
	} {
		t.Run(tc.name, func(t *testing.T) { sameAsUnmarshal(t, []byte(tc.payload)) })
	}
}

func FuzzUnmarshalMatchesEncodingJSON(f *testing.F) {
	for _, payload := range fixtures.Webhooks() {
		f.Add(payload)
	}
	f.Add([]byte(`{"REF":"x","sender":{"login":"\u0061"},"head_commit":null}`))
	f.Add([]byte(`{"odd":[1,{"a":"b"}],"number":1e5}`))
	f.Fuzz(func(t *testing.T, data []byte) { sameAsUnmarshal(t, data) })
}

// Strings are skipped 64 bytes at a time (jsonscan.Block): every string end
// and escape lands at every position of a block, in skipped members, kept
// ones and keys, with the bytes a borrow flags wrongly ('#' after '"', ']'
// after '\\') right behind them, and payloads cut short at every length.
func TestUnmarshalStringsAcrossBlocks(t *testing.T) {
	for pad := 0; pad < 130; pad++ {
		p := strings.Repeat("p", pad)
		for _, doc := range []string{
			`{"x":"` + p + `","ref":"a\"#b\\]]c","sender":{"login":"` + p + `\u00e9"}}`,
			`{"` + p + `":1,"after":"` + p + `\"###","deleted":true}`,
			`{"head_commit":{"id":"` + p + `","timestamp":"\\]` + p + `"},"x":["` + p + "\t" + `"]}`,
			`{"x":"` + p + `\q","ref":"r"}`,
			`{"ref":"` + p,
		} {
			sameAsUnmarshal(t, []byte(doc))
			for cut := len(doc) - 70; cut < len(doc); cut++ {
				if cut > 0 {
					sameAsUnmarshal(t, []byte(doc[:cut]))
				}
			}
		}
	}
}
