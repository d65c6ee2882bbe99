package cdevents

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"time"
)

// What CheckURL and the Sender refuse, and why:
//   - link-local addresses (169.254.0.0/16, fe80::/10, and their multicast
//     ranges): the cloud metadata service lives at 169.254.169.254, and a
//     repository's config must not make the bot post to it;
//   - the other metadata addresses clouds use outside that range: AWS's
//     IPv6 fd00:ec2::254 and Alibaba's 100.100.100.200;
//   - the unspecified address (0.0.0.0, ::) and multicast, which no receiver
//     can be.
//
// Loopback and private ranges stay allowed: tests and local receivers use
// loopback, and a self-hosted bot's receivers are usually on its own network.
var metadataAddrs = map[netip.Addr]bool{
	netip.MustParseAddr("fd00:ec2::254"):   true,
	netip.MustParseAddr("100.100.100.200"): true,
}

// lookupTimeout bounds CheckURL's name resolution.
const lookupTimeout = 5 * time.Second

// resolver is the one call CheckURL makes on DNS; *net.Resolver has it.
type resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// CheckURL validates a notify.webhooks URL: http or https, with a host that
// is not, and does not resolve to, a refused address (see above). A name
// that does not resolve now is accepted: DNS trouble must not turn a
// repository's config into an error, and the Sender checks every address
// it dials again anyway.
func CheckURL(ctx context.Context, raw string) error {
	return checkURL(ctx, raw, net.DefaultResolver)
}

func checkURL(ctx context.Context, raw string, r resolver) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL (%v); write it as https://host/path", raw, err)
	}
	shown := Redact(u)
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%s is not an http or https URL; events are only posted over HTTP, so write it as https://host/path", shown)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("%s has no host; write it as https://host/path", shown)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if why := refused(a); why != "" {
			return fmt.Errorf("%s is refused: %s is %s; use the receiver's routable address", shown, host, why)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	addrs, err := r.LookupIPAddr(ctx, host)
	if err != nil {
		return nil
	}
	for _, ia := range addrs {
		a, ok := netip.AddrFromSlice(ia.IP)
		if !ok {
			continue
		}
		if why := refused(a); why != "" {
			return fmt.Errorf("%s is refused: its host %s resolves to %s, which is %s; use the receiver's routable address", shown, host, a.Unmap(), why)
		}
	}
	return nil
}

// refused says why shipbot does not post to a, or "" if it does.
func refused(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case metadataAddrs[a]:
		return "a cloud metadata service address"
	case a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast():
		return "a link-local address, where cloud metadata services (169.254.169.254) live"
	case a.IsUnspecified():
		return "the unspecified address, which no receiver can have"
	case a.IsMulticast():
		return "a multicast address, which no receiver can have"
	}
	return ""
}

// Redact is u as shipbot shows it in errors and logs: without the user,
// password, query and fragment, which may hold a receiver's token.
func Redact(u *url.URL) string {
	c := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	s := c.String()
	if u.RawQuery != "" {
		s += "?…"
	}
	return s
}
