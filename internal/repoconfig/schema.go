package repoconfig

import (
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// config applies the top-level keys over the defaults in cfg.
func (p *parser) config(root *yaml.Node, cfg *Config) {
	f, ok := p.fields(root, "", topKeys)
	if !ok {
		return
	}
	if e, ok := f["app"]; ok {
		p.app(e, &cfg.App)
	}
	if e, ok := f["preview"]; ok {
		p.preview(e, &cfg.Preview)
	}
	envsOK := true
	if e, ok := f["environments"]; ok {
		cfg.Environments, envsOK = p.environments(e)
	}
	if e, ok := f["notify"]; ok {
		cfg.Notify = p.notify(e, cfg, envsOK)
	}
	if e, ok := f["default_environment"]; ok {
		name, ok := p.text("default_environment", e.val)
		if ok && envsOK {
			if env, found := cfg.Environment(name); found {
				cfg.DefaultEnvironment = env.Name
			} else {
				p.errf(e.line(), "default_environment", "%s is not an environment here%s: the environments are %s",
					quote(name), didYouMean(name, cfg.EnvironmentNames()), strings.Join(cfg.EnvironmentNames(), ", "))
			}
		}
		return
	}
	if !envsOK {
		return
	}
	names := cfg.EnvironmentNames()
	if env, ok := cfg.Environment(stagingName); ok {
		cfg.DefaultEnvironment = env.Name
	} else if len(names) == 1 {
		cfg.DefaultEnvironment = names[0]
	} else {
		p.errf(f["environments"].key.Line, "default_environment",
			"not set, and with no staging environment a bare /deploy has no obvious target: add default_environment: with one of %s",
			strings.Join(names, ", "))
	}
}

func didYouMean(name string, valid []string) string {
	if s := closest(name, valid); s != "" && s != name {
		return " (did you mean " + s + "?)"
	}
	return ""
}

func (p *parser) app(e entry, app *App) {
	f, ok := p.fields(e.val, "app", appKeys)
	if !ok {
		return
	}
	field(f, "app", "build", &app.Build, p.text)
	field(f, "app", "run", &app.Run, p.text)
	if e, ok := f["port_env"]; ok {
		p.portEnv = ""
		if s, ok := p.text("app.port_env", e.val); ok {
			if !envVarName.MatchString(s) {
				p.errf(e.line(), "app.port_env", "%s is not an environment variable name: use letters, digits and _, like PORT", quote(s))
			} else {
				app.PortEnv, p.portEnv = s, s
			}
		}
	}
	field(f, "app", "release", &app.Release, p.text)
	p.appRelease = app.Release
	if e, ok := f["env"]; ok {
		app.Env, _ = p.env("app.env", e.val)
	}
}

// environments reads the environments mapping; ok is false when it is too
// broken to judge default_environment against.
func (p *parser) environments(e entry) (map[string]*Environment, bool) {
	const path = "environments"
	entries, ok := p.mapping(e.val, path, nil)
	if !ok {
		return nil, false
	}
	if len(deref(e.val).Content) == 0 {
		p.errf(e.line(), path, "no environments: define at least one, or remove environments: to get the default staging and production")
		return nil, false
	}
	type claim struct {
		env      string
		line     int
		implicit bool // production's default branch
	}
	if len(entries) == 0 {
		return nil, false // every key was unusable, and said so
	}
	envs := make(map[string]*Environment, len(entries))
	names := map[string]entry{}    // lower-case name → first entry
	branches := map[string]claim{} // branch → environment deploying it
	for _, ent := range entries {
		name, epath := ent.name, join(path, ent.name)
		if problem := checkEnvironmentName(name); problem != "" {
			p.errf(ent.key.Line, epath, "%s", problem)
		}
		if first, dup := names[strings.ToLower(name)]; dup {
			p.errf(ent.key.Line, epath, "the same environment as %s (line %d): environment names ignore case", first.name, first.key.Line)
			continue
		}
		names[strings.ToLower(name)] = ent
		env, c := p.environment(ent, epath)
		envs[name] = env
		if env.Branch == "" {
			continue
		}
		if prev, taken := branches[env.Branch]; taken {
			msg := fmt.Sprintf("%s already deploys to %s (line %d): a branch deploys to one environment", env.Branch, prev.env, prev.line)
			if prev.implicit {
				msg += fmt.Sprintf("; %s deploys the default branch unless it sets branch:", prev.env)
			} else if c.implicit {
				msg += fmt.Sprintf("; %s deploys the default branch unless it sets branch:, e.g. branch: \"\" for none", name)
			}
			p.errf(c.line, join(epath, "branch"), "%s", msg)
			continue
		}
		branches[env.Branch] = claim{env: name, line: c.line, implicit: c.implicit}
	}
	return envs, true
}

// branchClaim says where an environment's branch came from.
type branchClaim struct {
	line     int
	implicit bool
}

func (p *parser) environment(ent entry, path string) (*Environment, branchClaim) {
	env := defaultEnvironment(ent.name, p.defaultBranch)
	claim := branchClaim{line: ent.key.Line, implicit: true}
	if isNull(ent.val) {
		return env, claim
	}
	f, ok := p.fields(ent.val, path, envKeys)
	if !ok {
		return env, claim
	}
	driverOK := p.driverField(f, path, &env.Driver)
	if e, ok := f["branch"]; ok {
		claim = branchClaim{line: e.line(), implicit: false}
		if s, ok := p.scalar(join(path, "branch"), e.val); ok {
			if problem := checkBranch(s); problem != "" {
				p.errf(e.line(), join(path, "branch"), "%s", problem)
			} else {
				env.Branch = s
			}
		}
	}
	instancesOK := true
	if e, ok := f["instances"]; ok {
		switch {
		case !driverOK:
		case env.Driver != DriverLocal:
			p.errf(e.line(), join(path, "instances"), "only applies to driver local; with driver %s the instances are the EC2 instances aws.instance_tags finds", env.Driver)
		default:
			env.Instances, instancesOK = p.count(join(path, "instances"), e.val, 1, maxLocalInstances, "instance")
		}
	}
	if env.Driver != DriverLocal {
		env.Instances = 0
	}
	if e, ok := f["require_checks"]; ok {
		p.checks(join(path, "require_checks"), e.val, &env.RequireChecks)
	}
	if e, ok := f["deployers"]; ok {
		p.deployers(join(path, "deployers"), e.val, &env.Deployers)
	}
	field(f, path, "allow_branches", &env.AllowBranches, p.boolean)
	field(f, path, "url", &env.URL, p.url)
	env.Env, env.Secrets = p.scopeVars(f, path, ent.name)
	if e, ok := f["freeze"]; ok {
		env.Freeze = p.freeze(join(path, "freeze"), e.val)
	}
	ro := rolloutSeen{canaryOK: true, bakeOK: true}
	canaryLine := ent.key.Line
	if e, ok := f["rollout"]; ok {
		ro = p.rollout(join(path, "rollout"), e.val, &env.Rollout)
		canaryLine = e.key.Line
		if ro.canaryLine > 0 {
			canaryLine = ro.canaryLine
		}
	}
	if e, ok := f["health"]; ok {
		p.health(join(path, "health"), e.val, &env.Health)
	}
	aws, hasAWS := f["aws"]
	switch {
	case !driverOK:
	case env.Driver == DriverAWS && !hasAWS:
		p.missingAWS(path, ent, f, strings.Join(fleetRequired, ", "))
	case env.Driver == DriverAWS:
		env.AWS = p.fleet(join(path, "aws"), aws)
	case hasAWS:
		p.awsElsewhere(path, aws, env.Driver)
	}
	p.judging(path, f, env, ro)
	// The local driver knows its instance count, so a canary bigger than
	// the environment is a mistake visible now rather than at deploy time.
	if driverOK && env.Driver == DriverLocal && instancesOK && ro.canaryOK && env.Rollout.Canary > env.Instances {
		p.errf(canaryLine, join(path, "rollout.canary"), "%d is more than the environment's %d instances", env.Rollout.Canary, env.Instances)
	}
	return env, claim
}

// awsElsewhere reports an environment's aws: block under a driver other
// than aws. When it holds alarms or release the problem is said there,
// with what the local driver does instead: CloudWatch alarms watch an AWS
// fleet, and the local driver measures its own traffic and runs
// app.release itself.
func (p *parser) awsElsewhere(path string, aws entry, d Driver) {
	said := false
	if line := keyLine(aws.val, "alarms"); line > 0 {
		p.errf(line, join(path, "aws.alarms"), "CloudWatch alarms only apply to driver aws, and this environment's driver is %s: remove aws: or set driver: aws; with driver local, analysis: judges each batch by the error rate and p99 the driver measures itself", d)
		said = true
	}
	if line := keyLine(aws.val, "release"); line > 0 {
		p.errf(line, join(path, "aws.release"), "runs through SSM on an AWS instance, and this environment's driver is %s: remove aws: and put the command in app.release, which the local driver runs in the new build, or set driver: aws", d)
		said = true
	}
	if !said {
		p.errf(aws.key.Line, join(path, "aws"), "only applies to driver aws, and this environment's driver is %s: remove aws: or set driver: aws", d)
	}
}

// keyLine is the line of key written out in the mapping n, or 0.
func keyLine(n *yaml.Node, key string) int {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		return 0
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := deref(n.Content[i]); k.Kind == yaml.ScalarNode && k.Value == key {
			return k.Line
		}
	}
	return 0
}

