package smtpd

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailsrv/internal/tlsutil"
	"mailsrv/maillog"
	"mailsrv/outcome"
	"mailsrv/queue"
	"mailsrv/queue/flush"
	"mailsrv/rewrite/cleanup"
)

// session is one SMTP conversation.
type session struct {
	srv  *Server
	ctx  context.Context
	conn net.Conn // nil for sendmail -bs
	tc   *timedConn
	br   *bufio.Reader
	bw   *bufio.Writer
	tls  *tls.ConnectionState // after STARTTLS or in wrapper mode
	// ccert is the client's certificate (smtpd_tls_ask_ccert), or nil.
	ccert *ccert

	saslUser, saslMethod string // after AUTH

	clientAddr  netip.Addr // invalid for sendmail -bs
	clientPort  string
	clientName  string // "unknown" without a confirmed name
	reverseName string
	// serverAddr and serverPort are the address the client connected
	// to (policy requests).
	serverAddr, serverPort string
	// How finding the names went (reject_unknown_client_hostname and
	// reject_unknown_reverse_client_hostname).
	nameStatus, reverseStatus peerStatus
	helo                      string
	esmtp                     bool
	stdio                     bool

	policy   bareLFPolicy
	rejectLF int // reply code for a bare LF under "yes"/"reject"; 0 = accept
	noteLF   bool
	sawLF    bool

	lastCmd string // for "timeout after X" and "lost connection after X"
	errors  int
	junk    int
	counts  [numCmds][2]int // ok, total
	mynets  int8            // cached permit_mynetworks: 0 unknown, 1 yes, -1 no
	// connReject is the client list's refusal without smtpd_delay_reject.
	connReject *outcome.Reply
	closing    bool

	txn txn
	// pre are actions asked for before a mail transaction (client and
	// HELO restrictions without smtpd_delay_reject): the session's
	// messages get them.
	pre   actions
	line  []byte     // reused command buffer
	dnsxl dnsxlCache // DNS list answers of this session

	// The transcript for a postmaster notice (notify_classes), and the
	// problem classes met since it started.
	history  []chatLine
	problems outcome.Class
}

// txn is the mail transaction in progress.
type txn struct {
	active    bool
	sender    string
	params    mailParams
	rcpts     []queue.Recipient
	overshoot int
	act       actions // what access tables asked for this message
	instance  string  // the policy requests' instance attribute

	// BDAT
	msg     Message
	body    *content
	bdatErr *outcome.Reply
	chunked int64
}

// Commands, in the order Postfix lists them on its disconnect line.
const (
	cmdHelo = iota
	cmdEhlo
	cmdStarttls
	cmdAuth
	cmdMail
	cmdRcpt
	cmdData
	cmdBdat
	cmdRset
	cmdNoop
	cmdVrfy
	cmdEtrn
	cmdQuit
	cmdUnknown
	numCmds
)

var cmdNames = [numCmds]string{"helo", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "bdat", "rset", "noop", "vrfy", "etrn", "quit", "unknown"}

var cmdByName = map[string]int{
	"HELO": cmdHelo, "EHLO": cmdEhlo, "STARTTLS": cmdStarttls, "AUTH": cmdAuth,
	"MAIL": cmdMail, "RCPT": cmdRcpt, "DATA": cmdData, "BDAT": cmdBdat,
	"RSET": cmdRset, "NOOP": cmdNoop, "VRFY": cmdVrfy, "ETRN": cmdEtrn, "QUIT": cmdQuit,
}

// lastInGroup are the commands RFC 2920 allows only at the end of a
// pipelined group: nothing may follow them before their reply.
var lastInGroup = [numCmds]bool{cmdHelo: true, cmdEhlo: true, cmdStarttls: true, cmdAuth: true, cmdData: true, cmdNoop: true, cmdVrfy: true, cmdEtrn: true, cmdQuit: true}

const readBufferSize = 16 << 10

// The sessions' buffers are recycled: a busy server starts and ends
// hundreds of sessions a second, and fresh 16 KiB readers were half of
// all it allocated.
var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
)

func newReader(r io.Reader) *bufio.Reader {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func newWriter(w io.Writer) *bufio.Writer {
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readers.Put(br)
}

func putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	writers.Put(bw)
}

// release returns the session's buffers once it has ended.
func (s *session) release() {
	putReader(s.br)
	putWriter(s.bw)
	s.br, s.bw, s.line = nil, nil, nil
}

func (s *Server) newSession(ctx context.Context, c net.Conn, rw io.ReadWriter) *session {
	sess := &session{srv: s, ctx: ctx, conn: c, lastCmd: "CONNECT", clientName: "unknown", reverseName: "unknown"}
	if c != nil {
		sess.tc = s.timed(c)
		rw = sess.tc
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			sess.clientAddr = ap.Addr().Unmap()
			sess.clientPort = strconv.Itoa(int(ap.Port()))
		}
		if ap, err := netip.ParseAddrPort(c.LocalAddr().String()); err == nil {
			sess.serverAddr, sess.serverPort = ap.Addr().Unmap().String(), strconv.Itoa(int(ap.Port()))
		}
	} else {
		sess.stdio = true
		sess.clientName, sess.reverseName = "localhost", "localhost"
		sess.clientAddr = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	sess.br = newReader(rw)
	sess.bw = newWriter(rw)
	return sess
}

