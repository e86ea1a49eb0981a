// Package mailbox writes messages into mailboxes, as Postfix's mail_copy
// does for local(8) and virtual(8): Maildir (a unique file written in
// tmp/, fsynced, then linked into new/) and mbox (locked with fcntl and/or
// a dotlock, a From_ line, ">From " quoting, fsync, and truncation back to
// the old size on any error, so a mailbox never holds half a message).
// Both prepend Return-Path, X-Original-To and Delivered-To.
package mailbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"mailsrv/outcome"
)

// Envelope is what the prepended headers and the From_ line say.
type Envelope struct {
	Sender      string // "" = the null sender
	Recipient   string // Delivered-To
	Original    string // X-Original-To ("" = none)
	DeliveredTo bool   // prepend Delivered-To
	// Limit is the largest file (mbox) or message (Maildir) in bytes,
	// 0 = none.
	Limit int64
}

// tooLarge is the size limit's error.
func tooLarge(what string) outcome.Status {
	return outcome.Status{DSN: "5.2.2", Text: fmt.Sprintf("cannot update %s: File too large", what)}
}

// Headers returns the prepended headers: Return-Path, X-Original-To and
// Delivered-To.
func Headers(env Envelope) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Return-Path: <%s>\n", env.Sender)
	if env.Original != "" {
		fmt.Fprintf(&b, "X-Original-To: %s\n", env.Original)
	}
	if env.DeliveredTo {
		fmt.Fprintf(&b, "Delivered-To: %s\n", env.Recipient)
	}
	return b.Bytes()
}

var seq atomic.Uint64

// hostPart is the host name as Maildir file names carry it: '/' and ':'
// would break the name and are written as \057 and \072.
func hostPart(h string) string {
	return strings.NewReplacer("/", `\057`, ":", `\072`).Replace(h)
}

// Maildir delivers into the Maildir dir (created with tmp/, new/, cur/ as
// needed, mode 0700) and returns the new file's path.
func Maildir(dir string, env Envelope, content io.Reader, hostname string) (string, error) {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return "", outcome.Status{DSN: "4.2.0", Text: fmt.Sprintf("create maildir file %s: %v", filepath.Join(dir, sub), errText(err))}
		}
	}
	now := time.Now()
	host := hostPart(hostname)
	tmp := filepath.Join(dir, "tmp", fmt.Sprintf("%d.M%dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), seq.Add(1), host))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", outcome.Status{DSN: "4.2.0", Text: fmt.Sprintf("create maildir file %s: %v", tmp, errText(err))}
	}
	fail := func(e outcome.Status) (string, error) {
		f.Close()
		os.Remove(tmp)
		return "", e
	}
	w := bufio.NewWriterSize(f, 64<<10)
	w.Write(Headers(env))
	var src io.Reader = content
	if env.Limit > 0 {
		src = io.LimitReader(content, env.Limit+1)
	}
	n, err := io.Copy(w, src)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		return fail(outcome.Status{DSN: "4.2.0", Text: fmt.Sprintf("create maildir file %s: %v", tmp, errText(err))})
	}
	if env.Limit > 0 && n > env.Limit {
		return fail(tooLarge("maildir file " + tmp))
	}
	if err := f.Sync(); err != nil {
		return fail(outcome.Status{DSN: "4.2.0", Text: fmt.Sprintf("create maildir file %s: %v", tmp, errText(err))})
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return fail(outcome.Status{DSN: "4.2.0", Text: fmt.Sprintf("fstat %s: %v", tmp, errText(err))})
	}
	f.Close()
	name := fmt.Sprintf("%d.V%xI%xM%d.%s", now.Unix(), st.Dev, st.Ino, now.Nanosecond()/1000, host)
	dst := filepath.Join(dir, "new", name)
	if err := os.Link(tmp, dst); err != nil {
		os.Remove(tmp)
		return "", outcome.Status{DSN: "4.2.0", Text: fmt.Sprintf("link to %s: %v", dst, errText(err))}
	}
	os.Remove(tmp)
	// The new name must survive a crash too.
	if d, err := os.Open(filepath.Join(dir, "new")); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return "", outcome.Status{DSN: "4.2.0", Text: fmt.Sprintf("sync %s: %v", filepath.Join(dir, "new"), errText(err))}
		}
	}
	return dst, nil
}

// Locking says how an mbox file is locked.
type Locking struct {
	Fcntl, Flock, Dotlock bool
	Stale                 time.Duration // a dotlock older than this is removed
	Attempts              int
	Delay                 time.Duration
}

// ParseLocking reads mailbox_delivery_lock / virtual_mailbox_lock.
func ParseLocking(list []string, stale time.Duration, attempts int, delay time.Duration) (Locking, error) {
	l := Locking{Stale: stale, Attempts: max(attempts, 1), Delay: delay}
	for _, m := range list {
		switch strings.ToLower(strings.TrimSpace(m)) {
		case "fcntl":
			l.Fcntl = true
		case "flock":
			l.Flock = true
		case "dotlock":
			l.Dotlock = true
		case "":
		default:
			return l, fmt.Errorf("unknown mailbox lock method %q (fcntl, flock, dotlock)", m)
		}
	}
	return l, nil
}

