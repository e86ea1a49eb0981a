package main

// These tests run mailsrv as a user would: the test binary re-executes
// itself as the mailsrv command (MAILSRV_TEST_MAIN=1), under its own name
// or through links named like Postfix tools.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"mailsrv/delivery/local"
	"mailsrv/delivery/spawn"
	"mailsrv/internal/testutil"
	"mailsrv/server/master"
)

func TestMain(m *testing.M) {
	// local(8)'s children and the privileged helper are started with an
	// environment of their own: main knows them.
	if os.Getenv("MAILSRV_TEST_MAIN") == "1" || local.IsChild() || spawn.IsHelper() {
		main()
		return
	}
	os.Exit(m.Run())
}

// mailsrv runs the binary as name (a link to the test binary) and returns
// stdout, stderr and the exit code.
func mailsrv(t *testing.T, dir, name string, args ...string) (string, string, int) {
	t.Helper()
	return mailsrvStdin(t, dir, "", name, args...)
}

// mailsrvStdin is mailsrv with text on standard input.
func mailsrvStdin(t *testing.T, dir, stdin, name string, args ...string) (string, string, int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "bin", name)
	cred, unprivileged := runAs.Load(dir)
	if _, err := os.Lstat(path); err != nil {
		_ = os.MkdirAll(filepath.Dir(path), 0o755)
		if unprivileged {
			// The build folder is root's alone: the user gets a copy.
			if err := copyExecutable(exe, path); err != nil {
				t.Fatal(err)
			}
		} else if err := os.Symlink(exe, path); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "MAILSRV_TEST_MAIN=1", "MAILSRV_CONFIG=", "TZ=UTC")
	if unprivileged {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred.(*syscall.Credential)}
	}
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Dir = dir
	cmd0 := cmd
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	for try := 0; errors.Is(err, syscall.ETXTBSY) && try < 100; try++ {
		// A copied executable can still be open for writing in a
		// child another test forked meanwhile (until that child's
		// exec): try again once it is gone.
		time.Sleep(10 * time.Millisecond)
		stdout.Reset()
		stderr.Reset()
		cmd = exec.Command(path, args...)
		cmd.Env, cmd.Stdin, cmd.Dir, cmd.SysProcAttr = cmd0.Env, strings.NewReader(stdin), dir, cmd0.SysProcAttr
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err = cmd.Run()
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// runAs holds the test folders whose mailsrv commands run as another,
// unprivileged user (folder → *syscall.Credential): how a root test
// starts the daemon the way a normal user would.
var runAs sync.Map

// asUnprivileged makes every mailsrv command of an instance folder run as
// nobody (the test must run as root), and gives the folder to nobody.
func asUnprivileged(t *testing.T, dir string) {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	err = filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
	runAs.Store(dir, &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}})
}

func copyExecutable(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}

