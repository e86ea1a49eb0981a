package smtp

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"

	"mailsrv/config"
	"mailsrv/maps"
	"mailsrv/outcome"
	"mailsrv/queue"
	"mailsrv/queue/qmgr"
)

// session is one SMTP or LMTP conversation: the smtp client's (one per
// server, kept in the connection cache) and lmtp(8)'s. The protocols
// differ in the greeting command (EHLO, falling back to HELO, or LHLO),
// in the timeouts, and after the message: an SMTP server answers once
// for all recipients, an LMTP server once per accepted recipient.
type session struct {
	conn        net.Conn
	r           *bufio.Reader
	w           *bufio.Writer
	host        string // the server's name, for Remote-MTA
	relay       string // host[ip]:port, for relay= and the TLS line
	hostIP      string // host[ip], for the reasons
	p           *config.Params
	lmtp        bool
	t           timeouts
	ext         map[string]string // EHLO keywords → parameters
	tlsDone     bool
	broken      bool
	ioErr       error // the last read or write error: a timeout is told apart
	lastFailure outcome.Status
	uses        int
	created     time.Time
}

// timeouts are one protocol's time limits (smtp_*_timeout or
// lmtp_*_timeout) and its line length limit for content.
type timeouts struct {
	helo, mail, rcpt, dataInit, dataXfer, dataDone, quit time.Duration
	lineLimit                                            int
}

func newSession(c net.Conn, host, hostIP, relay string, p *config.Params, lmtp bool) *session {
	s := &session{conn: c, r: bufio.NewReader(c), w: bufio.NewWriter(c),
		host: host, relay: relay, hostIP: hostIP, p: p, lmtp: lmtp, ext: map[string]string{}, created: time.Now()}
	if lmtp {
		s.t = timeouts{p.LMTPLhloTimeout, p.LMTPMailTimeout, p.LMTPRcptTimeout, p.LMTPDataInitTimeout,
			p.LMTPDataXferTimeout, p.LMTPDataDoneTimeout, p.LMTPQuitTimeout, 0}
	} else {
		s.t = timeouts{p.SMTPHeloTimeout, p.SMTPMailTimeout, p.SMTPRcptTimeout, p.SMTPDataInitTimeout,
			p.SMTPDataXferTimeout, p.SMTPDataDoneTimeout, p.SMTPQuitTimeout, p.SMTPLineLengthLimit}
	}
	return s
}

// upgrade continues the session over TLS.
func (s *session) upgrade(c net.Conn) {
	s.conn = c
	s.r = bufio.NewReader(c)
	s.w = bufio.NewWriter(c)
	s.tlsDone = true
	s.ext = map[string]string{}
}

// reply is a server reply.
type reply struct {
	code  int
	text  string   // the lines joined with spaces
	lines []string // the lines' texts
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.code, r.text) }

// dsn is the reply's enhanced status code, or one made from its code.
func (r reply) dsn() string {
	code, _, _ := strings.Cut(r.text, " ")
	if parts := strings.Split(code, "."); len(parts) == 3 && len(code) >= 5 && strings.ContainsRune("245", rune(code[0])) && code[0] == strconv.Itoa(r.code)[0] {
		return code
	}
	return fmt.Sprintf("%d.0.0", r.code/100)
}

func (s *session) reply(timeout time.Duration) (reply, error) {
	_ = s.conn.SetReadDeadline(time.Now().Add(timeout))
	code, lines, err := ReadReply(s.r)
	if err != nil {
		s.broken, s.ioErr = true, err
		return reply{}, err
	}
	r := reply{code: code, text: strings.Join(lines, " "), lines: lines}
	if code == 421 {
		s.broken = true
	}
	return r, nil
}

// send writes a command without flushing (pipelining).
func (s *session) send(format string, args ...any) {
	fmt.Fprintf(s.w, format+"\r\n", args...)
}

func (s *session) flush(timeout time.Duration) error {
	_ = s.conn.SetWriteDeadline(time.Now().Add(timeout))
	err := s.w.Flush()
	if err != nil {
		s.broken, s.ioErr = true, err
	}
	return err
}

