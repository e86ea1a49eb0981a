package lmtp

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"mailsrv/config"
	"mailsrv/internal/testutil"
	"mailsrv/outcome"
	"mailsrv/queue/qmgr"
	"mailsrv/queue/qmgr/qmgrtest"
)

// fakeLMTP answers RCPT by the local part (bad: 550, temp: 450) and the
// end of data per recipient (full: 452), and keeps what it got.
type fakeLMTP struct {
	mu   sync.Mutex
	got  []string
	mail []string
}

func (f *fakeLMTP) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &lmtpSession{f: f}, nil }

type lmtpSession struct {
	f     *fakeLMTP
	rcpts []string
}

func (s *lmtpSession) Mail(from string, opts *gosmtp.MailOptions) error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.mail = append(s.f.mail, from)
	return nil
}

func (s *lmtpSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "bad"):
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	case strings.HasPrefix(to, "temp"):
		return &gosmtp.SMTPError{Code: 450, EnhancedCode: gosmtp.EnhancedCode{4, 2, 0}, Message: "try later"}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *lmtpSession) Data(io.Reader) error { return nil }

func (s *lmtpSession) LMTPData(r io.Reader, status gosmtp.StatusCollector) error {
	b, _ := io.ReadAll(r)
	for _, rc := range s.rcpts {
		if strings.HasPrefix(rc, "full") {
			status.SetStatus(rc, &gosmtp.SMTPError{Code: 452, EnhancedCode: gosmtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"})
			continue
		}
		s.f.mu.Lock()
		s.f.got = append(s.f.got, rc+": "+string(b))
		s.f.mu.Unlock()
		status.SetStatus(rc, nil)
	}
	return nil
}

func (s *lmtpSession) Reset()        { s.rcpts = nil }
func (s *lmtpSession) Logout() error { return nil }

func params(t *testing.T) *config.Params {
	t.Helper()
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "mailsrv.toml"), []byte(`myhostname = "mx.example.test"`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Params
}

// TestLMTP: one transaction with four recipients gives each its own
// status (delivered, deferred after the data, refused, deferred at
// RCPT); SMTPUTF8 mail to a server without SMTPUTF8 bounces (as the smtp
// client does); a socket nobody listens on is a site failure.
func TestLMTP(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "lmtp")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeLMTP{}
	srv := gosmtp.NewServer(fake)
	srv.LMTP, srv.Domain = true, "lmtp.example.test"
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	a := New(params(t))

	d, rep, _ := qmgrtest.Delivery(t, qmgr.Request{Transport: "lmtp", Nexthop: "unix:" + sock}, "Subject: to lmtp\n\nhello\n",
		"ok@lmtp.example", "full@lmtp.example", "bad@lmtp.example", "temp@lmtp.example")
	a.Deliver(d)
	relay := "mx.example.test[" + sock + "]"
	ok := qmgrtest.Expect(t, rep, "ok@lmtp.example", outcome.Sent, "2.0.0")
	if ok.Status.Relay != relay {
		t.Errorf("relay %q, want %q", ok.Status.Relay, relay)
	}
	full := qmgrtest.Expect(t, rep, "full@lmtp.example", outcome.Deferred, "4.2.2")
	if want := fmt.Sprintf("host %s said: 452 4.2.2 <full@lmtp.example> mailbox full (in reply to end of DATA command)", relay); full.Status.Text != want {
		t.Errorf("full: %q\nwant %q", full.Status.Text, want)
	}
	qmgrtest.Expect(t, rep, "bad@lmtp.example", outcome.Bounced, "5.1.1")
	qmgrtest.Expect(t, rep, "temp@lmtp.example", outcome.Deferred, "4.2.0")
	if !rep.Setup() {
		t.Error("no SetupDone after LHLO")
	}
	fake.mu.Lock()
	if len(fake.got) != 1 || !strings.HasPrefix(fake.got[0], "ok@lmtp.example: Subject: to lmtp\r\n\r\nhello\r\n") {
		t.Errorf("the server got %q", fake.got)
	}
	fake.mu.Unlock()

	d, rep, _ = qmgrtest.Delivery(t, qmgr.Request{Transport: "lmtp", Nexthop: "unix:" + sock, Attrs: map[string]string{"smtputf8": "yes"}}, "Subject: x\n\nx\n", "ok@lmtp.example")
	a.Deliver(d)
	qmgrtest.Expect(t, rep, "ok@lmtp.example", outcome.Bounced, "5.6.7")

	d, rep, _ = qmgrtest.Delivery(t, qmgr.Request{Transport: "lmtp", Nexthop: "unix:" + filepath.Join(t.TempDir(), "none")}, "Subject: x\n\nx\n", "ok@lmtp.example")
	a.Deliver(d)
	qmgrtest.Expect(t, rep, "ok@lmtp.example", outcome.Deferred, "4.4.1")
	if len(rep.SiteFailures()) != 1 {
		t.Errorf("site failures %v", rep.SiteFailures())
	}

	d, rep, _ = qmgrtest.Delivery(t, qmgr.Request{Transport: "lmtp", Nexthop: "unix:relative/path"}, "x\n", "ok@lmtp.example")
	a.Deliver(d)
	qmgrtest.Expect(t, rep, "ok@lmtp.example", outcome.Deferred, "4.3.5")
}

// TestLMTPDovecot: the same agent against a real Dovecot LMTP server.
func TestLMTPDovecot(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	if err := os.MkdirAll(filepath.Join(base, "mail"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(filepath.Join(base, "mail"), 65534, 65534)
	var pw strings.Builder
	for _, u := range []string{"alice", "bob"} {
		fmt.Fprintf(&pw, "%s::65534:65534::%s::\n", u, filepath.Join(base, "mail", u))
	}
	if err := os.WriteFile(filepath.Join(base, "users"), []byte(pw.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := testutil.Dovecot(t, base, fmt.Sprintf(`
protocols = lmtp
mail_location = maildir:~/Maildir
auth_username_format = %%n
userdb {
  driver = passwd-file
  args = %[1]s/users
}
passdb {
  driver = passwd-file
  args = %[1]s/users
}
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
}
`, base), "lmtp")
	d, rep, _ := qmgrtest.Delivery(t, qmgr.Request{Transport: "lmtp", Nexthop: "unix:" + sock}, "Subject: via lmtp\n\nhello dovecot\n",
		"alice@lmtp.example", "bob@lmtp.example", "carol@lmtp.example")
	New(params(t)).Deliver(d)
	for _, u := range []string{"alice", "bob"} {
		qmgrtest.Expect(t, rep, u+"@lmtp.example", outcome.Sent, "2.0.0")
		files, _ := filepath.Glob(filepath.Join(base, "mail", u, "Maildir", "new", "*"))
		if len(files) != 1 {
			t.Errorf("%s has %d messages in Dovecot, want 1", u, len(files))
			continue
		}
		if b, _ := os.ReadFile(files[0]); !strings.Contains(string(b), "hello dovecot") {
			t.Errorf("%s's message:\n%s", u, b)
		}
	}
	carol := qmgrtest.Expect(t, rep, "carol@lmtp.example", outcome.Bounced, "5.1.1")
	if !strings.Contains(carol.Status.Text, "User doesn't exist: carol@lmtp.example (in reply to RCPT TO command)") {
		t.Errorf("carol: %q", carol.Status.Text)
	}
}