// maxLocalInstances bounds the processes one environment starts on the
// bot's own machine.
const maxLocalInstances = 100

// driverField reads the block's driver, when written, into *d; false if
// it is not one.
func (p *parser) driverField(f map[string]entry, path string, d *Driver) bool {
	e, ok := f["driver"]
	if !ok {
		return true
	}
	*d, ok = p.driver(join(path, "driver"), e.val, *d)
	return ok
}

// missingAWS reports a block with driver aws and no aws: block, at its
// driver: line, or at the block's key when driver: is not written.
func (p *parser) missingAWS(path string, block entry, f map[string]entry, needs string) {
	line := block.key.Line
	if e, ok := f["driver"]; ok {
		line = e.line()
	}
	p.errf(line, join(path, "aws"), "driver aws needs an aws: block with %s", needs)
}

func (p *parser) driver(path string, n *yaml.Node, def Driver) (Driver, bool) {
	s, ok := p.scalar(path, n)
	if !ok {
		return def, false
	}
	switch d := Driver(s); d {
	case DriverLocal, DriverAWS:
		return d, true
	}
	p.errf(n.Line, path, "%s is not a driver: use local or aws", quote(s))
	return def, false
}

// rolloutSeen is what the checks across an environment's blocks need to
// know of its rollout: canary against the instance count, bake against
// analysis.interval.
type rolloutSeen struct {
	canaryOK   bool
	canaryLine int // 0: canary not written
	bakeOK     bool
	bakeLine   int // 0: bake not written
}

