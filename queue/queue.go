package queue

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"mailsrv/config"
)

// Queue names.
const (
	Maildrop = "maildrop"
	Incoming = "incoming"
	Active   = "active"
	Deferred = "deferred"
	Hold     = "hold"
	Corrupt  = "corrupt"
	Saved    = "saved"
	// Per-message status logs.
	BounceLog = "bounce"
	DeferLog  = "defer"
	TraceLog  = "trace"
)

// MessageQueues are the queues that hold messages, in postqueue's scan
// order.
var MessageQueues = []string{Maildrop, Active, Incoming, Deferred, Hold}

// Queue is the queue directory.
type Queue struct {
	Dir       string
	hashDepth int
	hashed    map[string]bool

	// Fault injection for tests: wrap the file writer, replace fsync.
	wrapWriter func(io.Writer) io.Writer
	sync       func(*os.File) error

	syncMu  sync.Mutex
	syncers map[string]*dirSyncer // group commit per directory

	coveredOnce   sync.Once
	covered       bool // a file's fsync makes its name durable too
	alwaysSyncDir bool // tests: fsync the directory on any file system

	recycle *recycler // nil unless EnableRecycling
}

// New opens the queue rooted at dir. hashNames are the queues that use
// hashed subdirectories, depth how many levels (hash_queue_names,
// hash_queue_depth).
func New(dir string, hashNames []string, depth int) *Queue {
	q := &Queue{Dir: dir, hashDepth: depth, hashed: map[string]bool{}, sync: (*os.File).Sync, recycle: recyclerFor(dir)}
	for _, n := range hashNames {
		q.hashed[n] = true
	}
	return q
}

// FromConfig opens the queue a configuration names.
func FromConfig(p *config.Params) *Queue {
	return New(p.QueueDirectory, p.HashQueueNames, p.HashQueueDepth)
}

// Path is where a file of the given queue and ID lives.
func (q *Queue) Path(queue, id string) string {
	parts := []string{q.Dir, queue}
	if q.hashed[queue] {
		parts = append(parts, hashDirs(id, q.hashDepth)...)
	}
	return filepath.Join(append(parts, id)...)
}

var tmpSeq atomic.Uint64

// Writer creates one queue file. The file has its final name (its queue
// ID) from the start, so the ID can be logged during the SMTP session, but
// it only becomes a message when Commit has made it complete and durable.
type Writer struct {
	q       *Queue
	f       *os.File
	bw      *bufio.Writer
	w       io.Writer // bw, possibly wrapped by a test
	id      string
	path    string
	off     int64 // bytes written so far
	mLenOff int64 // offset of the content length, -1 before content
	content int64 // content bytes written
	buf     []byte
	err     error
	done    bool
	ready   os.FileMode // mode that marks the file complete
	// stale is the size of a recycled file before this message: the
	// earlier message's bytes past the end of this one are cut off.
	stale int64
	// hold: Commit puts the message in hold/ instead of where it was
	// written (an access table's HOLD).
	hold bool
}

// Create starts a new message in a queue (incoming for cleanup, maildrop
// for sendmail): in a recycled file when the daemon has one (recycle.go),
// else in a new one. The caller adds the envelope, streams the content,
// and calls Commit or Abort.
func (q *Queue) Create(queue string, arrival time.Time) (*Writer, error) {
	if w, ok := q.reuse(queue); ok {
		return w.start(arrival), nil
	}
	dir := filepath.Join(q.Dir, queue)
	if w, err := q.createLinked(queue, dir); err == nil {
		return w.start(arrival), nil
	} else if !errors.Is(err, errNoTmpfile) {
		return nil, err
	}
	tmp := filepath.Join(dir, fmt.Sprintf("tmp.%d.%d.%d", time.Now().UnixMicro(), os.Getpid(), tmpSeq.Add(1)))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create queue file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	ino := st.Sys().(*syscall.Stat_t).Ino
	var id, path string
	for t := time.Now(); ; t = t.Add(time.Microsecond) {
		id = NewID(t, ino)
		path = q.Path(queue, id)
		if q.hashed[queue] {
			_ = os.MkdirAll(filepath.Dir(path), 0o700)
		}
		err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
			// No RENAME_NOREPLACE on this file system: link, then
			// unlink, which also refuses to replace.
			if err = os.Link(tmp, path); err == nil {
				err = os.Remove(tmp)
			}
		}
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("name queue file: %w", err)
	}
	w := &Writer{q: q, f: f, id: id, path: path, mLenOff: -1}
	return w.start(arrival), nil
}

