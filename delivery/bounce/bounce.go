// Package bounce is Postfix's bounce/defer service: it turns the
// per-recipient status logs that delivery agents leave (bounce/ID,
// defer/ID) into notices for the sender: non-delivery reports and delay
// warnings as RFC 3464 multipart/report messages from MAILER-DAEMON with
// the null sender, queued through cleanup like any other mail.
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
	P       *config.Params
	Cleanup *cleanup.Cleanup
	Log     *maillog.Logger // tagged bounce
}

// NonDelivery returns failed recipients to the sender.
func (s *Service) NonDelivery(f *queue.File, failed []queue.Status) error {
	return s.send(f, failed, queue.NotifyFailure, false)
}

// DelayWarning tells the sender that recipients are still being retried.
func (s *Service) DelayWarning(f *queue.File, delayed []queue.Status) error {
	return s.send(f, delayed, queue.NotifyDelay, true)
}

func (s *Service) send(f *queue.File, entries []queue.Status, want int, delay bool) error {
	entries = slices.DeleteFunc(slices.Clone(entries), func(e queue.Status) bool {
		return e.Notify != 0 && e.Notify&want == 0
	})
	if len(entries) == 0 {
		return nil
	}
	p := s.P
	to, kind := f.Sender, "sender non-delivery notification"
	if delay {
		kind = "sender delay notification"
	}
	if f.Sender == "" || isDoubleBounce(f.Sender, p) {
		if delay {
			return nil
		}
		if isDoubleBounce(f.Sender, p) || !(slices.Contains(p.NotifyClasses, "bounce") || slices.Contains(p.NotifyClasses, "2bounce")) {
			s.Log.Infof("%s: undeliverable postmaster notification discarded", f.ID)
			return nil
		}
		to, kind = p.TwoBounceNoticeRecipient, "postmaster non-delivery notification"
	}
	sender := ""
	if f.Sender == "" {
		sender = p.DoubleBounceSender
	}
	var body bytes.Buffer
	if err := s.compose(&body, f, entries, to, delay); err != nil {
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
	s.Log.Infof("%s: %s: %s", f.ID, kind, msg.ID())
	return nil
}

func isDoubleBounce(addr string, p *config.Params) bool {
	local, _, _ := strings.Cut(addr, "@")
	return strings.EqualFold(local, p.DoubleBounceSender)
}

// compose writes the notice.
func (s *Service) compose(w *bytes.Buffer, f *queue.File, entries []queue.Status, to string, delay bool) error {
	p := s.P
	host := p.Myhostname
	boundary := fmt.Sprintf("%s.%d/%s", f.ID, time.Now().Unix(), host)
	subject := "Undelivered Mail Returned to Sender"
	if delay {
		subject = "Delayed Mail (still being retried)"
	}
	fmt.Fprintf(w, "From: Mail Delivery System <MAILER-DAEMON@%s>\n", host)
	fmt.Fprintf(w, "Subject: %s\n", subject)
	fmt.Fprintf(w, "To: %s\n", to)
	w.WriteString("Auto-Submitted: auto-replied\n")
	w.WriteString("MIME-Version: 1.0\n")
	fmt.Fprintf(w, "Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"%s\"\n", boundary)
	w.WriteString("Content-Transfer-Encoding: 8bit\n\n")
	w.WriteString("This is a MIME-encapsulated message.\n\n")

	fmt.Fprintf(w, "--%s\nContent-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n\n", boundary)
	fmt.Fprintf(w, "This is the mail system at host %s.\n\n", host)
	if delay {
		w.WriteString("####################################################################\n")
		w.WriteString("# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n")
		w.WriteString("####################################################################\n\n")
		fmt.Fprintf(w, "Your message could not be delivered for more than %s. It will\nbe retried until it is %s old.\n\n",
			human(time.Since(f.Arrival)), human(p.MaximalQueueLifetime))
	} else {
		w.WriteString("I'm sorry to have to inform you that your message could not\n")
		w.WriteString("be delivered to one or more recipients. It's attached below.\n\n")
	}
	w.WriteString("For further assistance, please send mail to postmaster.\n\n")
	w.WriteString("If you do so, please include this problem report. You can\n")
	w.WriteString("delete your own text from the attached returned message.\n\n")
	w.WriteString("                   The mail system\n\n")
	for _, e := range entries {
		who := "<" + e.Recipient + ">"
		if e.Original != "" && !strings.EqualFold(e.Original, e.Recipient) {
			who += " (expanded from <" + e.Original + ">)"
		}
		w.WriteString(wrap(who+": "+e.Reason, 79, "    ") + "\n\n")
	}

	fmt.Fprintf(w, "--%s\nContent-Description: Delivery report\nContent-Type: message/delivery-status\n\n", boundary)
	fmt.Fprintf(w, "Reporting-MTA: dns; %s\n", host)
	fmt.Fprintf(w, "X-Postfix-Queue-ID: %s\n", f.ID)
	fmt.Fprintf(w, "X-Postfix-Sender: rfc822; %s\n", f.Sender)
	fmt.Fprintf(w, "Arrival-Date: %s\n", f.Arrival.Format(time.RFC1123Z))
	if envid := f.Attr("envelope_id"); envid != "" {
		fmt.Fprintf(w, "Original-Envelope-Id: %s\n", envid)
	}
	for _, e := range entries {
		fmt.Fprintf(w, "\nFinal-Recipient: rfc822; %s\n", e.Recipient)
		if e.ORCPT != "" {
			fmt.Fprintf(w, "Original-Recipient: %s\n", e.ORCPT)
		} else if e.Original != "" {
			fmt.Fprintf(w, "Original-Recipient: rfc822;%s\n", e.Original)
		}
		action := e.Action
		if action == "" {
			action = "failed"
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
		if delay {
			fmt.Fprintf(w, "Will-Retry-Until: %s\n", f.Arrival.Add(p.MaximalQueueLifetime).Format(time.RFC1123Z))
		}
	}

	headersOnly := f.Attr("ret_flags") == "HDRS" || f.ContentSize > int64(p.BounceSizeLimit)
	if headersOnly {
		fmt.Fprintf(w, "\n--%s\nContent-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n\n", boundary)
	} else {
		fmt.Fprintf(w, "\n--%s\nContent-Description: Undelivered Message\nContent-Type: message/rfc822\n\n", boundary)
	}
	fmt.Fprintf(w, "Return-Path: <%s>\n", f.Sender)
	if err := copyOriginal(w, f.Content(), headersOnly); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n--%s--\n", boundary)
	return nil
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

func human(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d.Hours()))
	case d >= 2*time.Minute:
		return fmt.Sprintf("%d minutes", int(d.Minutes()))
	}
	return fmt.Sprintf("%d seconds", int(d.Seconds()))
}