func (p *parser) rollout(path string, n *yaml.Node, r *Rollout) rolloutSeen {
	f, ok := p.fields(n, path, rolloutKeys)
	if !ok {
		return rolloutSeen{}
	}
	seen := rolloutSeen{canaryOK: true}
	if e, ok := f["canary"]; ok {
		r.Canary, seen.canaryOK = p.count(join(path, "canary"), e.val, 1, 0, "instance")
		seen.canaryLine = e.line()
	}
	if e, ok := f["batch"]; ok {
		r.Batch, _ = p.amount(join(path, "batch"), e.val, r.Batch)
	}
	if e, ok := f["max_unavailable"]; ok {
		r.MaxUnavailable, _ = p.amount(join(path, "max_unavailable"), e.val, r.MaxUnavailable)
	}
	field(f, path, "by_zone", &r.ByZone, p.boolean)
	if e, ok := f["bake"]; ok {
		seen.bakeLine = e.line()
	}
	seen.bakeOK = p.durationAtLeast(f, path, "bake", &r.Bake, 0, "is negative: bake is a wait, 0s or longer")
	return seen
}

func (p *parser) health(path string, n *yaml.Node, h *Health) {
	f, ok := p.fields(n, path, healthKeys)
	if !ok {
		return
	}
	good := true
	if e, ok := f["path"]; ok {
		kpath := join(path, "path")
		if s, ok := p.text(kpath, e.val); ok {
			if problem := checkHealthPath(s); problem != "" {
				p.errf(e.line(), kpath, "%s", problem)
				good = false
			} else {
				h.Path = s
			}
		}
	}
	good = p.durationAtLeast(f, path, "interval", &h.Interval, minHealthInterval,
		fmt.Sprintf("is too short: health checks are at least %s apart", minHealthInterval)) && good
	if e, ok := f["healthy_after"]; ok {
		var ok bool
		h.HealthyAfter, ok = p.count(join(path, "healthy_after"), e.val, 1, maxHealthyAfter, "pass")
		good = good && ok
	}
	good = p.durationAtLeast(f, path, "timeout", &h.Timeout, time.Nanosecond, "is not a timeout: make it longer than 0s") && good
	// healthy_after passes one interval apart take interval × healthy_after;
	// a timeout no longer than that fails every batch.
	if need, ok := passesTake(h.Interval, h.HealthyAfter); good && (!ok || h.Timeout <= need) {
		key := "timeout"
		for _, k := range []string{"timeout", "interval", "healthy_after"} {
			if _, ok := f[k]; ok {
				key = k
				break
			}
		}
		took := "longer than any timeout"
		if ok {
			took = prettyDuration(need)
		}
		p.errf(f[key].line(), join(path, key), "timeout %s is too short: %d passes %s apart take %s; make timeout longer than that, or interval shorter",
			prettyDuration(h.Timeout), h.HealthyAfter, prettyDuration(h.Interval), took)
	}
}