// newInstance makes a folder with a copy of config.example.toml, adjusted
// to a free port. As root the daemon drops to nobody, so the folder must be
// reachable by that user.
func newInstance(t *testing.T) (dir, owner string) {
	t.Helper()
	dir = t.TempDir()
	owner = "nobody"
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		owner = u.Username
	}
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755)
	}
	example, err := os.ReadFile("config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	port := testutil.FreeAddr(t)
	text := strings.Replace(string(example), `listen = "127.0.0.1:2525"`, fmt.Sprintf("listen = %q", port), 1)
	text = strings.Replace(text, `maillog_file = "/dev/stdout"`, `maillog_file = "maillog"`, 1)
	text = strings.Replace(text, `mail_owner = "nobody"`, fmt.Sprintf("mail_owner = %q", owner), 1)
	// Tests never reach the internet: DNS goes nowhere, fast.
	text = strings.Replace(text, "\n[[service]]\n", "\nmailsrv_dns_servers = [\"127.0.0.1:1\"]\n\n[[service]]\n", 1)
	if err := os.WriteFile(filepath.Join(dir, "mailsrv.toml"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, owner
}

// smtpAddr is the address of the instance's first listener (smtpd).
func smtpAddr(t *testing.T, dir string) string {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(dir, "mailsrv.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(text), "\n") {
		if a, ok := strings.CutPrefix(l, "listen = "); ok {
			return strings.Trim(a, `"`)
		}
	}
	t.Fatal("no listen address in mailsrv.toml")
	return ""
}

func readPID(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "run/spool/pid/master.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestStartReloadStopAsAUserWould(t *testing.T) {
	t.Parallel()
	dir, owner := newInstance(t)
	_, errOut, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "status")
	if code != 1 || !strings.Contains(errOut, "mailsrv/postfix-script: the mail system is not running") {
		t.Fatalf("status before start: %d %q", code, errOut)
	}
	_, errOut, code = mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "start")
	if code != 0 || !strings.Contains(errOut, "starting the mail system") {
		t.Fatalf("start: %d %q", code, errOut)
	}
	_, errOut, code = mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "status")
	pid := readPID(t, dir)
	if code != 0 || !strings.Contains(errOut, fmt.Sprintf("the mail system is running: PID: %d", pid)) {
		t.Fatalf("status: %d %q", code, errOut)
	}
	_, errOut, code = mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "start")
	if code != 1 || !strings.Contains(errOut, "already running") {
		t.Errorf("second start: %d %q", code, errOut)
	}

	// The daemon runs as mail_owner.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	u, err := user.Lookup(owner)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "\nUid:\t"+u.Uid+"\t"+u.Uid+"\t"+u.Uid) {
		t.Errorf("daemon does not run as %s:\n%s", owner, status)
	}

	logFile := filepath.Join(dir, "maillog")
	logHas := func(s string) func() bool {
		return func() bool {
			b, _ := os.ReadFile(logFile)
			return strings.Contains(string(b), s)
		}
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "reload in the log", logHas("mailsrv/master["+strconv.Itoa(pid)+"]: reload -- version"))
	_, errOut, code = mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "reload")
	if code != 0 || !strings.Contains(errOut, "refreshing the mail system") {
		t.Errorf("reload: %d %q", code, errOut)
	}

	// Profiles of the running daemon come back as gzipped pprof data.
	for _, args := range [][]string{{"cpu", "-d", "1s"}, {"heap"}, {"goroutine"}} {
		out := filepath.Join(dir, args[0]+".pprof")
		cmd := append([]string{"-c", "mailsrv.toml", "postfix", "profile", "-o", out}, args...)
		if _, errOut, code := mailsrv(t, dir, "mailsrv", cmd...); code != 0 {
			t.Errorf("profile %s: %d %q", args[0], code, errOut)
			continue
		}
		if b, err := os.ReadFile(out); err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
			t.Errorf("profile %s: not a pprof file (%v, %d bytes)", args[0], err, len(b))
		}
	}
	if _, errOut, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "profile", "-o", "x", "threads"); code != 1 || !strings.Contains(errOut, `unknown kind "threads"`) {
		t.Errorf("profile of an unknown kind: %d %q", code, errOut)
	}

	// logrotate: move the log away, create the new one for mail_owner
	// (logrotate's "create"), SIGUSR1; the next line goes to the new file.
	if err := os.Rename(logFile, logFile+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(logFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(logFile, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the reopen in the new log", logHas("reopened the mail log"))

	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the daemon to stop", func() bool { return !master.ProcessAlive(pid) })
	_, errOut, code = mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "status")
	if code != 1 {
		t.Errorf("status after stop: %d %q", code, errOut)
	}
	b, _ := os.ReadFile(logFile)
	for _, want := range []string{"terminating on signal 15", "daemon stopped"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("log lacks %q:\n%s", want, b)
		}
	}
	old, _ := os.ReadFile(logFile + ".1")
	if !strings.Contains(string(old), "daemon started -- version") {
		t.Errorf("first log lacks the start line:\n%s", old)
	}
}

func TestPostfixStopCommand(t *testing.T) {
	t.Parallel()
	dir, _ := newInstance(t)
	if _, errOut, code := mailsrv(t, dir, "postfix", "-c", "mailsrv.toml", "start"); code != 0 {
		t.Fatalf("start through a link named postfix: %d %s", code, errOut)
	}
	pid := readPID(t, dir)
	_, errOut, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "stop")
	if code != 0 || !strings.Contains(errOut, "stopping the mail system") {
		t.Fatalf("stop: %d %q", code, errOut)
	}
	if master.ProcessAlive(pid) {
		t.Error("daemon still runs after postfix stop returned")
	}
	_, errOut, code = mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "stop")
	if code != 1 || !strings.Contains(errOut, "not running") {
		t.Errorf("second stop: %d %q", code, errOut)
	}
}

