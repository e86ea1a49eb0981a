package queue

// Queue file format, version 1.
//
// A queue file is a stream of records. Each record is one type byte, the
// payload length as an unsigned LEB128 varint, and the payload. Text
// payloads are UTF-8 without line terminators. In order:
//
//	V  "mailsrv-queue 1": format name and version; always first
//	T  arrival time, "SECONDS MICROSECONDS" since the epoch
//	c  create time, "SECONDS": the base of retry backoff and expiry; reset
//	   when postsuper -r requeues the message, while T keeps the arrival
//	W  next delay warning time, "SECONDS" as 20 zero-padded digits (0 = none)
//	   so it can be rewritten in place
//	A  attribute "name=value" (client_name, client_address, client_port,
//	   helo_name, protocol_name, sasl_method, sasl_username, sasl_sender,
//	   envelope_id (DSN ENVID), ret_flags (DSN RET: FULL or HDRS),
//	   body_type (7BIT, 8BITMIME), smtputf8, rewrite_context, …)
//	S  envelope sender; empty payload = the null sender <>
//	per recipient, in this order, the first three optional:
//	o  DSN ORCPT, e.g. "rfc822;user@example.com"
//	n  DSN NOTIFY bit mask in decimal: NEVER=1 SUCCESS=2 FAILURE=4 DELAY=8
//	O  original recipient, before rewriting
//	R  recipient; delivery agents overwrite the type byte with D when the
//	   recipient is done (delivered or bounced), so a crash can only
//	   repeat unfinished recipients
//	M  the message content (headers and body, LF line ends, unstuffed). Its
//	   length is written as a 10-byte (padded) varint, patched in place
//	   once the content has been streamed to disk
//	recipient records may also follow M (recipients extracted from the
//	content, as with sendmail -t)
//	E  end marker, empty payload; mandatory and last. A file without it is
//	   incomplete and is never taken for a message
//
// A file becomes a message when its owner permissions are exactly rwx
// (mode 0700): the writer sets that after the last byte and before the
// fsync, so a file still being written, or left behind by a crash, is
// never read. Postfix's extra mode bits keep their meaning: g+x marks a
// forced expiry (postsuper -e/-f), g+r asks qmgr to unthrottle the
// destination (postqueue -i/-s).

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	formatVersion = "mailsrv-queue 1"
	// maxRecord bounds every record but the content, so a damaged length
	// cannot make a reader allocate gigabytes.
	maxRecord = 1 << 20
	// lenPad is the width of M's patched length.
	lenPad = binary.MaxVarintLen64
)

// Record types.
const (
	recVersion   = 'V'
	recArrival   = 'T'
	recCreate    = 'c'
	recWarn      = 'W'
	recAttr      = 'A'
	recSender    = 'S'
	recORCPT     = 'o'
	recNotify    = 'n'
	recOrig      = 'O'
	recRcpt      = 'R'
	recDone      = 'D'
	recContent   = 'M'
	recEnd       = 'E'
	modeReady    = 0o700
	modeExpire   = 0o010 // g+x: forced expiry
	modeThrottle = 0o040 // g+r: unthrottle on next read
)

// DSN NOTIFY bits.
const (
	NotifyNever   = 1
	NotifySuccess = 2
	NotifyFailure = 4
	NotifyDelay   = 8
)

// Recipient is one envelope recipient.
type Recipient struct {
	Addr   string // as it will be delivered
	Orig   string // before rewriting ("" = same as Addr)
	ORCPT  string // DSN original recipient, "type;address"
	Notify int    // DSN NOTIFY bits, 0 = not given
	Done   bool   // delivered or bounced already
	Offset int64  // of the R/D record, for MarkDone
}

// Message is a parsed queue file.
type Message struct {
	ID         string
	Queue      string // the queue directory it was found in
	Arrival    time.Time
	Create     time.Time
	WarnAt     time.Time // zero = no warning scheduled
	Sender     string
	Recipients []Recipient
	Attrs      map[string]string
	// Content is where the message content sits in the file.
	ContentOffset, ContentSize int64
	// Flags from the file mode.
	ForcedExpire, Unthrottle bool
	// warnOffset is where the W payload starts, for SetWarn.
	warnOffset int64
}

// Attr returns one attribute.
func (m *Message) Attr(name string) string { return m.Attrs[name] }

// Pending returns the recipients not yet done.
func (m *Message) Pending() []Recipient {
	var out []Recipient
	for _, r := range m.Recipients {
		if !r.Done {
			out = append(out, r)
		}
	}
	return out
}

// CorruptError says a file is not a valid queue file: it goes to corrupt/.
type CorruptError struct {
	Path   string
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s: corrupt queue file: %s", e.Path, e.Reason)
}

// ErrNotReady means the file is still being written (or was abandoned by a
// crash): it is not a message yet.
var ErrNotReady = errors.New("queue file not ready")

// parseReaders are recycled: qmgr parses every new message, and a busy
// server takes hundreds a second.
var parseReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

