package webhooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/shipbot/shipbot/fixtures"
)

// reference is what encoding/json makes of the routing fields, the semantics
// scan promises: the document decoded as map[string]json.RawMessage (keys
// unescaped and matched exactly, the last of duplicate keys winning), then
// each path's value decoded into its field's type, a value that does not
// decode (wrong type, out of range) giving the zero value.
func reference(b []byte) fields {
	var f fields
	var top map[string]json.RawMessage
	if json.Unmarshal(b, &top) != nil {
		return f // not an object
	}
	if raw, ok := top["action"]; ok && json.Unmarshal(raw, &f.action) != nil {
		f.action = ""
	}
	var inst map[string]json.RawMessage
	if raw, ok := top["installation"]; ok && json.Unmarshal(raw, &inst) == nil {
		if raw, ok := inst["id"]; ok && json.Unmarshal(raw, &f.installationID) != nil {
			f.installationID = 0
		}
	}
	var repo map[string]json.RawMessage
	if raw, ok := top["repository"]; ok && json.Unmarshal(raw, &repo) == nil {
		if raw, ok := repo["full_name"]; ok && json.Unmarshal(raw, &f.repo) != nil {
			f.repo = ""
		}
	}
	return f
}

// jsonOffset is where encoding/json says b stops being JSON, or -1 if it is.
func jsonOffset(b []byte) int64 {
	var v json.RawMessage
	err := json.Unmarshal(b, &v)
	var se *json.SyntaxError
	switch {
	case err == nil:
		return -1
	case errors.As(err, &se):
		return se.Offset
	default:
		panic(err) // Unmarshal into RawMessage fails only on syntax
	}
}

// differ says how scan disagrees with encoding/json about b, or "".
func differ(b []byte) string {
	f, ok, off := scan(b)
	if valid := json.Valid(b); ok != valid {
		return fmt.Sprintf("scan ok=%v, json.Valid=%v", ok, valid)
	}
	if !ok {
		if want := jsonOffset(b); int64(off) != want {
			return fmt.Sprintf("error offset %d, encoding/json says %d", off, want)
		}
		if f != (fields{}) {
			return "fields set on failure: " + show(f)
		}
		return ""
	}
	if want := reference(b); f != want {
		return fmt.Sprintf("fields %s, encoding/json yields %s", show(f), show(want))
	}
	return ""
}

func show(f fields) string {
	return fmt.Sprintf("{action:%q id:%d repo:%q}", f.action, f.installationID, f.repo)
}

func TestScanFixtures(t *testing.T) {
	for _, name := range fixtures.Names() {
		t.Run(name, func(t *testing.T) {
			raw := fixtures.Webhook(name)
			var compact bytes.Buffer
			if err := json.Compact(&compact, raw); err != nil {
				t.Fatal(err)
			}
			for _, b := range [][]byte{raw, compact.Bytes()} {
				if d := differ(b); d != "" {
					t.Fatal(d)
				}
				f, ok, _ := scan(b)
				if !ok {
					t.Fatal("rejected")
				}
				var want fields
				if name != "ping" {
					want.installationID = fixtures.InstallationID
				}
				if name != "ping" && name != "installation.created" {
					want.repo = fixtures.Repo
				}
				if _, action, found := strings.Cut(name, "."); found {
					want.action, _, _ = strings.Cut(action, ".")
				}
				if f != want {
					t.Fatalf("got %s, want %s", show(f), show(want))
				}
			}
		})
	}
}

// Every proper prefix of a valid document is invalid, and encoding/json
// reports the end of input as the offset; cutting only the trailing
// whitespace leaves it valid. Each prefix is scanned from the start, so for
// the large fixtures (all alike) the test cuts at every offset of the first
// 4 KB and every 31st byte after that, to stay quick under -race.
func TestScanTruncated(t *testing.T) {
	for _, name := range fixtures.Names() {
		t.Run(name, func(t *testing.T) {
			b := fixtures.Webhook(name)
			end := len(bytes.TrimRight(b, " \t\r\n"))
			for k := range len(b) {
				if len(b) > 16<<10 && k > 4<<10 && k%31 != 0 && k < end {
					continue
				}
				f, ok, off := scan(b[:k:k])
				switch {
				case k < end && (ok || off != k || f != fields{}):
					t.Fatalf("prefix of %d bytes: ok=%v offset=%d %s", k, ok, off, show(f))
				case k >= end && !ok:
					t.Fatalf("prefix of %d bytes (all but trailing space) rejected at %d", k, off)
				}
			}
		})
	}
	// encoding/json agrees on every prefix of the smallest fixture.
	b := fixtures.Webhook("ping")
	for k := range len(b) {
		if d := differ(b[:k:k]); d != "" {
			t.Fatalf("prefix of %d bytes: %s", k, d)
		}
	}
}

