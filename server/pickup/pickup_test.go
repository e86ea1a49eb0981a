package pickup

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailsrv/config"
	"mailsrv/maillog"
	"mailsrv/queue"
	"mailsrv/rewrite"
	"mailsrv/rewrite/cleanup"
)

func TestPickup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg, err := config.Parse(dir+"/mailsrv.toml", []byte("myhostname = \"mx.our.dom\"\nmydomain = \"our.dom\"\nmyorigin = \"$mydomain\"\nqueue_directory = \"spool\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Params
	if err := queue.Create(p.QueueDirectory, queue.Owner{UID: -1, GID: -1, SetgidGID: -1}); err != nil {
		t.Fatal(err)
	}
	q := queue.FromConfig(p)
	rw, err := rewrite.New(p)
	if err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	log := maillog.New(logs, "mx")
	woken := 0
	pk := &Pickup{P: p, Q: q, Log: log.Role("mailsrv", "pickup"), Cleanup: cleanup.New(p, q, rw, log.Role("mailsrv", "cleanup"), func() { woken++ })}

	old := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	requeued, err := q.Inject(queue.Maildrop, queue.Envelope{Sender: "a@our.dom", Arrival: old, Recipients: []queue.Recipient{{Addr: "b@example.net"}}}, strings.NewReader("Subject: again\n\nbody\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = q.Inject(queue.Maildrop, queue.Envelope{Sender: "joe", Attrs: map[string]string{"submit_uid": "1000", "full_name": "Joe"}, Recipients: []queue.Recipient{{Addr: "b@example.net"}}}, strings.NewReader("Subject: new\n\nhi\n"))
	if err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(q.Dir, queue.Maildrop, "4TpXvC0sf8z9HdB")
	if err := os.WriteFile(garbage, []byte("not a queue file"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := pk.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(q.Dir, queue.Maildrop))
	if len(ents) != 0 {
		t.Errorf("maildrop not emptied: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(q.Dir, queue.Corrupt, "4TpXvC0sf8z9HdB")); err != nil {
		t.Errorf("garbage not in corrupt/: %v", err)
	}
	var got []string
	err = q.Walk(queue.Incoming, func(e queue.Entry) error {
		f, err := q.Open(queue.Incoming, e.ID, false)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b, _ := io.ReadAll(f.Content())
		switch f.Sender {
		case "a@our.dom":
			if string(b) != "Subject: again\n\nbody\n" || !f.Arrival.Equal(old) || time.Since(f.Create) > time.Minute {
				t.Errorf("requeued: %q arrival %v create %v", b, f.Arrival, f.Create)
			}
		case "joe@our.dom":
			s := string(b)
			if !strings.HasPrefix(s, "Received: by mx.our.dom (mailsrv, from userid 1000)\n\tid "+e.ID+"; ") || !strings.Contains(s, "\nFrom: Joe <joe@our.dom>\n") || !strings.Contains(s, "Message-Id: <"+e.ID+"@mx.our.dom>") {
				t.Errorf("submitted: %q", s)
			}
		default:
			t.Errorf("unexpected sender %q", f.Sender)
		}
		got = append(got, e.ID)
		return nil
	}, nil)
	if err != nil || len(got) != 2 || woken != 2 {
		t.Fatalf("incoming %v (woken %d): %v", got, woken, err)
	}
	for _, want := range []string{requeued + ": from=<a@our.dom>, requeued as ", ": uid=1000 from=<joe>", "warning: 4TpXvC0sf8z9HdB: ", "; moved to corrupt"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}
