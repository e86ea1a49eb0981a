package queue

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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

// FlushLogName is the fast-flush log file name of a site: the domain with
// every character that is not a letter, digit, '-' or '.' turned into '_'.
func FlushLogName(site string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, strings.ToLower(site))
}

// AddFlushLog records that a deferred message waits for site (written by
// the smtp client when it defers mail for a fast_flush_domains site).
func (q *Queue) AddFlushLog(site, id string) error {
	f, err := os.OpenFile(filepath.Join(q.Dir, "flush", FlushLogName(site)), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintln(f, id)
	return err
}

// ReleaseSite releases the deferred mail recorded for site (postqueue -s,
// ETRN) and empties its log. It returns how many messages were moved.
func (q *Queue) ReleaseSite(site string) (int, error) {
	path := filepath.Join(q.Dir, "flush", FlushLogName(site))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	seen := map[string]bool{}
	for sc.Scan() {
		id := strings.TrimSpace(sc.Text())
		if seen[id] || !ValidID(id) {
			continue
		}
		seen[id] = true
		if q.Release(id) == nil {
			n++
		}
	}
	return n, f.Truncate(0)
}
