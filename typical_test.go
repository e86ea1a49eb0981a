package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailsrv/internal/testutil"
)

// typicalConfig is the main.cf and master.cf of a public MX with a
// submission port, as the Postfix book and Debian's documentation show
// them, written as TOML: HELO required and checked, senders and
// recipients with fully qualified names in domains that exist, unknown
// local users refused at RCPT, a DNS block list, postgrey as a policy
// service, pipelining and multi-recipient bounces refused at DATA, TLS
// offered; the submission port demands TLS and AUTH before anything.
const typicalConfig = `
myhostname = "mx.example.test"
mydomain = "example.test"
myorigin = "$mydomain"
mydestination = ["$myhostname", "localhost.$mydomain", "localhost", "$mydomain"]
mynetworks = ["127.0.0.1/32"]
relay_domains = []
alias_maps = []
alias_database = []
local_recipient_maps = ["unix:passwd.byname"]
queue_directory = "spool"
maillog_file = "maillog"
mail_owner = %q
mailsrv_dns_servers = [%q]
smtpd_peername_lookup = false
disable_vrfy_command = true
smtpd_helo_required = true
smtpd_helo_restrictions = ["permit_mynetworks", "reject_invalid_helo_hostname", "reject_non_fqdn_helo_hostname"]
smtpd_sender_restrictions = ["permit_mynetworks", "reject_non_fqdn_sender", "reject_unknown_sender_domain"]
smtpd_relay_restrictions = ["permit_mynetworks", "permit_sasl_authenticated", "reject_unauth_destination"]
smtpd_recipient_restrictions = ["permit_mynetworks", "reject_non_fqdn_recipient", "reject_unknown_recipient_domain", "reject_unlisted_recipient", "reject_rbl_client", "zen.example", "check_policy_service", "inet:%s"]
smtpd_data_restrictions = ["reject_unauth_pipelining", "reject_multi_recipient_bounce"]
smtpd_tls_security_level = "may"
smtpd_tls_chain_files = [%q]

[[service]]
name = "smtp"
type = "inet"
listen = %q
command = "smtpd"

[[service]]
name = "submission"
type = "inet"
listen = %q
command = "smtpd"
[service.overrides]
smtpd_tls_security_level = "encrypt"
smtpd_sasl_auth_enable = true
smtpd_tls_auth_only = true
smtpd_client_restrictions = ["permit_sasl_authenticated", "reject"]
smtpd_relay_restrictions = ["permit_sasl_authenticated", "reject"]
`

