// Package cleanup is Postfix's cleanup: the only writer of new queue files.
// It rewrites the envelope (canonical addresses, canonical maps, virtual
// alias expansion), streams the content into the queue file as it arrives
// while it fixes up the header (Received on top, Return-Path and the other
// message_drop_headers removed, Date, Message-ID and From added when
// missing for local submissions, the hop count checked), and makes the file
// durable before it answers with the queue ID. Only then may smtpd say
// "250 2.0.0 Ok: queued as ID".
package cleanup

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"mailsrv/config"
	"mailsrv/maillog"
	"mailsrv/outcome"
	"mailsrv/queue"
	"mailsrv/rewrite"
)

// Replies of cleanup_strerror.c: a refusal is an outcome.Reply, with the
// notify_classes class of the problem where the code does not say it.
var (
	ErrWrite    = outcome.New(451, "4.3.0", "Error: queue file write error").WithClass(outcome.Resource)
	ErrTooBig   = outcome.New(552, "5.3.4", "Error: message file too big")
	ErrHops     = outcome.New(554, "5.4.0", "Error: too many hops")
	ErrAlias    = outcome.New(451, "4.6.0", "Alias expansion error")
	ErrNoRcpt   = outcome.New(554, "5.5.1", "Error: no valid recipients")
	ErrInternal = outcome.New(451, "4.3.0", "Error: internal error").WithClass(outcome.Software)
)

// Envelope is what the caller knows before the content.
type Envelope struct {
	Sender     string
	FullName   string // sendmail -F, for an added From:
	Recipients []queue.Recipient
	// Attrs are recorded in the queue file (client_name,
	// client_address, helo_name, protocol_name, sasl_method, …).
	Attrs   map[string]string
	Arrival time.Time
	// Create, when set, is the base of retry backoff and expiry if it
	// differs from Arrival (a requeued message restarts its clock).
	Create time.Time
	// Hold puts the message on hold, Discard accepts it and throws it
	// away, Redirect replaces its recipients with one, Bcc adds
	// recipients: what smtpd's access tables and policy servers asked for
	// (HOLD, DISCARD, REDIRECT, BCC).
	Hold, Discard bool
	Redirect      string
	Bcc           []string
	// Prepend are header lines ("Name: value") put above everything,
	// the Received header too: what smtpd's access tables and policy
	// servers asked for with PREPEND, in their order.
	Prepend []string
	// Received builds the Received: header the caller prepends (without
	// the "Received: " name), given the new queue ID, as smtpd and pickup
	// write it.
	Received func(queueID string) string
	// LocalHeaders: the client is in the local header rewrite context
	// (local_header_rewrite_clients), so missing headers are added.
	LocalHeaders bool
	// Flush: the operator asked for this message to go now (postsuper
	// -r), as postqueue -f asks for the deferred queue.
	Flush bool
}

// Cleanup holds one configuration's rewriting rules and queue.
type Cleanup struct {
	p   *config.Params
	q   *queue.Queue
	rw  *rewrite.Rewriter
	log *maillog.Logger
	// wake tells qmgr about new mail (may be nil).
	wake func()
}

// New returns a cleanup for a configuration.
func New(p *config.Params, q *queue.Queue, rw *rewrite.Rewriter, log *maillog.Logger, wake func()) *Cleanup {
	return &Cleanup{p: p, q: q, rw: rw, log: log, wake: wake}
}

// Message is a message being written.
type Message struct {
	c   *Cleanup
	w   *queue.Writer
	env Envelope

	inHeader  bool
	cur       bytes.Buffer // the logical header being read
	curCut    bool         // cur reached header_size_limit
	line      []byte       // partial line carried between writes (header phase)
	received  int
	seen      map[string]bool
	messageID string
	resent    bool
	err       *outcome.Reply // the refusal Finish returns
	size      int64
}