// errNoTmpfile: the file system cannot make unnamed files.
var errNoTmpfile = errors.New("no O_TMPFILE")

// createLinked makes the file unnamed (O_TMPFILE) and links it into the
// queue under its ID: one directory operation instead of a create and a
// rename, which matters when many sessions write into one directory; and
// an interrupted create leaves nothing behind.
func (q *Queue) createLinked(queue, dir string) (*Writer, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL) {
			return nil, errNoTmpfile
		}
		return nil, fmt.Errorf("create queue file: %w", err)
	}
	f := os.NewFile(uintptr(fd), dir)
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	ino := st.Sys().(*syscall.Stat_t).Ino
	// linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; the /proc path
	// does the same for anyone.
	proc := fmt.Sprintf("/proc/self/fd/%d", fd)
	for t := time.Now(); ; t = t.Add(time.Microsecond) {
		id := NewID(t, ino)
		path := q.Path(queue, id)
		if q.hashed[queue] {
			_ = os.MkdirAll(filepath.Dir(path), 0o700)
		}
		err = unix.Linkat(unix.AT_FDCWD, proc, unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
		if err == nil {
			return &Writer{q: q, f: f, id: id, path: path, mLenOff: -1}, nil
		}
		if !errors.Is(err, unix.EEXIST) {
			f.Close()
			if errors.Is(err, unix.ENOENT) {
				// No /proc: the classic way.
				return nil, errNoTmpfile
			}
			return nil, fmt.Errorf("name queue file: %w", err)
		}
	}
}

// writers recycles the 64 KiB write buffers: one per message would be
// the largest allocation on the receiving path.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// release returns the write buffer to the pool.
func (w *Writer) release() {
	if w.bw != nil {
		w.bw.Reset(nil)
		writers.Put(w.bw)
		w.bw, w.w = nil, nil
	}
}

// start writes the records every queue file begins with.
func (w *Writer) start(arrival time.Time) *Writer {
	w.bw = writers.Get().(*bufio.Writer)
	w.bw.Reset(w.f)
	w.w = w.bw
	if w.q.wrapWriter != nil {
		w.w = w.q.wrapWriter(w.bw)
	}
	w.record(recVersion, formatVersion)
	w.record(recArrival, fmt.Sprintf("%d %d", arrival.Unix(), arrival.Nanosecond()/1000))
	w.record(recCreate, strconv.FormatInt(arrival.Unix(), 10))
	w.record(recWarn, fmt.Sprintf("%020d", 0))
	return w
}

// ID is the new message's queue ID.
func (w *Writer) ID() string { return w.id }

// Path is the file being written.
func (w *Writer) Path() string { return w.path }

func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	n, err := w.w.Write(b)
	w.off += int64(n)
	if err != nil {
		w.err = err
	}
}

func (w *Writer) record(typ byte, payload string) {
	if len(payload) > maxRecord && w.err == nil {
		w.err = fmt.Errorf("queue file record too long (%d bytes)", len(payload))
	}
	w.buf = appendRecord(w.buf[:0], typ, payload)
	w.write(w.buf)
}

// SetWarnTime schedules the delay warning (delay_warning_time).
func (w *Writer) SetWarnTime(t time.Time) {
	// The header's W record may already be on disk; a later W wins.
	w.record(recWarn, fmt.Sprintf("%020d", t.Unix()))
}

