package master

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailsrv/queue"
	"mailsrv/server/pickup"
)

// sendDSN sends one message with DSN NOTIFY on every recipient (nil: no
// NOTIFY) and, when utf8 is set, with SMTPUTF8.
func sendDSN(t *testing.T, addr, from string, to []string, notify []gosmtp.DSNNotify, utf8 bool, body string) {
	t.Helper()
	c, err := gosmtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(from, &gosmtp.MailOptions{UTF8: utf8}); err != nil {
		t.Fatalf("MAIL FROM:<%s>: %v", from, err)
	}
	for _, r := range to {
		if err := c.Rcpt(r, &gosmtp.RcptOptions{Notify: notify}); err != nil {
			t.Fatalf("RCPT TO:<%s>: %v", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(w, body)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
}

// notice is what Python's email package makes of one notice.
type notice struct {
	Subject       string              `json:"subject"`
	To            string              `json:"to"`
	From          string              `json:"from"`
	AutoSubmitted string              `json:"auto_submitted"`
	References    string              `json:"references"`
	ReportType    string              `json:"report_type"`
	Parts         []string            `json:"parts"`
	Text          string              `json:"text"`
	PerMessage    map[string]string   `json:"per_message"`
	Recipients    []map[string]string `json:"recipients"`
	Original      string              `json:"original"`
}

// parseMbox has Python's mailbox and email packages read an mbox (or a
// Maildir) and describe the notices in it (messages from MAILER-DAEMON).
func parseMbox(t *testing.T, path string) []notice {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is needed to parse the notices")
	}
	const script = `
import json, mailbox, sys, email.policy
out = []
import os
box = mailbox.Maildir(sys.argv[1], factory=None) if os.path.isdir(sys.argv[1]) else mailbox.mbox(sys.argv[1], factory=None)
for m in box:
    msg = email.message_from_bytes(m.as_bytes(), policy=email.policy.default)
    if 'MAILER-DAEMON' not in str(msg['From']):
        continue
    n = {'subject': str(msg['Subject']), 'to': str(msg['To']), 'from': str(msg['From']),
         'auto_submitted': str(msg['Auto-Submitted']), 'references': str(msg['References'] or ''),
         'report_type': msg.get_param('report-type') or '', 'parts': [], 'text': '',
         'per_message': {}, 'recipients': [], 'original': ''}
    for i, part in enumerate(msg.iter_parts()):
        ct = part.get_content_type()
        n['parts'].append(ct)
        if i == 0:
            n['text'] = part.get_content()
        elif ct == 'message/delivery-status':
            blocks = part.get_payload()
            n['per_message'] = {k: str(v) for k, v in blocks[0].items()}
            n['recipients'] = [{k: str(v) for k, v in b.items()} for b in blocks[1:]]
        elif ct == 'message/global-delivery-status':
            # Python has no parser for it: blocks of fields, as text.
            pl = part.get_payload()
            raw = '\n'.join(x.as_string() for x in pl) if isinstance(pl, list) else str(pl)
            blocks = [b for b in raw.strip().split('\n\n')]
            def fields(b):
                d = {}
                for line in b.splitlines():
                    k, _, v = line.partition(':')
                    d[k.strip()] = v.strip()
                return d
            n['per_message'] = fields(blocks[0])
            n['recipients'] = [fields(b) for b in blocks[1:]]
        else:
            pl = part.get_payload()
            n['original'] = '\n'.join(x.as_string() for x in pl) if isinstance(pl, list) else str(pl)
    out.append(n)
print(json.dumps(out))
`
	b, err := exec.Command(py, "-c", script, path).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, b)
	}
	var out []notice
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("python output: %v\n%s", err, b)
	}
	return out
}