// timed wraps a client connection in smtpd_timeout's deadlines.
func (s *Server) timed(c net.Conn) *timedConn {
	return &timedConn{Conn: c, timeout: s.p.SmtpdTimeout, perRequest: s.p.SmtpdPerRequestDeadline, minRate: s.p.SmtpdMinDataRate}
}

// beginRequest starts the deadline of the next command line or, with
// data, message body (smtpd_per_request_deadline).
func (s *session) beginRequest(data bool) {
	if s.tc != nil {
		s.tc.beginRequest(data)
	}
}

func (s *session) namaddr() string {
	if s.srv.p.SmtpdClientPortLogging && s.clientPort != "" {
		return s.clientName + "[" + s.clientAddr.String() + "]:" + s.clientPort
	}
	return s.clientName + "[" + s.clientAddr.String() + "]"
}

func (s *session) hostname() string { return s.srv.p.Myhostname }

// setPolicy applies smtpd_forbid_bare_newline to this client.
func (s *session) setPolicy() {
	p := s.srv.p
	mode := strings.ToLower(p.SmtpdForbidBareNewline)
	if excluded, _ := s.srv.bareLFExclusions.match(s.clientAddr, s.clientName); excluded || s.stdio {
		mode = "no"
	}
	switch mode {
	case "no":
		s.policy = bareLFLegacy
	case "yes":
		// mailsrv's "yes" is the strict form of the first Postfix
		// releases with this setting: refuse and hang up with 521.
		s.policy, s.rejectLF = bareLFReject, 521
	case "reject":
		s.policy, s.rejectLF = bareLFReject, 550
	case "note":
		s.policy, s.noteLF = bareLFNormalize, true
	default:
		s.policy = bareLFNormalize
	}
}

func (s *session) run() {
	srv := s.srv
	if !s.stdio {
		s.clientName, s.reverseName, s.nameStatus, s.reverseStatus = srv.lookupName(s.ctx, s.clientAddr)
	}
	srv.log.Infof("connect from %s", s.namaddr())
	defer func() {
		// A bug met by one session ends that session, not the daemon
		// with every other session in it (Postfix has a process per
		// session for this). Nothing is lost: a message not yet
		// acknowledged is aborted below and the client will retry.
		if r := recover(); r != nil {
			srv.log.Warnf("panic in the session from %s after %s: %v", s.namaddr(), s.lastCmd, r)
			srv.log.Debugf("panic stack:\n%s", debug.Stack())
			s.send(reply(421, "4.3.0", "%s Error: internal error", s.hostname()).WithClass(outcome.Software))
		}
		_ = s.bw.Flush()
		s.abortTxn()
		s.chatReset(0)
		srv.log.Infof("disconnect from %s%s", s.namaddr(), s.stats())
	}()
	s.setPolicy()
	ok, done := srv.admit(s)
	defer done()
	if !ok {
		s.send(reply(421, "4.7.0", "%s Error: too many connections from %s", s.hostname(), s.clientAddr))
		return
	}
	s.prefetchDNSXL()
	if !srv.p.SmtpdDelayReject {
		// Without smtpd_delay_reject the client list runs now; a
		// refusal answers every MAIL and RCPT of the session.
		if r := srv.check.stageCheck(s, classClient, srv.check.client); r != nil {
			s.logReject("reject", *r)
			s.connReject = r
		}
	}
	if srv.wrapper && !s.stdio {
		// smtpd_tls_wrappermode (port 465): TLS from the first byte.
		if err := s.startTLS(); err != nil {
			srv.log.Warnf("TLS handshake failed from %s: %s", s.namaddr(), maillog.Clip(err.Error(), 200))
			s.lastCmd = "CONNECT"
			return
		}
	}
	s.send(outcome.New(220, "", srv.p.SmtpdBanner))
	for !s.closing {
		if s.errors >= srv.p.SmtpdHardErrorLimit {
			srv.log.Infof("too many errors after %s from %s", s.lastCmd, s.namaddr())
			s.send(reply(421, "4.7.0", "%s Error: too many errors", s.hostname()))
			return
		}
		if !s.lineBuffered() {
			// Nothing more to answer before waiting for the client:
			// its pipelined commands get their replies in one write,
			// and a complete command is answered at once even when
			// the start of the next one came with it.
			if err := s.bw.Flush(); err != nil {
				s.lost(err)
				return
			}
		}
		s.beginRequest(false)
		line, buf, err := readCommand(s.br, srv.p.LineLengthLimit, s.line)
		s.line = buf
		switch {
		case errors.Is(err, errLineTooLong):
			preview := line.text
			if len(preview) > 30 {
				preview = preview[:30]
			}
			srv.log.Warnf("%s: request longer than %d: %s...", s.namaddr(), srv.p.LineLengthLimit, preview)
		case err != nil:
			s.lost(err)
			return
		}
		if line.bareLF {
			s.sawLF = true
			if s.rejectLF != 0 {
				s.bareLFReject("")
				return
			}
		}
		s.command(string(line.text))
		if err := s.ctx.Err(); err != nil && !s.closing {
			// The service is stopping: end between commands, where
			// the client can retry cleanly.
			s.send(reply(421, "4.3.2", "%s Service shutting down, closing transmission channel", s.hostname()))
			return
		}
	}
}

