package bounce

import (
	"bufio"
	"fmt"
	"net/mail"
	"os"
	"strconv"
	"strings"
	"time"

	"mailsrv/config"
)

// template is one of bounce(5)'s message templates: the notice's
// headers and the text of its first part, before $name expansion.
type template struct {
	charset, from, subject, pmSubject string
	text                              string
}

// Postfix's built-in templates (bounce_template_file unset).
var builtinTemplates = map[string]template{
	"failure_template": {charset: "us-ascii", from: "MAILER-DAEMON (Mail Delivery System)",
		subject: "Undelivered Mail Returned to Sender", pmSubject: "Postmaster Copy: Undelivered Mail",
		text: `This is the mail system at host $myhostname.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system
`},
	"delay_template": {charset: "us-ascii", from: "MAILER-DAEMON (Mail Delivery System)",
		subject: "Delayed Mail (still being retried)", pmSubject: "Postmaster Warning: Delayed Mail",
		text: `This is the mail system at host $myhostname.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

Your message could not be delivered for more than $delay_warning_time_hours hour(s).
It will be retried until it is $maximal_queue_lifetime_days day(s) old.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system
`},
	"success_template": {charset: "us-ascii", from: "MAILER-DAEMON (Mail Delivery System)",
		subject: "Successful Mail Delivery Report",
		text: `This is the mail system at host $myhostname.

Your message was successfully delivered to the destination(s)
listed below. If the message was delivered to mailbox you will
receive no further notifications. Otherwise you may still receive
notifications of mail delivery errors from other systems.

                   The mail system
`},
	"verify_template": {charset: "us-ascii", from: "MAILER-DAEMON (Mail Delivery System)",
		subject: "Mail Delivery Status Report",
		text: `This is the mail system at host $myhostname.

Enclosed is the mail delivery report that you requested.

                   The mail system
`},
}

// templateLimit bounds a template file.
const templateLimit = 1 << 20

// loadTemplates reads bounce_template_file (bounce(5) format: name =
// <<EOF … EOF, each a block of headers, an empty line and the text); the
// templates it leaves out keep Postfix's text. An error names the file
// and line.
func loadTemplates(path string) (map[string]template, error) {
	out := map[string]template{}
	for k, v := range builtinTemplates {
		out[k] = v
	}
	if path == "" {
		return out, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bounce_template_file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err == nil && st.Size() > templateLimit {
		return nil, fmt.Errorf("bounce_template_file: %s is larger than %d bytes", path, templateLimit)
	}
	sc := bufio.NewScanner(f)
	n := 0
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s, line %d: %s", path, n, fmt.Sprintf(format, args...))
	}
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, ok := strings.Cut(line, "=")
		name, rest = strings.TrimSpace(name), strings.TrimSpace(rest)
		base, found := builtinTemplates[name]
		if !ok || !found {
			return nil, bad("expected one of failure_template, delay_template, success_template, verify_template = <<EOF")
		}
		marker, ok := strings.CutPrefix(rest, "<<")
		if marker = strings.TrimSpace(marker); !ok || marker == "" {
			return nil, bad("expected %s = <<MARKER", name)
		}
		var body []string
		closed := false
		for sc.Scan() {
			n++
			if strings.TrimSpace(sc.Text()) == marker {
				closed = true
				break
			}
			body = append(body, sc.Text())
		}
		if !closed {
			return nil, bad("%s: no %s line ends the template", name, marker)
		}
		t, err := parseTemplate(base, body)
		if err != nil {
			return nil, bad("%s: %v", name, err)
		}
		out[name] = t
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("bounce_template_file: %w", err)
	}
	return out, nil
}

// parseTemplate reads a template's headers and text; headers it leaves
// out keep the built-in values.
func parseTemplate(t template, lines []string) (template, error) {
	i := 0
	for ; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
		k, v, ok := strings.Cut(lines[i], ":")
		v = strings.TrimSpace(v)
		if !ok || v == "" {
			return t, fmt.Errorf("header line expected: %q", lines[i])
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "charset":
			t.charset = v
		case "from":
			if _, err := mail.ParseAddress(qualify(v, "example.com")); err != nil {
				return t, fmt.Errorf("From: %v", err)
			}
			t.from = v
		case "subject":
			t.subject = v
		case "postmaster-subject":
			t.pmSubject = v
		default:
			return t, fmt.Errorf("unknown header %q (Charset, From, Subject or Postmaster-Subject)", k)
		}
	}
	if i < len(lines) {
		i++ // the empty line
	}
	t.text = strings.Join(lines[i:], "\n") + "\n"
	if strings.EqualFold(t.charset, "us-ascii") {
		for _, s := range []string{t.text, t.subject, t.pmSubject, t.from} {
			for j := 0; j < len(s); j++ {
				if s[j] >= 0x80 {
					return t, fmt.Errorf("8-bit text with Charset: us-ascii")
				}
			}
		}
	}
	return t, nil
}

// qualify completes the address of a From: header that has no domain
// ("MAILER-DAEMON (Mail Delivery System)").
func qualify(from, domain string) string {
	a, err := mail.ParseAddress(from)
	if err == nil && !strings.Contains(a.Address, "@") {
		return strings.Replace(from, a.Address, a.Address+"@"+domain, 1)
	}
	if err != nil && !strings.Contains(from, "@") {
		if local, comment, ok := strings.Cut(from, " "); ok {
			return local + "@" + domain + " " + comment
		}
		return from + "@" + domain
	}
	return from
}

// expand replaces $name and ${name} in a template's text: the time
// parameters with a unit suffix (delay_warning_time_hours,
// maximal_queue_lifetime_days, … in seconds, minutes, hours, days or
// weeks, rounded down) and any other parameter by its value.
func expand(text string, p *config.Params) string {
	return os.Expand(text, func(name string) string {
		for _, u := range []struct {
			suffix string
			d      time.Duration
		}{{"_seconds", time.Second}, {"_minutes", time.Minute}, {"_hours", time.Hour}, {"_days", 24 * time.Hour}, {"_weeks", 7 * 24 * time.Hour}} {
			if base, ok := strings.CutSuffix(name, u.suffix); ok {
				def, known := config.Lookup(base)
				if v, ok := p.Lookup(base); ok && known && def.Kind == config.KindDuration {
					if d, err := config.ParseDuration(v, def.Unit); err == nil {
						return strconv.FormatInt(int64(d/u.d), 10)
					}
				}
			}
		}
		if v, ok := p.Lookup(name); ok {
			return v
		}
		return "$" + name
	})
}
