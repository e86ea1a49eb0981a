package smtpd

import (
	"fmt"
	"testing"

	"mailsrv/internal/testutil"
)

// TestRejectUnknown: reject_unknown_sender_domain,
// reject_unknown_recipient_domain and reject_unknown_helo_hostname
// against a fake zone (NXDOMAIN, null MX, A without MX, SERVFAIL), and
// reject_unknown_client_hostname for a client without a name, with
// Postfix's replies.
func TestRejectUnknown(t *testing.T) {
	t.Parallel()
	d := testutil.StartDNS(t, map[string][]string{
		"good.example MX":     {"10 mx.good.example."},
		"mx.good.example A":   {"192.0.2.1"},
		"nomx.example A":      {"192.0.2.2"},
		"nullmx.example MX":   {"0 ."},
		"helo.good.example A": {"192.0.2.3"},
		"relayed.test MX":     {"10 mx.good.example."},
		"remote.example MX":   {"10 mx.good.example."},
		"nomx-rcpt.example A": {"192.0.2.4"},
	}, []string{"servfail.example"}, nil)
	ts := startServer(t, fmt.Sprintf(`
mailsrv_dns_servers = [%q]
smtpd_helo_restrictions = ["reject_unknown_helo_hostname"]
smtpd_sender_restrictions = ["reject_unknown_sender_domain"]
smtpd_recipient_restrictions = ["reject_unknown_recipient_domain", "permit_mynetworks", "reject_unauth_destination"]
`, d.Addr))
	try := func(src, helo, sender, rcpt, want string) {
		t.Helper()
		c := ts.dialFrom(t, src)
		c.cmd("EHLO "+helo, "250-*")
		c.cmd("MAIL FROM:<"+sender+">", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<"+rcpt+">", want)
		c.cmd("QUIT", "221 2.0.0 Bye")
	}
	try("127.0.0.2", "helo.good.example", "a@good.example", "alice@our.test", "250 2.1.5 Ok")
	try("127.0.0.2", "helo.good.example", "a@nomx.example", "alice@our.test", "250 2.1.5 Ok")
	try("127.0.0.2", "helo.good.example", "a@nxdomain.example", "alice@our.test", "450 4.1.8 <a@nxdomain.example>: Sender address rejected: Domain not found")
	try("127.0.0.2", "helo.good.example", "a@nullmx.example", "alice@our.test", "550 5.7.27 <a@nullmx.example>: Sender address rejected: Domain nullmx.example does not accept mail (nullMX)")
	// A failed lookup defers only what would be accepted.
	try("127.0.0.2", "helo.good.example", "a@servfail.example", "alice@our.test", "450 4.1.8 <a@servfail.example>: Sender address rejected: Domain not found")
	try("127.0.0.2", "helo.good.example", "a@servfail.example", "x@remote.example", "454 4.7.1 <x@remote.example>: Relay access denied")
	try("127.0.0.2", "unknown-helo.example", "a@good.example", "alice@our.test", "450 4.7.1 <unknown-helo.example>: Helo command rejected: Host not found")
	try("127.0.0.2", "[192.0.2.9]", "a@good.example", "alice@our.test", "250 2.1.5 Ok")
	// Recipients: our own domains are not looked up.
	try("127.0.0.1", "helo.good.example", "a@good.example", "b@nxdomain.example", "450 4.1.2 <b@nxdomain.example>: Recipient address rejected: Domain not found")
	try("127.0.0.1", "helo.good.example", "a@good.example", "b@nullmx.example", "556 5.1.10 <b@nullmx.example>: Recipient address rejected: Domain nullmx.example does not accept mail (nullMX)")
	try("127.0.0.1", "helo.good.example", "a@good.example", "b@nomx-rcpt.example", "250 2.1.5 Ok")
	ts.waitLog(t, "NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 450 4.1.8 <a@nxdomain.example>: Sender address rejected: Domain not found; from=<a@nxdomain.example> to=<alice@our.test> proto=ESMTP helo=<helo.good.example>")

	// The tests run without client name lookups: every client is
	// unknown, as Postfix warns.
	unk := startServer(t, `smtpd_client_restrictions = ["reject_unknown_client_hostname"]`)
	c := unk.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO x", "250-*")
	c.cmd("MAIL FROM:<a@b.example>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "450 4.7.25 Client host rejected: cannot find your hostname, [127.0.0.2]")
	rev := startServer(t, `smtpd_client_restrictions = ["reject_unknown_reverse_client_hostname"]
unknown_client_reject_code = 550`)
	c = rev.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO x", "250-*")
	c.cmd("MAIL FROM:<a@b.example>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "550 5.7.1 Client host rejected: cannot find your reverse hostname, [127.0.0.2]")
}

// TestServerAccess: check_sender_mx_access (by an MX host's address and
// by its name), check_sender_ns_access (a parent's name servers),
// check_helo_a_access, and OK taken as DUNNO.
func TestServerAccess(t *testing.T) {
	t.Parallel()
	d := testutil.StartDNS(t, map[string][]string{
		"spam.example MX":       {"10 mx.spamhost.example."},
		"mx.spamhost.example A": {"192.0.2.66"},
		"named.example MX":      {"10 mx.badname.example."},
		"mx.badname.example A":  {"192.0.2.1"},
		"sub.ns.example A":      {"192.0.2.2"},
		"ns.example NS":         {"ns1.badns.example."},
		"ns1.badns.example A":   {"192.0.2.3"},
		"helo.example A":        {"192.0.2.77"},
		"fine.example MX":       {"10 mx.fine.example."},
		"mx.fine.example A":     {"192.0.2.10"},
		"okay.example MX":       {"10 mx.okay.example."},
		"mx.okay.example A":     {"192.0.2.20"},
	}, nil, nil)
	ts := startServer(t, fmt.Sprintf(`
mailsrv_dns_servers = [%q]
smtpd_helo_restrictions = ["check_helo_a_access", "inline:{ {192.0.2.77=REJECT helo host blocked} }"]
smtpd_sender_restrictions = ["check_sender_mx_access", "inline:{ {192.0.2.66=REJECT bad mx}, {badname.example=REJECT bad mx name}, {192.0.2.20=OK} }", "check_sender_ns_access", "inline:{ {ns1.badns.example=REJECT bad ns} }"]
`, d.Addr))
	try := func(helo, sender, want string) {
		t.Helper()
		c := ts.dialFrom(t, "127.0.0.2")
		c.cmd("EHLO "+helo, "250-*")
		c.cmd("MAIL FROM:<"+sender+">", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<alice@our.test>", want)
	}
	try("client.example", "a@spam.example", "554 5.7.1 <a@spam.example>: Sender address rejected: bad mx")
	try("client.example", "a@named.example", "554 5.7.1 <a@named.example>: Sender address rejected: bad mx name")
	try("client.example", "a@sub.ns.example", "554 5.7.1 <a@sub.ns.example>: Sender address rejected: bad ns")
	try("helo.example", "a@fine.example", "554 5.7.1 <helo.example>: Helo command rejected: helo host blocked")
	try("client.example", "a@fine.example", "250 2.1.5 Ok")
	try("client.example", "a@okay.example", "250 2.1.5 Ok")
	ts.waitLog(t, "an OK answer is not allowed for a server check")
}