// lineBuffered reports whether a whole command line is already read and
// waiting: then its reply can go out with this one's.
func (s *session) lineBuffered() bool {
	n := s.br.Buffered()
	if n == 0 {
		return false
	}
	b, _ := s.br.Peek(n)
	return bytes.IndexByte(b, '\n') >= 0
}

// lost logs why the client went away: a timeout (after which Postfix
// still says goodbye) or a closed connection.
func (s *session) lost(err error) {
	what := s.lastCmd
	if isTimeout(err) {
		s.srv.log.Infof("timeout after %s from %s", what, s.namaddr())
		s.send(reply(421, "4.4.2", "%s Error: timeout exceeded", s.hostname()))
		return
	}
	s.srv.log.Infof("lost connection after %s from %s", what, s.namaddr())
}

func (s *session) bareLFReject(stage string) {
	code := s.rejectLF
	r := reply(code, "5.5.2", "%s Error: bare <LF> received", s.hostname())
	s.srv.log.Infof("%sbare <LF> received after %s from %s", stage, s.lastCmd, s.namaddr())
	s.send(r)
	s.closing = true
}

// stats is the disconnect line's command summary.
func (s *session) stats() string {
	var b strings.Builder
	ok, total := 0, 0
	for i, c := range s.counts {
		if c[1] == 0 {
			continue
		}
		ok += c[0]
		total += c[1]
		if c[0] == c[1] {
			fmt.Fprintf(&b, " %s=%d", cmdNames[i], c[1])
		} else {
			fmt.Fprintf(&b, " %s=%d/%d", cmdNames[i], c[0], c[1])
		}
	}
	if ok == total {
		fmt.Fprintf(&b, " commands=%d", total)
	} else {
		fmt.Fprintf(&b, " commands=%d/%d", ok, total)
	}
	if s.noteLF && s.sawLF {
		b.WriteString(" notes=bare_lf")
	}
	return b.String()
}

// send writes a reply. Output is flushed when the client has nothing more
// pipelined (in the command loop), so a pipelined group gets its replies
// in one write.
func (s *session) send(r outcome.Reply) {
	if r.Code >= 400 && s.errors >= s.srv.p.SmtpdSoftErrorLimit && s.srv.p.SmtpdErrorSleepTime > 0 {
		_ = s.bw.Flush()
		select {
		case <-time.After(s.srv.p.SmtpdErrorSleepTime):
		case <-s.ctx.Done():
		}
	}
	text := r.String()
	s.bw.WriteString(text)
	s.bw.WriteString("\r\n")
	s.record(false, text)
	s.problem(r.Problem())
}

// fail sends an error reply that counts toward the error limits.
func (s *session) fail(r outcome.Reply) {
	s.errors++
	s.send(r)
}

// logReject logs a refusal as Postfix does:
// NOQUEUE: reject: RCPT from host[ip]: 554 5.7.1 ...; from=<> to=<> proto=ESMTP helo=<h>
func (s *session) logReject(what string, r outcome.Reply) {
	s.logRejectTo(what, r, "")
}

// actions are what access tables and policy servers asked for a message
// besides accepting it (PREPEND, HOLD, DISCARD, REDIRECT, BCC).
type actions struct {
	prepend       []string
	hold, discard bool
	redirect      string
	bcc           []string
}

// acts is where an action asked for now goes: the transaction's, or
// before one the session's.
func (s *session) acts() *actions {
	if s.txn.active {
		return &s.txn.act
	}
	return &s.pre
}

