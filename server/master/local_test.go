package master

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"mailsrv/delivery/local"
)

// testUsers is a passwd for local(8) in tests.
type testUsers map[string]*local.User

func (u testUsers) Lookup(name string) (*local.User, bool, error) {
	v, ok := u[name]
	return v, ok, nil
}

// makeUsers gives each name a home under base, owned by uid:gid.
func makeUsers(t *testing.T, base string, uid, gid int, names ...string) testUsers {
	t.Helper()
	users := testUsers{}
	for _, n := range names {
		home := filepath.Join(base, "home", n)
		openDir(t, home, 0o755)
		os.Chown(home, uid, gid)
		users[n] = &local.User{Name: n, UID: uid, GID: gid, Home: home, Shell: "/bin/sh"}
	}
	return users
}

// localSite makes a mail spool (mode 1777) and an aliases file under
// base, and returns the spool and the settings that point local(8) at
// them, with default_privs.
func localSite(t *testing.T, base, aliasText, privs string) (spool, settings string) {
	t.Helper()
	spool = filepath.Join(base, "mail")
	openDir(t, spool, 0o1777)
	aliases := filepath.Join(base, "aliases")
	if err := os.WriteFile(aliases, []byte(aliasText), 0o644); err != nil {
		t.Fatal(err)
	}
	return spool, fmt.Sprintf(`
myorigin = "$myhostname"
alias_maps = ["texthash:%s"]
mail_spool_directory = %q
default_privs = %q
`, aliases, spool, privs)
}

// mailUID is the uid the test's users get: as root a real unprivileged
// uid (nobody), else our own (only root can switch users).
func mailUID() (uid, gid int, name string) {
	if os.Geteuid() == 0 {
		return 65534, 65534, "nobody"
	}
	u := os.Getenv("USER")
	return os.Geteuid(), os.Getegid(), u
}

// openDir makes dir and its parents up to the test's temp root
// searchable, so that the unprivileged users can reach their homes.
func openDir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, mode); err != nil {
		t.Fatal(err)
	}
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o011 != 0o011 {
			os.Chmod(d, st.Mode().Perm()|0o011)
		}
	}
	os.Chmod(dir, mode)
}

// TestLocalDelivery: SMTP in, local(8) out: an alias fanning out to two
// users, a command and a file; a .forward that forwards to another user
// and keeps a copy (\user); mbox in the spool with From_ quoting; an
// unknown user bounced back to the sender's mailbox. Each member is
// logged with orig_to, as Postfix does.
func TestLocalDelivery(t *testing.T) {
	t.Parallel()
	uid, gid, privs := mailUID()
	base := t.TempDir()
	out := filepath.Join(base, "out")
	openDir(t, out, 0o777)
	users := makeUsers(t, base, uid, gid, "alice", "bob", "carol")
	if err := os.WriteFile(filepath.Join(users["bob"].Home, ".forward"), []byte("# bob's\ncarol, \\bob\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(base, "script.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ncat > "+out+"/script.$$\necho \"$RECIPIENT $SENDER\" > "+out+"/env\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	spool, site := localSite(t, base, fmt.Sprintf("team alice, bob, \"|%s\", %s/teamfile\npostmaster alice\n", script, out), privs)
	dir, addr, stop := localDaemon(t, users, site+"smtpd_reject_unlisted_recipient = false\n")

	send(t, addr, "alice@mx.example.test", []string{"team@mx.example.test"}, "Subject: team\r\n\r\nFrom here\r\nbody\r\n")
	send(t, addr, "alice@mx.example.test", []string{"nosuchuser@mx.example.test"}, "Subject: lost\r\n\r\nx\r\n")
	eventuallyLog(t, dir, "the queue to drain", func() bool {
		return queueEmpty(dir) && strings.Contains(readLog(dir), "sender non-delivery notification") && strings.Count(readLog(dir), ": removed") == 3
	})
	stop()

	mbox := func(user string) string {
		b, err := os.ReadFile(filepath.Join(spool, user))
		if err != nil {
			t.Errorf("%s's mailbox: %v", user, err)
		}
		return string(b)
	}
	alice := mbox("alice")
	if !regexp.MustCompile(`(?m)^From alice@mx.example.test  \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\nReturn-Path: <alice@mx.example.test>\nX-Original-To: team@mx.example.test\nDelivered-To: alice@mx.example.test\n`).MatchString(alice) ||
		!strings.Contains(alice, "\n>From here\n") {
		t.Errorf("alice's mailbox:\n%s", alice)
	}
	if !strings.Contains(alice, "From MAILER-DAEMON  ") || !strings.Contains(alice, `<nosuchuser@mx.example.test>: unknown user: "nosuchuser"`) {
		t.Errorf("alice did not get the bounce:\n%s", alice)
	}
	if b := mbox("bob"); !strings.Contains(b, "Subject: team") || !strings.Contains(b, "Delivered-To: bob@mx.example.test") {
		t.Errorf("bob's mailbox:\n%s", b)
	}
	if c := mbox("carol"); !strings.Contains(c, "Subject: team") || !strings.Contains(c, "Delivered-To: carol@mx.example.test") {
		t.Errorf("carol's mailbox:\n%s", c)
	}
	if b, err := os.ReadFile(filepath.Join(out, "teamfile")); err != nil || !strings.Contains(string(b), "Subject: team") {
		t.Errorf("teamfile: %v %s", err, b)
	}
	if b, err := os.ReadFile(filepath.Join(out, "env")); err != nil || string(b) != "team@mx.example.test alice@mx.example.test\n" {
		t.Errorf("command environment: %v %q", err, b)
	}
	if st, err := os.Stat(filepath.Join(spool, "carol")); err != nil || st.Sys().(*syscall.Stat_t).Uid != uint32(uid) {
		t.Errorf("carol's mailbox is not hers: %v", err)
	}
	log := readLog(dir)
	for _, re := range []string{
		`local\[\d+\]: \w+: to=<alice@mx.example.test>, orig_to=<team@mx.example.test>, relay=local, delay=[\d.]+, delays=[\d./]+, dsn=2.0.0, status=sent \(delivered to mailbox\)`,
		`local\[\d+\]: \w+: to=<carol@mx.example.test>, orig_to=<team@mx.example.test>, relay=local, .*status=sent \(delivered to mailbox\)`,
		`local\[\d+\]: \w+: to=<bob@mx.example.test>, orig_to=<team@mx.example.test>, relay=local, .*status=sent \(delivered to mailbox\)`,
		`local\[\d+\]: \w+: to=<team@mx.example.test>, relay=local, .*status=sent \(delivered to command: ` + regexp.QuoteMeta(script) + `\)`,
		`local\[\d+\]: \w+: to=<team@mx.example.test>, relay=local, .*status=sent \(delivered to file: ` + regexp.QuoteMeta(out) + `/teamfile\)`,
		`local\[\d+\]: \w+: to=<nosuchuser@mx.example.test>, relay=local, .*dsn=5.1.1, status=bounced \(unknown user: "nosuchuser"\)`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("mail log lacks %s:\n%s", re, log)
		}
	}
}

