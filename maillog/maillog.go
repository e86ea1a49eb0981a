// Package maillog owns the mail log: one log in Postfix's line format,
//
//	Nov 21 10:00:00 myhost mailsrv/smtpd[1234]: 4TpXvC0sf8z9HdB: client=...
//
// so that pflogsumm, fail2ban filters and an operator's grep habits keep
// working. The destination is maillog_file (a file, reopened for logrotate,
// or /dev/stdout) or, when that is empty, syslog. Debug detail (-v) is not
// part of the mail log: it goes to standard error.
package maillog

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// Log is the process-wide mail log. The zero value is not usable; use Open.
type Log struct {
	mu       sync.Mutex
	file     string
	w        io.WriteCloser // file or stdout; nil when syslog is used
	sys      net.Conn       // /dev/log when maillog_file is empty
	facility int
	hostname string
	pid      int
	debug    io.Writer // nil unless -v
	now      func() time.Time
	buf      []byte
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Open opens the mail log: file is maillog_file ("" = syslog, with
// facility), hostname is myhostname's first label as syslog prints it.
func Open(file, facility, hostname string) (*Log, error) {
	l := &Log{file: file, hostname: shortHost(hostname), pid: os.Getpid(), now: time.Now}
	if file == "" {
		f, err := facilityFor(facility)
		if err != nil {
			return nil, err
		}
		l.facility = f
		if err := l.dialSyslog(); err != nil {
			return nil, fmt.Errorf("cannot open syslog (set maillog_file to log to a file): %w", err)
		}
		return l, nil
	}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

// New returns a log that writes to w (tests, or a caller-owned stream).
func New(w io.Writer, hostname string) *Log {
	return &Log{w: nopCloser{w}, hostname: shortHost(hostname), pid: os.Getpid(), now: time.Now}
}

func shortHost(h string) string {
	if i := strings.IndexByte(h, '.'); i > 0 {
		return h[:i]
	}
	if h == "" {
		return "localhost"
	}
	return h
}

// facilityFor returns the syslog facility code (RFC 5424 §6.2.1).
func facilityFor(name string) (int, error) {
	m := map[string]int{"user": 1, "mail": 2, "daemon": 3, "auth": 4, "authpriv": 10}
	for i := 0; i < 8; i++ {
		m[fmt.Sprintf("local%d", i)] = 16 + i
	}
	if f, ok := m[strings.ToLower(name)]; ok {
		return f, nil
	}
	return 0, fmt.Errorf("unknown syslog_facility %q", name)
}

// dialSyslog connects to the local syslog socket. log/syslog cannot be used:
// it writes one fixed tag, and each mailsrv role needs its own
// (mailsrv/smtpd[PID]) for log readers to work.
func (l *Log) dialSyslog() error {
	var err error
	for _, netw := range []string{"unixgram", "unix"} {
		var c net.Conn
		if c, err = net.Dial(netw, "/dev/log"); err == nil {
			l.sys = c
			return nil
		}
	}
	return err
}

func (l *Log) open() error {
	switch l.file {
	case "/dev/stdout":
		l.w = nopCloser{os.Stdout}
		return nil
	case "/dev/stderr":
		l.w = nopCloser{os.Stderr}
		return nil
	}
	f, err := os.OpenFile(l.file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open maillog_file: %w", err)
	}
	l.w = f
	return nil
}

// Reopen closes and reopens a log file, so that logrotate can move it away
// (SIGUSR1, postfix reload). Syslog and standard output are left alone.
func (l *Log) Reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sys != nil || l.file == "" {
		return nil
	}
	old := l.w
	if err := l.open(); err != nil {
		l.w = old
		return err
	}
	return old.Close()
}

// Close closes the log.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sys != nil {
		return l.sys.Close()
	}
	if l.w != nil {
		return l.w.Close()
	}
	return nil
}

// SetDebug sends debug lines (Logger.Debugf) to w; nil turns them off.
func (l *Log) SetDebug(w io.Writer) {
	l.mu.Lock()
	l.debug = w
	l.mu.Unlock()
}

// Severity prefixes, as Postfix writes them.
const (
	info    = ""
	warning = "warning: "
	errorS  = "error: "
	fatal   = "fatal: "
)

// MaxLine bounds the text of one log line: whatever a client, a peer or a
// table put into it, a line stays a line a log reader can take (syslog
// servers commonly cut at 2 KiB or drop the message).
const MaxLine = 2000

// Clip shortens s to at most n bytes (on a UTF-8 boundary), marking the
// cut with "...": for pieces of log lines that come from outside.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	n = max(n-3, 0)
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "..."
}

func (l *Log) write(tag, sev, msg string) {
	msg = sanitize(Clip(msg, MaxLine))
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sys != nil {
		sevCode := 6 // info
		switch sev {
		case warning:
			sevCode = 4
		case errorS:
			sevCode = 3
		case fatal:
			sevCode = 2
		}
		l.buf = fmt.Appendf(l.buf[:0], "<%d>", l.facility*8+sevCode)
		l.buf = l.now().AppendFormat(l.buf, time.Stamp)
		l.buf = fmt.Appendf(l.buf, " %s[%d]: %s%s", tag, l.pid, sev, msg)
		if _, err := l.sys.Write(l.buf); err != nil {
			// syslogd restarted: reconnect once and retry.
			l.sys.Close()
			if l.dialSyslog() == nil {
				_, _ = l.sys.Write(l.buf)
			}
		}
		return
	}
	l.buf = l.now().AppendFormat(l.buf[:0], time.Stamp)
	l.buf = fmt.Appendf(l.buf, " %s %s[%d]: %s%s\n", l.hostname, tag, l.pid, sev, msg)
	_, _ = l.w.Write(l.buf)
}

// sanitize keeps log lines printable and on one line: whatever a client
// sent cannot forge a line of its own.
func sanitize(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}

// Logger writes as one role: its tag is syslog_name/role, e.g.
// mailsrv/smtpd or mailsrv/submission/smtpd.
type Logger struct {
	log *Log
	tag string
}

// Role returns a Logger for a role under a syslog_name.
func (l *Log) Role(syslogName, role string) *Logger {
	return &Logger{log: l, tag: syslogName + "/" + role}
}

// Tag is the program name this logger writes, e.g. mailsrv/master.
func (lg *Logger) Tag() string { return lg.tag }

// Infof logs an informational line.
func (lg *Logger) Infof(format string, args ...any) {
	lg.log.write(lg.tag, info, fmt.Sprintf(format, args...))
}

// Warnf logs a "warning: " line.
func (lg *Logger) Warnf(format string, args ...any) {
	lg.log.write(lg.tag, warning, fmt.Sprintf(format, args...))
}

// Errorf logs an "error: " line.
func (lg *Logger) Errorf(format string, args ...any) {
	lg.log.write(lg.tag, errorS, fmt.Sprintf(format, args...))
}

// Fatalf logs a "fatal: " line; the caller decides how to stop.
func (lg *Logger) Fatalf(format string, args ...any) {
	lg.log.write(lg.tag, fatal, fmt.Sprintf(format, args...))
}

// Debugf writes a debug line to the debug stream when -v is on; it never
// reaches the mail log.
func (lg *Logger) Debugf(format string, args ...any) {
	l := lg.log
	l.mu.Lock()
	w := l.debug
	l.mu.Unlock()
	if w == nil {
		return
	}
	fmt.Fprintf(w, "%s %s[%d]: debug: %s\n", l.now().Format(time.Stamp), lg.tag, l.pid, fmt.Sprintf(format, args...))
}
