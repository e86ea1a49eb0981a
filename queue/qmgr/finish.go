package qmgr

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"time"

	"mailsrv/queue"
)

// finish decides a message's fate once all its deliveries are done.
func (m *Manager) finish(msg *message) {
	delete(m.msgs, msg.id)
	f := msg.f
	defer f.Close()
	now := time.Now()
	id := msg.id

	// Recipients that bounced (now, or in an attempt whose notice could
	// not be sent): tell the sender, then forget the log.
	if msg.bounced || msg.retry && exists(m.q.Path(queue.BounceLog, id)) {
		if err := m.notify(f, queue.BounceLog, false); err != nil {
			m.log.Warnf("%s: cannot send the non-delivery notification, will retry: %v", id, err)
			msg.deferred = true
		} else {
			os.Remove(m.q.Path(queue.BounceLog, id))
		}
	}
	undone := false
	for _, r := range f.Recipients {
		if !r.Done {
			undone = true
		}
	}
	// Successes are reported once the message is done with, as one
	// notice (expiry below reports them too).
	if !undone || m.expired(f, now) {
		if msg.traced || msg.retry && exists(m.q.Path(queue.TraceLog, id)) {
			if err := m.success(f); err != nil {
				m.log.Warnf("%s: cannot send the delivery status notification, will retry: %v", id, err)
				msg.deferred = true
			} else {
				os.Remove(m.q.Path(queue.TraceLog, id))
			}
		}
	}
	if !msg.deferred && !undone {
		// New mail delivered at the first attempt has no status logs:
		// no unlinks for them.
		logs := msg.retry || msg.bounced || msg.traced
		if err := m.q.Retire(f, logs); err != nil {
			m.log.Warnf("%s: remove: %v", id, err)
			return
		}
		m.log.Infof("%s: removed", id)
		return
	}
	if undone && m.expired(f, now) {
		if err := m.notify(f, queue.DeferLog, true); err != nil {
			m.log.Warnf("%s: cannot return the expired message to its sender, will retry: %v", id, err)
		} else {
			m.log.Infof("%s: from=<%s>, status=expired, returned to sender", id, f.Sender)
			if err := m.q.Remove(queue.Active, id); err == nil {
				m.log.Infof("%s: removed", id)
			}
			return
		}
	}
	if undone && !f.WarnAt.IsZero() && !now.Before(f.WarnAt) {
		if err := m.notify(f, queue.DeferLog, false); err == nil {
			_ = f.SetWarnTime(time.Time{})
		}
	}
	next := now.Add(m.backoff(f.Message, now))
	if err := m.q.SetTimes(queue.Active, id, next); err != nil {
		m.log.Warnf("%s: cannot set the retry time: %v", id, err)
	}
	if err := m.q.Move(id, queue.Active, queue.Deferred); err != nil {
		m.log.Warnf("%s: cannot move to %s: %v", id, queue.Deferred, err)
		return
	}
	// Only now that it waits in deferred may ETRN find the message:
	// a flush that read the log while it was still in active would
	// skip it and empty the log.
	for site := range msg.flushed {
		if err := m.o.Flush.Add(site, id); err != nil {
			m.log.Warnf("%s: flush service failure: %v", id, err)
		}
	}
}

// notify has the bounce service send a notice from a status log: the
// bounce log (failed recipients), or the defer log (expired: failed;
// otherwise a delay warning).
func (m *Manager) notify(f *queue.File, log string, expired bool) error {
	entries, err := m.q.ReadStatus(log, f.ID)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if log == queue.DeferLog {
		// Only recipients still to do (the log may repeat one).
		undone := map[int64]bool{}
		for _, r := range f.Recipients {
			if !r.Done {
				undone[r.Offset] = true
			}
		}
		entries = slices.DeleteFunc(entries, func(s queue.Status) bool {
			ok := undone[s.Offset]
			delete(undone, s.Offset)
			return !ok
		})
		for _, r := range f.Recipients {
			if undone[r.Offset] {
				// Tried by no agent (e.g. a previous stop): say so.
				entries = append(entries, queue.Status{Recipient: r.Addr, Original: r.Orig, Offset: r.Offset,
					ORCPT: r.ORCPT, Notify: r.Notify, Status: "4.0.0", Reason: "message could not be delivered in time"})
			}
		}
		for i := range entries {
			if expired {
				entries[i].Action = "failed"
			} else {
				entries[i].Action = "delayed"
			}
		}
	}
	if m.o.Notify == nil {
		return errors.New("no bounce service")
	}
	if log == queue.DeferLog && !expired {
		return m.o.Notify.DelayWarning(f, entries)
	}
	return m.o.Notify.NonDelivery(f, entries)
}

// success has the bounce service report the trace log's deliveries.
func (m *Manager) success(f *queue.File) error {
	entries, err := m.q.ReadStatus(queue.TraceLog, f.ID)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	if m.o.Notify == nil {
		return errors.New("no bounce service")
	}
	return m.o.Notify.Success(f, entries, wantsReport(f))
}

// expired reports whether a message has been in the queue longer than its
// lifetime (or postsuper -e/-f asked for it).
func (m *Manager) expired(f *queue.File, now time.Time) bool {
	if f.ForcedExpire {
		return true
	}
	life := m.p.MaximalQueueLifetime
	if f.Sender == "" {
		life = min(m.p.BounceQueueLifetime, life)
	}
	return !now.Before(created(f.Message).Add(life))
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func created(msg *queue.Message) time.Time {
	if !msg.Create.IsZero() {
		return msg.Create
	}
	return msg.Arrival
}

// backoff is Postfix's retry delay: the message's age, clamped between
// minimal_backoff_time and maximal_backoff_time, so that the intervals
// roughly double until the cap.
func (m *Manager) backoff(msg *queue.Message, now time.Time) time.Duration {
	lo, hi := m.p.MinimalBackoffTime, m.p.MaximalBackoffTime
	hi = max(hi, lo)
	return min(max(now.Sub(created(msg)), lo), hi)
}
