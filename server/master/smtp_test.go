package master

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"mailsrv/internal/testutil"
	"mailsrv/queue"
)

// fakeDNS serves A and MX records from a table on 127.0.0.1 (UDP).
type fakeDNS struct {
	mu       sync.Mutex
	a        map[string]string   // name → IPv4
	mx       map[string][]string // domain → "pref host" ("0 ." = null MX)
	servfail map[string]bool
	addr     string
}

// startDNS serves the given A and MX tables (they must not change
// afterwards).
func startDNS(t *testing.T, a map[string]string, mx map[string][]string, servfail ...string) *fakeDNS {
	t.Helper()
	f := &fakeDNS{a: a, mx: mx, servfail: map[string]bool{}}
	for _, n := range servfail {
		f.servfail[n] = true
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = pc.LocalAddr().String()
	srv := &dns.Server{PacketConn: pc, Handler: f}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return f
}

func (f *fakeDNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	q := req.Question[0]
	name := strings.TrimSuffix(strings.ToLower(q.Name), ".")
	known := f.a[name] != "" || f.mx[name] != nil
	switch {
	case f.servfail[name]:
		m.Rcode = dns.RcodeServerFailure
	case !known:
		m.Rcode = dns.RcodeNameError
	case q.Qtype == dns.TypeA && f.a[name] != "":
		rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN A %s", q.Name, f.a[name]))
		m.Answer = append(m.Answer, rr)
	case q.Qtype == dns.TypeMX:
		for _, mx := range f.mx[name] {
			pref, host, _ := strings.Cut(mx, " ")
			if host != "." {
				host += "."
			}
			rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN MX %s %s", q.Name, pref, host))
			m.Answer = append(m.Answer, rr)
		}
	}
	w.WriteMsg(m)
}

// fakeMX is a remote mail server on one 127.0.0.x address.
type fakeMX struct {
	name string
	mu   sync.Mutex
	msgs []string // "from rcpt,rcpt: body"
	auth []string // user:pass accepted
	srv  *gosmtp.Server
	ln   net.Listener
}

type mxSession struct {
	mx    *fakeMX
	from  string
	rcpts []string
	authd bool
}

func (m *fakeMX) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) { return &mxSession{mx: m}, nil }

func (s *mxSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *mxSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		s.mx.mu.Lock()
		s.mx.auth = append(s.mx.auth, user+":"+pass)
		s.mx.mu.Unlock()
		if pass != "secret" {
			return errors.New("bad password")
		}
		s.authd = true
		return nil
	}), nil
}

func (s *mxSession) Mail(from string, opts *gosmtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *mxSession) Rcpt(to string, opts *gosmtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "temp"):
		return &gosmtp.SMTPError{Code: 450, EnhancedCode: gosmtp.EnhancedCode{4, 2, 0}, Message: "mailbox busy, try later"}
	case strings.HasPrefix(to, "bad"):
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *mxSession) Data(r io.Reader) error {
	b, _ := io.ReadAll(r)
	for _, rc := range s.rcpts {
		if strings.HasPrefix(rc, "datafail") {
			return &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "content refused"}
		}
	}
	s.mx.mu.Lock()
	s.mx.msgs = append(s.mx.msgs, fmt.Sprintf("%s %s: %s", s.from, strings.Join(s.rcpts, ","), b))
	s.mx.mu.Unlock()
	return nil
}

func (s *mxSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *mxSession) Logout() error { return nil }

func (m *fakeMX) messages() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.msgs...)
}

// selfSigned makes a certificate for names.
func selfSigned(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	cert, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// startMXs starts fake servers on 127.0.0.2, .3, … all on one port
// (smtp_tcp_port), optionally with TLS, and returns them and the port.
func startMXs(t *testing.T, cert *tls.Certificate, names ...string) ([]*fakeMX, string) {
	t.Helper()
	for try := 0; try < 20; try++ {
		first, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(first.Addr().String())
		lns := []net.Listener{first}
		ok := true
		for i := 1; i < len(names); i++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:%s", i+2, port))
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, ln)
		}
		if !ok {
			for _, l := range lns {
				l.Close()
			}
			continue
		}
		var out []*fakeMX
		for i, n := range names {
			m := &fakeMX{name: n, ln: lns[i]}
			m.srv = gosmtp.NewServer(m)
			m.srv.Domain = n
			// A name with "nodsn" stands for a server without DSN.
			m.srv.EnableDSN = !strings.Contains(n, "nodsn")
			m.srv.EnableSMTPUTF8 = true
			if cert != nil {
				m.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
			}
			go m.srv.Serve(lns[i])
			t.Cleanup(func() { m.srv.Close() })
			out = append(out, m)
		}
		return out, port
	}
	t.Fatal("no common free port on 127.0.0.2-")
	return nil, ""
}

