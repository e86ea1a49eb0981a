package smtpd

import (
	"fmt"
	"strings"

	"mailsrv/outcome"
	"mailsrv/queue"
	"mailsrv/rewrite/cleanup"
)

// A session with a problem of a notify_classes class the postmaster
// asked for (outcome.Class: a refusal by a restriction is policy, a
// syntax or sequence error protocol, a queue that could not take the
// message resource, an internal error software, a message too big or
// looping bounce) ends with a transcript of the conversation mailed to
// error_notice_recipient, as Postfix's smtpd does: a misconfigured client
// or somebody trying things is worth a look.

// historyLineLimit bounds one transcript line: a client controls what it
// sends.
const historyLineLimit = 1000

// chatLine is one line of the transcript, kept as it was sent or
// received: it is only shaped for mail (prefix, length bound, printable
// bytes) in the rare session that ends with a notice, not on every
// command of every session.
type chatLine struct {
	in   bool
	text string
}

func (l chatLine) String() string {
	prefix, text := "Out: ", l.text
	if l.in {
		prefix = "In:  "
	}
	if len(text) > historyLineLimit {
		text = text[:historyLineLimit] + "..."
	}
	return prefix + safeText(text)
}

// record adds a line to the transcript.
func (s *session) record(in bool, line string) {
	if s.srv.notify == 0 || s.stdio {
		return
	}
	s.history = append(s.history, chatLine{in, line})
}

// safeText replaces what is not printable ASCII with '?' (Postfix's
// printable()): a transcript is mail, and the client chose the bytes.
func safeText(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] < ' ' || b[j] > '~' {
					b[j] = '?'
				}
			}
			return string(b)
		}
	}
	return s
}

// problem marks the session with a problem class.
func (s *session) problem(class outcome.Class) { s.problems |= class }

// chatReset starts a new transcript once the current one is longer than
// threshold lines (smtpd_history_flush_threshold at EHLO, RSET and end of
// DATA; 0 at the end of the session), mailing it first when it saw a
// problem the postmaster wants to hear of.
func (s *session) chatReset(threshold int) {
	if len(s.history) <= threshold {
		return
	}
	if s.problems&s.srv.notify != 0 {
		s.notifyPostmaster()
	}
	s.problems = 0
	s.history = s.history[:0]
}

// notifyPostmaster mails the transcript, from the double-bounce sender so
// that a failure of this notice is never bounced (Postfix does the same).
func (s *session) notifyPostmaster() {
	p := s.srv.p
	to := p.ErrorNoticeRecipient
	m, err := s.srv.queue.Open(cleanup.Envelope{
		Sender:       p.DoubleBounceSender + "@" + p.Myorigin,
		Recipients:   []queue.Recipient{{Addr: to}},
		Attrs:        map[string]string{"rewrite_context": "local"},
		LocalHeaders: true,
	})
	if err != nil {
		s.srv.log.Warnf("postmaster notify: %v", err)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s (Mail Delivery System)\n", "MAILER-DAEMON@"+p.Myorigin)
	fmt.Fprintf(&b, "To: %s (Postmaster)\n", to)
	fmt.Fprintf(&b, "Subject: %s SMTP server: errors from %s\n", p.MailName, s.namaddr())
	b.WriteString("Auto-Submitted: auto-generated\n\nTranscript of session follows.\n\n")
	for _, l := range s.history {
		writeWrapped(&b, l.String(), 78, 4)
	}
	b.WriteString("\nFor other details, see the local mail logfile\n")
	if _, err := m.Write([]byte(b.String())); err != nil {
		m.Abort()
		s.srv.log.Warnf("postmaster notify: %v", err)
		return
	}
	if err := m.Finish(); err != nil {
		s.srv.log.Warnf("postmaster notify: %v", err)
	}
}

// writeWrapped writes a line folded at width columns, continuation lines
// indented (line_wrap() in Postfix); every line starts with a space, as
// Postfix does with text that came from outside.
func writeWrapped(b *strings.Builder, line string, width, indent int) {
	first := true
	for {
		pad := " "
		if !first {
			pad = " " + strings.Repeat(" ", indent)
		}
		room := width - len(pad)
		if len(line) <= room {
			b.WriteString(pad + line + "\n")
			return
		}
		cut := strings.LastIndexByte(line[:room], ' ')
		if cut <= 0 {
			cut = room
		}
		b.WriteString(pad + strings.TrimRight(line[:cut], " ") + "\n")
		line = strings.TrimLeft(line[cut:], " ")
		first = false
	}
}
