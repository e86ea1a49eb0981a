package smtpd

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// certFile writes a self-signed certificate and its key into one PEM file
// (the smtpd_tls_chain_files form) and returns its path.
func certFile(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.our.test"}, DNSNames: []string{"mx.our.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	path := filepath.Join(t.TempDir(), "chain.pem")
	data := append(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// upgrade runs the client side of STARTTLS on a raw test client.
func (c *client) upgrade() *tls.ConnectionState {
	c.t.Helper()
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true, ServerName: "mx.our.test"})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.c, c.br = tc, bufio.NewReader(tc)
	cs := tc.ConnectionState()
	return &cs
}

// TestStarttls: STARTTLS is offered and works; the session starts over
// (EHLO again, no STARTTLS offered twice); the Received header and the
// log show the protocol and cipher; commands pipelined after STARTTLS in
// plain text are thrown away, not run inside the TLS session.
func TestStarttls(t *testing.T) {
	t.Parallel()
	chain := certFile(t)
	// With smtpd_forbid_unauth_pipelining (the default) a command sent
	// after STARTTLS ends the session before any TLS.
	strict := startServer(t, fmt.Sprintf("smtpd_tls_security_level = \"may\"\nsmtpd_tls_chain_files = [%q]\n", chain))
	sc := strict.dialFrom(t, "127.0.0.1")
	sc.cmd("EHLO client.test", "250-mx.our.test*")
	sc.send("STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
	sc.expect("554 5.5.0 Error: SMTP protocol synchronization")

	// Without it, the injected command is discarded at the handshake.
	ts := startServer(t, fmt.Sprintf(`
smtpd_tls_security_level = "may"
smtpd_tls_chain_files = [%q]
smtpd_forbid_unauth_pipelining = false
`, chain))
	c := ts.dialFrom(t, "127.0.0.1")
	if r := c.cmd("EHLO client.test", "250-mx.our.test*"); !strings.Contains(r, "250-STARTTLS") {
		t.Errorf("STARTTLS not offered:\n%s", r)
	}
	c.cmd("STARTTLS extra", "501 5.5.4 Syntax: STARTTLS")
	// A command injected after STARTTLS, in the same packet.
	c.send("STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
	c.expect("220 2.0.0 Ready to start TLS")
	cs := c.upgrade()
	if cs.Version != tls.VersionTLS13 {
		t.Errorf("TLS version %x", cs.Version)
	}
	// Had the injected MAIL run, this would be "503 nested MAIL".
	if r := c.cmd("EHLO client.test", "250-mx.our.test*"); strings.Contains(r, "STARTTLS") {
		t.Errorf("STARTTLS offered again inside TLS:\n%s", r)
	}
	c.cmd("STARTTLS", "554 5.5.1 Error: TLS already active")
	c.cmd("MAIL FROM:<a@client.test>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.cmd("Subject: over TLS\r\n\r\nhi\r\n.", "250 2.0.0 Ok: queued as *")
	c.cmd("QUIT", "221 2.0.0 Bye")
	msgs := ts.messages(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	b := body(t, msgs[0])
	if !strings.Contains(b, "(using TLSv1.3 with cipher TLS_") || !strings.Contains(b, "with ESMTPS id") {
		t.Errorf("Received header does not show TLS:\n%s", b)
	}
	ts.waitLog(t, "[127.0.0.1]: TLSv1.3 with cipher TLS_")
	ts.waitLog(t, "Anonymous TLS connection established from ")
	ts.waitLog(t, "ehlo=2 starttls=1/3 mail=1 rcpt=1 data=1 quit=1")
	if strings.Contains(ts.logs.String(), "injected@evil.test") {
		t.Error("the injected command ran")
	}
}

// TestTLSEncryptAndWrapper: level encrypt refuses mail before STARTTLS
// with 530 5.7.0; wrapper mode (port 465) speaks TLS from the first byte.
func TestTLSEncryptAndWrapper(t *testing.T) {
	t.Parallel()
	chain := certFile(t)
	ts := startServer(t, fmt.Sprintf("smtpd_tls_security_level = \"encrypt\"\nsmtpd_tls_chain_files = [%q]\n", chain))
	c := ts.dialFrom(t, "127.0.0.1")
	c.cmd("EHLO client.test", "250-mx.our.test*")
	c.cmd("MAIL FROM:<a@client.test>", "530 5.7.0 Must issue a STARTTLS command first")
	c.cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
	c.upgrade()
	c.cmd("EHLO client.test", "250-mx.our.test*")
	c.cmd("MAIL FROM:<a@client.test>", "250 2.1.0 Ok")

	w := startServer(t, fmt.Sprintf("smtpd_tls_wrappermode = true\nsmtpd_tls_chain_files = [%q]\n", chain))
	raw := w.dialRaw(t, "127.0.0.1")
	raw.upgrade()
	raw.expect("220 mx.our.test ESMTP mailsrv")
	if r := raw.cmd("EHLO client.test", "250-mx.our.test*"); strings.Contains(r, "STARTTLS") {
		t.Errorf("STARTTLS offered in wrapper mode:\n%s", r)
	}
	raw.cmd("QUIT", "221 2.0.0 Bye")

	if _, err := buildServer(t, "smtpd_tls_security_level = \"encrypt\"\n"); err == nil || !strings.Contains(err.Error(), "needs a certificate") {
		t.Errorf("encrypt without a certificate: %v", err)
	}
}

// TestTLSChainFiles: an RSA and an ECDSA certificate side by side
// (smtpd_tls_chain_files); each client gets the one it can use.
func TestTLSChainFiles(t *testing.T) {
	t.Parallel()
	ecdsaChain := certFile(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "mx.our.test"}, DNSNames: []string{"mx.our.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &rsaKey.PublicKey, rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaChain := filepath.Join(t.TempDir(), "rsa.pem")
	data := append(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	if err := os.WriteFile(rsaChain, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, fmt.Sprintf("smtpd_tls_security_level = \"may\"\nsmtpd_tls_chain_files = [%q, %q]\n", ecdsaChain, rsaChain))
	for _, c := range []struct {
		suite uint16
		want  string
	}{
		{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "*rsa.PublicKey"},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "*ecdsa.PublicKey"},
	} {
		cl := ts.dialFrom(t, "127.0.0.1")
		cl.cmd("EHLO client.test", "250-mx.our.test*")
		cl.cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
		tc := tls.Client(cl.c, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{c.suite}})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("%s: %v", tls.CipherSuiteName(c.suite), err)
		}
		if got := fmt.Sprintf("%T", tc.ConnectionState().PeerCertificates[0].PublicKey); got != c.want {
			t.Errorf("%s: server certificate key %s, want %s", tls.CipherSuiteName(c.suite), got, c.want)
		}
		tc.Close()
	}
}

// TestHugeClientHelloLogLine: a ClientHello offering 20,000 cipher
// suites none of which the server has makes the handshake fail; the log
// line that says so stays bounded (Go's error lists every suite offered).
func TestHugeClientHelloLogLine(t *testing.T) {
	t.Parallel()
	chain := certFile(t)
	ts := startServer(t, fmt.Sprintf("smtpd_tls_security_level = \"may\"\nsmtpd_tls_chain_files = [%q]\n", chain))
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO x", "250-*")
	c.cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
	var body []byte
	body = append(body, 0x03, 0x03)          // client_version TLS 1.2
	body = append(body, make([]byte, 32)...) // random
	body = append(body, 0)                   // session id
	const suites = 20000
	body = append(body, byte(suites*2>>8), byte(suites*2&0xff))
	for i := range suites {
		body = append(body, 0xfe, byte(i)) // unassigned suites
	}
	body = append(body, 1, 0) // compression: null
	body = append(body, 0, 0) // no extensions
	hs := append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	for len(hs) > 0 {
		n := min(len(hs), 16384)
		rec := append([]byte{0x16, 0x03, 0x01, byte(n >> 8), byte(n)}, hs[:n]...)
		if _, err := c.c.Write(rec); err != nil {
			break
		}
		hs = hs[n:]
	}
	ts.waitLog(t, "TLS handshake failed from unknown[127.0.0.2]")
	for _, l := range strings.Split(ts.logs.String(), "\n") {
		if len(l) > 4096 {
			t.Errorf("a log line of %d bytes: %.200s...", len(l), l)
		}
	}
}
