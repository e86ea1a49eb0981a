package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Bounds on what a server may send in one reply: a hostile or broken
// server must not make the client buffer without end.
const (
	maxReplyLine  = 2048 // longer lines are cut (the rest is read and dropped)
	maxReplyLines = 256  // a reply with more lines is refused
)

// ErrBadReply is a reply that does not follow RFC 5321 §4.2.
var ErrBadReply = errors.New("malformed server reply")

// ReadReply reads one (possibly multi-line) reply: its code and its lines'
// texts (after "NNN-" / "NNN "). It is the reply reader of the smtp and
// lmtp clients.
func ReadReply(br *bufio.Reader) (int, []string, error) {
	var lines []string
	code := 0
	for {
		line, err := readLine(br)
		if err != nil {
			return 0, nil, err
		}
		if len(line) < 3 {
			return 0, nil, fmt.Errorf("%w: %q", ErrBadReply, line)
		}
		c, err := strconv.Atoi(line[:3])
		if err != nil || c < 200 || c > 599 || (code != 0 && c != code) {
			return 0, nil, fmt.Errorf("%w: %q", ErrBadReply, line)
		}
		code = c
		more := len(line) > 3 && line[3] == '-'
		text := ""
		if len(line) > 4 {
			text = line[4:]
		}
		lines = append(lines, text)
		if !more {
			return code, lines, nil
		}
		if len(lines) >= maxReplyLines {
			return 0, nil, fmt.Errorf("%w: more than %d lines", ErrBadReply, maxReplyLines)
		}
	}
}

// readLine reads a line without its CRLF, cut at maxReplyLine.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		seg, err := br.ReadSlice('\n')
		if len(b) < maxReplyLine {
			room := maxReplyLine - len(b)
			b = append(b, seg[:min(room, len(seg))]...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", err
		}
		break
	}
	b = bytes.TrimRight(b, "\r\n")
	return strings.ToValidUTF8(string(b), "?"), nil
}