func (s *session) cmd(timeout time.Duration, format string, args ...any) error {
	s.send(format, args...)
	return s.flush(timeout)
}

// hello sends EHLO (HELO when EHLO is refused), or LHLO, and reads the
// extensions.
func (s *session) hello() (outcome.Status, bool) {
	p := s.p
	verb, name := "EHLO", p.SMTPHeloName
	if s.lmtp {
		verb, name = "LHLO", p.LMTPLhloName
	}
	if err := s.cmd(s.t.helo, "%s %s", verb, name); err != nil {
		return s.lost("sending " + verb), false
	}
	r, err := s.reply(s.t.helo)
	if err != nil {
		return s.lost("receiving the " + verb + " reply"), false
	}
	if r.code/100 == 2 {
		s.ext = map[string]string{}
		for _, line := range r.lines[1:] {
			kw, args, _ := strings.Cut(line, " ")
			s.ext[strings.ToUpper(kw)] = args
		}
		return outcome.Status{}, true
	}
	if r.code == 421 || s.lmtp {
		return s.said(r, verb+" command"), false
	}
	if err := s.cmd(s.t.helo, "HELO %s", p.SMTPHeloName); err != nil {
		return s.lost("sending HELO"), false
	}
	r, err = s.reply(s.t.helo)
	if err != nil {
		return s.lost("receiving the HELO reply"), false
	}
	if r.code/100 != 2 {
		return s.said(r, "HELO command"), false
	}
	s.ext = map[string]string{}
	return outcome.Status{}, true
}

// said is Postfix's "host X said: … (in reply to … command)".
func (s *session) said(r reply, in string) outcome.Status {
	return outcome.Status{DSN: r.dsn(), Text: fmt.Sprintf("host %s said: %s (in reply to %s)", s.hostIP, r, in),
		Relay: s.relay, DiagType: "smtp", DiagText: r.String(), MTA: s.host}
}

// lost is Postfix's "lost connection with X while …", or "conversation
// with X timed out while …" when the server went silent.
func (s *session) lost(while string) outcome.Status {
	s.broken = true
	var ne net.Error
	if errors.As(s.ioErr, &ne) && ne.Timeout() {
		return outcome.Status{DSN: "4.4.2", Text: fmt.Sprintf("conversation with %s timed out while %s", s.hostIP, while), Relay: s.relay}
	}
	return outcome.Status{DSN: "4.4.2", Text: fmt.Sprintf("lost connection with %s while %s", s.hostIP, while), Relay: s.relay}
}

func (s *session) quit() {
	if !s.broken && s.cmd(s.t.quit, "QUIT") == nil {
		_, _ = s.reply(s.t.quit)
	}
	s.close()
}

func (s *session) close() { s.conn.Close() }