// logAction logs an access table's or policy server's WARN or INFO as
// Postfix does: "NOQUEUE: warn: RCPT from host[ip]: text; from=<…> …".
func (s *session) logAction(what, text, rcpt string) {
	id := "NOQUEUE"
	if s.txn.msg != nil {
		id = s.txn.msg.ID()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s: %s from %s: %s;", id, what, s.lastCmd, s.namaddr(), printable(text))
	if s.txn.active {
		fmt.Fprintf(&b, " from=<%s>", printable(s.txn.sender))
	}
	if rcpt != "" {
		fmt.Fprintf(&b, " to=<%s>", printable(rcpt))
	}
	fmt.Fprintf(&b, " proto=%s", s.proto())
	if s.helo != "" {
		fmt.Fprintf(&b, " helo=<%s>", s.helo)
	}
	s.srv.log.Infof("%s", b.String())
}

func (s *session) logRejectTo(what string, r outcome.Reply, rcpt string) {
	if what == "reject" && r.Problem() == 0 {
		s.problem(outcome.Policy)
	}
	id := "NOQUEUE"
	if s.txn.msg != nil {
		id = s.txn.msg.ID()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s: %s from %s: %s", id, what, s.lastCmd, s.namaddr(), r)
	if s.txn.active {
		fmt.Fprintf(&b, "; from=<%s>", printable(s.txn.sender))
	} else {
		b.WriteString(";")
	}
	if rcpt != "" {
		fmt.Fprintf(&b, " to=<%s>", printable(rcpt))
	}
	fmt.Fprintf(&b, " proto=%s", s.proto())
	if s.helo != "" {
		fmt.Fprintf(&b, " helo=<%s>", s.helo)
	}
	s.srv.log.Infof("%s", b.String())
}

func (s *session) proto() string {
	p := "SMTP"
	if s.esmtp {
		p = "ESMTP"
	}
	if s.tls != nil {
		p += "S"
	}
	return p
}

// startTLS runs the server side of the TLS handshake on the connection
// and continues the session over it.
func (s *session) startTLS() error {
	tc := tls.Server(s.conn, s.srv.tls)
	// Bounded by smtpd_timeout and by a hard stop (which closes the
	// connection), not by s.ctx: a reload or a soft stop lets a session
	// finish, and a handshake the client already believes complete (TLS
	// 1.3 clients finish before the server reads their Finished) must not
	// be cut off under it.
	_ = tc.SetDeadline(time.Now().Add(s.srv.p.SmtpdTimeout))
	if err := tc.Handshake(); err != nil {
		return err
	}
	_ = tc.SetDeadline(time.Time{})
	cs := tc.ConnectionState()
	s.tls = &cs
	s.ccert = s.srv.clientCert(cs)
	s.conn = tc
	s.tc = s.srv.timed(tc)
	rw := s.tc
	// The plain-text buffers are done with (what they held before the
	// handshake is thrown away).
	putReader(s.br)
	putWriter(s.bw)
	s.br = newReader(rw)
	s.bw = newWriter(rw)
	s.srv.log.Infof("Anonymous TLS connection established from %s: %s", s.namaddr(), tlsutil.Describe(cs))
	return nil
}

// cmdStarttls is STARTTLS (RFC 3207). Whatever the client sent after it
// before the handshake is thrown away: commands injected in plain text
// must not run inside the encrypted session.
func (s *session) cmdStarttls(arg string) outcome.Reply {
	switch {
	case s.srv.tls == nil || s.stdio:
		return replyNotImpl
	case arg != "":
		return outcome.New(501, "5.5.4", "Syntax: STARTTLS")
	case s.tls != nil:
		return outcome.New(554, "5.5.1", "Error: TLS already active")
	}
	s.send(outcome.New(220, "2.0.0", "Ready to start TLS"))
	if err := s.bw.Flush(); err != nil {
		s.lost(err)
		s.closing = true
		return outcome.Reply{}
	}
	if n := s.br.Buffered(); n > 0 {
		_, _ = s.br.Discard(n)
	}
	if err := s.startTLS(); err != nil {
		s.srv.log.Warnf("TLS handshake failed from %s: %s", s.namaddr(), maillog.Clip(err.Error(), 200))
		s.srv.log.Infof("lost connection after STARTTLS from %s", s.namaddr())
		s.closing = true
		return outcome.Reply{}
	}
	// The session starts over: the client must say EHLO again.
	s.abortTxn()
	s.helo, s.esmtp = "", false
	return outcome.Reply{}
}

// needTLS is smtpd_tls_security_level = encrypt before STARTTLS.
func (s *session) needTLS() bool {
	return s.srv.tlsLevel == "encrypt" && s.tls == nil && !s.stdio
}

var replyNeedTLS = outcome.New(530, "5.7.0", "Must issue a STARTTLS command first")

func (s *session) inMynetworks() (bool, error) {
	if s.mynets == 0 {
		ok, err := s.srv.mynetworks.match(s.clientAddr, s.clientName)
		if err != nil {
			return false, err
		}
		s.mynets = -1
		if ok {
			s.mynets = 1
		}
	}
	return s.mynets > 0, nil
}

// command runs one command line.
func (s *session) command(line string) {
	verb, arg, _ := strings.Cut(line, " ")
	arg = strings.TrimLeft(arg, " ")
	uverb := strings.ToUpper(verb)
	cmd, known := cmdByName[uverb]
	if !known {
		cmd = cmdUnknown
		s.lastCmd = "UNKNOWN"
	} else {
		s.lastCmd = uverb
	}
	switch cmd {
	case cmdAuth:
		// Never a credential in a transcript.
		mech, _, _ := strings.Cut(arg, " ")
		s.record(true, verb+" "+mech)
	case cmdEhlo, cmdRset:
		s.chatReset(s.srv.p.SmtpdHistoryFlushThreshold)
		fallthrough
	default:
		s.record(true, line)
	}
	if s.srv.p.SmtpdForbidUnauthPipelining && lastInGroup[cmd] && s.br.Buffered() > 0 && !s.stdio {
		s.counts[cmd][1]++
		next, _ := s.br.Peek(min(s.br.Buffered(), 100))
		s.srv.log.Infof("improper command pipelining after %s from %s: %q", uverb, s.namaddr(), next)
		s.send(replySync)
		s.closing = true
		return
	}
	var r outcome.Reply
	switch {
	case s.needTLS() && (cmd == cmdMail || cmd == cmdRcpt || cmd == cmdData || cmd == cmdBdat || cmd == cmdAuth || cmd == cmdVrfy || cmd == cmdEtrn):
		s.counts[cmd][1]++
		s.fail(replyNeedTLS)
		return
	}
	switch cmd {
	case cmdHelo:
		r = s.cmdHelo(arg, false)
	case cmdEhlo:
		r = s.cmdHelo(arg, true)
	case cmdMail:
		r = s.cmdMail(arg)
	case cmdRcpt:
		r = s.cmdRcpt(arg)
	case cmdData:
		r = s.cmdData(arg)
	case cmdBdat:
		r = s.cmdBdat(arg)
	case cmdRset:
		s.junkCommand()
		s.abortTxn()
		r = replyOK
	case cmdNoop:
		s.junkCommand()
		r = replyOK
	case cmdVrfy:
		s.junkCommand()
		r = s.cmdVrfy(arg)
	case cmdQuit:
		r = replyBye
		s.closing = true
	case cmdStarttls:
		r = s.cmdStarttls(arg)
		if r.Code == 0 {
			s.counts[cmd][1]++
			if s.tls != nil {
				s.counts[cmd][0]++
			}
			return
		}
	case cmdEtrn:
		r = s.cmdEtrn(arg)
	case cmdAuth:
		r = s.cmdAuth(arg)
	default:
		r = replyUnknown
	}
	s.counts[cmd][1]++
	if r.Code == 0 {
		// The command sent its own reply (DATA, BDAT, or a session
		// ending in the middle).
		return
	}
	if r.OK() {
		s.counts[cmd][0]++
		s.send(r)
	} else {
		s.fail(r)
	}
}

// junkCommand counts NOOP, RSET and VRFY: past smtpd_junk_command_limit
// each one is an error, so a client cannot idle forever with them.
func (s *session) junkCommand() {
	s.junk++
	if s.junk > s.srv.p.SmtpdJunkCommandLimit {
		s.errors++
	}
}

func (s *session) cmdHelo(arg string, ehlo bool) outcome.Reply {
	name := strings.TrimSpace(arg)
	if name == "" {
		if ehlo {
			return outcome.New(501, "", "Syntax: EHLO hostname")
		}
		return outcome.New(501, "", "Syntax: HELO hostname")
	}
	if f := strings.Fields(name); len(f) > 0 {
		name = f[0]
	}
	if len(name) > 255 {
		name = name[:255]
	}
	s.abortTxn()
	s.helo = name
	s.esmtp = ehlo
	if !s.srv.p.SmtpdDelayReject {
		if r := s.srv.check.stageCheck(s, classHelo, s.srv.check.helo); r != nil {
			s.logReject("reject", *r)
			return *r
		}
	}
	if !ehlo {
		return outcome.New(250, "", s.hostname())
	}
	p := s.srv.p
	lines := []string{s.hostname(), "PIPELINING"}
	if s.srv.tls != nil && s.tls == nil && !s.stdio {
		lines = append(lines, "STARTTLS")
	}
	if mechs := s.authMechanisms(); len(mechs) > 0 {
		lines = append(lines, "AUTH "+strings.Join(mechs, " "))
	}
	if p.MessageSizeLimit > 0 {
		lines = append(lines, "SIZE "+strconv.Itoa(p.MessageSizeLimit))
	} else {
		lines = append(lines, "SIZE")
	}
	if !p.DisableVrfyCommand {
		lines = append(lines, "VRFY")
	}
	if s.srv.flush != nil && !s.stdio {
		lines = append(lines, "ETRN")
	}
	lines = append(lines, "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING")
	var out []string
	for i, l := range lines {
		kw, _, _ := strings.Cut(l, " ")
		if i > 0 && discarded(p.SmtpdDiscardEhloKeywords, kw) {
			continue
		}
		out = append(out, l)
	}
	for i, l := range out {
		sep := "-"
		if i == len(out)-1 {
			sep = " "
		}
		s.bw.WriteString("250" + sep + l + "\r\n")
		s.record(false, "250"+sep+l)
	}
	s.counts[cmdEhlo][0]++
	return outcome.Reply{}
}

func discarded(list []string, kw string) bool {
	for _, d := range list {
		if strings.EqualFold(d, kw) {
			return true
		}
	}
	return false
}

func (s *session) cmdMail(arg string) outcome.Reply {
	p := s.srv.p
	if s.helo == "" && p.SmtpdHeloRequired {
		return replyNeedHelo
	}
	if s.txn.active {
		return replyNested
	}
	if s.connReject != nil {
		return *s.connReject
	}
	if len(arg) < 5 || !strings.EqualFold(arg[:5], "FROM:") {
		return replyMailSyntax
	}
	rest := strings.TrimLeft(arg[5:], " \t")
	if rest == "" {
		return replyMailSyntax
	}
	addr, params, ok := parsePath(rest)
	if !ok {
		return replyBadSender
	}
	mp, bad := parseMailParams(params)
	if bad != nil {
		return *bad
	}
	if addr != "" {
		if res, err := s.srv.rw.Resolve(addr, addr); err == nil && res.Error != "" {
			return replyBadSender
		}
	}
	if r := s.checkSpace(mp.size); r != nil {
		return *r
	}
	if p.MessageSizeLimit > 0 && mp.size > int64(p.MessageSizeLimit) {
		s.txn.sender, s.txn.active = addr, true
		s.logReject("reject", replySizeLimit)
		s.txn = txn{}
		return replySizeLimit
	}
	s.txn = txn{active: true, sender: addr, params: mp}
	if !p.SmtpdDelayReject {
		if r := s.srv.check.stageCheck(s, classSender, s.srv.check.sender); r != nil {
			s.logReject("reject", *r)
			s.txn = txn{}
			return *r
		}
	}
	return replyMailOK
}

func (s *session) cmdRcpt(arg string) outcome.Reply {
	p := s.srv.p
	if !s.txn.active {
		return replyNeedMail
	}
	if len(arg) < 3 || !strings.EqualFold(arg[:3], "TO:") {
		return replyRcptSyntax
	}
	rest := strings.TrimLeft(arg[3:], " \t")
	if rest == "" {
		return replyRcptSyntax
	}
	addr, params, ok := parsePath(rest)
	if !ok || addr == "" {
		return replyBadRcpt
	}
	rp, bad := parseRcptParams(params)
	if bad != nil {
		return *bad
	}
	if len(s.txn.rcpts) >= p.SmtpdRecipientLimit {
		s.txn.overshoot++
		if s.txn.overshoot > p.SmtpdRecipientOvershootLimit {
			s.errors++
		}
		s.send(replyTooManyRcpt)
		return outcome.Reply{}
	}
	if !strings.EqualFold(addr, "postmaster") {
		st := &checkState{s: s, rcpt: addr}
		if res, err := st.resolve(); err == nil && res.Error != "" {
			// Malformed as routed (user@, -user, user@1.2.3.4, a..b).
			s.logRejectTo("reject", replyBadRcpt, addr)
			return replyBadRcpt
		}
		if r := s.srv.check.rcptCheck(st); r != nil {
			s.logRejectTo("reject", *r, addr)
			return *r
		}
	}
	s.txn.rcpts = append(s.txn.rcpts, queue.Recipient{Addr: addr, ORCPT: rp.orcpt, Notify: rp.notify})
	return replyRcptOK
}

// cmdEtrn is ETRN (RFC 1985): release the deferred mail of a
// fast_flush_domains site for delivery now. The replies are Postfix's
// texts (with enhanced codes, as ENHANCEDSTATUSCODES promises).
func (s *session) cmdEtrn(arg string) outcome.Reply {
	srv := s.srv
	f := strings.Fields(arg)
	switch {
	case srv.flush == nil:
		return replyNotImpl
	case s.helo == "" && srv.p.SmtpdHeloRequired:
		return replyNeedHelo
	case s.txn.active:
		return outcome.New(503, "5.5.1", "Error: MAIL transaction in progress")
	case len(f) != 1:
		return outcome.New(500, "5.5.4", "Syntax: ETRN domain")
	}
	site := strings.TrimLeft(f[0][:1], "@#") + f[0][1:]
	if !validHelo(site) {
		return outcome.New(501, "5.5.4", "Error: invalid parameter syntax")
	}
	if s.stdio {
		srv.log.Warnf("do not use ETRN in \"sendmail -bs\" mode")
		return outcome.New(458, "4.3.0", "Unable to queue messages")
	}
	if r := srv.check.etrnCheck(s, site); r != nil {
		s.logReject("reject", *r)
		return *r
	}
	_, err := srv.flush(site)
	switch {
	case err == nil:
		return outcome.New(250, "2.0.0", "Queuing started")
	case errors.Is(err, flush.ErrDenied):
		srv.log.Warnf("reject: ETRN %s... from %s", maillog.Clip(printable(site), 100), s.namaddr())
		return reply(459, "4.3.0", "<%s>: service unavailable", printable(site))
	default:
		srv.log.Warnf("ETRN %s: %v", maillog.Clip(printable(site), 100), err)
		return outcome.New(458, "4.3.0", "Unable to queue messages")
	}
}

func (s *session) cmdVrfy(arg string) outcome.Reply {
	if s.srv.p.DisableVrfyCommand {
		return replyVrfyOff
	}
	arg = strings.TrimSpace(arg)
	if arg == "" {
		return replyVrfySyntax
	}
	addr, _, ok := parsePath(arg)
	if !ok || addr == "" {
		return replyBadRcpt
	}
	// As Postfix does, VRFY answers what RCPT TO would: relay control
	// and the recipient restrictions run, so VRFY neither probes other
	// sites through us nor says more than RCPT would.
	st := &checkState{s: s, rcpt: addr}
	if res, err := st.resolve(); err == nil && res.Error != "" {
		s.logRejectTo("reject", replyBadRcpt, addr)
		return replyBadRcpt
	}
	if r := s.srv.check.rcptCheck(st); r != nil {
		s.logRejectTo("reject", *r, addr)
		return *r
	}
	return outcome.New(252, "2.0.0", arg)
}

// abortTxn drops the transaction (RSET, HELO, end of session), and a
// half-written BDAT message with it.
func (s *session) abortTxn() {
	if s.txn.msg != nil {
		s.txn.msg.Abort()
	}
	s.txn = txn{}
}

// startMessage runs the data restrictions and opens the queue file;
// a reply with a code refuses.
func (s *session) startMessage() (Message, *outcome.Reply) {
	if !s.txn.active {
		return nil, &replyNeedRcpt
	}
	if len(s.txn.rcpts) == 0 {
		return nil, &replyNoValidRcpt
	}
	if r := s.srv.check.stageCheck(s, classData, s.srv.check.data); r != nil {
		s.logReject("reject", *r)
		return nil, r
	}
	m, err := s.srv.queue.Open(s.envelope())
	if err != nil {
		r := s.cleanupReply(err)
		s.logReject("reject", r)
		return nil, &r
	}
	if s.saslUser != "" {
		s.srv.log.Infof("%s: client=%s, sasl_method=%s, sasl_username=%s", m.ID(), s.namaddr(), s.saslMethod, s.saslUser)
	} else {
		s.srv.log.Infof("%s: client=%s", m.ID(), s.namaddr())
	}
	return m, nil
}

// cleanupReply turns a cleanup refusal into a reply; anything else is an
// internal error whose text the client never sees.
func (s *session) cleanupReply(err error) outcome.Reply {
	var r outcome.Reply
	if errors.As(err, &r) {
		return r
	}
	s.srv.log.Warnf("%s: %v", s.namaddr(), err)
	return cleanup.ErrWrite
}

func (s *session) envelope() cleanup.Envelope {
	t := s.txn
	attrs := map[string]string{
		"client_name":         s.clientName,
		"reverse_client_name": s.reverseName,
		"client_address":      s.clientAddr.String(),
		"helo_name":           s.helo,
		"protocol_name":       s.proto(),
		"rewrite_context":     "remote",
	}
	if s.clientPort != "" {
		attrs["client_port"] = s.clientPort
	}
	if s.saslUser != "" {
		attrs["sasl_method"], attrs["sasl_username"] = s.saslMethod, s.saslUser
	}
	if t.params.body != "" {
		attrs["body_type"] = t.params.body
	}
	if t.params.smtputf8 {
		attrs["smtputf8"] = "yes"
	}
	if t.params.envid != "" {
		attrs["envelope_id"] = t.params.envid
	}
	if t.params.ret != "" {
		attrs["ret_flags"] = t.params.ret
	}
	local := s.localHeaders()
	if local {
		attrs["rewrite_context"] = "local"
	}
	rcpts := append([]queue.Recipient(nil), t.rcpts...)
	return cleanup.Envelope{
		Sender:       t.sender,
		Recipients:   rcpts,
		Attrs:        attrs,
		Arrival:      time.Now(),
		Prepend:      append(append([]string(nil), s.pre.prepend...), t.act.prepend...),
		Hold:         s.pre.hold || t.act.hold,
		Discard:      s.pre.discard || t.act.discard,
		Redirect:     cmp.Or(t.act.redirect, s.pre.redirect),
		Bcc:          append(append([]string(nil), s.pre.bcc...), t.act.bcc...),
		Received:     s.received,
		LocalHeaders: local,
	}
}

// localHeaders: the client is in local_header_rewrite_clients, so cleanup
// completes the header as for local mail.
func (s *session) localHeaders() bool {
	srv := s.srv
	switch {
	case s.stdio || srv.localHeaderAll:
		return true
	case srv.localHeaderInet && srv.rw.IsOwnAddress(s.clientAddr):
		return true
	case srv.localHeaderMynet:
		if mine, _ := s.inMynetworks(); mine {
			return true
		}
	}
	ok, _ := srv.localHeaderClients.match(s.clientAddr, s.clientName)
	return ok
}

// received is smtpd's Received: header (without the field name).
func (s *session) received(id string) string {
	var b strings.Builder
	clientInfo := s.clientName + " [" + s.clientAddr.String() + "]"
	if s.helo != "" {
		fmt.Fprintf(&b, "from %s (%s)", s.helo, clientInfo)
	} else {
		fmt.Fprintf(&b, "from %s", clientInfo)
	}
	date := time.Now().Format("Mon, 2 Jan 2006 15:04:05 -0700 (MST)")
	if s.tls != nil {
		fmt.Fprintf(&b, "\n\t(using %s)", tlsutil.Describe(*s.tls))
	}
	// RFC 3848: ESMTPS with TLS, ESMTPSA with TLS and AUTH, ESMTPA
	// with AUTH alone.
	with := s.proto()
	if s.saslUser != "" && s.esmtp {
		with += "A"
	}
	fmt.Fprintf(&b, "\n\tby %s (%s) with %s id %s", s.hostname(), s.srv.p.MailName, with, id)
	if len(s.txn.rcpts) == 1 {
		fmt.Fprintf(&b, "\n\tfor <%s>; %s", printable(s.txn.rcpts[0].Addr), date)
	} else {
		fmt.Fprintf(&b, ";\n\t%s", date)
	}
	return b.String()
}

func (s *session) cmdData(arg string) outcome.Reply {
	if !s.txn.active {
		return replyNeedRcpt
	}
	if arg != "" {
		return replyDataSyntax
	}
	if s.txn.msg != nil {
		// DATA after BDAT chunks: RFC 3030 forbids mixing them.
		s.abortTxn()
		return outcome.New(503, "5.5.1", "Error: DATA after BDAT")
	}
	m, bad := s.startMessage()
	if bad != nil {
		return *bad
	}
	s.send(replyData)
	if err := s.bw.Flush(); err != nil {
		m.Abort()
		s.lost(err)
		s.closing = true
		return outcome.Reply{}
	}
	body := &content{w: m, limit: int64(s.srv.p.MessageSizeLimit)}
	defer body.release()
	s.beginRequest(true)
	if err := body.readData(s.br, s.policy); err != nil {
		m.Abort()
		s.lastCmd = fmt.Sprintf("DATA (%d bytes)", body.size)
		s.lost(err)
		s.closing = true
		s.txn = txn{}
		return outcome.Reply{}
	}
	s.lastCmd = "END-OF-MESSAGE"
	s.txn.msg = m
	r := s.finishMessage(m, body)
	s.txn = txn{}
	if r.OK() {
		s.counts[cmdData][0]++
		s.send(r)
	} else if !s.closing {
		s.fail(r)
	}
	return outcome.Reply{}
}

// finishMessage ends a message read through DATA or BDAT.
func (s *session) finishMessage(m Message, body *content) outcome.Reply {
	if body.bareLF {
		s.sawLF = true
		if s.rejectLF != 0 {
			m.Abort()
			s.bareLFReject(m.ID() + ": ")
			return outcome.Reply{Code: s.rejectLF}
		}
	}
	if body.tooBig {
		m.Reject(cleanup.ErrTooBig)
	} else if r := s.srv.check.stageCheck(s, classData, s.srv.check.eod); r != nil {
		m.Abort()
		s.logReject("reject", *r)
		return *r
	}
	if err := m.Finish(); err != nil {
		r := s.cleanupReply(err)
		s.logReject("reject", r)
		return r
	}
	s.chatReset(s.srv.p.SmtpdHistoryFlushThreshold)
	return outcome.New(250, "2.0.0", "Ok: queued as "+m.ID())
}

func (s *session) cmdBdat(arg string) outcome.Reply {
	f := strings.Fields(arg)
	var size int64
	var err error
	if len(f) >= 1 {
		size, err = strconv.ParseInt(f[0], 10, 64)
	}
	last := len(f) == 2 && strings.EqualFold(f[1], "LAST")
	if len(f) < 1 || len(f) > 2 || err != nil || size < 0 || (len(f) == 2 && !last) {
		// The chunk's end is unknown: the session cannot go on.
		s.send(replyBdatSyntax)
		s.closing = true
		return outcome.Reply{}
	}
	if size == 0 && !last {
		// Nothing to read, and nothing gained: Postfix's answer.
		return outcome.New(551, "5.7.1", "Null BDAT request")
	}
	if limit := int64(s.srv.p.MessageSizeLimit); limit > 0 && s.txn.chunked+size > limit+limit/2 {
		// Far past the limit: reading on would only feed the client.
		s.abortTxn()
		s.send(replyTooBig)
		s.closing = true
		return outcome.Reply{}
	}
	s.beginRequest(true)
	discard := func(r outcome.Reply) outcome.Reply {
		c := &content{}
		if err := c.readChunk(s.br, size, false); err != nil {
			s.lost(err)
			s.closing = true
			return outcome.Reply{}
		}
		return r
	}
	if s.txn.bdatErr != nil {
		r := *s.txn.bdatErr
		if last {
			s.txn = txn{}
		}
		return discard(r)
	}
	if s.txn.msg == nil {
		m, bad := s.startMessage()
		if bad != nil {
			if s.txn.active && last {
				s.txn = txn{}
			} else if s.txn.active {
				s.txn.bdatErr = bad
			}
			return discard(*bad)
		}
		s.txn.msg = m
		s.txn.body = &content{w: m, limit: int64(s.srv.p.MessageSizeLimit)}
	}
	m, body := s.txn.msg, s.txn.body
	if err := body.readChunk(s.br, size, last); err != nil {
		s.lastCmd = fmt.Sprintf("BDAT (%d bytes)", body.size)
		s.lost(err)
		s.closing = true
		return outcome.Reply{}
	}
	s.txn.chunked += size
	if !last {
		return outcome.New(250, "2.0.0", fmt.Sprintf("Ok: %d bytes", s.txn.chunked))
	}
	s.lastCmd = "END-OF-MESSAGE"
	total := s.txn.chunked
	r := s.finishMessage(m, body)
	s.txn = txn{}
	if r.OK() {
		r.Text = fmt.Sprintf("Ok: %d bytes queued as %s", total, m.ID())
		s.counts[cmdBdat][0]++
		s.send(r)
	} else if !s.closing {
		s.fail(r)
	}
	return outcome.Reply{}
}