// TestSMTPClient: the smtp client against a fake DNS server and fake MX
// hosts on 127.0.0.x: MX preference; a dead first MX skipped for the
// second; a recipient deferred (4xx) and another delivered in one
// transaction; a bad one bounced; null MX and NXDOMAIN bounced; all MX
// down deferred with the reason shown by postqueue; connection reuse.
func TestSMTPClient(t *testing.T) {
	t.Parallel()
	mxs, port := startMXs(t, nil, "mx1.pref.test", "mx2.pref.test")
	d := startDNS(t, map[string]string{"mx1.pref.test": "127.0.0.2", "mx2.pref.test": "127.0.0.3", "dead.pref.test": "127.0.0.9"},
		map[string][]string{
			"pref.test":    {"20 mx2.pref.test", "10 mx1.pref.test"},
			"second.test":  {"10 dead.pref.test", "20 mx2.pref.test"},
			"alldown.test": {"10 dead.pref.test"},
			"nomail.test":  {"0 ."},
			"broken.test":  {"10 mx1.pref.test"},
		}, "broken.test")
	dir, addr, stop := deliveryDaemon(t, fmt.Sprintf(`
alias_maps = []
mailsrv_dns_servers = [%q]
smtp_tcp_port = %q
smtp_connect_timeout = "2s"
smtp_connection_cache_destinations = ["pref.test"]
minimal_backoff_time = "1h"
`, d.addr, port))
	send(t, addr, "s@example.test", []string{"ok@pref.test", "temp1@pref.test", "bad@pref.test"}, "Subject: one\r\n\r\nfirst\r\n")
	// The session stays in the cache (smtp_connection_cache_destinations)
	// for the next message to the same destination.
	eventuallyLog(t, dir, "the first delivery", func() bool { return strings.Contains(readLog(dir), "to=<ok@pref.test>") })
	send(t, addr, "s@example.test", []string{"again@pref.test"}, "Subject: two\r\n\r\nsecond\r\n")
	send(t, addr, "s@example.test", []string{"x@second.test"}, "Subject: three\r\n\r\nthird\r\n")
	send(t, addr, "s@example.test", []string{"y@alldown.test"}, "Subject: four\r\n\r\nx\r\n")
	send(t, addr, "s@example.test", []string{"z@nomail.test", "w@nxdomain.test"}, "Subject: five\r\n\r\nx\r\n")
	send(t, addr, "s@example.test", []string{"v@broken.test"}, "Subject: six\r\n\r\nx\r\n")
	eventuallyLog(t, dir, "every recipient's result", func() bool {
		l := readLog(dir)
		for _, r := range []string{"ok@pref.test", "temp1@pref.test", "bad@pref.test", "again@pref.test", "x@second.test", "y@alldown.test", "z@nomail.test", "w@nxdomain.test", "v@broken.test"} {
			if !strings.Contains(l, "to=<"+r+">") {
				return false
			}
		}
		return true
	})
	stop()
	out := listQueue(t, dir)
	if m := mxs[0].messages(); len(m) != 2 || !strings.HasPrefix(m[0], "s@example.test ok@pref.test: ") || !strings.Contains(m[0], "first") || !strings.Contains(m[1], "again@pref.test") {
		t.Errorf("mx1 (preference 10) got %q", m)
	}
	if m := mxs[1].messages(); len(m) != 1 || !strings.Contains(m[0], "x@second.test") {
		t.Errorf("mx2 got %q; want only the message whose first MX is dead", m)
	}
	log := readLog(dir)
	relay1 := regexp.QuoteMeta("relay=mx1.pref.test[127.0.0.2]:" + port)
	for _, re := range []string{
		`smtp\[\d+\]: \w+: to=<ok@pref.test>, ` + relay1 + `, delay=[\d.]+, delays=[\d./]+, dsn=2.0.0, status=sent \(250 2.0.0 OK: queued\)`,
		`to=<temp1@pref.test>, ` + relay1 + `, .*dsn=4.2.0, status=deferred \(host mx1.pref.test\[127.0.0.2\] said: 450 4.2.0 mailbox busy, try later \(in reply to RCPT TO command\)\)`,
		`to=<bad@pref.test>, ` + relay1 + `, .*dsn=5.1.1, status=bounced \(host mx1.pref.test\[127.0.0.2\] said: 550 5.1.1 no such user \(in reply to RCPT TO command\)\)`,
		`to=<again@pref.test>, ` + relay1 + `, conn_use=2, .*status=sent`,
		`to=<x@second.test>, relay=mx2.pref.test\[127.0.0.3\]:` + port + `, .*status=sent`,
		`to=<y@alldown.test>, relay=none, .*dsn=4.4.1, status=deferred \(connect to dead.pref.test\[127.0.0.9\]:` + port + `: Connection refused\)`,
		`to=<z@nomail.test>, relay=none, .*dsn=5.1.10, status=bounced \(Domain nomail.test does not accept mail \(nullMX\)\)`,
		`to=<v@broken.test>, relay=none, .*dsn=4.4.3, status=deferred \(Host or domain name not found. Name service error for name=broken.test type=MX: Host not found, try again\)`,
		`to=<w@nxdomain.test>, relay=none, .*dsn=5.4.4, status=bounced \(Host or domain name not found. Name service error for name=nxdomain.test type=MX: Host not found\)`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("mail log lacks %s:\n%s", re, log)
		}
	}
	if !strings.Contains(out, "(connect to dead.pref.test[127.0.0.9]:"+port+": Connection refused)") || !strings.Contains(out, "y@alldown.test") {
		t.Errorf("postqueue -p does not show the reason:\n%s", out)
	}
}

