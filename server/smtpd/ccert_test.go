package smtpd

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"testing"
	"time"

	"mailsrv/internal/tlsutil"
)

// clientCertificate makes a self-signed client certificate.
func clientCertificate(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestClientCertRelay: with smtpd_tls_ask_ccert, a client whose
// certificate fingerprint is in relay_clientcerts may relay
// (permit_tls_clientcerts), one with another certificate or none may
// not; check_ccert_access refuses by fingerprint.
func TestClientCertRelay(t *testing.T) {
	t.Parallel()
	good, other, banned := clientCertificate(t, "good.example"), clientCertificate(t, "other.example"), clientCertificate(t, "banned.example")
	fp := tlsutil.Fingerprint("sha256", good.Certificate[0])
	leaf, _ := x509.ParseCertificate(banned.Certificate[0])
	bannedKey := tlsutil.Fingerprint("sha256", leaf.RawSubjectPublicKeyInfo)
	ts := startServer(t, fmt.Sprintf(`
smtpd_tls_security_level = "may"
smtpd_tls_chain_files = [%q]
smtpd_tls_ask_ccert = true
relay_clientcerts = ["inline:{ {%s=good.example} }"]
smtpd_relay_restrictions = ["check_ccert_access", "inline:{ {%s=REJECT certificate revoked} }", "permit_tls_clientcerts", "reject_unauth_destination"]
`, certFile(t), fp, bannedKey))
	try := func(cert *tls.Certificate, want string) {
		t.Helper()
		c := ts.dialFrom(t, "127.0.0.2")
		c.cmd("EHLO client.example", "250-*")
		c.cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
		cfg := &tls.Config{InsecureSkipVerify: true, ServerName: "mx.our.test"}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		tc := tls.Client(c.c, cfg)
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		c.c, c.br = tc, bufio.NewReader(tc)
		c.cmd("EHLO client.example", "250-*")
		c.cmd("MAIL FROM:<a@our.test>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<x@elsewhere.example>", want)
	}
	try(&good, "250 2.1.5 Ok")
	try(&other, "554 5.7.1 <x@elsewhere.example>: Relay access denied")
	try(nil, "554 5.7.1 <x@elsewhere.example>: Relay access denied")
	try(&banned, "554 5.7.1 <"+tlsutil.Fingerprint("sha256", banned.Certificate[0])+">: Client certificate rejected: certificate revoked")
}