// SetCreateTime sets the base of retry backoff and expiry when it is not
// the arrival time (postsuper -r restarts a message's clock); a later c
// record wins over the one Create wrote.
func (w *Writer) SetCreateTime(t time.Time) { w.record(recCreate, strconv.FormatInt(t.Unix(), 10)) }

// SetAttr records an attribute. Names and values must not contain NUL, CR
// or LF; names no '='.
func (w *Writer) SetAttr(name, value string) {
	if name == "" || strings.ContainsAny(name, "=\x00\r\n") || strings.ContainsAny(value, "\x00\r\n") {
		if w.err == nil {
			w.err = fmt.Errorf("bad queue file attribute %q", name)
		}
		return
	}
	w.record(recAttr, name+"="+value)
}

// SetSender records the envelope sender ("" = null sender).
func (w *Writer) SetSender(addr string) { w.record(recSender, addr) }

// AddRecipient records a recipient, before or after the content.
func (w *Writer) AddRecipient(r Recipient) {
	if r.ORCPT != "" {
		w.record(recORCPT, r.ORCPT)
	}
	if r.Notify != 0 {
		w.record(recNotify, strconv.Itoa(r.Notify))
	}
	if r.Orig != "" && r.Orig != r.Addr {
		w.record(recOrig, r.Orig)
	}
	w.record(recRcpt, r.Addr)
}

// Write streams message content to the file. The first call ends the
// envelope; recipients added later are written after the content.
func (w *Writer) Write(p []byte) (int, error) {
	w.startContent()
	before := w.off
	w.write(p)
	w.content += w.off - before
	if w.err != nil {
		return int(w.off - before), w.err
	}
	return len(p), nil
}

// ReadFrom streams content from r without an extra copy.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	w.startContent()
	var total int64
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func (w *Writer) startContent() {
	if w.mLenOff >= 0 {
		return
	}
	w.write([]byte{recContent})
	w.mLenOff = w.off
	w.write(paddedUvarint(0))
}

// Size is the content size written so far.
func (w *Writer) Size() int64 { return w.content }

// Commit completes the file and makes it durable: end marker, content
// length, mode 0700 (ready), fsync of the file and of its directory. Only
// after Commit returns nil may the caller say "queued as ID". On error the
// file is removed.
func (w *Writer) Commit() error {
	if w.done {
		return errors.New("queue file already closed")
	}
	w.done = true
	w.startContent()
	w.record(recEnd, "")
	if w.err == nil {
		w.err = w.bw.Flush()
	}
	if w.err == nil {
		_, w.err = w.f.WriteAt(paddedUvarint(uint64(w.content)), w.mLenOff)
	}
	if w.err == nil && w.off < w.stale {
		w.err = w.f.Truncate(w.off)
	}
	if w.err == nil && w.hold {
		// Moved while not yet ready, so qmgr never takes it from
		// incoming; the fsync below makes the move durable with it.
		held := w.q.Path(Hold, w.id)
		if w.err = rename(w.path, held); w.err == nil {
			w.path = held
		}
	}
	if w.err == nil {
		w.err = w.f.Chmod(w.readyMode())
	}
	if w.err == nil {
		w.err = w.q.sync(w.f)
	}
	w.release()
	if cerr := w.f.Close(); w.err == nil {
		w.err = cerr
	}
	if w.err == nil && !w.q.nameCovered() {
		w.err = w.q.dirSync(filepath.Dir(w.path)).Sync()
		if errors.Is(w.err, fs.ErrPermission) && w.ready != 0 {
			// A user writing to maildrop may not open the directory
			// (mode 1733), as Postfix's postdrop may not: the file
			// itself is on disk, and pickup makes its copy durable.
			w.err = nil
		}
	}
	if w.err != nil {
		os.Remove(w.path)
		return fmt.Errorf("queue file write error: %w", w.err)
	}
	return nil
}