// TestTypicalOperatorConfig: that configuration starts, passes postfix
// check without a word, and answers a table of clients and addresses
// as Postfix does, against a fake zone and a real postgrey.
func TestTypicalOperatorConfig(t *testing.T) {
	t.Parallel()
	dir, owner := newInstance(t)
	d := testutil.StartDNS(t, map[string][]string{
		"good.example MX":           {"10 mx.good.example."},
		"mx.good.example A":         {"192.0.2.1"},
		"3.0.0.127.zen.example A":   {"127.0.0.2"},
		"3.0.0.127.zen.example TXT": {"listed for the test"},
	}, nil, nil)
	// postgrey: 127.0.0.2 and .3 are old friends (whitelisted), 127.0.0.4
	// a stranger.
	pgDir := filepath.Join(dir, "postgrey")
	if err := os.MkdirAll(pgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pgDir, "clients"), []byte("127.0.0.2\n127.0.0.3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pgAddr, _ := testutil.Postgrey(t, pgDir, "--delay=300", "--whitelist-clients="+filepath.Join(pgDir, "clients"), "--whitelist-recipients=/dev/null")

	cert := filepath.Join(dir, "chain.pem")
	writeSelfSigned(t, cert, "mx.example.test")
	mx, sub := testutil.FreeAddr(t), testutil.FreeAddr(t)
	cfg := fmt.Sprintf(typicalConfig, owner, d.Addr, pgAddr, cert, mx, sub)
	if err := os.WriteFile(filepath.Join(dir, "mailsrv.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "start"); code != 0 {
		t.Fatalf("start: %d %q", code, errOut)
	}
	defer mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "stop")
	// Once the queue exists (the first start makes it), check has
	// nothing to say.
	out, errOut, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "check")
	if code != 0 || out != "" || errOut != "" {
		t.Fatalf("postfix check: %d %q %q; want silence", code, out, errOut)
	}

	for _, c := range []struct{ from, helo, sender, rcpt, want string }{
		{"127.0.0.2", "client.good.example", "a@good.example", "root@example.test", "250 2.1.5 Ok"},
		{"127.0.0.2", "localhost", "a@good.example", "root@example.test", "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"},
		{"127.0.0.2", "bad_host!name", "a@good.example", "root@example.test", "501 5.5.2 <bad_host!name>: Helo command rejected: Invalid name"},
		{"127.0.0.2", "client.good.example", "a@nxdomain.example", "root@example.test", "450 4.1.8 <a@nxdomain.example>: Sender address rejected: Domain not found"},
		{"127.0.0.2", "client.good.example", "a@good.example", "x@remote.example", "554 5.7.1 <x@remote.example>: Relay access denied"},
		{"127.0.0.2", "client.good.example", "a@good.example", "nosuchuser@example.test", "550 5.1.1 <nosuchuser@example.test>: Recipient address rejected: User unknown in local recipient table"},
		{"127.0.0.3", "client.good.example", "a@good.example", "root@example.test", "554 5.7.1 Service unavailable; Client host [127.0.0.3] blocked using zen.example; listed for the test"},
		{"127.0.0.4", "client.good.example", "a@good.example", "root@example.test", "450 4.2.0 <root@example.test>: Recipient address rejected: Greylisted*"},
		{"127.0.0.1", "client.good.example", "a@good.example", "x@remote.example", "250 2.1.5 Ok"},
	} {
		s := dialSMTP(t, c.from, mx)
		s.cmd("EHLO "+c.helo, "250-*")
		s.cmd("MAIL FROM:<"+c.sender+">", "250 2.1.0 Ok")
		s.cmd("RCPT TO:<"+c.rcpt+">", c.want)
		s.cmd("QUIT", "221 2.0.0 Bye")
	}
	// HELO first; VRFY off; a bounce to two recipients refused at DATA.
	s := dialSMTP(t, "127.0.0.2", mx)
	s.cmd("MAIL FROM:<a@good.example>", "503 5.5.1 Error: send HELO/EHLO first")
	s.cmd("EHLO client.good.example", "250-*")
	s.cmd("VRFY root", "502 5.5.1 VRFY command is disabled")
	s.cmd("MAIL FROM:<>", "250 2.1.0 Ok")
	s.cmd("RCPT TO:<root@example.test>", "250 2.1.5 Ok")
	s.cmd("RCPT TO:<nobody@example.test>", "250 2.1.5 Ok")
	s.cmd("DATA", "550 5.5.3 <DATA>: Data command rejected: Multi-recipient bounce")
	s.cmd("QUIT", "221 2.0.0 Bye")
	// Submission: TLS before anything, then AUTH.
	s = dialSMTP(t, "127.0.0.2", sub)
	s.cmd("EHLO client.good.example", "250-*")
	s.cmd("MAIL FROM:<a@example.test>", "530 5.7.0 Must issue a STARTTLS command first")
	s.cmd("QUIT", "221 2.0.0 Bye")
}

// smtpClient is a bare SMTP client for tables of replies.
type smtpClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// dialSMTP connects from a given loopback address and reads the greeting.
func dialSMTP(t *testing.T, from, addr string) *smtpClient {
	t.Helper()
	dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := dl.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &smtpClient{t: t, c: c, br: bufio.NewReader(c)}
	s.read("220 *")
	return s
}

// cmd sends a line, checks the last line of the reply against want (a
// trailing * matches any rest; for a 250- want, the first line) and
// returns every line of the reply.
func (s *smtpClient) cmd(line, want string) []string {
	s.t.Helper()
	fmt.Fprintf(s.c, "%s\r\n", line)
	return s.read(want)
}

func (s *smtpClient) read(want string) []string {
	s.t.Helper()
	_ = s.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var lines []string
	for {
		l, err := s.br.ReadString('\n')
		if err != nil {
			s.t.Fatalf("reading the reply: %v (want %q)", err, want)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			break
		}
	}
	got := lines[len(lines)-1]
	if strings.HasSuffix(want, "-*") {
		got = lines[0]
	}
	if p, ok := strings.CutSuffix(want, "*"); ok {
		if !strings.HasPrefix(got, p) {
			s.t.Errorf("got %q; want %q", got, want)
		}
	} else if got != want {
		s.t.Errorf("got %q; want %q", got, want)
	}
	return lines
}

// writeSelfSigned writes a key and a self-signed certificate for name, as
// one PEM file.
func writeSelfSigned(t *testing.T, path, name string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pemText := append(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	if err := os.WriteFile(path, pemText, 0o644); err != nil {
		t.Fatal(err)
	}
}
