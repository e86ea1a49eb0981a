package smtpd

import (
	"bufio"
	"bytes"
	"io"
	"sync"
)

// bareLFPolicy is smtpd_forbid_bare_newline as it applies to one client.
type bareLFPolicy int

const (
	// bareLFLegacy ("no", or a client in
	// smtpd_forbid_bare_newline_exclusions): a line ends at LF, all CRs
	// before it are stripped, and any "." line ends the message.
	bareLFLegacy bareLFPolicy = iota
	// bareLFNormalize ("normalize", "note"): a bare LF ends a line like
	// CRLF, but only <CR><LF>.<CR><LF> ends the message; a "." line
	// without CRLF on both sides is dropped.
	bareLFNormalize
	// bareLFReject ("yes", "reject"): as normalize, and a message or
	// command with a bare LF is refused and the client disconnected.
	bareLFReject
)

// content turns what the client sends after DATA or in BDAT chunks into
// message content with LF line ends, no dot-stuffing, and CRs that are not
// part of a CRLF kept as data (cleanup makes them harmless). It writes to
// the message in large pieces and keeps counting, without storing, once
// the message is over message_size_limit, so the client can be read to the
// end and told why.
type content struct {
	w      io.Writer // the message being queued; nil to discard
	out    []byte
	limit  int64 // message_size_limit; 0 = none
	size   int64
	tooBig bool
	bareLF bool // a line ended in a bare LF

	pendingCR bool // BDAT: a CR ended the previous piece
}

const flushAt = 32 << 10

func (c *content) emit(p []byte) {
	c.size += int64(len(p))
	if c.limit > 0 && c.size > c.limit {
		c.tooBig = true
	}
	if c.tooBig || c.w == nil {
		return
	}
	if c.out == nil {
		c.out = (*outBufs.Get().(*[]byte))[:0]
	}
	c.out = append(c.out, p...)
	if len(c.out) >= flushAt {
		c.flush()
	}
}

// outBufs recycles the content buffers (flushAt plus a line), so a
// message costs no buffer growth.
var outBufs = sync.Pool{New: func() any { b := make([]byte, 0, flushAt+4096); return &b }}

// release returns the buffer; the content is done.
func (c *content) release() {
	if c.out != nil && cap(c.out) >= flushAt {
		b := c.out[:0]
		outBufs.Put(&b)
	}
	c.out = nil
}

func (c *content) flush() {
	if len(c.out) > 0 && c.w != nil && !c.tooBig {
		_, _ = c.w.Write(c.out)
	}
	c.out = c.out[:0]
}

var lf = []byte{'\n'}

// readData reads a DATA body up to its end (see bareLFPolicy) and returns
// read errors only (timeout, lost connection). A line longer than the
// reader's buffer arrives in pieces; only the start of a line can be a
// "." line or carry a stuffing dot, so a dot deep inside a long line, or
// after a bare CR, never ends the message.
func (c *content) readData(r *bufio.Reader, policy bareLFPolicy) error {
	atStart := true
	prevCRLF := true // the DATA command line itself ended the previous line
	heldCR := false  // a partial piece ended in CR: it may belong to CRLF
	for {
		seg, err := r.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		complete := err == nil
		if atStart && complete {
			text, crlf := lineEnd(seg, policy)
			if !crlf {
				c.bareLF = true
			}
			if len(text) == 1 && text[0] == '.' {
				if policy == bareLFLegacy || (crlf && prevCRLF) {
					c.flush()
					return nil
				}
				// A "." line that is not <CR><LF>.<CR><LF>: neither the
				// end of the message nor content (smuggling defence).
				prevCRLF = crlf
				continue
			}
			if len(text) > 0 && text[0] == '.' {
				text = text[1:]
			}
			c.emit(text)
			c.emit(lf)
			prevCRLF = crlf
			continue
		}
		if atStart && len(seg) > 0 && seg[0] == '.' {
			seg = seg[1:]
		}
		atStart = false
		if !complete {
			if heldCR {
				c.emit([]byte{'\r'})
				heldCR = false
			}
			if n := len(seg); n > 0 && seg[n-1] == '\r' {
				seg, heldCR = seg[:n-1], true
			}
			c.emit(seg)
			continue
		}
		// The end of a long line.
		if heldCR {
			if len(seg) == 1 { // just the LF: the held CR was its CR
				seg, heldCR = []byte("\r\n"), false
			} else {
				c.emit([]byte{'\r'})
				heldCR = false
			}
		}
		text, crlf := lineEnd(seg, policy)
		if !crlf {
			c.bareLF = true
		}
		c.emit(text)
		c.emit(lf)
		atStart, prevCRLF = true, crlf
	}
}

// lineEnd strips the line end of a complete line: one CR before the LF
// (all of them in legacy mode, which also calls every line CRLF-ended).
func lineEnd(seg []byte, policy bareLFPolicy) (text []byte, crlf bool) {
	text = seg[:len(seg)-1]
	if policy == bareLFLegacy {
		return bytes.TrimRight(text, "\r"), true
	}
	if n := len(text); n > 0 && text[n-1] == '\r' {
		return text[:n-1], true
	}
	return text, false
}

// readChunk reads one BDAT chunk of exactly n bytes. CRLF becomes LF; a
// bare LF counts as a line end (and is noted); any other CR is data. A CR
// that ends a chunk waits for the next one.
func (c *content) readChunk(r *bufio.Reader, n int64, last bool) error {
	for n > 0 {
		// Peek returns what it has on an error; the chunk is only
		// short when nothing at all came.
		p, err := r.Peek(int(min(n, int64(r.Size()))))
		if len(p) == 0 {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		c.bdatPiece(p)
		n -= int64(len(p))
		_, _ = r.Discard(len(p))
	}
	if last {
		if c.pendingCR {
			c.emit([]byte{'\r'})
			c.pendingCR = false
		}
		c.flush()
	}
	return nil
}

func (c *content) bdatPiece(p []byte) {
	for len(p) > 0 {
		if c.pendingCR {
			c.pendingCR = false
			if p[0] == '\n' {
				c.emit(lf)
				p = p[1:]
				continue
			}
			c.emit([]byte{'\r'})
		}
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			c.emit(p)
			return
		}
		c.emit(p[:i])
		if p[i] == '\n' {
			c.bareLF = true
			c.emit(lf)
		} else {
			c.pendingCR = true
		}
		p = p[i+1:]
	}
}
