package repoconfig

import (
	"reflect"
	"testing"
)

// Values are the text as written, whatever YAML would make of it.
func TestEnvValuesAreText(t *testing.T) {
	cfg := mustParse(t, `
app:
  env:
    WORKERS: 4
    DEBUG: true
    RATIO: 1.50
    MODE: 0755
    MASK: 0x1F
    FLAG: on
    TILDE: "~"
    EMPTY: ""
    SPACED: "  padded  "
    URL: postgres://app@db:5432/app?sslmode=disable
    SCRIPT: |
      line one
      line two
`)
	want := map[string]string{
		"WORKERS": "4", "DEBUG": "true", "RATIO": "1.50", "MODE": "0755", "MASK": "0x1F", "FLAG": "on",
		"TILDE": "~", "EMPTY": "", "SPACED": "  padded  ", "URL": "postgres://app@db:5432/app?sslmode=disable",
		"SCRIPT": "line one\nline two\n",
	}
	if !reflect.DeepEqual(cfg.App.Env, want) {
		t.Errorf("app.env = %q\nwant %q", cfg.App.Env, want)
	}
}

func TestEnvAndSecretsPerScope(t *testing.T) {
	cfg := mustParse(t, `
app:
  release: ./app migrate
  env: {LOG_FORMAT: json, DATABASE_URL: postgres://localhost/dev}
environments:
  production:
    driver: aws
    env: &prod {CHECKOUT_V2: "on", _PRIVATE: x}
    secrets: [DATABASE_URL, STRIPE_KEY]
    aws:
      region: us-east-1
      target_group_arn: arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123
      instance_tags: {app: web}
      install: deploy {{.SHA}}
      release: migrate {{.SHA}}
  staging:
    env:
      <<: *prod
      CHECKOUT_V2: "off"
    secrets: []
  qa:
    env: {}
    secrets:
default_environment: staging
preview:
  env: {APP_ENV: preview}
  secrets: [LOG_FORMAT]
`)
	prod, _ := cfg.Environment("production")
	staging, _ := cfg.Environment("staging")
	qa, _ := cfg.Environment("qa")
	// app.env's DATABASE_URL and production's secret of that name may
	// both be written: the secret wins in production (deploy.AppEnv).
	if cfg.App.Release != "./app migrate" || !reflect.DeepEqual(cfg.App.Env, map[string]string{"LOG_FORMAT": "json", "DATABASE_URL": "postgres://localhost/dev"}) {
		t.Errorf("app = %+v", cfg.App)
	}
	if !reflect.DeepEqual(prod.Env, map[string]string{"CHECKOUT_V2": "on", "_PRIVATE": "x"}) || !reflect.DeepEqual(prod.Secrets, []string{"DATABASE_URL", "STRIPE_KEY"}) {
		t.Errorf("production env %q secrets %q", prod.Env, prod.Secrets)
	}
	if prod.AWS == nil || prod.AWS.Release != "migrate {{.SHA}}" {
		t.Errorf("production aws = %+v", prod.AWS)
	}
	if !reflect.DeepEqual(staging.Env, map[string]string{"CHECKOUT_V2": "off", "_PRIVATE": "x"}) || staging.Secrets != nil {
		t.Errorf("staging env %q secrets %#v", staging.Env, staging.Secrets)
	}
	if qa.Env != nil || qa.Secrets != nil {
		t.Errorf("qa env %#v secrets %#v: empty is none", qa.Env, qa.Secrets)
	}
	if !reflect.DeepEqual(cfg.Preview.Env, map[string]string{"APP_ENV": "preview"}) || !reflect.DeepEqual(cfg.Preview.Secrets, []string{"LOG_FORMAT"}) {
		t.Errorf("preview env %q secrets %q", cfg.Preview.Env, cfg.Preview.Secrets)
	}
}

// The port variable is whatever app.port_env names; PORT is free once it
// names another.
func TestPortVariableFollowsPortEnv(t *testing.T) {
	cfg := mustParse(t, `
app:
  env: {PORT: "80"}
  port_env: HTTP_PORT
`)
	if cfg.App.Env["PORT"] != "80" || cfg.App.PortEnv != "HTTP_PORT" {
		t.Errorf("app = %+v", cfg.App)
	}
	// A broken port_env is one problem, not one more per env mapping.
	checkParseErrors(t, "app:\n  port_env: http-port\n  env: {PORT: \"80\"}\n", []string{
		`.github/shipbot.yml line 2: app.port_env: "http-port" is not an environment variable name: use letters, digits and _, like PORT`,
	})
}

// app.release alone needs no aws.release where no environment uses aws,
// and an aws environment needs none without app.release.
func TestReleaseWithoutAWS(t *testing.T) {
	cfg := mustParse(t, "app:\n  release: ./app migrate\n")
	if cfg.App.Release != "./app migrate" {
		t.Errorf("app.release = %q", cfg.App.Release)
	}
	cfg = mustParse(t, `
environments:
  production:
    driver: aws
    aws:
      region: us-east-1
      target_group_arn: arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123
      instance_tags: {app: web}
      install: deploy {{.SHA}}
`)
	if prod, _ := cfg.Environment("production"); prod.AWS.Release != "" || cfg.App.Release != "" {
		t.Errorf("release phase configured: app %q, aws %q", cfg.App.Release, prod.AWS.Release)
	}
}

func TestPreviewInstall(t *testing.T) {
	const block = `
  aws:
    launch_template: web-preview
    listener_arn: arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/1/2
    domain: preview.example.com
`
	for _, tt := range []struct{ name, yaml, want string }{
		{"default under driver aws", "preview:\n  driver: aws" + block, DefaultPreviewInstall},
		{"default under driver local", "preview:\n  driver: local" + block, DefaultPreviewInstall},
		{"written", "preview:\n  driver: aws" + block + "    install: sudo /opt/web/bin/install {{.SHA}} --preview\n", "sudo /opt/web/bin/install {{.SHA}} --preview"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParse(t, tt.yaml)
			if cfg.Preview.AWS == nil || cfg.Preview.AWS.Install != tt.want {
				t.Errorf("preview.aws = %+v, want install %q", cfg.Preview.AWS, tt.want)
			}
		})
	}
	if cfg := mustParse(t, "preview:\n  driver: local\n"); cfg.Preview.AWS != nil {
		t.Errorf("preview.aws = %+v without an aws: block", cfg.Preview.AWS)
	}
}