func TestStartWithBrokenConfigFails(t *testing.T) {
	t.Parallel()
	dir, _ := newInstance(t)
	f := filepath.Join(dir, "mailsrv.toml")
	b, _ := os.ReadFile(f)
	if err := os.WriteFile(f, append([]byte("smtpd_error_sleep_time = \"soon\"\n"), b...), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "start")
	if code != 1 || !strings.Contains(errOut, "bad value for smtpd_error_sleep_time at mailsrv.toml:1") {
		t.Errorf("start with a broken config: %d %q", code, errOut)
	}
	_, errOut, code = mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "check")
	if code != 1 || !strings.Contains(errOut, "fatal: bad value for smtpd_error_sleep_time") {
		t.Errorf("check with a broken config: %d %q", code, errOut)
	}
}

func TestPostconfThroughLinks(t *testing.T) {
	t.Parallel()
	dir, _ := newInstance(t)
	out, errOut, code := mailsrv(t, dir, "postconf", "-c", "mailsrv.toml", "-n")
	if code != 0 || !strings.Contains(out, "myhostname = mail.example.test\n") || !strings.Contains(out, "myorigin = $mydomain\n") {
		t.Fatalf("postconf -n: %d %q %q", code, out, errOut)
	}
	if strings.Contains(out, "smtpd_banner") {
		t.Errorf("postconf -n shows a default:\n%s", out)
	}
	out, _, code = mailsrv(t, dir, "postconf", "-c", "mailsrv.toml", "-d", "smtpd_timeout", "myorigin", "smtpd_relay_restrictions")
	want := "smtpd_timeout = 300s\nmyorigin = $myhostname\nsmtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination\n"
	if code != 0 || out != want {
		t.Errorf("postconf -d: %d %q", code, out)
	}
	out, _, _ = mailsrv(t, dir, "postconf", "-c", "mailsrv.toml", "-x", "-h", "myorigin")
	if out != "example.test\n" {
		t.Errorf("postconf -xh myorigin = %q", out)
	}
	all, _, _ := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postconf")
	if n := strings.Count(all, "\n"); n < 150 || !strings.Contains(all, "\nsmtpd_banner = $myhostname ESMTP $mail_name\n") {
		t.Errorf("postconf prints %d lines", n)
	}
	_, errOut, code = mailsrv(t, dir, "postconf", "-c", "mailsrv.toml", "nosuch_parameter")
	if code != 1 || !strings.Contains(errOut, "nosuch_parameter: unknown parameter") {
		t.Errorf("unknown name: %d %q", code, errOut)
	}

	// -e keeps comments, the new value loads, -n shows it.
	_, errOut, code = mailsrv(t, dir, "postconf", "-c", "mailsrv.toml", "-e", "relayhost=[smtp.example.net]:587", "smtpd_helo_required=yes")
	if code != 0 {
		t.Fatalf("postconf -e: %d %q", code, errOut)
	}
	text, _ := os.ReadFile(filepath.Join(dir, "mailsrv.toml"))
	if !strings.Contains(string(text), "# Send all outgoing mail through this host instead of looking up MX records.\nrelayhost = \"[smtp.example.net]:587\"\n") {
		t.Errorf("comment or placement lost:\n%s", text)
	}
	out, _, _ = mailsrv(t, dir, "postconf", "-c", "mailsrv.toml", "-n", "relayhost", "smtpd_helo_required")
	if out != "relayhost = [smtp.example.net]:587\nsmtpd_helo_required = yes\n" {
		t.Errorf("after -e: %q", out)
	}
	_, errOut, code = mailsrv(t, dir, "postconf", "-c", "mailsrv.toml", "-e", "smtpd_timeout=whenever")
	if code != 1 || !strings.Contains(errOut, "not changing") {
		t.Errorf("bad -e: %d %q", code, errOut)
	}
	text2, _ := os.ReadFile(filepath.Join(dir, "mailsrv.toml"))
	if !bytes.Equal(text, text2) {
		t.Error("refused -e changed the file")
	}
}