func TestScanFields(t *testing.T) {
	const maxInt64, minInt64 = 1<<63 - 1, -1 << 63
	for _, tc := range []struct {
		name string
		doc  string
		want fields
	}{
		{"all three", `{"action":"opened","installation":{"id":42},"repository":{"full_name":"o/r"}}`, fields{"opened", 42, "o/r"}},
		{"other keys around", `{"a":[1,{"action":"x"}],"action":"y","installation":{"account":{"id":1},"id":2,"z":null},"repository":{"id":3,"owner":{"full_name":"no"},"full_name":"o/r","x":{}}}`, fields{"y", 2, "o/r"}},
		{"whitespace everywhere", " \t\r\n{ \"action\" :\n\"a\" , \"installation\"\t:\t{ \"id\" : 7 } ,\"repository\":{\"full_name\" : \"o/r\" } }\n ", fields{"a", 7, "o/r"}},
		{"empty object", `{}`, fields{}},
		{"empty inner objects", `{"installation":{},"repository":{}}`, fields{}},
		{"not an object", `[{"action":"x","installation":{"id":1}}]`, fields{}},
		{"scalar", `"action"`, fields{}},
		{"null document", `null`, fields{}},

		// Keys match after unescaping, exactly (case matters).
		{"escaped key", `{"act\u0069on":"x","\u0069nstallation":{"\u0069\u0064":5},"repository":{"full\u005fname":"o/r"}}`, fields{"x", 5, "o/r"}},
		{"fully escaped key", `{"\u0069\u006e\u0073\u0074\u0061\u006c\u006c\u0061\u0074\u0069\u006f\u006e":{"id":9}}`, fields{installationID: 9}},
		{"escaped key, other", `{"action\u0000":"x","act\"ion":"y","\u0061ction2":"z"}`, fields{}},
		{"long escaped key", `{"\u0061\u0061\u0061\u0061\u0061\u0061\u0061\u0061\u0061\u0061\u0061\u0061\u0061\u0061\u0061\u0061\u0061\u0061":"x","action":"y"}`, fields{action: "y"}},
		{"non-ASCII escaped key", `{"acti\u00f6n":"x","\u00e9":1}`, fields{}},
		{"case matters", `{"Action":"x","ACTION":"y","installation":{"ID":1},"repository":{"Full_Name":"z"}}`, fields{}},

		// Values are unescaped as encoding/json does it.
		{"escaped value", `{"action":"op\u0065ned","repository":{"full_name":"o\/r"}}`, fields{action: "opened", repo: "o/r"}},
		{"every escape", `{"action":"\"\\\/\b\f\n\r\t"}`, fields{action: "\"\\/\b\f\n\r\t"}},
		{"surrogate pair", `{"action":"\ud83d\ude00"}`, fields{action: "😀"}},
		{"lone high surrogate", `{"action":"a\ud800b"}`, fields{action: "a\uFFFDb"}},
		{"lone low surrogate", `{"action":"\udc00"}`, fields{action: "\uFFFD"}},
		{"high then other escape", `{"action":"\ud800\u0041"}`, fields{action: "\uFFFDA"}},
		{"two highs then low", `{"action":"\ud800\ud83d\ude00"}`, fields{action: "\uFFFD😀"}},
		{"reversed pair", `{"action":"\ude00\ud83d"}`, fields{action: "\uFFFD\uFFFD"}},
		{"high at end", `{"action":"x\ud83d"}`, fields{action: "x\uFFFD"}},
		{"non-ASCII", `{"action":"héllo, 世界"}`, fields{action: "héllo, 世界"}},
		{"invalid UTF-8", "{\"action\":\"a\xffb\xc3\"}", fields{action: "a\uFFFDb\uFFFD"}},
		{"UTF-8 surrogate", "{\"action\":\"\xed\xa0\x80\"}", fields{action: "\uFFFD\uFFFD\uFFFD"}},
		{"invalid UTF-8 with escapes", "{\"action\":\"\\n\xff\"}", fields{action: "\n\uFFFD"}},
		{"long value", `{"action":"` + strings.Repeat("abcdefgh", 40) + `"}`, fields{action: strings.Repeat("abcdefgh", 40)}},

		// Only the paths count, not keys of the same name deeper down.
		{"deeper keys", `{"pull_request":{"action":"x","installation":{"id":1},"repository":{"full_name":"y"}},"x":[{"action":"z"}]}`, fields{}},
		{"id deeper in installation", `{"installation":{"account":{"id":5},"ids":[6]}}`, fields{}},
		{"full_name deeper in repository", `{"repository":{"owner":{"full_name":"x"},"parent":{"repository":{"full_name":"y"}}}}`, fields{}},
		{"id of repository", `{"repository":{"id":5},"installation":{"full_name":"x"}}`, fields{}},
		{"installation in an array", `{"installation":[{"id":1}],"repository":[{"full_name":"x"}]}`, fields{}},
		{"action as a nested key", `{"installation":{"action":"x","id":3}}`, fields{installationID: 3}},

		// Wrong types give the zero value.
		{"action not a string", `{"action":5}`, fields{}},
		{"action true", `{"action":true}`, fields{}},
		{"action null", `{"action":null}`, fields{}},
		{"action object", `{"action":{"action":"x"}}`, fields{}},
		{"action array", `{"action":["x"]}`, fields{}},
		{"id a string", `{"installation":{"id":"42"}}`, fields{}},
		{"id a float", `{"installation":{"id":1.5}}`, fields{}},
		{"id 1.0", `{"installation":{"id":1.0}}`, fields{}},
		{"id with exponent", `{"installation":{"id":1e3}}`, fields{}},
		{"id with exponent 0", `{"installation":{"id":1E0}}`, fields{}},
		{"id null", `{"installation":{"id":null}}`, fields{}},
		{"id false", `{"installation":{"id":false}}`, fields{}},
		{"id object", `{"installation":{"id":{"id":1}}}`, fields{}},
		{"installation a number", `{"installation":42}`, fields{}},
		{"installation a string", `{"installation":"x"}`, fields{}},
		{"repository a string", `{"repository":"o/r"}`, fields{}},
		{"full_name a number", `{"repository":{"full_name":5}}`, fields{}},

		// Integers in and out of int64's range.
		{"negative id", `{"installation":{"id":-5}}`, fields{installationID: -5}},
		{"zero id", `{"installation":{"id":0}}`, fields{}},
		{"minus zero id", `{"installation":{"id":-0}}`, fields{}},
		{"max int64", `{"installation":{"id":9223372036854775807}}`, fields{installationID: maxInt64}},
		{"max int64 + 1", `{"installation":{"id":9223372036854775808}}`, fields{}},
		{"min int64", `{"installation":{"id":-9223372036854775808}}`, fields{installationID: minInt64}},
		{"min int64 - 1", `{"installation":{"id":-9223372036854775809}}`, fields{}},
		{"20 digits", `{"installation":{"id":18446744073709551616}}`, fields{}},
		{"huge", `{"installation":{"id":` + strings.Repeat("9", 400) + `}}`, fields{}},

		// Duplicate keys: the last wins, whatever it is.
		{"duplicate action", `{"action":"a","action":"b"}`, fields{action: "b"}},
		{"duplicate action, last null", `{"action":"a","action":null}`, fields{}},
		{"duplicate action, escaped", `{"action":"a","\u0061ction":"b"}`, fields{action: "b"}},
		{"duplicate id", `{"installation":{"id":1,"id":2}}`, fields{installationID: 2}},
		{"duplicate id, last wrong", `{"installation":{"id":1,"id":"2"}}`, fields{}},
		{"duplicate installation", `{"installation":{"id":1},"installation":{"account":{}}}`, fields{}},
		{"duplicate installation, last wins", `{"installation":{"id":1},"installation":{"id":2}}`, fields{installationID: 2}},
		{"duplicate installation, last not an object", `{"installation":{"id":1},"installation":null}`, fields{}},
		{"duplicate repository", `{"repository":{"full_name":"a"},"repository":{"full_name":"b"}}`, fields{repo: "b"}},
		{"duplicate repository, last empty", `{"repository":{"full_name":"a"},"repository":{}}`, fields{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(tc.doc)
			f, ok, off := scan(b)
			if !ok {
				t.Fatalf("rejected at %d", off)
			}
			if f != tc.want {
				t.Errorf("got %s, want %s", show(f), show(tc.want))
			}
			if d := differ(b); d != "" {
				t.Errorf("encoding/json differs: %s", d)
			}
		})
	}
}

