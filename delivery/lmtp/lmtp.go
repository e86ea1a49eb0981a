// Package lmtp is Postfix's lmtp(8) client: it hands mail to a local
// mailbox server (Dovecot, Cyrus) over a unix socket or TCP, with LHLO,
// one MAIL, a RCPT per recipient, DATA, and one reply per accepted
// recipient after the final dot, so each recipient gets its own status.
//
// It shares the smtp client's bounded reply reader and content writer
// rather than using go-smtp's client, which reads a single reply after
// the data (SMTP, not LMTP's per-recipient replies as mailsrv logs them)
// and offers no way to pipeline MAIL and RCPT or to classify failures by
// phase as Postfix does.
package lmtp

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"mailsrv/config"
	"mailsrv/delivery/smtp"
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

// session is one LMTP conversation.
type session struct {
	conn  net.Conn
	br    *bufio.Reader
	relay string
}

// reply is one server reply.
type reply struct {
	code  int
	text  string   // all lines, joined with a space
	lines []string // the lines' texts
}

func (r reply) dsn() string {
	if code, _, _ := strings.Cut(r.text, " "); strings.Count(code, ".") == 2 && len(code) >= 5 && (code[0] == '2' || code[0] == '4' || code[0] == '5') {
		return code
	}
	return fmt.Sprintf("%d.0.0", r.code/100)
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.code, r.text) }

func (s *session) read(timeout time.Duration) (reply, error) {
	_ = s.conn.SetReadDeadline(time.Now().Add(timeout))
	code, lines, err := smtp.ReadReply(s.br)
	if err != nil {
		return reply{}, err
	}
	return reply{code: code, text: strings.Join(lines, " "), lines: lines}, nil
}

func (s *session) cmd(timeout time.Duration, format string, args ...any) error {
	_ = s.conn.SetWriteDeadline(time.Now().Add(timeout))
	_, err := fmt.Fprintf(s.conn, format+"\r\n", args...)
	return err
}