// TestReceiveAsAUserWould starts the example configuration with the
// built binary, sends one message over SMTP and one through the sendmail
// link, and finds both with mailq.
func TestReceiveAsAUserWould(t *testing.T) {
	t.Parallel()
	dir, _ := newInstance(t)
	if _, errOut, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "start"); code != 0 {
		t.Fatalf("start: %d %q", code, errOut)
	}
	defer mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "stop")
	addr := smtpAddr(t, dir)
	c, err := gosmtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("friend@remote.example", []string{"root@mail.example.test"}, strings.NewReader("Subject: over smtp\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	if _, errOut, code := mailsrvStdin(t, dir, "To: postmaster\nSubject: via sendmail\n\nhello\n", "sendmail", "-C", "mailsrv.toml", "-t", "-F", "Test User"); code != 0 {
		t.Fatalf("sendmail: %d %q", code, errOut)
	}
	// postmaster is no user here: it bounces, and the notice to root
	// waits (root's mail must be aliased) with the SMTP message.
	var out string
	testutil.Eventually(t, "the queue to settle at two messages", func() bool {
		o, _, code := mailsrv(t, dir, "mailq", "-c", "mailsrv.toml")
		out = o
		return code == 0 && strings.Contains(o, "in 2 Requests.") && strings.Contains(o, "MAILER-DAEMON")
	})
	for _, want := range []string{"friend@remote.example", "root@mail.example.test", "MAILER-DAEMON", "root@example.test", "in 2 Requests."} {
		if !strings.Contains(out, want) {
			t.Errorf("mailq lacks %q:\n%s", want, out)
		}
	}
}

func TestCheckReportsQueueProblems(t *testing.T) {
	t.Parallel()
	dir, _ := newInstance(t)
	if _, errOut, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "check"); code != 0 || !strings.Contains(errOut, "does not exist yet") {
		t.Errorf("check before the first start: %d %q", code, errOut)
	}
	if err := os.MkdirAll(filepath.Join(dir, "run/spool/incoming"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "run/spool/incoming"), 0o777); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "check")
	if code != 0 || !strings.Contains(errOut, "bad permissions 0777 (want 0700): "+filepath.Join(dir, "run/spool/incoming")) ||
		!strings.Contains(errOut, "missing directory: "+filepath.Join(dir, "run/spool/active")) {
		t.Errorf("check: %d %q", code, errOut)
	}
}

// TestSetPermissions: as root, a hash directory and a message left owned
// by root in the queue (what a root-run recovery once made) are reported
// by postfix check, and postfix set-permissions gives them to mail_owner.
func TestSetPermissions(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("set-permissions needs root")
	}
	dir, owner := newInstance(t)
	if _, errOut, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "start"); code != 0 {
		t.Fatalf("start: %d %q", code, errOut)
	}
	mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "stop")
	spool := filepath.Join(dir, "run/spool")
	hashDir := filepath.Join(spool, "deferred", "E")
	if err := os.Mkdir(hashDir, 0o700); err != nil {
		t.Fatal(err)
	}
	msg := filepath.Join(hashDir, "4jjxxt01Lmz1SFwL")
	if err := os.WriteFile(msg, []byte("x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(spool, "hold"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "check")
	for _, want := range []string{"not owned by mail_owner (uid 65534, owner is uid 0): " + hashDir, "not owned by mail_owner (uid 65534, owner is uid 0): " + msg,
		"bad permissions 0755 (want 0700): " + filepath.Join(spool, "hold")} {
		if code != 0 || !strings.Contains(errOut, want) {
			t.Errorf("check lacks %q: %d\n%s", want, code, errOut)
		}
	}
	if owner != "nobody" {
		t.Fatalf("owner %s", owner)
	}
	_, errOut, code = mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "set-permissions")
	if code != 0 || !strings.Contains(errOut, "set-permissions: 3 owner or mode changes") {
		t.Errorf("set-permissions: %d %q", code, errOut)
	}
	for _, p := range []string{hashDir, msg} {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil || st.Uid != 65534 {
			t.Errorf("%s: uid %d after set-permissions (%v)", p, st.Uid, err)
		}
	}
	_, errOut, code = mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "check")
	if code != 0 || strings.Contains(errOut, "not owned") || strings.Contains(errOut, "bad permissions") {
		t.Errorf("check after set-permissions: %d %q", code, errOut)
	}
}

