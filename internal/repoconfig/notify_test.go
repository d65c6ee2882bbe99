package repoconfig

import (
	"reflect"
	"testing"
)

func TestParseNotify(t *testing.T) {
	for _, tt := range []struct {
		name string
		yaml string
		want Notify
	}{
		{"none", "preview: {forks: false}\n", Notify{}},
		{"slack by id, default only", "notify:\n  slack: {channel: G01ABCDEF23}\n",
			Notify{Slack: &Slack{Channel: "G01ABCDEF23"}}},
		{"only names the environments as the file does, and previews", `environments:
  Production: {}
  staging: {}
notify:
  slack:
    channel: "#ship-it_2"
    only: [production, PREVIEW]
`, Notify{Slack: &Slack{Channel: "#ship-it_2", Only: []string{"Production", "preview"}}}},
		{"only against the default environments", "notify:\n  slack: {channel: \"#deploys\", only: [staging]}\n",
			Notify{Slack: &Slack{Channel: "#deploys", Only: []string{"staging"}}}},
		{"webhooks on private and public addresses and names", `notify:
  webhooks:
    - https://10.0.0.7/cd
    - http://[2001:db8::1]:8080/cd
    - https://cafe123.example.com/cd
    - http://localhost:9000/events
`, Notify{Webhooks: []string{"https://10.0.0.7/cd", "http://[2001:db8::1]:8080/cd", "https://cafe123.example.com/cd", "http://localhost:9000/events"}}},
		{"empty webhooks", "notify:\n  webhooks: []\n", Notify{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.yaml), "main")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg.Notify, tt.want) {
				t.Errorf("Notify = %+v (slack %+v), want %+v (slack %+v)", cfg.Notify, cfg.Notify.Slack, tt.want, tt.want.Slack)
			}
		})
	}
}

func TestSlackAnnounces(t *testing.T) {
	var none *Slack
	byDefault := &Slack{Channel: "#deploys"}
	prod := &Slack{Channel: "#deploys", Only: []string{"production"}}
	withPreviews := &Slack{Channel: "#deploys", Only: []string{"staging", PreviewsName}}
	for _, tt := range []struct {
		name    string
		slack   *Slack
		env     string
		preview bool
		want    bool
	}{
		{"no slack", none, "production", false, false},
		{"no slack, preview", none, "pr-4", true, false},
		{"default: an environment", byDefault, "staging", false, true},
		{"default: not a preview", byDefault, "pr-4", true, false},
		{"only production: production", prod, "production", false, true},
		{"only production: case as GitHub ignores it", prod, "Production", false, true},
		{"only production: staging", prod, "staging", false, false},
		{"only production: a preview", prod, "pr-4", true, false},
		{"previews listed: a preview", withPreviews, "pr-4", true, true},
		{"previews listed: staging", withPreviews, "staging", false, true},
		{"previews listed: production", withPreviews, "production", false, false},
	} {
		if got := tt.slack.Announces(tt.env, tt.preview); got != tt.want {
			t.Errorf("%s: Announces(%q, %v) = %v, want %v", tt.name, tt.env, tt.preview, got, tt.want)
		}
	}
}
