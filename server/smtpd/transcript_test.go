package smtpd

import (
	"strings"
	"testing"
)

// TestTranscriptToPostmaster: with protocol and policy in notify_classes,
// a session that met those problems ends with its transcript mailed to
// error_notice_recipient from the double-bounce sender (never an AUTH
// credential in it); a clean session, and a session whose problems the
// postmaster did not ask for, send nothing.
func TestTranscriptToPostmaster(t *testing.T) {
	t.Parallel()
	ts := startServer(t, `notify_classes = ["protocol", "policy"]`)

	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO client.test", "250-mx.our.test*")
	c.cmd("FOO bar", "500 5.5.2 Error: command not recognized")
	c.cmd("AUTH PLAIN AGFsaWNlAHMzY3JldA==", "503 5.5.1 Error: authentication not enabled")
	c.cmd("MAIL FROM:<someone@remote.test>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<x@elsewhere.test>", "454 4.7.1 <x@elsewhere.test>: Relay access denied")
	c.cmd("QUIT", "221 2.0.0 Bye")
	ts.waitLog(t, "disconnect from unknown[127.0.0.2]")

	clean := ts.dialFrom(t, "127.0.0.2")
	clean.cmd("EHLO client.test", "250-mx.our.test*")
	clean.cmd("QUIT", "221 2.0.0 Bye")

	msgs := ts.messages(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages queued, want the one transcript", len(msgs))
	}
	f := msgs[0]
	if f.Sender != "double-bounce@our.test" || len(f.Recipients) != 1 || f.Recipients[0].Addr != "postmaster@our.test" {
		t.Errorf("envelope: from <%s> to %+v", f.Sender, f.Recipients)
	}
	b := body(t, f)
	for _, want := range []string{
		"Subject: mailsrv SMTP server: errors from unknown[127.0.0.2]\n",
		"Transcript of session follows.\n\n Out: 220 mx.our.test ESMTP mailsrv\n In:  EHLO client.test\n Out: 250-mx.our.test\n",
		" In:  FOO bar\n Out: 500 5.5.2 Error: command not recognized\n",
		" In:  AUTH PLAIN\n Out: 503 5.5.1 Error: authentication not enabled\n",
		" In:  RCPT TO:<x@elsewhere.test>\n Out: 454 4.7.1 <x@elsewhere.test>: Relay access denied\n",
		" In:  QUIT\n Out: 221 2.0.0 Bye\n\nFor other details, see the local mail logfile\n",
	} {
		if !strings.Contains(b, want) {
			t.Errorf("transcript lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(b, "AGFsaWNl") {
		t.Errorf("the AUTH credential is in the transcript:\n%s", b)
	}

	// The default notify_classes (resource, software) do not cover a
	// protocol error.
	quiet := startServer(t, "")
	q := quiet.dialFrom(t, "127.0.0.2")
	q.cmd("FOO", "500 5.5.2 Error: command not recognized")
	q.cmd("QUIT", "221 2.0.0 Bye")
	quiet.waitLog(t, "disconnect from")
	if n := len(quiet.messages(t)); n != 0 {
		t.Errorf("%d messages queued for a protocol error without notify_classes protocol", n)
	}
}

func TestWriteWrapped(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	writeWrapped(&b, "Out: 554 5.7.1 <"+strings.Repeat("a", 40)+"@example.test>: Recipient address rejected: Access denied", 78, 4)
	want := " Out: 554 5.7.1 <" + strings.Repeat("a", 40) + "@example.test>:\n     Recipient address rejected: Access denied\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	if got := safeText("a\x00b\xffc"); got != "a?b?c" {
		t.Errorf("safeText: %q", got)
	}
}
