package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"mailsrv/config"
	"mailsrv/internal/testutil"
	"mailsrv/maillog"
	"mailsrv/queue"
	"mailsrv/rewrite"
	"mailsrv/rewrite/cleanup"
)

// testServer is a running smtpd with its own spool on 127.0.0.1.
type testServer struct {
	addr string
	q    *queue.Queue
	logs *testutil.SyncBuffer
	p    *config.Params
}

// baseConfig: mynetworks is 127.0.0.1 only, so tests connecting from
// 127.0.0.2 are outside clients; no DNS lookups of client names.
const baseConfig = `
myhostname = "mx.our.test"
mydomain = "our.test"
myorigin = "$mydomain"
mydestination = ["$myhostname", "localhost", "$mydomain"]
mynetworks = ["127.0.0.1/32"]
inet_interfaces = ["127.0.0.1"]
relay_domains = ["relayed.test"]
queue_directory = "spool"
alias_maps = []
local_recipient_maps = ["inline:{ alice=x, bob=x, root=x }"]
virtual_mailbox_domains = ["virt.test"]
virtual_mailbox_maps = ["inline:{ carol@virt.test=carol/ }"]
smtpd_peername_lookup = false
smtpd_error_sleep_time = "0s"
smtpd_forbid_bare_newline_exclusions = []
`

// built is a server and what the test needs to look at.
type built struct {
	srv  *Server
	p    *config.Params
	q    *queue.Queue
	logs *testutil.SyncBuffer
}

func buildServer(t testing.TB, extra string) (*built, error) {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse(dir+"/mailsrv.toml", []byte(overlay(baseConfig, extra)))
	if err != nil {
		return nil, err
	}
	p := cfg.Params
	if err := queue.Create(p.QueueDirectory, queue.Owner{UID: -1, GID: -1, SetgidGID: -1}); err != nil {
		return nil, err
	}
	rw, err := rewrite.New(p)
	if err != nil {
		return nil, err
	}
	logs := &testutil.SyncBuffer{}
	log := maillog.New(logs, "mx")
	q := queue.FromConfig(p)
	srv, err := New(Options{
		Params:  p,
		Service: "smtp",
		Log:     log.Role("mailsrv", "smtpd"),
		Rewrite: rw,
		Queue:   CleanupQueue{C: cleanup.New(p, q, rw, log.Role("mailsrv", "cleanup"), nil)},
		Limit:   20,
	})
	if err != nil {
		return nil, err
	}
	return &built{srv: srv, p: p, q: q, logs: logs}, nil
}

func startServer(t *testing.T, extra string) *testServer { return startServerTB(t, extra) }

func startServerTB(t testing.TB, extra string) *testServer {
	t.Helper()
	b, err := buildServer(t, extra)
	if err != nil {
		t.Fatal(err)
	}
	return b.serve(t)
}

// serve runs a built server on 127.0.0.1 until the test ends.
func (b *built) serve(t testing.TB) *testServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hard, hardCancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.srv.Serve(ctx, ctx, hard, l) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mail log:\n%s", b.logs.String())
		}
		cancel()
		hardCancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testServer{addr: l.Addr().String(), q: b.q, logs: b.logs, p: b.p}
}

// client is a raw SMTP connection, for exact replies and malformed input.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// dialFrom connects from a chosen loopback address (127.0.0.2 is outside
// mynetworks).
func (ts *testServer) dialFrom(t *testing.T, src string) *client {
	t.Helper()
	cl := ts.dialRaw(t, src)
	cl.expect("220 mx.our.test ESMTP mailsrv")
	return cl
}

// dialRaw connects without reading the greeting.
func (ts *testServer) dialRaw(t *testing.T, src string) *client {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := c.c.Write([]byte(s)); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

// reply reads one complete (possibly multi-line) reply.
func (c *client) reply() string {
	c.t.Helper()
	var lines []string
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read reply (after %q): %v", lines, err)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

// expect reads a reply and checks it, exactly or (ending in *) as a prefix.
func (c *client) expect(want string) string {
	c.t.Helper()
	got := c.reply()
	if strings.HasSuffix(want, "*") {
		if !strings.HasPrefix(got, strings.TrimSuffix(want, "*")) {
			c.t.Fatalf("reply %q, want prefix %q", got, want)
		}
		return got
	}
	if got != want {
		c.t.Fatalf("reply %q, want %q", got, want)
	}
	return got
}

// cmd sends a command line and checks its reply.
func (c *client) cmd(line, want string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(want)
}

// closed reports whether the server hung up.
func (c *client) closed() bool {
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.br.ReadByte()
	return err != nil
}

// messages lists what is in incoming/.
func (ts *testServer) messages(t *testing.T) []*queue.File {
	t.Helper()
	var out []*queue.File
	err := ts.q.Walk(queue.Incoming, func(e queue.Entry) error {
		f, err := ts.q.Open(queue.Incoming, e.ID, false)
		if err != nil {
			return err
		}
		out = append(out, f)
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, f := range out {
			f.Close()
		}
	})
	return out
}

func body(t *testing.T, f *queue.File) string {
	t.Helper()
	var b bytes.Buffer
	if _, err := b.ReadFrom(f.Content()); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func (ts *testServer) waitLog(t *testing.T, substr string) {
	t.Helper()
	testutil.Eventually(t, fmt.Sprintf("log line %q", substr), func() bool { return strings.Contains(ts.logs.String(), substr) })
}

// overlay appends extra settings to base, dropping base lines that extra
// sets again (TOML forbids a key twice).
func overlay(base, extra string) string {
	set := map[string]bool{}
	for _, l := range strings.Split(extra, "\n") {
		if k, _, ok := strings.Cut(l, "="); ok {
			set[strings.TrimSpace(k)] = true
		}
	}
	var out []string
	for _, l := range strings.Split(base, "\n") {
		if k, _, ok := strings.Cut(l, "="); ok && set[strings.TrimSpace(k)] {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n") + "\n" + extra + "\n"
}
