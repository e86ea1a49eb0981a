package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"mailsrv/internal/testutil"
)

// TestLocalDeliveryAsAUser runs the daemon as an administrator would (as
// root, dropping to mail_owner) and delivers to a throwaway system user:
// the mailbox is written by a child running as that user, started by the
// privileged helper, and belongs to the user.
func TestLocalDeliveryAsAUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a system user and lets the daemon drop privileges")
	}
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Skip("useradd not found")
	}
	name := fmt.Sprintf("mstest%d", os.Getpid()%100000)
	if out, err := exec.Command("useradd", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Skipf("useradd: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := newInstance(t)
	// virtual(8) too: a mailbox owned by the same throwaway user, written
	// through the helper while the daemon runs as nobody.
	vmail := filepath.Join(dir, "vmail")
	if err := os.MkdirAll(vmail, 0o755); err != nil {
		t.Fatal(err)
	}
	vuid, _ := strconv.Atoi(u.Uid)
	vgid, _ := strconv.Atoi(u.Gid)
	os.Chown(vmail, vuid, vgid)
	cfgPath := filepath.Join(dir, "mailsrv.toml")
	cb, _ := os.ReadFile(cfgPath)
	extra := fmt.Sprintf("virtual_mailbox_domains = [\"virt.example\"]\nvirtual_mailbox_base = \"vmail\"\nvirtual_mailbox_maps = [\"inline:{ v@virt.example=v/ }\"]\nvirtual_uid_maps = [\"static:%d\"]\nvirtual_gid_maps = [\"static:%d\"]\n", vuid, vgid)
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(string(cb), "\n[[service]]\n", "\n"+extra+"\n[[service]]\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	// The user's child process runs this binary: a copy it may execute
	// (go test's build directory is private).
	if err := copyFile(filepath.Join(dir, "bin", "mailsrv")); err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(dir, "run", "mail")
	if err := os.MkdirAll(spool, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(spool, 0o1777)
	if _, errOut, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "start"); code != 0 {
		t.Fatalf("start: %d %q", code, errOut)
	}
	defer mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "stop")
	addr := smtpAddr(t, dir)
	c, err := gosmtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("friend@remote.example", []string{name + "@mail.example.test"}, strings.NewReader("Subject: for a user\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("friend@remote.example", []string{"v@virt.example"}, strings.NewReader("Subject: virtual\r\n\r\nhi\r\n")); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	testutil.Eventually(t, "the virtual Maildir", func() bool {
		files, _ := filepath.Glob(filepath.Join(vmail, "v", "new", "*"))
		if len(files) != 1 {
			return false
		}
		st, err := os.Stat(files[0])
		return err == nil && fmt.Sprint(st.Sys().(*syscall.Stat_t).Uid) == u.Uid
	})
	mbox := filepath.Join(spool, name)
	testutil.Eventually(t, "the user's mailbox", func() bool {
		b, err := os.ReadFile(mbox)
		log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
		return err == nil && strings.Contains(string(b), "Subject: for a user") &&
			strings.Contains(string(log), "to=<"+name+"@mail.example.test>, relay=local")
	})
	st, _ := os.Stat(mbox)
	if fmt.Sprint(st.Sys().(*syscall.Stat_t).Uid) != u.Uid || st.Mode().Perm() != 0o600 {
		t.Errorf("mailbox owner %d mode %v, want %s and 0600", st.Sys().(*syscall.Stat_t).Uid, st.Mode(), u.Uid)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
	if !strings.Contains(string(log), "to=<"+name+"@mail.example.test>, relay=local") || !strings.Contains(string(log), "status=sent (delivered to mailbox)") {
		t.Errorf("mail log:\n%s", log)
	}
}

// copyFile copies the test binary to path, mode 0755.
func copyFile(path string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b, err := os.ReadFile(self)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o755)
}

// TestSaslpasswdCommand: users are added (password from standard input,
// stored as a bcrypt hash), listed and removed; short passwords refused.
func TestSaslpasswdCommand(t *testing.T) {
	t.Parallel()
	dir, _ := newInstance(t)
	if _, e, code := mailsrvStdin(t, dir, "correct horse\n", "mailsrv", "-c", "mailsrv.toml", "saslpasswd", "alice"); code != 0 {
		t.Fatalf("add: %d %s", code, e)
	}
	if _, e, code := mailsrvStdin(t, dir, "short\n", "mailsrv", "-c", "mailsrv.toml", "saslpasswd", "bob"); code != 2 || !strings.Contains(e, "at least 8 characters") {
		t.Errorf("short password: %d %s", code, e)
	}
	out, _, _ := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "saslpasswd", "-l")
	if out != "alice\n" {
		t.Errorf("list: %q", out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "run/spool/smtpd"))
	if err != nil || !strings.Contains(string(b), "alice:$2a$") || strings.Contains(string(b), "correct horse") {
		t.Errorf("password file: %v %q", err, b)
	}
	if _, e, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "saslpasswd", "-d", "alice"); code != 0 {
		t.Errorf("delete: %d %s", code, e)
	}
	if out, _, _ := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "saslpasswd", "-l"); out != "" {
		t.Errorf("list after delete: %q", out)
	}
}