// Deliver runs one LMTP transaction for the delivery's recipients.
func (a *Agent) Deliver(d *qmgr.Delivery) {
	p := a.p
	network, address, err := endpoint(d.Nexthop)
	if err != nil {
		d.DeferRest(qmgr.Status{DSN: "4.3.5", Text: err.Error()})
		return
	}
	relay := fmt.Sprintf("%s[%s]", p.Myhostname, address)
	if network == "tcp" {
		relay = fmt.Sprintf("%s[%s]", d.Nexthop, address)
		if h, port, err := net.SplitHostPort(address); err == nil {
			relay = fmt.Sprintf("%s[%s]:%s", h, h, port)
		}
	}
	site := func(text string) {
		d.SiteFailure(qmgr.Status{DSN: "4.4.1", Text: text, Relay: relay})
	}
	connectTimeout := p.LMTPConnectTimeout
	if connectTimeout <= 0 {
		connectTimeout = 30 * time.Second
	}
	dialer := net.Dialer{Timeout: connectTimeout}
	conn, err := dialer.DialContext(d.Ctx, network, address)
	if err != nil {
		site(fmt.Sprintf("connect to %s: %s", address, smtp.SysText(err)))
		return
	}
	defer conn.Close()
	s := &session{conn: conn, br: bufio.NewReader(conn), relay: relay}
	lost := func(while string, err error) {
		site(fmt.Sprintf("lost connection with %s while %s: %s", relay, while, smtp.SysText(err)))
	}
	said := func(r reply, in string) string {
		return fmt.Sprintf("host %s said: %s (in reply to %s)", relay, r, in)
	}

	greet, err := s.read(p.LMTPLhloTimeout)
	if err != nil {
		lost("receiving the initial server greeting", err)
		return
	}
	if greet.code/100 != 2 {
		site(fmt.Sprintf("host %s refused to talk to me: %s", relay, greet))
		return
	}
	if err := s.cmd(p.LMTPLhloTimeout, "LHLO %s", p.LMTPLhloName); err != nil {
		lost("sending LHLO", err)
		return
	}
	lhlo, err := s.read(p.LMTPLhloTimeout)
	if err != nil {
		lost("receiving the LHLO reply", err)
		return
	}
	if lhlo.code/100 != 2 {
		site(said(lhlo, "LHLO command"))
		return
	}
	d.SetupDone()

	st := func(r reply, in string) qmgr.Status {
		return qmgr.Status{DSN: r.dsn(), Text: said(r, in), Relay: relay, DiagType: "smtp", DiagText: r.String(), MTA: p.Myhostname}
	}
	dsnExt := hasExt(lhlo, "DSN")
	mail := fmt.Sprintf("MAIL FROM:<%s>", d.Sender)
	if hasExt(lhlo, "SIZE") {
		mail += " SIZE=" + strconv.FormatInt(d.Size, 10)
	}
	if bt := d.Attrs["body_type"]; bt != "" && hasExt(lhlo, "8BITMIME") {
		mail += " BODY=" + bt
	}
	if dsnExt {
		if ret := d.Attrs["ret_flags"]; ret != "" {
			mail += " RET=" + ret
		}
		if envid := d.Attrs["envelope_id"]; envid != "" {
			mail += " ENVID=" + envid
		}
	}
	// Pipelined: MAIL and every RCPT, then the replies.
	if err := s.cmd(p.LMTPMailTimeout, "%s", mail); err != nil {
		lost("sending MAIL FROM", err)
		return
	}
	for _, r := range d.Recipients {
		rcpt := fmt.Sprintf("RCPT TO:<%s>", r.Addr)
		if dsnExt {
			if r.Notify != 0 {
				rcpt += " NOTIFY=" + smtp.NotifyParam(r.Notify)
			}
			if r.ORCPT != "" {
				rcpt += " ORCPT=" + r.ORCPT
			}
		}
		if err := s.cmd(p.LMTPRcptTimeout, "%s", rcpt); err != nil {
			lost("sending RCPT TO", err)
			return
		}
	}
	mr, err := s.read(p.LMTPMailTimeout)
	if err != nil {
		lost("receiving the MAIL FROM reply", err)
		return
	}
	var accepted []*qmgr.Recipient
	for _, r := range d.Recipients {
		rr, err := s.read(p.LMTPRcptTimeout)
		if err != nil {
			lost("receiving the RCPT TO reply", err)
			return
		}
		if mr.code/100 != 2 {
			continue // the RCPT replies are for nothing
		}
		switch {
		case rr.code/100 == 2 && d.Verify:
			// Address verification ends at RCPT.
			d.Sent(r, qmgr.Status{DSN: rr.dsn(), Text: rr.String(), Relay: relay})
		case rr.code/100 == 2:
			accepted = append(accepted, r)
		case rr.code/100 == 4:
			d.Defer(r, st(rr, "RCPT TO command"))
		default:
			d.Bounce(r, st(rr, "RCPT TO command"))
		}
	}
	if mr.code/100 != 2 {
		if mr.code/100 == 4 {
			d.DeferRest(st(mr, "MAIL FROM command"))
		} else {
			d.BounceRest(st(mr, "MAIL FROM command"))
		}
		s.quit()
		return
	}
	if len(accepted) == 0 {
		s.quit()
		return
	}
	if err := s.cmd(p.LMTPDataInitTimeout, "DATA"); err != nil {
		lost("sending DATA", err)
		return
	}
	dr, err := s.read(p.LMTPDataInitTimeout)
	if err != nil {
		lost("receiving the DATA reply", err)
		return
	}
	if dr.code != 354 {
		if dr.code/100 == 4 {
			d.DeferRest(st(dr, "DATA command"))
		} else {
			d.BounceRest(st(dr, "DATA command"))
		}
		s.quit()
		return
	}
	if err := smtp.WriteContent(s.conn, d.Content(), p.LMTPDataXferTimeout, 0); err != nil {
		lost("sending message body", err)
		return
	}
	for _, r := range accepted {
		rr, err := s.read(p.LMTPDataDoneTimeout)
		if err != nil {
			lost("receiving the end of data reply", err)
			return
		}
		switch rr.code / 100 {
		case 2:
			d.Sent(r, qmgr.Status{DSN: rr.dsn(), Text: rr.String(), Relay: relay, NextHopNotifies: dsnExt})
		case 4:
			d.Defer(r, st(rr, "end of DATA command"))
		default:
			d.Bounce(r, st(rr, "end of DATA command"))
		}
	}
	s.quit()
}

func (s *session) quit() {
	if s.cmd(5*time.Second, "QUIT") == nil {
		_, _ = s.read(5 * time.Second)
	}
}

// hasExt reports whether the LHLO reply announces an extension: the
// first word of a line after the greeting line.
func hasExt(lhlo reply, name string) bool {
	for _, l := range lhlo.lines[min(1, len(lhlo.lines)):] {
		if kw, _, _ := strings.Cut(l, " "); strings.EqualFold(kw, name) {
			return true
		}
	}
	return false
}