// TestNotices: each case makes exactly the notices Postfix would, and
// they parse as RFC 3464 reports: a 5xx at RCPT, a 5xx after DATA, an
// unknown local user after alias expansion, NOTIFY=SUCCESS through a
// next hop without DSN (relayed), with DSN (its business: no notice) and
// to a mailbox (delivered), NOTIFY=NEVER (nothing), SMTPUTF8 mail (RFC
// 6533 forms), postmaster copies (notify_classes bounce), and a bounce of
// a null-sender message (to the postmaster once, never back).
func TestNotices(t *testing.T) {
	t.Parallel()
	uid, gid, privs := mailUID()
	base := t.TempDir()
	users := makeUsers(t, base, uid, gid, "alice", "pm")
	spool, site := localSite(t, base, "postmaster pm\nlist alice, ghost\n", privs)
	_, port := startMXs(t, nil, "mx.dsn.test", "mx.nodsn.test")
	d := startDNS(t, map[string]string{"mx.dsn.test": "127.0.0.2", "mx.nodsn.test": "127.0.0.3"},
		map[string][]string{"dsn.test": {"10 mx.dsn.test"}, "plain.test": {"10 mx.nodsn.test"}})
	dir, addr, stop := localDaemon(t, users, site+fmt.Sprintf(`smtpd_reject_unlisted_recipient = false
mailsrv_dns_servers = [%q]
smtp_tcp_port = %q
notify_classes = ["bounce", "resource", "software"]
`, d.addr, port))

	const me = "alice@mx.example.test"
	success := []gosmtp.DSNNotify{gosmtp.DSNNotifySuccess}
	sendDSN(t, addr, me, []string{"bad@dsn.test"}, nil, false, "Subject: rcpt\r\nMessage-ID: <rcpt.1@client.test>\r\n\r\nx\r\n")
	sendDSN(t, addr, me, []string{"datafail@dsn.test"}, nil, false, "Subject: data\r\n\r\nx\r\n")
	sendDSN(t, addr, me, []string{"list@mx.example.test"}, nil, false, "Subject: list\r\n\r\nx\r\n")
	sendDSN(t, addr, me, []string{"ok@plain.test"}, success, false, "Subject: relayed\r\n\r\nx\r\n")
	sendDSN(t, addr, me, []string{"ok@dsn.test"}, success, false, "Subject: passed on\r\n\r\nx\r\n")
	sendDSN(t, addr, me, []string{"pm@mx.example.test"}, success, false, "Subject: to a mailbox\r\n\r\nx\r\n")
	sendDSN(t, addr, me, []string{"bad2@dsn.test"}, []gosmtp.DSNNotify{gosmtp.DSNNotifyNever}, false, "Subject: never\r\n\r\nx\r\n")
	sendDSN(t, addr, me, []string{"bad3@dsn.test"}, nil, true, "Subject: utf8 Grüße\r\n\r\nx\r\n")
	sendDSN(t, addr, "", []string{"bad4@dsn.test"}, nil, false, "Subject: a bounce itself\r\n\r\nx\r\n")

	// 9 messages; 4 non-delivery notices with 4 postmaster copies, 2
	// success notices, 1 double bounce: 20 removals in all.
	eventuallyLog(t, dir, "every message and notice delivered", func() bool {
		return queueEmpty(dir) && strings.Count(readLog(dir), ": removed") == 20
	})
	stop()
	log := readLog(dir)
	for what, want := range map[string]int{
		"sender non-delivery notification":     4,
		"postmaster non-delivery notification": 5,
		"sender delivery status notification":  2,
		"sender delay notification":            0,
	} {
		if got := len(regexp.MustCompile(`bounce\[\d+\]: \w+: `+what+`: \w+`).FindAllString(log, -1)); got != want {
			t.Errorf("%d %q lines, want %d:\n%s", got, what, want, log)
		}
	}

	bySubject := func(ns []notice, orig string) *notice {
		for i := range ns {
			if strings.Contains(ns[i].Original, orig) || strings.Contains(ns[i].Text, orig) {
				return &ns[i]
			}
		}
		t.Errorf("no notice about %q in %+v", orig, ns)
		return &notice{}
	}
	mine := parseMbox(t, filepath.Join(spool, "alice"))
	if len(mine) != 6 {
		t.Errorf("alice got %d notices, want 6: %+v", len(mine), mine)
	}
	for _, n := range mine {
		if n.From != "MAILER-DAEMON@mx.example.test" /* Python drops the comment */ || n.To != me || n.AutoSubmitted != "auto-replied" || n.ReportType != "delivery-status" {
			t.Errorf("notice header: %+v", n)
		}
		if n.PerMessage["Reporting-MTA"] != "dns; mx.example.test" || n.PerMessage["X-Postfix-Sender"] != "rfc822; "+me || n.PerMessage["Arrival-Date"] == "" {
			t.Errorf("per-message fields: %+v", n.PerMessage)
		}
	}
	check := func(n *notice, subject string, parts []string, rcpt map[string]string, text ...string) {
		t.Helper()
		if n.Subject != subject || strings.Join(n.Parts, " ") != strings.Join(parts, " ") || len(n.Recipients) != 1 {
			t.Errorf("notice %q: %+v", subject, n)
			return
		}
		for k, v := range rcpt {
			if n.Recipients[0][k] != v {
				t.Errorf("notice %q: %s is %q, want %q", subject, k, n.Recipients[0][k], v)
			}
		}
		for _, s := range text {
			if !strings.Contains(strings.Join(strings.Fields(n.Text), " "), s) {
				t.Errorf("notice %q: text lacks %q:\n%s", subject, s, n.Text)
			}
		}
	}
	ndr := []string{"text/plain", "message/delivery-status", "message/rfc822"}
	n := bySubject(mine, "Subject: rcpt")
	check(n, "Undelivered Mail Returned to Sender", ndr, map[string]string{
		"Final-Recipient": "rfc822; bad@dsn.test", "Action": "failed", "Status": "5.1.1",
		"Remote-MTA": "dns; mx.dsn.test", "Diagnostic-Code": "smtp; 550 5.1.1 no such user"},
		"<bad@dsn.test>: host mx.dsn.test[127.0.0.2] said: 550 5.1.1 no such user (in reply to RCPT TO command)")
	if n.References != "<rcpt.1@client.test>" {
		t.Errorf("References: %q", n.References)
	}
	check(bySubject(mine, "Subject: data"), "Undelivered Mail Returned to Sender", ndr, map[string]string{
		"Final-Recipient": "rfc822; datafail@dsn.test", "Action": "failed", "Status": "5.7.1",
		"Diagnostic-Code": "smtp; 554 5.7.1 content refused"}, "(in reply to end of DATA command)")
	check(bySubject(mine, "Subject: list"), "Undelivered Mail Returned to Sender", ndr, map[string]string{
		"Final-Recipient": "rfc822; ghost@mx.example.test", "Original-Recipient": "rfc822;list@mx.example.test",
		"Action": "failed", "Status": "5.1.1"},
		`<ghost@mx.example.test> (expanded from <list@mx.example.test>): unknown user: "ghost"`)
	headers := []string{"text/plain", "message/delivery-status", "text/rfc822-headers"}
	check(bySubject(mine, "Subject: relayed"), "Successful Mail Delivery Report", headers, map[string]string{
		"Final-Recipient": "rfc822; ok@plain.test", "Action": "relayed", "Status": "2.0.0",
		"Remote-MTA": "dns; mx.nodsn.test"}, "Your message was successfully delivered")
	check(bySubject(mine, "Subject: to a mailbox"), "Successful Mail Delivery Report", headers, map[string]string{
		"Final-Recipient": "rfc822; pm@mx.example.test", "Action": "delivered", "Status": "2.0.0"},
		"<pm@mx.example.test>: delivered to mailbox")
	check(bySubject(mine, "Subject: utf8"), "Undelivered Mail Returned to Sender",
		[]string{"text/plain", "message/global-delivery-status", "message/global"}, map[string]string{
			"Final-Recipient": "rfc822; bad3@dsn.test", "Action": "failed", "Status": "5.1.1"})
	for _, n := range mine {
		for _, no := range []string{"passed on", "never", "a bounce itself"} {
			if strings.Contains(n.Original, "Subject: "+no) {
				t.Errorf("a notice about %q, which should have none", no)
			}
		}
	}

	// The postmaster: a headers-only copy of each non-delivery notice, and
	// the bounce of the null-sender message.
	pm := parseMbox(t, filepath.Join(spool, "pm"))
	copies := 0
	for _, n := range pm {
		switch n.Subject {
		case "Postmaster Copy: Undelivered Mail":
			copies++
			if n.AutoSubmitted != "auto-generated" || n.Parts[2] != "text/rfc822-headers" && n.Parts[2] != "message/global-headers" ||
				strings.Contains(n.Text, "I'm sorry") {
				t.Errorf("postmaster copy: %+v", n)
			}
		case "Undelivered Mail Returned to Sender":
			if !strings.Contains(n.Original, "a bounce itself") || n.Recipients[0]["Final-Recipient"] != "rfc822; bad4@dsn.test" {
				t.Errorf("double bounce: %+v", n)
			}
		default:
			t.Errorf("postmaster got %q", n.Subject)
		}
	}
	if copies != 4 || len(pm) != 5 {
		t.Errorf("postmaster got %d copies and %d notices in all, want 4 and 5", copies, len(pm))
	}
}

