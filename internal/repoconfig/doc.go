// Package repoconfig reads a repository's .github/shipbot.yml (SPEC §3) into
// typed configuration with the defaults filled in. It is pure: the caller
// fetches the file from the default branch (never a pull request's head) and
// hands the bytes in. Unknown keys, bad durations and bad percentages are
// errors naming the key and line; it never guesses.
//
// # Errors
//
// Parse reports every problem it finds, not just the first, as [Errors]: one
// [*Error] per problem, sorted by line, each printing as one line that a
// person can act on:
//
//	.github/shipbot.yml line 14: environments.production.rollout.batch: "25 %" is not a count or a percentage: use a whole number like 3 or a percentage like 25%
//
// Path is the dotted key path (list items as require_checks[1]; a key that
// is not a plain name is quoted). It is empty only for problems with the
// file as a whole (size, encoding, YAML syntax, more than one document, not
// a mapping, aliases expanding too far) and for the closing "and N more
// problems" line once 100 have been listed. Line is always at least 1.
//
// # Defaults
//
// An empty file, a file of only comments, and a missing file ([Default]) give:
//
//   - default_environment: staging
//   - app: build "go build -o app .", run "./app", port_env PORT, no
//     release phase (release ""), no env
//   - environments staging (local, 2 instances, allow_branches true, no branch)
//     and production (local, 4 instances, branch = the repository's default
//     branch, allow_branches false, Production)
//   - preview: driver local, forks false, ttl 72h, no env, no secrets;
//     with an aws: block, install [DefaultPreviewInstall]
//
// A file with an environments key replaces that default set entirely: only
// the environments it names exist. Each environment it names starts from
// these values and the file's keys override them:
//
//   - driver local; instances 2, or 4 for an environment named production
//     (instances only applies to the local driver; for aws it is 0)
//   - branch: none, except an environment named production gets the default
//     branch; write branch: "" to turn automatic deploys off there
//   - require_checks all: with no checks configured on the repository this
//     waits for nothing, and with checks it keeps red commits from shipping
//   - deployers write
//   - allow_branches false, except an environment named staging gets true
//   - url none (the driver's)
//   - env and secrets: none (an empty mapping or list is none too)
//   - aws.release: none (no release phase on aws)
//   - rollout: canary 1, batch 25%, max_unavailable 25%, by_zone false, bake 0s
//     (three analysis intervals when the environment is judged, below)
//   - health: path /healthz, interval 2s, healthy_after 2, timeout 2m
//   - analysis: none. An environment with an analysis block, or with
//     aws.alarms (judged during the bake too), gets interval 10s,
//     min_requests 20, max_error_rate 1%, no max_latency_p99 (p99 is
//     shown, not judged) and no prometheus, the file's keys overriding
//     them; its bake then defaults to three intervals (30s), and a bake
//     written shorter than one interval is an error, whichever of rollout:
//     and analysis: comes first
//   - Production is set for the environment named production (any case)
//
// A key whose value is empty (null) counts as not written, so commenting out
// every line under rollout: gives the default rollout, and under analysis:
// no analysis; analysis: {} turns it on with every default.
//
// default_environment, when not written, is staging if there is one,
// otherwise the only environment; with several environments and none named
// staging the file must set it.
//
// Environment names are compared ignoring case (as GitHub does), so two names
// that differ only in case are an error, and [Config.Environment] finds
// "Staging" for "staging".
//
// # Rules beyond SPEC §3
//
//   - durations use Go's syntax (30s, 2m, 1h30m); a bare number other than 0
//     is an error, since 30 could be seconds or minutes. Percentages of
//     instances are 1% to 100% (decimals allowed, 12.5%); counts are whole
//     numbers from 1.
//   - health.timeout must be longer than interval × healthy_after, or a batch
//     could never pass; health.interval is at least 100ms.
//   - the local driver runs 1–100 instances per environment; canary may not
//     exceed them.
//   - aws.install is a Go text/template that may contain only text and
//     {{.SHA}}, and must use {{.SHA}}: no functions, no control structures,
//     so rendering it is always safe and cheap.
//   - analysis.interval is 1s to 1h; min_requests 1 to 1,000,000;
//     max_error_rate a percentage from 0% to 100% (a bare 0.01 is an
//     error: 1% or 0.01%?), held as a share from 0 to 1; max_latency_p99
//     longer than 0s.
//   - analysis.prometheus needs url (http or https) and at least one check;
//     a check needs a name, unique in the environment, a query, and max,
//     min or both (min at most max), plain decimal numbers. The query is a
//     Go text/template held to the rule of aws.install, with the fields
//     .SHA, .Previous, .Environment and .Repo ([QueryData]); it is
//     rendered once while parsing, and [PrometheusCheck.Render] renders it
//     for a deploy.
//   - aws.alarms are CloudWatch alarm names, none empty, repeated or
//     longer than 255 characters; an empty list is no alarms. Under driver
//     local, where there is no CloudWatch, they are an error at alarms:.
//     Previews have no analysis and no alarms.
//   - preview.aws may also set hosted_zone_id for a Route 53 record per
//     preview (SPEC §7). It is checked even under driver: local, as SPEC
//     §3's example keeps it there ready for the switch; an environment's
//     aws: under driver: local is an error, as is instances: under aws.
//   - env: (app:, an environment, preview:) maps variable names to
//     values; secrets: (an environment, preview:) lists names whose
//     values are set on the bot with bot secrets set. A name is
//     [A-Z_][A-Z0-9_]* (what sh can read as $NAME). A value is any single
//     value, read as the text written (4 is "4", on is "on", 0755 is
//     "0755"); an empty value needs "", as a bare NAME: is a mistake more
//     often than an empty string, and a NUL (\0) is refused, as no
//     process environment carries one.
//   - the port variable (app.port_env) may not be in any env or secrets:
//     the driver sets it to each instance's own port.
//   - a secret is listed once, and not also in the env: of the same
//     block (an environment, or preview:): one of the two would be
//     ignored. app.env and an environment's (or the preview's) secrets
//     may name the same variable: the secret wins there, so app.env can
//     hold a development default that production's secret replaces.
//     Secrets come after env in the order a process gets its variables
//     (app.env, then env, then secrets; later wins).
//   - app.release runs in the new build under the local driver; an
//     environment with driver aws runs aws.release instead, through SSM,
//     so with app.release set every aws environment must set aws.release
//     (a release phase silently skipped would ship code ahead of its
//     migrations). aws.release under driver local is an error pointing to
//     app.release. aws.release and preview.aws.install are held to
//     aws.install's template rule and must use {{.SHA}}: aws.release runs
//     on an instance still on the previous release, so it has to be told
//     the new one.
//   - notify.slack needs channel: a name with its # (quoted, since # starts
//     a YAML comment: channel: "#deploys") or a channel id (C…, G…).
//     notify.slack.only lists environments of this file (matched ignoring
//     case, kept as the file names them) and "preview" for previews; not
//     written, every environment but previews is announced (ask
//     [Slack.Announces]); an empty list is an error, as it announces
//     nothing. notify.webhooks are http(s) URLs without a user or
//     password; a URL whose host is a literal link-local address
//     (169.254.0.0/16, fe80::/10), the cloud metadata service
//     (169.254.169.254, fd00:ec2::254) or an IPv4 address spelled other
//     than as a dotted quad (2852039166) is an error, since events leave
//     from the bot's own network. A host name is not resolved here: the
//     sender checks the address it resolves to when it sends.
//   - anchors, aliases and merge keys (<<: *base) work; a key written out
//     beats a merged one. Unknown keys are errors at every level, so there
//     is no place for x-anchors: anchor a block where it is first used.
//   - a deployers list narrows who may deploy; it never grants more than write
//     access would: a listed login still needs write permission.
package repoconfig
