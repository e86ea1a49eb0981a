package smtpd

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

const ehloReply = `250-mx.our.test
250-PIPELINING
250-SIZE 10240000
250-VRFY
250-ENHANCEDSTATUSCODES
250-8BITMIME
250-DSN
250-SMTPUTF8
250 CHUNKING`

func TestGreetingAndEhlo(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "")
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO client.example", ehloReply)
	c.cmd("HELO client.example", "250 mx.our.test")
	c.cmd("QUIT", "221 2.0.0 Bye")
	ts.waitLog(t, "disconnect from unknown[127.0.0.2] helo=1 ehlo=1 quit=1 commands=3")
}

func TestEhloKeywordsFollowConfig(t *testing.T) {
	t.Parallel()
	ts := startServer(t, `
disable_vrfy_command = true
message_size_limit = 5000
smtpd_discard_ehlo_keywords = ["chunking", "dsn"]
`)
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO x", "250-mx.our.test\n250-PIPELINING\n250-SIZE 5000\n250-ENHANCEDSTATUSCODES\n250-8BITMIME\n250 SMTPUTF8")
	c.cmd("VRFY alice", "502 5.5.1 VRFY command is disabled")
}

// TestReplies checks the replies of Postfix 3.7 for the same input
// (recorded from a private Postfix instance with the same tables).
func TestReplies(t *testing.T) {
	t.Parallel()
	ts := startServer(t, `smtpd_hard_error_limit = 100`)
	c := ts.dialFrom(t, "127.0.0.2")
	steps := []struct{ cmd, want string }{
		{"HELO", "501 Syntax: HELO hostname"},
		{"EHLO", "501 Syntax: EHLO hostname"},
		{"RCPT TO:<alice@our.test>", "503 5.5.1 Error: need MAIL command"},
		{"DATA", "503 5.5.1 Error: need RCPT command"},
		{"EHLO client.example", "250-mx.our.test*"},
		{"MAIL FROM:<a@b.example> SIZE=99999999", "552 5.3.4 Message size exceeds fixed limit"},
		{"MAIL FROM:<a@b.example> FOO=bar", "555 5.5.4 Unsupported option: FOO=bar"},
		{"MAIL FROM:<a@b.example> BODY=XX", "555 5.5.4 Unsupported option: BODY=XX"},
		{"MAIL FROM:", "501 5.5.4 Syntax: MAIL FROM:<address>"},
		{"MAIL TO:<a@b>", "501 5.5.4 Syntax: MAIL FROM:<address>"},
		{"MAIL FROM:<bad address>", "501 5.1.7 Bad sender address syntax"},
		{"MAIL FROM:<a\x01b@x>", "501 5.1.7 Bad sender address syntax"},
		{"MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME", "250 2.1.0 Ok"},
		{"MAIL FROM:<a@b.example>", "503 5.5.1 Error: nested MAIL command"},
		{"RCPT TO:", "501 5.5.4 Syntax: RCPT TO:<address>"},
		{"RCPT TO:<>", "501 5.1.3 Bad recipient address syntax"},
		{"RCPT TO:<bad address>", "501 5.1.3 Bad recipient address syntax"},
		{"RCPT TO:<alice@our.test> NOTIFY=BAD", "501 5.5.4 Error: Bad NOTIFY parameter syntax"},
		{"RCPT TO:<alice@our.test> XYZ=1", "555 5.5.4 Unsupported option: XYZ=1"},
		{"RCPT TO:<x@remote.example>", "454 4.7.1 <x@remote.example>: Relay access denied"},
		{"RCPT TO:<nosuchuser@our.test>", "550 5.1.1 <nosuchuser@our.test>: Recipient address rejected: User unknown in local recipient table"},
		{"RCPT TO:<nobody@virt.test>", "550 5.1.1 <nobody@virt.test>: Recipient address rejected: User unknown in virtual mailbox table"},
		{"RCPT TO:<postmaster>", "250 2.1.5 Ok"},
		{"RCPT TO:<alice@our.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice+2Bx@our.test", "250 2.1.5 Ok"},
		{"RCPT TO:<carol@virt.test>", "250 2.1.5 Ok"},
		{"RCPT TO:<anyone@relayed.test>", "250 2.1.5 Ok"},
		{"RCPT TO:<bob>", "250 2.1.5 Ok"},
		{"DATA x", "501 5.5.4 Syntax: DATA"},
		{"VRFY", "501 5.5.4 Syntax: VRFY address [SMTPUTF8]"},
		{"VRFY alice", "252 2.0.0 alice"},
		{"VRFY <nosuch@our.test>", "550 5.1.1 <nosuch@our.test>: Recipient address rejected: User unknown in local recipient table"},
		{"EXPN alice", "500 5.5.2 Error: command not recognized"},
		{"HELP", "500 5.5.2 Error: command not recognized"},
		{"ETRN our.test", "502 5.5.1 Error: command not implemented"},
		{"STARTTLS", "502 5.5.1 Error: command not implemented"},
		{"AUTH PLAIN", "503 5.5.1 Error: authentication not enabled"},
		{"NOOP", "250 2.0.0 Ok"},
		{"RSET", "250 2.0.0 Ok"},
		{"QUIT", "221 2.0.0 Bye"},
	}
	for _, s := range steps {
		c.cmd(s.cmd, s.want)
	}
	ts.waitLog(t, "NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 454 4.7.1 <x@remote.example>: Relay access denied; from=<a@b.example> to=<x@remote.example> proto=ESMTP helo=<client.example>")
	ts.waitLog(t, "NOQUEUE: reject: MAIL from unknown[127.0.0.2]: 552 5.3.4 Message size exceeds fixed limit; from=<a@b.example> proto=ESMTP helo=<client.example>")
	ts.waitLog(t, "disconnect from unknown[127.0.0.2] helo=0/1 ehlo=1/2 starttls=0/1 auth=0/1 mail=1/9 rcpt=5/14 data=0/2 rset=1 noop=1 vrfy=1/3 etrn=0/1 quit=1 unknown=0/2 commands=11/39")
}