// Mbox appends a message to the mbox file path, creating it (mode 0600)
// when missing. owner, when ≥ 0, is the uid the file must belong to
// (strict_mailbox_ownership).
func Mbox(path string, env Envelope, content io.Reader, lk Locking, owner int) error {
	if lk.Dotlock {
		unlock, err := dotlock(path, lk)
		if err != nil {
			return err
		}
		defer unlock()
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return outcome.Status{DSN: "4.2.0", Text: fmt.Sprintf("cannot open file %s: %v", path, errText(err))}
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return outcome.Status{DSN: "4.2.0", Text: fmt.Sprintf("cannot stat file %s: %v", path, errText(err))}
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Nlink > 1 {
		return outcome.Status{DSN: "5.2.0", Text: fmt.Sprintf("cannot update mailbox %s: file is not a regular file or has more than one link", path)}
	}
	if owner >= 0 && int(st.Uid) != owner {
		return outcome.Status{DSN: "4.2.0", Text: fmt.Sprintf("mailbox %s: file has bad owner uid %d", path, st.Uid)}
	}
	if err := kernelLock(f, lk); err != nil {
		return err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return outcome.Status{DSN: "4.2.0", Text: fmt.Sprintf("cannot seek file %s: %v", path, errText(err))}
	}
	fail := func(e outcome.Status) error {
		_ = f.Truncate(size)
		return e
	}
	w := bufio.NewWriterSize(f, 64<<10)
	sender := env.Sender
	if sender == "" {
		sender = "MAILER-DAEMON"
	}
	fmt.Fprintf(w, "From %s  %s\n", sender, time.Now().Format("Mon Jan _2 15:04:05 2006"))
	w.Write(Headers(env))
	n, err := copyQuoted(w, content)
	if err == nil {
		_, err = w.WriteString("\n")
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		return fail(outcome.Status{DSN: "4.2.0", Text: fmt.Sprintf("cannot update mailbox %s: %v", path, errText(err))})
	}
	if env.Limit > 0 && size+n > env.Limit {
		return fail(tooLarge("mailbox " + path))
	}
	if err := f.Sync(); err != nil {
		return fail(outcome.Status{DSN: "4.2.0", Text: fmt.Sprintf("cannot update mailbox %s: %v", path, errText(err))})
	}
	return nil
}

// copyQuoted copies the content, quoting body lines that start with
// "From " so mail readers do not take them for a new message, and ending
// it with a newline. It returns the bytes written.
func copyQuoted(w *bufio.Writer, r io.Reader) (int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var n int64
	inBody := false
	atStart := true
	last := byte('\n')
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if atStart {
				if !inBody && (len(line) == 1 && line[0] == '\n') {
					inBody = true
				} else if inBody && bytes.HasPrefix(line, []byte("From ")) {
					w.WriteByte('>')
					n++
				}
			}
			w.Write(line)
			n += int64(len(line))
			last = line[len(line)-1]
			atStart = last == '\n'
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err
		}
	}
	if last != '\n' {
		w.WriteByte('\n')
		n++
	}
	return n, nil
}

// kernelLock takes the fcntl and/or flock lock, retrying as
// deliver_lock_attempts/deliver_lock_delay say. The locks go with the
// file's close.
func kernelLock(f *os.File, lk Locking) error {
	for i := 0; ; i++ {
		var err error
		if lk.Fcntl {
			fl := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart}
			err = syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &fl)
		}
		if err == nil && lk.Flock {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		}
		if err == nil {
			return nil
		}
		if i+1 >= lk.Attempts || !(errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EWOULDBLOCK)) {
			return outcome.Status{DSN: "4.2.0", Text: fmt.Sprintf("unable to lock for exclusive access: %v", errText(err))}
		}
		time.Sleep(lk.Delay)
	}
}

// dotlock creates path.lock (removing one older than the stale time) and
// returns its remover.
func dotlock(path string, lk Locking) (func(), error) {
	lock := path + ".lock"
	for i := 0; ; i++ {
		f, err := os.OpenFile(lock, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
			f.Close()
			return func() { os.Remove(lock) }, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, outcome.Status{DSN: "4.2.0", Text: fmt.Sprintf("unable to create lock file %s: %v", lock, errText(err))}
		}
		if st, serr := os.Stat(lock); serr == nil && lk.Stale > 0 && time.Since(st.ModTime()) > lk.Stale {
			os.Remove(lock)
			continue
		}
		if i+1 >= lk.Attempts {
			return nil, outcome.Status{DSN: "4.2.0", Text: fmt.Sprintf("unable to lock for exclusive access: %s: file exists", lock)}
		}
		time.Sleep(lk.Delay)
	}
}

// errText is an error's system message without Go's "op path:" prefix.
func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err.Error()
	}
	return err.Error()
}

// HasDeliveredTo reports whether the message header already has a
// Delivered-To: for addr: the message has been here before, and
// delivering it again would loop.
func HasDeliveredTo(content io.Reader, addr string) (bool, error) {
	br := bufio.NewReaderSize(content, 16<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) == 0 || line[0] == '\n' {
			return false, nil
		}
		if name, value, ok := bytes.Cut(line, []byte(":")); ok && strings.EqualFold(string(name), "Delivered-To") {
			if strings.EqualFold(strings.TrimSpace(string(value)), addr) {
				return true, nil
			}
		}
		if err == bufio.ErrBufferFull {
			// A very long header line: skip the rest of it.
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
		}
		if err != nil {
			if err == io.EOF {
				return false, nil
			}
			return false, err
		}
	}
}
