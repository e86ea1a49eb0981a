// Package bounce is Postfix's bounce, defer and trace services: it turns
// the per-recipient status logs that delivery agents leave (bounce/ID,
// defer/ID, trace/ID) into notices for the sender: non-delivery reports,
// delay warnings, success notices (NOTIFY=SUCCESS) and the delivery
// reports of sendmail -v and -bv, as RFC 3464 multipart/report messages
// (RFC 6533 forms for SMTPUTF8 mail) from MAILER-DAEMON with the null
// sender, queued through cleanup like any other mail. The postmaster gets
// headers-only copies for the notify_classes bounce and delay.
//
// Loop and backscatter rules: a message with the null sender is never
// bounced to its sender; its failure goes to 2bounce_notice_recipient only
// when notify_classes has bounce or 2bounce, and is otherwise dropped with
// a log line. Recipients whose DSN NOTIFY excludes the notice are left out.
package bounce

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	"slices"
	"strings"
	"time"

	"mailsrv/config"
	"mailsrv/maillog"
	"mailsrv/queue"
	"mailsrv/rewrite/cleanup"
)

// Service sends notices.
type Service struct {
	P         *config.Params
	Cleanup   *cleanup.Cleanup
	Log       *maillog.Logger // tagged bounce
	templates map[string]template
}

// New makes the service, with the templates of bounce_template_file.
func New(p *config.Params, c *cleanup.Cleanup, log *maillog.Logger) (*Service, error) {
	t, err := loadTemplates(p.BounceTemplateFile)
	if err != nil {
		return nil, err
	}
	return &Service{P: p, Cleanup: c, Log: log, templates: t}, nil
}

// notice is one kind of notice: its template and what it carries.
type notice struct {
	template string // bounce(5) template name
	log      string // what the log line calls it
	action   string // the DSN Action of entries that have none
	// postmaster copies carry the headers only, no template text, and
	// are auto-generated rather than auto-replied.
	postmaster bool
	delay      bool // Will-Retry-Until lines
	full       bool // the whole original, unless RET=HDRS or too large
}

var (
	nonDelivery     = notice{template: "failure_template", log: "sender non-delivery notification", action: "failed", full: true}
	nonDeliveryCopy = notice{template: "failure_template", log: "postmaster non-delivery notification", action: "failed", postmaster: true}
	delayWarning    = notice{template: "delay_template", log: "sender delay notification", action: "delayed", delay: true}
	delayCopy       = notice{template: "delay_template", log: "postmaster delay notification", action: "delayed", delay: true, postmaster: true}
	success         = notice{template: "success_template", log: "sender delivery status notification", action: "delivered"}
	report          = notice{template: "verify_template", log: "sender delivery status notification", action: "delivered"}
)

// NonDelivery returns failed recipients to the sender, with a headers-only
// copy to bounce_notice_recipient when notify_classes has bounce.
func (s *Service) NonDelivery(f *queue.File, failed []queue.Status) error {
	failed = wanted(failed, queue.NotifyFailure)
	if len(failed) == 0 {
		return nil
	}
	p := s.P
	if f.Sender == "" || isDoubleBounce(f.Sender, p) {
		// A notice about a notice: never back to its (null) sender.
		if isDoubleBounce(f.Sender, p) || !(slices.Contains(p.NotifyClasses, "bounce") || slices.Contains(p.NotifyClasses, "2bounce")) {
			s.Log.Infof("%s: undeliverable postmaster notification discarded", f.ID)
			return nil
		}
		n := nonDelivery
		n.log = "postmaster non-delivery notification"
		return s.send(f, failed, n, p.TwoBounceNoticeRecipient, p.DoubleBounceSender)
	}
	if err := s.send(f, failed, nonDelivery, f.Sender, ""); err != nil {
		return err
	}
	if slices.Contains(p.NotifyClasses, "bounce") {
		return s.send(f, failed, nonDeliveryCopy, p.BounceNoticeRecipient, p.DoubleBounceSender)
	}
	return nil
}

// DelayWarning tells the sender that recipients are still being retried,
// with a copy to delay_notice_recipient when notify_classes has delay.
func (s *Service) DelayWarning(f *queue.File, delayed []queue.Status) error {
	delayed = wanted(delayed, queue.NotifyDelay)
	if len(delayed) == 0 || f.Sender == "" || isDoubleBounce(f.Sender, s.P) {
		return nil
	}
	if err := s.send(f, delayed, delayWarning, f.Sender, ""); err != nil {
		return err
	}
	if slices.Contains(s.P.NotifyClasses, "delay") {
		return s.send(f, delayed, delayCopy, s.P.DelayNoticeRecipient, s.P.DoubleBounceSender)
	}
	return nil
}

