package queue

import (
	"errors"
	"os"
	"time"
)

// Listed is one message as postqueue -p and -j show it (Postfix's showq).
type Listed struct {
	Queue        string
	ID           string
	Arrival      time.Time
	Size         int64
	ForcedExpire bool
	Sender       string
	Recipients   []ListedRecipient
}

// ListedRecipient is a recipient still to be handled, with the reason it
// was delayed (from defer/ID) or bounced (from bounce/ID), if known.
type ListedRecipient struct {
	Addr         string
	Orig         string
	DelayReason  string
	BounceReason string
}

// List walks every message queue in postqueue's order (maildrop, active,
// incoming, deferred, hold) and calls fn for each message, one at a time,
// so memory stays flat whatever the queue size. It works with the daemon
// stopped. Files that are not ready or not readable are skipped.
func (q *Queue) List(fn func(*Listed) error) error {
	for _, name := range MessageQueues {
		err := q.Walk(name, func(e Entry) error {
			l, err := q.listOne(name, e)
			if err != nil {
				// Moved or removed while we looked, still being
				// written, or damaged (qmgr deals with those).
				return nil
			}
			return fn(l)
		}, nil)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

func (q *Queue) listOne(name string, e Entry) (*Listed, error) {
	f, err := q.Open(name, e.ID, false)
	if err != nil {
		return nil, err
	}
	st, err := f.f.Stat()
	f.Close()
	if err != nil {
		return nil, err
	}
	m := f.Message
	l := &Listed{Queue: name, ID: e.ID, Arrival: m.Arrival, Size: m.ContentSize, ForcedExpire: m.ForcedExpire, Sender: m.Sender}
	if name == Maildrop {
		l.Size = st.Size()
	}
	// Delayed recipients first, with their reasons, then bounced ones not
	// yet reported, then the rest (Postfix 3.11 order).
	listed := map[int64]bool{}
	byAddr := map[string]bool{}
	deferred, _ := q.ReadStatus(DeferLog, e.ID)
	bounced, _ := q.ReadStatus(BounceLog, e.ID)
	for _, s := range deferred {
		l.Recipients = append(l.Recipients, ListedRecipient{Addr: s.Recipient, Orig: s.Original, DelayReason: s.Reason})
		listed[s.Offset], byAddr[s.Recipient] = true, true
	}
	for _, s := range bounced {
		l.Recipients = append(l.Recipients, ListedRecipient{Addr: s.Recipient, Orig: s.Original, BounceReason: s.Reason})
		listed[s.Offset], byAddr[s.Recipient] = true, true
	}
	// Status logs written with recipient offsets identify recipients by
	// offset; older or hand-written ones by address.
	byOffset := listedOffsets(deferred, bounced)
	for _, r := range m.Recipients {
		if r.Done || listed[r.Offset] || (!byOffset && byAddr[r.Addr]) {
			continue
		}
		l.Recipients = append(l.Recipients, ListedRecipient{Addr: r.Addr, Orig: r.Orig})
	}
	return l, nil
}

// listedOffsets reports whether the status logs carry recipient offsets
// (then offsets identify recipients; else addresses do).
func listedOffsets(logs ...[]Status) bool {
	for _, l := range logs {
		for _, s := range l {
			if s.Offset > 0 {
				return true
			}
		}
	}
	return false
}
