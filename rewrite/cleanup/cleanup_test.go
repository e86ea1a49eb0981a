package cleanup

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"mailsrv/config"
	"mailsrv/maillog"
	"mailsrv/queue"
	"mailsrv/rewrite"
)

type env struct {
	c    *Cleanup
	q    *queue.Queue
	logs *bytes.Buffer
	wake chan struct{}
}

const teamAlias = `virtual_alias_maps = ["inline:{ { team@our.dom = alice, bob@our.dom } }"]`

func setup(t *testing.T, extra string) *env {
	t.Helper()
	dir := t.TempDir()
	cfg, err := config.Parse(dir+"/mailsrv.toml", []byte(`
myhostname = "mx.our.dom"
mydomain = "our.dom"
myorigin = "$mydomain"
queue_directory = "spool"
hopcount_limit = 5
header_size_limit = 1000
`+extra))
	if err != nil {
		t.Fatal(err)
	}
	if err := queue.Create(cfg.Params.QueueDirectory, queue.Owner{UID: -1, GID: -1, SetgidGID: -1}); err != nil {
		t.Fatal(err)
	}
	rw, err := rewrite.New(cfg.Params)
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	q := queue.FromConfig(cfg.Params)
	wake := make(chan struct{}, 1)
	notify := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	return &env{c: New(cfg.Params, q, rw, maillog.New(logs, "mx").Role("mailsrv", "cleanup"), notify), q: q, logs: logs, wake: wake}
}

