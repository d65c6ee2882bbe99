// Package cdevents owns what shipbot tells the receivers in notify.webhooks:
// it builds CDEvents (spec v0.4.1) as CloudEvents 1.0 in structured JSON,
// signs a body with EVENTS_SECRET, posts one event to one URL and says
// whether the delivery can be retried, and checks a configured URL before it
// is ever used. It holds no state and knows nothing of the queue: a queue job
// calls Send, and retries by Backoff until Expired.
//
// Identifiers (one name per idea, the same in every event):
//   - a service is a repository: its id is "owner/repo";
//   - an environment's id is "owner/repo/name" (names repeat across
//     repositories; the id must be unique within the bot's source);
//   - a release is the artifact "pkg:github/owner/repo@sha" (a package URL);
//   - an incident is the halted deploy, "deploys/ID", which resolved against
//     the source (PUBLIC_URL) is that deploy's page.
package cdevents

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// SpecVersion is the CDEvents specification the events follow; it is the
// context's version field.
const SpecVersion = "0.4.1"

// ContentType is the HTTP Content-Type of a delivery: a CloudEvent in
// structured mode, encoded as JSON.
const ContentType = "application/cloudevents+json"

// The CDEvents types shipbot sends (dev.cdevents.<subject>.<predicate>.<version>),
// with the event versions that CDEvents v0.4.1 defines.
const (
	TypeServiceDeployed     = "dev.cdevents.service.deployed.0.2.0"
	TypeServiceUpgraded     = "dev.cdevents.service.upgraded.0.2.0"
	TypeServiceRolledBack   = "dev.cdevents.service.rolledback.0.2.0"
	TypeIncidentDetected    = "dev.cdevents.incident.detected.0.2.0"
	TypeEnvironmentCreated  = "dev.cdevents.environment.created.0.2.0"
	TypeEnvironmentModified = "dev.cdevents.environment.modified.0.2.0"
	TypeEnvironmentDeleted  = "dev.cdevents.environment.deleted.0.2.0"
)

// Meta is what every event carries besides its subject. ID and Time come
// from the caller, who keeps them with the queued delivery: a retry must send
// the same id, and CDEvents asks for the same timestamp on a re-transmission.
type Meta struct {
	ID     string    // unique within Source, e.g. the delivery job's id
	Source string    // the bot's PUBLIC_URL
	Time   time.Time // when it happened
}

// SourceOf is the events' source for a bot reached at publicURL
// (PUBLIC_URL): that URL, or "urn:shipbot" when it is not known.
func SourceOf(publicURL string) string {
	if publicURL == "" {
		return "urn:shipbot"
	}
	return publicURL
}

// Release is the subject of the service events: a release of a repository's
// app that reached one of its environments.
type Release struct {
	Repo        string // "owner/repo"
	Environment string // "production"
	SHA         string // the commit that now runs there
}

// Halt is the subject of incident.detected: a rollout that stopped.
type Halt struct {
	DeployID    string // the deploy's id, as in /deploys/{id}
	Repo        string
	Environment string
	SHA         string // the release that halted; empty when not known
	Reason      string // why, as the engine phrased it
}

// Preview is the subject of the environment events.
type Preview struct {
	Repo string
	Name string // the preview environment's name, e.g. "pr-42"
	URL  string // where it is reached; not sent on deleted
}

// ServiceDeployed is the first release of a service in an environment.
func ServiceDeployed(m Meta, r Release) (event.Event, error) {
	return serviceEvent(m, TypeServiceDeployed, r)
}

// ServiceUpgraded is a release that replaced another one.
func ServiceUpgraded(m Meta, r Release) (event.Event, error) {
	return serviceEvent(m, TypeServiceUpgraded, r)
}

// ServiceRolledBack is an earlier release put back, by /rollback or by a
// halted rollout; r.SHA is the release that runs now.
func ServiceRolledBack(m Meta, r Release) (event.Event, error) {
	return serviceEvent(m, TypeServiceRolledBack, r)
}

// IncidentDetected is a rollout that halted, with the reason.
func IncidentDetected(m Meta, h Halt) (event.Event, error) {
	if err := need("Halt", "DeployID", h.DeployID, "Repo", h.Repo, "Environment", h.Environment, "Reason", h.Reason); err != nil {
		return event.Event{}, err
	}
	c := incidentContent{
		Description: h.Reason,
		Environment: ref{ID: environmentID(h.Repo, h.Environment)},
		Service:     &ref{ID: h.Repo},
	}
	if h.SHA != "" {
		c.ArtifactID = artifactID(h.Repo, h.SHA)
	}
	return build(m, TypeIncidentDetected, subject{ID: "deploys/" + h.DeployID, Type: "incident", Content: c})
}