// Success reports delivered recipients to a sender who asked with
// NOTIFY=SUCCESS; requested is set for a report the sender asked for with
// sendmail -v or -bv, which covers every recipient.
func (s *Service) Success(f *queue.File, entries []queue.Status, requested bool) error {
	n := report
	if !requested {
		n = success
		entries = wanted(entries, queue.NotifySuccess)
	}
	if len(entries) == 0 || f.Sender == "" || isDoubleBounce(f.Sender, s.P) {
		return nil
	}
	return s.send(f, entries, n, f.Sender, "")
}

// wanted keeps the entries whose DSN NOTIFY asks for this notice (no
// NOTIFY means failures and delays, as RFC 3461 says).
func wanted(entries []queue.Status, want int) []queue.Status {
	return slices.DeleteFunc(slices.Clone(entries), func(e queue.Status) bool {
		notify := e.Notify
		if notify == 0 {
			notify = queue.NotifyFailure | queue.NotifyDelay
		}
		return notify&want == 0
	})
}

func (s *Service) send(f *queue.File, entries []queue.Status, n notice, to, sender string) error {
	var body bytes.Buffer
	if err := s.compose(&body, f, entries, n, to); err != nil {
		return err
	}
	msg, err := s.Cleanup.Open(cleanup.Envelope{
		Sender:       sender,
		Recipients:   []queue.Recipient{{Addr: to}},
		Attrs:        map[string]string{"rewrite_context": "local"},
		LocalHeaders: true,
	})
	if err != nil {
		return err
	}
	if _, err := msg.Write(body.Bytes()); err != nil {
		msg.Abort()
		return err
	}
	if err := msg.Finish(); err != nil {
		return err
	}
	s.Log.Infof("%s: %s: %s", f.ID, n.log, msg.ID())
	return nil
}

func isDoubleBounce(addr string, p *config.Params) bool {
	local, _, _ := strings.Cut(addr, "@")
	return strings.EqualFold(local, p.DoubleBounceSender)
}

// addrType is the DSN address type: utf-8 (RFC 6533) for an address that
// is not ASCII.
func addrType(a string) string {
	for i := 0; i < len(a); i++ {
		if a[i] >= 0x80 {
			return "utf-8"
		}
	}
	return "rfc822"
}

