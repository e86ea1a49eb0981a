package smtpd

import (
	"strings"
	"sync"
	"testing"
)

// smuggled is what an attacker hides behind a fake end of data.
// The real end of data (<CR><LF>.<CR><LF>) follows it.
const smuggled = "MAIL FROM:<ceo@our.test>\r\nRCPT TO:<alice@our.test>\r\nDATA\r\nSubject: spoofed\r\n\r\nsmuggled"

// TestSmuggling: whatever mix of bare LF, bare CR and dots a client sends,
// one DATA makes at most one message (smtpd_forbid_bare_newline =
// normalize, the default).
func TestSmuggling(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "")
	fakeEnds := []string{
		"\n.\n",
		"\n.\r\n",
		"\r\n.\n",
		"\r.\r\n",
		"\r\n.\r",
		"\r.\r",
		"\n.\r",
		"\r\n.\r\r\n",
		"\r\n\x00.\r\n",
		"\r\n .\r\n",
	}
	for _, fake := range fakeEnds {
		c := ts.dialFrom(t, "127.0.0.2")
		c.cmd("EHLO attacker.example", "250-*")
		c.cmd("MAIL FROM:<a@attacker.example>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<bob@our.test>", "250 2.1.5 Ok")
		c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
		c.send("Subject: innocent\r\n\r\nbody" + fake + smuggled + "\r\n.\r\n")
		c.expect("250 2.0.0 Ok: queued as *")
		// The next reply must be the one to QUIT: nothing smuggled ran.
		c.cmd("QUIT", "221 2.0.0 Bye")
	}
	msgs := ts.messages(t)
	if len(msgs) != len(fakeEnds) {
		t.Fatalf("%d messages queued for %d DATA commands", len(msgs), len(fakeEnds))
	}
	for _, m := range msgs {
		if m.Sender != "a@attacker.example" || len(m.Recipients) != 1 || m.Recipients[0].Addr != "bob@our.test" {
			t.Errorf("%s: envelope %s → %+v", m.ID, m.Sender, m.Recipients)
		}
		if b := body(t, m); !strings.HasSuffix(b, "\nsmuggled\n") {
			t.Errorf("%s: content %q does not run to the real end", m.ID, b)
		}
	}
	if strings.Contains(ts.logs.String(), "bare <LF>") {
		t.Error("normalize mode logged a bare LF rejection")
	}
}

// TestBareLFReject: "reject" refuses with 550, "yes" with 521, and the
// client is disconnected; nothing is queued.
func TestBareLFReject(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ mode, reply string }{
		{"reject", "550 5.5.2 mx.our.test Error: bare <LF> received"},
		{"yes", "521 5.5.2 mx.our.test Error: bare <LF> received"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, `smtpd_forbid_bare_newline = "`+tc.mode+`"`)
			c := ts.dialFrom(t, "127.0.0.2")
			c.cmd("EHLO x", "250-*")
			c.cmd("MAIL FROM:<a@attacker.example>", "250 2.1.0 Ok")
			c.cmd("RCPT TO:<bob@our.test>", "250 2.1.5 Ok")
			c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
			c.send("Subject: x\r\n\r\nbody\n.\n" + smuggled + "\r\n.\r\n")
			c.expect(tc.reply)
			if !c.closed() {
				t.Fatal("still connected")
			}
			if n := len(ts.messages(t)); n != 0 {
				t.Fatalf("%d messages queued", n)
			}
			// A bare LF in a command is refused the same way.
			c = ts.dialFrom(t, "127.0.0.2")
			c.send("EHLO x\n")
			c.expect(tc.reply)
			if !c.closed() {
				t.Fatal("still connected after a bare LF command")
			}
		})
	}
}

