package smtp

import (
	"fmt"
	"net"

	"mailsrv/config"
	"mailsrv/outcome"
	"mailsrv/queue/qmgr"
)

// LMTP delivers over an open connection to an LMTP server, for lmtp(8):
// the greeting, LHLO, then the transaction the smtp client runs (the
// same MAIL and RCPT parameters, pipelined, SMTPUTF8 and SIZE checked),
// a reply per accepted recipient after the message, and QUIT. host names
// the server in reasons and reports (relay= is relay). When the server
// cannot be talked to, what is left is deferred for the destination.
func LMTP(d *qmgr.Delivery, conn net.Conn, host, relay string, p *config.Params) {
	s := newSession(conn, host, relay, relay, p, true)
	defer s.close()
	greet, err := s.reply(s.t.helo)
	if err != nil {
		d.SiteFailure(s.lost("receiving the initial server greeting"))
		return
	}
	if greet.code/100 != 2 {
		// Deferred, whatever the code: the next attempt may find the
		// server willing.
		d.SiteFailure(outcome.Status{DSN: greet.dsn(), Text: fmt.Sprintf("host %s refused to talk to me: %s", relay, greet), Relay: relay,
			DiagType: "smtp", DiagText: greet.String(), MTA: host}.Soft())
		return
	}
	if st, ok := s.hello(); !ok {
		d.SiteFailure(st)
		return
	}
	d.SetupDone()
	if !s.transaction(d) && anyPending(d) {
		d.SiteFailure(s.lastFailure)
	}
	s.quit()
}