// localDaemon is deliveryDaemon with a passwd table for local(8).
func localDaemon(t *testing.T, users local.Users, extra string) (dir, addr string, stop func()) {
	t.Helper()
	return deliveryDaemonWith(t, extra, func(o *Options) { o.users, o.localExec = users, childExec })
}

// TestLocalMaildirAndMore: home_mailbox Maildir, mailbox_command,
// :include: lists (whose commands are refused by the default
// allow_mail_to_commands), an owner- alias that becomes the sender of a
// list's forwarded copies, and the Delivered-To loop check.
func TestLocalMaildirAndMore(t *testing.T) {
	t.Parallel()
	uid, gid, privs := mailUID()
	base := t.TempDir()
	out := filepath.Join(base, "out")
	openDir(t, out, 0o777)
	users := makeUsers(t, base, uid, gid, "dora", "eve")
	list := filepath.Join(base, "list")
	if err := os.WriteFile(list, []byte("dora\n|/bin/true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, site := localSite(t, base, fmt.Sprintf(
		"club :include:%s\nowner-club dora\nfar outside@remote.example\nloop loop2\nloop2 loop\n", list), privs)
	dir, addr, stop := localDaemon(t, users, site+`home_mailbox = "Maildir/"
smtpd_reject_unlisted_recipient = false
`)
	send(t, addr, "s@remote.example", []string{"club@mx.example.test"}, "Subject: club\r\n\r\nx\r\n")
	send(t, addr, "s@remote.example", []string{"eve@mx.example.test"}, "Subject: loop\r\nDelivered-To: eve@mx.example.test\r\n\r\nx\r\n")
	send(t, addr, "s@remote.example", []string{"far@mx.example.test"}, "Subject: far\r\n\r\nx\r\n")
	eventuallyLog(t, dir, "the deliveries", func() bool {
		l := readLog(dir)
		return strings.Contains(l, "mail to command is restricted") && strings.Contains(l, "forwarded as") && strings.Contains(l, "mail forwarding loop")
	})
	eventuallyLog(t, dir, "the club message in dora's Maildir", func() bool {
		return len(maildirFiles(filepath.Join(users["dora"].Home, "Maildir"))) >= 1
	})
	stop()
	log := readLog(dir)
	for _, re := range []string{
		`to=<dora@mx.example.test>, orig_to=<club@mx.example.test>, relay=local, .*status=sent \(delivered to maildir\)`,
		`to=<club@mx.example.test>, relay=local, .*dsn=5.7.1, status=bounced \(mail to command is restricted\)`,
		`to=<eve@mx.example.test>, relay=local, .*dsn=5.4.6, status=bounced \(mail forwarding loop for eve@mx.example.test\)`,
		`to=<far@mx.example.test>, relay=local, .*status=sent \(forwarded as \w+\)`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("mail log lacks %s:\n%s", re, log)
		}
	}
	// The forwarded copy keeps the original sender (far has no owner-).
	if !regexp.MustCompile(`qmgr\[\d+\]: \w+: from=<s@remote.example>, size=\d+, nrcpt=1 \(queue active\)\n(.*\n)*.*to=<outside@remote.example>`).MatchString(log) {
		t.Errorf("forwarded copy not queued for outside@remote.example:\n%s", log)
	}
}
