package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"mailsrv/queue"
)

// FuzzReadData checks the end-of-data rule against a one-line model: in
// normalize mode a DATA body ends exactly at the first <CR><LF>.<CR><LF>
// (the CRLF before the dot may be the one that ended the DATA command), and
// nowhere else, whatever the client sends and however the reader's buffer
// splits long lines. So one DATA makes at most one message.
func FuzzReadData(f *testing.F) {
	for _, s := range []string{
		"a\r\n.\r\n", ".\r\n", "a\n.\nb\r\n.\r\n", "a\r\n.\n\r\n.\r\n", "..\r\n.\r\n",
		"x\r.\r\n.\r\n", strings.Repeat("y", 40) + "\r\n.\r\n", "\r\n\r\n.\r\n", "a\r\r\n.\r\n",
	} {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, in []byte, bufSel uint8) {
		// Small buffers make long-line paths reachable with short input.
		size := 16 + int(bufSel%48)
		r := bufio.NewReaderSize(bytes.NewReader(in), size)
		var out bytes.Buffer
		c := &content{w: &out}
		err := c.readData(r, bareLFNormalize)
		end := bytes.Index(append([]byte("\r\n"), in...), []byte("\r\n.\r\n"))
		if end < 0 {
			if err == nil {
				t.Fatalf("%q: ended without <CR><LF>.<CR><LF>", in)
			}
			return
		}
		if err != nil {
			t.Fatalf("%q: %v, want the end at %d", in, err, end)
		}
		consumed := len(in) - remaining(r)
		if want := end + 3; consumed != want {
			t.Fatalf("%q: consumed %d bytes, want %d", in, consumed, want)
		}
		if int64(out.Len()) != c.size {
			t.Fatalf("size %d, wrote %d", c.size, out.Len())
		}
	})
}

// remaining counts what is left to read, buffered or not.
func remaining(r *bufio.Reader) int {
	n := 0
	for {
		_, err := r.Discard(1)
		if err != nil {
			return n
		}
		n++
	}
}

// FuzzParsePath: the MAIL/RCPT argument parser never panics, and what it
// accepts is a clean address.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"<a@b>", "<> SIZE=10", `<"a b"@c>`, "<@x,@y:u@z>", "a@b BODY=8BITMIME", `<"a\"b"@c>`, "<a@b", "<>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addr, params, ok := parsePath(s)
		if !ok {
			return
		}
		if strings.ContainsAny(addr, "\r\n\x00<>") && !strings.Contains(addr, `"`) {
			t.Fatalf("%q: accepted address %q", s, addr)
		}
		if !validAddress(addr) && addr != "" {
			t.Fatalf("%q: address %q does not validate", s, addr)
		}
		_, _ = parseMailParams(params)
		_, _ = parseRcptParams(params)
		_ = printable(addr)
	})
}

// FuzzSession runs whole SMTP sessions from arbitrary client input: the
// server never panics or hangs, always ends the session, and queues at
// most one message per DATA or BDAT command.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@our.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<bob>\r\nBDAT 5 LAST\r\nhello",
		"EHLO x\r\nMAIL FROM:<a@b> SIZE=5\r\nRCPT TO:<postmaster>\r\nDATA\r\n\n.\n.\r\n",
		"RSET\r\nNOOP\r\nVRFY alice\r\nBDAT 0\r\n",
	} {
		f.Add([]byte(s))
	}
	b, err := buildServer(f, "")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		before := countQueued(t, b)
		done := make(chan struct{})
		go func() {
			defer close(done)
			b.srv.ServeStdio(context.Background(), bytes.NewReader(in), io.Discard)
		}()
		<-done
		upper := bytes.ToUpper(in)
		most := bytes.Count(upper, []byte("DATA")) + bytes.Count(upper, []byte("BDAT"))
		if n := countQueued(t, b) - before; n > most {
			t.Fatalf("%d messages from %d DATA/BDAT commands", n, most)
		}
	})
}

func countQueued(t testing.TB, b *built) int {
	n := 0
	if err := b.q.Walk(queue.Incoming, func(queue.Entry) error { n++; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	return n
}