// SetReadyMode makes Commit mark the file complete with this mode instead
// of 0700: sendmail's maildrop files are 0744 so that pickup, running as
// mail_owner, can read a file another user owns.
func (w *Writer) SetReadyMode(m os.FileMode) { w.ready = m }

// SetHold makes Commit put the message on hold (hold/, where qmgr does
// not look) instead of handing it to qmgr: postsuper -H releases it.
func (w *Writer) SetHold() { w.hold = true }

// SetUnthrottle marks the new message as released by the operator
// (postsuper -r): qmgr and the delivery agents try its destinations at
// once, even those that failed a moment ago.
func (w *Writer) SetUnthrottle() { w.ready = modeReady | modeThrottle }

func (w *Writer) readyMode() os.FileMode {
	if w.ready != 0 {
		return w.ready
	}
	return modeReady
}

// Abort discards the message.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.release()
	w.f.Close()
	os.Remove(w.path)
}

func syncDir(dir string, sync func(*os.File) error) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return sync(d)
}

// File is a message opened for delivery or administration.
type File struct {
	*Message
	f *os.File
}

// Open opens and parses a message. write asks for a read-write handle (for
// done marks and warning updates).
func (q *Queue) Open(queue, id string, write bool) (*File, error) {
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	f, err := openPath(q.Path(queue, id), flag)
	if err != nil {
		return nil, err
	}
	f.Queue = queue
	return f, nil
}

// Owner is the uid that owns the file: for maildrop, the submitting user.
func (f *File) Owner() int {
	st, err := f.f.Stat()
	if err != nil {
		return -1
	}
	return int(st.Sys().(*syscall.Stat_t).Uid)
}

// OpenPath opens a queue file by its path (postcat FILE).
func OpenPath(path string) (*File, error) { return openPath(path, os.O_RDONLY) }

func openPath(path string, flag int) (*File, error) {
	f, err := openFile(path, flag)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	m, err := parse(f, path, st)
	if err != nil {
		f.Close()
		return nil, err
	}
	m.ID = filepath.Base(path)
	return &File{Message: m, f: f}, nil
}

// Read parses a message and closes it again (listing).
func (q *Queue) Read(queue, id string) (*Message, error) {
	f, err := q.Open(queue, id, false)
	if err != nil {
		return nil, err
	}
	f.Close()
	return f.Message, nil
}

// Close closes the file (and releases a lock).
func (f *File) Close() error { return f.f.Close() }

// Content returns a reader of the message content.
func (f *File) Content() *io.SectionReader {
	return io.NewSectionReader(f.f, f.ContentOffset, f.ContentSize)
}

// Lock takes the delivery lock; it fails at once with ErrLocked when
// another process holds it.
func (f *File) Lock() error {
	err := syscall.Flock(int(f.f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return ErrLocked
	}
	return err
}

// ErrLocked means a delivery holds the message.
var ErrLocked = errors.New("queue file is locked (being delivered)")

// MarkDone marks recipients done in place (R becomes D). The write goes
// to the kernel at once, so a crash of mailsrv never repeats them; it is
// not fsynced (as in Postfix): losing it takes a power failure, and costs
// at most a duplicate delivery, never a lost one (the queue's promise),
// while the delivery it records was made durable by the agent.
func (f *File) MarkDone(rcpts ...*Recipient) error {
	for _, r := range rcpts {
		if _, err := f.f.WriteAt([]byte{recDone}, r.Offset); err != nil {
			return err
		}
		r.Done = true
	}
	return nil
}

// SetWarnTime rewrites the delay warning time in place.
func (f *File) SetWarnTime(t time.Time) error {
	if f.warnOffset == 0 {
		return errors.New("queue file has no warning record")
	}
	var s int64
	if !t.IsZero() {
		s = t.Unix()
	}
	if _, err := f.f.WriteAt([]byte(fmt.Sprintf("%020d", s)), f.warnOffset); err != nil {
		return err
	}
	f.WarnAt = t
	return f.f.Sync()
}