// Open rewrites the envelope and creates the queue file; its ID is known
// from now on (smtpd logs "ID: client=..."). The caller then writes the
// content and calls Finish, or Abort.
func (c *Cleanup) Open(env Envelope) (*Message, error) {
	if env.Arrival.IsZero() {
		env.Arrival = time.Now()
	}
	sender := env.Sender
	if sender != "" {
		sender = c.rw.Canonicalize(sender, rewrite.Local)
		s, err := c.rw.Canonical(sender, rewrite.EnvelopeSender)
		if err != nil {
			return nil, ErrInternal
		}
		sender = s
	}
	if env.Redirect != "" {
		// Every recipient goes to the one address (the DSN original
		// recipient is kept as it was).
		var orcpt string
		if len(env.Recipients) > 0 {
			orcpt = env.Recipients[0].ORCPT
		}
		env.Recipients = []queue.Recipient{{Addr: env.Redirect, ORCPT: orcpt}}
	}
	for _, b := range env.Bcc {
		env.Recipients = append(env.Recipients, queue.Recipient{Addr: b})
	}
	var rcpts []queue.Recipient
	seen := map[string]bool{}
	for _, r := range env.Recipients {
		orig := r.Addr
		addr := c.rw.Canonicalize(r.Addr, rewrite.Local)
		addr, err := c.rw.Canonical(addr, rewrite.EnvelopeRecipient)
		if err != nil {
			return nil, ErrInternal
		}
		expanded, err := c.rw.ExpandVirtual(addr)
		if err != nil {
			var ee *rewrite.ExpansionError
			if errors.As(err, &ee) {
				c.log.Warnf("%s", ee.Reason)
			}
			return nil, ErrAlias
		}
		for _, a := range expanded {
			key := strings.ToLower(a) + "\x00" + r.ORCPT
			if seen[key] {
				continue
			}
			if len(seen) < c.p.DuplicateFilterLimit {
				seen[key] = true
			}
			nr := queue.Recipient{Addr: a, ORCPT: r.ORCPT, Notify: r.Notify}
			if c.p.EnableOriginalRecipient {
				nr.Orig = orig
			}
			rcpts = append(rcpts, nr)
		}
	}
	if len(rcpts) == 0 {
		return nil, ErrNoRcpt
	}
	w, err := c.q.Create(queue.Incoming, env.Arrival)
	if err != nil {
		c.log.Warnf("create queue file: %v", err)
		return nil, ErrWrite
	}
	if env.Flush {
		w.SetUnthrottle()
	}
	if env.Hold {
		w.SetHold()
	}
	if !env.Create.IsZero() {
		w.SetCreateTime(env.Create)
	}
	if d := c.p.DelayWarningTime; d > 0 {
		w.SetWarnTime(env.Arrival.Add(d))
	}
	for _, name := range sortedKeys(env.Attrs) {
		w.SetAttr(name, env.Attrs[name])
	}
	w.SetSender(sender)
	for _, r := range rcpts {
		w.AddRecipient(r)
	}
	env.Sender = sender
	m := &Message{c: c, w: w, env: env, inHeader: true, seen: map[string]bool{}}
	for _, h := range env.Prepend {
		m.put([]byte(strings.NewReplacer("\r", " ", "\n", " ").Replace(h) + "\n"))
	}
	if env.Received != nil {
		m.put([]byte("Received: " + env.Received(w.ID()) + "\n"))
	}
	return m, nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// ID is the queue ID of the message.
func (m *Message) ID() string { return m.w.ID() }

// Size is the content size written so far.
func (m *Message) Size() int64 { return m.size }

func (m *Message) put(b []byte) {
	n, _ := m.w.Write(b)
	m.size += int64(n)
}

// Write takes message content with LF line ends (smtpd has removed the
// CRs of CRLF and the dot-stuffing). It never fails: an error is kept and
// reported by Finish, so the caller reads the client's data to the end.
func (m *Message) Write(p []byte) (int, error) {
	n := len(p)
	limit := m.c.p.HeaderSizeLimit
	for len(p) > 0 && m.inHeader {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if len(m.line)+len(chunk) > limit && !m.lineIsHeader(append(m.line, chunk...)) {
			// A line this long that is not a header: the body starts
			// here, and nothing of it may be lost.
			m.endHeaders()
			m.body(m.line)
			m.line = nil
			break
		}
		m.line = appendCapped(m.line, chunk, limit+1)
		if i < 0 {
			return n, nil
		}
		p = p[i+1:]
		m.headerLine(m.line)
		m.line = m.line[:0]
	}
	if len(p) > 0 {
		m.body(p)
	}
	return n, nil
}

// lineIsHeader reports whether a (partial) line belongs to the header: a
// continuation line, or the start of a header field.
func (m *Message) lineIsHeader(line []byte) bool {
	if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') && m.cur.Len() > 0 {
		return true
	}
	_, ok := isHeaderStart(line)
	return ok
}

func appendCapped(dst, src []byte, limit int) []byte {
	if room := limit - len(dst); room < len(src) {
		if room <= 0 {
			return dst
		}
		src = src[:room]
	}
	return append(dst, src...)
}

// body copies body bytes, turning stray CRs into spaces
// (cleanup_replace_stray_cr_lf) so they cannot end a line downstream.
func (m *Message) body(p []byte) {
	if m.c.p.CleanupReplaceStrayCRLF && bytes.IndexByte(p, '\r') >= 0 {
		p = bytes.ReplaceAll(p, []byte{'\r'}, []byte{' '})
	}
	m.put(p)
}

// isHeaderStart reports whether a line begins a header field: a name of
// printable characters without a colon, then a colon.
func isHeaderStart(line []byte) (name string, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return "", false
	}
	for _, c := range line[:i] {
		if c <= ' ' || c > '~' {
			return "", false
		}
	}
	return strings.ToLower(string(line[:i])), true
}

