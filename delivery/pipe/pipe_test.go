package pipe

import (
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"mailsrv/config"
	"mailsrv/outcome"
	"mailsrv/queue/qmgr"
	"mailsrv/queue/qmgr/qmgrtest"
)

// runAs is who the test's commands run as: nobody when the test runs as
// root (as the daemon would run them), else the test's own user.
func runAs(t *testing.T) string {
	if os.Geteuid() == 0 {
		return "nobody"
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

// TestPipe: the command gets the macros and the message (with the F
// flag's From line), once for all recipients; an exit status maps to a
// deferral (EX_TEMPFAIL) or a bounce (EX_NOUSER), a code the command
// prints overrides it, and the size= limit bounces before running.
func TestPipe(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	for d := base; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		_ = os.Chmod(d, 0o755)
	}
	out := filepath.Join(base, "out")
	if err := os.Mkdir(out, 0o777); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(out, 0o777)
	script := filepath.Join(base, "deliver.sh")
	if err := os.WriteFile(script, []byte(`#!/bin/sh
case "$2" in
temp*) echo "try again later"; exit 75;;
nouser*) echo "no such user here"; exit 67;;
printed*) echo "5.2.2 mailbox full"; exit 1;;
esac
{ printf '%s\n' "$@"; cat; } > `+out+`/msg
`), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(filepath.Join(base, "mailsrv.toml"), []byte(`
myhostname = "mx.example.test"
recipient_delimiter = "+"
mail_owner = "postfix-test-owner"
`))
	if err != nil {
		t.Fatal(err)
	}
	attrs := &config.PipeAttrs{Argv: []string{script, "${sender}", "${recipient}", "${nexthop}", "${user}", "${extension}"},
		Flags: "F", User: runAs(t), Size: 1000, Eol: "\n"}
	a, err := New("script", cfg.Params, attrs)
	if err != nil {
		t.Fatal(err)
	}
	d, rep, _ := qmgrtest.Delivery(t, qmgr.Request{Transport: "script", Nexthop: "next.hop"}, "Subject: piped\n\nhello\n", "a+ext@pipe.example", "b@pipe.example")
	a.Deliver(d)
	for _, r := range []string{"a+ext@pipe.example", "b@pipe.example"} {
		if st := qmgrtest.Expect(t, rep, r, outcome.Sent, "2.0.0").Status; st.Relay != "script" || st.Text != "delivered via script service" {
			t.Errorf("<%s>: %+v", r, st)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "msg"))
	if err != nil {
		t.Fatal(err)
	}
	want := "sender@example.test\na+ext@pipe.example\nb@pipe.example\nnext.hop\na\nb\next\n\nFrom sender@example.test  "
	if !strings.HasPrefix(string(b), want) || !strings.HasSuffix(string(b), "Subject: piped\n\nhello\n") {
		t.Errorf("the command got:\n%s\nwant it to start %q", b, want)
	}

	for _, c := range []struct {
		rcpt, dsn, text string
		state           outcome.State
	}{
		{"temp@pipe.example", "4.3.0", `Command died with status 75: "` + script + `". Command output: try again later`, outcome.Deferred},
		{"nouser@pipe.example", "5.1.1", `Command died with status 67: "` + script + `". Command output: no such user here`, outcome.Bounced},
		{"printed@pipe.example", "5.2.2", `Command died with status 1: "` + script + `". Command output: 5.2.2 mailbox full`, outcome.Bounced},
	} {
		d, rep, _ := qmgrtest.Delivery(t, qmgr.Request{Transport: "script"}, "Subject: x\n\nx\n", c.rcpt)
		a.Deliver(d)
		if st := qmgrtest.Expect(t, rep, c.rcpt, c.state, c.dsn).Status; st.Text != c.text {
			t.Errorf("<%s>: %q\nwant %q", c.rcpt, st.Text, c.text)
		}
	}
	d, rep, _ = qmgrtest.Delivery(t, qmgr.Request{Transport: "script"}, strings.Repeat("x", 2000), "big@pipe.example")
	a.Deliver(d)
	qmgrtest.Expect(t, rep, "big@pipe.example", outcome.Bounced, "5.2.3")
}
