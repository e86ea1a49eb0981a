package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"time"
)

// timedConn renews the read deadline before every read, so smtpd_timeout
// bounds each wait for the client: between commands, inside a command
// line, and between any two pieces of a message body (a client that
// trickles its DATA one byte per minute is dropped like an idle one).
// Writes get the same bound, so a client that stops reading cannot hold a
// session either.
type timedConn struct {
	net.Conn
	timeout time.Duration
}

func (c *timedConn) Read(p []byte) (int, error) {
	if c.timeout > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	}
	return c.Conn.Read(p)
}

func (c *timedConn) Write(p []byte) (int, error) {
	if c.timeout > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	return c.Conn.Write(p)
}

// isTimeout tells a deadline from other read errors.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// errLineTooLong is returned by readCommand when a command line was longer
// than line_length_limit; the line has been read to its end and cut.
var errLineTooLong = errors.New("command line too long")

// cmdLine is one command line as read, without its line end.
type cmdLine struct {
	text   []byte
	bareLF bool // ended in LF without CR
}

// readCommand reads one command line of at most limit bytes. A longer
// line is consumed to its end and returned cut at the limit with
// errLineTooLong, as Postfix's smtp_get does, so the next command starts
// where the client thinks it does.
func readCommand(r *bufio.Reader, limit int, buf []byte) (cmdLine, []byte, error) {
	buf = buf[:0]
	tooLong := false
	for {
		seg, err := r.ReadSlice('\n')
		if len(buf)+len(seg) > limit+2 {
			room := limit + 2 - len(buf)
			if room > 0 {
				buf = append(buf, seg[:room]...)
			}
			tooLong = true
		} else {
			buf = append(buf, seg...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return cmdLine{}, buf, err
		}
		break
	}
	line := cmdLine{}
	if tooLong {
		if len(buf) > limit {
			buf = buf[:limit]
		}
		line.text = bytes.TrimRight(buf, "\r\n")
		return line, buf, errLineTooLong
	}
	text := buf[:len(buf)-1] // the LF
	if n := len(text); n > 0 && text[n-1] == '\r' {
		text = text[:n-1]
	} else {
		line.bareLF = true
	}
	line.text = text
	return line, buf, nil
}