// TestBackupMX: with permit_mx_backup as the only way to relay, the
// server takes mail for a domain that lists it as a backup MX and
// passes it on to the primary, skipping itself; a domain that does not
// list it is refused.
func TestBackupMX(t *testing.T) {
	t.Parallel()
	mxs, port := startMXs(t, nil, "mx1.pref.test")
	d := startDNS(t, map[string]string{"mx1.pref.test": "127.0.0.2", "backup.example.test": "127.0.0.1"},
		map[string][]string{
			"backup.test":    {"20 backup.example.test", "10 mx1.pref.test"},
			"notbackup.test": {"10 mx1.pref.test"},
		})
	dir, addr, _ := deliveryDaemon(t, fmt.Sprintf(`
alias_maps = []
inet_interfaces = ["127.0.0.1"]
mailsrv_dns_servers = [%q]
smtp_tcp_port = %q
smtpd_relay_restrictions = ["permit_mx_backup", "reject_unauth_destination"]
`, d.addr, port))
	c, err := gosmtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("s@example.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("x@notbackup.test", nil); err == nil || !strings.Contains(err.Error(), "Relay access denied") {
		t.Errorf("RCPT for a domain that does not list us: %v; want Relay access denied", err)
	}
	c.Quit()
	send(t, addr, "s@example.test", []string{"x@backup.test"}, "Subject: backup\r\n\r\nfor the primary\r\n")
	eventuallyLog(t, dir, "the relay to the primary", func() bool { return strings.Contains(readLog(dir), "to=<x@backup.test>") })
	if m := mxs[0].messages(); len(m) != 1 || !strings.HasPrefix(m[0], "s@example.test x@backup.test: ") || !strings.Contains(m[0], "for the primary") {
		t.Errorf("the primary MX got %q", m)
	}
	if l := readLog(dir); !regexp.MustCompile(`to=<x@backup.test>, relay=mx1.pref.test\[127.0.0.2\]:\d+, .*status=sent`).MatchString(l) {
		t.Errorf("mail log lacks the relay to the primary:\n%s", l)
	}
}