// transaction sends one message. It returns false when the session
// failed (lost, 421, a temporary refusal of MAIL or DATA): recipients
// still pending may then go to the next server.
func (s *session) transaction(d *qmgr.Delivery) bool {
	t := s.t
	s.uses++
	status := func(st outcome.Status) outcome.Status {
		if s.uses > 1 {
			st.ConnUse = s.uses
		}
		return st
	}
	if d.Attrs["smtputf8"] != "" {
		if _, ok := s.ext["SMTPUTF8"]; !ok {
			d.BounceRest(status(outcome.Status{DSN: "5.6.7", Text: fmt.Sprintf("SMTPUTF8 is required, but was not offered by host %s", s.relay), Relay: s.relay}))
			return true
		}
	}
	if sz, ok := s.ext["SIZE"]; ok {
		if limit, err := strconv.ParseInt(strings.TrimSpace(sz), 10, 64); err == nil && limit > 0 && d.Size > limit {
			d.BounceRest(status(outcome.Status{DSN: "5.3.4", Text: fmt.Sprintf("message size %d exceeds size limit %d of server %s", d.Size, limit, s.relay), Relay: s.relay}))
			return true
		}
	}
	_, dsnOK := s.ext["DSN"]
	mail := fmt.Sprintf("MAIL FROM:<%s>", d.Sender)
	if _, ok := s.ext["SIZE"]; ok {
		mail += " SIZE=" + strconv.FormatInt(d.Size, 10)
	}
	if bt := d.Attrs["body_type"]; bt == "8BITMIME" {
		if _, ok := s.ext["8BITMIME"]; ok {
			mail += " BODY=8BITMIME"
		}
	}
	if d.Attrs["smtputf8"] != "" {
		mail += " SMTPUTF8"
	}
	if dsnOK {
		if ret := d.Attrs["ret_flags"]; ret != "" {
			mail += " RET=" + ret
		}
		if envid := d.Attrs["envelope_id"]; envid != "" {
			mail += " ENVID=" + envid
		}
	}
	var rcpts []*qmgr.Recipient
	for _, r := range d.Recipients {
		if d.Pending(r) {
			rcpts = append(rcpts, r)
		}
	}
	// LMTP servers pipeline (RFC 2033 requires it).
	_, pipelining := s.ext["PIPELINING"]
	pipelining = pipelining || s.lmtp
	s.send("%s", mail)
	rcptCmd := func(r *qmgr.Recipient) string {
		c := fmt.Sprintf("RCPT TO:<%s>", r.Addr)
		if dsnOK {
			if r.Notify != 0 {
				c += " NOTIFY=" + NotifyParam(r.Notify)
			}
			if r.ORCPT != "" {
				c += " ORCPT=" + r.ORCPT
			}
		}
		return c
	}
	// With PIPELINING, DATA goes in the same group as MAIL and the
	// RCPTs (RFC 2920 allows it as the group's last command): one write
	// and one round trip less per message.
	pipeData := pipelining && !d.Verify
	if pipelining {
		for _, r := range rcpts {
			s.send("%s", rcptCmd(r))
		}
		if pipeData {
			s.send("DATA")
		}
	}
	if s.flush(t.mail) != nil {
		s.lastFailure = s.lost("sending MAIL FROM")
		return false
	}
	mr, err := s.reply(t.mail)
	if err != nil {
		s.lastFailure = s.lost("receiving the MAIL FROM reply")
		return false
	}
	var accepted []*qmgr.Recipient
	for _, r := range rcpts {
		if !pipelining {
			if mr.code/100 != 2 {
				break
			}
			if s.cmd(t.rcpt, "%s", rcptCmd(r)) != nil {
				s.lastFailure = s.lost("sending RCPT TO")
				return false
			}
		}
		rr, err := s.reply(t.rcpt)
		if err != nil {
			s.lastFailure = s.lost("receiving the RCPT TO reply")
			return false
		}
		if mr.code/100 != 2 {
			continue // answers to RCPTs after a refused MAIL
		}
		switch {
		case rr.code/100 == 2 && d.Verify:
			// Address verification ends at RCPT: the server's
			// answer is the answer.
			d.Sent(r, status(outcome.Status{DSN: rr.dsn(), Text: rr.String(), Relay: s.relay, MTA: s.host,
				DiagType: "smtp", DiagText: rr.String()}))
		case rr.code/100 == 2:
			accepted = append(accepted, r)
		case rr.code == 421:
			s.lastFailure = s.said(rr, "RCPT TO command")
			return false
		case rr.code/100 == 4:
			d.Defer(r, status(s.said(rr, "RCPT TO command")))
		default:
			d.Bounce(r, status(s.said(rr, "RCPT TO command")))
		}
	}
	var dr reply
	if pipeData {
		// The pipelined DATA is answered whatever came before.
		if dr, err = s.reply(t.dataInit); err != nil {
			s.lastFailure = s.lost("receiving the DATA reply")
			return false
		}
		if dr.code == 354 && (mr.code/100 != 2 || len(accepted) == 0) {
			// A server that opened DATA without a valid recipient:
			// send an empty message and let RSET drop it.
			if s.cmd(t.dataDone, ".") != nil {
				s.lastFailure = s.lost("sending end of data")
				return false
			}
			if _, err := s.reply(t.dataDone); err != nil {
				s.lastFailure = s.lost("receiving the end of data reply")
				return false
			}
		}
	}
	switch {
	case mr.code/100 == 2:
	case mr.code/100 == 5:
		d.BounceRest(status(s.said(mr, "MAIL FROM command")))
		return s.reset()
	default:
		s.lastFailure = s.said(mr, "MAIL FROM command")
		return false
	}
	if len(accepted) == 0 {
		return s.reset()
	}
	if !pipeData {
		if s.cmd(t.dataInit, "DATA") != nil {
			s.lastFailure = s.lost("sending DATA")
			return false
		}
		if dr, err = s.reply(t.dataInit); err != nil {
			s.lastFailure = s.lost("receiving the DATA reply")
			return false
		}
	}
	if dr.code != 354 {
		if dr.code/100 == 5 {
			for _, r := range accepted {
				d.Bounce(r, status(s.said(dr, "DATA command")))
			}
			return s.reset()
		}
		s.lastFailure = s.said(dr, "DATA command")
		return false
	}
	if err := WriteContent(s.conn, d.Content(), t.dataXfer, t.lineLimit); err != nil {
		s.lastFailure = s.lost("sending message body")
		return false
	}
	if s.lmtp {
		return s.lmtpReplies(d, accepted, status, dsnOK)
	}
	er, err := s.reply(t.dataDone)
	if err != nil {
		s.lastFailure = s.lost("receiving the end of data reply")
		return false
	}
	for _, r := range accepted {
		switch er.code / 100 {
		case 2:
			// A next hop that does DSN got our NOTIFY and reports
			// success itself; otherwise we say "relayed".
			d.Sent(r, status(outcome.Status{DSN: er.dsn(), Text: er.String(), Relay: s.relay, MTA: s.host,
				DiagType: "smtp", DiagText: er.String(), Action: "relayed", NextHopNotifies: dsnOK}))
		case 4:
			d.Defer(r, status(s.said(er, "end of DATA command")))
		default:
			d.Bounce(r, status(s.said(er, "end of DATA command")))
		}
	}
	return er.code != 421
}