func (p *parser) fleet(path string, block entry) *AWSFleet {
	f, ok := p.fields(block.val, path, fleetKeys)
	if !ok {
		return nil
	}
	fl := &AWSFleet{}
	p.required(path, block.key.Line, f, fleetRequired, "driver aws", map[string]string{
		"region":           "e.g. region: us-east-1",
		"target_group_arn": "the ARN of the ALB target group the instances sit behind",
		"instance_tags":    "e.g. instance_tags: {app: web, env: production}",
		"install":          "the command run on each instance, e.g. install: sudo /opt/web/bin/install {{.SHA}}",
	})
	field(f, path, "region", &fl.Region, p.region)
	field(f, path, "target_group_arn", &fl.TargetGroupARN, p.arnOf("target group"))
	if e, ok := f["instance_tags"]; ok {
		fl.InstanceTags = p.tags(join(path, "instance_tags"), e.val)
	}
	field(f, path, "install", &fl.Install, p.commandTemplate(installNeedsSHA))
	field(f, path, "release", &fl.Release, p.commandTemplate(releaseNeedsSHA))
	if _, ok := f["release"]; !ok && p.appRelease != "" {
		p.errf(block.key.Line, join(path, "release"), "missing, and app.release is set: driver aws runs the release phase through SSM with aws.release instead, so add one here, e.g. release: sudo /opt/web/bin/migrate {{.SHA}}")
	}
	if e, ok := f["alarms"]; ok {
		fl.Alarms = p.alarms(join(path, "alarms"), e.val)
	}
	return fl
}

// field reads f[key], when the block has it, into *dst with parse (a value
// reader such as p.text, which reports what is wrong with the value).
func field[T any](f map[string]entry, path, key string, dst *T, parse func(path string, n *yaml.Node) (T, bool)) {
	if e, ok := f[key]; ok {
		*dst, _ = parse(join(path, key), e.val)
	}
}

