package cdevents

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

var meta = Meta{
	ID:     "delivery-7f3a",
	Source: "https://bot.example.com",
	Time:   time.Date(2026, 3, 14, 15, 9, 26, 535000000, time.FixedZone("CET", 3600)),
}

const sha = "2222222222222222222222222222222222222222"

// What CDEvents v0.4.1 requires of each type shipbot sends, read from the
// spec's schemas: the subject's type, the content fields that must be
// there, and every content field the schema allows (it allows no others).
func TestEventsCarryWhatV04Requires(t *testing.T) {
	rel := Release{Repo: "octo-org/web", Environment: "production", SHA: sha}
	prev := Preview{Repo: "octo-org/web", Name: "pr-42", URL: "https://pr-42.preview.example.com"}
	halt := Halt{DeployID: "981", Repo: "octo-org/web", Environment: "production", SHA: sha,
		Reason: "error rate 34% on 2222222 vs 0.2% on 1111111, limit 1%"}
	type eventCase struct {
		name         string
		build        func() (event.Event, error)
		typ          string
		subjectType  string
		subjectID    string
		required     []string
		allowed      []string
		wantContent  map[string]any
		environments []string // content fields that are references {id, source?}
	}
	// The three service events differ in their type only.
	service := func(predicate string, build func(Meta, Release) (event.Event, error)) eventCase {
		return eventCase{
			name: "service." + predicate, build: func() (event.Event, error) { return build(meta, rel) },
			typ: "dev.cdevents.service." + predicate + ".0.2.0", subjectType: "service", subjectID: "octo-org/web",
			required: []string{"environment", "artifactId"}, allowed: []string{"environment", "artifactId"},
			environments: []string{"environment"},
			wantContent: map[string]any{
				"environment": map[string]any{"id": "octo-org/web/production"},
				"artifactId":  "pkg:github/octo-org/web@" + sha,
			},
		}
	}
	tests := []eventCase{
		service("deployed", ServiceDeployed),
		service("upgraded", ServiceUpgraded),
		service("rolledback", ServiceRolledBack),
		{
			name: "incident.detected", build: func() (event.Event, error) { return IncidentDetected(meta, halt) },
			typ: "dev.cdevents.incident.detected.0.2.0", subjectType: "incident", subjectID: "deploys/981",
			required: []string{"environment"}, allowed: []string{"description", "environment", "service", "artifactId"},
			environments: []string{"environment", "service"},
			wantContent: map[string]any{
				"description": halt.Reason,
				"environment": map[string]any{"id": "octo-org/web/production"},
				"service":     map[string]any{"id": "octo-org/web"},
				"artifactId":  "pkg:github/octo-org/web@" + sha,
			},
		},
		{
			name: "incident.detected without a known release",
			build: func() (event.Event, error) {
				h := halt
				h.SHA = ""
				return IncidentDetected(meta, h)
			},
			typ: "dev.cdevents.incident.detected.0.2.0", subjectType: "incident", subjectID: "deploys/981",
			required: []string{"environment"}, allowed: []string{"description", "environment", "service", "artifactId"},
			environments: []string{"environment", "service"},
			wantContent: map[string]any{
				"description": halt.Reason,
				"environment": map[string]any{"id": "octo-org/web/production"},
				"service":     map[string]any{"id": "octo-org/web"},
			},
		},
		{
			name: "environment.created", build: func() (event.Event, error) { return EnvironmentCreated(meta, prev) },
			typ: "dev.cdevents.environment.created.0.2.0", subjectType: "environment", subjectID: "octo-org/web/pr-42",
			allowed:     []string{"name", "url"},
			wantContent: map[string]any{"name": "pr-42", "url": prev.URL},
		},
		{
			name: "environment.modified", build: func() (event.Event, error) { return EnvironmentModified(meta, prev) },
			typ: "dev.cdevents.environment.modified.0.2.0", subjectType: "environment", subjectID: "octo-org/web/pr-42",
			allowed:     []string{"name", "url"},
			wantContent: map[string]any{"name": "pr-42", "url": prev.URL},
		},
		{
			name: "environment.deleted", build: func() (event.Event, error) { return EnvironmentDeleted(meta, prev) },
			typ: "dev.cdevents.environment.deleted.0.2.0", subjectType: "environment", subjectID: "octo-org/web/pr-42",
			allowed:     []string{"name"},
			wantContent: map[string]any{"name": "pr-42"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := tc.build()
			if err != nil {
				t.Fatal(err)
			}
			body, err := Encode(e)
			if err != nil {
				t.Fatal(err)
			}
			var ce map[string]any
			if err := json.Unmarshal(body, &ce); err != nil {
				t.Fatalf("body is not JSON: %v\n%s", err, body)
			}
			// The CloudEvent, per the CDEvents CloudEvents binding.
			wantTime := "2026-03-14T14:09:26.535Z"
			for k, want := range map[string]any{
				"specversion": "1.0", "id": meta.ID, "source": meta.Source, "type": tc.typ,
				"time": wantTime, "subject": tc.subjectID, "datacontenttype": "application/json",
			} {
				if ce[k] != want {
					t.Errorf("CloudEvent %s = %v, want %v", k, ce[k], want)
				}
			}
			data, ok := ce["data"].(map[string]any)
			if !ok {
				t.Fatalf("CloudEvent data is not a JSON object: %s", body)
			}
			assertKeys(t, "data", data, []string{"context", "subject"}, []string{"context", "subject"})
			// The CDEvent context.
			ctx := data["context"].(map[string]any)
			assertKeys(t, "context", ctx, []string{"version", "id", "source", "type", "timestamp"},
				[]string{"version", "id", "source", "type", "timestamp", "schemaUri", "chainId", "links"})
			for k, want := range map[string]any{
				"version": "0.4.1", "id": meta.ID, "source": meta.Source, "type": tc.typ, "timestamp": wantTime,
			} {
				if ctx[k] != want {
					t.Errorf("context.%s = %v, want %v", k, ctx[k], want)
				}
			}
			if _, err := time.Parse(time.RFC3339, ctx["timestamp"].(string)); err != nil {
				t.Errorf("context.timestamp is not RFC 3339: %v", err)
			}
			// The subject.
			subj := data["subject"].(map[string]any)
			assertKeys(t, "subject", subj, []string{"id", "type", "content"}, []string{"id", "source", "type", "content"})
			if subj["id"] != tc.subjectID || subj["type"] != tc.subjectType {
				t.Errorf("subject id, type = %v, %v; want %v, %v", subj["id"], subj["type"], tc.subjectID, tc.subjectType)
			}
			content, ok := subj["content"].(map[string]any)
			if !ok {
				t.Fatalf("subject.content is not an object: %s", body)
			}
			assertKeys(t, "subject.content", content, tc.required, tc.allowed)
			for _, f := range tc.environments {
				r, ok := content[f].(map[string]any)
				if !ok {
					t.Errorf("content.%s is not an object", f)
					continue
				}
				assertKeys(t, "content."+f, r, []string{"id"}, []string{"id", "source"})
			}
			for k, v := range content {
				if s, ok := v.(string); ok && s == "" {
					t.Errorf("content.%s is empty; v0.4.1 wants minLength 1", k)
				}
			}
			if got, _ := json.Marshal(content); !bytes.Equal(got, mustJSON(t, tc.wantContent)) {
				t.Errorf("content = %s\nwant      %s", got, mustJSON(t, tc.wantContent))
			}
		})
	}
}