// EnvironmentCreated is a preview environment that came up.
func EnvironmentCreated(m Meta, p Preview) (event.Event, error) {
	return environmentEvent(m, TypeEnvironmentCreated, p, p.URL)
}

// EnvironmentModified is a preview environment now running another commit.
func EnvironmentModified(m Meta, p Preview) (event.Event, error) {
	return environmentEvent(m, TypeEnvironmentModified, p, p.URL)
}

// EnvironmentDeleted is a preview environment torn down; it has no URL
// any more (v0.4.1 defines none for this type).
func EnvironmentDeleted(m Meta, p Preview) (event.Event, error) {
	return environmentEvent(m, TypeEnvironmentDeleted, p, "")
}

// Encode is the body of a delivery: the event as structured JSON. Decode
// reads it back, so a queue may keep either.
func Encode(e event.Event) ([]byte, error) {
	return json.Marshal(e)
}

// Decode reads what Encode wrote.
func Decode(body []byte) (event.Event, error) {
	var e event.Event
	if err := json.Unmarshal(body, &e); err != nil {
		return event.Event{}, fmt.Errorf("cdevents: the stored event does not decode (%v); it was not written by Encode", err)
	}
	return e, nil
}

// The CDEvent is the CloudEvent's data: context and subject.
type cdevent struct {
	Context eventContext `json:"context"`
	Subject subject      `json:"subject"`
}

type eventContext struct {
	Version   string `json:"version"`
	ID        string `json:"id"`
	Source    string `json:"source"`
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
}

type subject struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Content any    `json:"content"`
}

// ref points at another subject (an environment, a service) by id; its
// source is the event's and so left out.
type ref struct {
	ID string `json:"id"`
}

type serviceContent struct {
	Environment ref    `json:"environment"`
	ArtifactID  string `json:"artifactId"`
}

type incidentContent struct {
	Description string `json:"description"`
	Environment ref    `json:"environment"`
	Service     *ref   `json:"service,omitempty"`
	ArtifactID  string `json:"artifactId,omitempty"`
}

type environmentContent struct {
	Name string `json:"name"`
	URL  string `json:"url,omitempty"`
}

func serviceEvent(m Meta, typ string, r Release) (event.Event, error) {
	if err := need("Release", "Repo", r.Repo, "Environment", r.Environment, "SHA", r.SHA); err != nil {
		return event.Event{}, err
	}
	return build(m, typ, subject{ID: r.Repo, Type: "service", Content: serviceContent{
		Environment: ref{ID: environmentID(r.Repo, r.Environment)},
		ArtifactID:  artifactID(r.Repo, r.SHA),
	}})
}

func environmentEvent(m Meta, typ string, p Preview, url string) (event.Event, error) {
	if err := need("Preview", "Repo", p.Repo, "Name", p.Name); err != nil {
		return event.Event{}, err
	}
	return build(m, typ, subject{ID: environmentID(p.Repo, p.Name), Type: "environment",
		Content: environmentContent{Name: p.Name, URL: url}})
}

// build wraps a CDEvent in a CloudEvent as the CDEvents CloudEvents binding
// says: the CloudEvent's id, source, type and time are the CDEvent context's,
// its subject is the CDEvent subject's id.
func build(m Meta, typ string, s subject) (event.Event, error) {
	if err := need("Meta", "ID", m.ID, "Source", m.Source); err != nil {
		return event.Event{}, err
	}
	if m.Time.IsZero() {
		return event.Event{}, errors.New("cdevents: Meta.Time is not set; pass when it happened and keep it for the retries")
	}
	t := m.Time.UTC()
	e := event.New(event.CloudEventsVersionV1)
	e.SetID(m.ID)
	e.SetSource(m.Source)
	e.SetType(typ)
	e.SetTime(t)
	e.SetSubject(s.ID)
	data := cdevent{
		Context: eventContext{Version: SpecVersion, ID: m.ID, Source: m.Source, Type: typ, Timestamp: t.Format(time.RFC3339Nano)},
		Subject: s,
	}
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		return event.Event{}, fmt.Errorf("cdevents: %s does not encode: %w", typ, err)
	}
	if err := e.Validate(); err != nil {
		return event.Event{}, fmt.Errorf("cdevents: %s is not a valid CloudEvent (%v); check Meta.Source is a URI", typ, err)
	}
	return e, nil
}

// need reports the first empty field of what, given as name, value pairs.
func need(what string, pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if strings.TrimSpace(pairs[i+1]) == "" {
			return fmt.Errorf("cdevents: %s.%s is empty; every event needs it", what, pairs[i])
		}
	}
	return nil
}

func environmentID(repo, env string) string { return repo + "/" + env }

func artifactID(repo, sha string) string { return "pkg:github/" + repo + "@" + sha }
