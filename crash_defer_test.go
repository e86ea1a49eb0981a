package main

import (
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailsrv/internal/testutil"
	"mailsrv/queue"
)

// nextHop is a relay's next hop: it answers 450 at RCPT until accept is
// set, then takes every message and counts each X-Seq it receives.
type nextHop struct {
	accept atomic.Bool
	mu     sync.Mutex
	got    map[int]int
}

func (h *nextHop) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &hopSession{h: h}, nil }

type hopSession struct {
	h     *nextHop
	rcpts int
}

func (s *hopSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (s *hopSession) Rcpt(string, *gosmtp.RcptOptions) error {
	if !s.h.accept.Load() {
		// Slow and temporary: deliveries sit in active for a while,
		// their retry time already recorded, when the kill comes.
		time.Sleep(300 * time.Millisecond)
		return &gosmtp.SMTPError{Code: 450, EnhancedCode: gosmtp.EnhancedCode{4, 2, 0}, Message: "try again later"}
	}
	s.rcpts++
	return nil
}
func (s *hopSession) Data(r io.Reader) error {
	b, _ := io.ReadAll(r)
	if m := regexp.MustCompile(`(?m)^X-Seq: (\d+)\r?$`).FindSubmatch(b); m != nil {
		n, _ := strconv.Atoi(string(m[1]))
		s.h.mu.Lock()
		s.h.got[n]++
		s.h.mu.Unlock()
	}
	return nil
}
func (s *hopSession) Reset()        { s.rcpts = 0 }
func (s *hopSession) Logout() error { return nil }

// TestCrashWhileDeferring is the outside tester's stranded-mail run: 8
// clients send 200 messages through a relay whose next hop answers 4xx,
// the daemon is killed with SIGKILL about half-way while deliveries are
// in flight (their retry time already in the file's mtime, so recovery
// moves them to deferred), and before the restart the deferred queue's
// empty hash directories are removed, so that recovery must create the
// ones it needs. The rest is sent, the next hop starts taking mail, and
// `postqueue -f` must then get every accepted message through. As root
// the daemon runs as an unprivileged mail_owner (nobody) and nothing in
// the queue may be left owned by anyone else.
func TestCrashWhileDeferring(t *testing.T) {
	t.Parallel()
	crashWhileDeferring(t, false)
}

// TestCrashWhileDeferringUnprivileged is the same run with the daemon
// started by a normal user (nobody) instead of root.
func TestCrashWhileDeferringUnprivileged(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("TestCrashWhileDeferring runs unprivileged already")
	}
	crashWhileDeferring(t, true)
}

