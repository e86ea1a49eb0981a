package smtpd

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"mailsrv/internal/testutil"
)

// TestDNSLists: reject_rbl_client with a reply filter, permit_dnswl_client,
// reject_rhsbl_sender, rbl_reply_maps, and lookups that fail (SERVFAIL,
// no answer): a listed client or sender gets Postfix's reply and log
// line, an answer outside the filter does not count, an allowlisted
// client passes the block list, a failed lookup gives the benefit of the
// doubt with a warning, and an allow list never opens relaying.
func TestDNSLists(t *testing.T) {
	t.Parallel()
	d := testutil.StartDNS(t, map[string][]string{
		"2.0.0.127.zen.example A":   {"127.0.0.2"},
		"2.0.0.127.zen.example TXT": {"Listed by zen, see https://zen.example/?127.0.0.2"},
		"3.0.0.127.zen.example A":   {"127.0.0.1"}, // outside the filter
		"5.0.0.127.zen.example A":   {"127.0.0.4"},
		"5.0.0.127.wl.example A":    {"127.0.2.1"},
		"4.0.0.127.bl.example A":    {"127.0.0.4"},
		"4.0.0.127.bl.example TXT":  {"bad neighbourhood"},
		"3.0.0.127.bl.example A":    {"127.0.0.2"}, // outside bl's filter
		"bad.example.dbl.example A": {"127.0.1.2"},
	}, []string{"6.0.0.127.zen.example"}, []string{"7.0.0.127.zen.example"})
	replies := filepath.Join(t.TempDir(), "rbl_reply")
	if err := os.WriteFile(replies, []byte("bl.example $rbl_code 5.7.1 Blocked by $rbl_domain: $rbl_reason (client $client_address)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, fmt.Sprintf(`
mailsrv_dns_servers = [%q]
smtpd_client_restrictions = ["permit_dnswl_client", "wl.example", "reject_rbl_client", "zen.example=127.0.0.[2..11]", "reject_rbl_client", "bl.example=127.0.0.4"]
smtpd_sender_restrictions = ["reject_rhsbl_sender", "dbl.example"]
smtpd_recipient_restrictions = ["permit_dnswl_client", "wl.example", "reject_unauth_destination"]
rbl_reply_maps = ["texthash:%s"]
`, d.Addr, replies))
	try := func(src, sender, rcpt, want string) {
		t.Helper()
		c := ts.dialFrom(t, src)
		c.cmd("EHLO client.example", "250-*")
		c.cmd("MAIL FROM:<"+sender+">", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<"+rcpt+">", want)
		c.cmd("QUIT", "221 2.0.0 Bye")
	}
	try("127.0.0.2", "a@good.example", "alice@our.test", "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.example; Listed by zen, see https://zen.example/?127.0.0.2")
	ts.waitLog(t, "NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.example; Listed by zen, see https://zen.example/?127.0.0.2; from=<a@good.example> to=<alice@our.test> proto=ESMTP helo=<client.example>")
	// 127.0.0.3: zen answers 127.0.0.1 and bl 127.0.0.2, both outside
	// their filters; the sender's domain is on dbl.
	try("127.0.0.3", "a@good.example", "alice@our.test", "250 2.1.5 Ok")
	try("127.0.0.3", "spam@bad.example", "alice@our.test", "554 5.7.1 Service unavailable; Sender address [spam@bad.example] blocked using dbl.example")
	try("127.0.0.4", "a@good.example", "alice@our.test", "554 5.7.1 Blocked by bl.example: bad neighbourhood (client 127.0.0.4)")
	// On wl.example: zen's listing does not matter for our own
	// recipients; for a relay attempt the allow list does not count (at
	// RCPT it permits only what we accept anyway, as in Postfix), so
	// zen's listing does.
	try("127.0.0.5", "a@good.example", "alice@our.test", "250 2.1.5 Ok")
	try("127.0.0.5", "a@good.example", "x@elsewhere.example", "554 5.7.1 Service unavailable; Client host [127.0.0.5] blocked using zen.example")
	try("127.0.0.6", "a@good.example", "alice@our.test", "250 2.1.5 Ok")
	ts.waitLog(t, "warning: 6.0.0.127.zen.example: RBL lookup error")
	start := time.Now()
	try("127.0.0.7", "a@good.example", "alice@our.test", "250 2.1.5 Ok")
	ts.waitLog(t, "warning: 7.0.0.127.zen.example: RBL lookup error")
	t.Logf("a DNS server that does not answer cost %v", time.Since(start).Round(time.Millisecond))
}

func TestParseDNSXL(t *testing.T) {
	for spec, want := range map[string]string{
		"zen.example": "", "zen.example=127.0.0.2": "", "zen.example=127.0.0.[2..11]": "", "z.example=127.0.[0;1].[2..4;10]": "",
		"zen.example=127.0.0": "bad", "=127.0.0.2": "bad", "zen.example=127.0.0.[2..300]": "bad", "zen.example=127.0.0.[2": "bad",
		"[1.2.3.4]": "bad", "zen.example=127.0.0.2.": "bad",
	} {
		l, err := parseDNSXL(spec)
		if (err != nil) != (want == "bad") {
			t.Errorf("parseDNSXL(%q) = %v", spec, err)
		}
		_ = l
	}
	l, _ := parseDNSXL("z.example=127.0.[0;1].[2..4;10]")
	for addr, want := range map[string]bool{"127.0.0.2": true, "127.0.1.10": true, "127.0.2.2": false, "127.0.0.5": false} {
		if got := l.matches(mustAddr(addr)); got != want {
			t.Errorf("%s matches %v, want %v", addr, got, want)
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// FuzzDNSXL: a DNS list written in the configuration, and a reply
// template with what a DNS list's TXT record says: parsing, matching and
// expanding never panic, and a parsed list has a domain.
func FuzzDNSXL(f *testing.F) {
	f.Add("zen.example=127.0.0.[2..11;20]", "$rbl_code Service unavailable; $rbl_class [$rbl_what] blocked using $rbl_domain${rbl_reason?; $rbl_reason}", "listed")
	f.Add("b.example=1.2.3.4", "${rbl_reason:none}${", "$rbl_code")
	f.Fuzz(func(t *testing.T, spec, template, txt string) {
		if l, err := parseDNSXL(spec); err == nil {
			if l.domain == "" {
				t.Fatalf("%q: no domain", spec)
			}
			l.matches(netip.MustParseAddr("127.0.0.2"))
		}
		expandMacros(template, map[string]string{"rbl_code": "554", "rbl_reason": txt})
	})
}
