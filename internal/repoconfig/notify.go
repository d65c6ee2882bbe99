package repoconfig

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

var (
	// slackChannelName is what Slack allows in a channel name: lower-case
	// letters, digits, - and _, at most 80.
	slackChannelName = regexp.MustCompile(`^#[a-z0-9][a-z0-9_-]{0,79}$`)
	// slackChannelID is a public (C) or private (G) channel's id.
	slackChannelID = regexp.MustCompile(`^[CG][A-Z0-9]{8,}$`)
	// inetNumber is one part of an IPv4 address as inet_aton reads it:
	// decimal, octal (leading 0) or hex (0x).
	inetNumber = regexp.MustCompile(`^(?i)(0x[0-9a-f]*|[0-9]+)$`)
)

// awsMetadataIPv6 is the instance metadata service's IPv6 address on AWS
// Nitro instances: a unique-local address, so not link-local, but the same
// credentials behind it.
var awsMetadataIPv6 = netip.MustParseAddr("fd00:ec2::254")

func (p *parser) notify(e entry, cfg *Config, envsOK bool) Notify {
	const path = "notify"
	var n Notify
	f, ok := p.fields(e.val, path, notifyKeys)
	if !ok {
		return n
	}
	if s, ok := f["slack"]; ok {
		n.Slack = p.slack(join(path, "slack"), s, cfg, envsOK)
	} else if s, ok := emptyKey(e.val, "slack"); ok {
		p.errf(s.Line, join(path, "slack"), "is empty: give it a channel, like channel: \"#deploys\", or remove it")
	}
	if w, ok := f["webhooks"]; ok {
		n.Webhooks = p.webhooks(join(path, "webhooks"), w.val)
	}
	return n
}

// emptyKey finds a key written with no value in the mapping n, which
// fields leaves out.
func emptyKey(n *yaml.Node, name string) (*yaml.Node, bool) {
	n = deref(n)
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == name && isNull(deref(n.Content[i+1])) {
			return n.Content[i], true
		}
	}
	return nil, false
}

func (p *parser) slack(path string, block entry, cfg *Config, envsOK bool) *Slack {
	f, ok := p.fields(block.val, path, slackKeys)
	if !ok {
		return nil
	}
	s := &Slack{}
	c, hasChannel := f["channel"]
	switch {
	case hasChannel:
		s.Channel, ok = p.slackChannel(join(path, "channel"), c.val)
	case hasHashComment(block.val, "channel"):
		// channel: #deploys is YAML for channel: (nothing) # deploys.
		k, _ := emptyKey(block.val, "channel")
		p.errf(k.Line, join(path, "channel"), "is empty, because # starts a comment in YAML: quote the name, like channel: \"#deploys\"")
		ok = false
	default:
		p.errf(block.key.Line, join(path, "channel"), "missing: say where deploys are announced, like channel: \"#deploys\" or a channel id like C0123456789")
		ok = false
	}
	if o, has := f["only"]; has {
		only, good := p.slackOnly(join(path, "only"), o.val, cfg, envsOK)
		s.Only = only
		ok = ok && good
	}
	if !ok {
		return nil
	}
	return s
}

// hasHashComment reports whether key is written in the mapping n with no
// value and a comment right after it, as in channel: #deploys.
func hasHashComment(n *yaml.Node, key string) bool {
	k, ok := emptyKey(n, key)
	if !ok {
		return false
	}
	v := deref(n)
	for i := 0; i+1 < len(v.Content); i += 2 {
		if v.Content[i] == k {
			return k.LineComment != "" || v.Content[i+1].LineComment != ""
		}
	}
	return false
}

func (p *parser) slackChannel(path string, n *yaml.Node) (string, bool) {
	s, ok := p.text(path, n)
	if !ok {
		return "", false
	}
	switch {
	case slackChannelName.MatchString(s), slackChannelID.MatchString(s):
		return s, true
	case !strings.HasPrefix(s, "#") && slackChannelName.MatchString("#"+s):
		p.errf(n.Line, path, "%s is neither a channel name nor a channel id: write a name with its #, quoted, like channel: \"#%s\"", quote(s), s)
	case strings.HasPrefix(s, "#") && slackChannelName.MatchString(strings.ToLower(s)):
		p.errf(n.Line, path, "%s has capital letters, which Slack channel names never have: write %q", quote(s), strings.ToLower(s))
	default:
		p.errf(n.Line, path, "%s is not a Slack channel: write a name like \"#deploys\" (lower-case letters, digits, - and _) or a channel id like C0123456789", quote(s))
	}
	return "", false
}