func crashWhileDeferring(t *testing.T, unprivileged bool) {
	const clients, total = 8, 200
	hop := &nextHop{got: map[int]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := gosmtp.NewServer(hop)
	srv.Domain = "hop.example"
	srv.ErrorLog = log.New(io.Discard, "", 0) // the kill resets connections
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	dir, owner := newInstance(t)
	cfg := filepath.Join(dir, "mailsrv.toml")
	text, _ := os.ReadFile(cfg)
	s := regexp.MustCompile(`(?m)^relayhost = .*\n`).ReplaceAllString(string(text), "")
	s = strings.Replace(s, "\n[[service]]\n", fmt.Sprintf(`
relayhost = "[%s]"
smtp_tcp_port = %q
minimal_backoff_time = "10s"
maximal_backoff_time = "20s"
queue_run_delay = "1s"
hash_queue_depth = 2

[[service]]
`, "127.0.0.1", portOf(ln.Addr())), 1)
	if err := os.WriteFile(cfg, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	if unprivileged {
		asUnprivileged(t, dir)
	}
	addr := smtpAddr(t, dir)
	spool := filepath.Join(dir, "run/spool")
	q := queue.New(spool, []string{queue.Deferred, queue.DeferLog}, 2)
	start := func() {
		if _, errOut, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "start"); code != 0 {
			t.Fatalf("start: %d %q", code, errOut)
		}
	}
	l := newLoad()
	send := func(seq int) bool { return relaySeq(addr, seq) }

	start()
	killAt := total/3 + rand.IntN(total/3)
	killed := make(chan struct{})
	sent := make(chan struct{})
	go func() { l.run(clients, total, killed, send); close(sent) }()
	// Wait for the kill point with deliveries in flight: files in active
	// whose mtime (the recorded retry time) is ahead.
	inFlight := func() []string {
		var ids []string
		_ = q.Walk(queue.Active, func(e queue.Entry) error {
			if st, err := os.Stat(e.Path); err == nil && st.ModTime().After(time.Now().Add(time.Second)) {
				ids = append(ids, e.ID)
			}
			return nil
		}, nil)
		return ids
	}
	testutil.Eventually(t, fmt.Sprintf("%d messages accepted and deliveries in flight", killAt), func() bool {
		n, _ := l.counts()
		return n >= killAt && len(inFlight()) > 0
	})
	pid := readPID(t, dir)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	close(killed)
	<-sent
	testutil.Eventually(t, "the daemon to die", func() bool { return syscall.Kill(pid, 0) != nil })

	// Hash directories that hold nothing go, as on a queue that never
	// deferred anything there.
	removeEmptyDirs(filepath.Join(spool, queue.Deferred))
	missing := 0
	flying := inFlight()
	for _, id := range flying {
		if _, err := os.Stat(filepath.Dir(q.Path(queue.Deferred, id))); os.IsNotExist(err) {
			missing++
		}
	}
	n, _ := l.counts()
	t.Logf("SIGKILL with %d accepted; %d deliveries in flight, %d of them to a hash directory that does not exist", n, len(flying), missing)
	if len(flying) == 0 {
		b, _ := os.ReadFile(filepath.Join(dir, "maillog"))
		t.Fatalf("no delivery was in flight at the kill:\n%s", b[max(0, len(b)-3000):])
	}
	if missing == 0 {
		// Make one: a message in flight whose hash directory is gone.
		d := filepath.Dir(q.Path(queue.Deferred, flying[0]))
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			_ = os.Rename(filepath.Join(d, e.Name()), filepath.Join(spool, queue.Incoming, e.Name()))
		}
		if err := os.Remove(d); err != nil {
			t.Fatal(err)
		}
	}

	start()
	defer mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "stop")
	l.run(clients, total, nil, send)
	hop.accept.Store(true)
	deadline := time.Now().Add(2 * time.Minute)
	lastFlush := time.Time{}
	for queued(dir) > 0 {
		if time.Now().After(deadline) {
			out, _ := exec.Command("sh", "-c", "cd "+spool+" && ls -lR incoming active deferred; grep -E 'error|warning' ../../maillog | tail -20").CombinedOutput()
			t.Fatalf("%d messages still queued 2 minutes after the next hop came back:\n%s", queued(dir), out)
		}
		if time.Since(lastFlush) > 3*time.Second {
			if _, errOut, code := mailsrv(t, dir, "postqueue", "-c", "mailsrv.toml", "-f"); code != 0 {
				t.Fatalf("postqueue -f: %q", errOut)
			}
			lastFlush = time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	hop.mu.Lock()
	defer hop.mu.Unlock()
	lost := 0
	accepted := l.accepted
	for seq := range accepted {
		if hop.got[seq] == 0 {
			lost++
			t.Errorf("message %d got 250 but never reached the next hop", seq)
		}
	}
	t.Logf("%d accepted, %d lost, %d delivered to the next hop", len(accepted), lost, len(hop.got))
	if os.Geteuid() == 0 {
		u, _ := user.Lookup(owner)
		uid, _ := strconv.Atoi(u.Uid)
		_ = filepath.Walk(spool, func(path string, info os.FileInfo, err error) error {
			if err != nil {
				t.Errorf("%s: %v", path, err)
				return nil
			}
			rel, _ := filepath.Rel(spool, path)
			top := strings.Split(rel, string(filepath.Separator))[0]
			if top == queue.Maildrop || top == "public" || top == "private" || top == "pid" || rel == "." {
				return nil
			}
			if st := info.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
				t.Errorf("%s is owned by uid %d, not mail_owner %s", path, st.Uid, owner)
			}
			return nil
		})
	}
	maillog, _ := os.ReadFile(filepath.Join(dir, "maillog"))
	if regexp.MustCompile(`(?m)(error|fatal): `).Match(maillog) {
		t.Errorf("the mail log has errors:\n%s", regexp.MustCompile(`(?m)^.*(error|fatal): .*$`).FindAll(maillog, 10))
	}
	if unprivileged && !strings.Contains(string(maillog), "running as unprivileged user nobody") {
		t.Error("the daemon did not run as nobody")
	}
}

// relaySeq relays message seq to a remote recipient; it reports whether
// the server said 250.
func relaySeq(addr string, seq int) bool {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := gosmtp.NewClient(conn)
	defer c.Close()
	body := fmt.Sprintf("Subject: seq %d\r\nX-Seq: %d\r\n\r\nmessage %d\r\n", seq, seq, seq)
	err = c.SendMail("load@example.test", []string{fmt.Sprintf("r%d@remote.example", seq)}, strings.NewReader(body))
	if err == nil {
		c.Quit()
	}
	return err == nil
}

func portOf(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}

// removeEmptyDirs removes the empty directories below top, deepest first.
func removeEmptyDirs(top string) {
	var dirs []string
	_ = filepath.Walk(top, func(path string, info os.FileInfo, err error) error {
		if err == nil && info.IsDir() && path != top {
			dirs = append(dirs, path)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		os.Remove(dirs[i])
	}
}
