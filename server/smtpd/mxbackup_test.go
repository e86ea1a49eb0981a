package smtpd

import (
	"fmt"
	"testing"

	"mailsrv/internal/testutil"
)

// TestPermitMXBackup: permit_mx_backup relays for a domain that lists
// this host as a backup MX (by name or by address), not for one where it
// is the primary or is not listed at all; a failed MX lookup defers
// instead of rejecting; permit_mx_backup_networks restricts the primary
// MX hosts it relays for.
func TestPermitMXBackup(t *testing.T) {
	t.Parallel()
	d := testutil.StartDNS(t, map[string][]string{
		"byname.example MX":        {"10 primary.example.", "20 mx.our.test."},
		"byaddr.example MX":        {"10 primary.example.", "20 backup.example."},
		"backup.example A":         {"127.0.0.1"},
		"primary.example A":        {"192.0.2.1"},
		"self.example MX":          {"10 mx.our.test.", "20 primary.example."},
		"equal.example MX":         {"10 mx.our.test.", "10 primary.example."},
		"notlisted.example MX":     {"10 primary.example."},
		"outside.example MX":       {"10 far.example.", "20 mx.our.test."},
		"far.example A":            {"198.51.100.1"},
		"halfmissing.example MX":   {"10 primary.example.", "20 broken.example."},
		"brokenprimary.example MX": {"10 broken.example.", "20 mx.our.test."},
	}, []string{"servfail.example", "broken.example"}, nil)
	conf := fmt.Sprintf(`
mailsrv_dns_servers = [%q]
smtpd_relay_restrictions = ["permit_mx_backup", "reject_unauth_destination"]
`, d.Addr)
	ts := startServer(t, conf)
	try := func(ts *testServer, rcpt, want string) {
		t.Helper()
		c := ts.dialFrom(t, "127.0.0.2")
		c.cmd("EHLO client.example", "250-*")
		c.cmd("MAIL FROM:<a@sender.example>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<"+rcpt+">", want)
		c.cmd("QUIT", "221 2.0.0 Bye")
	}
	try(ts, "x@byname.example", "250 2.1.5 Ok")
	try(ts, "x@byaddr.example", "250 2.1.5 Ok")
	try(ts, "x@outside.example", "250 2.1.5 Ok")
	try(ts, "x@relayed.test", "250 2.1.5 Ok")
	try(ts, "alice@our.test", "250 2.1.5 Ok")
	// Primary (or equal to it): the mail would loop.
	try(ts, "x@self.example", "554 5.7.1 <x@self.example>: Relay access denied")
	try(ts, "x@equal.example", "554 5.7.1 <x@equal.example>: Relay access denied")
	try(ts, "x@notlisted.example", "554 5.7.1 <x@notlisted.example>: Relay access denied")
	try(ts, "x@nxdomain.example", "554 5.7.1 <x@nxdomain.example>: Relay access denied")
	try(ts, "x@[192.0.2.1]", "554 5.7.1 <x@[192.0.2.1]>: Relay access denied")
	// Routing in the local part is never relayed for a stranger.
	try(ts, "x%elsewhere.example@byname.example", "554 5.7.1 <x%elsewhere.example@byname.example>: Relay access denied")
	// A lookup that failed defers.
	try(ts, "x@servfail.example", "450 4.4.4 <x@servfail.example>: Recipient address rejected: Unable to look up mail exchanger information: Host not found, try again")
	try(ts, "x@halfmissing.example", "450 4.4.4 <x@halfmissing.example>: Recipient address rejected: Unable to look up mail exchanger host broken.example: Host not found, try again")
	ts.waitLog(t, `support for restriction "permit_mx_backup" will be removed; instead, specify "relay_domains"`)
	ts.waitLog(t, "NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 450 4.4.4 <x@servfail.example>: Recipient address rejected: Unable to look up mail exchanger information: Host not found, try again; from=<a@sender.example> to=<x@servfail.example> proto=ESMTP helo=<client.example>")

	nets := startServer(t, conf+`permit_mx_backup_networks = ["192.0.2.0/24"]`+"\n")
	try(nets, "x@byname.example", "250 2.1.5 Ok")
	try(nets, "x@outside.example", "554 5.7.1 <x@outside.example>: Relay access denied")
	// A primary whose addresses cannot be had: the first reason,
	// finding out whether it is us, is the one given.
	try(nets, "x@brokenprimary.example", "450 4.4.4 <x@brokenprimary.example>: Recipient address rejected: Unable to look up mail exchanger host broken.example: Host not found, try again")
	named := startServer(t, conf+`permit_mx_backup_networks = ["far.example"]`+"\n")
	try(named, "x@outside.example", "250 2.1.5 Ok")
	try(named, "x@byname.example", "554 5.7.1 <x@byname.example>: Relay access denied")
}
