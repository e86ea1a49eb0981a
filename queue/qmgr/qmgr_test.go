package qmgr

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailsrv/config"
	"mailsrv/maillog"
	"mailsrv/outcome"
	"mailsrv/queue"
)

func TestFormatDelay(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0"}, {3 * time.Millisecond, "0"}, {10 * time.Millisecond, "0.01"}, {523 * time.Millisecond, "0.52"},
		{100 * time.Millisecond, "0.1"}, {1230 * time.Millisecond, "1.2"}, {time.Second, "1"},
		{9990 * time.Millisecond, "9.9"}, {10 * time.Second, "10"}, {301500 * time.Millisecond, "301"}, {-time.Second, "0"},
	} {
		if got := FormatDelay(c.d, 2); got != c.want {
			t.Errorf("FormatDelay(%s) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestFeedback(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		spec string
		n    int
		want float64
	}{
		{"1", 7, 1}, {"1/4", 7, 0.25}, {"1/concurrency", 4, 0.25}, {"1/sqrt_concurrency", 16, 0.25}, {"junk", 3, 1},
	} {
		if got := feedback(c.spec)(c.n); got != c.want {
			t.Errorf("feedback(%q)(%d) = %v, want %v", c.spec, c.n, got, c.want)
		}
	}
}

// TestWindow follows Postfix's classic behaviour: +1 per good delivery
// while the window is used, up to the limit; one failed cohort kills.
func TestWindow(t *testing.T) {
	t.Parallel()
	tr := &transport{concLimit: 8, initConc: 2, cohortLimit: 1, pos: feedback("1"), neg: feedback("1")}
	d := &dest{window: 2}
	d.busy = 5
	for range 10 {
		d.positive(tr)
	}
	if d.window != 8 {
		t.Errorf("window after 10 good deliveries = %d, want the limit 8", d.window)
	}
	idle := &dest{window: 2}
	for range 10 {
		idle.positive(tr)
	}
	if idle.window != 3 {
		t.Errorf("an idle destination's window grew to %d; it may only grow to busy+1+initial = 3", idle.window)
	}
	if d.negative(tr) || d.window != 7 {
		t.Errorf("after one failure: window %d, want 7, not dead", d.window)
	}
	dead := false
	for i := 0; i < 20 && !dead; i++ {
		dead = d.negative(tr)
	}
	if !dead {
		t.Error("a destination that keeps failing is never declared dead")
	}
}

func testParams(t *testing.T, extra string) *config.Params {
	t.Helper()
	cfg, err := config.Parse("/etc/mailsrv/mailsrv.toml", []byte(`
queue_directory = "`+t.TempDir()+`"
myhostname = "mx.example.test"
mydomain = "example.test"
`+extra))
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Params
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestScheduler runs a manager against fake agents: per-destination
// concurrency stays within the window, recipients are grouped up to the
// recipient limit, a destination that keeps failing at the site level is
// suspended (the rest of its mail deferred without an attempt), and a
// message with everything done is removed.
func TestScheduler(t *testing.T) {
	t.Parallel()
	p := testParams(t, `
initial_destination_concurrency = 2
default_destination_concurrency_limit = 3
default_destination_recipient_limit = 2
minimal_backoff_time = "1h"
`)
	q := queue.New(p.QueueDirectory, []string{queue.Deferred, queue.DeferLog}, 1)
	if err := queue.Create(p.QueueDirectory, queue.Owner{UID: -1, GID: -1, SetgidGID: -1}); err != nil {
		t.Fatal(err)
	}
	var busy, peak atomic.Int32
	var mu sync.Mutex
	batches := map[string][]int{}
	good := make(chan *Delivery, 10)
	agent := AgentFunc(func(d *Delivery) {
		if d.Nexthop == "dead.example" {
			d.SiteFailure(outcome.Status{DSN: "4.4.1", Text: "connect to dead.example[192.0.2.1]:25: Connection refused"})
			return
		}
		n := busy.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		batches[d.ID] = append(batches[d.ID], len(d.Recipients))
		mu.Unlock()
		for _, r := range d.Recipients {
			d.Sent(r, outcome.Status{Text: "ok", Relay: "fake"})
		}
		busy.Add(-1)
	})
	var lb logBuf
	log := maillog.New(&lb, "mx").Role("mailsrv", "qmgr")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ServeAgent(ctx, good, 10, maillog.New(&lb, "mx").Role("mailsrv", "fake"), agent)
	wake := make(chan struct{}, 1)
	m, err := New(Options{
		Params: p, Queue: q, Log: log, Wake: wake,
		Resolve: func(addr, sender string) (Route, error) {
			_, domain, _ := strings.Cut(addr, "@")
			return Route{Transport: "fake", Nexthop: domain, Recipient: addr}, nil
		},
		Transports: map[string]Transport{"fake": {C: good, Limit: 10}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	inject := func(rcpts ...string) string {
		var rs []queue.Recipient
		for _, r := range rcpts {
			rs = append(rs, queue.Recipient{Addr: r})
		}
		id, err := q.Inject(queue.Incoming, queue.Envelope{Sender: "s@example.test", Recipients: rs}, strings.NewReader("Subject: x\n\nbody\n"))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	big := inject("a@one.example", "b@one.example", "c@one.example", "d@one.example", "e@one.example")
	for i := range 8 {
		ids = append(ids, inject(fmt.Sprintf("u%d@one.example", i)))
	}
	for range 6 {
		ids = append(ids, inject("x@dead.example"))
	}
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := 0
		for _, name := range []string{queue.Incoming, queue.Active} {
			_ = q.Walk(name, func(queue.Entry) error { n++; return nil }, nil)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still in incoming/active:\n%s", n, lb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if pk := peak.Load(); pk > 3 {
		t.Errorf("%d deliveries at once to one destination; the concurrency limit is 3", pk)
	}
	mu.Lock()
	sizes := batches[big]
	slices.Sort(sizes)
	if got := fmt.Sprint(sizes); got != "[1 2 2]" {
		t.Errorf("recipient batches of the 5-recipient message: %s, want two of 2 and one of 1", got)
	}
	mu.Unlock()
	out := lb.String()
	if n := strings.Count(out, "relay=none"); n != 6 {
		t.Errorf("%d deferrals for dead.example, want 6:\n%s", n, out)
	}
	if !strings.Contains(out, "status=deferred (delivery temporarily suspended: connect to dead.example[192.0.2.1]:25: Connection refused)") {
		t.Errorf("no suspended-destination deferral:\n%s", out)
	}
	attempts := strings.Count(out, "mailsrv/fake[") - strings.Count(out, "status=sent")
	if attempts >= 6 {
		t.Errorf("%d attempts on the dead destination: qmgr should stop trying once it is dead", attempts)
	}
	if strings.Count(out, ": removed") != 9 {
		t.Errorf("want 9 removed messages:\n%s", out)
	}
	n := 0
	_ = q.Walk(queue.Deferred, func(e queue.Entry) error { n++; return nil }, nil)
	if n != 6 {
		t.Errorf("%d messages deferred, want 6", n)
	}

}

// TestDeferTransportsAndDoubleBounce: mail for a transport in
// defer_transports waits until a flush (postqueue -f) releases it; mail to
// double-bounce@ is discarded by qmgr itself.
func TestDeferTransportsAndDoubleBounce(t *testing.T) {
	t.Parallel()
	p := testParams(t, `
defer_transports = ["fake"]
minimal_backoff_time = "1h"
`)
	q := queue.New(p.QueueDirectory, []string{queue.Deferred, queue.DeferLog}, 1)
	if err := queue.Create(p.QueueDirectory, queue.Owner{UID: -1, GID: -1, SetgidGID: -1}); err != nil {
		t.Fatal(err)
	}
	c := make(chan *Delivery, 4)
	var lb logBuf
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ServeAgent(ctx, c, 4, maillog.New(&lb, "mx").Role("mailsrv", "fake"), AgentFunc(func(d *Delivery) {
		for _, r := range d.Recipients {
			d.Sent(r, outcome.Status{Text: "ok", Relay: "fake"})
		}
	}))
	wake := make(chan struct{}, 1)
	m, err := New(Options{
		Params: p, Queue: q, Log: maillog.New(&lb, "mx").Role("mailsrv", "qmgr"), Wake: wake,
		Resolve: func(addr, sender string) (Route, error) {
			return Route{Transport: "fake", Nexthop: "x", Recipient: addr, Local: strings.HasSuffix(addr, "@mx.example.test")}, nil
		},
		Transports: map[string]Transport{"fake": {C: c, Limit: 4}},
	})
	if err != nil {
		t.Fatal(err)
	}
	held, err := q.Inject(queue.Incoming, queue.Envelope{Sender: "s@example.test", Recipients: []queue.Recipient{{Addr: "r@example.net"}}}, strings.NewReader("x\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Inject(queue.Incoming, queue.Envelope{Sender: "", Recipients: []queue.Recipient{{Addr: "double-bounce@mx.example.test"}}}, strings.NewReader("x\n")); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s:\n%s", what, lb.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("the deferral", func() bool { return strings.Contains(lb.String(), "status=deferred (deferred transport)") })
	waitFor("the discard", func() bool {
		return regexp.MustCompile(`to=<double-bounce@mx.example.test>, relay=none, delay=[\d.]+, delays=[\d./]+, dsn=2.0.0, status=sent \(undeliverable postmaster notification discarded\)`).MatchString(lb.String())
	})
	waitFor("the held message in deferred", func() bool {
		_, err := q.Read(queue.Deferred, held)
		return err == nil
	})
	// postqueue -f: released with the unthrottle mark, then a wakeup.
	if _, err := q.ReleaseAll(); err != nil {
		t.Fatal(err)
	}
	wake <- struct{}{}
	waitFor("the flushed delivery", func() bool { return strings.Contains(lb.String(), "to=<r@example.net>, relay=fake") })
	cancel()
	<-done
}
