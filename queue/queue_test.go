package queue

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv("QUEUE_CRASH_CHILD"); dir != "" {
		crashChild(dir)
		return
	}
	os.Exit(m.Run())
}

func newQueue(t testing.TB) *Queue {
	t.Helper()
	dir := t.TempDir()
	if err := Create(dir, Owner{UID: -1, GID: -1, SetgidGID: -1}); err != nil {
		t.Fatal(err)
	}
	return New(dir, []string{Deferred, DeferLog}, 1)
}

// body makes deterministic content of n bytes for message number seq.
func body(seq, n int) []byte {
	head := fmt.Sprintf("Subject: message %d\n\n", seq)
	b := make([]byte, 0, n)
	b = append(b, head...)
	for len(b) < n {
		b = append(b, byte('a'+(len(b)+seq)%26))
		if len(b)%76 == 0 {
			b = append(b, '\n')
		}
	}
	return b[:max(n, len(head))]
}

func enqueue(t testing.TB, q *Queue, queue string, seq, size int, rcpts ...Recipient) string {
	t.Helper()
	w, err := q.Create(queue, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	w.SetAttr("client_address", "192.0.2.1")
	w.SetSender("sender@example.org")
	for _, r := range rcpts {
		w.AddRecipient(r)
	}
	if _, err := w.Write(body(seq, size)); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return w.ID()
}

func TestIDs(t *testing.T) {
	t.Parallel()
	now := time.Unix(1763700000, 123456000)
	id := NewID(now, 987654321)
	ts, ino, err := ParseID(id)
	if err != nil || !ts.Equal(now) || ino != 987654321 {
		t.Errorf("ParseID(%s) = %v %d %v", id, ts, ino, err)
	}
	if strings.ContainsAny(id, "aeiouAEIOU") || !strings.Contains(id, "z") {
		t.Errorf("ID %q", id)
	}
	for _, bad := range []string{"", "tmp.1.2", "ABCDEF", "4TpXvC0sf8z", "4TpXvC0sf8zz", "4Tp/vC0sf8z9", "aeiou0sf8z9"} {
		if ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
	}
	// IDs sort by time within a second's digits and hash by microseconds.
	if got := hashDirs(id, 2); strings.Join(got, "") != fmt.Sprintf("%05X", 123456)[:2] {
		t.Errorf("hashDirs = %v", got)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	arrival := time.Unix(1763700000, 250000000)
	w, err := q.Create(Incoming, arrival)
	if err != nil {
		t.Fatal(err)
	}
	w.SetAttr("client_name", "mail.example.net")
	w.SetAttr("sasl_username", "alice")
	w.SetAttr("envelope_id", "abc123")
	w.SetAttr("ret_flags", "HDRS")
	w.SetSender("")
	w.AddRecipient(Recipient{Addr: "bob@example.com", Orig: "Bob@Example.COM", ORCPT: "rfc822;Bob@Example.COM", Notify: NotifySuccess | NotifyFailure})
	w.AddRecipient(Recipient{Addr: "carol@example.com"})
	content := body(1, 5000)
	if _, err := w.ReadFrom(bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	w.AddRecipient(Recipient{Addr: "extracted@example.com"})
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(w.Path())
	if st.Mode().Perm() != 0o700 {
		t.Errorf("mode %v", st.Mode())
	}
	f, err := q.Open(Incoming, w.ID(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !f.Arrival.Equal(arrival) || f.Create.Unix() != arrival.Unix() || f.Sender != "" {
		t.Errorf("envelope: %v %v %q", f.Arrival, f.Create, f.Sender)
	}
	if f.Attr("client_name") != "mail.example.net" || f.Attr("sasl_username") != "alice" || f.Attr("envelope_id") != "abc123" || f.Attr("ret_flags") != "HDRS" {
		t.Errorf("attrs %v", f.Attrs)
	}
	if len(f.Recipients) != 3 {
		t.Fatalf("recipients %+v", f.Recipients)
	}
	r0 := f.Recipients[0]
	if r0.Addr != "bob@example.com" || r0.Orig != "Bob@Example.COM" || r0.ORCPT != "rfc822;Bob@Example.COM" || r0.Notify != 6 || r0.Done {
		t.Errorf("recipient 0: %+v", r0)
	}
	if f.Recipients[2].Addr != "extracted@example.com" {
		t.Errorf("extracted recipient: %+v", f.Recipients[2])
	}
	got, _ := io.ReadAll(f.Content())
	if !bytes.Equal(got, content) || f.ContentSize != int64(len(content)) {
		t.Errorf("content differs (%d bytes, want %d)", len(got), len(content))
	}

	// Done marks survive a re-read; only pending recipients remain.
	if err := f.MarkDone(&f.Recipients[0], &f.Recipients[2]); err != nil {
		t.Fatal(err)
	}
	if err := f.SetWarnTime(time.Unix(1763800000, 0)); err != nil {
		t.Fatal(err)
	}
	m, err := q.Read(Incoming, w.ID())
	if err != nil {
		t.Fatal(err)
	}
	if p := m.Pending(); len(p) != 1 || p[0].Addr != "carol@example.com" {
		t.Errorf("pending after MarkDone: %+v", p)
	}
	if m.WarnAt.Unix() != 1763800000 {
		t.Errorf("warn time %v", m.WarnAt)
	}
}

func TestHashedMoveAndWalk(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	var ids []string
	for i := 0; i < 40; i++ {
		ids = append(ids, enqueue(t, q, Incoming, i, 100, Recipient{Addr: "x@example.com"}))
	}
	for _, id := range ids[:30] {
		if err := q.Move(id, Incoming, Deferred); err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(q.Dir, Deferred, hashDirs(id, 1)[0], id); q.Path(Deferred, id) != want {
			t.Fatalf("hashed path %s, want %s", q.Path(Deferred, id), want)
		}
		if _, err := os.Stat(q.Path(Deferred, id)); err != nil {
			t.Fatal(err)
		}
	}
	count := map[string]int{}
	for _, name := range []string{Incoming, Deferred} {
		if err := q.Walk(name, func(e Entry) error { count[name]++; return nil }, nil); err != nil {
			t.Fatal(err)
		}
	}
	if count[Incoming] != 10 || count[Deferred] != 30 {
		t.Errorf("walk counts %v", count)
	}
	if where, err := q.Find(ids[0]); err != nil || where != Deferred {
		t.Errorf("Find = %s %v", where, err)
	}
	if _, err := q.Find("4TpXvC0sf8z9HdB"); err == nil {
		t.Error("Find of a missing ID succeeded")
	}
}

// TestCorruptFiles: truncated, garbage and wrong-version files go to
// corrupt/ with a log line at recovery; good messages are kept; files still
// being written are left alone.
func TestCorruptFiles(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	good := enqueue(t, q, Incoming, 1, 3000, Recipient{Addr: "a@example.com"})
	goodData, _ := os.ReadFile(q.Path(Incoming, good))
	write := func(data []byte, mode os.FileMode) string {
		w, err := q.Create(Incoming, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		w.Abort()
		id := w.ID()
		if err := os.WriteFile(q.Path(Incoming, id), data, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(q.Path(Incoming, id), mode)
		return id
	}
	truncated := write(goodData[:len(goodData)-700], 0o700)
	noEnd := write(goodData[:len(goodData)-2], 0o700)
	garbage := write([]byte("this is not a queue file\x00\xff"), 0o700)
	wrongVersion := write(bytes.Replace(goodData, []byte("mailsrv-queue 1"), []byte("mailsrv-queue 9"), 1), 0o700)
	longLen := write(append(appendRecord(nil, recVersion, formatVersion), 'S', 0xff, 0xff, 0xff, 0x7f), 0o700)
	inProgress := write(goodData[:100], 0o600)
	// An active leftover goes back to incoming first.
	active := enqueue(t, q, Incoming, 2, 100, Recipient{Addr: "b@example.com"})
	if err := q.Move(active, Incoming, Active); err != nil {
		t.Fatal(err)
	}

	log := &testLog{}
	if err := q.RecoverActive(log); err != nil {
		t.Fatal(err)
	}
	n, err := q.CheckIncoming(log, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("recovery found %d messages, want 2", n)
	}
	for _, id := range []string{truncated, noEnd, garbage, wrongVersion, longLen} {
		if _, err := os.Stat(filepath.Join(q.Dir, Corrupt, id)); err != nil {
			t.Errorf("%s not in corrupt/: %v", id, err)
		}
		if !strings.Contains(log.String(), "warning: "+id+": ") || !strings.Contains(log.String(), "moved to corrupt") {
			t.Errorf("no log line for %s:\n%s", id, log)
		}
	}
	for _, id := range []string{good, active, inProgress} {
		if _, err := os.Stat(q.Path(Incoming, id)); err != nil {
			t.Errorf("%s should stay in incoming: %v", id, err)
		}
	}
	if !strings.Contains(log.String(), wrongVersion+": not a mailsrv-queue 1 file") {
		t.Errorf("wrong version not named:\n%s", log)
	}
}

type testLog struct{ bytes.Buffer }

func (l *testLog) Infof(f string, a ...any)  { fmt.Fprintf(&l.Buffer, f+"\n", a...) }
func (l *testLog) Warnf(f string, a ...any)  { fmt.Fprintf(&l.Buffer, "warning: "+f+"\n", a...) }
func (l *testLog) Errorf(f string, a ...any) { fmt.Fprintf(&l.Buffer, "error: "+f+"\n", a...) }

// failAfter is a writer that fails once n bytes have gone through.
type failAfter struct {
	w   io.Writer
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		k, _ := f.w.Write(p[:f.n])
		f.n = 0
		return k, f.err
	}
	f.n -= len(p)
	return f.w.Write(p)
}

// TestFaultInjection: a failing write (ENOSPC) or fsync returns an error to
// the caller and leaves nothing behind.
func TestFaultInjection(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		setup func(q *Queue)
	}{
		{"ENOSPC during content", func(q *Queue) {
			q.wrapWriter = func(w io.Writer) io.Writer { return &failAfter{w: w, n: 200, err: syscall.ENOSPC} }
		}},
		{"ENOSPC at the first byte", func(q *Queue) {
			q.wrapWriter = func(w io.Writer) io.Writer { return &failAfter{w: w, n: 0, err: syscall.ENOSPC} }
		}},
		{"EIO from fsync", func(q *Queue) {
			q.sync = func(*os.File) error { return syscall.EIO }
		}},
		{"fsync of the directory fails", func(q *Queue) {
			q.alwaysSyncDir = true
			q.sync = func(f *os.File) error {
				if st, _ := f.Stat(); st.IsDir() {
					return syscall.EIO
				}
				return f.Sync()
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q := newQueue(t)
			tc.setup(q)
			w, err := q.Create(Incoming, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			w.SetSender("s@example.org")
			w.AddRecipient(Recipient{Addr: "r@example.org"})
			// Large enough to pass through bufio's buffer to the
			// injected writer.
			_, _ = w.Write(body(1, 200<<10))
			err = w.Commit()
			if err == nil {
				t.Fatal("Commit succeeded")
			}
			if !strings.Contains(err.Error(), "queue file write error") {
				t.Errorf("error %v", err)
			}
			ents, _ := os.ReadDir(filepath.Join(q.Dir, Incoming))
			if len(ents) != 0 {
				t.Errorf("left behind: %v", ents)
			}
		})
	}
}

func TestStatusLog(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	id := enqueue(t, q, Incoming, 1, 10, Recipient{Addr: "a@example.com"})
	s1 := Status{Recipient: "a@example.com", Offset: 123, Status: "4.4.1", Action: "delayed", Reason: "connect to mx.example.com[192.0.2.7]:25: Connection timed out\nsecond line"}
	if err := q.AppendStatus(DeferLog, id, s1); err != nil {
		t.Fatal(err)
	}
	if err := q.AppendStatus(DeferLog, id, Status{Recipient: "b@example.com", Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	got, err := q.ReadStatus(DeferLog, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Recipient != "a@example.com" || got[0].Offset != 123 || got[0].Reason != "connect to mx.example.com[192.0.2.7]:25: Connection timed out second line" || got[1].Reason != "x" {
		t.Errorf("status log: %+v", got)
	}
	if !strings.Contains(q.Path(DeferLog, id), "/defer/"+hashDirs(id, 1)[0]+"/") {
		t.Errorf("defer log not hashed: %s", q.Path(DeferLog, id))
	}
	if err := q.Remove(Incoming, id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(q.Path(DeferLog, id)); err == nil {
		t.Error("Remove left the defer log")
	}
}

// crashChild writes messages until killed, printing each ID once Commit
// has returned (the moment smtpd would say "queued as").
func crashChild(dir string) {
	q := New(dir, []string{Deferred, DeferLog}, 1)
	out := bufio.NewWriter(os.Stdout)
	for seq := 0; ; seq++ {
		size := 100 + (seq*7919)%(64<<10)
		w, err := q.Create(Incoming, time.Now())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		w.SetSender("s@example.org")
		w.AddRecipient(Recipient{Addr: "r@example.org"})
		w.SetAttr("seq", strconv.Itoa(seq))
		w.SetAttr("size", strconv.Itoa(size))
		b := body(seq, size)
		// Write in pieces, slowly, so that kills land mid-content too.
		for i := 0; i < len(b); i += 4096 {
			_, _ = w.Write(b[i:min(i+4096, len(b))])
			time.Sleep(100 * time.Microsecond)
		}
		if err := w.Commit(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Fprintln(out, w.ID())
		out.Flush()
	}
}

// TestCrashSafety kills (SIGKILL) a process that is writing queue files at
// many random points. Every message whose ID had been returned must be
// complete and schedulable; no partial file is ever taken for a message.
func TestCrashSafety(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	confirmed := map[string]bool{}
	for round := 0; round < 25; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "QUEUE_CRASH_CHILD="+q.Dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Let it confirm a few messages, then kill it at a random moment.
		want := 1 + rng.Intn(5)
		got := 0
		for id := range lines {
			confirmed[id] = true
			if got++; got == want {
				break
			}
		}
		time.Sleep(time.Duration(rng.Intn(3000)) * time.Microsecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		for id := range lines {
			confirmed[id] = true
		}
		_ = cmd.Wait()
	}
	if len(confirmed) < 25 {
		t.Fatalf("only %d messages confirmed", len(confirmed))
	}
	// The unfinished files, if any, must be exactly those a kill
	// interrupted: not ready, never confirmed.
	ready, notReady := 0, 0
	err := q.Walk(Incoming, func(e Entry) error {
		m, err := q.Read(Incoming, e.ID)
		if errors.Is(err, ErrNotReady) {
			notReady++
			if confirmed[e.ID] {
				t.Errorf("%s was confirmed but is not ready", e.ID)
			}
			return nil
		}
		if err != nil {
			t.Errorf("%s: %v", e.ID, err)
			return nil
		}
		ready++
		seq, _ := strconv.Atoi(m.Attr("seq"))
		size, _ := strconv.Atoi(m.Attr("size"))
		f, err := q.Open(Incoming, e.ID, false)
		if err != nil {
			t.Fatal(err)
		}
		content, _ := io.ReadAll(f.Content())
		f.Close()
		if !bytes.Equal(content, body(seq, size)) || len(m.Pending()) != 1 {
			t.Errorf("%s: message %d is damaged", e.ID, seq)
		}
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for id := range confirmed {
		if _, err := os.Stat(q.Path(Incoming, id)); err != nil {
			t.Errorf("confirmed message %s is missing", id)
		}
	}
	t.Logf("%d confirmed, %d complete files, %d unfinished files left by kills", len(confirmed), ready, notReady)
	// Recovery removes the unfinished ones once they are old enough.
	log := &testLog{}
	n, err := q.CheckIncoming(log, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n != ready {
		t.Errorf("CheckIncoming counted %d, want %d", n, ready)
	}
}

// TestAdminDuringDelivery: postsuper moves or deletes a message while a
// delivery agent has it open and locked. The agent's done marks follow
// the file (same inode) and nothing is resurrected or damaged.
func TestAdminDuringDelivery(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	id := enqueue(t, q, Incoming, 1, 500, Recipient{Addr: "a@example.com"}, Recipient{Addr: "b@example.com"})
	if err := q.Move(id, Incoming, Active); err != nil {
		t.Fatal(err)
	}
	f, err := q.Open(Active, id, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Lock(); err != nil {
		t.Fatal(err)
	}
	// A second opener (another agent, or postsuper checking) sees the lock.
	g, err := q.Open(Active, id, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Lock(); !errors.Is(err, ErrLocked) {
		t.Errorf("second lock: %v", err)
	}
	g.Close()
	// postsuper -h while delivering.
	if err := q.Move(id, Active, Hold); err != nil {
		t.Fatal(err)
	}
	if err := f.MarkDone(&f.Recipients[0]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	m, err := q.Read(Hold, id)
	if err != nil {
		t.Fatal(err)
	}
	if p := m.Pending(); len(p) != 1 || p[0].Addr != "b@example.com" {
		t.Errorf("held message lost the done mark: %+v", p)
	}
	// postsuper -d while delivering: the agent finishes on its open file,
	// and the message stays deleted.
	f, err = q.Open(Hold, id, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Remove(Hold, id); err != nil {
		t.Fatal(err)
	}
	if err := f.MarkDone(&f.Recipients[1]); err != nil {
		t.Errorf("done mark on a deleted message: %v", err)
	}
	f.Close()
	if _, err := q.Find(id); err == nil {
		t.Error("deleted message is back")
	}
}

func TestRepairAndPurge(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	id := enqueue(t, q, Incoming, 1, 100, Recipient{Addr: "a@example.com"})
	// Misplaced: a deferred file at the top of deferred/ (as after
	// hash_queue_depth changed), and a hashed subdirectory in incoming.
	if err := os.Rename(q.Path(Incoming, id), filepath.Join(q.Dir, Deferred, id)); err != nil {
		t.Fatal(err)
	}
	id2 := enqueue(t, q, Incoming, 2, 100, Recipient{Addr: "b@example.com"})
	sub := filepath.Join(q.Dir, Incoming, "A")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(q.Path(Incoming, id2), filepath.Join(sub, id2)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(q.Dir, Hold, "not-a-queue-id"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var bogus []string
	n, err := q.Repair(func(p string) { bogus = append(bogus, p) })
	if err != nil || n != 2 {
		t.Fatalf("Repair moved %d: %v", n, err)
	}
	if _, err := q.Read(Deferred, id); err != nil {
		t.Errorf("deferred file not rehashed: %v", err)
	}
	if _, err := q.Read(Incoming, id2); err != nil {
		t.Errorf("incoming file not moved up: %v", err)
	}
	if _, err := os.Stat(sub); err == nil {
		t.Error("empty hash directory left in incoming")
	}
	if len(bogus) != 1 || !strings.HasSuffix(bogus[0], "hold/not-a-queue-id") {
		t.Errorf("bogus = %v", bogus)
	}

	// Purge: old unfinished files go, fresh ones and messages stay.
	w, err := q.Create(Incoming, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	old := w.Path()
	w.f.Close() // abandoned, as by a crash
	week := time.Now().Add(-8 * 24 * time.Hour)
	if err := os.Chtimes(old, week, week); err != nil {
		t.Fatal(err)
	}
	w2, err := q.Create(Incoming, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Abort()
	n, err = q.Purge(7 * 24 * time.Hour)
	if err != nil || n != 1 {
		t.Errorf("Purge removed %d: %v", n, err)
	}
	if _, err := os.Stat(old); err == nil {
		t.Error("old unfinished file survived")
	}
	if _, err := os.Stat(w2.Path()); err != nil {
		t.Error("fresh file in progress was purged")
	}
	if _, err := q.Read(Incoming, id2); err != nil {
		t.Error("a message was purged")
	}
}

// The directory fsync is left out only where a file's fsync covers its
// name; this machine's test directory is on one of them or not, and
// either answer must agree with the table.
func TestFsyncCoversName(t *testing.T) {
	t.Parallel()
	for magic, want := range map[int64]bool{0xEF53: true, 0x58465342: true, 0x9123683E: true, 0x01021994: false, 0x6969: false} {
		if got := fsyncCoversName(magic); got != want {
			t.Errorf("magic %#x: %v, want %v", magic, got, want)
		}
	}
	q := newQueue(t)
	var st unix.Statfs_t
	if err := unix.Statfs(q.Dir, &st); err != nil {
		t.Fatal(err)
	}
	if q.nameCovered() != fsyncCoversName(int64(st.Type)) {
		t.Errorf("nameCovered disagrees with the file system %#x", st.Type)
	}
}

// TestScanner: a pass reads every message of a hashed queue, past the
// batch size and across subdirectories, skipping other names; Close
// stops a pass early.
func TestScanner(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	want := map[string]bool{}
	for i := 0; i < scanBatch+50; i++ {
		id := enqueue(t, q, Incoming, i, 10, Recipient{Addr: "x@example.com"})
		if err := q.Move(id, Incoming, Deferred); err != nil {
			t.Fatal(err)
		}
		want[id] = true
	}
	if err := os.WriteFile(filepath.Join(q.Dir, Deferred, "not-a-queue-id"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := q.Scan(Deferred)
	got := map[string]bool{}
	for {
		e, ok := s.Next()
		if !ok {
			break
		}
		if got[e.ID] || !want[e.ID] || e.Path != q.Path(Deferred, e.ID) {
			t.Errorf("unexpected entry %+v", e)
		}
		got[e.ID] = true
	}
	if len(got) != len(want) {
		t.Errorf("scanned %d of %d messages", len(got), len(want))
	}
	s = q.Scan(Deferred)
	if _, ok := s.Next(); !ok {
		t.Fatal("a second pass found nothing")
	}
	s.Close()
	if _, ok := s.Next(); ok {
		t.Error("a closed pass goes on")
	}
	if _, ok := q.Scan("no-such-queue").Next(); ok {
		t.Error("a missing queue has messages")
	}
}

// TestConcurrentStatusAppends: entries appended at the same time by
// several deliveries of one message all survive.
func TestConcurrentStatusAppends(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := Create(dir, Owner{UID: -1, GID: -1, SetgidGID: -1}); err != nil {
		t.Fatal(err)
	}
	q := New(dir, []string{Deferred, DeferLog}, 1)
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := q.AppendStatus(TraceLog, "4TpXvC0sf8z9HdB", Status{Recipient: fmt.Sprintf("r%d@example.test", i), Status: "2.0.0", Action: "delivered"}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err := q.ReadStatus(TraceLog, "4TpXvC0sf8z9HdB")
	if err != nil || len(got) != n {
		t.Fatalf("%d entries (%v), want %d", len(got), err, n)
	}
}
