package repoconfig

// badFiles are configuration files with one kind of mistake each (a few
// with several), and the exact lines Parse must print for them: the text a
// person reads on their PR.
var badFiles = []struct {
	name string
	yaml string
	want []string
}{
	{"yaml syntax error", `environments:
  staging:
    driver: local
   instances: 2
`, []string{
		`.github/shipbot.yml line 4: YAML syntax error: did not find expected key`,
	}},
	{"yaml syntax error on the first line", "environments: [\n", []string{
		`.github/shipbot.yml line 1: YAML syntax error: did not find expected node content`,
	}},
	{"unknown alias", `app:
  build: go build
environments:
  staging: *base
`, []string{
		`.github/shipbot.yml line 4: YAML syntax error: *base refers to no anchor: define &base before it`,
	}},
	{"not utf-8", "app:\n  build: \xff\n", []string{
		`.github/shipbot.yml line 2: the file is not valid UTF-8 (byte 0xFF); save it as UTF-8`,
	}},
	{"control character", "app:\n  build: go build\n  run: ./app\x07\n", []string{
		`.github/shipbot.yml line 3: the file contains the control character U+0007, which YAML does not allow; remove it`,
	}},
	{"second document", `preview:
  forks: true
---
preview:
  forks: false
`, []string{
		`.github/shipbot.yml line 3: a second YAML document starts here: shipbot reads a single document, so remove the --- or merge what follows into the first`,
	}},
	{"file is a list", "- staging\n- production\n", []string{
		`.github/shipbot.yml line 1: the file must be a mapping of keys (default_environment, app, environments, preview, notify), not a list`,
	}},
	{"file is a word", "staging\n", []string{
		`.github/shipbot.yml line 1: the file must be a mapping of keys (default_environment, app, environments, preview, notify), not "staging"`,
	}},
	{"unknown key with a typo", `enviroments:
  staging: {}
`, []string{
		`.github/shipbot.yml line 1: enviroments: unknown key; did you mean environments? (valid keys here: default_environment, app, environments, preview, notify)`,
	}},
	{"unknown key", `app:
  build: make
  image: web:latest
`, []string{
		`.github/shipbot.yml line 3: app.image: unknown key (valid keys here: build, run, port_env, release, env)`,
	}},
	{"key at the wrong level", `environments:
  staging:
    canary: 2
`, []string{
		`.github/shipbot.yml line 3: environments.staging.canary: unknown key; canary belongs under rollout: (valid keys here: branch, driver, instances, require_checks, deployers, allow_branches, url, env, secrets, freeze, rollout, health, analysis, aws)`,
	}},
	{"unknown key typo in rollout", `environments:
  production:
    rollout:
      maxunavailable: 25%
`, []string{
		`.github/shipbot.yml line 4: environments.production.rollout.maxunavailable: unknown key; did you mean max_unavailable? (valid keys here: canary, batch, max_unavailable, by_zone, bake)`,
	}},
	{"duplicate key", `environments:
  staging:
    driver: local
    driver: aws
`, []string{
		`.github/shipbot.yml line 4: environments.staging.driver: written twice (first on line 3); keep one`,
	}},
	{"batch with a space", `# shipbot
default_environment: staging
app:
  build: go build -o app .
  run: ./app
environments:
  staging:
    allow_branches: true
  production:
    branch: main
    url: https://example.com
    rollout:
      canary: 1
      batch: 25 %
`, []string{
		`.github/shipbot.yml line 14: environments.production.rollout.batch: "25 %" is not a count or a percentage: use a whole number like 3 or a percentage like 25%`,
	}},
	{"percentages out of range", `environments:
  production:
    rollout:
      batch: 0%
      max_unavailable: 150%
`, []string{
		`.github/shipbot.yml line 4: environments.production.rollout.batch: 0% is not a percentage from 1% to 100%`,
		`.github/shipbot.yml line 5: environments.production.rollout.max_unavailable: 150% is not a percentage from 1% to 100%`,
	}},
	{"counts below one", `environments:
  production:
    instances: 0
    rollout:
      canary: 0
      batch: 0
    health:
      healthy_after: 0
`, []string{
		`.github/shipbot.yml line 3: environments.production.instances: 0 is too small: instances must be at least 1`,
		`.github/shipbot.yml line 5: environments.production.rollout.canary: 0 is too small: canary must be at least 1`,
		`.github/shipbot.yml line 6: environments.production.rollout.batch: 0 is too small: batch must be at least 1, or a percentage like 25%`,
		`.github/shipbot.yml line 8: environments.production.health.healthy_after: 0 is too small: healthy_after must be at least 1`,
	}},
	{"not whole numbers", `environments:
  production:
    instances: 2.5
    rollout:
      canary: one
`, []string{
		`.github/shipbot.yml line 3: environments.production.instances: "2.5" is not a whole number`,
		`.github/shipbot.yml line 5: environments.production.rollout.canary: "one" is not a whole number`,
	}},
	{"too many local instances", `environments:
  production:
    instances: 1000
`, []string{
		`.github/shipbot.yml line 3: environments.production.instances: 1000 is too many: at most 100 instances`,
	}},
	{"counts out of int's range", `environments:
  production:
    instances: 99999999999999999999
    rollout:
      canary: 99999999999999999999
  staging:
    rollout:
      canary: -99999999999999999999
`, []string{
		`.github/shipbot.yml line 3: environments.production.instances: 99999999999999999999 is too many: at most 100 instances`,
		`.github/shipbot.yml line 5: environments.production.rollout.canary: 99999999999999999999 is too large`,
		`.github/shipbot.yml line 8: environments.staging.rollout.canary: -99999999999999999999 is too small: canary must be at least 1`,
	}},
	{"canary bigger than the environment", `environments:
  staging:
    instances: 2
    rollout:
      canary: 3
`, []string{
		`.github/shipbot.yml line 5: environments.staging.rollout.canary: 3 is more than the environment's 2 instances`,
	}},
	{"duration without a unit", `environments:
  production:
    rollout:
      bake: 30
`, []string{
		`.github/shipbot.yml line 4: environments.production.rollout.bake: 30 has no unit: write 30s for seconds or 30m for minutes`,
	}},
	{"bad durations", `environments:
  production:
    rollout:
      bake: 30 secs
    health:
      interval: fast
preview:
  ttl: 3 days
`, []string{
		`.github/shipbot.yml line 4: environments.production.rollout.bake: "30 secs" is not a duration: use a number with a unit, like 30s, 2m or 1h30m`,
		`.github/shipbot.yml line 6: environments.production.health.interval: "fast" is not a duration: use a number with a unit, like 30s, 2m or 1h30m`,
		`.github/shipbot.yml line 8: preview.ttl: "3 days" is not a duration: use a number with a unit, like 30s, 2m or 1h30m`,
	}},
	{"negative and zero durations", `environments:
  production:
    rollout:
      bake: -5s
    health:
      interval: 0s
      timeout: 0s
`, []string{
		`.github/shipbot.yml line 4: environments.production.rollout.bake: -5s is negative: bake is a wait, 0s or longer`,
		`.github/shipbot.yml line 6: environments.production.health.interval: 0s is too short: health checks are at least 100ms apart`,
		`.github/shipbot.yml line 7: environments.production.health.timeout: 0s is not a timeout: make it longer than 0s`,
	}},
	{"timeout not longer than the passes", `environments:
  production:
    health:
      interval: 5s
      healthy_after: 3
      timeout: 15s
`, []string{
		`.github/shipbot.yml line 6: environments.production.health.timeout: timeout 15s is too short: 3 passes 5s apart take 15s; make timeout longer than that, or interval shorter`,
	}},
	{"interval makes default timeout too short", `environments:
  production:
    health:
      interval: 1m
`, []string{
		`.github/shipbot.yml line 4: environments.production.health.interval: timeout 2m is too short: 2 passes 1m apart take 2m; make timeout longer than that, or interval shorter`,
	}},
	{"unknown driver", `environments:
  production:
    driver: docker
preview:
  driver: Local
`, []string{
		`.github/shipbot.yml line 3: environments.production.driver: "docker" is not a driver: use local or aws`,
		`.github/shipbot.yml line 5: preview.driver: "Local" is not a driver: use local or aws`,
	}},
	{"driver aws without an aws block", `environments:
  production:
    driver: aws
`, []string{
		`.github/shipbot.yml line 3: environments.production.aws: driver aws needs an aws: block with region, target_group_arn, instance_tags, install`,
	}},
	{"aws block with driver local", `environments:
  staging:
    driver: local
    aws:
      region: us-east-1
`, []string{
		`.github/shipbot.yml line 4: environments.staging.aws: only applies to driver aws, and this environment's driver is local: remove aws: or set driver: aws`,
	}},
	{"aws block missing keys", `environments:
  production:
    driver: aws
    aws:
      region: us-east-1
`, []string{
		`.github/shipbot.yml line 4: environments.production.aws.target_group_arn: missing, and driver aws needs it: the ARN of the ALB target group the instances sit behind`,
		`.github/shipbot.yml line 4: environments.production.aws.instance_tags: missing, and driver aws needs it: e.g. instance_tags: {app: web, env: production}`,
		`.github/shipbot.yml line 4: environments.production.aws.install: missing, and driver aws needs it: the command run on each instance, e.g. install: sudo /opt/web/bin/install {{.SHA}}`,
	}},
	{"aws block bad values", `environments:
  production:
    driver: aws
    aws:
      region: virginia
      target_group_arn: tg-0123
      instance_tags: {}
      install: deploy.sh {{.SHA}}
`, []string{
		`.github/shipbot.yml line 5: environments.production.aws.region: "virginia" is not an AWS region like us-east-1`,
		`.github/shipbot.yml line 6: environments.production.aws.target_group_arn: "tg-0123" is not a load balancer target group ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:...)`,
		`.github/shipbot.yml line 7: environments.production.aws.instance_tags: no tags: name at least one, e.g. {app: web}, or every instance in the account would match`,
	}},
	{"install template does not parse", `environments:
  production:
    driver: aws
    aws:
      region: us-east-1
      target_group_arn: arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123
      instance_tags: {app: web}
      install: deploy {{.SHA}
`, []string{
		`.github/shipbot.yml line 8: environments.production.aws.install: not a valid template: bad character U+007D '}'`,
	}},
	{"install template uses more than .SHA", `environments:
  production:
    driver: aws
    aws: &fleet
      region: us-east-1
      target_group_arn: arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123
      instance_tags: {app: web}
      install: deploy {{.Ref}}
  canary:
    driver: aws
    aws:
      <<: *fleet
      install: deploy {{printf "%.7s" .SHA}}
  eu:
    driver: aws
    aws:
      <<: *fleet
      install: deploy latest
default_environment: production
`, []string{
		`.github/shipbot.yml line 8: environments.production.aws.install: {{.Ref}} is not allowed: the template may only use {{.SHA}}`,
		`.github/shipbot.yml line 13: environments.canary.aws.install: {{printf "%.7s" .SHA}} is not allowed: the template may only use {{.SHA}}`,
		`.github/shipbot.yml line 18: environments.eu.aws.install: never uses {{.SHA}}: the command must say which release to install, e.g. install {{.SHA}}`,
	}},
	{"instances with driver aws", `environments:
  production:
    driver: aws
    instances: 4
    aws:
      region: us-east-1
      target_group_arn: arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123
      instance_tags: {app: web}
      install: deploy {{.SHA}}
`, []string{
		`.github/shipbot.yml line 4: environments.production.instances: only applies to driver local; with driver aws the instances are the EC2 instances aws.instance_tags finds`,
	}},
	{"analysis interval too short", `environments:
  production:
    analysis:
      interval: 500ms
`, []string{
		`.github/shipbot.yml line 4: environments.production.analysis.interval: 500ms is too short: analysis judges a batch at most once a second (1s)`,
	}},
	{"analysis interval not a duration", `environments:
  production:
    analysis:
      interval: 10
  staging:
    analysis:
      interval: often
`, []string{
		`.github/shipbot.yml line 4: environments.production.analysis.interval: 10 has no unit: write 10s for seconds or 10m for minutes`,
		`.github/shipbot.yml line 7: environments.staging.analysis.interval: "often" is not a duration: use a number with a unit, like 30s, 2m or 1h30m`,
	}},
	{"analysis interval too long", `environments:
  production:
    analysis:
      interval: 2h
`, []string{
		`.github/shipbot.yml line 4: environments.production.analysis.interval: 2h is too long: a batch would bake that long unjudged; judge at least once an hour (1h)`,
	}},
	{"min_requests", `environments:
  production:
    analysis:
      min_requests: 0
  staging:
    analysis:
      min_requests: 2000000
  qa:
    analysis:
      min_requests: twenty
default_environment: qa
`, []string{
		`.github/shipbot.yml line 4: environments.production.analysis.min_requests: 0 is too small: min_requests must be at least 1`,
		`.github/shipbot.yml line 7: environments.staging.analysis.min_requests: 2000000 is too many: at most 1000000 requests`,
		`.github/shipbot.yml line 10: environments.qa.analysis.min_requests: "twenty" is not a whole number`,
	}},
	{"max_error_rate", `environments:
  production:
    analysis:
      max_error_rate: 150%
  staging:
    analysis:
      max_error_rate: abc
  qa:
    analysis:
      max_error_rate: 0.01
  eu:
    analysis:
      max_error_rate: -1%
default_environment: qa
`, []string{
		`.github/shipbot.yml line 4: environments.production.analysis.max_error_rate: 150% is not a percentage from 0% to 100%`,
		`.github/shipbot.yml line 7: environments.staging.analysis.max_error_rate: "abc" is not a percentage: write one from 0% to 100%, like 1% or 0.5%`,
		`.github/shipbot.yml line 10: environments.qa.analysis.max_error_rate: 0.01 has no %: write a percentage from 0% to 100%, like 1% or 0.5%`,
		`.github/shipbot.yml line 13: environments.eu.analysis.max_error_rate: "-1%" is not a percentage: write one from 0% to 100%, like 1% or 0.5%`,
	}},
	{"max_latency_p99", `environments:
  production:
    analysis:
      max_latency_p99: -800ms
  staging:
    analysis:
      max_latency_p99: 0s
  qa:
    analysis:
      max_latency_p99: 800
default_environment: qa
`, []string{
		`.github/shipbot.yml line 4: environments.production.analysis.max_latency_p99: -800ms is not a latency limit: make it longer than 0s, or leave max_latency_p99 out to show p99 without judging it`,
		`.github/shipbot.yml line 7: environments.staging.analysis.max_latency_p99: 0s is not a latency limit: make it longer than 0s, or leave max_latency_p99 out to show p99 without judging it`,
		`.github/shipbot.yml line 10: environments.qa.analysis.max_latency_p99: 800 has no unit: write 800s for seconds or 800m for minutes`,
	}},
	{"analysis unknown keys", `environments:
  production:
    analysis:
      intervall: 10s
      max_p99: 800ms
      prometheus:
        url: http://prometheus:9090
        bearer_token: secret
        checks:
          - name: checkout errors
            query: sum(rate(checkout_errors_total[1m]))
            max: 0.5
            above: 1
    min_requests: 20
`, []string{
		`.github/shipbot.yml line 4: environments.production.analysis.intervall: unknown key; did you mean interval? (valid keys here: interval, min_requests, max_error_rate, max_latency_p99, prometheus)`,
		`.github/shipbot.yml line 5: environments.production.analysis.max_p99: unknown key (valid keys here: interval, min_requests, max_error_rate, max_latency_p99, prometheus)`,
		`.github/shipbot.yml line 8: environments.production.analysis.prometheus.bearer_token: unknown key (valid keys here: url, checks)`,
		`.github/shipbot.yml line 13: environments.production.analysis.prometheus.checks[0].above: unknown key (valid keys here: name, query, max, min)`,
		`.github/shipbot.yml line 14: environments.production.min_requests: unknown key; min_requests belongs under analysis: (valid keys here: branch, driver, instances, require_checks, deployers, allow_branches, url, env, secrets, freeze, rollout, health, analysis, aws)`,
	}},
	{"analysis not a mapping", `environments:
  production:
    analysis: true
`, []string{
		`.github/shipbot.yml line 3: environments.production.analysis: expected a mapping with keys like interval, min_requests, max_error_rate, max_latency_p99, prometheus, got "true"`,
	}},
	{"previews have no analysis", `preview:
  analysis:
    interval: 10s
`, []string{
		`.github/shipbot.yml line 2: preview.analysis: unknown key; analysis belongs under an environment (environments.NAME:) (valid keys here: driver, forks, ttl, env, secrets, aws)`,
	}},
	{"prometheus without url or checks", `environments:
  production:
    analysis:
      prometheus:
        checks:
          - name: checkout errors
            query: sum(rate(checkout_errors_total[1m]))
            max: 0.5
  staging:
    analysis:
      prometheus: {}
`, []string{
		`.github/shipbot.yml line 4: environments.production.analysis.prometheus.url: missing, and prometheus: needs it: the address of your Prometheus, e.g. url: http://prometheus:9090`,
		`.github/shipbot.yml line 11: environments.staging.analysis.prometheus.url: missing, and prometheus: needs it: the address of your Prometheus, e.g. url: http://prometheus:9090`,
		`.github/shipbot.yml line 11: environments.staging.analysis.prometheus.checks: missing, and prometheus: needs it: a list of checks, each with a name, a query and max or min`,
	}},
	{"prometheus bad url", `environments:
  production:
    analysis:
      prometheus:
        url: prometheus:9090
        checks: [{name: up, query: up, min: 1}]
  staging:
    analysis:
      prometheus:
        url: https://admin:secret@prometheus.example.com
        checks: [{name: up, query: up, min: 1}]
`, []string{
		`.github/shipbot.yml line 5: environments.production.analysis.prometheus.url: "prometheus:9090" is not an http(s) URL: write it like https://example.com`,
		`.github/shipbot.yml line 10: environments.staging.analysis.prometheus.url: the URL holds a user name or password, which would show on GitHub: remove it`,
	}},
	{"prometheus without checks", `environments:
  production:
    analysis:
      prometheus:
        url: http://prometheus:9090
        checks: []
  staging:
    analysis:
      prometheus:
        url: http://prometheus:9090
        checks:
          name: up
          query: up
`, []string{
		`.github/shipbot.yml line 6: environments.production.analysis.prometheus.checks: no checks: give at least one, with a name, a query and max or min, or remove prometheus:`,
		`.github/shipbot.yml line 12: environments.staging.analysis.prometheus.checks: expected a list of checks, each with a name, a query and max or min, got a mapping`,
	}},
	{"prometheus check missing name, query or limit", `environments:
  production:
    analysis:
      prometheus:
        url: http://prometheus:9090
        checks:
          - query: sum(rate(checkout_errors_total[1m]))
            max: 0.5
          - name: checkout latency
            max: 0.8
          - name: orders
            query: sum(rate(orders_total[1m]))
          - name: ""
            query: up
            min: 1
          - checkout errors
`, []string{
		`.github/shipbot.yml line 7: environments.production.analysis.prometheus.checks[0].name: missing, and a check needs it: what the check run calls the check, e.g. name: checkout errors`,
		`.github/shipbot.yml line 9: environments.production.analysis.prometheus.checks[1].query: missing, and a check needs it: the PromQL query whose value is judged, e.g. query: sum(rate(checkout_errors_total{release="{{.SHA}}"}[1m]))`,
		`.github/shipbot.yml line 11: environments.production.analysis.prometheus.checks[2]: no limit: give max: to fail above a value, min: to fail below one, or both`,
		`.github/shipbot.yml line 13: environments.production.analysis.prometheus.checks[3].name: must not be empty`,
		`.github/shipbot.yml line 16: environments.production.analysis.prometheus.checks[4]: expected a mapping with keys like name, query, max, min, got "checkout errors"`,
	}},
	{"prometheus check names repeat", `environments:
  production:
    analysis:
      prometheus:
        url: http://prometheus:9090
        checks:
          - name: checkout errors
            query: sum(rate(checkout_errors_total[1m]))
            max: 0.5
          - name: checkout errors
            query: sum(rate(checkout_failures_total[1m]))
            max: 1
`, []string{
		`.github/shipbot.yml line 10: environments.production.analysis.prometheus.checks[1].name: "checkout errors" is already the name of checks[0] (line 7): give each check its own name`,
	}},
	{"prometheus check limits", `environments:
  production:
    analysis:
      prometheus:
        url: http://prometheus:9090
        checks:
          - name: orders
            query: sum(rate(orders_total[1m]))
            max: 1
            min: 2
          - name: errors
            query: sum(rate(errors_total[1m]))
            max: 5%
          - name: latency
            query: histogram_quantile(0.99, sum(rate(latency_bucket[1m])) by (le))
            max: .inf
            min: 1e999
`, []string{
		`.github/shipbot.yml line 10: environments.production.analysis.prometheus.checks[0].min: min 2 is above max 1, so every value would fail the check: make min at most max`,
		`.github/shipbot.yml line 13: environments.production.analysis.prometheus.checks[1].max: "5%" is not a number: write it like 0.5, 100 or 1e-3`,
		`.github/shipbot.yml line 16: environments.production.analysis.prometheus.checks[2].max: ".inf" is not a number: write it like 0.5, 100 or 1e-3`,
		`.github/shipbot.yml line 17: environments.production.analysis.prometheus.checks[2].min: 1e999 is too large`,
	}},
	{"prometheus query template does not parse", `environments:
  production:
    analysis:
      prometheus:
        url: http://prometheus:9090
        checks:
          - name: checkout errors
            query: sum(rate(checkout_errors_total{release="{{.SHA}"}[1m]))
            max: 0.5
`, []string{
		`.github/shipbot.yml line 8: environments.production.analysis.prometheus.checks[0].query: not a valid template: bad character U+007D '}'`,
	}},
	{"prometheus query template uses other fields", `environments:
  production:
    analysis:
      prometheus:
        url: http://prometheus:9090
        checks:
          - name: by ref
            query: sum(rate(errors_total{ref="{{.Ref}}"}[1m]))
            max: 0.5
          - name: by sha
            query: sum(rate(errors_total{release="{{.Sha}}"}[1m]))
            max: 0.5
          - name: short sha
            query: sum(rate(errors_total{release="{{printf "%.7s" .SHA}}"}[1m]))
            max: 0.5
          - name: loop
            query: '{{range .Repo}}up{{end}}'
            max: 0.5
`, []string{
		`.github/shipbot.yml line 8: environments.production.analysis.prometheus.checks[0].query: {{.Ref}} is not a field the query can use: use {{.SHA}}, {{.Previous}}, {{.Environment}} or {{.Repo}}`,
		`.github/shipbot.yml line 11: environments.production.analysis.prometheus.checks[1].query: {{.Sha}} is not a field the query can use (did you mean {{.SHA}}?): use {{.SHA}}, {{.Previous}}, {{.Environment}} or {{.Repo}}`,
		`.github/shipbot.yml line 14: environments.production.analysis.prometheus.checks[2].query: {{printf "%.7s" .SHA}} is not allowed: the query may use only {{.SHA}}, {{.Previous}}, {{.Environment}} and {{.Repo}}`,
		`.github/shipbot.yml line 17: environments.production.analysis.prometheus.checks[3].query: {{range .Repo}}up{{end}} is not allowed: the query may use only {{.SHA}}, {{.Previous}}, {{.Environment}} and {{.Repo}}`,
	}},
	{"alarms on a local environment", `environments:
  staging:
    driver: local
    aws:
      alarms: [web-5xx-rate]
`, []string{
		`.github/shipbot.yml line 5: environments.staging.aws.alarms: CloudWatch alarms only apply to driver aws, and this environment's driver is local: remove aws: or set driver: aws; with driver local, analysis: judges each batch by the error rate and p99 the driver measures itself`,
	}},
	{"alarms straight under an environment", `environments:
  production:
    alarms: [web-5xx-rate]
`, []string{
		`.github/shipbot.yml line 3: environments.production.alarms: unknown key; alarms belongs under an environment's aws: (valid keys here: branch, driver, instances, require_checks, deployers, allow_branches, url, env, secrets, freeze, rollout, health, analysis, aws)`,
	}},
	{"alarm names empty or repeated", `environments:
  production:
    driver: aws
    aws: &fleet
      region: us-east-1
      target_group_arn: arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123
      instance_tags: {app: web}
      install: deploy {{.SHA}}
      alarms: [web-5xx-rate, "", web-5xx-rate]
  eu:
    driver: aws
    aws:
      <<: *fleet
      alarms: web-5xx-rate
  us:
    driver: aws
    aws:
      <<: *fleet
      alarms: {web: 5xx}
default_environment: production
`, []string{
		`.github/shipbot.yml line 9: environments.production.aws.alarms[1]: must not be empty`,
		`.github/shipbot.yml line 9: environments.production.aws.alarms[2]: "web-5xx-rate" is listed twice (first as alarms[0]): list each alarm once`,
		`.github/shipbot.yml line 14: environments.eu.aws.alarms: expected a list of CloudWatch alarm names: for one alarm, write [web-5xx-rate]`,
		`.github/shipbot.yml line 19: environments.us.aws.alarms: expected a list of CloudWatch alarm names, like [web-5xx-rate, web-p99], got a mapping`,
	}},
	{"bake shorter than the analysis interval", `environments:
  production:
    rollout:
      bake: 5s
    analysis:
      interval: 10s
  staging:
    analysis:
      interval: 20s
    rollout:
      bake: 0s
  qa:
    rollout:
      bake: 5s
    analysis: {}
default_environment: staging
`, []string{
		`.github/shipbot.yml line 4: environments.production.rollout.bake: bake 5s is shorter than analysis.interval 10s: the batch would never be judged; set bake to at least 10s, or leave it out for three intervals (30s)`,
		`.github/shipbot.yml line 11: environments.staging.rollout.bake: bake 0s is shorter than analysis.interval 20s: the batch would never be judged; set bake to at least 20s, or leave it out for three intervals (1m)`,
		`.github/shipbot.yml line 14: environments.qa.rollout.bake: bake 5s is shorter than analysis.interval 10s (the default): the batch would never be judged; set bake to at least 10s, or leave it out for three intervals (30s)`,
	}},
	{"bake shorter than the interval alarms are judged at", `environments:
  production:
    driver: aws
    rollout:
      bake: 5s
    aws:
      region: us-east-1
      target_group_arn: arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123
      instance_tags: {app: web}
      install: deploy {{.SHA}}
      alarms: [web-5xx-rate]
`, []string{
		`.github/shipbot.yml line 5: environments.production.rollout.bake: bake 5s is shorter than analysis.interval 10s, the default, and aws.alarms are judged once an interval while a batch bakes: set bake to at least 10s, or leave it out for three intervals (30s)`,
	}},
	{"require_checks", `environments:
  production:
    require_checks: ci
  staging:
    require_checks: [ci, ""]
  qa:
    require_checks: {ci: true}
default_environment: staging
`, []string{
		`.github/shipbot.yml line 3: environments.production.require_checks: "ci" is not all, none or a list of check names: to require one check, write [ci]`,
		`.github/shipbot.yml line 5: environments.staging.require_checks[1]: must not be empty`,
		`.github/shipbot.yml line 7: environments.qa.require_checks: expected all, none or a list of check names, got a mapping`,
	}},
	{"deployers below write", `environments:
  production:
    deployers: read
  staging:
    deployers: triage
`, []string{
		`.github/shipbot.yml line 3: environments.production.deployers: read cannot deploy: deploying needs at least write (use write, maintain or admin, or list logins)`,
		`.github/shipbot.yml line 5: environments.staging.deployers: triage cannot deploy: deploying needs at least write (use write, maintain or admin, or list logins)`,
	}},
	{"deployers not a permission or list", `environments:
  production:
    deployers: octocat
  staging:
    deployers: []
  qa:
    deployers: ["@octocat", shipbot/deployers, "not a login"]
default_environment: staging
`, []string{
		`.github/shipbot.yml line 3: environments.production.deployers: "octocat" is not a permission: use write, maintain or admin, or a list of logins like [octocat]`,
		`.github/shipbot.yml line 5: environments.staging.deployers: an empty list lets no one deploy: list logins, or give a permission like write`,
		`.github/shipbot.yml line 7: environments.qa.deployers[0]: write the login without the @: "octocat"`,
		`.github/shipbot.yml line 7: environments.qa.deployers[1]: "shipbot/deployers" looks like a team; teams are not supported: list logins, or give a permission like write`,
		`.github/shipbot.yml line 7: environments.qa.deployers[2]: "not a login" is not a GitHub login`,
	}},
	{"default_environment not defined", `default_environment: stagin
environments:
  staging: {}
  production: {}
`, []string{
		`.github/shipbot.yml line 1: default_environment: "stagin" is not an environment here (did you mean staging?): the environments are production, staging`,
	}},
	{"default_environment ambiguous", `environments:
  production: {}
  qa: {}
`, []string{
		`.github/shipbot.yml line 1: default_environment: not set, and with no staging environment a bare /deploy has no obvious target: add default_environment: with one of production, qa`,
	}},
	{"two environments on one branch", `default_environment: production
environments:
  production:
    branch: main
  canary:
    branch: main
`, []string{
		`.github/shipbot.yml line 6: environments.canary.branch: main already deploys to production (line 4): a branch deploys to one environment`,
	}},
	{"branch taken by production's default", `default_environment: production
environments:
  production:
    driver: local
  mainline:
    branch: main
`, []string{
		`.github/shipbot.yml line 6: environments.mainline.branch: main already deploys to production (line 3): a branch deploys to one environment; production deploys the default branch unless it sets branch:`,
	}},
	{"production's default branch already taken", `default_environment: production
environments:
  mainline:
    branch: main
  production:
    driver: local
`, []string{
		`.github/shipbot.yml line 5: environments.production.branch: main already deploys to mainline (line 4): a branch deploys to one environment; production deploys the default branch unless it sets branch:, e.g. branch: "" for none`,
	}},
	{"bad branch names", `environments:
  production:
    branch: refs/heads/main
  staging:
    branch: release/*
  qa:
    branch: "a..b"
default_environment: staging
`, []string{
		`.github/shipbot.yml line 3: environments.production.branch: write the branch name, "main", not the ref "refs/heads/main"`,
		`.github/shipbot.yml line 5: environments.staging.branch: "release/*" is a pattern; name one branch`,
		`.github/shipbot.yml line 7: environments.qa.branch: "a..b" is not a valid branch name`,
	}},
	{"environment names", `environments:
  staging: {}
  Staging: {}
  "my env": {}
`, []string{
		`.github/shipbot.yml line 3: environments.Staging: the same environment as staging (line 2): environment names ignore case`,
		`.github/shipbot.yml line 4: environments."my env": "my env" is not a usable environment name: use letters, digits, '.', '-' and '_', starting with a letter or digit`,
	}},
	{"no environments", `environments: {}
`, []string{
		`.github/shipbot.yml line 1: environments: no environments: define at least one, or remove environments: to get the default staging and production`,
	}},
	{"environments is a list", `environments:
  - staging
  - production
`, []string{
		`.github/shipbot.yml line 2: environments: expected a mapping of names to settings, got a list`,
	}},
	{"url not http", `environments:
  production:
    url: example.com
  staging:
    url: https://user:secret@staging.example.com
`, []string{
		`.github/shipbot.yml line 3: environments.production.url: "example.com" is not an http(s) URL: write it like https://example.com`,
		`.github/shipbot.yml line 5: environments.staging.url: the URL holds a user name or password, which would show on GitHub: remove it`,
	}},
	{"not a boolean", `environments:
  staging:
    allow_branches: yes
preview:
  forks: 1
`, []string{
		`.github/shipbot.yml line 3: environments.staging.allow_branches: "yes" is not true or false: write true or false`,
		`.github/shipbot.yml line 5: preview.forks: "1" is not true or false: write true or false`,
	}},
	{"mapping expected", `environments:
  production:
    rollout: fast
    health: [/healthz]
`, []string{
		`.github/shipbot.yml line 3: environments.production.rollout: expected a mapping with keys like canary, batch, max_unavailable, by_zone, bake, got "fast"`,
		`.github/shipbot.yml line 4: environments.production.health: expected a mapping with keys like path, interval, healthy_after, timeout, got a list`,
	}},
	{"single value expected", `environments:
  production:
    branch: [main, release]
app:
  build:
    cmd: make
`, []string{
		`.github/shipbot.yml line 3: environments.production.branch: expected a single value, got a list`,
		`.github/shipbot.yml line 6: app.build: expected a single value, got a mapping`,
	}},
	{"app", `app:
  build: ""
  port_env: HTTP-PORT
`, []string{
		`.github/shipbot.yml line 2: app.build: must not be empty`,
		`.github/shipbot.yml line 3: app.port_env: "HTTP-PORT" is not an environment variable name: use letters, digits and _, like PORT`,
	}},
	{"health path", `environments:
  production:
    health:
      path: healthz
`, []string{
		`.github/shipbot.yml line 4: environments.production.health.path: "healthz" is not a URL path: write it like /healthz`,
	}},
	{"preview ttl too short", `preview:
  ttl: 30m
`, []string{
		`.github/shipbot.yml line 2: preview.ttl: 30m is too short: a preview lives at least 1h after its last push`,
	}},
	{"preview aws driver without aws block", `preview:
  driver: aws
`, []string{
		`.github/shipbot.yml line 2: preview.aws: driver aws needs an aws: block with launch_template, listener_arn and domain`,
	}},
	{"preview aws bad values", `preview:
  driver: aws
  aws:
    launch_template: web-preview
    listener_arn: arn:aws:ec2:us-east-1:123:listener
    domain: https://preview.example.com
`, []string{
		`.github/shipbot.yml line 5: preview.aws.listener_arn: "arn:aws:ec2:us-east-1:123:listener" is not a load balancer listener ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:...)`,
		`.github/shipbot.yml line 6: preview.aws.domain: "https://preview.example.com" is not a domain: give the domain alone, like preview.example.com`,
	}},
	{"preview aws missing keys", `preview:
  driver: aws
  aws:
    domain: preview.example.com
`, []string{
		`.github/shipbot.yml line 3: preview.aws.launch_template: missing, and driver aws needs it: the EC2 launch template preview instances start from, e.g. launch_template: web-preview`,
		`.github/shipbot.yml line 3: preview.aws.listener_arn: missing, and driver aws needs it: the ARN of the ALB listener that gets a host rule per preview`,
	}},
	{"merge key of a plain value", `environments:
  staging:
    <<: fast
`, []string{
		`.github/shipbot.yml line 3: environments.staging: << merges mappings, like <<: *defaults; got "fast"`,
	}},
	{"key is a list", `environments:
  [a, b]: {}
`, []string{
		`.github/shipbot.yml line 2: environments: a key must be a plain name, not a list`,
	}},
	{"variable names", `app:
  env:
    log-format: json
    1ST: x
    "": y
environments:
  production:
    env: {Checkout_V2: "on"}
    secrets: [database_url]
preview:
  env:
    app env: preview
`, []string{
		`.github/shipbot.yml line 3: app.env.log-format: "log-format" is not a variable name: use capital letters, digits and _, not starting with a digit, like LOG_FORMAT`,
		`.github/shipbot.yml line 4: app.env.1ST: "1ST" is not a variable name: use capital letters, digits and _, not starting with a digit, like LOG_FORMAT`,
		`.github/shipbot.yml line 5: app.env."": a variable needs a name, like LOG_FORMAT`,
		`.github/shipbot.yml line 8: environments.production.env.Checkout_V2: "Checkout_V2" is not a variable name: use capital letters, digits and _, not starting with a digit, like CHECKOUT_V2`,
		`.github/shipbot.yml line 9: environments.production.secrets[0]: "database_url" is not a variable name: use capital letters, digits and _, not starting with a digit, like DATABASE_URL`,
		`.github/shipbot.yml line 12: preview.env."app env": "app env" is not a variable name: use capital letters, digits and _, not starting with a digit, like APP_ENV`,
	}},
	{"variable values", `app:
  env:
    LOG_FORMAT:
    HOSTS: [a, b]
    LIMITS: {cpu: 1}
    SEP: "a\0b"
`, []string{
		`.github/shipbot.yml line 3: app.env.LOG_FORMAT: has no value: write one, or "" for an empty value`,
		`.github/shipbot.yml line 4: app.env.HOSTS: expected a single value, got a list: a variable holds text, so put the value in quotes if the brackets are part of it`,
		`.github/shipbot.yml line 5: app.env.LIMITS: expected a single value, got a mapping: a variable holds text, so put the value in quotes if the brackets are part of it`,
		`.github/shipbot.yml line 6: app.env.SEP: the value holds a NUL character (\0), which no process's environment can carry: remove it`,
	}},
	{"env not a mapping", `app:
  env: [LOG_FORMAT=json]
environments:
  staging:
    env: LOG_FORMAT=json
`, []string{
		`.github/shipbot.yml line 2: app.env: expected a mapping of variable names to values, like {LOG_FORMAT: json}, got a list`,
		`.github/shipbot.yml line 5: environments.staging.env: expected a mapping of variable names to values, like {LOG_FORMAT: json}, got "LOG_FORMAT=json"`,
	}},
	{"secrets not a list", `environments:
  production:
    secrets: DATABASE_URL
  staging:
    secrets: database url
preview:
  secrets:
    PREVIEW_DATABASE_URL: postgres://preview@db/app
`, []string{
		`.github/shipbot.yml line 3: environments.production.secrets: expected a list of names: for one secret, write [DATABASE_URL]`,
		`.github/shipbot.yml line 5: environments.staging.secrets: expected a list of names: for one secret, write [DATABASE_URL]`,
		`.github/shipbot.yml line 8: preview.secrets: expected a list of names, got a mapping: a value in this file could be read by anyone who can read the repository, so list only the names, like [DATABASE_URL], and set each value with bot secrets set OWNER/REPO preview NAME`,
	}},
	{"secret names empty or not names", `environments:
  production:
    secrets:
      - ""
      -
      - [DATABASE_URL]
      - {STRIPE_KEY: sk_live}
`, []string{
		`.github/shipbot.yml line 4: environments.production.secrets[0]: empty: name the secret, like DATABASE_URL, or remove the item`,
		`.github/shipbot.yml line 5: environments.production.secrets[1]: empty: name the secret, like DATABASE_URL, or remove the item`,
		`.github/shipbot.yml line 6: environments.production.secrets[2]: expected a secret's name, got a list: list names only, like [DATABASE_URL, STRIPE_KEY]`,
		`.github/shipbot.yml line 7: environments.production.secrets[3]: expected a secret's name, got a mapping: list names only, like [DATABASE_URL, STRIPE_KEY]`,
	}},
	{"secret named in two places", `environments:
  production:
    env:
      LOG_LEVEL: info
      DATABASE_URL: postgres://db/app
    secrets: [STRIPE_KEY, DATABASE_URL, STRIPE_KEY]
preview:
  env: {APP_ENV: preview, PREVIEW_DATABASE_URL: postgres://preview/app}
  secrets:
    - PREVIEW_DATABASE_URL
`, []string{
		`.github/shipbot.yml line 6: environments.production.secrets[1]: DATABASE_URL is also set in env on line 5: a variable comes from env or from secrets, so remove it from one of them`,
		`.github/shipbot.yml line 6: environments.production.secrets[2]: STRIPE_KEY is listed twice (first as secrets[0]): list each secret once`,
		`.github/shipbot.yml line 10: preview.secrets[0]: PREVIEW_DATABASE_URL is also set in env on line 8: a variable comes from env or from secrets, so remove it from one of them`,
	}},
	{"the port variable", `app:
  env: {PORT: "8080"}
environments:
  production:
    env: {PORT: "8080"}
    secrets: [PORT]
`, []string{
		`.github/shipbot.yml line 2: app.env.PORT: PORT is the port variable (app.port_env), which the driver sets to each instance's own port: remove it from env`,
		`.github/shipbot.yml line 5: environments.production.env.PORT: PORT is the port variable (app.port_env), which the driver sets to each instance's own port: remove it from env`,
		`.github/shipbot.yml line 6: environments.production.secrets[0]: PORT is the port variable (app.port_env), which the driver sets to each instance's own port: remove it from secrets`,
	}},
	{"the port variable is app.port_env", `app:
  port_env: HTTP_PORT
  env: {PORT: "8080", HTTP_PORT: "8080"}
preview:
  secrets: [HTTP_PORT]
`, []string{
		`.github/shipbot.yml line 3: app.env.HTTP_PORT: HTTP_PORT is the port variable (app.port_env), which the driver sets to each instance's own port: remove it from env`,
		`.github/shipbot.yml line 5: preview.secrets[0]: HTTP_PORT is the port variable (app.port_env), which the driver sets to each instance's own port: remove it from secrets`,
	}},
	{"app.release on an aws environment without aws.release", `app:
  release: ./app migrate
environments:
  production:
    driver: aws
    aws:
      region: us-east-1
      target_group_arn: arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123
      instance_tags: {app: web}
      install: deploy {{.SHA}}
  eu:
    driver: aws
  staging:
    driver: local
`, []string{
		`.github/shipbot.yml line 6: environments.production.aws.release: missing, and app.release is set: driver aws runs the release phase through SSM with aws.release instead, so add one here, e.g. release: sudo /opt/web/bin/migrate {{.SHA}}`,
		`.github/shipbot.yml line 12: environments.eu.aws: driver aws needs an aws: block with region, target_group_arn, instance_tags, install`,
	}},
	{"aws.release on a local environment", `environments:
  staging:
    driver: local
    aws:
      release: sudo /opt/web/bin/migrate {{.SHA}}
  qa:
    aws:
      release: migrate {{.SHA}}
      alarms: [web-5xx-rate]
default_environment: staging
`, []string{
		`.github/shipbot.yml line 5: environments.staging.aws.release: runs through SSM on an AWS instance, and this environment's driver is local: remove aws: and put the command in app.release, which the local driver runs in the new build, or set driver: aws`,
		`.github/shipbot.yml line 8: environments.qa.aws.release: runs through SSM on an AWS instance, and this environment's driver is local: remove aws: and put the command in app.release, which the local driver runs in the new build, or set driver: aws`,
		`.github/shipbot.yml line 9: environments.qa.aws.alarms: CloudWatch alarms only apply to driver aws, and this environment's driver is local: remove aws: or set driver: aws; with driver local, analysis: judges each batch by the error rate and p99 the driver measures itself`,
	}},
	{"aws.release template", `app:
  release: ""
environments:
  production:
    driver: aws
    aws: &fleet
      region: us-east-1
      target_group_arn: arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123
      instance_tags: {app: web}
      install: deploy {{.SHA}}
      release: migrate {{.Ref}}
  eu:
    driver: aws
    aws:
      <<: *fleet
      release: sudo /opt/web/bin/migrate
default_environment: production
`, []string{
		`.github/shipbot.yml line 2: app.release: must not be empty`,
		`.github/shipbot.yml line 11: environments.production.aws.release: {{.Ref}} is not allowed: the template may only use {{.SHA}}`,
		`.github/shipbot.yml line 16: environments.eu.aws.release: never uses {{.SHA}}: it runs on an instance still on the previous release, so the command must say which release to prepare for, e.g. migrate {{.SHA}}`,
	}},
	{"preview.aws.install template", `preview:
  driver: aws
  aws:
    install: /opt/shipbot/install latest
    launch_template: web-preview
    listener_arn: arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/1/2
    domain: preview.example.com
`, []string{
		`.github/shipbot.yml line 4: preview.aws.install: never uses {{.SHA}}: the command must say which release to install, e.g. install {{.SHA}}`,
	}},
	{"variables at the wrong level", `app:
  secrets: [DATABASE_URL]
environments:
  production:
    release: ./app migrate
preview:
  install: /opt/shipbot/install {{.SHA}}
`, []string{
		`.github/shipbot.yml line 2: app.secrets: unknown key; secrets belongs under an environment (environments.NAME:) or preview: (valid keys here: build, run, port_env, release, env)`,
		`.github/shipbot.yml line 5: environments.production.release: unknown key; release belongs under app: or an environment's aws: (valid keys here: branch, driver, instances, require_checks, deployers, allow_branches, url, env, secrets, freeze, rollout, health, analysis, aws)`,
		`.github/shipbot.yml line 7: preview.install: unknown key; install belongs under an environment's aws: or preview.aws: (valid keys here: driver, forks, ttl, env, secrets, aws)`,
	}},
	{"many mistakes at once", `default_environment: staging
environments:
  production:
    driver: aws
    rollout:
      canary: 0
      batch: 25 %
      bake: 30
  staging:
    instances: -1
preview:
  ttl: 1d
`, []string{
		`.github/shipbot.yml line 4: environments.production.aws: driver aws needs an aws: block with region, target_group_arn, instance_tags, install`,
		`.github/shipbot.yml line 6: environments.production.rollout.canary: 0 is too small: canary must be at least 1`,
		`.github/shipbot.yml line 7: environments.production.rollout.batch: "25 %" is not a count or a percentage: use a whole number like 3 or a percentage like 25%`,
		`.github/shipbot.yml line 8: environments.production.rollout.bake: 30 has no unit: write 30s for seconds or 30m for minutes`,
		`.github/shipbot.yml line 10: environments.staging.instances: -1 is too small: instances must be at least 1`,
		`.github/shipbot.yml line 12: preview.ttl: "1d" is not a duration: use a number with a unit, like 30s, 2m or 1h30m`,
	}},
	{"notify.slack channel written as a comment", `notify:
  slack:
    channel: #deploys
`, []string{
		`.github/shipbot.yml line 3: notify.slack.channel: is empty, because # starts a comment in YAML: quote the name, like channel: "#deploys"`,
	}},
	{"notify.slack without a channel", `notify:
  slack:
    only: [production]
`, []string{
		`.github/shipbot.yml line 2: notify.slack.channel: missing: say where deploys are announced, like channel: "#deploys" or a channel id like C0123456789`,
	}},
	{"notify.slack empty", `notify:
  slack:
`, []string{
		`.github/shipbot.yml line 2: notify.slack: is empty: give it a channel, like channel: "#deploys", or remove it`,
	}},
	{"notify.slack channels", `notify:
  slack: &s
    channel: deploys
notify2: x
`, []string{
		`.github/shipbot.yml line 3: notify.slack.channel: "deploys" is neither a channel name nor a channel id: write a name with its #, quoted, like channel: "#deploys"`,
		`.github/shipbot.yml line 4: notify2: unknown key; did you mean notify? (valid keys here: default_environment, app, environments, preview, notify)`,
	}},
	{"notify.slack channel with capitals", `notify:
  slack: {channel: "#Deploys"}
`, []string{
		`.github/shipbot.yml line 2: notify.slack.channel: "#Deploys" has capital letters, which Slack channel names never have: write "#deploys"`,
	}},
	{"notify.slack channel that is neither", `notify:
  slack: {channel: "deploys and more"}
`, []string{
		`.github/shipbot.yml line 2: notify.slack.channel: "deploys and more" is not a Slack channel: write a name like "#deploys" (lower-case letters, digits, - and _) or a channel id like C0123456789`,
	}},
	{"notify.slack.only names", `environments:
  staging: {}
  production: {}
notify:
  slack:
    channel: C0123456789
    only:
      - prodution
      - Staging
      - staging
      - preview
      - qa
`, []string{
		`.github/shipbot.yml line 8: notify.slack.only[0]: "prodution" is not an environment here (did you mean production?): use one of production, staging, preview`,
		`.github/shipbot.yml line 10: notify.slack.only[2]: "staging" is listed twice (first as only[1]); keep one`,
		`.github/shipbot.yml line 12: notify.slack.only[4]: "qa" is not an environment here: use one of production, staging, preview`,
	}},
	{"notify.slack.only not a list", `notify:
  slack:
    channel: "#deploys"
    only: production
`, []string{
		`.github/shipbot.yml line 4: notify.slack.only: expected a list of environments, like [production], got "production"`,
	}},
	{"notify.slack.only empty", `notify:
  slack:
    channel: "#deploys"
    only: []
`, []string{
		`.github/shipbot.yml line 4: notify.slack.only: an empty list announces nothing: list environments, or remove notify.slack to send no Slack messages`,
	}},
	{"notify unknown keys", `notify:
  slack:
    channel: "#deploys"
    webhooks: [https://hooks.example.com/cd]
  email: ops@example.com
`, []string{
		`.github/shipbot.yml line 4: notify.slack.webhooks: unknown key; webhooks belongs under notify: (valid keys here: channel, only)`,
		`.github/shipbot.yml line 5: notify.email: unknown key (valid keys here: slack, webhooks)`,
	}},
	{"notify.webhooks on link-local and odd addresses", `notify:
  webhooks:
    - http://169.254.169.254/latest/meta-data/
    - http://169.254.10.1:8080/hook
    - http://[fe80::1%25eth0]/hook
    - http://[::ffff:169.254.169.254]/
    - http://[fd00:ec2::254]/
    - http://2852039166/
    - http://0xa9.0xfe.0xa9.0xfe/
    - https://hooks.example.com/cd
    - https://10.0.0.7/cd
    - https://hooks.example.com/cd
`, []string{
		`.github/shipbot.yml line 3: notify.webhooks[0]: 169.254.169.254 is the cloud metadata service, which holds the bot's own credentials: events are never sent there; use your receiver's address`,
		`.github/shipbot.yml line 4: notify.webhooks[1]: 169.254.10.1 is a link-local address (169.254.0.0/16 or fe80::/10), reachable only from the bot's own network segment, where the cloud metadata service lives: events are never sent there; use your receiver's address`,
		`.github/shipbot.yml line 5: notify.webhooks[2]: fe80::1 is a link-local address (169.254.0.0/16 or fe80::/10), reachable only from the bot's own network segment, where the cloud metadata service lives: events are never sent there; use your receiver's address`,
		`.github/shipbot.yml line 6: notify.webhooks[3]: 169.254.169.254 is the cloud metadata service, which holds the bot's own credentials: events are never sent there; use your receiver's address`,
		`.github/shipbot.yml line 7: notify.webhooks[4]: fd00:ec2::254 is the cloud metadata service, which holds the bot's own credentials: events are never sent there; use your receiver's address`,
		`.github/shipbot.yml line 8: notify.webhooks[5]: "2852039166" is an IP address in an unusual spelling, which some resolvers read as another address: write it as a dotted quad like 203.0.113.7, or use a host name`,
		`.github/shipbot.yml line 9: notify.webhooks[6]: "0xa9.0xfe.0xa9.0xfe" is an IP address in an unusual spelling, which some resolvers read as another address: write it as a dotted quad like 203.0.113.7, or use a host name`,
		`.github/shipbot.yml line 12: notify.webhooks[9]: listed twice (first as webhooks[7]): each event would be sent twice; keep one`,
	}},
	{"notify.webhooks not URLs", `notify:
  webhooks:
    - hooks.example.com/cd
    - ftp://hooks.example.com/cd
    - https://user:pass@hooks.example.com/cd
    - ""
    - {url: https://hooks.example.com}
`, []string{
		`.github/shipbot.yml line 3: notify.webhooks[0]: "hooks.example.com/cd" is not an http(s) URL: write it like https://hooks.example.com/cd`,
		`.github/shipbot.yml line 4: notify.webhooks[1]: "ftp://hooks.example.com/cd" is not an http(s) URL: write it like https://hooks.example.com/cd`,
		`.github/shipbot.yml line 5: notify.webhooks[2]: the URL holds a user name or password, which would show in the bot's logs and dashboard: remove it and have the receiver check the X-Shipbot-Signature-256 header instead`,
		`.github/shipbot.yml line 6: notify.webhooks[3]: must not be empty`,
		`.github/shipbot.yml line 7: notify.webhooks[4]: expected a single value, got a mapping`,
	}},
	{"notify.webhooks not a list", `notify:
  webhooks: https://hooks.example.com/cd
`, []string{
		`.github/shipbot.yml line 2: notify.webhooks: expected a list of URLs, like [https://hooks.example.com/cd], got "https://hooks.example.com/cd"`,
	}},
}
