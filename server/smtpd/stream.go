package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"time"
)

// timedConn bounds every wait for the client by smtpd_timeout. By
// default (as Postfix without smtpd_per_request_deadline) the deadline is
// renewed before every read: each wait, between commands, inside a
// command line or between two pieces of a message body, is bounded, but a
// client that sends one byte just before each deadline can keep a session
// for ever. With smtpd_per_request_deadline the deadline is set once per
// request (beginRequest): a whole command line must arrive within
// smtpd_timeout, and a message body within smtpd_timeout plus one second
// for every smtpd_min_data_rate bytes received, never more than
// smtpd_timeout ahead of now. Writes get smtpd_timeout each, so a client
// that stops reading cannot hold a session either.
type timedConn struct {
	net.Conn
	timeout    time.Duration
	perRequest bool
	minRate    int // bytes per second that extend a body's deadline

	deadline time.Time // the current request's; zero until its first read
	data     bool      // the current request is a message body
}

func (c *timedConn) Read(p []byte) (int, error) {
	if c.timeout <= 0 {
		return c.Conn.Read(p)
	}
	if !c.perRequest {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
		return c.Conn.Read(p)
	}
	if c.deadline.IsZero() {
		c.deadline = time.Now().Add(c.timeout)
	}
	_ = c.Conn.SetReadDeadline(c.deadline)
	n, err := c.Conn.Read(p)
	if c.data && n > 0 && c.minRate > 0 {
		c.deadline = c.deadline.Add(time.Duration(n) * time.Second / time.Duration(c.minRate))
		if limit := time.Now().Add(c.timeout); c.deadline.After(limit) {
			c.deadline = limit
		}
	}
	return n, err
}

// beginRequest starts the deadline of the next request (a command line,
// or with data a message body); it does nothing without
// smtpd_per_request_deadline.
func (c *timedConn) beginRequest(data bool) {
	c.deadline, c.data = time.Time{}, data
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
