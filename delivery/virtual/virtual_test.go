package virtual

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"mailsrv/config"
	"mailsrv/outcome"
	"mailsrv/queue/qmgr"
	"mailsrv/queue/qmgr/qmgrtest"
)

// TestVirtual: a Maildir and an mbox mailbox, written with the owner's
// identity (nobody when the test runs as root, as the daemon's would be);
// an unknown address bounces 5.1.1, a Delivered-To loop 5.4.6, a message
// over virtual_mailbox_limit 5.2.2, a uid below virtual_minimum_uid
// defers as a configuration error; verification delivers nothing.
func TestVirtual(t *testing.T) {
	t.Parallel()
	uid, gid := os.Geteuid(), os.Getegid()
	if uid == 0 {
		uid, gid = 65534, 65534
	}
	base := t.TempDir()
	for d := base; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755)
	}
	vmail := filepath.Join(base, "vmail")
	if err := os.Mkdir(vmail, 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Chown(vmail, uid, gid)
	cfg, err := config.Parse(filepath.Join(base, "mailsrv.toml"), []byte(fmt.Sprintf(`
myhostname = "mx.example.test"
virtual_mailbox_base = %q
virtual_mailbox_maps = ["inline:{ {md@virt.example=md/}, {mb@virt.example=mb}, {small@virt.example=small}, {low@virt.example=low/} }"]
virtual_uid_maps = ["inline:{ {low@virt.example=5} }", "static:%d"]
virtual_gid_maps = ["static:%d"]
virtual_minimum_uid = 10
virtual_mailbox_limit = 2000
`, vmail, uid, gid)))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg.Params)
	if err != nil {
		t.Fatal(err)
	}
	d, rep, logs := qmgrtest.Delivery(t, qmgr.Request{Transport: "virtual"}, "Subject: virtual\n\nhello\n",
		"md@virt.example", "mb@virt.example", "nobody@virt.example", "low@virt.example")
	a.Deliver(d)
	qmgrtest.Expect(t, rep, "md@virt.example", outcome.Sent, "2.0.0")
	qmgrtest.Expect(t, rep, "mb@virt.example", outcome.Sent, "2.0.0")
	qmgrtest.Expect(t, rep, "nobody@virt.example", outcome.Bounced, "5.1.1")
	qmgrtest.Expect(t, rep, "low@virt.example", outcome.Deferred, "4.3.5")
	if !strings.Contains(logs.String(), "uid 5 is below virtual_minimum_uid 10") {
		t.Errorf("no warning about the low uid:\n%s", logs)
	}
	files, _ := filepath.Glob(filepath.Join(vmail, "md", "new", "*"))
	if len(files) != 1 {
		t.Fatalf("%d files in the Maildir", len(files))
	}
	b, _ := os.ReadFile(files[0])
	if !strings.HasPrefix(string(b), "Return-Path: <sender@example.test>\nX-Original-To: md@virt.example\nDelivered-To: md@virt.example\n") || !strings.HasSuffix(string(b), "hello\n") {
		t.Errorf("Maildir message:\n%s", b)
	}
	for _, f := range []string{files[0], filepath.Join(vmail, "mb")} {
		var st syscall.Stat_t
		if err := syscall.Stat(f, &st); err != nil || int(st.Uid) != uid {
			t.Errorf("%s: owner %d, want %d (%v)", f, st.Uid, uid, err)
		}
	}
	mb, _ := os.ReadFile(filepath.Join(vmail, "mb"))
	if !strings.HasPrefix(string(mb), "From sender@example.test ") || !strings.Contains(string(mb), "\nDelivered-To: mb@virt.example\n") {
		t.Errorf("mbox:\n%s", mb)
	}

	d, rep, _ = qmgrtest.Delivery(t, qmgr.Request{Transport: "virtual"}, "Delivered-To: md@virt.example\nSubject: loop\n\nx\n", "md@virt.example")
	a.Deliver(d)
	qmgrtest.Expect(t, rep, "md@virt.example", outcome.Bounced, "5.4.6")
	d, rep, _ = qmgrtest.Delivery(t, qmgr.Request{Transport: "virtual"}, "Subject: big\n\n"+strings.Repeat("x", 3000)+"\n", "small@virt.example")
	a.Deliver(d)
	qmgrtest.Expect(t, rep, "small@virt.example", outcome.Bounced, "5.2.2")
	d, rep, _ = qmgrtest.Delivery(t, qmgr.Request{Transport: "virtual", Verify: true}, "Subject: probe\n\nx\n", "md@virt.example")
	a.Deliver(d)
	if st := qmgrtest.Expect(t, rep, "md@virt.example", outcome.Sent, "2.0.0").Status; st.Text != "delivers to maildir" {
		t.Errorf("verify: %q", st.Text)
	}
	if files, _ := filepath.Glob(filepath.Join(vmail, "md", "new", "*")); len(files) != 1 {
		t.Errorf("verification delivered: %d files", len(files))
	}
}
