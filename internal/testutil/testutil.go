// Package testutil holds what the tests of several packages share: a
// poll with a deadline, a log sink safe to read while written, a free
// loopback address for a server the test starts by configuration, and a
// private Dovecot. It is imported by _test files only.
package testutil

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Eventually polls cond until it holds, failing the test when it still
// does not after 20 seconds (a bound for a slow machine, never a wait).
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// SyncBuffer is a log sink that a test may read while a server writes.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FreeAddr returns host:port for a server the test configures and starts
// itself. The port is free on an address of its own, drawn at random
// from 127.0.0.0/8 (past 127.0.0.1, which clients use as their source),
// so that no other test, asking for a free port at the same moment, is
// handed the same address and port.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for try := 0; try < 20; try++ {
		ip := fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(254), rand.IntN(256), 2+rand.IntN(253))
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			continue
		}
		addr := l.Addr().String()
		l.Close()
		return addr
	}
	t.Fatal("no free loopback address")
	return ""
}

// Dovecot starts a private Dovecot under base with the settings of conf
// added to a base configuration (its own run, state and log folders, no
// SSL), waits for the socket run/<socket> and returns its path. The test
// skips when Dovecot is not installed or the test does not run as root.
func Dovecot(t testing.TB, base, conf, socket string) string {
	t.Helper()
	bin, err := exec.LookPath("dovecot")
	if err != nil {
		t.Skip("Dovecot is not installed (apt-get install dovecot-lmtpd); skipping the test against it")
	}
	if os.Geteuid() != 0 {
		t.Skip("starting Dovecot needs root; skipping the test against it")
	}
	for d := base; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755)
	}
	for _, d := range []string{"run", "state"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(base, "dovecot.conf")
	text := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
ssl = no
default_internal_user = dovecot
default_login_user = dovenull
`, base) + conf
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-F", "-c", file)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	sock := filepath.Join(base, "run", socket)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(base, "dovecot.log"))
			t.Fatalf("Dovecot did not create %s:\n%s", sock, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// DNS is a fake DNS server on loopback, for resolver.Resolver through
// mailsrv_dns_servers. Records are keyed "name TYPE" (lower case, no
// trailing dot) with their data as in a zone file ("127.0.0.2", a TXT's
// text, "10 mx.example."). A name in ServFail gets SERVFAIL, one in Hang
// no answer at all; a name with records of other types only gets an
// empty answer, any other name NXDOMAIN.
type DNS struct {
	Addr     string
	records  map[string][]string
	servFail map[string]bool
	hang     map[string]bool
}

// StartDNS serves records until the test ends.
func StartDNS(t testing.TB, records map[string][]string, servFail, hang []string) *DNS {
	t.Helper()
	d := &DNS{records: records, servFail: map[string]bool{}, hang: map[string]bool{}}
	for _, n := range servFail {
		d.servFail[n] = true
	}
	for _, n := range hang {
		d.hang[n] = true
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.serve(t, pc)
	return d
}

// StartDNSAt is StartDNS on a given address, for peers that can only be
// told a server's address (a resolv.conf has no port). It returns nil
// when the address cannot be had (port 53 needs root).
func StartDNSAt(t testing.TB, addr string, records map[string][]string, servFail []string) *DNS {
	t.Helper()
	d := &DNS{records: records, servFail: map[string]bool{}, hang: map[string]bool{}}
	for _, n := range servFail {
		d.servFail[n] = true
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil
	}
	d.serve(t, pc)
	return d
}

func (d *DNS) serve(t testing.TB, pc net.PacketConn) {
	d.Addr = pc.LocalAddr().String()
	srv := &dns.Server{PacketConn: pc, Handler: d}
	go srv.ActivateAndServe()
	t.Cleanup(func() { _ = srv.Shutdown() })
}

func (d *DNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		return
	}
	q := req.Question[0]
	name := strings.TrimSuffix(strings.ToLower(q.Name), ".")
	if d.hang[name] {
		return
	}
	m := new(dns.Msg)
	m.SetReply(req)
	typ := dns.TypeToString[q.Qtype]
	known := false
	for key := range d.records {
		if strings.HasPrefix(key, name+" ") {
			known = true
		}
	}
	switch {
	case d.servFail[name]:
		m.Rcode = dns.RcodeServerFailure
	case !known:
		m.Rcode = dns.RcodeNameError
	default:
		for _, data := range d.records[name+" "+typ] {
			if q.Qtype == dns.TypeTXT {
				data = strconv.Quote(data)
			}
			if rr, err := dns.NewRR(fmt.Sprintf("%s 60 IN %s %s", q.Name, typ, data)); err == nil {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	_ = w.WriteMsg(m)
}

// Postgrey starts Debian's postgrey on a free loopback address with its
// database in dbdir and the given options, until the test ends, and
// returns the address and what it prints. As root it runs as nobody (it
// refuses to run as root), else as the user. The test is skipped when
// postgrey is not installed.
func Postgrey(t testing.TB, dbdir string, args ...string) (string, *SyncBuffer) {
	t.Helper()
	bin, err := exec.LookPath("postgrey")
	if err != nil {
		t.Skip("postgrey is not installed (apt-get install postgrey)")
	}
	for d := dbdir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755)
	}
	addr := FreeAddr(t)
	args = append([]string{"--inet=" + addr, "--dbdir=" + dbdir}, args...)
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if u, err = user.Lookup("nobody"); err != nil {
			t.Skip("no user nobody")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		_ = os.Chown(dbdir, uid, gid)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatal(err)
	}
	args = append(args, "--user="+u.Username, "--group="+g.Name)
	cmd := exec.Command(bin, args...)
	out := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	Eventually(t, "postgrey to listen on "+addr, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr, out
}