// lmtpReplies reads an LMTP server's reply for each accepted recipient
// after the message: each gets its own status.
func (s *session) lmtpReplies(d *qmgr.Delivery, accepted []*qmgr.Recipient, status func(outcome.Status) outcome.Status, dsnOK bool) bool {
	for i, r := range accepted {
		er, err := s.reply(s.t.dataDone)
		if err != nil {
			// The recipients not answered yet stay pending.
			s.lastFailure = s.lost("receiving the end of data reply")
			return false
		}
		switch er.code / 100 {
		case 2:
			d.Sent(r, status(outcome.Status{DSN: er.dsn(), Text: er.String(), Relay: s.relay, MTA: s.host,
				DiagType: "smtp", DiagText: er.String(), NextHopNotifies: dsnOK}))
		case 4:
			d.Defer(r, status(s.said(er, "end of DATA command")))
		default:
			d.Bounce(r, status(s.said(er, "end of DATA command")))
		}
		if er.code == 421 && i < len(accepted)-1 {
			s.lastFailure = s.said(er, "end of DATA command")
			return false
		}
	}
	return true
}

// reset ends a transaction that sent no message, keeping the session.
func (s *session) reset() bool {
	if s.cmd(s.t.helo, "RSET") != nil {
		return false
	}
	r, err := s.reply(s.t.helo)
	return err == nil && r.code/100 == 2
}

// The 64 KiB buffers of WriteContent are recycled: two per delivery
// would be the largest allocation on the sending path.
var (
	contentWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}
	contentReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}
)