// slackOnly reads notify.slack.only: environment names of cfg, by the
// name the environment has there, and "preview".
func (p *parser) slackOnly(path string, n *yaml.Node, cfg *Config, envsOK bool) ([]string, bool) {
	n = deref(n)
	if n.Kind != yaml.SequenceNode {
		p.errf(n.Line, path, "expected a list of environments, like [production], got %s", describe(n))
		return nil, false
	}
	if len(n.Content) == 0 {
		p.errf(n.Line, path, "an empty list announces nothing: list environments, or remove notify.slack to send no Slack messages")
		return nil, false
	}
	names, ok := p.stringList(path, n)
	out := make([]string, 0, len(names))
	seen := map[string]int{}
	for i, name := range names {
		ipath, line := fmt.Sprintf("%s[%d]", path, i), deref(n.Content[i]).Line
		if name == "" {
			continue // reported by stringList
		}
		canon := name
		if env, found := cfg.Environment(name); found {
			canon = env.Name
		} else if strings.EqualFold(name, PreviewsName) {
			canon = PreviewsName
		} else if envsOK {
			valid := append(cfg.EnvironmentNames(), PreviewsName)
			p.errf(line, ipath, "%s is not an environment here%s: use one of %s", quote(name), didYouMean(name, valid), strings.Join(valid, ", "))
			ok = false
			continue
		}
		if first, dup := seen[canon]; dup {
			p.errf(line, ipath, "%s is listed twice (first as only[%d]); keep one", quote(name), first)
			ok = false
			continue
		}
		seen[canon] = i
		out = append(out, canon)
	}
	return out, ok
}

func (p *parser) webhooks(path string, n *yaml.Node) []string {
	n = deref(n)
	if n.Kind != yaml.SequenceNode {
		p.errf(n.Line, path, "expected a list of URLs, like [https://hooks.example.com/cd], got %s", describe(n))
		return nil
	}
	if !p.spend(n.Line, len(n.Content)) {
		return nil
	}
	var out []string
	seen := map[string]int{}
	for i, item := range n.Content {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		s, ok := p.webhookURL(ipath, item)
		if !ok {
			continue
		}
		if first, dup := seen[s]; dup {
			p.errf(deref(item).Line, ipath, "listed twice (first as webhooks[%d]): each event would be sent twice; keep one", first)
			continue
		}
		seen[s] = i
		out = append(out, s)
	}
	return out
}

// webhookURL reads a CDEvents receiver's URL. Events leave from the bot's
// own network, so an address only the bot's host can reach (the cloud
// metadata service above all) must not be one: a repository's file would
// otherwise make the bot post to it.
func (p *parser) webhookURL(path string, n *yaml.Node) (string, bool) {
	s, ok := p.text(path, n)
	if !ok {
		return "", false
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.Opaque != "" {
		p.errf(n.Line, path, "%s is not an http(s) URL: write it like https://hooks.example.com/cd", quote(s))
		return "", false
	}
	if u.User != nil {
		p.errf(n.Line, path, "the URL holds a user name or password, which would show in the bot's logs and dashboard: remove it and have the receiver check the X-Shipbot-Signature-256 header instead")
		return "", false
	}
	if why := forbiddenHost(u.Hostname()); why != "" {
		p.errf(n.Line, path, "%s", why)
		return "", false
	}
	return s, true
}

// forbiddenHost says why events may not go to host, or "" when they may
// as far as its literal spelling shows.
func forbiddenHost(host string) string {
	addr, err := netip.ParseAddr(host)
	if err != nil {
		if numericIPv4(host) {
			return fmt.Sprintf("%s is an IP address in an unusual spelling, which some resolvers read as another address: write it as a dotted quad like 203.0.113.7, or use a host name", quote(host))
		}
		return ""
	}
	addr = addr.Unmap().WithZone("")
	switch {
	case addr == netip.AddrFrom4([4]byte{169, 254, 169, 254}) || addr == awsMetadataIPv6:
		return fmt.Sprintf("%s is the cloud metadata service, which holds the bot's own credentials: events are never sent there; use your receiver's address", addr)
	case addr.IsLinkLocalUnicast():
		return fmt.Sprintf("%s is a link-local address (169.254.0.0/16 or fe80::/10), reachable only from the bot's own network segment, where the cloud metadata service lives: events are never sent there; use your receiver's address", addr)
	}
	return ""
}

// numericIPv4 reports whether host is an IPv4 address in a spelling other
// than the dotted quad netip reads (2852039166, 0xa9.0xfe.0xa9.0xfe,
// 0251.0376.0251.0376, 169.254.43518), which C resolvers still accept.
func numericIPv4(host string) bool {
	parts := strings.Split(host, ".")
	if len(parts) > 4 {
		return false
	}
	for _, part := range parts {
		if !inetNumber.MatchString(part) {
			return false
		}
	}
	return true
}