// parse reads a queue file's records. It checks the structure strictly:
// every message taken from the queue is complete.
func parse(f *os.File, path string, st os.FileInfo) (*Message, error) {
	if st.Mode().Perm()&0o700 != modeReady || !st.Mode().IsRegular() {
		return nil, ErrNotReady
	}
	corrupt := func(format string, args ...any) error {
		return &CorruptError{Path: path, Reason: fmt.Sprintf(format, args...)}
	}
	m := &Message{Attrs: map[string]string{}, ContentOffset: -1}
	m.ForcedExpire = st.Mode().Perm()&modeExpire != 0
	m.Unthrottle = st.Mode().Perm()&modeThrottle != 0
	size := st.Size()
	br := parseReaders.Get().(*bufio.Reader)
	br.Reset(f)
	defer func() {
		br.Reset(nil)
		parseReaders.Put(br)
	}()
	var off int64
	var pending Recipient
	var sawSender, sawArrival bool
	first := true
	for {
		recOff := off
		typ, err := br.ReadByte()
		if err != nil {
			return nil, corrupt("no end marker")
		}
		n, lenBytes, err := readUvarint(br)
		if err != nil {
			return nil, corrupt("truncated record at offset %d", recOff)
		}
		if typ == recContent && lenBytes != lenPad {
			return nil, corrupt("content length not padded")
		}
		off += 1 + lenBytes
		if typ == recContent {
			if m.ContentOffset >= 0 {
				return nil, corrupt("two content records")
			}
			if int64(n) > size-off {
				return nil, corrupt("content runs past the end of the file")
			}
			m.ContentOffset, m.ContentSize = off, int64(n)
			if int(n) <= br.Buffered() {
				_, _ = br.Discard(int(n))
			} else {
				// Skip the content instead of reading it: the agents
				// read it when they deliver. (The size check above
				// keeps the seek inside the file.)
				if _, err := f.Seek(off+int64(n), io.SeekStart); err != nil {
					return nil, corrupt("truncated content")
				}
				br.Reset(f)
			}
			off += int64(n)
			continue
		}
		if n > maxRecord || int64(n) > size-off {
			return nil, corrupt("record %q at offset %d: bad length %d", typ, recOff, n)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			return nil, corrupt("truncated record at offset %d", recOff)
		}
		payloadOff := off
		off += int64(n)
		p := string(payload)
		if first {
			if typ != recVersion || p != formatVersion {
				return nil, corrupt("not a %s file", formatVersion)
			}
			first = false
			continue
		}
		switch typ {
		case recArrival:
			sec, usec, ok := strings.Cut(p, " ")
			s, err1 := strconv.ParseInt(sec, 10, 64)
			u, err2 := strconv.ParseInt(usec, 10, 64)
			if !ok || err1 != nil || err2 != nil {
				return nil, corrupt("bad arrival time %q", p)
			}
			m.Arrival = time.Unix(s, u*1000)
			sawArrival = true
		case recCreate:
			s, err := strconv.ParseInt(p, 10, 64)
			if err != nil {
				return nil, corrupt("bad create time %q", p)
			}
			m.Create = time.Unix(s, 0)
		case recWarn:
			s, err := strconv.ParseInt(p, 10, 64)
			if err != nil {
				return nil, corrupt("bad warning time %q", p)
			}
			if s > 0 {
				m.WarnAt = time.Unix(s, 0)
			}
			m.warnOffset = payloadOff
		case recAttr:
			name, value, ok := strings.Cut(p, "=")
			if !ok || name == "" {
				return nil, corrupt("bad attribute %q", p)
			}
			m.Attrs[name] = value
		case recSender:
			if sawSender {
				return nil, corrupt("two senders")
			}
			m.Sender, sawSender = p, true
		case recORCPT:
			pending.ORCPT = p
		case recNotify:
			v, err := strconv.Atoi(p)
			if err != nil || v < 0 || v > 15 {
				return nil, corrupt("bad NOTIFY %q", p)
			}
			pending.Notify = v
		case recOrig:
			pending.Orig = p
		case recRcpt, recDone:
			pending.Addr, pending.Done, pending.Offset = p, typ == recDone, recOff
			m.Recipients = append(m.Recipients, pending)
			pending = Recipient{}
		case recEnd:
			if off != size {
				return nil, corrupt("data after the end marker")
			}
			if !sawSender || !sawArrival || m.ContentOffset < 0 {
				return nil, corrupt("missing sender, arrival time or content")
			}
			if m.Create.IsZero() {
				m.Create = m.Arrival.Truncate(time.Second)
			}
			return m, nil
		default:
			return nil, corrupt("unknown record type %q at offset %d", typ, recOff)
		}
	}
}

// readUvarint reads a varint and says how many bytes it took.
func readUvarint(r io.ByteReader) (uint64, int64, error) {
	var x uint64
	var s uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, 0, err
		}
		if b < 0x80 {
			if i == binary.MaxVarintLen64-1 && b > 1 {
				return 0, 0, errors.New("varint overflow")
			}
			return x | uint64(b)<<s, int64(i + 1), nil
		}
		x |= uint64(b&0x7f) << s
		s += 7
	}
	return 0, 0, errors.New("varint overflow")
}

// paddedUvarint encodes n in exactly lenPad bytes (redundant continuation
// bytes), so that it can be patched in place.
func paddedUvarint(n uint64) []byte {
	b := make([]byte, lenPad)
	for i := 0; i < lenPad-1; i++ {
		b[i] = byte(n&0x7f) | 0x80
		n >>= 7
	}
	b[lenPad-1] = byte(n)
	return b
}

// appendRecord appends one record to buf.
func appendRecord(buf []byte, typ byte, payload string) []byte {
	buf = append(buf, typ)
	buf = binary.AppendUvarint(buf, uint64(len(payload)))
	return append(buf, payload...)
}