// invalid are documents encoding/json.Valid rejects (and seeds for FuzzScan).
var invalid = []string{
	"", " ", "\n\t\r ", "{", "}", "[", "]", "[}", "{]", ",", ":",
	`{"a"}`, `{"a":}`, `{"a" 1}`, `{"a"::1}`, `{"a":1,}`, `{,"a":1}`, `{"a":1 "b":2}`, `{"a":1,,"b":2}`,
	`{1:2}`, `{a:1}`, `{'a':1}`, `{"a":1]`, `[1}`, `[1,]`, `[,1]`, `[1 2]`, `[1,,2]`,
	`{"a":1}x`, `{"a":1}}`, `{"a":1},`, `[1] [2]`, `1 2`, `{}{}`, "{}\x00", "\x00", "{\"a\":1}\x1a",
	"\xef\xbb\xbf{}", "\xef\xbb\xbf",
	// strings
	`"`, `"abc`, `"abc\`, `"abc\"`, "\"a\x00b\"", "\"\x01\"", "\"\x1f\"", "\"\t\"", "\"\n\"", "\"\r\"",
	`"\x"`, `"\a"`, `"\'"`, `"\U0041"`, `"\u"`, `"\u1"`, `"\u12"`, `"\u123"`, `"\u12g4"`, `"\uZZZZ"`,
	`"\u00e"`, `"\`, `"\u`, `"\u004`, `{"\x":1}`, "{\"a\x01\":1}", `{"action":"op\qned"}`,
	// numbers
	"01", "00", "-01", "-", "--1", "-a", "+1", "+", ".5", "-.5", "1.", "1.e3", "1.a", "1e", "1E", "1e+", "1e-",
	"1ea", "1e+a", "0x1", "1_000", "0.", "1.5.5", "1e5e5", "1e5.5", "Infinity", "-Infinity", "NaN", "nan", "inf",
	`{"installation":{"id":01}}`, `{"installation":{"id":-}}`, `{"installation":{"id":+1}}`,
	// literals
	"t", "tr", "tru", "trux", "True", "TRUE", "f", "fals", "falsy", "False", "n", "nu", "nul", "nulx", "Null", "nil",
	"truee", "nulll", "falsee", "true false", `[true false]`, `{"a":tru}`,
	// the shapes of a webhook, broken
	`{"action":"opened",`, `{"action":"opened"`, `{"action":"opened`, `{"action":`, `{"action"`, `{"installation":{"id":1}`,
	`{"action":"opened"} x`, `{"action":"opened"}]`, `{"action":"opened"},{}`,
}

func TestScanInvalid(t *testing.T) {
	for _, doc := range invalid {
		b := []byte(doc)
		if json.Valid(b) {
			t.Fatalf("%q: the test is wrong, encoding/json accepts it", doc)
		}
		if _, ok, _ := scan(b); ok {
			t.Errorf("%q: accepted", doc)
		}
		if d := differ(b); d != "" {
			t.Errorf("%q: %s", doc, d)
		}
	}
}

// valid are documents at the edges of what encoding/json.Valid accepts.
var valid = []string{
	"0", "-0", "1", "-1", "0.0", "-0.0", "0e0", "0E+0", "1e-0", "1.5e+10", "-1.5E-10", "123456789012345678901234567890",
	"true", "false", "null", `""`, `"x"`, " 1 ", "\t\r\n 1\t\r\n ", "[]", "{}", "[ ]", "{ }", "[[],[[]],{}]",
	`{"":1}`, `{"a":{"b":{"c":[1,"2",true,false,null,{}]}}}`, `[1,-1,0.5,1e5,"s",{"k":"v"}]`,
	`"\u0000\ud800\udc00\uDFFF\uabcd\uABCD"`, `"\"\\\/\b\f\n\r\t"`, "\"\x7f\xff\xfe\xc0\x80\"", "\"\u2028\u2029\"",
	"\"\xed\xa0\x80\"", `"😀"`, `{"action":"\ud800"}`, `{"a\u0000":1}`,
	// bytes a borrow flags wrongly in blocks (see jsonscan.Block)
	`"\"#"`, `"\"###]"`, `"\\]"`, `"\\]]#"`, `["\"#","\\]"]`, `{"action":"\"#\\]"}`,
}

func TestScanValid(t *testing.T) {
	for _, doc := range valid {
		b := []byte(doc)
		if !json.Valid(b) {
			t.Fatalf("%q: the test is wrong, encoding/json rejects it", doc)
		}
		if _, ok, off := scan(b); !ok {
			t.Errorf("%q: rejected at %d", doc, off)
		}
		if d := differ(b); d != "" {
			t.Errorf("%q: %s", doc, d)
		}
	}
}

// Strings are skipped 64 bytes at a time: every position of a string end,
// escape and control character relative to those blocks, and to the end of
// the input, must come out the same.
func TestScanBlockBoundaries(t *testing.T) {
	for pre := range 70 {
		for _, body := range []string{"", "x", `\"`, `\\`, `\"#`, `\\]`, `\u0041`, `\n`, "\xff", "\x01", `\x`, `\u12`} {
			for _, post := range []string{`"}`, `"`, ``, `","installation":{"id":1}}`} {
				doc := `{"action":"` + strings.Repeat("a", pre) + body + strings.Repeat("b", 70-pre) + post
				if d := differ([]byte(doc)); d != "" {
					t.Fatalf("%q: %s", doc, d)
				}
				doc = `{"action":"` + strings.Repeat("a", pre) + body + post
				if d := differ([]byte(doc)); d != "" {
					t.Fatalf("%q: %s", doc, d)
				}
			}
		}
	}
}

func TestScanDepth(t *testing.T) {
	for _, tc := range []struct {
		open, close string
		levels      int // per repetition
	}{{"[", "]", 1}, {`{"a":`, "}", 1}, {`[{"a":`, "}]", 2}} {
		for _, depth := range []int{maxDepth - 2, maxDepth, maxDepth + 2} {
			reps := depth / tc.levels
			doc := []byte(strings.Repeat(tc.open, reps) + "1" + strings.Repeat(tc.close, reps))
			_, ok, off := scan(doc)
			if want := reps*tc.levels <= maxDepth; ok != want {
				t.Errorf("%d × %q: ok=%v (offset %d), want %v", reps, tc.open, ok, off, want)
			}
			if d := differ(doc); d != "" {
				t.Errorf("%d × %q: %s", reps, tc.open, d)
			}
		}
	}
	// Depth comes back down: many shallow containers are fine.
	doc := []byte("[" + strings.Repeat("[[]],", 3*maxDepth) + "[]]")
	if d := differ(doc); d != "" {
		t.Fatal(d)
	}
}

// The strings scan returns are copies: intake's buffers are reused.
func TestScanCopies(t *testing.T) {
	b := []byte(`{"action":"opened","repository":{"full_name":"o/r"}}`)
	f, _, _ := scan(b)
	for i := range b {
		b[i] = 'x'
	}
	if f.action != "opened" || f.repo != "o/r" {
		t.Fatalf("strings changed with the buffer: %s", show(f))
	}
}

func TestScanAllocs(t *testing.T) {
	for _, doc := range [][]byte{
		fixtures.Webhook("pull_request.opened"),
		[]byte(`{"\u0061ction":"opened","repository":{"full\u005fname":"o/r"},"installation":{"\u0069d":1}}`),
	} {
		if n := testing.AllocsPerRun(100, func() { scan(doc) }); n > 2 {
			t.Errorf("%d allocations, want at most the two strings", int(n))
		}
	}
}

// FuzzScan holds scan to encoding/json: the same verdict on every input, the
// same error offset, and when valid the fields encoding/json decodes.
func FuzzScan(f *testing.F) {
	for _, name := range fixtures.Names() {
		f.Add(fixtures.Webhook(name))
	}
	for _, doc := range invalid {
		f.Add([]byte(doc))
	}
	for _, doc := range valid {
		f.Add([]byte(doc))
	}
	for _, doc := range []string{
		`{"action":"opened","installation":{"id":42},"repository":{"full_name":"o/r"}}`,
		`{"act\u0069on":"\ud800x","installation":{"id":-9223372036854775808},"repository":{"full_name":"\u006f/r"}}`,
		`{"action":1,"installation":{"id":1e3},"repository":{"full_name":null}}`,
		`{"action":"a","action":"b","installation":{"id":1},"installation":{}}`,
	} {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if d := differ(b); d != "" {
			t.Fatal(d)
		}
	})
}

// BenchmarkScan is scan alone on the 24 KB delivery of BenchmarkDecode.
func BenchmarkScan(b *testing.B) {
	body := payload24k(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if f, ok, _ := scan(body); !ok || f.installationID != fixtures.InstallationID {
			b.Fatalf("scan: %s %v", show(f), ok)
		}
	}
}
