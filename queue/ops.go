package queue

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Entry is one file found in a queue directory.
type Entry struct {
	Queue string
	ID    string
	Path  string
}

// Walk calls fn for every message file in a queue, reading the directory
// in batches so that memory stays flat whatever the queue size. Hashed
// subdirectories are walked too. Names that are not queue IDs (temporary
// files) are skipped; bogus is told about names that do not belong there
// at all (nil to ignore). fn may move or remove the file it is given.
//
// A hashed subdirectory that cannot be read does not stop the walk: the
// rest is walked, and the error returned at the end names it (its mail
// is not lost, but nothing sees it until the operator repairs it).
func (q *Queue) Walk(queue string, fn func(Entry) error, bogus func(path string)) error {
	var unread []error
	err := q.walkDir(queue, filepath.Join(q.Dir, queue), 0, fn, bogus, &unread)
	if err != nil {
		return err
	}
	return errors.Join(unread...)
}

func (q *Queue) walkDir(queue, dir string, depth int, fn func(Entry) error, bogus func(string), unread *[]error) error {
	d, err := os.Open(dir)
	if err != nil {
		if depth > 0 {
			if !errors.Is(err, fs.ErrNotExist) {
				*unread = append(*unread, err)
			}
			return nil
		}
		return err
	}
	defer d.Close()
	for {
		ents, err := d.ReadDir(512)
		for _, e := range ents {
			name := e.Name()
			path := filepath.Join(dir, name)
			switch {
			case e.IsDir():
				if len(name) == 1 && strings.Contains("0123456789ABCDEF", name) && depth < 8 {
					if err := q.walkDir(queue, path, depth+1, fn, bogus, unread); err != nil {
						return err
					}
				} else if bogus != nil {
					bogus(path)
				}
			case ValidID(name):
				if err := fn(Entry{Queue: queue, ID: name, Path: path}); err != nil {
					return err
				}
			case strings.HasPrefix(name, "tmp."):
			default:
				if bogus != nil {
					bogus(path)
				}
			}
		}
		if err == io.EOF || len(ents) == 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Find returns the queue that holds a message, searching the message
// queues (and saved, for postcat).
func (q *Queue) Find(id string, queues ...string) (string, error) {
	if len(queues) == 0 {
		queues = append(append([]string(nil), MessageQueues...), Saved)
	}
	if !ValidID(id) {
		return "", fmt.Errorf("invalid queue ID %q", id)
	}
	for _, name := range queues {
		if _, err := os.Lstat(q.Path(name, id)); err == nil {
			return name, nil
		}
	}
	return "", fmt.Errorf("%s: no such message in the queue", id)
}

// Move renames a message from one queue to another.
func (q *Queue) Move(id, from, to string) error {
	dst := q.Path(to, id)
	err := rename(q.Path(from, id), dst)
	if errors.Is(err, fs.ErrNotExist) && q.hashed[to] {
		if _, serr := os.Stat(q.Path(from, id)); serr == nil {
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				return err
			}
			err = rename(q.Path(from, id), dst)
		}
	}
	return err
}

// SetMode changes a message's flag bits (forced expiry, unthrottle) while
// keeping it ready.
func (q *Queue) SetMode(queue, id string, expire, unthrottle bool) error {
	mode := os.FileMode(modeReady)
	if expire {
		mode |= modeExpire
	}
	if unthrottle {
		mode |= modeThrottle
	}
	return os.Chmod(q.Path(queue, id), mode)
}

// SetTimes sets a message file's mtime: in deferred, the earliest time of
// its next delivery attempt.
func (q *Queue) SetTimes(queue, id string, next time.Time) error {
	return os.Chtimes(q.Path(queue, id), next, next)
}

// Remove deletes a message and its status logs.
func (q *Queue) Remove(queue, id string) error {
	err := os.Remove(q.Path(queue, id))
	for _, log := range []string{BounceLog, DeferLog, TraceLog} {
		os.Remove(q.Path(log, id))
	}
	return err
}

// Quarantine moves a damaged file to corrupt/, where it stays for the
// operator.
func (q *Queue) Quarantine(queue, id string) error {
	return os.Rename(q.Path(queue, id), filepath.Join(q.Dir, Corrupt, id))
}

// Logger is what recovery reports to (the master's mail log).
type Logger interface {
	Infof(format string, args ...any)
	Warnf(format string, args ...any)
	Errorf(format string, args ...any)
}

// RecoverActive puts the messages a crash or a stop left in active back
// into incoming to be scheduled again (into deferred when qmgr had
// recorded a retry time before delivering them). It must run before qmgr
// starts; it only renames, so it is quick whatever the queue size.
func (q *Queue) RecoverActive(log Logger) error {
	now := time.Now()
	err := q.Walk(Active, func(e Entry) error {
		// qmgr records the retry time in the mtime before it delivers:
		// a message whose delivery was interrupted waits for it in
		// deferred, so a crash loop cannot hammer a destination.
		to := Incoming
		if st, err := os.Stat(e.Path); err == nil && st.ModTime().After(now.Add(time.Second)) {
			to = Deferred
		}
		if err := q.Move(e.ID, Active, to); err != nil {
			log.Errorf("%s: cannot move back to %s: %v", e.ID, to, err)
		}
		return nil
	}, nil)
	return unreadable(err, log)
}

// unreadable logs the part of a walk's error that is about directories
// it could not read (the walk went on without them) and returns the rest.
func unreadable(err error, log Logger) error {
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	log.Errorf("%v; the mail in it is not seen (run postfix set-permissions as root)", err)
	return nil
}

// CheckIncoming reads every message in incoming: a file that does not
// parse goes to corrupt/ with a log line without stopping the rest, and
// leftovers of unfinished writes older than maxTemp are removed. It may
// run while qmgr works (the daemon runs it in the background, so that a
// large incoming queue does not delay the start): a file qmgr took
// meanwhile is skipped. It returns how many messages it found waiting.
func (q *Queue) CheckIncoming(log Logger, maxTemp time.Duration) (int, error) {
	waiting := 0
	err := q.Walk(Incoming, func(e Entry) error {
		_, err := q.Read(Incoming, e.ID)
		var ce *CorruptError
		switch {
		case err == nil:
			waiting++
		case errors.Is(err, fs.ErrNotExist):
			// qmgr took it.
		case errors.Is(err, ErrNotReady):
			if st, serr := os.Stat(e.Path); serr == nil && time.Since(st.ModTime()) > maxTemp {
				log.Warnf("%s: removing unfinished queue file from %s", e.ID, st.ModTime().Format(time.RFC3339))
				os.Remove(e.Path)
			}
		case errors.As(err, &ce):
			log.Warnf("%s: %s; moved to %s", e.ID, ce.Reason, Corrupt)
			if qerr := q.Quarantine(Incoming, e.ID); qerr != nil && !errors.Is(qerr, fs.ErrNotExist) {
				log.Warnf("%s: cannot move to %s: %v", e.ID, Corrupt, qerr)
			}
		default:
			log.Warnf("%s: %v", e.ID, err)
		}
		return nil
	}, nil)
	if err != nil {
		return waiting, err
	}
	// Temp files of interrupted Create calls.
	for _, name := range []string{Incoming, Maildrop, Hold} {
		ents, _ := os.ReadDir(filepath.Join(q.Dir, name))
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), "tmp.") {
				continue
			}
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > maxTemp {
				os.Remove(filepath.Join(q.Dir, name, e.Name()))
			}
		}
	}
	return waiting, nil
}