// headerLine takes one physical line of the header section.
func (m *Message) headerLine(line []byte) {
	if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') && m.cur.Len() > 0 {
		m.appendHeader(line)
		return
	}
	m.flushHeader()
	if _, ok := isHeaderStart(line); ok {
		m.appendHeader(line)
		return
	}
	// An empty line, or text that is not a header: the body starts here.
	m.endHeaders()
	if len(line) > 0 {
		m.body(line)
	}
	m.body([]byte{'\n'})
}

// appendHeader adds a line to the current header; what goes past
// header_size_limit is dropped, as Postfix does.
func (m *Message) appendHeader(line []byte) {
	limit := m.c.p.HeaderSizeLimit
	if m.cur.Len() > 0 {
		if m.cur.Len()+1 > limit {
			m.curCut = true
			return
		}
		m.cur.WriteByte('\n')
	}
	if room := limit - m.cur.Len(); len(line) > room {
		line = line[:max(room, 0)]
		m.curCut = true
	}
	m.cur.Write(line)
}

// flushHeader writes the completed logical header, unless it is dropped.
func (m *Message) flushHeader() {
	if m.cur.Len() == 0 {
		return
	}
	h := m.cur.Bytes()
	name, _ := isHeaderStart(h)
	if m.curCut {
		m.c.log.Infof("%s: header %s exceeds header_size_limit (%d bytes): the excess was dropped", m.ID(), name, m.c.p.HeaderSizeLimit)
	}
	m.cur.Reset()
	m.curCut = false
	switch {
	case name == "received":
		m.received++
	case strings.HasPrefix(name, "resent-"):
		m.resent = true
	}
	m.seen[name] = true
	if name == "message-id" && m.messageID == "" {
		m.messageID = strings.TrimSpace(string(h[len("message-id:"):]))
	}
	if slices.Contains(m.c.p.MessageDropHeaders, name) {
		return
	}
	if m.c.p.CleanupReplaceStrayCRLF {
		h = bytes.ReplaceAll(h, []byte{'\r'}, []byte{' '})
	}
	m.put(h)
	m.put([]byte{'\n'})
}

// endHeaders adds the missing headers and checks the hop count.
func (m *Message) endHeaders() {
	if !m.inHeader {
		return
	}
	m.flushHeader()
	m.inHeader = false
	p := m.c.p
	if m.received+1 > p.HopcountLimit && m.err == nil {
		m.err = &ErrHops
	}
	if m.env.LocalHeaders || p.AlwaysAddMissingHeaders {
		prefix := ""
		if m.resent {
			prefix = "Resent-"
		}
		if !m.seen[strings.ToLower(prefix)+"message-id"] {
			m.messageID = "<" + m.ID() + "@" + p.Myhostname + ">"
			m.put([]byte(prefix + "Message-Id: " + m.messageID + "\n"))
		}
		if !m.seen[strings.ToLower(prefix)+"date"] {
			m.put([]byte(prefix + "Date: " + m.env.Arrival.Format("Mon, 2 Jan 2006 15:04:05 -0700 (MST)") + "\n"))
		}
		if !m.seen[strings.ToLower(prefix)+"from"] {
			from := m.env.Sender
			if from == "" {
				from = "MAILER-DAEMON"
			}
			if m.env.FullName != "" {
				from = fmt.Sprintf("%s <%s>", quotePhrase(m.env.FullName), from)
			}
			m.put([]byte(prefix + "From: " + from + "\n"))
		}
	}
	if m.messageID != "" {
		m.c.log.Infof("%s: message-id=%s", m.ID(), m.messageID)
	} else {
		m.c.log.Infof("%s: message-id=<>", m.ID())
	}
}

// quotePhrase quotes a display name that needs it.
func quotePhrase(s string) string {
	if !strings.ContainsAny(s, "()<>[]:;@\\,.\"") {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// Reject marks the message as refused (the caller's own policy, e.g. the
// size limit); Finish then removes it and returns err.
func (m *Message) Reject(err outcome.Reply) {
	if m.err == nil {
		m.err = &err
	}
}

// Finish completes the message: the header is closed if the content ended
// inside it, the file is made durable, and qmgr is woken. On any refusal or
// failure the file is removed and the error carries the SMTP reply.
func (m *Message) Finish() error {
	if m.inHeader {
		if len(m.line) > 0 {
			m.headerLine(m.line)
			m.line = nil
		}
		if m.inHeader {
			m.endHeaders()
			m.body([]byte{'\n'})
		}
	}
	if m.err != nil {
		m.w.Abort()
		return *m.err
	}
	if m.env.Discard {
		// Accepted, and thrown away: the client hears 250 as if it
		// were queued (Postfix's DISCARD).
		m.w.Abort()
		return nil
	}
	if err := m.w.Commit(); err != nil {
		m.c.log.Warnf("%s: %v", m.ID(), err)
		return ErrWrite
	}
	if m.c.wake != nil {
		m.c.wake()
	}
	return nil
}

// Abort discards the message.
func (m *Message) Abort() { m.w.Abort() }
