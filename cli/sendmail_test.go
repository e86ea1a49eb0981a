package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"mailsrv/config"
	"mailsrv/queue"
	"mailsrv/queue/qmgr"
)

func TestSendmailArgs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want sendmailOpts
	}{
		{[]string{"-t", "-oi"}, sendmailOpts{mode: "m", extract: true, dotOK: true, recipients: []string{}}},
		{[]string{"-i", "-f", "me@x", "-F", "Me Too", "a@b", "c"}, sendmailOpts{mode: "m", dotOK: true, sender: "me@x", senderSet: true, fullName: "Me Too", recipients: []string{"a@b", "c"}}},
		{[]string{"-fme@x", "-r<>", "-bs"}, sendmailOpts{mode: "s", sender: "", senderSet: true, recipients: []string{}}},
		{[]string{"-bv", "alice"}, sendmailOpts{mode: "v", recipients: []string{"alice"}}},
		{[]string{"-q"}, sendmailOpts{mode: "m", queueRun: true, recipients: []string{}}},
		{[]string{"-q30m"}, sendmailOpts{mode: "m", queueRun: true, recipients: []string{}}},
		{[]string{"-bp"}, sendmailOpts{mode: "p", recipients: []string{}}},
		{[]string{"-oem", "-odb", "-U", "-N", "never", "-C", "/etc/x.toml", "--", "-dash"}, sendmailOpts{mode: "m", configFile: "/etc/x.toml", recipients: []string{"-dash"}}},
	} {
		got, err := parseSendmailArgs(tc.args)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%q:\n got %+v\nwant %+v", tc.args, *got, tc.want)
		}
	}
	for _, bad := range [][]string{{"-f"}, {"-bd"}, {"-bx"}} {
		if _, err := parseSendmailArgs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSendmailReadMessage(t *testing.T) {
	t.Parallel()
	in := "To: Alice <alice@x.example>, bob@y.example\r\nCc: carol\r\nBcc: dave@z.example\r\nSubject: s\r\n\r\nbody\r\n.\r\nafter the dot\r\n"
	msg, rcpts, err := readMessage(strings.NewReader(in), &sendmailOpts{extract: true, recipients: []string{"eve"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := "To: Alice <alice@x.example>, bob@y.example\nCc: carol\nBcc: dave@z.example\nSubject: s\n\nbody\n"; string(msg) != want {
		t.Errorf("message %q, want %q", msg, want)
	}
	if want := []string{"eve", "alice@x.example", "bob@y.example", "carol", "dave@z.example"}; !reflect.DeepEqual(rcpts, want) {
		t.Errorf("recipients %q, want %q", rcpts, want)
	}
	msg, _, _ = readMessage(strings.NewReader("a\n.\nb\n"), &sendmailOpts{dotOK: true}, 0)
	if string(msg) != "a\n.\nb\n" {
		t.Errorf("-i: %q", msg)
	}
	if _, _, err := readMessage(strings.NewReader(strings.Repeat("x", 100)+"\n"), &sendmailOpts{}, 50); err == nil {
		t.Error("message over message_size_limit accepted")
	}
}

func testConfig(t *testing.T) (*config.Config, string) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "mailsrv.toml")
	text := `
queue_directory = "spool"
maillog_file = "maillog"
myhostname = "mx.our.test"
mydomain = "our.test"
myorigin = "$mydomain"
mydestination = ["$myhostname", "$mydomain"]
mynetworks = ["127.0.0.1/32"]
alias_maps = []
local_recipient_maps = []
virtual_alias_maps = ["inline:{ {team@our.test=alice, bob@far.example} }"]
`
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := queue.Create(cfg.Params.QueueDirectory, queue.Owner{UID: -1, GID: -1, SetgidGID: -1}); err != nil {
		t.Fatal(err)
	}
	return cfg, file
}

func TestSendmailVerify(t *testing.T) {
	t.Parallel()
	cfg, file := testConfig(t)
	var out bytes.Buffer
	// The daemon is down: the request waits in maildrop, flagged
	// verify-only, for pickup.
	err := runSendmail(&globals{configFile: file}, cfg, &sendmailOpts{mode: "v", sender: "me", senderSet: true, recipients: []string{"team", "x@remote.example"}}, nil, &out, &out)
	if err != nil {
		t.Fatal(err)
	}
	if want := "Mail Delivery Status Report will be mailed to <me>.\n"; out.String() != want {
		t.Errorf("-bv said %q, want %q", out.String(), want)
	}
	q := queue.FromConfig(cfg.Params)
	n := 0
	err = q.Walk(queue.Maildrop, func(e queue.Entry) error {
		f, err := q.Open(queue.Maildrop, e.ID, false)
		if err != nil {
			return err
		}
		defer f.Close()
		n++
		if f.Attr(qmgr.TraceFlags) != qmgr.TraceVerify || len(f.Recipients) != 2 || f.Sender != "me" || f.ContentSize != 0 {
			t.Errorf("maildrop file: flags %q, sender %q, %d recipients, %d bytes", f.Attr(qmgr.TraceFlags), f.Sender, len(f.Recipients), f.ContentSize)
		}
		return nil
	}, nil)
	if err != nil || n != 1 {
		t.Fatalf("maildrop: %d files, %v", n, err)
	}
	if err := runSendmail(&globals{configFile: file}, cfg, &sendmailOpts{mode: "v"}, nil, &out, &out); err == nil {
		t.Error("-bv without an address succeeded")
	}
}

// TestSendmailDown: with the daemon down, sendmail (-bm and -bs) leaves
// the message in maildrop for pickup.
func TestSendmailDown(t *testing.T) {
	t.Parallel()
	cfg, file := testConfig(t)
	g := &globals{configFile: file}
	var out bytes.Buffer
	err := runSendmail(g, cfg, &sendmailOpts{mode: "m", recipients: []string{"alice"}, fullName: "Me"}, strings.NewReader("Subject: x\n\nhi\n"), &out, &out)
	if err != nil {
		t.Fatal(err)
	}
	smtp := "HELO me\r\nMAIL FROM:<me@our.test>\r\nRCPT TO:<bob@far.example>\r\nDATA\r\nSubject: y\r\n\r\nvia -bs\r\n.\r\nQUIT\r\n"
	out.Reset()
	if err := runSendmail(g, cfg, &sendmailOpts{mode: "s"}, strings.NewReader(smtp), &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "250 2.0.0 Ok: queued as ") || !strings.HasSuffix(out.String(), "221 2.0.0 Bye\r\n") {
		t.Errorf("-bs session:\n%s", out.String())
	}
	q := queue.FromConfig(cfg.Params)
	var senders []string
	err = q.Walk(queue.Maildrop, func(e queue.Entry) error {
		f, err := q.Open(queue.Maildrop, e.ID, false)
		if err != nil {
			return err
		}
		defer f.Close()
		senders = append(senders, f.Sender+" "+f.Recipients[0].Addr)
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(senders) != 2 {
		t.Fatalf("maildrop holds %q, want 2 messages", senders)
	}
}
