// Package flush is Postfix's flush(8), the fast flush service. For the
// destinations listed in fast_flush_domains it keeps, per destination, a
// log of the deferred messages that wait for it (queue_directory/flush/
// SITE, one queue ID a line): qmgr adds a message when it defers a
// recipient in that domain, and ETRN or postqueue -s SITE release exactly
// those messages for delivery now, however large the deferred queue.
//
// A log is append-only and emptied when its site is flushed; a message
// delivered meanwhile leaves a stale line, dropped the next time the log
// is flushed or, past a size, compacted. Postfix's fast_flush_refresh_time
// and fast_flush_purge_time maintenance is not needed for that and is not
// built.
package flush

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"mailsrv/queue"
)

// ErrDenied: the site is not in fast_flush_domains.
var ErrDenied = errors.New("not eligible for the fast flush service")

// compactAt is the size past which a log is rewritten without stale and
// repeated lines when a line is added.
const compactAt = 64 << 10

// Service keeps the per-destination logs of one queue.
type Service struct {
	q        *queue.Queue
	eligible func(site string) (bool, error)
	mu       sync.Mutex // one writer of the logs at a time (compaction, send)
}

// New returns the service for a queue; eligible says whether a site is in
// fast_flush_domains (a table lookup may fail).
func New(q *queue.Queue, eligible func(site string) (bool, error)) *Service {
	return &Service{q: q, eligible: eligible}
}

// LogName is the log file name of a site: the domain, lower case, with
// every character that is not a letter, digit, '-' or '.' turned into '_'
// (an address literal [1.2.3.4] becomes _1.2.3.4_).
func LogName(site string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, strings.ToLower(site))
}

func (s *Service) path(site string) string {
	return filepath.Join(s.q.Dir, "flush", LogName(site))
}

// check normalizes a site name and says whether it may have a log.
func (s *Service) check(site string) (string, error) {
	site = strings.ToLower(strings.TrimSuffix(site, "."))
	if site == "" || len(site) > 255 || strings.ContainsAny(site, "/\\ \t\r\n\x00") {
		return "", fmt.Errorf("bad site name %q", site)
	}
	ok, err := s.eligible(site)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", ErrDenied
	}
	return site, nil
}

// Add records that message id waits for site. A site that is not in
// fast_flush_domains is not an error: nothing is recorded.
func (s *Service) Add(site, id string) error {
	site, err := s.check(site)
	if errors.Is(err, ErrDenied) {
		return nil
	}
	if err != nil {
		return err
	}
	if !queue.ValidID(id) {
		return fmt.Errorf("bad queue ID %q", id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.OpenFile(s.path(site), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = io.WriteString(f, id+"\n")
	st, serr := f.Stat()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && serr == nil && st.Size() > compactAt {
		err = s.compact(site)
	}
	return err
}

// ids reads a log: each queue ID once, in order.
func (s *Service) ids(site string) ([]string, error) {
	f, err := os.Open(s.path(site))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id := strings.TrimSpace(sc.Text())
		if !seen[id] && queue.ValidID(id) {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, sc.Err()
}

// compact rewrites a log with only the messages still deferred, each
// once. Called with s.mu held.
func (s *Service) compact(site string) error {
	ids, err := s.ids(site)
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, id := range ids {
		if _, err := os.Stat(s.q.Path(queue.Deferred, id)); err == nil {
			b.WriteString(id + "\n")
		}
	}
	tmp := s.path(site) + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.path(site))
}

// SendSite releases the deferred messages logged for site to incoming
// for delivery now, marked so that qmgr and the delivery agents try the
// destination at once, and empties the log (a message deferred again is
// logged again). It returns how many messages it released, and ErrDenied
// for a site not in fast_flush_domains. The caller wakes qmgr.
func (s *Service) SendSite(site string) (int, error) {
	site, err := s.check(site)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ids, err := s.ids(site)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		if s.q.Release(id) == nil {
			n++
		}
	}
	if err := os.Truncate(s.path(site), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return n, err
	}
	return n, nil
}