// TestVerifyReport: sendmail -bv queues a verification request that the
// agents answer without delivering (local expands an alias and decides
// on its members; the smtp client stops after RCPT), logged as
// status=deliverable/undeliverable, and the sender gets one "Mail
// Delivery Status Report" with every recipient. sendmail -v delivers
// and reports the same way.
func TestVerifyReport(t *testing.T) {
	t.Parallel()
	uid, gid, privs := mailUID()
	base := t.TempDir()
	users := makeUsers(t, base, uid, gid, "alice", "bob")
	spool, site := localSite(t, base, "list bob, ghost, far@dsn.test\n", privs)
	// bounce_template_file replaces the reports' wording (verify_template
	// serves -bv and -v, as in Postfix).
	templates := filepath.Join(base, "bounce.cf")
	if err := os.WriteFile(templates, []byte("verify_template = <<END\nSubject: Address check for you\n\nThis is $myhostname checking addresses.\nEND\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mxs, port := startMXs(t, nil, "mx.dsn.test")
	d := startDNS(t, map[string]string{"mx.dsn.test": "127.0.0.2"}, map[string][]string{"dsn.test": {"10 mx.dsn.test"}})
	dir, _, stop := localDaemon(t, users, site+fmt.Sprintf(`mailsrv_dns_servers = [%q]
smtp_tcp_port = %q
bounce_template_file = %q
`, d.addr, port, templates))
	queueDir := filepath.Join(dir, "spool")

	req := pickup.SubmitRequest{Op: "mail", Sender: "alice", SenderSet: true, Verify: true,
		Recipients: []string{"list", "ok@dsn.test", "bad@dsn.test", "nobody"}}
	if _, err := pickup.Submit(queueDir, req, strings.NewReader(""), time.Minute); err != nil {
		t.Fatal(err)
	}
	eventuallyLog(t, dir, "the verification and its report", func() bool {
		return queueEmpty(dir) && strings.Count(readLog(dir), ": removed") == 2
	})
	log := readLog(dir)
	for _, re := range []string{
		`local\[\d+\]: \w+: to=<bob@mx.example.test>, orig_to=<list>, relay=local, .*dsn=2.0.0, status=deliverable \(delivers to mailbox\)`,
		`local\[\d+\]: \w+: to=<ghost@mx.example.test>, orig_to=<list>, relay=local, .*dsn=5.1.1, status=undeliverable \(unknown user: "ghost"\)`,
		`local\[\d+\]: \w+: to=<far@dsn.test>, orig_to=<list>, relay=local, .*status=deliverable \(forwards to far@dsn.test\)`,
		`smtp\[\d+\]: \w+: to=<ok@dsn.test>, relay=mx.dsn.test\[127.0.0.2\]:\d+, .*dsn=2.0.0, status=deliverable \(250 2.0.0 .*\)`,
		`smtp\[\d+\]: \w+: to=<bad@dsn.test>, relay=mx.dsn.test\[127.0.0.2\]:\d+, .*dsn=5.1.1, status=undeliverable \(host mx.dsn.test\[127.0.0.2\] said: 550 5.1.1 no such user \(in reply to RCPT TO command\)\)`,
		`local\[\d+\]: \w+: to=<nobody@mx.example.test>, orig_to=<nobody>, relay=local, .*status=undeliverable \(unknown user: "nobody"\)`,
		`bounce\[\d+\]: \w+: sender delivery status notification: \w+`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("mail log lacks %s:\n%s", re, log)
		}
	}
	if strings.Contains(log, "status=sent") && !strings.Contains(log, "to=<alice@mx.example.test>") {
		t.Errorf("something was delivered:\n%s", log)
	}
	if m := mxs[0].messages(); len(m) != 0 {
		t.Errorf("the MX got a message: %q", m)
	}
	if _, err := os.Stat(filepath.Join(spool, "bob")); err == nil {
		t.Error("bob's mailbox was written")
	}
	if strings.Contains(log, "forwarded as") {
		t.Error("the alias's remote member was forwarded")
	}

	ns := parseMbox(t, filepath.Join(spool, "alice"))
	if len(ns) != 1 {
		t.Fatalf("alice got %d notices, want the one report: %+v", len(ns), ns)
	}
	n := ns[0]
	if n.Subject != "Address check for you" || n.ReportType != "delivery-status" ||
		strings.Join(n.Parts, " ") != "text/plain message/delivery-status text/rfc822-headers" {
		t.Errorf("report: %+v", n)
	}
	if !strings.HasPrefix(n.Text, "This is mx.example.test checking addresses.\n") || !strings.Contains(n.Text, "<ghost@mx.example.test> (expanded from <list>): unknown user:") {
		t.Errorf("report text:\n%s", n.Text)
	}
	got := map[string]string{}
	for _, r := range n.Recipients {
		got[r["Final-Recipient"]] = r["Action"] + " " + r["Status"]
	}
	want := map[string]string{
		"rfc822; bob@mx.example.test":    "deliverable 2.0.0",
		"rfc822; ghost@mx.example.test":  "undeliverable 5.1.1",
		"rfc822; far@dsn.test":           "deliverable 2.0.0",
		"rfc822; ok@dsn.test":            "deliverable 2.0.0",
		"rfc822; bad@dsn.test":           "undeliverable 5.1.1",
		"rfc822; nobody@mx.example.test": "undeliverable 5.1.1",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("report recipients:\n got %v\nwant %v", got, want)
	}

	// sendmail -v: delivered, then the same kind of report.
	req = pickup.SubmitRequest{Op: "mail", Sender: "alice", SenderSet: true, Report: true, Recipients: []string{"bob", "ok@dsn.test"}}
	if _, err := pickup.Submit(queueDir, req, strings.NewReader("Subject: verbose\n\nhi\n"), time.Minute); err != nil {
		t.Fatal(err)
	}
	eventuallyLog(t, dir, "the delivery and its report", func() bool {
		return queueEmpty(dir) && strings.Count(readLog(dir), ": removed") == 4
	})
	stop()
	if m := mxs[0].messages(); len(m) != 1 || !strings.Contains(m[0], "verbose") {
		t.Errorf("the MX got %q", m)
	}
	ns = parseMbox(t, filepath.Join(spool, "alice"))
	if len(ns) != 2 {
		t.Fatalf("alice got %d notices, want 2", len(ns))
	}
	got = map[string]string{}
	for _, r := range ns[1].Recipients {
		got[r["Final-Recipient"]] = r["Action"] + " " + r["Status"]
	}
	want = map[string]string{"rfc822; bob@mx.example.test": "delivered 2.0.0", "rfc822; ok@dsn.test": "relayed 2.0.0"}
	if ns[1].Subject != "Address check for you" || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("-v report %q: got %v, want %v", ns[1].Subject, got, want)
	}
}