// TestSettingsThatCannotWork: a setting a service refuses (a restriction
// this version does not have, a DANE level) is reported by postfix check
// with file, line and value, refused by postfix start before any port is
// opened, and refused by a reload, which keeps the running configuration.
func TestSettingsThatCannotWork(t *testing.T) {
	t.Parallel()
	dir, _ := newInstance(t)
	cfgFile := filepath.Join(dir, "mailsrv.toml")
	good, _ := os.ReadFile(cfgFile)
	bad := strings.Replace(string(good), "\n[[service]]\n", "\nsmtpd_recipient_restrictions = [\"reject_unverified_recipient\"]\nsmtp_tls_security_level = \"dane\"\n\n[[service]]\n", 1)
	lineOf := func(text, key string) int {
		for i, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, key+" ") {
				return i + 1
			}
		}
		t.Fatalf("no %s", key)
		return 0
	}
	rbl := fmt.Sprintf("mailsrv.toml:%d: service smtp: smtpd_recipient_restrictions: unknown or unsupported restriction \"reject_unverified_recipient\"", lineOf(bad, "smtpd_recipient_restrictions"))
	dane := fmt.Sprintf("mailsrv.toml:%d: service smtp/unix: smtp_tls_security_level = dane: DANE is not part of this version of mailsrv", lineOf(bad, "smtp_tls_security_level"))
	if err := os.WriteFile(cfgFile, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "check")
	if code != 1 || !strings.Contains(errOut, "fatal: "+rbl) || !strings.Contains(errOut, "fatal: "+dane) {
		t.Errorf("check: %d %q\nwant %q and %q", code, errOut, rbl, dane)
	}
	_, errOut, code = mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "start")
	if code != 1 || !strings.Contains(errOut, rbl) {
		t.Errorf("start: %d %q", code, errOut)
	}
	if c, err := net.DialTimeout("tcp", smtpAddr(t, dir), time.Second); err == nil {
		c.Close()
		t.Error("the smtp port is open after a refused start")
	}

	// Running with the good file, a reload of the bad one is refused.
	if err := os.WriteFile(cfgFile, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "start"); code != 0 {
		t.Fatalf("start: %d %q", code, errOut)
	}
	defer mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "stop")
	if err := os.WriteFile(cfgFile, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "reload")
	if code != 1 || !strings.Contains(errOut, "reload refused, keeping the current configuration") || !strings.Contains(errOut, "unknown or unsupported restriction") {
		t.Errorf("reload: %d %q", code, errOut)
	}
	c, err := gosmtp.Dial(smtpAddr(t, dir))
	if err != nil {
		t.Fatalf("smtpd gone after a refused reload: %v", err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Errorf("smtpd does not answer after a refused reload: %v", err)
	}
}

// TestHelpNeedsNoConfig: every command's --help works in a folder with
// no configuration file (and none at the default path), under its own
// name and through a Postfix-named link.
func TestHelpNeedsNoConfig(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/etc/mailsrv/mailsrv.toml"); err == nil {
		t.Skip("/etc/mailsrv/mailsrv.toml exists on this machine")
	}
	dir := t.TempDir()
	for _, args := range [][]string{
		{"mailsrv", "--help"}, {"mailsrv", "sendmail", "--help"}, {"mailsrv", "sendmail", "-h"}, {"sendmail", "--help"},
		{"mailsrv", "postfix", "--help"}, {"mailsrv", "postfix", "check", "--help"}, {"mailsrv", "postfix", "set-permissions", "--help"},
		{"postconf", "--help"}, {"postqueue", "--help"}, {"mailq", "--help"}, {"postsuper", "--help"}, {"postcat", "--help"},
		{"postmap", "--help"}, {"postalias", "--help"}, {"newaliases", "--help"}, {"mailsrv", "saslpasswd", "--help"},
	} {
		out, errOut, code := mailsrv(t, dir, args[0], args[1:]...)
		if code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("%s: exit %d, stdout %.80q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
	}
}
