package queue

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// retire opens a message and retires it as qmgr does once it is delivered.
func retire(t *testing.T, q *Queue, queue, id string) {
	t.Helper()
	f, err := q.Open(queue, id, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Retire(f, true); err != nil {
		t.Fatal(err)
	}
}

// TestRecycle: a delivered message's file holds the next message that
// arrives; what the new message reads back is exactly what was written,
// nothing of the old one; while it is written the file is not ready;
// maildrop never gets a recycled file; a file that is not what Retire
// left is not reused; big files keep no blocks; a new start empties the
// list.
func TestRecycle(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	if err := q.EnableRecycling(); err != nil {
		t.Fatal(err)
	}
	rcpt := Recipient{Addr: "a@example.net"}

	// A long message, delivered.
	old := enqueue(t, q, Incoming, 1, 20<<10, rcpt, Recipient{Addr: "old@example.net"})
	ino := inode(t, q.Path(Incoming, old))
	retire(t, q, Incoming, old)
	if _, err := os.Stat(q.Path(Incoming, old)); !os.IsNotExist(err) {
		t.Fatalf("the retired message is still in incoming: %v", err)
	}

	// The next message gets its inode, under a new ID, not ready until
	// Commit.
	w, err := q.Create(Incoming, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if w.ID() == old || inode(t, w.Path()) != ino {
		t.Fatalf("new message %s (inode %d) did not reuse %s (inode %d)", w.ID(), inode(t, w.Path()), old, ino)
	}
	if st, err := os.Stat(w.Path()); err != nil || st.Mode().Perm() != 0o600 || time.Since(st.ModTime()) > time.Minute {
		t.Fatalf("reused file before Commit: %v %v", st.Mode(), err)
	}
	if _, err := q.Read(Incoming, w.ID()); err != ErrNotReady {
		t.Fatalf("reading the file being written: %v, want ErrNotReady", err)
	}
	w.SetSender("new@example.org")
	w.AddRecipient(rcpt)
	content := body(2, 300)
	if _, err := w.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("old@example.net")) || bytes.Contains(raw, []byte("message 1")) {
		t.Errorf("the new message's file still holds the old one's bytes (%d bytes)", len(raw))
	}
	f, err := q.Open(Incoming, w.ID(), false)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(f.Content())
	if f.Sender != "new@example.org" || len(f.Recipients) != 1 || !bytes.Equal(got, content) {
		t.Errorf("read back: sender %q, %d recipients, content equal %v", f.Sender, len(f.Recipients), bytes.Equal(got, content))
	}
	f.Close()

	// Maildrop files are the users': never a recycled one.
	retire(t, q, Incoming, w.ID())
	md := enqueue(t, q, Maildrop, 3, 100)
	if inode(t, q.Path(Maildrop, md)) == ino {
		t.Error("a maildrop file reused a recycled inode")
	}
	again := enqueue(t, q, Incoming, 4, 100, rcpt)
	if inode(t, q.Path(Incoming, again)) != ino {
		t.Error("the recycled file waited in vain")
	}

	// A recycled file with a second name is not reused (and removed).
	retire(t, q, Incoming, again)
	if err := os.Link(filepath.Join(q.Dir, Recycle, again), filepath.Join(q.Dir, "elsewhere")); err != nil {
		t.Fatal(err)
	}
	fresh := enqueue(t, q, Incoming, 5, 100, rcpt)
	if inode(t, q.Path(Incoming, fresh)) == ino {
		t.Error("a file with two names was reused")
	}
	if _, err := os.Stat(filepath.Join(q.Dir, Recycle, again)); !os.IsNotExist(err) {
		t.Errorf("the unfit file stays in recycle/: %v", err)
	}

	// A big file keeps its inode, not its blocks.
	big := enqueue(t, q, Incoming, 6, 2*recycleKeep, rcpt)
	retire(t, q, Incoming, big)
	if st, err := os.Stat(filepath.Join(q.Dir, Recycle, big)); err != nil || st.Size() != 0 {
		t.Errorf("big file in recycle/: %v", err)
	}

	// The next start begins with an empty list and directory.
	q2 := New(q.Dir, []string{Deferred, DeferLog}, 1)
	if err := q2.EnableRecycling(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(q.Dir, Recycle)); len(ents) != 0 {
		t.Errorf("%d files left in recycle/ after a new start", len(ents))
	}
	if id := enqueue(t, q2, Incoming, 7, 100, rcpt); inode(t, q.Path(Incoming, id)) == inode(t, q.Path(Incoming, fresh)) {
		t.Error("impossible: two live messages share an inode")
	}
}

// TestFillRecycling: the files made at start are used by new messages
// and hold them as any recycled file does.
func TestFillRecycling(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	if err := q.EnableRecycling(); err != nil {
		t.Fatal(err)
	}
	if err := q.FillRecycling(context.Background()); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(q.Dir, Recycle))
	if len(ents) != recycleFill {
		t.Fatalf("%d files made, want %d", len(ents), recycleFill)
	}
	id := enqueue(t, q, Incoming, 1, 500, Recipient{Addr: "a@example.net"})
	if ents, _ := os.ReadDir(filepath.Join(q.Dir, Recycle)); len(ents) != recycleFill-1 {
		t.Errorf("the new message did not take a made file: %d left", len(ents))
	}
	m, err := q.Read(Incoming, id)
	if err != nil || len(m.Recipients) != 1 || m.ContentSize != 500 {
		t.Errorf("message in a made file: %v %+v", err, m)
	}
}

// TestRecycleOff: without EnableRecycling a retired message is unlinked.
func TestRecycleOff(t *testing.T) {
	t.Parallel()
	q := newQueue(t)
	id := enqueue(t, q, Incoming, 1, 100, Recipient{Addr: "a@example.net"})
	retire(t, q, Incoming, id)
	if ents, _ := os.ReadDir(filepath.Join(q.Dir, Recycle)); len(ents) != 0 {
		t.Errorf("recycle/ holds %d files with recycling off", len(ents))
	}
	if _, err := os.Stat(q.Path(Incoming, id)); !os.IsNotExist(err) {
		t.Errorf("retired message still there: %v", err)
	}
}