// Purge removes temporary and unfinished queue files older than age, in
// every message queue (postsuper -p). It returns how many it removed.
func (q *Queue) Purge(age time.Duration) (int, error) {
	n := 0
	for _, name := range MessageQueues {
		err := filepath.WalkDir(filepath.Join(q.Dir, name), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			info, err := d.Info()
			if err != nil || time.Since(info.ModTime()) <= age {
				return nil
			}
			if strings.HasPrefix(d.Name(), "tmp.") || (ValidID(d.Name()) && info.Mode().Perm()&0o700 != modeReady) {
				if os.Remove(path) == nil {
					n++
				}
			}
			return nil
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Repair moves message and log files that are not where hash_queue_names
// and hash_queue_depth put them (after those settings changed, or after a
// restore), and removes hashed subdirectories a queue no longer uses
// (postsuper -s). bogus hears about names that are not queue IDs.
func (q *Queue) Repair(bogus func(path string)) (int, error) {
	type move struct{ from, to string }
	var moves []move
	names := append(append([]string(nil), MessageQueues...), BounceLog, DeferLog, TraceLog)
	for _, name := range names {
		err := q.Walk(name, func(e Entry) error {
			if want := q.Path(name, e.ID); want != e.Path {
				moves = append(moves, move{e.Path, want})
			}
			return nil
		}, bogus)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, err
		}
	}
	n := 0
	for _, m := range moves {
		if err := os.MkdirAll(filepath.Dir(m.to), 0o700); err != nil {
			return n, err
		}
		if err := os.Rename(m.from, m.to); err != nil {
			return n, err
		}
		n++
	}
	// Drop empty hash directories (deepest first, as WalkDir lists
	// parents before children).
	for _, name := range names {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(q.Dir, name), func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() && path != filepath.Join(q.Dir, name) {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if !q.hashed[name] {
				os.Remove(dirs[i]) // only succeeds when empty
			}
		}
	}
	return n, nil
}

// Scanner walks a queue directory a few names at a time (Postfix's
// scan_dir): a pass over a queue of any size holds one buffer of names
// per directory level, not the whole listing. Names added or removed
// during the pass may or may not be seen, as with readdir.
type Scanner struct {
	queue string
	stack []*scanDir
	errs  []error
}

type scanDir struct {
	f     *os.File
	path  string
	depth int
	buf   []os.DirEntry
}

// scanBatch is how many names a Scanner reads from a directory at once.
const scanBatch = 256

// Scan starts a pass over a queue. Close it when stopping before the end.
func (q *Queue) Scan(queue string) *Scanner {
	s := &Scanner{queue: queue}
	s.push(filepath.Join(q.Dir, queue), 0)
	return s
}

func (s *Scanner) push(path string, depth int) {
	f, err := os.Open(path)
	if err != nil {
		// Gone, or not there yet: nothing to scan. Anything else (a
		// directory the daemon may not read) hides mail: say so.
		if !errors.Is(err, fs.ErrNotExist) {
			s.errs = append(s.errs, err)
		}
		return
	}
	s.stack = append(s.stack, &scanDir{f: f, path: path, depth: depth})
}

// Next returns the next message of the pass; false at the end.
func (s *Scanner) Next() (Entry, bool) {
	for len(s.stack) > 0 {
		d := s.stack[len(s.stack)-1]
		if len(d.buf) == 0 {
			// At the end, or on an error, the directory is done.
			var err error
			d.buf, err = d.f.ReadDir(scanBatch)
			if err != nil && err != io.EOF {
				s.errs = append(s.errs, fmt.Errorf("read %s: %w", d.path, err))
			}
			if len(d.buf) == 0 {
				d.f.Close()
				s.stack = s.stack[:len(s.stack)-1]
				continue
			}
		}
		e := d.buf[0]
		d.buf = d.buf[1:]
		name := e.Name()
		switch {
		case e.IsDir():
			if len(name) == 1 && strings.Contains("0123456789ABCDEF", name) && d.depth < 8 {
				s.push(filepath.Join(d.path, name), d.depth+1)
			}
		case ValidID(name):
			return Entry{Queue: s.queue, ID: name, Path: filepath.Join(d.path, name)}, true
		}
	}
	return Entry{}, false
}

// Err reports the directories of the pass so far that could not be
// opened or read (their messages were not seen), or nil.
func (s *Scanner) Err() error { return errors.Join(s.errs...) }

// Close ends a pass early.
func (s *Scanner) Close() {
	for _, d := range s.stack {
		d.f.Close()
	}
	s.stack = nil
}

// rename is os.Rename without its Lstat of the target (it checks for a
// directory there, which a queue never has): one system call fewer on
// each move of every message.
func rename(from, to string) error {
	for {
		err := unix.Rename(from, to)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
		}
		return nil
	}
}

// openFile is os.OpenFile for a queue file without the poller: os.OpenFile
// tries to register every file with epoll (four fcntl calls and a failed
// epoll_ctl for a regular file); os.NewFile does not.
func openFile(path string, flag int) (*os.File, error) {
	for {
		fd, err := unix.Open(path, flag|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
}