// WriteContent sends message content on an SMTP or LMTP connection: CRLF
// line ends, dot stuffing, lines longer than lineLimit (0 = no limit)
// folded with CRLF SPACE, the final dot; every write within timeout.
func WriteContent(c net.Conn, content io.Reader, timeout time.Duration, lineLimit int) error {
	w := contentWriters.Get().(*bufio.Writer)
	w.Reset(deadlineWriter{c, timeout})
	br := contentReaders.Get().(*bufio.Reader)
	br.Reset(content)
	defer func() {
		w.Reset(nil)
		br.Reset(nil)
		contentWriters.Put(w)
		contentReaders.Put(br)
	}()
	limit := lineLimit
	col := 0
	for {
		line, err := br.ReadSlice('\n')
		for len(line) > 0 {
			if col == 0 && line[0] == '.' {
				w.WriteByte('.')
			}
			if line[0] == '\n' {
				w.WriteString("\r\n")
				col = 0
				line = line[1:]
				continue
			}
			// Up to the end of the line or the length limit.
			n := len(line)
			if i := bytes.IndexByte(line, '\n'); i >= 0 {
				n = i
			}
			if limit > 0 && col+n > limit {
				n = limit - col
				w.Write(line[:n])
				w.WriteString("\r\n ")
				col = 1
				line = line[n:]
				continue
			}
			w.Write(line[:n])
			col += n
			line = line[n:]
		}
		if err == io.EOF {
			break
		}
		if err != nil && err != bufio.ErrBufferFull {
			return err
		}
	}
	if col > 0 {
		w.WriteString("\r\n")
	}
	w.WriteString(".\r\n")
	return w.Flush()
}

type deadlineWriter struct {
	c       net.Conn
	timeout time.Duration
}

func (d deadlineWriter) Write(b []byte) (int, error) {
	_ = d.c.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.c.Write(b)
}

// NotifyParam is the RCPT NOTIFY= value of DSN NOTIFY bits.
func NotifyParam(bits int) string {
	if bits&queue.NotifyNever != 0 {
		return "NEVER"
	}
	var out []string
	for _, n := range []struct {
		bit  int
		name string
	}{{queue.NotifySuccess, "SUCCESS"}, {queue.NotifyFailure, "FAILURE"}, {queue.NotifyDelay, "DELAY"}} {
		if bits&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return strings.Join(out, ",")
}

// auth authenticates to a server we have credentials for
// (smtp_sasl_password_maps: the nexthop as written, then the server's
// name). Plain-text mechanisms need TLS unless the security options in
// force say otherwise.
func (a *Agent) auth(d *qmgr.Delivery, s *session, srv server) *outcome.Status {
	p := a.p
	var cred string
	for _, key := range []string{d.Nexthop, strings.Trim(strings.Split(d.Nexthop, "]")[0], "["), srv.host} {
		v, ok, err := maps.LookupAll(a.passwd, strings.ToLower(key))
		if err != nil {
			return &outcome.Status{DSN: "4.3.0", Text: "smtp_sasl_password_maps: table lookup problem", Relay: s.relay}
		}
		if ok {
			cred = v
			break
		}
	}
	if cred == "" {
		return nil // no credentials: no AUTH
	}
	user, pass, _ := strings.Cut(cred, ":")
	opts := p.SMTPSASLSecurityOptions
	if s.tlsDone {
		opts = p.SMTPSASLTLSSecurityOptions
	}
	plainOK := true
	for _, o := range opts {
		if strings.EqualFold(strings.TrimSpace(o), "noplaintext") {
			plainOK = false
		}
	}
	offered := strings.Fields(strings.ToUpper(s.ext["AUTH"]))
	var mech string
	for _, m := range []string{sasl.Plain, sasl.Login} {
		if !contains(offered, m) || !plainOK {
			continue
		}
		if len(p.SMTPSASLMechanismFilter) > 0 && !contains(upper(p.SMTPSASLMechanismFilter), m) {
			continue
		}
		mech = m
		break
	}
	if mech == "" {
		why := "no mechanism available"
		if !plainOK && !s.tlsDone {
			why = "no mechanism available (plain-text passwords are only sent over TLS: smtp_sasl_security_options)"
		}
		return &outcome.Status{DSN: "4.7.0", Text: fmt.Sprintf("SASL authentication failed; cannot authenticate to server %s: %s", s.relay, why), Relay: s.relay}
	}
	var c sasl.Client
	if mech == sasl.Plain {
		c = sasl.NewPlainClient("", user, pass)
	} else {
		c = sasl.NewLoginClient(user, pass)
	}
	_, ir, err := c.Start()
	if err != nil {
		return &outcome.Status{DSN: "4.7.0", Text: "SASL authentication failed: " + err.Error(), Relay: s.relay}
	}
	line := "AUTH " + mech
	if ir != nil {
		enc := base64.StdEncoding.EncodeToString(ir)
		if enc == "" {
			enc = "="
		}
		line += " " + enc
	}
	if s.cmd(p.SMTPHeloTimeout, "%s", line) != nil {
		st := s.lost("sending AUTH")
		return &st
	}
	for range 10 {
		r, err := s.reply(p.SMTPHeloTimeout)
		if err != nil {
			st := s.lost("receiving the AUTH reply")
			return &st
		}
		switch {
		case r.code == 235:
			return nil
		case r.code == 334:
			ch, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(r.text))
			resp, err := c.Next(ch)
			if err != nil {
				s.cmd(p.SMTPHeloTimeout, "*")
				return &outcome.Status{DSN: "4.7.0", Text: "SASL authentication failed: " + err.Error(), Relay: s.relay}
			}
			if s.cmd(p.SMTPHeloTimeout, "%s", base64.StdEncoding.EncodeToString(resp)) != nil {
				st := s.lost("sending the AUTH response")
				return &st
			}
		default:
			// smtp_sasl_auth_soft_bounce: a wrong password is fixed
			// by the operator, not by returning the mail.
			st := outcome.Status{DSN: r.dsn(), Text: fmt.Sprintf("SASL authentication failed; server %s said: %s", s.relay, r), Relay: s.relay,
				DiagType: "smtp", DiagText: r.String(), MTA: srv.host}.Soft()
			return &st
		}
	}
	return &outcome.Status{DSN: "4.7.0", Text: "SASL authentication failed: too many challenges", Relay: s.relay}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func upper(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = strings.ToUpper(strings.TrimSpace(s))
	}
	return out
}

