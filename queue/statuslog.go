package queue

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Status is one recipient's entry in a per-message status log (bounce/ID,
// defer/ID, trace/ID), the records delivery agents leave for notices and
// for postqueue's reasons. The file format is Postfix's: one block of
// name=value lines per recipient, blocks separated by an empty line.
type Status struct {
	Recipient string
	Original  string
	Offset    int64 // of the recipient record in the queue file
	ORCPT     string
	Notify    int
	Status    string // enhanced status code, e.g. 4.4.1
	Action    string // failed, delayed, delivered, relayed, expanded
	DiagType  string // e.g. smtp
	DiagText  string // the remote server's reply
	MTAType   string // e.g. dns
	MTAName   string // the remote host
	Reason    string // human-readable reason (what postqueue shows)
}

func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == 0 {
			return ' '
		}
		return r
	}, s)
}

// AppendStatus adds an entry to a status log durably: written, fsynced,
// and truncated back to its old size if anything fails, so a log never
// holds half an entry.
func (q *Queue) AppendStatus(log, id string, s Status) error {
	path := q.Path(log, id)
	if q.hashed[log] {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
	}
	// Deliveries of one message to several destinations (local's are
	// one per recipient) append at the same time: each entry is one
	// write in append mode, and the mutex keeps a failed write's
	// truncation from cutting another's entry. (Seeking to the end and
	// writing there let two entries land on the same offset: one was
	// lost.)
	statusMu.Lock()
	defer statusMu.Unlock()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := f.Seek(0, 2)
	if err != nil {
		return err
	}
	var b strings.Builder
	field := func(name, value string) {
		if value != "" {
			fmt.Fprintf(&b, "%s=%s\n", name, clean(value))
		}
	}
	field("recipient", s.Recipient)
	field("original_recipient", s.Original)
	field("offset", strconv.FormatInt(s.Offset, 10))
	field("dsn_orig_rcpt", s.ORCPT)
	field("notify_flags", strconv.Itoa(s.Notify))
	field("status", s.Status)
	field("action", s.Action)
	field("diag_type", s.DiagType)
	field("diag_text", s.DiagText)
	field("mta_type", s.MTAType)
	field("mta_mname", s.MTAName)
	field("reason", s.Reason)
	b.WriteString("\n")
	if _, err = f.WriteString(b.String()); err == nil {
		err = q.sync(f)
	}
	if err != nil {
		_ = f.Truncate(size)
		return err
	}
	return nil
}

// statusMu serializes appends to status logs within the process.
var statusMu sync.Mutex

// ReadStatus reads a status log; a missing log is empty.
func (q *Queue) ReadStatus(log, id string) ([]Status, error) {
	f, err := os.Open(q.Path(log, id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Status
	var cur Status
	have := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), maxRecord)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if have {
				out = append(out, cur)
			}
			cur, have = Status{}, false
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		have = true
		switch name {
		case "recipient":
			cur.Recipient = value
		case "original_recipient":
			cur.Original = value
		case "offset":
			cur.Offset, _ = strconv.ParseInt(value, 10, 64)
		case "dsn_orig_rcpt":
			cur.ORCPT = value
		case "notify_flags":
			cur.Notify, _ = strconv.Atoi(value)
		case "status":
			cur.Status = value
		case "action":
			cur.Action = value
		case "diag_type":
			cur.DiagType = value
		case "diag_text":
			cur.DiagText = value
		case "mta_type":
			cur.MTAType = value
		case "mta_mname":
			cur.MTAName = value
		case "reason":
			cur.Reason = value
		}
	}
	if have {
		out = append(out, cur)
	}
	return out, sc.Err()
}
