package local

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

	"mailsrv/config"
	"mailsrv/maillog"
	"mailsrv/outcome"
	"mailsrv/queue"
	"mailsrv/queue/qmgr"
	"mailsrv/queue/qmgr/qmgrtest"
	"mailsrv/rewrite"
	"mailsrv/rewrite/cleanup"
)

// rootOnly is a passwd with root alone.
type rootOnly struct{}

func (rootOnly) Lookup(name string) (*User, bool, error) {
	if name == "root" {
		return &User{Name: "root", Home: "/nonexistent"}, true, nil
	}
	return nil, false, nil
}

// TestAliasMembers: an alias with a remote member and an unknown local
// name is reported through Members: the remote member forwarded through
// cleanup (a new queue file with a Delivered-To header), the unknown one
// bounced; under verification nothing is forwarded and the answers say
// what would happen; root's mail is deferred asking for an alias.
func TestAliasMembers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg, err := config.Parse(filepath.Join(dir, "mailsrv.toml"), []byte(`
myhostname = "mx.example.test"
mydestination = ["$myhostname"]
queue_directory = "spool"
alias_maps = ["inline:{ {list=bob@remote.example, ghost} }"]
`))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Params
	if err := queue.Create(p.QueueDirectory, queue.Owner{UID: -1, GID: -1, SetgidGID: -1}); err != nil {
		t.Fatal(err)
	}
	rw, err := rewrite.New(p)
	if err != nil {
		t.Fatal(err)
	}
	q := queue.FromConfig(p)
	a, err := New(Options{Params: p, Users: rootOnly{}, Forward: cleanup.New(p, q, rw, maillog.New(io.Discard, "test").Role("mailsrv", "cleanup"), nil),
		IsLocal: func(addr string) bool {
			return !strings.Contains(addr, "@") || strings.HasSuffix(addr, "@mx.example.test")
		}})
	if err != nil {
		t.Fatal(err)
	}
	d, rep, _ := qmgrtest.Delivery(t, qmgr.Request{Transport: "local"}, "Subject: to the list\n\nhello\n", "list@mx.example.test", "root@mx.example.test")
	a.Deliver(d)
	list, _ := rep.Of("list@mx.example.test")
	members := map[string]qmgr.Member{}
	for _, m := range list.Members {
		members[m.Addr] = m
	}
	// The remote members go in one forwarded message, reported as the
	// list itself ("forwarded as ID", Postfix's line).
	if m := members[""]; m.State != outcome.Sent || !strings.HasPrefix(m.Status.Text, "forwarded as ") {
		t.Errorf("bob: %+v (members %+v)", m, list.Members)
	}
	if m := members["ghost@mx.example.test"]; m.State != outcome.Bounced || m.Status.DSN != "5.1.1" || m.Status.Text != `unknown user: "ghost"` {
		t.Errorf("ghost: %+v (members %+v)", m, list.Members)
	}
	root := qmgrtest.Expect(t, rep, "root@mx.example.test", outcome.Deferred, "4.3.5")
	if !strings.Contains(root.Status.Text, "alias root to a real user") {
		t.Errorf("root: %q", root.Status.Text)
	}
	var forwarded []*queue.Message
	_ = q.Walk(queue.Incoming, func(e queue.Entry) error {
		if m, err := q.Read(queue.Incoming, e.ID); err == nil {
			forwarded = append(forwarded, m)
		}
		return nil
	}, nil)
	if len(forwarded) != 1 || len(forwarded[0].Recipients) != 1 || forwarded[0].Recipients[0].Addr != "bob@remote.example" {
		t.Fatalf("forwarded: %+v", forwarded)
	}

	d, rep, _ = qmgrtest.Delivery(t, qmgr.Request{Transport: "local", Verify: true}, "Subject: probe\n\nx\n", "list@mx.example.test")
	a.Deliver(d)
	list, _ = rep.Of("list@mx.example.test")
	texts := map[string]string{}
	for _, m := range list.Members {
		texts[m.Addr] = m.Status.Text
	}
	if texts["bob@remote.example"] != "forwards to bob@remote.example" || texts["ghost@mx.example.test"] != `unknown user: "ghost"` {
		t.Errorf("verification: %q", texts)
	}
	n := 0
	_ = q.Walk(queue.Incoming, func(queue.Entry) error { n++; return nil }, nil)
	if n != 1 {
		t.Errorf("verification forwarded: %d queue files", n)
	}
}
