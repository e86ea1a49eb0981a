package queue

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Recycle is the directory where the daemon keeps the files of delivered
// messages to write new ones into. Not a Postfix queue: nothing in it is
// mail, and it is emptied at every start.
const Recycle = "recycle"

// Why recycle: a file per message means an inode allocated when a message
// arrives and freed when it is delivered, and on ext4 allocating an inode
// right after freeing others is the most expensive step of receiving a
// message (the allocator searches past the recently freed ones; measured
// at a quarter of the daemon's CPU time relaying 1 KiB messages, see
// docs/PERFORMANCE.md). Reusing the inode of a message that was just
// delivered turns create + unlink into two renames.
//
// Safety: only files the daemon wrote and delivered completely come here
// (never maildrop files, which their users own); a reused file is made
// not-ready (mode 0600) before it is renamed into a queue, is overwritten
// from its start and cut to its new length before the fsync that precedes
// the 250, so old content can never pass for a message. A crash leaves at
// worst a not-ready file, which recovery removes as for any interrupted
// write.
const (
	recycleMax  = 4096 // files kept at most
	recycleFill = 1024 // empty files made at start (FillRecycling)
	// Blocks are kept too (writing into them is cheaper than allocating
	// new ones: 100 KiB messages relay 25 % faster), but not for a file
	// over recycleKeep or past recycleBytes in all: such files are cut
	// to zero on the way in.
	recycleKeep  = 1 << 20
	recycleBytes = 32 << 20
)

// recycler is the daemon's list of files in recycle/, ready for reuse.
type recycler struct {
	mu    sync.Mutex
	files []recycled
	bytes int64 // sum of their sizes
}

type recycled struct {
	name string
	size int64
}

// The daemon's roles each open the queue (qmgr retires files, cleanup
// creates them), so the list belongs to the queue directory, not to one
// Queue value.
var (
	recyclersMu sync.Mutex
	recyclers   = map[string]*recycler{}
)

// recyclerFor is the list of the queue at dir; nil when recycling is off.
func recyclerFor(dir string) *recycler {
	recyclersMu.Lock()
	defer recyclersMu.Unlock()
	return recyclers[filepath.Clean(dir)]
}

// EnableRecycling makes the Queue values of this process for this
// directory keep the files of delivered messages for new ones (the daemon
// does, before its roles start; tools never do). Files left in recycle/
// by an earlier run are removed first: after a crash, a name there may
// still point at a file that has since become a message.
func (q *Queue) EnableRecycling() error {
	dir := filepath.Join(q.Dir, Recycle)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		os.Remove(filepath.Join(dir, e.Name()))
	}
	q.recycle = &recycler{}
	recyclersMu.Lock()
	recyclers[filepath.Clean(q.Dir)] = q.recycle
	recyclersMu.Unlock()
	return nil
}

// FillRecycling creates empty files in recycle/ until the list holds
// recycleFill, so that a burst of mail arriving faster than it is
// delivered also finds files to reuse: at 1,000 senders the list ran dry
// and allocating inodes took 28 % of the CPU again (the daemon runs it in
// the background at start; it stops when ctx ends).
func (q *Queue) FillRecycling(ctx context.Context) error {
	r := q.recycle
	if r == nil {
		return nil
	}
	for i := 0; ctx.Err() == nil; i++ {
		r.mu.Lock()
		have := len(r.files)
		r.mu.Unlock()
		if have >= recycleFill {
			return nil
		}
		name := fmt.Sprintf("new.%d", i)
		f, err := os.OpenFile(filepath.Join(q.Dir, Recycle, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		f.Close()
		r.mu.Lock()
		r.files = append(r.files, recycled{name: name})
		r.mu.Unlock()
	}
	return nil
}

// Retire takes a delivered message out of its queue: its status logs are
// removed (when logs is true) and the file goes to recycle/ for reuse, or
// is unlinked when recycling is off or the list is full. f is closed
// first, which releases the delivery lock before anything can reuse it.
func (q *Queue) Retire(f *File, logs bool) error {
	size := f.ContentOffset + f.ContentSize
	f.Close()
	path := q.Path(f.Queue, f.ID)
	if logs {
		for _, log := range []string{BounceLog, DeferLog, TraceLog} {
			os.Remove(q.Path(log, f.ID))
		}
	}
	r := q.recycle
	if r == nil {
		return os.Remove(path)
	}
	r.mu.Lock()
	full := len(r.files) >= recycleMax
	cut := size > recycleKeep || r.bytes+size > recycleBytes
	if !full && !cut {
		r.bytes += size // reserved now, so that two retirements cannot both fit the last room
	}
	r.mu.Unlock()
	if full {
		return os.Remove(path)
	}
	if cut {
		size = 0
	}
	dst := filepath.Join(q.Dir, Recycle, f.ID)
	if err := rename(path, dst); err != nil {
		r.mu.Lock()
		r.bytes -= size
		r.mu.Unlock()
		if errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return os.Remove(path)
	}
	if cut {
		// Keep the inode, not the blocks.
		if err := os.Truncate(dst, 0); err != nil {
			os.Remove(dst) // out of the queue all the same
			return nil
		}
	}
	r.mu.Lock()
	r.files = append(r.files, recycled{f.ID, size})
	r.mu.Unlock()
	return nil
}

// take removes one name from the list; "" when it is empty.
func (r *recycler) take() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.files)
	if n == 0 {
		return ""
	}
	f := r.files[n-1]
	r.files = r.files[:n-1]
	r.bytes -= f.size
	return f.name
}

// reuse starts a new message in a recycled file, moved into queue under
// its new ID; ok is false when there is none to reuse (or it is not fit,
// and then it is removed).
func (q *Queue) reuse(queue string) (w *Writer, ok bool) {
	// Only incoming: maildrop files belong to the users who wrote them.
	if q.recycle == nil || queue != Incoming {
		return nil, false
	}
	name := q.recycle.take()
	if name == "" {
		return nil, false
	}
	src := filepath.Join(q.Dir, Recycle, name)
	fd, err := unix.Open(src, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		os.Remove(src)
		return nil, false
	}
	var st unix.Stat_t
	// Only a plain file of ours with no other name: anything else is not
	// something Retire put here. It becomes not-ready, and its mtime is
	// now, as a new file's would be: recovery and postsuper -p remove a
	// not-ready file whose mtime is old.
	now := time.Now()
	tv := unix.NsecToTimeval(now.UnixNano())
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 || int(st.Uid) != os.Geteuid() ||
		unix.Fchmod(fd, 0o600) != nil || unix.Futimes(fd, []unix.Timeval{tv, tv}) != nil {
		unix.Close(fd)
		os.Remove(src)
		return nil, false
	}
	for t := now; ; t = t.Add(time.Microsecond) {
		id := NewID(t, st.Ino)
		path := q.Path(queue, id)
		if q.hashed[queue] {
			_ = os.MkdirAll(filepath.Dir(path), 0o700)
		}
		err = unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
		if err == nil {
			f := os.NewFile(uintptr(fd), path)
			return &Writer{q: q, f: f, id: id, path: path, mLenOff: -1, stale: st.Size}, true
		}
		if !errors.Is(err, unix.EEXIST) {
			unix.Close(fd)
			os.Remove(src)
			return nil, false
		}
	}
}