func (e *env) run(t *testing.T, en Envelope, content string, chunk int) (*queue.File, error) {
	t.Helper()
	m, err := e.c.Open(en)
	if err != nil {
		return nil, err
	}
	b := []byte(content)
	for len(b) > 0 {
		n := min(chunk, len(b))
		m.Write(b[:n])
		b = b[n:]
	}
	if err := m.Finish(); err != nil {
		if _, serr := os.Stat(e.q.Path(queue.Incoming, m.ID())); serr == nil {
			t.Errorf("refused message %s left in the queue", m.ID())
		}
		return nil, err
	}
	f, err := e.q.Open(queue.Incoming, m.ID(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, nil
}

func content(t *testing.T, f *queue.File) string {
	t.Helper()
	b, err := io.ReadAll(f.Content())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var arrival = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func TestRemoteMessage(t *testing.T) {
	t.Parallel()
	e := setup(t, teamAlias)
	for _, chunk := range []int{1, 7, 1 << 20} {
		f, err := e.run(t, Envelope{
			Sender:     "Joe@Example.NET",
			Recipients: []queue.Recipient{{Addr: "team@our.dom", ORCPT: "rfc822;team@our.dom", Notify: queue.NotifyFailure}, {Addr: "postmaster"}},
			Attrs:      map[string]string{"client_address": "192.0.2.1"},
			Arrival:    arrival,
			Received: func(id string) string {
				return "from client.example (client.example [192.0.2.1])\n\tby mx.our.dom (mailsrv) with ESMTP id X\n\tfor <team@our.dom>; Sat, 21 Nov 2026 10:00:00 +0000 (UTC)"
			},
		}, "Return-Path: <forged@evil>\nSubject: hi\n  there\nMessage-ID: <abc@example.net>\nbcc: secret@x\n\nbody\r with stray CR\n", chunk)
		if err != nil {
			t.Fatal(err)
		}
		want := "Received: from client.example (client.example [192.0.2.1])\n\tby mx.our.dom (mailsrv) with ESMTP id X\n\tfor <team@our.dom>; Sat, 21 Nov 2026 10:00:00 +0000 (UTC)\n" +
			"Subject: hi\n  there\nMessage-ID: <abc@example.net>\n\nbody  with stray CR\n"
		if got := content(t, f); got != want {
			t.Errorf("chunk %d: content\n%q\nwant\n%q", chunk, got, want)
		}
		if f.Sender != "Joe@Example.NET" || f.Attr("client_address") != "192.0.2.1" {
			t.Errorf("envelope: %q %v", f.Sender, f.Attrs)
		}
		var got []string
		for _, r := range f.Recipients {
			got = append(got, r.Addr+"<"+r.Orig+">"+r.ORCPT)
		}
		if strings.Join(got, " ") != "alice@our.dom<team@our.dom>rfc822;team@our.dom bob@our.dom<team@our.dom>rfc822;team@our.dom postmaster@our.dom<postmaster>" {
			t.Errorf("recipients: %v", got)
		}
	}
	if !strings.Contains(e.logs.String(), ": message-id=<abc@example.net>") {
		t.Errorf("log:\n%s", e.logs)
	}
	select {
	case <-e.wake:
	default:
		t.Error("qmgr was not woken")
	}
}

func TestLocalSubmissionGetsMissingHeaders(t *testing.T) {
	t.Parallel()
	e := setup(t, teamAlias)
	f, err := e.run(t, Envelope{Sender: "alice", FullName: "Alice Q. User", Recipients: []queue.Recipient{{Addr: "bob@example.net"}}, Arrival: arrival, LocalHeaders: true}, "Subject: x\n\nhello\n", 64)
	if err != nil {
		t.Fatal(err)
	}
	want := "Subject: x\nMessage-Id: <" + f.ID + "@mx.our.dom>\nDate: Sat, 21 Nov 2026 10:00:00 +0000 (UTC)\nFrom: \"Alice Q. User\" <alice@our.dom>\n\nhello\n"
	if got := content(t, f); got != want {
		t.Errorf("content\n%q\nwant\n%q", got, want)
	}
	if f.Sender != "alice@our.dom" {
		t.Errorf("sender not canonicalized: %q", f.Sender)
	}
	// Resent- headers present: the Resent- variants are added; no body.
	f, err = e.run(t, Envelope{Sender: "", Recipients: []queue.Recipient{{Addr: "bob@example.net"}}, Arrival: arrival, LocalHeaders: true}, "Resent-To: bob@example.net\nDate: x\n", 64)
	if err != nil {
		t.Fatal(err)
	}
	got := content(t, f)
	if !strings.Contains(got, "Resent-Message-Id: <") || !strings.Contains(got, "Resent-Date: ") || !strings.Contains(got, "Resent-From: MAILER-DAEMON\n") || !strings.HasSuffix(got, "\n\n") {
		t.Errorf("resent content %q", got)
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	e := setup(t, teamAlias)
	rc := []queue.Recipient{{Addr: "bob@example.net"}}
	// Hop count: 5 Received headers plus ours reach hopcount_limit.
	hops := strings.Repeat("Received: from a by b\n", 5)
	_, err := e.run(t, Envelope{Recipients: rc, Received: func(string) string { return "from c by d" }}, hops+"\nbody\n", 100)
	if !errors.Is(err, ErrHops) {
		t.Errorf("too many hops: %v", err)
	}
	if _, err := e.run(t, Envelope{Recipients: rc}, strings.Repeat("Received: x\n", 4)+"\n", 100); err != nil {
		t.Errorf("4 hops refused: %v", err)
	}

	// A header past header_size_limit (1000 here) is cut; the next ones and
	// the body are intact.
	huge := "X-Huge: " + strings.Repeat("h", 5000) + "\n\t" + strings.Repeat("c", 3000) + "\n"
	f, err := e.run(t, Envelope{Recipients: rc}, huge+"Subject: after\n\nbody\n", 333)
	if err != nil {
		t.Fatal(err)
	}
	got := content(t, f)
	if !strings.HasPrefix(got, "X-Huge: hhh") || !strings.Contains(got, "\nSubject: after\n\nbody\n") || len(got) > 1000+len("\nSubject: after\n\nbody\n")+1 {
		t.Errorf("cut header: %d bytes, %q...", len(got), got[:min(60, len(got))])
	}
	if !strings.Contains(e.logs.String(), "header x-huge exceeds header_size_limit (1000 bytes)") {
		t.Errorf("no log line for the cut header:\n%s", e.logs)
	}

	// Many short headers (100 KB in all) pass; a 10,000-character body
	// line passes whole.
	many := strings.Repeat("X-A: "+strings.Repeat("a", 90)+"\n", 1100)
	long := strings.Repeat("L", 10000)
	f, err = e.run(t, Envelope{Recipients: rc}, many+"\n"+long+"\nend\n", 4096)
	if err != nil {
		t.Fatal(err)
	}
	if got := content(t, f); got != many+"\n"+long+"\nend\n" {
		t.Errorf("many headers / long line altered (%d bytes)", len(got))
	}
	// A message that starts with a huge non-header line loses nothing.
	f, err = e.run(t, Envelope{Recipients: rc}, long+"\nrest\n", 512)
	if err != nil {
		t.Fatal(err)
	}
	if got := content(t, f); got != long+"\nrest\n" {
		t.Errorf("headerless long line: %d bytes", len(got))
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	e := setup(t, `virtual_alias_maps = ["inline:{ a@our.dom=b@our.dom, b@our.dom=c@our.dom, c@our.dom=d@our.dom }"]
virtual_alias_recursion_limit = 1`)
	if _, err := e.c.Open(Envelope{Recipients: nil}); !errors.Is(err, ErrNoRcpt) {
		t.Errorf("no recipients: %v", err)
	}
	if _, err := e.c.Open(Envelope{Recipients: []queue.Recipient{{Addr: "a@our.dom"}}}); !errors.Is(err, ErrAlias) {
		t.Errorf("alias loop: %v", err)
	}
	m, err := e.c.Open(Envelope{Recipients: []queue.Recipient{{Addr: "x@our.dom"}}})
	if err != nil {
		t.Fatal(err)
	}
	m.Write([]byte("Subject: big\n\n"))
	m.Reject(ErrTooBig)
	if err := m.Finish(); !errors.Is(err, ErrTooBig) {
		t.Errorf("rejected message: %v", err)
	}
	if _, err := os.Stat(e.q.Path(queue.Incoming, m.ID())); err == nil {
		t.Error("rejected message left a file")
	}
}
