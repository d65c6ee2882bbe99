package repoconfig

import (
	"reflect"
	"testing"
	"time"
)

const testFleet = `
    driver: aws
    aws:
      region: us-east-1
      target_group_arn: arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123
      instance_tags: {app: web}
      install: deploy {{.SHA}}`

// TestAnalysisValues: every key as written, and bake three intervals.
func TestAnalysisValues(t *testing.T) {
	cfg := mustParse(t, `
environments:
  production:
    analysis:
      interval: 15s
      min_requests: 50
      max_error_rate: 0.5%
      max_latency_p99: 800ms
      prometheus:
        url: http://prometheus:9090
        checks:
          - name: checkout errors
            query: sum(rate(checkout_errors_total{release="{{.SHA}}"}[1m]))
            max: 0.5
          - name: orders
            query: |
              sum(rate(orders_total{release="{{.SHA}}", env="{{.Environment}}"}[1m]))
                / sum(rate(orders_total{release="{{.Previous}}"}[1m]))
            min: 0.9
            max: 1e3
`+testFleet+`
      alarms: [web-5xx-rate, web-p99]
`)
	prod, _ := cfg.Environment("production")
	want := &Analysis{
		Interval:      15 * time.Second,
		MinRequests:   50,
		MaxErrorRate:  0.005,
		MaxLatencyP99: 800 * time.Millisecond,
		Prometheus: &Prometheus{
			URL: "http://prometheus:9090",
			Checks: []PrometheusCheck{
				{Name: "checkout errors", Query: `sum(rate(checkout_errors_total{release="{{.SHA}}"}[1m]))`, Max: new(0.5)},
				{Name: "orders", Query: "sum(rate(orders_total{release=\"{{.SHA}}\", env=\"{{.Environment}}\"}[1m]))\n  / sum(rate(orders_total{release=\"{{.Previous}}\"}[1m]))\n", Min: new(0.9), Max: new(1000.0)},
			},
		},
	}
	if !reflect.DeepEqual(prod.Analysis, want) {
		t.Errorf("analysis = %+v %+v, want %+v %+v", prod.Analysis, prod.Analysis.Prometheus, want, want.Prometheus)
	}
	if prod.Rollout.Bake != 45*time.Second {
		t.Errorf("bake = %s, want three intervals, 45s", prod.Rollout.Bake)
	}
	if got := prod.AWS.Alarms; !reflect.DeepEqual(got, []string{"web-5xx-rate", "web-p99"}) {
		t.Errorf("alarms = %q", got)
	}
}

// TestAnalysisDefaults: an analysis block with no keys, or aws.alarms alone,
// judges with the defaults; no analysis and no alarms leaves the bake as
// it was.
func TestAnalysisDefaults(t *testing.T) {
	cfg := mustParse(t, `
environments:
  production:
    analysis: {}
  staging:
    analysis:
      # interval: 10s
  qa:`+testFleet+`
      alarms: [web-5xx-rate]
  eu:`+testFleet+`
      alarms: []
`)
	for _, tt := range []struct {
		env      string
		analysis *Analysis
		bake     time.Duration
	}{
		{"production", &Analysis{Interval: 10 * time.Second, MinRequests: 20, MaxErrorRate: 0.01}, 30 * time.Second},
		{"staging", nil, 0},
		{"qa", &Analysis{Interval: 10 * time.Second, MinRequests: 20, MaxErrorRate: 0.01}, 30 * time.Second},
		{"eu", nil, 0},
	} {
		env, _ := cfg.Environment(tt.env)
		if !reflect.DeepEqual(env.Analysis, tt.analysis) || env.Rollout.Bake != tt.bake {
			t.Errorf("%s: analysis %+v, bake %s; want %+v, %s", tt.env, env.Analysis, env.Rollout.Bake, tt.analysis, tt.bake)
		}
	}
	if eu, _ := cfg.Environment("eu"); eu.AWS.Alarms != nil {
		t.Errorf("eu: alarms: [] gave %q, want none", eu.AWS.Alarms)
	}
}

// TestAnalysisBakeKeyOrder: bake is judged against the interval whichever
// block the file writes first, and a bake of at least one interval stays
// as written.
func TestAnalysisBakeKeyOrder(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		bake       time.Duration
	}{
		{"rollout first", "rollout: {bake: 20s}\n    analysis: {interval: 20s}", 20 * time.Second},
		{"analysis first", "analysis: {interval: 20s}\n    rollout: {bake: 20s}", 20 * time.Second},
		{"analysis first, no bake", "analysis: {interval: 20s}\n    rollout: {canary: 1}", time.Minute},
		{"rollout first, no bake", "rollout: {canary: 1}\n    analysis: {interval: 20s}", time.Minute},
		{"a long bake", "rollout: {bake: 1h}\n    analysis: {interval: 20s}", time.Hour},
		{"bake left empty", "rollout:\n      bake:\n    analysis: {interval: 20s}", time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParse(t, "environments:\n  production:\n    "+tt.yaml+"\n")
			if got := cfg.Environments["production"].Rollout.Bake; got != tt.bake {
				t.Errorf("bake = %s, want %s", got, tt.bake)
			}
		})
	}
	checkParseErrors(t, "environments:\n  production:\n    analysis: {interval: 20s}\n    rollout: {bake: 19s}\n", []string{
		`.github/shipbot.yml line 4: environments.production.rollout.bake: bake 19s is shorter than analysis.interval 20s: the batch would never be judged; set bake to at least 20s, or leave it out for three intervals (1m)`,
	})
}

// TestAnalysisThroughAnchors: one analysis block shared by environments,
// with a key overridden, like any other block.
func TestAnalysisThroughAnchors(t *testing.T) {
	cfg := mustParse(t, `
environments:
  production:
    analysis: &judge
      interval: 5s
      max_error_rate: 2%
  staging:
    analysis:
      <<: *judge
      interval: 30s
`)
	prod, staging := cfg.Environments["production"], cfg.Environments["staging"]
	if prod.Analysis.Interval != 5*time.Second || prod.Rollout.Bake != 15*time.Second || prod.Analysis.MaxErrorRate != 0.02 {
		t.Errorf("production: %+v, bake %s", prod.Analysis, prod.Rollout.Bake)
	}
	if staging.Analysis.Interval != 30*time.Second || staging.Rollout.Bake != 90*time.Second || staging.Analysis.MaxErrorRate != 0.02 {
		t.Errorf("staging: %+v, bake %s", staging.Analysis, staging.Rollout.Bake)
	}
}

func TestRenderQuery(t *testing.T) {
	c := PrometheusCheck{Query: `errors{release="{{.SHA}}", previous="{{.Previous}}", env="{{.Environment}}", repo="{{.Repo}}"}`}
	got, err := c.Render(QueryData{SHA: "abc", Previous: "def", Environment: "production", Repo: "octo-org/web"})
	if want := `errors{release="abc", previous="def", env="production", repo="octo-org/web"}`; err != nil || got != want {
		t.Errorf("Render = %q, %v; want %q", got, err, want)
	}
	if _, err := (PrometheusCheck{Query: "{{.Ref}}"}).Render(QueryData{}); err == nil {
		t.Error("Render of an unknown field succeeded")
	}
}