// TestBareLFExclusions: clients in smtpd_forbid_bare_newline_exclusions
// get the legacy behaviour, as with Postfix (they are trusted to send
// well-formed mail; the default exclusion is $mynetworks).
func TestBareLFExclusions(t *testing.T) {
	t.Parallel()
	ts := startServer(t, `smtpd_forbid_bare_newline_exclusions = ["127.0.0.1"]`)
	c := ts.dialFrom(t, "127.0.0.1")
	c.cmd("EHLO x", "250-*")
	c.cmd("MAIL FROM:<a@our.test>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<bob@our.test>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.send("Subject: unix tool\n\nbody\n.\n")
	c.expect("250 2.0.0 Ok: queued as *")
}

// TestLongLinesAndHugeHeader: a 10,000-character body line is kept whole
// (Postfix stores it in pieces and rejoins it), a 1 MB header is cut at
// header_size_limit, and meanwhile other clients are served.
func TestLongLinesAndHugeHeader(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "")
	long := strings.Repeat("x", 10000)
	var huge strings.Builder
	huge.WriteString("X-Huge: start")
	for huge.Len() < 1<<20 {
		huge.WriteString("\r\n\t" + strings.Repeat("h", 98))
	}
	huge.WriteString("\r\n")

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := ts.dialFrom(t, "127.0.0.2")
		c.cmd("EHLO big.example", "250-*")
		c.cmd("MAIL FROM:<big@remote.example>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<alice@our.test>", "250 2.1.5 Ok")
		c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
		for i := 0; i < 3; i++ { // the header arrives slowly, in pieces
			c.send(huge.String()[i*len(huge.String())/3 : (i+1)*len(huge.String())/3])
		}
		c.send("Subject: big\r\n\r\n" + long + "\r\n.." + long + "\r\nend\r\n.\r\n")
		c.expect("250 2.0.0 Ok: queued as *")
	}()
	// Other clients are served while the big one is being read.
	for i := 0; i < 5; i++ {
		c := ts.dialFrom(t, "127.0.0.3")
		c.cmd("EHLO small.example", "250-*")
		c.cmd("MAIL FROM:<small@remote.example>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<bob@our.test>", "250 2.1.5 Ok")
		c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
		c.send("Subject: small\r\n\r\nhi\r\n.\r\n")
		c.expect("250 2.0.0 Ok: queued as *")
		c.cmd("QUIT", "221 2.0.0 Bye")
	}
	wg.Wait()
	var big string
	for _, m := range ts.messages(t) {
		if m.Sender == "big@remote.example" {
			big = body(t, m)
		}
	}
	if big == "" {
		t.Fatal("the big message was not queued")
	}
	hdr, bodyText, _ := strings.Cut(big, "\n\n")
	start := strings.Index(hdr, "X-Huge:")
	end := strings.Index(hdr, "\nSubject: big")
	if start < 0 || end < 0 {
		t.Fatalf("headers lost: %q", hdr[:min(len(hdr), 300)])
	}
	if n := end - start; n > ts.p.HeaderSizeLimit || n < ts.p.HeaderSizeLimit-200 {
		t.Errorf("X-Huge kept %d bytes, want about header_size_limit (%d)", n, ts.p.HeaderSizeLimit)
	}
	if bodyText != long+"\n."+long+"\nend\n" {
		t.Errorf("body changed: %d bytes, want %d", len(bodyText), 2*len(long)+6)
	}
	ts.waitLog(t, "header x-huge exceeds header_size_limit (102400 bytes): the excess was dropped")
}

// TestLongCommandLine: a command line past line_length_limit is cut, the
// rest of it discarded, and a warning logged, as Postfix 3.7 does.
func TestLongCommandLine(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "")
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd(strings.Repeat("X", 10000), "500 5.5.2 Error: command not recognized")
	c.cmd("NOOP", "250 2.0.0 Ok")
	ts.waitLog(t, "warning: unknown[127.0.0.2]: request longer than 2048: XXXXXXXXXXXXXXXXXXXXXXXXXXXXXX...")
}
