package smtpd

import (
	"strings"
	"testing"

	"mailsrv/queue"
)

// TestAccessActions: access table results beyond accept and refuse, as
// Postfix's access(5) has them: HOLD puts the message in hold/, DISCARD
// accepts and throws it away, REDIRECT replaces the recipients, BCC adds
// one, PREPEND adds a header; each is logged as Postfix does.
func TestAccessActions(t *testing.T) {
	t.Parallel()
	ts := startServer(t, `
smtpd_recipient_restrictions = ["check_recipient_access", "inline:{ {hold@relayed.test=HOLD}, {discard@relayed.test=DISCARD spam trap}, {redir@relayed.test=REDIRECT other@relayed.test}, {bcc@relayed.test=BCC copy@relayed.test}, {prepend@relayed.test=PREPEND X-Seen: yes}, {bad@relayed.test=REDIRECT nowhere} }", "permit_mynetworks", "reject_unauth_destination"]
`)
	send := func(rcpt string) string {
		t.Helper()
		c := ts.dialFrom(t, "127.0.0.2")
		c.cmd("EHLO client.example", "250-*")
		c.cmd("MAIL FROM:<s@remote.example>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<"+rcpt+">", "250 2.1.5 Ok")
		c.cmd("DATA", "354 *")
		r := c.cmd("Subject: "+rcpt+"\r\n\r\nx\r\n.", "250 2.0.0 Ok: queued as *")
		c.cmd("QUIT", "221 2.0.0 Bye")
		return strings.TrimPrefix(r, "250 2.0.0 Ok: queued as ")
	}
	held := send("hold@relayed.test")
	send("discard@relayed.test")
	send("redir@relayed.test")
	send("bcc@relayed.test")
	send("prepend@relayed.test")
	send("bad@relayed.test")

	if f, err := ts.q.Open(queue.Hold, held, false); err != nil {
		t.Errorf("the held message is not in hold/: %v", err)
	} else {
		f.Close()
	}
	got := map[string]string{} // subject → recipients
	var prepended string
	for _, f := range ts.messages(t) {
		var rcpts []string
		for _, r := range f.Recipients {
			rcpts = append(rcpts, r.Addr)
		}
		b := body(t, f)
		subject := b[strings.Index(b, "Subject: ")+9:]
		subject = subject[:strings.IndexByte(subject, '\n')]
		got[subject] = strings.Join(rcpts, ",")
		if subject == "prepend@relayed.test" {
			prepended = b
		}
	}
	for subject, want := range map[string]string{"redir@relayed.test": "other@relayed.test", "bcc@relayed.test": "bcc@relayed.test,copy@relayed.test",
		"prepend@relayed.test": "prepend@relayed.test", "bad@relayed.test": "bad@relayed.test"} {
		if got[subject] != want {
			t.Errorf("%s: recipients %q, want %q", subject, got[subject], want)
		}
	}
	if _, ok := got["discard@relayed.test"]; ok || len(got) != 4 {
		t.Errorf("queued in incoming: %v (the discarded and the held message must not be)", got)
	}
	if !strings.HasPrefix(prepended, "X-Seen: yes\nReceived: ") {
		t.Errorf("PREPEND: %q", prepended)
	}
	for _, want := range []string{
		"NOQUEUE: hold: RCPT from unknown[127.0.0.2]: <hold@relayed.test>: Recipient address triggers HOLD action; from=<s@remote.example> to=<hold@relayed.test> proto=ESMTP helo=<client.example>",
		"NOQUEUE: discard: RCPT from unknown[127.0.0.2]: <discard@relayed.test>: Recipient address spam trap; from=<s@remote.example> to=<discard@relayed.test>",
		"NOQUEUE: redirect: RCPT from unknown[127.0.0.2]: <redir@relayed.test>: Recipient address triggers REDIRECT other@relayed.test;",
		"NOQUEUE: bcc: RCPT from unknown[127.0.0.2]: <bcc@relayed.test>: Recipient address triggers BCC copy@relayed.test;",
		`requires user@domain target`,
	} {
		ts.waitLog(t, want)
	}
}
