package queue

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/shipbot/shipbot/fixtures"
)

// pushPayload is a 24 KB push shaped like a real one: what a delivery
// compresses like.
func pushPayload(testing.TB) []byte { return fixtures.LargePush(24 << 10) }

func TestRecordCompressesPayloadsThatShrink(t *testing.T) {
	push := pushPayload(t)
	random := make([]byte, 24<<10)
	_, _ = rand.NewChaCha8([32]byte{2}).Read(random)
	for _, tc := range []struct {
		name    string
		payload []byte
		codec   string
	}{
		{"a 24 KB push", push, codecS2},
		{"random bytes", random, ""},
		{"a small payload", []byte(`{"zen":"Keep it logically awesome."}`), ""},
		{"no payload", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := Job{DeliveryID: "d1", Event: "push", Action: "a", InstallationID: 7, Repo: "o/r", EnqueuedAt: unixTime(12345), Payload: tc.payload}
			rec := appendJob(nil, j)
			meta, stored, _ := bytes.Cut(rec, []byte("\n"))
			var m jobMeta
			if err := json.Unmarshal(meta, &m); err != nil {
				t.Fatal(err)
			}
			if m.Z != tc.codec {
				t.Errorf("codec %q, want %q", m.Z, tc.codec)
			}
			if tc.codec != "" && len(stored) >= len(tc.payload)/2 {
				t.Errorf("stored %d bytes for a %d-byte payload", len(stored), len(tc.payload))
			}
			got, err := decodeJob(rec)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Payload, tc.payload) || (tc.payload == nil) != (got.Payload == nil) {
				t.Errorf("payload came back as %d bytes, want %d", len(got.Payload), len(tc.payload))
			}
			got.Payload, j.Payload = nil, nil
			if !reflect.DeepEqual(got, j) {
				t.Errorf("job came back as %+v, want %+v", got, j)
			}
		})
	}
}

// Records written before payloads were compressed have no codec and a raw
// payload; they still decode after an upgrade.
func TestRecordWithoutCodecDecodesRaw(t *testing.T) {
	got, err := decodeJob([]byte(`{"d":"old","e":"push","t":5}` + "\n" + `{"ref":"refs/heads/main"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got.DeliveryID != "old" || string(got.Payload) != `{"ref":"refs/heads/main"}` {
		t.Errorf("got %+v", got)
	}
}

func TestRecordWithBadPayloadSaysWhat(t *testing.T) {
	for _, tc := range []struct{ name, rec, want string }{
		{"unknown codec", `{"d":"x","t":1,"z":"zstd"}` + "\n" + "abc", `compressed with "zstd", which this version of shipbot cannot read`},
		{"corrupt s2", `{"d":"x","t":1,"z":"s2"}` + "\n" + "\x05garbage", "compressed payload does not decode"},
		{"claims 4 GB", `{"d":"x","t":1,"z":"s2"}` + "\n" + "\x80\x80\x80\x80\x10", "compressed payload does not decode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeJob([]byte(tc.rec))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// BenchmarkRecord: what storing a job costs in CPU beyond the store, for a
// 24 KB push shaped like a real one: appendJob (meta line, compression) and
// decodeJob (decompression), with the stored size.
func BenchmarkRecord(b *testing.B) {
	j := Job{DeliveryID: "72d3162e-cc78-11e3-81ab-4c9367dc0958", Event: "push", Repo: "octo/app", EnqueuedAt: unixTime(1), Payload: pushPayload(b)}
	rec := appendJob(nil, j)
	b.Run("encode", func(b *testing.B) {
		b.SetBytes(int64(len(j.Payload)))
		b.ReportAllocs()
		for b.Loop() {
			rec = appendJob(rec[:0], j)
		}
		b.ReportMetric(float64(len(rec)), "stored-bytes")
	})
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(j.Payload)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeJob(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// An outline comes back from its record as it went in; one that is not
// increasing offsets within the payload comes back as none.
func TestOutlineRoundTripsOrIsDropped(t *testing.T) {
	payload := []byte(`{"a":1,"bb":[2,3]}`)
	j := Job{DeliveryID: "o", Payload: payload, Outline: []int32{7, 17}}
	got, err := decodeJob(appendJob(nil, j))
	if err != nil || !slices.Equal(got.Outline, j.Outline) {
		t.Fatalf("decoded %v, %v; want outline %v", got.Outline, err, j.Outline)
	}
	for _, o := range []string{"7,11", "7", "0,7", "7,-1", "7,x", "7,,3", "19", "99999999999999999999"} {
		if got := parseOutline(o, len(payload)); !slices.Equal(got, map[string][]int32{"7,11": {7, 18}, "7": {7}}[o]) {
			t.Errorf("parseOutline(%q) = %v", o, got)
		}
	}
}
