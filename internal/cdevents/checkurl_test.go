package cdevents

import (
	"context"
	"net"
	"strings"
	"testing"
)

// names is DNS as the tests see it; a name it lacks does not resolve.
type names map[string][]string

func (n names) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	ips, ok := n[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []net.IPAddr
	for _, s := range ips {
		out = append(out, net.IPAddr{IP: net.ParseIP(s)})
	}
	return out, nil
}

func TestCheckURL(t *testing.T) {
	dns := names{
		"hooks.example.com":        {"93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"},
		"metadata.google.internal": {"169.254.169.254"},
		"rebind.example.com":       {"93.184.215.14", "fe80::1"},
		"receiver.internal":        {"10.0.3.7"},
	}
	tests := []struct {
		url  string
		want string // "" accepted; otherwise a part of the error
	}{
		{"https://hooks.example.com/cd", ""},
		{"http://127.0.0.1:8080/cd", ""},        // loopback: tests and local receivers
		{"http://localhost:8080/cd", ""},        // resolved by the fake as unknown: accepted
		{"http://[::1]:8080/cd", ""},            // loopback v6
		{"http://receiver.internal/cd", ""},     // private ranges stay allowed
		{"https://nxdomain.example.com/cd", ""}, // DNS trouble is not a config error
		{"https://user:pw@hooks.example.com/cd?token=x", ""},
		{"http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address, where cloud metadata services (169.254.169.254) live"},
		{"http://169.254.10.1/", "is a link-local address"},
		{"http://[fe80::1%25eth0]/", "is a link-local address"},
		{"http://[::ffff:169.254.169.254]/", "is a link-local address"},
		{"http://metadata.google.internal/computeMetadata/v1/", "its host metadata.google.internal resolves to 169.254.169.254, which is a link-local address"},
		{"https://rebind.example.com/cd", "resolves to fe80::1, which is a link-local address"},
		{"http://[fd00:ec2::254]/", "is a cloud metadata service address"},
		{"http://100.100.100.200/", "is a cloud metadata service address"},
		{"http://0.0.0.0:3000/", "is the unspecified address"},
		{"http://224.0.0.251/", "is a link-local address"},
		{"http://239.1.1.1/", "is a multicast address"},
		{"ftp://hooks.example.com/cd", "is not an http or https URL"},
		{"hooks.example.com/cd", "is not an http or https URL"},
		{"https:///cd", "has no host"},
		{"https://hooks.example.com/%zz", "is not a URL"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			err := checkURL(context.Background(), tc.url, dns)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Errorf("accepted, want refused saying %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
			if err != nil && strings.Count(err.Error(), "; ") != 1 {
				t.Errorf("error %q is not one sentence: what happened; what to do", err)
			}
		})
	}
}

// CheckURL itself uses the system's resolver: localhost is loopback, allowed.
func TestCheckURLSystemResolver(t *testing.T) {
	if err := CheckURL(context.Background(), "http://localhost:3000/cd"); err != nil {
		t.Errorf("localhost refused: %v", err)
	}
	if err := CheckURL(context.Background(), "http://169.254.169.254/"); err == nil {
		t.Error("metadata address accepted")
	}
}

func TestRedactHidesCredentials(t *testing.T) {
	err := checkURL(context.Background(), "ftp://alice:s3cret@hooks.example.com/cd?token=t0k", names{})
	if err == nil || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "t0k") || strings.Contains(err.Error(), "alice") {
		t.Errorf("error %v shows credentials", err)
	}
}
