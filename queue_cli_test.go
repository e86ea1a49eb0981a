package main

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailsrv/internal/testutil"
	"mailsrv/queue"
)

// fixedQueue builds a queue with three messages under fixed IDs and
// arrival times, as the fixtures below expect.
func fixedQueue(t *testing.T, dir string) *queue.Queue {
	t.Helper()
	q := queue.New(filepath.Join(dir, "run/spool"), []string{queue.Deferred, queue.DeferLog}, 1)
	if err := queue.Create(q.Dir, queue.Owner{UID: -1, GID: -1, SetgidGID: -1}); err != nil {
		t.Fatal(err)
	}
	put := func(id, where string, arrival time.Time, size int, env queue.Envelope) {
		env.Arrival = arrival
		content := strings.Repeat("x", size-1) + "\n"
		tmp, err := q.Inject(queue.Incoming, env, strings.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		dst := q.Path(where, id)
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(q.Path(queue.Incoming, tmp), dst); err != nil {
			t.Fatal(err)
		}
	}
	day := func(d, h, m, s int) time.Time { return time.Date(2024, 3, d, h, m, s, 0, time.UTC) }
	put("4TpXvC0sf8z9HdB", queue.Active, day(5, 10, 14, 7), 2145, queue.Envelope{
		Sender: "alice@example.org", Recipients: []queue.Recipient{{Addr: "bob@example.net"}}})
	put("4TpWqR0Bc2zKk9", queue.Hold, day(5, 9, 1, 44), 980, queue.Envelope{
		Sender: "", Recipients: []queue.Recipient{{Addr: "carol@example.com"}}})
	put("4TpVnM0K7dzQr", queue.Deferred, day(4, 22, 10, 31), 5120, queue.Envelope{
		Sender:     "dave@example.org",
		Recipients: []queue.Recipient{{Addr: "erin@example.com"}, {Addr: "frank@example.com", Orig: "Frank@Example.com"}, {Addr: "george@example.com"}}})
	why := "connect to mx.example.com[192.0.2.7]:25: Connection timed out"
	for _, r := range []string{"erin@example.com", "frank@example.com"} {
		if err := q.AppendStatus(queue.DeferLog, "4TpVnM0K7dzQr", queue.Status{Recipient: r, Action: "delayed", Status: "4.4.1", Reason: why}); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.SetMode(queue.Hold, "4TpWqR0Bc2zKk9", true, false); err != nil {
		t.Fatal(err)
	}
	return q
}

// The layout is Postfix's showq_compat with long queue IDs: "%-17s %8s
// %-19s %s" headings, "%-17s %8ld %19.19s %s" sender lines, reasons
// right-aligned to column 76, recipients indented 47 columns.
const mailqFixture = `----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------
4TpXvC0sf8z9HdB*      2145 Tue Mar  5 10:14:07 alice@example.org
                                               bob@example.net

4TpVnM0K7dzQr         5120 Mon Mar  4 22:10:31 dave@example.org
               (connect to mx.example.com[192.0.2.7]:25: Connection timed out)
                                               erin@example.com
                                               frank@example.com
                                                          (reason unavailable)
                                               george@example.com

4TpWqR0Bc2zKk9!#       980 Tue Mar  5 09:01:44 MAILER-DAEMON
                                               carol@example.com

-- 8 Kbytes in 3 Requests.
`

const jsonFixture = `{"queue_name":"active","queue_id":"4TpXvC0sf8z9HdB","arrival_time":1709633647,"message_size":2145,"forced_expire":false,"sender":"alice@example.org","recipients":[{"address":"bob@example.net"}]}
{"queue_name":"deferred","queue_id":"4TpVnM0K7dzQr","arrival_time":1709590231,"message_size":5120,"forced_expire":false,"sender":"dave@example.org","recipients":[{"address":"erin@example.com","delay_reason":"connect to mx.example.com[192.0.2.7]:25: Connection timed out"},{"address":"frank@example.com","delay_reason":"connect to mx.example.com[192.0.2.7]:25: Connection timed out"},{"address":"george@example.com"}]}
{"queue_name":"hold","queue_id":"4TpWqR0Bc2zKk9","arrival_time":1709629304,"message_size":980,"forced_expire":true,"sender":"","recipients":[{"address":"carol@example.com"}]}
`

// deferredMessages puts n messages in the deferred queue.
func deferredMessages(t *testing.T, q *queue.Queue, n int) []string {
	t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		id, err := q.Inject(queue.Incoming, queue.Envelope{Sender: "s@example.org", Recipients: []queue.Recipient{{Addr: "r@example.net"}}}, strings.NewReader("Subject: x\n\nbody\n"))
		if err != nil {
			t.Fatal(err)
		}
		if err := q.Move(id, queue.Incoming, queue.Deferred); err != nil {
			t.Fatal(err)
		}
		// As qmgr leaves them: the next attempt an hour ahead.
		if err := q.SetTimes(queue.Deferred, id, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// giveQueue hands files the test wrote (as root) to the daemon's user, as
// if the daemon had written them.
func giveQueue(t *testing.T, dir, owner string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	u, err := user.Lookup(owner)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	err = filepath.WalkDir(filepath.Join(dir, "run/spool"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestMailqAndJSONFixtures(t *testing.T) {
	t.Parallel()
	dir, _ := newInstance(t)
	out, errOut, code := mailsrv(t, dir, "mailq", "-c", "mailsrv.toml")
	if code != 0 || out != "Mail queue is empty\n" {
		t.Errorf("empty queue: %d %q %q", code, out, errOut)
	}
	fixedQueue(t, dir)
	out, errOut, code = mailsrv(t, dir, "mailq", "-c", "mailsrv.toml")
	if code != 0 || out != mailqFixture {
		t.Errorf("mailq: %d %s\ngot:\n%s\nwant:\n%s", code, errOut, out, mailqFixture)
	}
	out, _, _ = mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postqueue", "-j")
	if out != jsonFixture {
		t.Errorf("postqueue -j\ngot:\n%s\nwant:\n%s", out, jsonFixture)
	}
}

func TestPostcat(t *testing.T) {
	t.Parallel()
	dir, _ := newInstance(t)
	q := queue.New(filepath.Join(dir, "run/spool"), []string{queue.Deferred, queue.DeferLog}, 1)
	if err := queue.Create(q.Dir, queue.Owner{UID: -1, GID: -1, SetgidGID: -1}); err != nil {
		t.Fatal(err)
	}
	id, err := q.Inject(queue.Incoming, queue.Envelope{
		Sender:     "alice@example.org",
		Attrs:      map[string]string{"client_address": "192.0.2.1"},
		Recipients: []queue.Recipient{{Addr: "bob@example.net", ORCPT: "rfc822;bob@example.net", Notify: 6}},
		Arrival:    time.Date(2024, 3, 5, 10, 14, 7, 0, time.UTC),
	}, strings.NewReader("Subject: hi\nFrom: alice@example.org\n\nHello Bob.\n"))
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := mailsrv(t, dir, "postcat", "-c", "mailsrv.toml", "-q", id)
	want := fmt.Sprintf(`*** ENVELOPE RECORDS incoming/%[1]s ***
message_size: 48
message_arrival_time: Tue Mar  5 10:14:07 2024
create_time: Tue Mar  5 10:14:07 2024
named_attribute: client_address=192.0.2.1
sender: alice@example.org
dsn_orig_rcpt: rfc822;bob@example.net
dsn_notify_flags: 6
recipient: bob@example.net
*** MESSAGE CONTENTS incoming/%[1]s ***
Subject: hi
From: alice@example.org

Hello Bob.
*** HEADER EXTRACTED incoming/%[1]s ***
*** MESSAGE FILE END incoming/%[1]s ***
`, id)
	if code != 0 || out != want {
		t.Errorf("postcat -q: %d %s\ngot:\n%s\nwant:\n%s", code, errOut, out, want)
	}
	out, _, _ = mailsrv(t, dir, "postcat", "-c", "mailsrv.toml", "-h", "-q", id)
	if out != "*** MESSAGE CONTENTS incoming/"+id+" ***\nSubject: hi\nFrom: alice@example.org\n" {
		t.Errorf("postcat -h: %q", out)
	}
	out, _, _ = mailsrv(t, dir, "postcat", "-c", "mailsrv.toml", "-b", "-q", id)
	if out != "*** MESSAGE CONTENTS incoming/"+id+" ***\nHello Bob.\n" {
		t.Errorf("postcat -b: %q", out)
	}
	_, errOut, code = mailsrv(t, dir, "postcat", "-c", "mailsrv.toml", "-q", "4TpXvC0sf8z9HdB")
	if code != 1 || !strings.Contains(errOut, "no such message") {
		t.Errorf("postcat of a missing ID: %d %q", code, errOut)
	}
}

// TestPostsuperOnRunningDaemon holds, releases, requeues, expires and
// deletes messages while the daemon runs, and checks files, logs and
// summaries.
func TestPostsuperOnRunningDaemon(t *testing.T) {
	t.Parallel()
	dir, owner := newInstance(t)
	if _, errOut, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "start"); code != 0 {
		t.Fatalf("start: %s", errOut)
	}
	defer mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "stop")
	q := queue.New(filepath.Join(dir, "run/spool"), []string{queue.Deferred, queue.DeferLog}, 1)
	ids := deferredMessages(t, q, 4)
	giveQueue(t, dir, owner)
	in := func(where, id string) bool { _, err := os.Stat(q.Path(where, id)); return err == nil }
	run := func(args ...string) string {
		_, errOut, code := mailsrv(t, dir, "postsuper", append([]string{"-c", "mailsrv.toml"}, args...)...)
		if code != 0 {
			t.Fatalf("postsuper %v: %d %s", args, code, errOut)
		}
		return errOut
	}

	if e := run("-h", ids[0], "-h", ids[1]); !strings.Contains(e, "postsuper: Placed on hold: 2 messages") {
		t.Errorf("hold summary: %q", e)
	}
	if !in(queue.Hold, ids[0]) || !in(queue.Hold, ids[1]) || in(queue.Deferred, ids[0]) {
		t.Error("hold did not move the files")
	}
	out, _, _ := mailsrv(t, dir, "mailq", "-c", "mailsrv.toml")
	if !strings.Contains(out, ids[0]+"!") {
		t.Errorf("mailq does not mark held mail:\n%s", out)
	}
	if e := run("-H", ids[0]); !strings.Contains(e, "postsuper: Released from hold: 1 message\n") {
		t.Errorf("release summary: %q", e)
	}
	if !in(queue.Deferred, ids[0]) {
		t.Error("release did not move the file to deferred")
	}
	if e := run("-f", ids[1]); !strings.Contains(e, "Force-expired: 1 message") || !strings.Contains(e, "Released from hold: 1 message") {
		t.Errorf("-f summary: %q", e)
	}
	if m, err := q.Read(queue.Deferred, ids[1]); err != nil || !m.ForcedExpire {
		t.Errorf("-f: %v %+v", err, m)
	}
	if e := run("-r", ids[2]); !strings.Contains(e, "Requeued: 1 message") {
		t.Errorf("requeue: %q", e)
	}
	// The running daemon's pickup takes it from maildrop under a new ID;
	// qmgr tries it (this instance has no smtp transport) and defers it.
	var requeuedAs string
	testutil.Eventually(t, "pickup to requeue the message and qmgr to defer it", func() bool {
		if in(queue.Maildrop, ids[2]) {
			return false
		}
		_ = q.Walk(queue.Deferred, func(e queue.Entry) error {
			if !slices.Contains(ids, e.ID) {
				requeuedAs = e.ID
			}
			return nil
		}, nil)
		return requeuedAs != ""
	})
	// Delete by ID from standard input, then ALL of what is left in
	// deferred.
	_, e, _ := mailsrvStdin(t, dir, ids[3]+"\n", "postsuper", "-c", "mailsrv.toml", "-d", "-")
	if !strings.Contains(e, "Deleted: 1 message") || in(queue.Deferred, ids[3]) {
		t.Errorf("delete from stdin: %q", e)
	}
	if !in(queue.Hold, ids[1]) && !in(queue.Deferred, ids[1]) {
		t.Fatalf("%s went missing", ids[1])
	}
	if e := run("-d", "ALL", "deferred"); !strings.Contains(e, "Deleted: 3 messages") {
		t.Errorf("delete ALL deferred: %q", e)
	}
	if e := run("-d", "nonsense!"); !strings.Contains(e, "invalid mail queue id: nonsense") {
		t.Errorf("bad ID: %q", e)
	}
	logs, _ := os.ReadFile(filepath.Join(dir, "maillog"))
	for _, want := range []string{
		"mailsrv/postsuper[", ids[0] + ": placed on hold", ids[0] + ": released from hold",
		ids[1] + ": expired", ids[2] + ": requeued", ids[3] + ": removed", "Deleted: 3 messages",
		"mailsrv/pickup[", ids[2] + ": from=<s@example.org>, requeued as " + requeuedAs,
	} {
		if !strings.Contains(string(logs), want) {
			t.Errorf("mail log lacks %q", want)
		}
	}
}

func TestPostqueueFlush(t *testing.T) {
	t.Parallel()
	dir, owner := newInstance(t)
	_, errOut, code := mailsrv(t, dir, "postqueue", "-c", "mailsrv.toml", "-f")
	if code != 1 || !strings.Contains(errOut, "Cannot flush mail queue - mail system is down") {
		t.Errorf("flush with the daemon down: %d %q", code, errOut)
	}
	if _, errOut, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "start"); code != 0 {
		t.Fatalf("start: %s", errOut)
	}
	defer mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "stop")
	q := queue.New(filepath.Join(dir, "run/spool"), []string{queue.Deferred, queue.DeferLog}, 1)
	ids := deferredMessages(t, q, 3)
	giveQueue(t, dir, owner)
	if _, errOut, code := mailsrv(t, dir, "postqueue", "-c", "mailsrv.toml", "-i", ids[0]); code != 0 {
		t.Fatalf("postqueue -i: %s", errOut)
	}
	// Released, qmgr takes it at once (and defers it again: this
	// instance has no smtp transport).
	active := func(id string) int {
		b, _ := os.ReadFile(filepath.Join(dir, "maillog"))
		return strings.Count(string(b), id+": from=<s@example.org>, size=")
	}
	testutil.Eventually(t, "qmgr to take the released message and defer it again", func() bool {
		_, err := q.Read(queue.Deferred, ids[0])
		return active(ids[0]) == 1 && err == nil
	})
	_, errOut, code = mailsrv(t, dir, "postqueue", "-c", "mailsrv.toml", "-s", "example.net")
	if code != 1 || !strings.Contains(errOut, `Flush service is not configured for destination "example.net"`) {
		t.Errorf("-s for a site outside fast_flush_domains: %d %q", code, errOut)
	}
	if _, errOut, code := mailsrv(t, dir, "postqueue", "-c", "mailsrv.toml", "-f"); code != 0 {
		t.Fatalf("postqueue -f: %s", errOut)
	}
	testutil.Eventually(t, "qmgr to take every message after -f", func() bool {
		return active(ids[0]) == 2 && active(ids[1]) == 1 && active(ids[2]) == 1
	})
}

func TestPostmapCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	re := filepath.Join(dir, "re")
	if err := os.WriteFile(re, []byte("/^(.*)@example\\.com$/ $1@other.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Postfix's own idiom, without any configuration file.
	out, errOut, code := mailsrv(t, dir, "postmap", "-q", "user@example.com", "regexp:"+re)
	if code != 0 || out != "user@other.example\n" {
		t.Errorf("postmap -q regexp: %d %q %q", code, out, errOut)
	}
	if _, _, code := mailsrv(t, dir, "postmap", "-q", "user@example.net", "regexp:"+re); code != 1 {
		t.Errorf("not found: exit %d", code)
	}
	if _, errOut, code := mailsrv(t, dir, "postmap", "-q", "x", "regexp:"+filepath.Join(dir, "missing")); code != 2 || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing table: exit %d %q", code, errOut)
	}
	src := filepath.Join(dir, "virtual")
	if err := os.WriteFile(src, []byte("Alice@Example.com alice\nbob@example.com bob\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := mailsrv(t, dir, "postmap", src); code != 0 {
		t.Fatalf("build: %d %s", code, errOut)
	}
	if st, err := os.Stat(src + ".db"); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("built table: %v %v", st, err)
	}
	out, _, code = mailsrvStdin(t, dir, "alice@example.com\nnobody@example.com\nBOB@example.com\n", "postmap", "-q", "-", "hash:"+src)
	if code != 0 || out != "alice@example.com\talice\nBOB@example.com\tbob\n" {
		t.Errorf("postmap -q -: %d %q", code, out)
	}
	if _, _, code := mailsrv(t, dir, "postmap", "-d", "bob@example.com", src); code != 0 {
		t.Errorf("postmap -d: exit %d", code)
	}
	out, _, _ = mailsrv(t, dir, "postmap", "-s", src)
	if out != "alice@example.com\talice\n" {
		t.Errorf("postmap -s after -d: %q", out)
	}

	// newaliases builds alias_database from the configuration.
	aliases := filepath.Join(dir, "aliases")
	if err := os.WriteFile(aliases, []byte("postmaster: root\nroot: admin@example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "mailsrv.toml")
	if err := os.WriteFile(cfg, []byte("alias_database = [\"hash:aliases\"]\nalias_maps = [\"hash:aliases\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := mailsrv(t, dir, "newaliases", "-c", cfg); code != 0 {
		t.Fatalf("newaliases: %d %s", code, errOut)
	}
	out, _, code = mailsrv(t, dir, "postalias", "-c", cfg, "-q", "root", "hash:"+aliases)
	if code != 0 || out != "admin@example.com\n" {
		t.Errorf("postalias -q: %d %q", code, out)
	}
}