// durationAtLeast reads the duration f[key], when the block has it, into
// *dst if it is least or longer, and otherwise reports it followed by why
// ("is too short: ..."). It returns false if the value is not good.
func (p *parser) durationAtLeast(f map[string]entry, path, key string, dst *time.Duration, least time.Duration, why string) bool {
	e, ok := f[key]
	if !ok {
		return true
	}
	kpath := join(path, key)
	d, ok := p.duration(kpath, e.val)
	if !ok {
		return false
	}
	if d < least {
		p.errf(e.line(), kpath, "%s %s", e.val.Value, why)
		return false
	}
	*dst = d
	return true
}

// arnOf is p.arn as a value reader for field: an ARN of a what.
func (p *parser) arnOf(what string) func(path string, n *yaml.Node) (string, bool) {
	return func(path string, n *yaml.Node) (string, bool) { return p.arn(path, n, what) }
}

// required reports each key of keys that f, the block at line, lacks; who
// is what needs them ("driver aws").
func (p *parser) required(path string, line int, f map[string]entry, keys []string, who string, hints map[string]string) {
	for _, k := range keys {
		if _, ok := f[k]; !ok {
			p.errf(line, join(path, k), "missing, and %s needs it: %s", who, hints[k])
		}
	}
}

func (p *parser) tags(path string, n *yaml.Node) map[string]string {
	entries, ok := p.mapping(n, path, nil)
	if !ok {
		return nil
	}
	if len(entries) == 0 {
		p.errf(deref(n).Line, path, "no tags: name at least one, e.g. {app: web}, or every instance in the account would match")
		return nil
	}
	tags := make(map[string]string, len(entries))
	for _, e := range entries {
		kpath := join(path, e.name)
		if strings.TrimSpace(e.name) == "" {
			p.errf(e.key.Line, kpath, "a tag needs a name")
			continue
		}
		if isNull(e.val) {
			p.errf(e.line(), kpath, "the tag has no value: write one, or \"\" to match an empty value")
			continue
		}
		if v, ok := p.scalar(kpath, e.val); ok {
			tags[e.name] = v
		}
	}
	return tags
}

func (p *parser) preview(e entry, pv *Preview) {
	const path = "preview"
	f, ok := p.fields(e.val, path, previewKeys)
	if !ok {
		return
	}
	driverOK := p.driverField(f, path, &pv.Driver)
	field(f, path, "forks", &pv.Forks, p.boolean)
	p.durationAtLeast(f, path, "ttl", &pv.TTL, minPreviewTTL, "is too short: a preview lives at least 1h after its last push")
	pv.Env, pv.Secrets = p.scopeVars(f, path, "preview")
	aws, hasAWS := f["aws"]
	switch {
	case !driverOK:
	case pv.Driver == DriverAWS && !hasAWS:
		p.missingAWS(path, e, f, "launch_template, listener_arn and domain")
	case hasAWS:
		// SPEC §3's own example keeps preview.aws beside driver: local,
		// ready for the switch, so it is read and checked either way.
		pv.AWS = p.previewAWS(join(path, "aws"), aws)
	}
}

func (p *parser) previewAWS(path string, block entry) *AWSPreview {
	f, ok := p.fields(block.val, path, previewAWSKeys)
	if !ok {
		return nil
	}
	a := &AWSPreview{Install: DefaultPreviewInstall}
	p.required(path, block.key.Line, f, previewAWSRequired, "driver aws", map[string]string{
		"launch_template": "the EC2 launch template preview instances start from, e.g. launch_template: web-preview",
		"listener_arn":    "the ARN of the ALB listener that gets a host rule per preview",
		"domain":          "previews are reached at pr-NUMBER.DOMAIN, e.g. domain: preview.example.com",
	})
	field(f, path, "install", &a.Install, p.commandTemplate(installNeedsSHA))
	field(f, path, "launch_template", &a.LaunchTemplate, p.text)
	field(f, path, "listener_arn", &a.ListenerARN, p.arnOf("listener"))
	field(f, path, "domain", &a.Domain, p.domain)
	field(f, path, "hosted_zone_id", &a.HostedZoneID, p.text)
	return a
}
