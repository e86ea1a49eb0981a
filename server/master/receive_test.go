package master

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailsrv/internal/testutil"
	"mailsrv/queue"
	"mailsrv/server/pickup"
)

// TestDaemonReceives runs the real daemon with an smtpd service and takes
// mail in all three ways: SMTP, the submission socket (sendmail), and
// maildrop while the daemon is down (picked up when it starts).
func TestDaemonReceives(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "mailsrv.toml")
	addr := testutil.FreeAddr(t)
	cfg := fmt.Sprintf(`
queue_directory = "spool"
maillog_file = "maillog"
myhostname = "mx.example.test"
mydomain = "example.test"
mynetworks = ["127.0.0.1/32"]
alias_maps = []
local_recipient_maps = ["inline:{ alice=x, bob=x }"]
# Deliveries are another test's business: keep the mail queued.
local_transport = "retry:held by the test"
smtpd_peername_lookup = false
mailsrv_stop_timeout = "5s"
mailsrv_dns_servers = ["127.0.0.1:1"]

[[service]]
name = "smtp"
type = "inet"
listen = %q
command = "smtpd"
process_limit = 10
`, addr)
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	queueDir, done := startDaemon(t, file)
	q := queue.New(queueDir, []string{queue.Deferred, queue.DeferLog}, 1)
	// local_transport defers everything, so messages stay queued:
	// count them wherever qmgr put them.
	incoming := func() int {
		n := 0
		for _, name := range []string{queue.Incoming, queue.Active, queue.Deferred} {
			_ = q.Walk(name, func(queue.Entry) error { n++; return nil }, nil)
		}
		return n
	}

	// SMTP, from outside mynetworks.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := gosmtp.NewClient(conn)
	if err := c.SendMail("someone@remote.example", []string{"alice@mx.example.test"}, strings.NewReader("Subject: smtp\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("someone@remote.example", []string{"x@elsewhere.example"}, strings.NewReader("x\r\n")); err == nil || !strings.Contains(err.Error(), "Relay access denied") {
		t.Fatalf("relay attempt: %v", err)
	}
	c.Quit()

	// The submission socket (what sendmail uses while the daemon runs).
	id, err := pickup.Submit(queueDir, pickup.SubmitRequest{Op: "mail", Recipients: []string{"bob"}}, strings.NewReader("Subject: local\n\nhello\n"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var f *queue.File
	testutil.Eventually(t, "the submitted message to be in the queue", func() bool {
		for _, name := range []string{queue.Incoming, queue.Deferred} {
			if f, err = q.Open(name, id, false); err == nil {
				return true
			}
		}
		return false
	})
	if f.Attr("submit_uid") != fmt.Sprint(os.Getuid()) || f.Recipients[0].Addr != "bob@mx.example.test" {
		t.Errorf("submitted message: uid %q, recipients %+v", f.Attr("submit_uid"), f.Recipients)
	}
	f.Close()
	_, err = pickup.Submit(queueDir, pickup.SubmitRequest{Op: "mail"}, strings.NewReader("x\n"), time.Minute)
	if err == nil || !strings.Contains(err.Error(), "no recipients") {
		t.Fatalf("submission without recipients: %v", err)
	}
	testutil.Eventually(t, "2 messages queued", func() bool { return incoming() == 2 })

	// Down: sendmail leaves the message in maildrop; pickup takes it at
	// the next start.
	if _, err := Call(queueDir, Request{Cmd: "stop"}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	req := pickup.SubmitRequest{Op: "mail", Sender: "me", Recipients: []string{"alice"}}
	if _, err := pickup.Submit(queueDir, req, strings.NewReader("x\n"), time.Minute); err != pickup.ErrDaemonDown {
		t.Fatalf("submit while down: %v, want ErrDaemonDown", err)
	}
	if _, err := pickup.Drop(q, req, strings.NewReader("Subject: dropped\n\nwhile down\n")); err != nil {
		t.Fatal(err)
	}
	_, done = startDaemon(t, file)
	testutil.Eventually(t, "pickup to take the maildrop file", func() bool { return incoming() == 3 })
	if _, err := Call(queueDir, Request{Cmd: "stop"}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
	for _, want := range []string{
		"mailsrv/smtpd[", "connect from unknown[127.0.0.2]",
		"NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 454 4.7.1 <x@elsewhere.example>: Relay access denied",
		fmt.Sprintf("uid=%d from=<me>", os.Getuid()),
	} {
		if !strings.Contains(string(log), want) {
			t.Errorf("mail log lacks %q:\n%s", want, log)
		}
	}
}