// compose writes the notice: RFC 3464 multipart/report, or its RFC 6533
// forms (message/global-delivery-status, message/global) when the
// original was sent with SMTPUTF8.
func (s *Service) compose(w *bytes.Buffer, f *queue.File, entries []queue.Status, n notice, to string) error {
	p := s.P
	host := p.Myhostname
	utf8 := f.Attr("smtputf8") != ""
	t, ok := s.templates[n.template]
	if !ok {
		t = builtinTemplates[n.template]
	}
	subject := t.subject
	if n.postmaster && t.pmSubject != "" {
		subject = t.pmSubject
	}
	boundary := fmt.Sprintf("%s.%d/%s", f.ID, time.Now().Unix(), host)
	fmt.Fprintf(w, "From: %s\n", qualify(t.from, p.Myorigin))
	fmt.Fprintf(w, "Subject: %s\n", mime.QEncoding.Encode(strings.ToLower(t.charset), subject))
	fmt.Fprintf(w, "To: %s\n", to)
	if id := messageID(f); id != "" {
		fmt.Fprintf(w, "References: %s\nIn-Reply-To: %s\n", id, id)
	}
	if n.postmaster {
		w.WriteString("Auto-Submitted: auto-generated\n")
	} else {
		w.WriteString("Auto-Submitted: auto-replied\n")
	}
	w.WriteString("MIME-Version: 1.0\n")
	fmt.Fprintf(w, "Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"%s\"\n", boundary)
	w.WriteString("Content-Transfer-Encoding: 8bit\n\n")
	w.WriteString("This is a MIME-encapsulated message.\n\n")

	charset := t.charset
	if utf8 {
		charset = "utf-8"
	}
	fmt.Fprintf(w, "--%s\nContent-Description: Notification\nContent-Type: text/plain; charset=%s\n\n", boundary, charset)
	if !n.postmaster {
		// The postmaster gets the facts, not the letter to the sender
		// (Postfix writes no template text in its copies either).
		w.WriteString(expand(t.text, p) + "\n")
	}
	for _, e := range entries {
		who := "<" + e.Recipient + ">"
		if e.Original != "" && !strings.EqualFold(e.Original, e.Recipient) {
			who += " (expanded from <" + e.Original + ">)"
		}
		w.WriteString(wrap(who+": "+e.Reason, 79, "    ") + "\n\n")
	}

	status := "message/delivery-status"
	if utf8 {
		status = "message/global-delivery-status"
	}
	fmt.Fprintf(w, "--%s\nContent-Description: Delivery report\nContent-Type: %s\n\n", boundary, status)
	fmt.Fprintf(w, "Reporting-MTA: dns; %s\n", host)
	fmt.Fprintf(w, "X-Postfix-Queue-ID: %s\n", f.ID)
	fmt.Fprintf(w, "X-Postfix-Sender: %s; %s\n", addrType(f.Sender), f.Sender)
	fmt.Fprintf(w, "Arrival-Date: %s\n", f.Arrival.Format(time.RFC1123Z))
	if envid := f.Attr("envelope_id"); envid != "" {
		fmt.Fprintf(w, "Original-Envelope-Id: %s\n", envid)
	}
	for _, e := range entries {
		fmt.Fprintf(w, "\nFinal-Recipient: %s; %s\n", addrType(e.Recipient), e.Recipient)
		if e.ORCPT != "" {
			fmt.Fprintf(w, "Original-Recipient: %s\n", e.ORCPT)
		} else if e.Original != "" {
			fmt.Fprintf(w, "Original-Recipient: %s;%s\n", addrType(e.Original), e.Original)
		}
		action := e.Action
		if action == "" {
			action = n.action
		}
		fmt.Fprintf(w, "Action: %s\n", action)
		fmt.Fprintf(w, "Status: %s\n", e.Status)
		if e.MTAName != "" {
			fmt.Fprintf(w, "Remote-MTA: %s; %s\n", e.MTAType, e.MTAName)
		}
		if e.DiagText != "" {
			fmt.Fprintf(w, "Diagnostic-Code: %s; %s\n", e.DiagType, e.DiagText)
		} else {
			fmt.Fprintf(w, "Diagnostic-Code: X-Postfix; %s\n", e.Reason)
		}
		if n.delay {
			fmt.Fprintf(w, "Will-Retry-Until: %s\n", f.Arrival.Add(p.MaximalQueueLifetime).Format(time.RFC1123Z))
		}
	}

	headersOnly := !n.full || f.Attr("ret_flags") == "HDRS" || f.ContentSize > int64(p.BounceSizeLimit)
	what := "Message"
	if n.full {
		what = "Undelivered Message"
	}
	switch {
	case headersOnly && utf8:
		fmt.Fprintf(w, "\n--%s\nContent-Description: %s Headers\nContent-Type: message/global-headers\n\n", boundary, what)
	case headersOnly:
		fmt.Fprintf(w, "\n--%s\nContent-Description: %s Headers\nContent-Type: text/rfc822-headers\n\n", boundary, what)
	case utf8:
		fmt.Fprintf(w, "\n--%s\nContent-Description: %s\nContent-Type: message/global\n\n", boundary, what)
	default:
		fmt.Fprintf(w, "\n--%s\nContent-Description: %s\nContent-Type: message/rfc822\n\n", boundary, what)
	}
	fmt.Fprintf(w, "Return-Path: <%s>\n", f.Sender)
	if err := copyOriginal(w, f.Content(), headersOnly); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n--%s--\n", boundary)
	return nil
}

// messageID is the original's Message-ID, for References: a mail reader
// then shows the notice in the thread of the message it is about.
func messageID(f *queue.File) string {
	br := bufio.NewReader(io.LimitReader(f.Content(), 64<<10))
	for {
		line, err := br.ReadString('\n')
		if line == "\n" || line == "" {
			return ""
		}
		if name, value, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "Message-ID") {
			value = strings.TrimSpace(value)
			if strings.HasPrefix(value, "<") && strings.HasSuffix(value, ">") && !strings.ContainsAny(value, "\r\n") {
				return value
			}
			return ""
		}
		if err != nil {
			return ""
		}
	}
}

// copyOriginal copies the message, or only its header. A line that looks
// like a boundary cannot occur: the boundary holds the queue ID and time.
func copyOriginal(w *bytes.Buffer, r io.Reader, headersOnly bool) error {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if headersOnly && (line == "\n" || line == "") {
			return nil
		}
		w.WriteString(line)
		if err == io.EOF {
			if line != "" && !strings.HasSuffix(line, "\n") {
				w.WriteByte('\n')
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// wrap folds text at width, continuation lines indented.
func wrap(text string, width int, indent string) string {
	var out strings.Builder
	col := 0
	for i, word := range strings.Fields(text) {
		if i > 0 {
			if col+1+len(word) > width {
				out.WriteString("\n" + indent)
				col = len(indent)
			} else {
				out.WriteByte(' ')
				col++
			}
		}
		out.WriteString(word)
		col += len(word)
	}
	return out.String()
}
