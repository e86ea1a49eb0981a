package maillog

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestLineFormat(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := New(&buf, "mx.example.org")
	l.now = func() time.Time { return time.Date(2026, 11, 1, 9, 5, 3, 0, time.Local) }
	lg := l.Role("mailsrv", "smtpd")
	lg.Infof("connect from %s", "unknown[192.0.2.1]")
	lg.Warnf("bad line: %q", "x")
	lg.Errorf("queue file write error")
	lg.Fatalf("no config")
	l.Role("mailsrv/submission", "smtpd").Infof("evil\r\nnext line\x00")
	pid := os.Getpid()
	want := fmt.Sprintf(`Nov  1 09:05:03 mx mailsrv/smtpd[%d]: connect from unknown[192.0.2.1]
Nov  1 09:05:03 mx mailsrv/smtpd[%d]: warning: bad line: "x"
Nov  1 09:05:03 mx mailsrv/smtpd[%d]: error: queue file write error
Nov  1 09:05:03 mx mailsrv/smtpd[%d]: fatal: no config
Nov  1 09:05:03 mx mailsrv/submission/smtpd[%d]: evil??next line?
`, pid, pid, pid, pid, pid)
	if buf.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", buf.String(), want)
	}
}

// pflogsumm and fail2ban match lines with this shape.
func TestSyslogShape(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	New(&buf, "host").Role("mailsrv", "master").Infof("daemon started -- version 1, configuration /x")
	re := regexp.MustCompile(`^[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d host mailsrv/master\[\d+\]: daemon started`)
	if !re.MatchString(buf.String()) {
		t.Errorf("line %q", buf.String())
	}
}

func TestDebugIsSeparate(t *testing.T) {
	t.Parallel()
	var mail, debug bytes.Buffer
	l := New(&mail, "h")
	lg := l.Role("mailsrv", "qmgr")
	lg.Debugf("invisible")
	l.SetDebug(&debug)
	lg.Debugf("scan %d", 1)
	if mail.Len() != 0 {
		t.Errorf("debug reached the mail log: %q", mail.String())
	}
	if !strings.Contains(debug.String(), "mailsrv/qmgr[") || !strings.Contains(debug.String(), "debug: scan 1") {
		t.Errorf("debug stream: %q", debug.String())
	}
}

func TestReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "maillog")
	l, err := Open(file, "mail", "h")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lg := l.Role("mailsrv", "master")
	lg.Infof("first")
	if err := os.Rename(file, file+".1"); err != nil {
		t.Fatal(err)
	}
	lg.Infof("second")
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	lg.Infof("third")
	old, _ := os.ReadFile(file + ".1")
	cur, _ := os.ReadFile(file)
	if !strings.Contains(string(old), "first") || !strings.Contains(string(old), "second") || strings.Contains(string(old), "third") {
		t.Errorf("rotated file: %q", old)
	}
	if !strings.Contains(string(cur), "third") || strings.Contains(string(cur), "second") {
		t.Errorf("new file: %q", cur)
	}
}
