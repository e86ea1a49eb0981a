package qmgr

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"time"

	"mailsrv/maillog"
	"mailsrv/queue"
)

// scan is a pass over a queue directory, read a few names at a time so
// that a deferred queue of any size costs no memory to walk. A request
// during a pass runs the pass again afterwards.
type scan struct {
	queue string
	cur   *queue.Scanner // nil between passes
	again bool
	// warned is when a pass last reported a directory it could not
	// read: the error is logged at most once a minute, not on every
	// pass over incoming.
	warned time.Time
}

func (s *scan) start(q *queue.Queue) {
	if s.cur != nil {
		s.again = true
		return
	}
	s.cur = q.Scan(s.queue)
}

func (s *scan) next(q *queue.Queue, log *maillog.Logger) (string, bool) {
	for {
		if s.cur == nil {
			if !s.again {
				return "", false
			}
			s.again = false
			s.cur = q.Scan(s.queue)
		}
		if e, ok := s.cur.Next(); ok {
			return e.ID, true
		}
		if err := s.cur.Err(); err != nil && time.Since(s.warned) >= time.Minute {
			// Mail in a directory the daemon cannot read would wait
			// there forever without a word.
			log.Errorf("%v; the mail in it is not seen (run postfix set-permissions as root)", err)
			s.warned = time.Now()
		}
		s.cur.Close()
		s.cur = nil
		if !s.again {
			return "", false
		}
	}
}

// importOne takes one message into active, alternating between incoming
// and deferred so that neither starves the other. It reports whether it
// found anything to look at.
func (m *Manager) importOne(ctx context.Context) bool {
	for range 2 {
		m.turn = !m.turn
		s := &m.incoming
		if !m.turn {
			s = &m.deferred
		}
		for {
			if ctx.Err() != nil {
				return false
			}
			id, ok := s.next(m.q, m.log)
			if !ok {
				break
			}
			if m.activate(s.queue, id) {
				return true
			}
		}
	}
	return false
}

// activate moves one message to active and schedules its recipients.
func (m *Manager) activate(from, id string) bool {
	if _, busy := m.msgs[id]; busy {
		return false
	}
	path := m.q.Path(from, id)
	st, err := os.Stat(path)
	if err != nil {
		return false
	}
	now := time.Now()
	// Not ready (still written), or its retry time has not come.
	if st.Mode().Perm()&0o700 != 0o700 || st.ModTime().After(now.Add(time.Second)) {
		return false
	}
	if err := m.q.Move(id, from, queue.Active); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			m.log.Warnf("%s: cannot move to %s: %v", id, queue.Active, err)
		}
		return false
	}
	f, err := m.q.Open(queue.Active, id, true)
	if err != nil {
		var ce *queue.CorruptError
		switch {
		case errors.As(err, &ce):
			m.log.Warnf("%s: %s; moved to %s", id, ce.Reason, queue.Corrupt)
			if err := m.q.Quarantine(queue.Active, id); err != nil {
				m.log.Warnf("%s: cannot move to %s: %v", id, queue.Corrupt, err)
			}
		default:
			m.log.Warnf("%s: %v", id, err)
			_ = m.q.Move(id, queue.Active, from)
		}
		return false
	}
	if err := f.Lock(); err != nil {
		// postsuper or another delivery holds it: leave it be.
		f.Close()
		_ = m.q.Move(id, queue.Active, from)
		return false
	}
	// Record the retry time before the attempt: should the daemon die
	// during delivery, the message waits its backoff after the restart
	// instead of hammering a destination that may be what kills us.
	_ = m.q.SetTimes(queue.Active, id, now.Add(m.backoff(f.Message, now)))
	pending := 0
	for i := range f.Recipients {
		if !f.Recipients[i].Done {
			pending++
		}
	}
	// A message was tried before when it comes from deferred, or when
	// some of its recipients are done already: a crash put it back into
	// incoming after an attempt, and its bounce or trace log may hold
	// notices still to send.
	retry := from != queue.Incoming || f.Unthrottle || pending < len(f.Recipients)
	msg := &message{id: id, f: f, active: now, flush: f.Unthrottle, retry: retry}
	if f.Unthrottle {
		_ = m.q.SetMode(queue.Active, id, f.ForcedExpire, false)
	}
	if msg.retry {
		// The reasons of the last attempt go; this attempt writes new
		// ones. (New mail has none: no need to ask on the hot path.)
		os.Remove(m.q.Path(queue.DeferLog, id))
	}
	m.msgs[id] = msg
	m.log.Infof("%s: from=<%s>, size=%d, nrcpt=%d (queue active)", id, f.Sender, f.ContentSize, pending)
	m.schedule(msg)
	if msg.entries == 0 {
		m.finish(msg)
	}
	return true
}
