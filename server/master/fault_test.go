package master

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"mailsrv/queue"
)

// The fault suite: what the daemon does when the world misbehaves. Each
// test checks that nothing accepted is lost and that the server goes on
// with the rest of its work.

// TestCorruptQueueFiles: corrupt files among good ones in incoming,
// active and deferred when the daemon starts. The good messages are
// delivered, each bad file goes to corrupt/ with a warning naming it, and
// nothing else is disturbed.
func TestCorruptQueueFiles(t *testing.T) {
	t.Parallel()
	dir, _, stop := deliveryDaemon(t, virtualConfig("a@virt.example=a/"))
	stop()
	if err := os.MkdirAll(filepath.Join(dir, "vmail"), 0o755); err != nil {
		t.Fatal(err)
	}
	q := queue.New(filepath.Join(dir, "spool"), []string{queue.Deferred, queue.DeferLog}, 1)
	good := map[string]bool{}
	for i, where := range []string{queue.Incoming, queue.Incoming, queue.Active, queue.Deferred, queue.Deferred} {
		id, err := q.Inject(where, queue.Envelope{Sender: "s@example.test", Recipients: []queue.Recipient{{Addr: "a@virt.example"}}},
			strings.NewReader(fmt.Sprintf("Subject: good %d\n\nbody %d\n", i, i)))
		if err != nil {
			t.Fatal(err)
		}
		if where == queue.Deferred {
			// Due now.
			if err := q.SetTimes(where, id, time.Now().Add(-time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		good[id] = true
	}
	// A copy of a good file cut short, one of garbage, one empty, one
	// whose content length points past its end.
	var src string
	for id := range good {
		src = q.Path(queue.Incoming, id)
		if _, err := os.Stat(src); err == nil {
			break
		}
	}
	whole, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{}
	for i, b := range [][]byte{whole[:len(whole)/2], []byte("this is not a queue file\n"), {}, append(append([]byte(nil), whole[:40]...), whole[len(whole)-10:]...)} {
		id := queue.NewID(time.Now(), uint64(900000+i))
		where := []string{queue.Incoming, queue.Deferred, queue.Active, queue.Incoming}[i]
		path := q.Path(where, id)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o700); err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-time.Minute)
		if err := os.Chtimes(path, old, old); err != nil {
			t.Fatal(err)
		}
		bad[id] = b
	}

	restart(t, dir)
	maildir := filepath.Join(dir, "vmail", "a")
	eventuallyLog(t, dir, "the good messages delivered and the bad ones set aside", func() bool {
		return len(maildirFiles(maildir)) == len(good) && queueEmpty(dir) && countFiles(filepath.Join(dir, "spool", queue.Corrupt)) == len(bad)
	})
	log := readLog(dir)
	for id := range bad {
		if !regexp.MustCompile(regexp.QuoteMeta(id) + `: .*moved to corrupt`).MatchString(log) {
			t.Errorf("no warning for the corrupt file %s:\n%s", id, log)
		}
	}
	for id := range good {
		if !strings.Contains(log, id+": removed") {
			t.Errorf("good message %s not delivered and removed", id)
		}
	}
}

// restart starts the daemon again on an existing test folder, until the
// test ends.
func restart(t *testing.T, dir string) {
	t.Helper()
	queueDir, done := startDaemonWith(t, filepath.Join(dir, "mailsrv.toml"), nil)
	t.Cleanup(func() {
		if _, err := Call(queueDir, Request{Cmd: "stop"}, 10*time.Second); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func countFiles(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// TestSilentDNSAndSilentServer: a DNS server that takes queries and never
// answers, and a mail server that accepts connections and never speaks.
// Mail for those destinations is deferred with Postfix's reasons once
// the time limits pass (the resolver's, smtp_helo_timeout), stays queued,
// and mail for a working destination is delivered meanwhile; smtpd keeps
// accepting throughout.
func TestSilentDNSAndSilentServer(t *testing.T) {
	t.Parallel()
	// The DNS server reads and drops every query.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	// The mail server accepts and says nothing.
	mute, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mute.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	mxs, port := startMXs(t, nil, "mx.ok.test")
	_, mutePort, _ := net.SplitHostPort(mute.Addr().String())
	dir, addr, stop := deliveryDaemon(t, fmt.Sprintf(`
alias_maps = []
mailsrv_dns_servers = [%q]
smtp_helo_timeout = "2s"
minimal_backoff_time = "1h"
transport_maps = ["inline:{ {ok.test=smtp:[127.0.0.2]:%s}, {mute.test=smtp:[127.0.0.3]:%s} }"]
`, pc.LocalAddr().String(), port, mutePort))

	send(t, addr, "s@example.test", []string{"x@silent.test"}, "Subject: dns\r\n\r\nx\r\n")
	send(t, addr, "s@example.test", []string{"y@mute.test"}, "Subject: mute\r\n\r\nx\r\n")
	for i := range 5 {
		send(t, addr, "s@example.test", []string{fmt.Sprintf("z%d@ok.test", i)}, "Subject: fine\r\n\r\nx\r\n")
	}
	eventuallyLog(t, dir, "both silent destinations deferred and the rest delivered", func() bool {
		l := readLog(dir)
		return strings.Contains(l, "to=<x@silent.test>") && strings.Contains(l, "to=<y@mute.test>") && len(mxs[0].messages()) == 5
	})
	stop()
	log := readLog(dir)
	for _, re := range []string{
		`to=<x@silent.test>, relay=none, .*dsn=4.4.3, status=deferred \(Host or domain name not found. Name service error for name=silent.test type=MX: Host not found, try again\)`,
		`to=<y@mute.test>, relay=127.0.0.3\[127.0.0.3\]:\d+, .*dsn=4.4.2, status=deferred \(conversation with 127.0.0.3\[127.0.0.3\] timed out while receiving the initial server greeting\)`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("mail log lacks %s:\n%s", re, log)
		}
	}
	if n := queueCount(dir); n != 2 {
		t.Errorf("%d messages queued, want the 2 deferred ones", n)
	}
}

// TestSpoolFull: the queue on a small tmpfs. With too little space smtpd
// answers MAIL with 452 4.3.1; when the disk fills in the middle of a
// transaction the message gets 451 4.3.0 and leaves nothing behind; when
// space returns, mail is accepted again by itself; and every message that
// got a 250 is delivered.
func TestSpoolFull(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	spool := filepath.Join(dir, "spool")
	if err := os.MkdirAll(spool, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", spool).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs for the spool (needs root): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", spool).CombinedOutput(); err != nil {
			t.Errorf("umount: %v %s", err, out)
		}
	})
	_, addr, stop := deliveryDaemonAt(t, dir, virtualConfig("a@virt.example=a/")+
		// No session transcripts for the postmaster: with the disk
		// full, whether one gets written (and its status recorded)
		// depends on timing. TestTranscriptToPostmaster covers them.
		"message_size_limit = 2097152\nnotify_classes = []\n", nil)
	if err := os.MkdirAll(filepath.Join(dir, "vmail"), 0o755); err != nil {
		t.Fatal(err)
	}
	accepted := 0
	sendOne := func(subject string) {
		t.Helper()
		send(t, addr, "s@example.test", []string{"a@virt.example"}, "Subject: "+subject+"\r\n\r\nx\r\n")
		accepted++
	}
	sendOne("before")

	// Fill the spool but for 1 MB: less than 1.5 × message_size_limit.
	ballast := filepath.Join(spool, "ballast")
	fill := func(leave int64) {
		t.Helper()
		f, err := os.OpenFile(ballast, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		chunk := make([]byte, 64<<10)
		for {
			var st syscall.Statfs_t
			if err := syscall.Statfs(spool, &st); err != nil {
				t.Fatal(err)
			}
			free := int64(st.Bavail) * int64(st.Bsize)
			if free <= leave {
				return
			}
			n := min(int64(len(chunk)), free-leave)
			if _, err := f.Write(chunk[:n]); err != nil {
				return // full
			}
		}
	}
	fill(1 << 20)
	c := dial(t, addr)
	c.want(t, "", "220 *")
	c.want(t, "HELO client.test", "250 *")
	c.want(t, "MAIL FROM:<s@example.test>", "452 4.3.1 Insufficient system storage")
	c.want(t, "QUIT", "221 *")

	// Space returns: accepted again, nothing to restart.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	sendOne("after the space came back")

	// The disk fills between RCPT and the end of DATA.
	c = dial(t, addr)
	c.want(t, "", "220 *")
	c.want(t, "HELO client.test", "250 *")
	c.want(t, "MAIL FROM:<s@example.test>", "250 *")
	c.want(t, "RCPT TO:<a@virt.example>", "250 *")
	fill(0)
	c.want(t, "DATA", "354 *")
	fmt.Fprint(c.c, "Subject: too late\r\n\r\n"+strings.Repeat(strings.Repeat("x", 998)+"\r\n", 200)+".\r\n")
	c.want(t, "", "451 4.3.0 Error: queue file write error")
	c.want(t, "QUIT", "221 *")
	// The refused message's file is gone.
	refused := regexp.MustCompile(`(\w+): reject: END-OF-MESSAGE from \S+: 451 4\.3\.0 `)
	eventuallyLog(t, dir, "the refusal logged", func() bool { return refused.MatchString(readLog(dir)) })
	id := refused.FindStringSubmatch(readLog(dir))[1]
	_ = filepath.WalkDir(spool, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == id {
			t.Errorf("the refused message left %s", path)
		}
		return nil
	})
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	sendOne("at the end")

	maildir := filepath.Join(dir, "vmail", "a")
	eventuallyLog(t, dir, "every accepted message delivered", func() bool { return len(maildirFiles(maildir)) == accepted && queueEmpty(dir) })
	stop()
	if n := len(maildirFiles(maildir)); n != accepted {
		t.Errorf("%d delivered of %d accepted", n, accepted)
	}
	if log := readLog(dir); !strings.Contains(log, "warning: not enough free space in mail queue") {
		t.Errorf("no warning about the full queue:\n%s", log)
	}
}

// want sends a command (none when line is empty) and checks the one-line
// reply, exactly or (ending in *) by its start.
func (l *lineConn) want(t *testing.T, line, want string) {
	t.Helper()
	if line != "" {
		fmt.Fprintf(l.c, "%s\r\n", line)
	}
	got := l.read(t)
	if p, ok := strings.CutSuffix(want, "*"); ok && strings.HasPrefix(got, p) || got == want {
		return
	}
	t.Fatalf("after %q: reply %q, want %q", line, got, want)
}
