package queue

import (
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// Release moves a deferred message to incoming for immediate delivery and
// asks qmgr to unthrottle its destination (postqueue -i, flush service).
func (q *Queue) Release(id string) error {
	if !ValidID(id) {
		return fmt.Errorf("invalid queue ID %q", id)
	}
	if err := q.Move(id, Deferred, Incoming); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: not in the deferred queue", id)
		}
		return err
	}
	now := time.Now()
	_ = q.SetTimes(Incoming, id, now)
	if m, err := q.Read(Incoming, id); err == nil {
		return q.SetMode(Incoming, id, m.ForcedExpire, true)
	}
	return nil
}

// ReleaseAll releases every deferred message (postqueue -f). It returns how
// many were moved.
func (q *Queue) ReleaseAll() (int, error) {
	n := 0
	err := q.Walk(Deferred, func(e Entry) error {
		if q.Release(e.ID) == nil {
			n++
		}
		return nil
	}, nil)
	return n, err
}
