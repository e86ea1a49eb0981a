package smtp

import (
	"io"
	"net"
	"net/netip"
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

// fakeServer takes mail for every recipient but temp… (450) and bad…
// (550), and keeps what it got.
type fakeServer struct {
	mu  sync.Mutex
	got []string
}

func (f *fakeServer) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &fakeSession{f: f}, nil }

type fakeSession struct {
	f     *fakeServer
	rcpts []string
}

func (s *fakeSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (s *fakeSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "temp"):
		return &gosmtp.SMTPError{Code: 450, EnhancedCode: gosmtp.EnhancedCode{4, 2, 0}, Message: "mailbox busy"}
	case strings.HasPrefix(to, "bad"):
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *fakeSession) Data(r io.Reader) error {
	b, _ := io.ReadAll(r)
	s.f.mu.Lock()
	s.f.got = append(s.f.got, strings.Join(s.rcpts, ",")+": "+string(b))
	s.f.mu.Unlock()
	return nil
}
func (s *fakeSession) Reset()        { s.rcpts = nil }
func (s *fakeSession) Logout() error { return nil }

// TestClient: one transaction through a next hop given as an address
// literal (no DNS): each recipient gets the server's answer, in Postfix's
// words; a next hop that refuses connections is a site failure.
func TestClient(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeServer{}
	srv := gosmtp.NewServer(fake)
	srv.Domain = "next.example"
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "mailsrv.toml"), []byte(`
myhostname = "mx.example.test"
mailsrv_dns_servers = ["127.0.0.1:1"]
`))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg.Params, func(netip.Addr) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	hop := "[127.0.0.1]:" + port
	d, rep, _ := qmgrtest.Delivery(t, qmgr.Request{Transport: "smtp", Nexthop: hop}, "Subject: relayed\n\n.hello\n",
		"ok@remote.example", "temp@remote.example", "bad@remote.example")
	a.Deliver(d)
	ok := qmgrtest.Expect(t, rep, "ok@remote.example", outcome.Sent, "2.0.0")
	if relay := "127.0.0.1[127.0.0.1]:" + port; ok.Status.Relay != relay || ok.Status.Action != "relayed" {
		t.Errorf("sent: %+v", ok.Status)
	}
	temp := qmgrtest.Expect(t, rep, "temp@remote.example", outcome.Deferred, "4.2.0")
	if want := "host 127.0.0.1[127.0.0.1] said: 450 4.2.0 mailbox busy (in reply to RCPT TO command)"; temp.Status.Text != want {
		t.Errorf("deferred: %q\nwant %q", temp.Status.Text, want)
	}
	qmgrtest.Expect(t, rep, "bad@remote.example", outcome.Bounced, "5.1.1")
	fake.mu.Lock()
	if len(fake.got) != 1 || fake.got[0] != "ok@remote.example: Subject: relayed\r\n\r\n.hello\r\n" {
		t.Errorf("the server got %q", fake.got)
	}
	fake.mu.Unlock()

	deadHost, deadPort, _ := net.SplitHostPort(testutil.FreeAddr(t))
	d, rep, _ = qmgrtest.Delivery(t, qmgr.Request{Transport: "smtp", Nexthop: "[" + deadHost + "]:" + deadPort}, "Subject: x\n\nx\n", "ok@remote.example")
	a.Deliver(d)
	st := qmgrtest.Expect(t, rep, "ok@remote.example", outcome.Deferred, "4.4.1").Status
	if !strings.HasPrefix(st.Text, "connect to "+deadHost+"["+deadHost+"]:") || !strings.HasSuffix(st.Text, ": Connection refused") || len(rep.SiteFailures()) != 1 {
		t.Errorf("refused: %q, site failures %v", st.Text, rep.SiteFailures())
	}
}