// cache is the connection cache (scache): idle sessions by destination.
type cache struct {
	mu   sync.Mutex
	idle map[string][]*cached
}

type cached struct {
	s     *session
	until time.Time // idle deadline
}

func newCache() *cache { return &cache{idle: map[string][]*cached{}} }

// get takes an idle session for key, within the reuse limits.
func (c *cache) get(key string, reuseTime time.Duration, reuseCount int) *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	list := c.idle[key]
	for len(list) > 0 {
		e := list[len(list)-1]
		list = list[:len(list)-1]
		c.idle[key] = list
		if time.Now().After(e.until) || (reuseTime > 0 && time.Since(e.s.created) > reuseTime) || (reuseCount > 0 && e.s.uses >= reuseCount) {
			go e.s.quit()
			continue
		}
		return e.s
	}
	delete(c.idle, key)
	return nil
}

// put keeps a session for idle time.
func (c *cache) put(key string, s *session, idle time.Duration) {
	if idle <= 0 {
		idle = 2 * time.Second
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idle[key] = append(c.idle[key], &cached{s: s, until: time.Now().Add(idle)})
	time.AfterFunc(idle+100*time.Millisecond, c.expire)
}

// expire closes sessions idle too long.
func (c *cache) expire() {
	c.mu.Lock()
	var old []*session
	for k, list := range c.idle {
		keep := list[:0]
		for _, e := range list {
			if time.Now().After(e.until) {
				old = append(old, e.s)
			} else {
				keep = append(keep, e)
			}
		}
		if len(keep) == 0 {
			delete(c.idle, k)
		} else {
			c.idle[k] = keep
		}
	}
	c.mu.Unlock()
	for _, s := range old {
		s.quit()
	}
}

func (c *cache) closeAll() {
	c.mu.Lock()
	var all []*session
	for k, list := range c.idle {
		for _, e := range list {
			all = append(all, e.s)
		}
		delete(c.idle, k)
	}
	c.mu.Unlock()
	for _, s := range all {
		s.quit()
	}
}
