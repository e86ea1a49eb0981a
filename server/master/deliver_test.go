package master

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailsrv/internal/testutil"
)

// deliveryDaemon starts the daemon with an smtpd on loopback and the
// given extra configuration, and returns its folder and SMTP address.
func deliveryDaemon(t *testing.T, extra string) (dir, addr string, stop func()) {
	t.Helper()
	return deliveryDaemonWith(t, extra, nil)
}

func deliveryDaemonWith(t *testing.T, extra string, opts func(*Options)) (dir, addr string, stop func()) {
	t.Helper()
	return deliveryDaemonAt(t, t.TempDir(), extra, opts)
}

// deliveryDaemonAt is deliveryDaemonWith in a folder the test prepared.
func deliveryDaemonAt(t *testing.T, dir, extra string, opts func(*Options)) (_, addr string, stop func()) {
	t.Helper()
	addr = testutil.FreeAddr(t)
	cfg := fmt.Sprintf(`
queue_directory = "spool"
maillog_file = "maillog"
myhostname = "mx.example.test"
mydomain = "example.test"
mynetworks = ["127.0.0.1/32"]
smtpd_peername_lookup = false
mailsrv_stop_timeout = "5s"
%s
%s

[[service]]
name = "smtp"
type = "inet"
listen = %q
command = "smtpd"
process_limit = 20
`, noDNS(extra), extra, addr)
	file := filepath.Join(dir, "mailsrv.toml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	queueDir, done := startDaemonWith(t, file, opts)
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		if _, err := Call(queueDir, Request{Cmd: "stop"}, 10*time.Second); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(stop)
	return dir, addr, stop
}

// noDNS points DNS nowhere unless the test brings its own server: tests
// never reach the internet.
func noDNS(extra string) string {
	if strings.Contains(extra, "mailsrv_dns_servers") {
		return ""
	}
	return `mailsrv_dns_servers = ["127.0.0.1:1"]`
}

func send(t *testing.T, addr, from string, to []string, body string) {
	t.Helper()
	c, err := gosmtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SendMail(from, to, strings.NewReader(body)); err != nil {
		t.Fatalf("send to %v: %v", to, err)
	}
	c.Quit()
}

// maildirFiles lists the messages in a Maildir's new/.
func maildirFiles(dir string) []string {
	ents, _ := os.ReadDir(filepath.Join(dir, "new"))
	var out []string
	for _, e := range ents {
		out = append(out, filepath.Join(dir, "new", e.Name()))
	}
	return out
}

// eventuallyLog is eventually with the daemon's mail log shown when
// the wait fails.
func eventuallyLog(t *testing.T, dir, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; mail log:\n%s", what, readLog(dir))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func readLog(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "maillog"))
	return string(b)
}

// virtualConfig is the configuration of virtual(8) mailboxes under vmail/
// (maps: the virtual_mailbox_maps entries), owned by this process's user.
func virtualConfig(maps string) string {
	return fmt.Sprintf(`
alias_maps = []
virtual_mailbox_domains = ["virt.example"]
virtual_mailbox_base = "vmail"
virtual_mailbox_maps = ["inline:{ %s }"]
virtual_uid_maps = ["static:%d"]
virtual_gid_maps = ["static:%d"]
virtual_minimum_uid = 0
`, maps, os.Geteuid(), os.Getegid())
}

func queueEmpty(dir string) bool { return queueCount(dir) == 0 }

// TestVirtualDelivery: SMTP in, Maildir and mbox out through virtual(8);
// an unknown mailbox bounces and the notice reaches the sender's Maildir;
// discard and error transports; every step logged as Postfix does.
func TestVirtualDelivery(t *testing.T) {
	t.Parallel()
	dir, addr, stop := deliveryDaemon(t, virtualConfig("a@virt.example=virt.example/a/, b@virt.example=virt.example/b.mbox, postmaster@virt.example=virt.example/pm/")+`
# Let unknown mailboxes in, so that virtual(8) bounces them.
smtpd_reject_unlisted_recipient = false
transport_maps = ["inline:{ {gone@virt.example=error:5.1.1 this user is gone}, {void@virt.example=discard:thrown away} }"]
`)
	if err := os.MkdirAll(filepath.Join(dir, "vmail"), 0o755); err != nil {
		t.Fatal(err)
	}
	send(t, addr, "b@virt.example", []string{"a@virt.example", "b@virt.example"}, "Subject: one\r\n\r\nFrom the start\r\nbody\r\n")
	send(t, addr, "a@virt.example", []string{"nobody@virt.example"}, "Subject: two\r\n\r\nlost\r\n")
	send(t, addr, "a@virt.example", []string{"gone@virt.example", "void@virt.example"}, "Subject: three\r\n\r\nx\r\n")

	amaildir := filepath.Join(dir, "vmail", "virt.example", "a")
	// a gets message one, and two bounces (nobody@, gone@).
	eventuallyLog(t, dir, "three messages in a's Maildir", func() bool { return len(maildirFiles(amaildir)) == 3 })
	eventuallyLog(t, dir, "the queue to drain", func() bool { return queueEmpty(dir) })
	var one, notices []string
	for _, f := range maildirFiles(amaildir) {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), "Subject: one") {
			one = append(one, string(b))
		} else {
			notices = append(notices, string(b))
		}
	}
	if len(one) != 1 || !strings.HasPrefix(one[0], "Return-Path: <b@virt.example>\nX-Original-To: a@virt.example\nDelivered-To: a@virt.example\n") {
		t.Errorf("a's copy of message one: %q", one)
	}
	for _, want := range []string{"nobody@virt.example", "gone@virt.example"} {
		found := false
		for _, n := range notices {
			if strings.Contains(n, "Final-Recipient: rfc822; "+want) {
				found = true
				for _, part := range []string{"Return-Path: <>", "From: MAILER-DAEMON@mx.example.test (Mail Delivery System)",
					"Subject: Undelivered Mail Returned to Sender", "Content-Type: multipart/report; report-type=delivery-status;",
					"Action: failed", "Content-Type: message/rfc822"} {
					if !strings.Contains(n, part) {
						t.Errorf("notice for %s lacks %q:\n%s", want, part, n)
					}
				}
			}
		}
		if !found {
			t.Errorf("no non-delivery notice for %s among %d notices", want, len(notices))
		}
	}
	mbox, err := os.ReadFile(filepath.Join(dir, "vmail", "virt.example", "b.mbox"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^From b@virt.example  \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\nReturn-Path: <b@virt.example>\nX-Original-To: b@virt.example\nDelivered-To: b@virt.example\n`).Match(mbox) ||
		!strings.Contains(string(mbox), "\n>From the start\n") || !strings.HasSuffix(string(mbox), "body\n\n") {
		t.Errorf("mbox:\n%s", mbox)
	}
	stop()
	log := readLog(dir)
	for _, re := range []string{
		`qmgr\[\d+\]: \w+: from=<b@virt.example>, size=\d+, nrcpt=2 \(queue active\)`,
		`virtual\[\d+\]: \w+: to=<a@virt.example>, relay=virtual, delay=[\d.]+, delays=[\d.]+/[\d.]+/[\d.]+/[\d.]+, dsn=2.0.0, status=sent \(delivered to maildir\)`,
		`virtual\[\d+\]: \w+: to=<b@virt.example>, relay=virtual, .* dsn=2.0.0, status=sent \(delivered to mailbox\)`,
		`virtual\[\d+\]: \w+: to=<nobody@virt.example>, relay=virtual, .* dsn=5.1.1, status=bounced \(unknown user: "nobody@virt.example"\)`,
		`error\[\d+\]: \w+: to=<gone@virt.example>, relay=none, .* dsn=5.1.1, status=bounced \(this user is gone\)`,
		`discard\[\d+\]: \w+: to=<void@virt.example>, relay=none, .* dsn=2.0.0, status=sent \(thrown away\)`,
		`bounce\[\d+\]: \w+: sender non-delivery notification: \w+`,
		`qmgr\[\d+\]: \w+: from=<>, size=\d+, nrcpt=1 \(queue active\)`,
		`qmgr\[\d+\]: \w+: removed`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("mail log lacks %s:\n%s", re, log)
		}
	}
}

// TestExpiryBounces: a message a transport keeps deferring is retried on
// the backoff schedule; after delay_warning_time the sender is warned once;
// at maximal_queue_lifetime the message is returned to its sender with the
// last reason, and removed.
func TestExpiryBounces(t *testing.T) {
	t.Parallel()
	dir, addr, stop := deliveryDaemon(t, virtualConfig("a@virt.example=a/")+`
relay_domains = ["slow.example"]
transport_maps = ["inline:{ {slow.example=retry:4.4.1 the far end is down} }"]
minimal_backoff_time = "1s"
maximal_backoff_time = "1s"
queue_run_delay = "1s"
maximal_queue_lifetime = "3s"
delay_warning_time = "1s"
`)
	if err := os.MkdirAll(filepath.Join(dir, "vmail"), 0o755); err != nil {
		t.Fatal(err)
	}
	send(t, addr, "a@virt.example", []string{"x@slow.example"}, "Subject: doomed\r\n\r\nx\r\n")
	amaildir := filepath.Join(dir, "vmail", "a")
	eventuallyLog(t, dir, "two notices in the sender's Maildir", func() bool { return len(maildirFiles(amaildir)) == 2 })
	eventuallyLog(t, dir, "the queue to drain", func() bool { return queueEmpty(dir) })
	stop()
	var ndr, warning string
	for _, f := range maildirFiles(amaildir) {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), "Subject: Delayed Mail (still being retried)") {
			warning = string(b)
		} else {
			ndr = string(b)
		}
	}
	for _, want := range []string{"Subject: Undelivered Mail Returned to Sender", "<x@slow.example>: the far end is down",
		"Final-Recipient: rfc822; x@slow.example", "Action: failed", "Status: 4.4.1", "Subject: doomed"} {
		if !strings.Contains(ndr, want) {
			t.Errorf("notice lacks %q:\n%s", want, ndr)
		}
	}
	for _, want := range []string{"THIS IS A WARNING ONLY", "Action: delayed", "Will-Retry-Until: "} {
		if !strings.Contains(warning, want) {
			t.Errorf("delay warning lacks %q:\n%s", want, warning)
		}
	}
	// Both parse as RFC 3464 reports.
	for _, n := range parseMbox(t, amaildir) {
		r := map[string]string{}
		if len(n.Recipients) == 1 {
			r = n.Recipients[0]
		}
		switch n.Subject {
		case "Delayed Mail (still being retried)":
			if r["Action"] != "delayed" || r["Status"] != "4.4.1" || r["Will-Retry-Until"] == "" || len(n.Parts) != 3 || n.Parts[2] != "text/rfc822-headers" {
				t.Errorf("delay warning: %+v", n)
			}
		case "Undelivered Mail Returned to Sender":
			if r["Action"] != "failed" || r["Status"] != "4.4.1" || r["Diagnostic-Code"] != "X-Postfix; the far end is down" || len(n.Parts) != 3 || n.Parts[2] != "message/rfc822" {
				t.Errorf("non-delivery notice: %+v", n)
			}
		default:
			t.Errorf("unexpected notice %q", n.Subject)
		}
	}
	log := readLog(dir)
	attempts := strings.Count(log, "to=<x@slow.example>, relay=none")
	if attempts < 2 || attempts > 5 {
		t.Errorf("%d attempts in a 3s lifetime with 1s backoff, want 2 to 5:\n%s", attempts, log)
	}
	for _, re := range []string{
		`qmgr\[\d+\]: (\w+): from=<a@virt.example>, status=expired, returned to sender`,
		`bounce\[\d+\]: \w+: sender non-delivery notification: \w+`,
		`bounce\[\d+\]: \w+: sender delay notification: \w+`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("mail log lacks %s:\n%s", re, log)
		}
	}
}