// TestRelayTricks: every relay trick (%-hack, bang paths, quoted local
// parts, source routes, literals) from a client
// outside mynetworks is refused, and the same addresses from inside relay.
func TestRelayTricks(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "")
	tricks := []struct{ rcpt, want string }{
		{"<v%evil.example@our.test>", "454 4.7.1 <v%evil.example@our.test>: Relay access denied"},
		{"<evil.example!v@our.test>", "454 4.7.1 <evil.example!v@our.test>: Relay access denied"},
		{`<"v@evil.example"@our.test>`, "454 4.7.1 <v@evil.example@our.test>: Relay access denied"},
		{`<"v%evil.example"@our.test>`, "454 4.7.1 <v%evil.example@our.test>: Relay access denied"},
		{"<@our.test:v@evil.example>", "454 4.7.1 <v@evil.example>: Relay access denied"},
		{"<@our.test,@mx.our.test:v@evil.example>", "454 4.7.1 <v@evil.example>: Relay access denied"},
		{"<v%evil.example@relayed.test>", "454 4.7.1 <v%evil.example@relayed.test>: Relay access denied"},
		{"<evil.example!v@relayed.test>", "454 4.7.1 <evil.example!v@relayed.test>: Relay access denied"},
		{"<v@evil.example.>", "454 4.7.1 <v@evil.example.>: Relay access denied"},
		{"<v@our.test..>", "501 5.1.3 Bad recipient address syntax"},
		{"<v@[192.0.2.1]>", "454 4.7.1 <v@[192.0.2.1]>: Relay access denied"},
		{"<v@[IPv6:2001:db8::1]>", "454 4.7.1 <v@[IPv6:2001:db8::1]>: Relay access denied"},
		{"<v@192.0.2.1>", "501 5.1.3 Bad recipient address syntax"},
		{"<v@>", "501 5.1.3 Bad recipient address syntax"},
		{"<-oQ@our.test>", "501 5.1.3 Bad recipient address syntax"},
		{"<v@evil.example@our.test>", "454 4.7.1 <v@evil.example@our.test>: Relay access denied"},
		{"<v@Evil.Example>", "454 4.7.1 <v@Evil.Example>: Relay access denied"},
		{"<v@our.test.evil.example>", "454 4.7.1 <v@our.test.evil.example>: Relay access denied"},
	}
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO outside.example", "250-*")
	c.cmd("MAIL FROM:<spammer@evil.example>", "250 2.1.0 Ok")
	for _, tr := range tricks {
		c.cmd("RCPT TO:"+tr.rcpt, tr.want)
	}
	// The local forms still work, and nothing was queued.
	c.cmd("RCPT TO:<alice@our.test.>", "250 2.1.5 Ok")
	c.cmd("RCPT TO:<alice@[127.0.0.1]>", "250 2.1.5 Ok")
	c.cmd("RSET", "250 2.0.0 Ok")

	// From inside mynetworks the same host may relay anywhere.
	in := ts.dialFrom(t, "127.0.0.1")
	in.cmd("EHLO inside.example", "250-*")
	in.cmd("MAIL FROM:<alice@our.test>", "250 2.1.0 Ok")
	in.cmd("RCPT TO:<v@evil.example>", "250 2.1.5 Ok")
	in.cmd("RCPT TO:<v%evil.example@our.test>", "250 2.1.5 Ok")
	in.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	in.send("Subject: relayed\r\n\r\nhello\r\n.\r\n")
	in.expect("250 2.0.0 Ok: queued as *")
	msgs := ts.messages(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued, want 1", len(msgs))
	}
}

