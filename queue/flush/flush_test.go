package flush

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailsrv/queue"
)

func newService(t *testing.T) (*Service, *queue.Queue) {
	t.Helper()
	dir := t.TempDir()
	if err := queue.Create(dir, queue.Owner{UID: -1, GID: -1, SetgidGID: -1}); err != nil {
		t.Fatal(err)
	}
	q := queue.New(dir, []string{queue.Deferred}, 1)
	return New(q, func(site string) (bool, error) {
		if site == "broken.test" {
			return false, errors.New("table lookup failed")
		}
		return site == "backup.test" || strings.HasSuffix(site, ".backup.test"), nil
	}), q
}

func deferred(t *testing.T, q *queue.Queue, rcpt string) string {
	t.Helper()
	id, err := q.Inject(queue.Deferred, queue.Envelope{Sender: "s@example.test", Recipients: []queue.Recipient{{Addr: rcpt}}}, strings.NewReader("Subject: x\n\nx\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := q.SetTimes(queue.Deferred, id, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestSendSite: a site's logged messages, and only those, go back to
// incoming marked for delivery now; the log is emptied; a site outside
// fast_flush_domains is refused and gets no log.
func TestSendSite(t *testing.T) {
	t.Parallel()
	s, q := newService(t)
	a := deferred(t, q, "a@backup.test")
	b := deferred(t, q, "b@mx.backup.test")
	other := deferred(t, q, "c@elsewhere.test")
	for _, add := range [][2]string{{"backup.test", a}, {"BACKUP.test.", a}, {"mx.backup.test", b}, {"elsewhere.test", other}} {
		if err := s.Add(add[0], add[1]); err != nil {
			t.Fatalf("Add(%s): %v", add[0], err)
		}
	}
	if _, err := os.Stat(filepath.Join(q.Dir, "flush", "elsewhere.test")); !os.IsNotExist(err) {
		t.Errorf("a log for a site that is not eligible: %v", err)
	}
	if err := s.Add("broken.test", a); err == nil {
		t.Error("a failed eligibility lookup is not an error")
	}
	if _, err := s.SendSite("elsewhere.test"); !errors.Is(err, ErrDenied) {
		t.Errorf("SendSite(elsewhere.test) = %v, want ErrDenied", err)
	}
	n, err := s.SendSite("backup.test")
	if err != nil || n != 1 {
		t.Fatalf("SendSite(backup.test) = %d, %v; want 1 message", n, err)
	}
	m, err := q.Read(queue.Incoming, a)
	if err != nil || !m.Unthrottle {
		t.Errorf("%s in incoming: %v (unthrottle %v)", a, err, m != nil && m.Unthrottle)
	}
	for _, id := range []string{b, other} {
		if _, err := q.Read(queue.Deferred, id); err != nil {
			t.Errorf("%s left deferred: %v", id, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(q.Dir, "flush", "backup.test")); len(b) != 0 {
		t.Errorf("log not emptied: %q", b)
	}
	if n, err := s.SendSite("backup.test"); n != 0 || err != nil {
		t.Errorf("second SendSite = %d, %v", n, err)
	}
	for _, bad := range []string{"", "a/b", "x y", strings.Repeat("a", 300)} {
		if _, err := s.SendSite(bad); err == nil || errors.Is(err, ErrDenied) {
			t.Errorf("SendSite(%q) = %v, want a syntax error", bad, err)
		}
	}
}

// TestCompaction: a log past its size limit keeps each still-deferred
// message once and drops the others.
func TestCompaction(t *testing.T) {
	t.Parallel()
	s, q := newService(t)
	keep := deferred(t, q, "k@backup.test")
	gone := deferred(t, q, "g@backup.test")
	if err := q.Remove(queue.Deferred, gone); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < compactAt/len(keep)+10; i++ {
		id := keep
		if i%2 == 1 {
			id = gone
		}
		if err := s.Add("backup.test", id); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(q.Dir, "flush", "backup.test"))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > compactAt {
		t.Errorf("log of %d bytes: never compacted", len(b))
	}
	if !strings.HasPrefix(string(b), keep+"\n"+keep+"\n") && !strings.HasPrefix(string(b), keep+"\n"+gone+"\n") {
		t.Errorf("compacted log starts %.60q", b)
	}
	s.mu.Lock()
	err = s.compact("backup.test")
	s.mu.Unlock()
	b, _ = os.ReadFile(filepath.Join(q.Dir, "flush", "backup.test"))
	if err != nil || string(b) != keep+"\n" {
		t.Errorf("compacted log %q (%v), want only %s", b, err, keep)
	}
}

func TestLogName(t *testing.T) {
	for in, want := range map[string]string{"Example.COM": "example.com", "[1.2.3.4]": "_1.2.3.4_", "a_b+c": "a_b_c"} {
		if got := LogName(in); got != want {
			t.Errorf("LogName(%q) = %q, want %q", in, got, want)
		}
	}
}
