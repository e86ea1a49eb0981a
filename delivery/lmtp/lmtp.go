// Package lmtp is Postfix's lmtp(8) client: it hands mail to a local
// mailbox server (Dovecot, Cyrus) over a unix socket or TCP, with LHLO,
// one MAIL, a RCPT per recipient, DATA, and one reply per accepted
// recipient after the final dot, so each recipient gets its own status.
//
// The conversation is the smtp client's session (smtp.LMTP: the same
// MAIL and RCPT parameters, reply reader, content writer and Postfix
// reasons), as Postfix's lmtp is its smtp program. go-smtp's client is
// not used: it reads a single reply after the data (SMTP, not LMTP's
// per-recipient replies as mailsrv logs them), cannot pipeline MAIL and
// RCPT, and does not classify failures by phase as Postfix does.
package lmtp

import (
	"fmt"
	"net"
	"strings"
	"time"

	"mailsrv/config"
	"mailsrv/delivery/smtp"
	"mailsrv/outcome"
	"mailsrv/queue/qmgr"
)

// Agent is lmtp(8).
type Agent struct {
	p *config.Params
}

// New returns the agent.
func New(p *config.Params) *Agent { return &Agent{p: p} }

// endpoint parses a nexthop: unix:/path, inet:host[:port], host[:port]
// or [host][:port]; the LMTP port defaults to 24.
func endpoint(nexthop string) (network, address string, err error) {
	switch {
	case strings.HasPrefix(nexthop, "unix:"):
		path := nexthop[len("unix:"):]
		if !strings.HasPrefix(path, "/") {
			return "", "", fmt.Errorf("bad LMTP destination %q: the socket path must be absolute", nexthop)
		}
		return "unix", path, nil
	case strings.HasPrefix(nexthop, "inet:"):
		nexthop = nexthop[len("inet:"):]
	}
	host, port := nexthop, "24"
	if h, p, err := net.SplitHostPort(nexthop); err == nil {
		host, port = h, p
	}
	host = strings.Trim(host, "[]")
	if host == "" {
		return "", "", fmt.Errorf("bad LMTP destination %q", nexthop)
	}
	return "tcp", net.JoinHostPort(host, port), nil
}

// Deliver runs one LMTP transaction for the delivery's recipients, with
// the smtp client's session (smtp.LMTP).
func (a *Agent) Deliver(d *qmgr.Delivery) {
	p := a.p
	network, address, err := endpoint(d.Nexthop)
	if err != nil {
		d.DeferRest(outcome.Status{DSN: "4.3.5", Text: err.Error()})
		return
	}
	// Postfix's names: the local host for a socket, host[ip]:port for TCP.
	host, relay := p.Myhostname, fmt.Sprintf("%s[%s]", p.Myhostname, address)
	if network == "tcp" {
		if h, port, err := net.SplitHostPort(address); err == nil {
			host, relay = h, fmt.Sprintf("%s[%s]:%s", h, h, port)
		}
	}
	timeout := p.LMTPConnectTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	dialer := net.Dialer{Timeout: timeout}
	conn, err := dialer.DialContext(d.Ctx, network, address)
	if err != nil {
		d.SiteFailure(outcome.Status{DSN: "4.4.1", Text: fmt.Sprintf("connect to %s: %s", address, smtp.SysText(err)), Relay: relay})
		return
	}
	smtp.LMTP(d, conn, host, relay, p)
}
