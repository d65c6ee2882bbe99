package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// redisTLS is the certificate files of a TLS redis-server: a CA of the
// test's own and a server certificate for 127.0.0.1 it signed.
type redisTLS struct {
	ca, cert, key string
	pool          *x509.CertPool
}

// StartRedisTLS is StartRedis speaking only TLS, as managed Redis services
// do: URL is rediss://, and CAFile is the certificate a client must trust
// (a Go program trusts it with SSL_CERT_FILE=CAFile).
func StartRedisTLS(t testing.TB) *Redis {
	t.Helper()
	return startRedis(t, newRedisTLS(t))
}

// CAFile is the CA certificate of a StartRedisTLS server, "" otherwise.
func (r *Redis) CAFile() string {
	if r.tls == nil {
		return ""
	}
	return r.tls.ca
}

func newRedisTLS(t testing.TB) *redisTLS {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "shipbot test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	f := &redisTLS{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "redis.pem"), key: filepath.Join(dir, "redis-key.pem"), pool: x509.NewCertPool()}
	f.pool.AddCert(ca)
	for path, block := range map[string]*pem.Block{
		f.ca:   {Type: "CERTIFICATE", Bytes: caDER},
		f.cert: {Type: "CERTIFICATE", Bytes: der},
		f.key:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// client wraps a connection to the server in TLS, trusting the test CA.
func (f *redisTLS) client(c net.Conn) net.Conn {
	return tls.Client(c, &tls.Config{RootCAs: f.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
}
