package discard

import (
	"testing"

	"mailsrv/outcome"
	"mailsrv/queue/qmgr"
	"mailsrv/queue/qmgr/qmgrtest"
)

// TestAgents: discard(8) delivers with the nexthop as its reason, error(8)
// bounces with the nexthop's code and text (5.0.0 for a bare text), and
// retry defers whatever the code.
func TestAgents(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		agent   qmgr.Agent
		nexthop string
		state   outcome.State
		dsn     string
		text    string
	}{
		{Discard, "", outcome.Sent, "2.0.0", "discarded"},
		{Discard, " spam trap ", outcome.Sent, "2.0.0", "spam trap"},
		{Error, "5.1.1 mailbox gone", outcome.Bounced, "5.1.1", "mailbox gone"},
		{Error, "closed for renovation", outcome.Bounced, "5.0.0", "closed for renovation"},
		{Error, "4.2.1 full today", outcome.Deferred, "4.2.1", "full today"},
		{Retry, "5.1.1 mailbox gone", outcome.Deferred, "5.1.1", "mailbox gone"},
		{Retry, "", outcome.Deferred, "4.0.0", "unknown error"},
	} {
		d, rep, _ := qmgrtest.Delivery(t, qmgr.Request{Nexthop: c.nexthop}, "Subject: x\n\nx\n", "a@example.test", "b@example.test")
		c.agent.Deliver(d)
		for _, a := range []string{"a@example.test", "b@example.test"} {
			r := qmgrtest.Expect(t, rep, a, c.state, c.dsn)
			if r.Status.Text != c.text || r.Status.Relay != "none" {
				t.Errorf("%q: <%s> reason %q relay %q, want %q", c.nexthop, a, r.Status.Text, r.Status.Relay, c.text)
			}
		}
	}
}