// listQueue is what postqueue -p shows: each queued recipient with the
// reason of its last deferral.
func listQueue(t *testing.T, dir string) string {
	t.Helper()
	q := queue.New(filepath.Join(dir, "spool"), []string{queue.Deferred, queue.DeferLog}, 1)
	var b strings.Builder
	err := q.List(func(l *queue.Listed) error {
		for _, r := range l.Recipients {
			fmt.Fprintf(&b, "%s (%s) %s\n", l.ID, r.DelayReason, r.Addr)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestSMTPClientTLS: STARTTLS at level may with a self-signed
// certificate (an Untrusted TLS connection, mail delivered); level verify
// refuses that certificate and defers; a smarthost with AUTH gets the
// password from smtp_sasl_password_maps over TLS.
func TestSMTPClientTLS(t *testing.T) {
	t.Parallel()
	cert := selfSigned(t, "mx.tls.test", "smart.tls.test")
	mxs, port := startMXs(t, &cert, "mx.tls.test")
	d := startDNS(t, map[string]string{"mx.tls.test": "127.0.0.2", "smart.tls.test": "127.0.0.2", "badtls.tls.test": "127.0.0.2"},
		map[string][]string{"may.test": {"10 mx.tls.test"}, "verify.test": {"10 mx.tls.test"}})
	// A server whose TLS handshake always fails: at level may the client
	// tries again in plain text.
	broken := tls.Certificate{}
	bad, badPort := startMXs(t, &broken, "badtls.tls.test")
	base := t.TempDir()
	pw := filepath.Join(base, "sasl")
	if err := os.WriteFile(pw, []byte(fmt.Sprintf("[smart.tls.test]:%s user:secret\n", port)), 0o600); err != nil {
		t.Fatal(err)
	}
	dir, addr, stop := deliveryDaemon(t, fmt.Sprintf(`
alias_maps = []
mailsrv_dns_servers = [%q]
smtp_tcp_port = %q
smtp_tls_security_level = "may"
smtp_tls_policy_maps = ["inline:{ verify.test=verify }"]
smtp_sasl_auth_enable = true
smtp_sasl_password_maps = ["texthash:%s"]
transport_maps = ["inline:{ smart.test=smtp:[smart.tls.test]:%s, badtls.test=smtp:[badtls.tls.test]:%s }"]
minimal_backoff_time = "1h"
`, d.addr, port, pw, port, badPort))
	send(t, addr, "s@example.test", []string{"a@may.test"}, "Subject: may\r\n\r\nx\r\n")
	send(t, addr, "s@example.test", []string{"b@verify.test"}, "Subject: verify\r\n\r\nx\r\n")
	send(t, addr, "s@example.test", []string{"c@smart.test"}, "Subject: smart\r\n\r\nx\r\n")
	send(t, addr, "s@example.test", []string{"d@badtls.test"}, "Subject: badtls\r\n\r\nx\r\n")
	eventuallyLog(t, dir, "four results", func() bool {
		l := readLog(dir)
		return strings.Contains(l, "to=<a@may.test>") && strings.Contains(l, "to=<b@verify.test>") && strings.Contains(l, "to=<c@smart.test>") && strings.Contains(l, "to=<d@badtls.test>")
	})
	stop()
	log := readLog(dir)
	for _, re := range []string{
		`smtp\[\d+\]: Untrusted TLS connection established to mx.tls.test\[127.0.0.2\]:` + port + `: TLSv1.3 with cipher TLS_\w+ \(\d+/\d+ bits\)`,
		`to=<a@may.test>, relay=mx.tls.test\[127.0.0.2\]:` + port + `, .*status=sent`,
		`to=<b@verify.test>, relay=.*dsn=4.7.5, status=deferred \(Server certificate not verified: mx.tls.test\[127.0.0.2\] \(untrusted issuer\)\)`,
		`to=<c@smart.test>, relay=smart.tls.test\[127.0.0.2\]:` + port + `, .*status=sent`,
		`TLS handshake failed with badtls.tls.test\[127.0.0.2\]:` + badPort + `: .*; trying again without TLS`,
		`to=<d@badtls.test>, relay=badtls.tls.test\[127.0.0.2\]:` + badPort + `, .*status=sent`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("mail log lacks %s:\n%s", re, log)
		}
	}
	if len(bad[0].messages()) != 1 {
		t.Errorf("the server with broken TLS got %d messages in plain text, want 1", len(bad[0].messages()))
	}
	mxs[0].mu.Lock()
	defer mxs[0].mu.Unlock()
	if len(mxs[0].auth) != 1 || mxs[0].auth[0] != "user:secret" {
		t.Errorf("AUTH attempts %q, want one with user:secret", mxs[0].auth)
	}
}

// TestSMTPClientTLSVerify: with smtp_tls_CAfile, a server whose
// certificate matches its MX name is Verified; one whose name does not
// match is Trusted and refused at level verify; level encrypt refuses a
// server that does not offer STARTTLS.
func TestSMTPClientTLSVerify(t *testing.T) {
	t.Parallel()
	cert := selfSigned(t, "mx.tls.test")
	mxs, port := startMXs(t, &cert, "mx.tls.test")
	plain, plainPort := startMXs(t, nil, "plain.tls.test")
	d := startDNS(t, map[string]string{"mx.tls.test": "127.0.0.2", "other.tls.test": "127.0.0.2", "plain.tls.test": "127.0.0.2"},
		map[string][]string{"verified.test": {"10 mx.tls.test"}, "mismatch.test": {"10 other.tls.test"}})
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	plainHop := "[plain.tls.test]:" + plainPort
	dir, addr, stop := deliveryDaemon(t, fmt.Sprintf(`
alias_maps = []
mailsrv_dns_servers = [%q]
smtp_tcp_port = %q
smtp_tls_CAfile = %q
smtp_tls_security_level = "verify"
smtp_tls_policy_maps = ["inline:{ {%s=encrypt} }"]
transport_maps = ["inline:{ {encrypt.test=smtp:%s} }"]
minimal_backoff_time = "1h"
`, d.addr, port, ca, plainHop, plainHop))
	send(t, addr, "s@example.test", []string{"a@verified.test"}, "Subject: verified\r\n\r\nx\r\n")
	send(t, addr, "s@example.test", []string{"b@mismatch.test"}, "Subject: mismatch\r\n\r\nx\r\n")
	send(t, addr, "s@example.test", []string{"c@encrypt.test"}, "Subject: encrypt\r\n\r\nx\r\n")
	eventuallyLog(t, dir, "three results", func() bool {
		l := readLog(dir)
		return strings.Contains(l, "to=<a@verified.test>") && strings.Contains(l, "to=<b@mismatch.test>") && strings.Contains(l, "to=<c@encrypt.test>")
	})
	stop()
	log := readLog(dir)
	for _, re := range []string{
		`Verified TLS connection established to mx.tls.test\[127.0.0.2\]:` + port + `: TLSv1.3 with cipher`,
		`to=<a@verified.test>, relay=mx.tls.test\[127.0.0.2\]:` + port + `, .*status=sent`,
		`Trusted TLS connection established to other.tls.test\[127.0.0.2\]:` + port,
		`to=<b@mismatch.test>, .*dsn=4.7.5, status=deferred \(Server certificate not verified: other.tls.test\[127.0.0.2\] \(name mismatch\)\)`,
		`to=<c@encrypt.test>, relay=none, .*dsn=4.7.4, status=deferred \(TLS is required, but was not offered by host plain.tls.test\[127.0.0.2\]\)`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("mail log lacks %s:\n%s", re, log)
		}
	}
	if len(mxs[0].messages()) != 1 || len(plain[0].messages()) != 0 {
		t.Errorf("deliveries: %d to the TLS server (want 1), %d to the plain one (want 0)", len(mxs[0].messages()), len(plain[0].messages()))
	}
}

// TestReloadRenewsCertificate: a reload makes new sessions use a renewed
// certificate while a session already in TLS goes on with the old one.
func TestReloadRenewsCertificate(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	chain := filepath.Join(base, "chain.pem")
	write := func(cert tls.Certificate) {
		t.Helper()
		tmp := chain + ".new"
		if err := writeKey(tmp, cert); err != nil {
			t.Fatal(err)
		}
		f, _ := os.OpenFile(tmp, os.O_APPEND|os.O_WRONLY, 0)
		f.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}))
		f.Close()
		if err := os.Rename(tmp, chain); err != nil {
			t.Fatal(err)
		}
	}
	old, renewed := selfSigned(t, "mx.example.test"), selfSigned(t, "mx.example.test")
	write(old)
	dir, addr, stop := deliveryDaemon(t, fmt.Sprintf("alias_maps = []\nsmtpd_tls_security_level = \"may\"\nsmtpd_tls_chain_files = [%q]\n", chain))
	starttls := func() (*tls.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		read := func() string {
			for {
				l, err := br.ReadString('\n')
				if err != nil || len(l) < 4 || l[3] != '-' {
					return l
				}
			}
		}
		read()
		fmt.Fprintf(c, "EHLO client.test\r\n")
		read()
		fmt.Fprintf(c, "STARTTLS\r\n")
		if r := read(); !strings.HasPrefix(r, "220") {
			t.Fatalf("STARTTLS: %q", r)
		}
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		return tc, bufio.NewReader(tc)
	}
	first, fr := starttls()
	defer first.Close()
	if string(first.ConnectionState().PeerCertificates[0].Raw) != string(old.Certificate[0]) {
		t.Fatal("first session did not get the first certificate")
	}
	write(renewed)
	if _, err := Call(filepath.Join(dir, "spool"), Request{Cmd: "reload"}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	second, _ := starttls()
	defer second.Close()
	if string(second.ConnectionState().PeerCertificates[0].Raw) != string(renewed.Certificate[0]) {
		t.Error("a session after the reload did not get the renewed certificate")
	}
	// The old session goes on as after a Postfix reload, to its end.
	noop := func() string {
		fmt.Fprintf(first, "NOOP\r\n")
		l, _ := fr.ReadString('\n')
		return l
	}
	for i := 0; i < 3; i++ {
		if l := noop(); !strings.HasPrefix(l, "250") {
			t.Fatalf("old session after reload, command %d: %q", i+1, l)
		}
	}
	// A stop, unlike a reload, ends it after its current command (the
	// other session leaves first, so the stop need not wait for it).
	second.Close()
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	// EHLO rather than NOOP: NOOPs past smtpd_junk_command_limit count
	// as errors, and a slow stop under load would end the session with
	// "too many errors" instead.
	ehlo := func() string {
		fmt.Fprintf(first, "EHLO client.test\r\n")
		for {
			l, err := fr.ReadString('\n')
			if err != nil || len(l) < 4 || l[3] != '-' {
				return l
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := ehlo()
		if strings.HasPrefix(l, "421 4.3.2 ") {
			break
		}
		if !strings.HasPrefix(l, "250") || time.Now().After(deadline) {
			t.Fatalf("old session during stop: %q", l)
		}
	}
	<-stopped
}

// TestFlushTriesDeadHostNow: every MX of a domain is down, so its mail is
// deferred and the client remembers the host as dead. The operator brings
// the host back and asks for delivery now: postqueue -f, postqueue -i
// and postsuper -r must each reach it at once, not a minute later.
func TestFlushTriesDeadHostNow(t *testing.T) {
	t.Parallel()
	// A host that is down: an address and port nothing listens on (the
	// test brings the MX up there later).
	host, port, _ := net.SplitHostPort(testutil.FreeAddr(t))
	d := startDNS(t, map[string]string{"mx.down.test": host}, map[string][]string{"down.test": {"10 mx.down.test"}})
	dir, addr, stop := deliveryDaemon(t, fmt.Sprintf(`
alias_maps = []
mailsrv_dns_servers = [%q]
smtp_tcp_port = %q
minimal_backoff_time = "1h"
maximal_backoff_time = "2h"
`, d.addr, port))
	defer stop()
	queueDir := filepath.Join(dir, "spool")
	q := queue.New(queueDir, []string{queue.Deferred, queue.DeferLog}, 1)
	refused := func(rcpt string) bool {
		return regexp.MustCompile(`to=<` + regexp.QuoteMeta(rcpt) + `>, relay=none, .*status=deferred \(connect to mx.down.test\[` + regexp.QuoteMeta(host) + `\]:\d+: Connection refused\)`).MatchString(readLog(dir))
	}
	// deferOne sends a message to rcpt, waits until the client was
	// refused and returns the message's queue ID.
	deferOne := func(rcpt string) string {
		send(t, addr, "s@example.test", []string{rcpt}, "Subject: later\r\n\r\nx\r\n")
		eventuallyLog(t, dir, rcpt+" deferred", func() bool { return refused(rcpt) })
		var id string
		eventuallyLog(t, dir, rcpt+" in deferred", func() bool {
			_ = q.Walk(queue.Deferred, func(e queue.Entry) error { id = e.ID; return nil }, nil)
			return id != ""
		})
		return id
	}
	sent := func(rcpt string) bool {
		return regexp.MustCompile(`to=<` + regexp.QuoteMeta(rcpt) + `>, relay=mx.down.test\[.*status=sent`).MatchString(readLog(dir))
	}
	// Each flush below comes within the minute the client would
	// otherwise skip the host; the host is down again in between, so
	// each one finds it dead in the client's memory.
	up := func() func() { return mxAt(t, net.JoinHostPort(host, port), "mx.down.test") }
	deferOne("f@down.test")
	down := up()
	if _, err := Call(queueDir, Request{Cmd: "flush"}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	eventuallyLog(t, dir, "postqueue -f to deliver f@down.test at once", func() bool { return sent("f@down.test") })
	down()

	id := deferOne("i@down.test")
	down = up()
	if _, err := Call(queueDir, Request{Cmd: "flush-id", Args: []string{id}}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	eventuallyLog(t, dir, "postqueue -i to deliver i@down.test at once", func() bool { return sent("i@down.test") })
	down()

	id = deferOne("r@down.test")
	down = up()
	defer down()
	// postsuper -r: the message goes back through pickup and cleanup.
	if err := q.Move(id, queue.Deferred, queue.Maildrop); err != nil {
		t.Fatal(err)
	}
	if _, err := Call(queueDir, Request{Cmd: "wakeup"}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	eventuallyLog(t, dir, "postsuper -r to deliver r@down.test at once", func() bool { return sent("r@down.test") })
}

// TestSMTPClientTLSFingerprint: level fingerprint delivers to a smarthost
// whose certificate (or public key) has a listed digest, and defers
// without sending the SASL password to one whose certificate does not;
// a policy map's dane level defers with a reason instead of being taken
// for encrypt.
func TestSMTPClientTLSFingerprint(t *testing.T) {
	t.Parallel()
	cert := selfSigned(t, "smart.fp.test")
	other := selfSigned(t, "smart.fp.test")
	good, port := startMXs(t, &cert, "smart.fp.test")
	evil, evilPort := startMXs(t, &other, "evil.fp.test")
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	colons := func(b []byte) string {
		h := strings.ToUpper(hex.EncodeToString(b))
		var parts []string
		for i := 0; i < len(h); i += 2 {
			parts = append(parts, h[i:i+2])
		}
		return strings.Join(parts, ":")
	}
	certFP := sha256.Sum256(leaf.Raw)
	keyFP := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	d := startDNS(t, map[string]string{"smart.fp.test": "127.0.0.2", "evil.fp.test": "127.0.0.2", "dane.test": "127.0.0.2"}, nil)
	pw := filepath.Join(t.TempDir(), "sasl")
	if err := os.WriteFile(pw, []byte(fmt.Sprintf("[smart.fp.test]:%s user:secret\n[evil.fp.test]:%s user:secret\n", port, evilPort)), 0o600); err != nil {
		t.Fatal(err)
	}
	dir, addr, stop := deliveryDaemon(t, fmt.Sprintf(`
alias_maps = []
mailsrv_dns_servers = [%q]
smtp_tls_security_level = "fingerprint"
smtp_tls_fingerprint_cert_match = [%q]
smtp_tls_policy_maps = ["inline:{ {[smart.fp.test]:%s=fingerprint match=00:11|%s}, {[evil.fp.test]:%s=fingerprint}, {[dane.test]:%s=dane} }"]
smtp_sasl_auth_enable = true
smtp_sasl_password_maps = ["texthash:%s"]
transport_maps = ["inline:{ {good.test=smtp:[smart.fp.test]:%s}, {evil.test=smtp:[evil.fp.test]:%s}, {pinned.test=smtp:[smart.fp.test]:%s}, {dane.test=smtp:[dane.test]:%s} }"]
minimal_backoff_time = "1h"
`, d.addr, colons(certFP[:]), port, colons(keyFP[:]), evilPort, port, pw, port, evilPort, port, port))
	send(t, addr, "s@example.test", []string{"a@good.test"}, "Subject: pinned key\r\n\r\nx\r\n")
	send(t, addr, "s@example.test", []string{"b@evil.test"}, "Subject: wrong certificate\r\n\r\nx\r\n")
	send(t, addr, "s@example.test", []string{"c@dane.test"}, "Subject: dane\r\n\r\nx\r\n")
	eventuallyLog(t, dir, "three results", func() bool {
		l := readLog(dir)
		return strings.Contains(l, "to=<a@good.test>") && strings.Contains(l, "to=<b@evil.test>") && strings.Contains(l, "to=<c@dane.test>")
	})
	stop()
	log := readLog(dir)
	for _, re := range []string{
		`Verified TLS connection established to smart.fp.test\[127.0.0.2\]:` + port,
		`to=<a@good.test>, relay=smart.fp.test\[127.0.0.2\]:` + port + `, .*status=sent`,
		`Untrusted TLS connection established to evil.fp.test\[127.0.0.2\]:` + evilPort,
		`to=<b@evil.test>, .*dsn=4.7.5, status=deferred \(Server certificate not verified: evil.fp.test\[127.0.0.2\] \(fingerprint mismatch\)\)`,
		`warning: \w+: smtp_tls_policy_maps: TLS policy dane for \[dane.test\]:\d+: DANE is not part of this version of mailsrv`,
		`to=<c@dane.test>, relay=none, .*dsn=4.7.5, status=deferred \(TLS policy lookup problem\)`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("mail log lacks %s:\n%s", re, log)
		}
	}
	if n := len(evil[0].messages()); n != 0 {
		t.Errorf("the server with the wrong certificate got %d messages", n)
	}
	evil[0].mu.Lock()
	defer evil[0].mu.Unlock()
	if len(evil[0].auth) != 0 {
		t.Errorf("the password went to the server with the wrong certificate: %q", evil[0].auth)
	}
	if n := len(good[0].messages()); n != 1 {
		t.Errorf("the pinned server got %d messages, want 1", n)
	}
}

// TestETRNAndPostqueueS: mail for a fast_flush_domains site (here
// relay_domains, its default) whose MX is down waits in deferred and in
// the site's flush log. Once the MX is back, ETRN from the MX's side
// releases that site's mail at once, and postqueue -s does the same for
// the next message; mail for other destinations stays, and ETRN for a
// site that is not listed gets 459.
func TestETRNAndPostqueueS(t *testing.T) {
	t.Parallel()
	// A host that is down: an address and port nothing listens on (the
	// test brings the MX up there later).
	host, port, _ := net.SplitHostPort(testutil.FreeAddr(t))
	d := startDNS(t, map[string]string{"mx.backup.test": host}, map[string][]string{"backup.test": {"10 mx.backup.test"}, "other.test": {"10 mx.backup.test"}})
	dir, addr, stop := deliveryDaemon(t, fmt.Sprintf(`
alias_maps = []
relay_domains = ["backup.test"]
mailsrv_dns_servers = [%q]
smtp_tcp_port = %q
minimal_backoff_time = "1h"
maximal_backoff_time = "2h"
`, d.addr, port))
	defer stop()
	queueDir := filepath.Join(dir, "spool")
	refused := func(rcpt string) bool {
		return regexp.MustCompile(`to=<` + regexp.QuoteMeta(rcpt) + `>, relay=none, .*status=deferred \(connect to mx.backup.test`).MatchString(readLog(dir))
	}
	sent := func(rcpt string) bool {
		return regexp.MustCompile(`to=<` + regexp.QuoteMeta(rcpt) + `>, relay=mx.backup.test\[.*status=sent`).MatchString(readLog(dir))
	}
	// From outside mynetworks, as the primary MX's clients would: mail
	// for a relay domain.
	send(t, addr, "s@example.test", []string{"a@backup.test"}, "Subject: backup\r\n\r\nx\r\n")
	send(t, addr, "s@example.test", []string{"o@other.test"}, "Subject: other\r\n\r\nx\r\n")
	eventuallyLog(t, dir, "both deferred", func() bool { return refused("a@backup.test") && refused("o@other.test") })
	// qmgr logs the deferral to the flush service when the delivery
	// comes back to it, just after the agent's log line.
	eventuallyLog(t, dir, "a@backup.test in the flush log of backup.test", func() bool {
		logged, _ := os.ReadFile(filepath.Join(queueDir, "flush", "backup.test"))
		return len(strings.Fields(string(logged))) == 1
	})
	if _, err := os.Stat(filepath.Join(queueDir, "flush", "other.test")); err == nil {
		t.Error("a flush log for other.test, which is not in fast_flush_domains")
	}

	up := func() func() { return mxAt(t, net.JoinHostPort(host, port), "mx.backup.test") }
	down := up()

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	say := func(line, want string) {
		t.Helper()
		if line != "" {
			fmt.Fprintf(c, "%s\r\n", line)
		}
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("after %q: %v", line, err)
			}
			if len(l) > 3 && l[3] == '-' {
				if want == "ETRN" && strings.HasPrefix(l, "250-ETRN") {
					want = ""
				}
				continue
			}
			if want != "" && want != "ETRN" && !strings.HasPrefix(l, want) {
				t.Fatalf("%q: reply %q, want %q", line, l, want)
			}
			if want == "ETRN" {
				t.Fatalf("EHLO does not offer ETRN")
			}
			return
		}
	}
	say("", "220 ")
	say("EHLO mx.backup.test", "ETRN")
	say("ETRN other.test", "459 4.3.0 <other.test>: service unavailable")
	say("ETRN", "500 5.5.4 Syntax: ETRN domain")
	say("ETRN bad/site", "501 5.5.4 Error: invalid parameter syntax")
	say("ETRN @backup.test", "250 2.0.0 Queuing started")
	eventuallyLog(t, dir, "ETRN to deliver a@backup.test at once", func() bool { return sent("a@backup.test") })

	down()

	// Down again: the next message waits; postqueue -s releases it.
	send(t, addr, "s@example.test", []string{"b@backup.test"}, "Subject: backup 2\r\n\r\nx\r\n")
	eventuallyLog(t, dir, "b@backup.test deferred and logged for the site", func() bool {
		logged, _ := os.ReadFile(filepath.Join(queueDir, "flush", "backup.test"))
		return refused("b@backup.test") && len(strings.Fields(string(logged))) == 1
	})
	down = up()
	defer down()
	if _, err := Call(queueDir, Request{Cmd: "flush-site", Args: []string{"backup.test"}}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	eventuallyLog(t, dir, "postqueue -s to deliver b@backup.test", func() bool { return sent("b@backup.test") })
	if sent("o@other.test") {
		t.Error("ETRN backup.test released mail for other.test")
	}
	if !strings.Contains(readLog(dir), "warning: reject: ETRN other.test... from ") {
		t.Error("no warning for the refused ETRN")
	}
}

// mxAt starts a fake MX named name on addr (a host that was down comes
// back); the returned function takes it down again.
func mxAt(t *testing.T, addr, name string) (stop func()) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	mx := &fakeMX{name: name, ln: l}
	mx.srv = gosmtp.NewServer(mx)
	mx.srv.Domain = name
	go mx.srv.Serve(l)
	return func() { mx.srv.Close() }
}
