package smtpd

import (
	"testing"

	"mailsrv/rewrite/cleanup"
)

// panicQueue stands for a bug met while queueing one sender's mail.
type panicQueue struct{ Queue }

func (q panicQueue) Open(env cleanup.Envelope) (Message, error) {
	if env.Sender == "bug@example.test" {
		panic("a bug")
	}
	return q.Queue.Open(env)
}

// A panic in one session ends that session with a 421 and a log line; the
// daemon, its other sessions and later ones go on.
func TestPanicEndsOnlyItsSession(t *testing.T) {
	t.Parallel()
	b, err := buildServer(t, "")
	if err != nil {
		t.Fatal(err)
	}
	b.srv.queue = panicQueue{b.srv.queue}
	ts := b.serve(t)
	other := ts.dialFrom(t, "127.0.0.1")
	other.cmd("EHLO other.test", "250-*")
	c := ts.dialFrom(t, "127.0.0.1")
	c.cmd("EHLO client.test", "250-*")
	c.cmd("MAIL FROM:<bug@example.test>", "250 *")
	c.cmd("RCPT TO:<alice@our.test>", "250 *")
	c.cmd("DATA", "421 4.3.0 mx.our.test Error: internal error")
	if !c.closed() {
		t.Error("the session goes on after a panic")
	}
	ts.waitLog(t, "warning: panic in the session from unknown[127.0.0.1] after DATA: a bug")
	for _, cl := range []*client{other, ts.dialFrom(t, "127.0.0.1")} {
		cl.cmd("MAIL FROM:<ok@example.test>", "250 *")
		cl.cmd("RCPT TO:<alice@our.test>", "250 *")
		cl.cmd("DATA", "354 *")
		cl.cmd("Subject: x\r\n\r\nbody\r\n.", "250 2.0.0 Ok: queued as *")
	}
}