// TestRelayRestrictions: reject_unauth_destination answers 554, and the
// start-up check refuses a configuration that would be an open relay.
func TestRelayRestrictions(t *testing.T) {
	t.Parallel()
	ts := startServer(t, `smtpd_relay_restrictions = ["permit_mynetworks", "reject_unauth_destination"]`)
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("HELO x", "250 mx.our.test")
	c.cmd("MAIL FROM:<>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<v@evil.example>", "554 5.7.1 <v@evil.example>: Relay access denied")
	ts.waitLog(t, "proto=SMTP helo=<x>")

	for _, bad := range []string{
		`smtpd_relay_restrictions = ["permit"]`,
		`smtpd_relay_restrictions = ["permit_mynetworks", "no_such_restriction"]`,
		`smtpd_relay_restrictions = ["check_client_access"]`,
	} {
		if _, err := buildServer(t, bad); err == nil {
			t.Errorf("%s: accepted, want an error", bad)
		}
	}
}

func TestAccessTables(t *testing.T) {
	t.Parallel()
	ts := startServer(t, `
smtpd_client_restrictions = ["check_client_access", "inline:{ {127.0.0.3=REJECT go away} }"]
smtpd_sender_restrictions = ["check_sender_access", "inline:{ spam.example=REJECT, {bad@our.test=450 4.7.9 try later}, <>=DUNNO }", "reject_non_fqdn_sender"]
smtpd_recipient_restrictions = ["check_recipient_access", "inline:{ {bob@=REJECT no mail for bob} }"]
`)
	c := ts.dialFrom(t, "127.0.0.3")
	c.cmd("HELO x", "250 mx.our.test")
	c.cmd("MAIL FROM:<a@b.example>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "554 5.7.1 <unknown[127.0.0.3]>: Client host rejected: go away")

	c = ts.dialFrom(t, "127.0.0.2")
	c.cmd("HELO x", "250 mx.our.test")
	c.cmd("MAIL FROM:<x@mail.spam.example>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "554 5.7.1 <x@mail.spam.example>: Sender address rejected: Access denied")
	c.cmd("RSET", "250 2.0.0 Ok")
	c.cmd("MAIL FROM:<bad@our.test>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "450 4.7.9 <bad@our.test>: Sender address rejected: try later")
	c.cmd("RSET", "250 2.0.0 Ok")
	c.cmd("MAIL FROM:<user>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "504 5.5.2 <user>: Sender address rejected: need fully-qualified address")
	c.cmd("RSET", "250 2.0.0 Ok")
	c.cmd("MAIL FROM:<>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "250 2.1.5 Ok")
	c.cmd("RCPT TO:<bob@our.test>", "554 5.7.1 <bob@our.test>: Recipient address rejected: no mail for bob")
}

func TestRecipientLimit(t *testing.T) {
	t.Parallel()
	ts := startServer(t, `
smtpd_recipient_limit = 3
smtpd_recipient_overshoot_limit = 2
smtpd_hard_error_limit = 4
`)
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO x", "250-*")
	c.cmd("MAIL FROM:<a@b.example>", "250 2.1.0 Ok")
	for i := 0; i < 3; i++ {
		c.cmd("RCPT TO:<alice@our.test>", "250 2.1.5 Ok")
	}
	// Over the limit: 452, and past the overshoot each one is an error
	// until the hard error limit ends the session.
	c.cmd("RCPT TO:<alice@our.test>", "452 4.5.3 Error: too many recipients")
	c.cmd("RCPT TO:<alice@our.test>", "452 4.5.3 Error: too many recipients")
	for i := 0; i < 4; i++ {
		c.cmd("RCPT TO:<alice@our.test>", "452 4.5.3 Error: too many recipients")
	}
	c.expect("421 4.7.0 mx.our.test Error: too many errors")
	if !c.closed() {
		t.Fatal("session still open after too many errors")
	}
	ts.waitLog(t, "too many errors after RCPT from unknown[127.0.0.2]")
}

func TestHardErrorLimit(t *testing.T) {
	t.Parallel()
	ts := startServer(t, `smtpd_hard_error_limit = 3`)
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("FOO", "500 5.5.2 Error: command not recognized")
	c.cmd("BAR", "500 5.5.2 Error: command not recognized")
	c.send("BAZ\r\n")
	c.expect("500 5.5.2 Error: command not recognized")
	c.expect("421 4.7.0 mx.our.test Error: too many errors")
	if !c.closed() {
		t.Fatal("still open")
	}
}

func TestSoftErrorLimitSlowsReplies(t *testing.T) {
	t.Parallel()
	ts := startServer(t, `
smtpd_soft_error_limit = 1
smtpd_error_sleep_time = "1s"
`)
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("FOO", "500 5.5.2 Error: command not recognized")
	start := time.Now()
	c.cmd("FOO", "500 5.5.2 Error: command not recognized")
	// Not a speed assertion: the delay is the feature under test.
	if d := time.Since(start); d < time.Second {
		t.Fatalf("second error answered after %v, want the 1s error sleep", d)
	}
}

func TestMessageQueued(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "")
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO client.example", "250-*")
	c.cmd("MAIL FROM:<sender@remote.example> BODY=8BITMIME RET=HDRS ENVID=abc+2Bd", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice@our.test", "250 2.1.5 Ok")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.send("Subject: hi\r\nReturn-Path: <forged@x>\r\n\r\nline 1\r\n..stuffed\r\n.\r\n")
	got := c.expect("250 2.0.0 Ok: queued as *")
	id := strings.TrimPrefix(got, "250 2.0.0 Ok: queued as ")
	c.cmd("QUIT", "221 2.0.0 Bye")
	msgs := ts.messages(t)
	if len(msgs) != 1 || msgs[0].ID != id {
		t.Fatalf("queue holds %d messages, want %s", len(msgs), id)
	}
	m := msgs[0]
	if m.Sender != "sender@remote.example" || len(m.Recipients) != 1 || m.Recipients[0].Addr != "alice@our.test" {
		t.Fatalf("envelope %q %+v", m.Sender, m.Recipients)
	}
	r := m.Recipients[0]
	if r.ORCPT != "rfc822;alice@our.test" || r.Notify != 2|4 {
		t.Errorf("DSN recipient fields %+v", r)
	}
	for k, v := range map[string]string{"client_address": "127.0.0.2", "helo_name": "client.example", "protocol_name": "ESMTP", "body_type": "8BITMIME", "ret_flags": "HDRS", "envelope_id": "abc+d", "rewrite_context": "remote"} {
		if m.Attr(k) != v {
			t.Errorf("attribute %s = %q, want %q", k, m.Attr(k), v)
		}
	}
	b := body(t, m)
	wantStart := "Received: from client.example (unknown [127.0.0.2])\n\tby mx.our.test (mailsrv) with ESMTP id " + id + "\n\tfor <alice@our.test>; "
	if !strings.HasPrefix(b, wantStart) {
		t.Errorf("content starts %q, want %q", b[:min(len(b), 200)], wantStart)
	}
	if strings.Contains(b, "Return-Path") || !strings.HasSuffix(b, "Subject: hi\n\nline 1\n.stuffed\n") {
		t.Errorf("content %q", b)
	}
	ts.waitLog(t, id+": client=unknown[127.0.0.2]")
	ts.waitLog(t, "disconnect from unknown[127.0.0.2] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5")
}

// TestGoSMTPClient sends through go-smtp's client, pipelining off, the
// way a typical Go program does.
func TestGoSMTPClient(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "")
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	conn, err := d.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := gosmtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("gotest.example"); err != nil {
		t.Fatal(err)
	}
	if ok, size := c.Extension("SIZE"); !ok || size != "10240000" {
		t.Errorf("SIZE extension %v %q", ok, size)
	}
	if err := c.SendMail("me@remote.example", []string{"alice@our.test", "bob@our.test"}, strings.NewReader("Subject: go\r\n\r\nfrom go-smtp\r\n")); err != nil {
		t.Fatal(err)
	}
	err = c.SendMail("me@remote.example", []string{"x@elsewhere.example"}, strings.NewReader("x\r\n"))
	var se *gosmtp.SMTPError
	if !asSMTPError(err, &se) || se.Code != 454 || se.EnhancedCode != (gosmtp.EnhancedCode{4, 7, 1}) || se.Message != "<x@elsewhere.example>: Relay access denied" {
		t.Fatalf("relay attempt: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	msgs := ts.messages(t)
	if len(msgs) != 1 || len(msgs[0].Recipients) != 2 {
		t.Fatalf("queued %d messages", len(msgs))
	}
	if b := body(t, msgs[0]); !strings.Contains(b, ";\n\t") || !strings.HasSuffix(b, "\nfrom go-smtp\n") {
		t.Errorf("content %q", b)
	}
}

func TestBDAT(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "")
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO x", "250-*")
	c.send("BDAT 3\r\nabc")
	c.expect("503 5.5.1 Error: need RCPT command")
	c.cmd("MAIL FROM:<s@remote.example>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "250 2.1.5 Ok")
	c.send("BDAT 14\r\nSubject: x\r\n\r\n")
	c.expect("250 2.0.0 Ok: 14 bytes")
	// A CRLF split across chunks, a bare LF (normalized) and a lone CR.
	c.send("BDAT 6\r\nab\rcd\r")
	c.expect("250 2.0.0 Ok: 20 bytes")
	c.send("BDAT 5 LAST\r\n\nef\ng")
	got := c.expect("250 2.0.0 Ok: 25 bytes queued as *")
	msgs := ts.messages(t)
	if len(msgs) != 1 || !strings.HasSuffix(got, msgs[0].ID) {
		t.Fatalf("queued %d", len(msgs))
	}
	// The lone CR becomes a space in cleanup (cleanup_replace_stray_cr_lf).
	if b := body(t, msgs[0]); !strings.HasSuffix(b, "Subject: x\n\nab cd\nef\ng") {
		t.Errorf("content %q", b)
	}
	c.send("BDAT x\r\n")
	c.expect("521 5.5.4 Syntax: BDAT count [LAST]")
	if !c.closed() {
		t.Fatal("open after a bad BDAT")
	}
}

func TestSizeLimit(t *testing.T) {
	t.Parallel()
	ts := startServer(t, `message_size_limit = 2000`)
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO x", "250-*")
	c.cmd("MAIL FROM:<s@remote.example> SIZE=2001", "552 5.3.4 Message size exceeds fixed limit")
	c.cmd("MAIL FROM:<s@remote.example> SIZE=1000", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.send("Subject: big\r\n\r\n" + strings.Repeat("0123456789012345678901234567890123456789\r\n", 100) + ".\r\n")
	c.expect("552 5.3.4 Error: message file too big")
	// The session goes on, and the next message fits.
	c.cmd("MAIL FROM:<s@remote.example>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.send("Subject: small\r\n\r\nok\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued as *")
	if n := len(ts.messages(t)); n != 1 {
		t.Fatalf("%d messages queued, want 1", n)
	}
	// BDAT far past the limit: refused without reading on.
	c.cmd("MAIL FROM:<s@remote.example>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "250 2.1.5 Ok")
	c.send("BDAT 5000 LAST\r\n")
	c.expect("552 5.3.4 Error: message file too big")
	if !c.closed() {
		t.Fatal("open after an oversized BDAT")
	}
}

func TestHopCount(t *testing.T) {
	t.Parallel()
	ts := startServer(t, `hopcount_limit = 3`)
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO x", "250-*")
	c.cmd("MAIL FROM:<s@remote.example>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.send(strings.Repeat("Received: from a by b; Sat, 21 Nov 2026 10:00:00 +0000\r\n", 3) + "Subject: loop\r\n\r\nx\r\n.\r\n")
	c.expect("554 5.4.0 Error: too many hops")
	if n := len(ts.messages(t)); n != 0 {
		t.Fatalf("%d messages queued", n)
	}
}

func TestConnectionCountLimit(t *testing.T) {
	t.Parallel()
	ts := startServer(t, `smtpd_client_connection_count_limit = 2`)
	a := ts.dialFrom(t, "127.0.0.2")
	b := ts.dialFrom(t, "127.0.0.2")
	d := ts.dialRaw(t, "127.0.0.2")
	d.expect("421 4.7.0 mx.our.test Error: too many connections from 127.0.0.2")
	// Another client is not affected.
	ts.dialFrom(t, "127.0.0.3").cmd("QUIT", "221 2.0.0 Bye")
	ts.waitLog(t, "warning: Connection concurrency limit exceeded: 3 from unknown[127.0.0.2] for service smtp")
	a.cmd("QUIT", "221 2.0.0 Bye")
	b.cmd("QUIT", "221 2.0.0 Bye")
}

func TestPipelining(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "")
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO x", "250-*")
	// MAIL, RCPT and RCPT may be pipelined; the replies come together.
	c.send("MAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@our.test>\r\nRCPT TO:<x@evil.example>\r\nRCPT TO:<bob@our.test>\r\n")
	c.expect("250 2.1.0 Ok")
	c.expect("250 2.1.5 Ok")
	c.expect("454 4.7.1 <x@evil.example>: Relay access denied")
	c.expect("250 2.1.5 Ok")
	// DATA must end a group: anything sent behind it is a protocol
	// violation (smtpd_forbid_unauth_pipelining).
	c.send("DATA\r\nSubject: smuggled\r\n")
	c.expect("554 5.5.0 Error: SMTP protocol synchronization")
	if !c.closed() {
		t.Fatal("open after pipelining past DATA")
	}
	ts.waitLog(t, "improper command pipelining after DATA from unknown[127.0.0.2]")
}

func TestTimeouts(t *testing.T) {
	t.Parallel()
	ts := startServer(t, `smtpd_timeout = "1s"`)
	// An idle client.
	c := ts.dialFrom(t, "127.0.0.2")
	c.expect("421 4.4.2 mx.our.test Error: timeout exceeded")
	ts.waitLog(t, "timeout after CONNECT from unknown[127.0.0.2]")

	// A client that trickles its message: each read waits at most
	// smtpd_timeout, so the session ends although bytes keep coming
	// more slowly than that.
	c = ts.dialFrom(t, "127.0.0.3")
	c.cmd("EHLO x", "250-*")
	c.cmd("MAIL FROM:<s@remote.example>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.send("Subject: slow\r\n\r\npart")
	time.Sleep(1500 * time.Millisecond) // longer than smtpd_timeout, on purpose
	_, _ = c.c.Write([]byte("more\r\n"))
	c.expect("421 4.4.2 mx.our.test Error: timeout exceeded")
	ts.waitLog(t, "timeout after DATA (15 bytes) from unknown[127.0.0.3]")
	if n := len(ts.messages(t)); n != 0 {
		t.Fatalf("%d messages queued from a timed-out DATA", n)
	}
}

func asSMTPError(err error, target **gosmtp.SMTPError) bool {
	return errors.As(err, target)
}

// TestWarnIfReject: warn_if_reject turns the next restriction's reject
// into a log line, and only that one.
func TestWarnIfReject(t *testing.T) {
	t.Parallel()
	ts := startServer(t, `smtpd_recipient_restrictions = ["warn_if_reject", "reject_non_fqdn_recipient", "check_recipient_access", "inline:{ {bob@=REJECT no} }"]`)
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("HELO x", "250 mx.our.test")
	c.cmd("MAIL FROM:<a@remote.example>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice>", "250 2.1.5 Ok")
	c.cmd("RCPT TO:<bob@our.test>", "554 5.7.1 <bob@our.test>: Recipient address rejected: no")
	ts.waitLog(t, "NOQUEUE: reject_warning: RCPT from unknown[127.0.0.2]: 504 5.5.2 <alice>: Recipient address rejected: need fully-qualified address; from=<a@remote.example> to=<alice> proto=SMTP helo=<x>")
}

// TestPerRequestDeadline: with smtpd_per_request_deadline, smtpd_timeout
// bounds a whole command line and a whole message body (plus a second
// per smtpd_min_data_rate bytes): a client trickling one byte at a time,
// each well within smtpd_timeout, is cut off with Postfix's 421. Without
// the setting the same trickle completes.
func TestPerRequestDeadline(t *testing.T) {
	t.Parallel()
	trickle := func(c *client, s string) bool {
		for i := 0; i < len(s); i++ {
			if _, err := c.c.Write([]byte{s[i]}); err != nil {
				return false
			}
			time.Sleep(100 * time.Millisecond)
		}
		return true
	}
	on := startServer(t, "smtpd_timeout = \"2s\"\nsmtpd_per_request_deadline = true\nsmtpd_min_data_rate = 500")
	// A command line: 50 bytes at 10 a second take 5 s.
	c := on.dialFrom(t, "127.0.0.2")
	trickle(c, "EHLO a-very-long-name-sent-one-byte-at-a-time.test\r\n")
	c.expect("421 4.4.2 mx.our.test Error: timeout exceeded")
	on.waitLog(t, "timeout after CONNECT from unknown[127.0.0.2]")

	// A message body: the first byte's grace is 2 ms, not 100.
	c = on.dialFrom(t, "127.0.0.3")
	c.cmd("EHLO x", "250-*")
	c.cmd("MAIL FROM:<s@remote.example>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	trickle(c, "Subject: slow\r\n\r\nthis body takes five seconds at ten bytes a second\r\n.\r\n")
	c.expect("421 4.4.2 mx.our.test Error: timeout exceeded")
	on.waitLog(t, "timeout after DATA (")
	if n := len(on.messages(t)); n != 0 {
		t.Fatalf("%d messages queued from a timed-out DATA", n)
	}

	// A fast body is not cut: 64 KiB in one go.
	c = on.dialFrom(t, "127.0.0.4")
	c.cmd("EHLO x", "250-*")
	c.cmd("MAIL FROM:<s@remote.example>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.send("Subject: fast\r\n\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n", 1024) + ".\r\n")
	c.expect("250 2.0.0 Ok: queued as *")

	// Without the setting, each read has its own smtpd_timeout.
	off := startServer(t, `smtpd_timeout = "2s"`)
	c = off.dialFrom(t, "127.0.0.2")
	trickle(c, "EHLO a-very-long-name-sent-one-byte-at-a-time.test\r\n")
	c.expect("250-mx.our.test*")
}

// TestPostfixAnswers: VRFY of a remote address from an outside client
// is refused as relaying, as RCPT would be; BDAT 0 without LAST gets
// Postfix's 551; and a complete command is answered at once although the
// start of the next one came in the same packet.
func TestPostfixAnswers(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "")
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO client.example", "250-mx.our.test*")
	c.cmd("VRFY <x@other.example>", "454 4.7.1 <x@other.example>: Relay access denied")
	c.cmd("VRFY alice@our.test", "252 2.0.0 alice@our.test")
	c.cmd("MAIL FROM:<a@b.example>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "250 2.1.5 Ok")
	c.cmd("BDAT 0", "551 5.7.1 Null BDAT request")
	c.send("BDAT 5 LAST\r\nx\r\n\r\n")
	c.expect("250 2.0.0 Ok: 5 bytes queued as *")
	// A partial line behind a complete one: the reply must not wait
	// for the rest (smtpd_timeout is 300 s here).
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	c.send("FOO\r\nNO")
	c.expect("500 5.5.2 Error: command not recognized")
	c.send("OP\r\n")
	c.expect("250 2.0.0 Ok")
	ts.waitLog(t, "NOQUEUE: reject: VRFY from unknown[127.0.0.2]: 454 4.7.1 <x@other.example>: Relay access denied; to=<x@other.example> proto=ESMTP helo=<client.example>")
}