// assertKeys checks that m has every required key, non-empty, and no key
// outside allowed (the v0.4.1 schemas set additionalProperties false).
func assertKeys(t *testing.T, where string, m map[string]any, required, allowed []string) {
	t.Helper()
	for _, k := range required {
		v, ok := m[k]
		if !ok || v == nil || v == "" {
			t.Errorf("%s lacks required %q: %v", where, k, m)
		}
	}
	for k := range m {
		if !slices.Contains(allowed, k) {
			t.Errorf("%s has %q, which v0.4.1 does not allow there", where, k)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A queue may keep the encoded event: what it decodes re-encodes to the same
// bytes, so a retry sends what the first attempt sent (and its signature).
func TestEncodeDecodeIsStable(t *testing.T) {
	e, err := ServiceUpgraded(meta, Release{Repo: "octo-org/web", Environment: "staging", SHA: sha})
	if err != nil {
		t.Fatal(err)
	}
	first, err := Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(first)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Encode(back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, again) {
		t.Errorf("re-encoded event differs:\n%s\n%s", first, again)
	}
	if _, err := Decode([]byte("{not json")); err == nil {
		t.Error("Decode accepted a body that is not JSON")
	}
}

func TestBuildersRefuseMissingFields(t *testing.T) {
	rel := Release{Repo: "octo-org/web", Environment: "production", SHA: sha}
	tests := []struct {
		name  string
		build func() (event.Event, error)
		want  string
	}{
		{"no id", func() (event.Event, error) { m := meta; m.ID = ""; return ServiceDeployed(m, rel) }, "Meta.ID is empty"},
		{"no source", func() (event.Event, error) { m := meta; m.Source = " "; return ServiceDeployed(m, rel) }, "Meta.Source is empty"},
		{"no time", func() (event.Event, error) { m := meta; m.Time = time.Time{}; return ServiceDeployed(m, rel) }, "Meta.Time is not set"},
		{"no sha", func() (event.Event, error) { r := rel; r.SHA = ""; return ServiceUpgraded(meta, r) }, "Release.SHA is empty"},
		{"no environment", func() (event.Event, error) { r := rel; r.Environment = ""; return ServiceRolledBack(meta, r) }, "Release.Environment is empty"},
		{"no reason", func() (event.Event, error) {
			return IncidentDetected(meta, Halt{DeployID: "1", Repo: "o/r", Environment: "production"})
		}, "Halt.Reason is empty"},
		{"no preview name", func() (event.Event, error) { return EnvironmentCreated(meta, Preview{Repo: "o/r"}) }, "Preview.Name is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.build()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}
