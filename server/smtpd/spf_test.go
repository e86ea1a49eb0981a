package smtpd

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"mailsrv/internal/testutil"
)

// TestPolicydSPF: Debian's postfix-policyd-spf-python as the policy
// service, as Postfix runs it (spawned per connection, the protocol on
// its standard input and output), with SPF records from a fake zone: a
// sender whose domain's record does not list the client is rejected with
// the server's 550 5.7.23, one whose record does is accepted with the
// Received-SPF header the server asked to prepend. The server reads its
// DNS servers from /etc/resolv.conf only, so it runs in a private mount
// namespace where a bind mount puts the fake zone's address there: that
// and the fake server on port 53 need root.
func TestPolicydSPF(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("policyd-spf")
	if err != nil {
		t.Skip("policyd-spf is not installed (apt-get install postfix-policyd-spf-python)")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("policyd-spf reads its DNS servers from /etc/resolv.conf: pointing it at the fake zone takes root and unshare")
	}
	const dnsAddr = "127.0.0.153"
	d := testutil.StartDNSAt(t, dnsAddr+":53", map[string][]string{
		"pass.example TXT":   {"v=spf1 ip4:127.0.0.2 -all"},
		"fail.example TXT":   {"v=spf1 ip4:192.0.2.1 -all"},
		"client.example TXT": {"v=spf1 ip4:127.0.0.2 -all"},
	}, nil)
	if d == nil {
		t.Skipf("%s:53 is in use", dnsAddr)
	}
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	conf := filepath.Join(dir, "policyd-spf.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+dnsAddr+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The stock settings, except that loopback clients are not skipped.
	if err := os.WriteFile(conf, []byte("debugLevel = 1\nTestOnly = 1\nHELO_reject = Fail\nMail_From_reject = Fail\nPermError_reject = False\nTempError_Defer = False\nskip_addresses = 192.0.2.255/32\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// spawn(8)'s part: one server process per connection.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var stderr testutil.SyncBuffer
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f, err := c.(*net.TCPConn).File()
			c.Close()
			if err != nil {
				continue
			}
			cmd := exec.Command(unshare, "-m", "/bin/sh", "-c", `mount --bind "$0" /etc/resolv.conf && exec "$1" "$2"`, resolv, bin, conf)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, &stderr
			if err := cmd.Start(); err != nil {
				fmt.Fprintln(&stderr, err)
			} else {
				go cmd.Wait()
			}
			f.Close()
		}
	}()
	ts := startServer(t, fmt.Sprintf(`
smtpd_recipient_restrictions = ["reject_unauth_destination", "check_policy_service", "inet:%s"]
`, ln.Addr()))
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO client.example", "250-*")
	c.cmd("MAIL FROM:<someone@fail.example>", "250 2.1.0 Ok")
	if r := c.cmd("RCPT TO:<alice@our.test>", "*"); !strings.HasPrefix(r, "550 5.7.23 <alice@our.test>: Recipient address rejected: Message rejected due to: SPF fail - not authorized.") {
		t.Errorf("SPF fail: %q; want policyd-spf's 550 5.7.23\n%s", r, stderr.String())
	}
	c.cmd("RSET", "250 2.0.0 Ok")
	c.cmd("MAIL FROM:<someone@pass.example>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 *")
	c.cmd("Subject: spf\r\n\r\nx\r\n.", "250 2.0.0 Ok: queued as *")
	c.cmd("QUIT", "221 2.0.0 Bye")
	msgs := ts.messages(t)
	if len(msgs) != 1 || !strings.HasPrefix(body(t, msgs[0]), "Received-SPF: Pass (mailfrom) identity=mailfrom; client-ip=127.0.0.2;") {
		t.Errorf("queued: %d messages; want one starting with policyd-spf's Received-SPF: Pass\n%s", len(msgs), stderr.String())
		for _, m := range msgs {
			t.Logf("%q", body(t, m))
		}
	}
}
