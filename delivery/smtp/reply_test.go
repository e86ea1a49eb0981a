package smtp

import (
	"bufio"
	"errors"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	t.Parallel()
	br := bufio.NewReader(strings.NewReader("250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n550 5.1.1 no\r\n"))
	code, lines, err := ReadReply(br)
	if err != nil || code != 250 || strings.Join(lines, "|") != "mx.example|PIPELINING|SIZE 1000" {
		t.Errorf("%d %q %v", code, lines, err)
	}
	if code, lines, err := ReadReply(br); err != nil || code != 550 || lines[0] != "5.1.1 no" {
		t.Errorf("%d %q %v", code, lines, err)
	}
	for _, bad := range []string{"hello\r\n", "250-a\r\n451 b\r\n", "99 x\r\n"} {
		if _, _, err := ReadReply(bufio.NewReader(strings.NewReader(bad))); !errors.Is(err, ErrBadReply) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	// A hostile server: an endless line is cut, endless lines refused.
	long := "250 " + strings.Repeat("x", 1<<20) + "\r\n"
	if _, lines, err := ReadReply(bufio.NewReader(strings.NewReader(long))); err != nil || len(lines[0]) > maxReplyLine {
		t.Errorf("long line: %d bytes, %v", len(lines[0]), err)
	}
	many := strings.Repeat("250-x\r\n", 10000) + "250 x\r\n"
	if _, _, err := ReadReply(bufio.NewReader(strings.NewReader(many))); !errors.Is(err, ErrBadReply) {
		t.Errorf("10000 lines: %v", err)
	}
}

// FuzzReadReply: whatever a server sends, the reader returns a bounded
// reply or an error, and never panics.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"250 ok\r\n", "250-a\r\n250 b\r\n", "421 4.4.2 bye\r\n", "2", "250-\r\n250 \r\n", "\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 1<<16 {
			return // the bounds are tested above; keep iterations quick
		}
		code, lines, err := ReadReply(bufio.NewReader(strings.NewReader(s)))
		if err == nil && (code < 200 || code > 599 || len(lines) == 0 || len(lines) > maxReplyLines) {
			t.Fatalf("%q: code %d, %d lines", s, code, len(lines))
		}
		for _, l := range lines {
			if len(l) > maxReplyLine {
				t.Fatalf("line of %d bytes", len(l))
			}
		}
	})
}