// TestBounceFlood: mail from a sender domain that cannot take mail
// (NXDOMAIN, or an MX that refuses connections) to recipients that are
// refused makes one non-delivery notice per message and nothing more:
// the notices are never bounced in turn (null sender: at most the
// postmaster hears, and here notify_classes says not to), so the queue
// never holds more than the messages that caused them, and it empties
// when the undeliverable notices expire at bounce_queue_lifetime.
func TestBounceFlood(t *testing.T) {
	t.Parallel()
	_, port := startMXs(t, nil, "mx.dsn.test")
	d := startDNS(t, map[string]string{"mx.dsn.test": "127.0.0.2", "dead.mx.test": "127.0.0.9"},
		map[string][]string{"dsn.test": {"10 mx.dsn.test"}, "dead.test": {"10 dead.mx.test"}})
	dir, addr, stop := deliveryDaemon(t, fmt.Sprintf(`
alias_maps = []
mailsrv_dns_servers = [%q]
smtp_tcp_port = %q
smtp_connect_timeout = "2s"
minimal_backoff_time = "1s"
maximal_backoff_time = "1s"
queue_run_delay = "1s"
bounce_queue_lifetime = "3s"
`, d.addr, port))
	const n = 10
	for i := range n {
		sendDSN(t, addr, fmt.Sprintf("s%d@dead.test", i), []string{fmt.Sprintf("bad%d@dsn.test", i)}, nil, false, "Subject: flood\r\n\r\nx\r\n")
		sendDSN(t, addr, fmt.Sprintf("s%d@nxdomain.test", i), []string{fmt.Sprintf("bad%d@dsn.test", i)}, nil, false, "Subject: flood\r\n\r\nx\r\n")
	}
	// While it runs the queue never holds more than the 2n messages
	// sent (a notice is made before its original is removed, so one
	// more per delivery agent at most).
	peak := 0
	eventuallyLog(t, dir, "every notice settled and the queue empty", func() bool {
		peak = max(peak, queueCount(dir))
		l := readLog(dir)
		return queueEmpty(dir) && strings.Count(l, "undeliverable postmaster notification discarded") == 2*n
	})
	stop()
	log := readLog(dir)
	if peak > 2*n+2 {
		t.Errorf("the queue held %d messages at its peak, for %d sent", peak, 2*n)
	}
	if got := len(regexp.MustCompile(`sender non-delivery notification: \w+`).FindAllString(log, -1)); got != 2*n {
		t.Errorf("%d non-delivery notices, want one per message (%d)", got, 2*n)
	}
	// Every message the server made is one of those notices: cleanup
	// saw 2n from SMTP and 2n from the bounce service, nothing else.
	if got := strings.Count(log, "message-id="); got != 4*n {
		t.Errorf("cleanup made %d messages, want %d", got, 4*n)
	}
	for _, re := range []string{
		`to=<s0@nxdomain.test>, relay=none, .*status=bounced \(Host or domain name not found`,
		`to=<s0@dead.test>, relay=none, .*status=deferred \(connect to dead.mx.test\[127.0.0.9\]:\d+: Connection refused\)`,
		`from=<>, status=expired, returned to sender`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("mail log lacks %s", re)
		}
	}
}

// queueCount is the number of messages in incoming, active and deferred.
func queueCount(dir string) int {
	q := queue.New(filepath.Join(dir, "spool"), []string{queue.Deferred, queue.DeferLog}, 1)
	n := 0
	for _, name := range []string{queue.Incoming, queue.Active, queue.Deferred} {
		_ = q.Walk(name, func(queue.Entry) error { n++; return nil }, nil)
	}
	return n
}
