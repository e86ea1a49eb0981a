package main

import (
	"bufio"
	"fmt"
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
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailsrv/internal/testutil"
	"mailsrv/queue"
)

// virtualInstance is newInstance with mailboxes u0…u(n-1)@virt.example
// delivered by virtual(8) into Maildirs under vmail/, short retry times,
// and a domain whose mail is accepted and then bounced (bounce.example).
// It returns the folder and the SMTP address.
func virtualInstance(t *testing.T, n int) (dir, addr string) {
	t.Helper()
	dir, owner := newInstance(t)
	u, err := user.Lookup(owner)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	vmail := filepath.Join(dir, "vmail")
	if err := os.MkdirAll(vmail, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(vmail, uid, gid)
	var tab strings.Builder
	for i := range n {
		fmt.Fprintf(&tab, "u%d@virt.example u%d/\n", i, i)
	}
	if err := os.WriteFile(filepath.Join(dir, "vmailboxes"), []byte(tab.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "mailsrv.toml")
	text, _ := os.ReadFile(cfg)
	extra := fmt.Sprintf(`
virtual_mailbox_domains = ["virt.example"]
virtual_mailbox_base = "vmail"
virtual_mailbox_maps = ["texthash:vmailboxes"]
virtual_uid_maps = ["static:%d"]
virtual_gid_maps = ["static:%d"]
virtual_minimum_uid = 0
minimal_backoff_time = "1s"
maximal_backoff_time = "2s"
queue_run_delay = "1s"
relay_domains = ["bounce.example"]
transport_maps = ["inline:{ {bounce.example=error:5.1.1 mailbox unavailable} }"]
`, uid, gid)
	// Top-level keys must come before the first [[service]] table, and
	// only once.
	s := regexp.MustCompile(`(?m)^relay_domains = .*\n`).ReplaceAllString(string(text), "")
	s = strings.Replace(s, "\n[[service]]\n", extra+"\n[[service]]\n", 1)
	if err := os.WriteFile(cfg, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, smtpAddr(t, dir)
}

// delivered counts the copies of each X-Seq in the Maildirs.
func delivered(t *testing.T, dir string) map[int]int {
	t.Helper()
	out := map[int]int{}
	files, _ := filepath.Glob(filepath.Join(dir, "vmail", "*", "new", "*"))
	re := regexp.MustCompile(`(?m)^X-Seq: (\d+)$`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := re.FindSubmatch(b); m != nil {
			n, _ := strconv.Atoi(string(m[1]))
			out[n]++
		}
	}
	return out
}

// queued counts the messages in incoming, active and deferred. Files a
// crash left half-written are not messages (they never got a 250; the
// next start or postsuper -p removes them once they are old).
func queued(dir string) int {
	q := queue.New(filepath.Join(dir, "run/spool"), []string{queue.Deferred, queue.DeferLog}, 1)
	n := 0
	for _, name := range []string{queue.Incoming, queue.Active, queue.Deferred, queue.Maildrop} {
		_ = q.Walk(name, func(e queue.Entry) error {
			if st, err := os.Stat(e.Path); err == nil && st.Mode().Perm()&0o700 == 0o700 {
				n++
			}
			return nil
		}, nil)
	}
	return n
}

// sendSeq sends message seq to a mailbox; it reports whether the server
// said 250.
func sendSeq(addr string, seq, boxes int, mixBounces bool) bool {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := gosmtp.NewClient(conn)
	defer c.Close()
	body := fmt.Sprintf("Subject: seq %d\r\nX-Seq: %d\r\n\r\nmessage %d\r\n", seq, seq, seq)
	from, to := "load@example.test", fmt.Sprintf("u%d@virt.example", seq%boxes)
	if mixBounces && bounces(seq) {
		// Returned to a sender with a mailbox.
		from, to = to, fmt.Sprintf("nobody%d@bounce.example", seq)
	}
	err = c.SendMail(from, []string{to}, strings.NewReader(body))
	if err == nil {
		c.Quit()
	}
	return err == nil
}

// TestCrashLosesNothing kills the daemon with SIGKILL twice, at random
// moments while clients are sending, qmgr is moving and delivering
// messages and the bounce service is returning some (every fifth message
// is accepted for a domain whose mail then bounces; its sender has a mailbox, so the non-delivery
// notice with the original inside lands in a Maildir). After each kill
// the daemon is started again; in the end every message that got a 250
// must be in a mailbox, delivered or returned. Duplicates are counted and
// reported (a crash between a delivery and its done mark repeats it).
func TestCrashLosesNothing(t *testing.T) {
	t.Parallel()
	crashLosesNothing(t, false)
}

// TestCrashLosesNothingUnprivileged is the same run with the daemon
// started by a normal user (nobody) instead of root.
func TestCrashLosesNothingUnprivileged(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("TestCrashLosesNothing runs unprivileged already")
	}
	crashLosesNothing(t, true)
}

func crashLosesNothing(t *testing.T, unprivileged bool) {
	const boxes, clients, total = 20, 8, 450
	dir, addr := virtualInstance(t, boxes)
	if unprivileged {
		asUnprivileged(t, dir)
	}
	start := func() {
		if _, errOut, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "start"); code != 0 {
			t.Fatalf("start: %d %q", code, errOut)
		}
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	first := total/8 + rng.IntN(total*3/8)
	second := first + total/8 + rng.IntN(total*3/8-total/8)
	l := newLoad()
	send := func(seq int) bool { return sendSeq(addr, seq, boxes, true) }
	for round, killAt := range []int{first, second, -1} {
		start()
		if killAt < 0 {
			l.run(clients, total, nil, send)
			break
		}
		killed, sent := make(chan struct{}), make(chan struct{})
		go func() { l.run(clients, total, killed, send); close(sent) }()
		testutil.Eventually(t, fmt.Sprintf("%d messages accepted", killAt), func() bool {
			n, tried := l.counts()
			return n >= killAt || tried >= total
		})
		pid := readPID(t, dir)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		close(killed)
		<-sent
		testutil.Eventually(t, "the daemon to die", func() bool { return syscall.Kill(pid, 0) != nil })
		n, _ := l.counts()
		t.Logf("round %d: SIGKILL with %d messages accepted, %d queued; restarting", round+1, n, queued(dir))
	}
	defer mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "stop")
	deadline := time.Now().Add(90 * time.Second)
	for queued(dir) > 0 {
		if time.Now().After(deadline) {
			out, _ := exec.Command("sh", "-c", "cd "+dir+"/run/spool && ls -lR incoming active deferred maildrop; tail -20 ../../maillog").CombinedOutput()
			t.Fatalf("%d messages still queued 90 s after the last restart:\n%s", queued(dir), out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	got := delivered(t, dir)
	lost, dups, returned := 0, 0, 0
	accepted := l.accepted
	for seq := range accepted {
		if bounces(seq) {
			returned++
		}
		switch c := got[seq]; {
		case c == 0:
			lost++
			t.Errorf("message %d got 250 but is in no mailbox", seq)
		case c > 1:
			dups += c - 1
		}
	}
	t.Logf("crash test: %d accepted (%d of them returned to their sender), %d lost, %d duplicates (%d messages in mailboxes that never got their 250)",
		len(accepted), returned, lost, dups, len(got)-len(accepted))
}

// load sends numbered messages from several clients at once and keeps
// which of them got a 250.
type load struct {
	mu       sync.Mutex
	next     int
	accepted map[int]bool
}

func newLoad() *load { return &load{accepted: map[int]bool{}} }

// run sends the messages from next up to until with clients concurrent
// clients, until they are all sent or stop is closed; send reports a 250.
func (l *load) run(clients, until int, stop <-chan struct{}, send func(seq int) bool) {
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				l.mu.Lock()
				seq := l.next
				l.next++
				l.mu.Unlock()
				if seq >= until {
					return
				}
				if send(seq) {
					l.mu.Lock()
					l.accepted[seq] = true
					l.mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
}

// counts returns how many messages got a 250 and how many were tried.
func (l *load) counts() (accepted, tried int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted), l.next
}

// bounces tells the messages sendSeq addresses to an unknown mailbox.
func bounces(seq int) bool { return seq%5 == 4 }

// TestPflogsummAgrees runs pflogsumm on the mail log of a delivery run: it
// must count the messages received and delivered that the test sent.
func TestPflogsummAgrees(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("pflogsumm")
	if err != nil {
		t.Skip("pflogsumm is not installed (apt-get install pflogsumm)")
	}
	const boxes, msgs = 5, 30
	dir, addr := virtualInstance(t, boxes)
	if _, errOut, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "start"); code != 0 {
		t.Fatalf("start: %d %q", code, errOut)
	}
	for i := range msgs {
		if !sendSeq(addr, i, boxes, false) {
			t.Fatalf("message %d refused", i)
		}
	}
	// One message with two recipients: received once, delivered twice.
	c, err := gosmtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("load@example.test", []string{"u0@virt.example", "u1@virt.example"}, strings.NewReader("Subject: two\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	testutil.Eventually(t, "all deliveries", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "maillog"))
		return strings.Count(string(b), "status=sent") == msgs+2
	})
	mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "stop")
	out, err := exec.Command(bin, "--syslog-name=mailsrv", filepath.Join(dir, "maillog")).CombinedOutput()
	if err != nil {
		t.Fatalf("pflogsumm: %v\n%s", err, out)
	}
	count := func(label string) int {
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		re := regexp.MustCompile(`^\s*(\d+)\s+` + label + `\s*$`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				n, _ := strconv.Atoi(m[1])
				return n
			}
		}
		t.Fatalf("pflogsumm output has no %q line:\n%s", label, out)
		return 0
	}
	if got := count("received"); got != msgs+1 {
		t.Errorf("pflogsumm received = %d, want %d", got, msgs+1)
	}
	if got := count("delivered"); got != msgs+2 {
		t.Errorf("pflogsumm delivered = %d, want %d", got, msgs+2)
	}
	if got := count("bounced"); got != 0 {
		t.Errorf("pflogsumm bounced = %d, want 0", got)
	}
}
