package qmgr

import (
	"math"
	"strconv"
	"strings"
	"time"

	"mailsrv/config"
	"mailsrv/outcome"
)

// kill suspends a destination: its queued entries are deferred at once,
// and it takes no new mail until minimal_backoff_time has passed (or a
// postqueue -f).
func (m *Manager) kill(t *transport, d *dest, why outcome.Status) {
	d.dead = true
	d.reviveAt = time.Now().Add(m.p.MinimalBackoffTime)
	why.Text = "delivery temporarily suspended: " + why.Text
	if !why.Temporary() {
		why.DSN = "4.4.1"
	}
	why.Relay = "none"
	d.deadStatus = why
	entries := d.entries
	d.entries = nil
	for _, e := range entries {
		for _, r := range e.rcpts {
			m.qmgrReport(e.msg, r, deferred, why)
		}
		e.msg.entries--
		if e.msg.entries == 0 {
			m.finish(e.msg)
		}
	}
}

// nextRevive revives destinations whose suspension is over and returns
// how long until the next one is due.
func (m *Manager) nextRevive() time.Duration {
	now := time.Now()
	next := time.Hour
	for _, t := range m.transports {
		for _, d := range t.dests {
			if !d.dead {
				continue
			}
			if !now.Before(d.reviveAt) {
				d.revive(t)
				t.gc(d)
				continue
			}
			next = min(next, d.reviveAt.Sub(now))
		}
	}
	return next
}

// entry is up to a recipient limit of one message's recipients for one
// destination.
type entry struct {
	msg     *message
	nexthop string
	rcpts   []*Recipient
}

// transport is one transport's scheduling state.
type transport struct {
	name        string
	c           chan<- *Delivery
	limit       int
	busy        int
	rcptLimit   int
	concLimit   int
	initConc    int
	cohortLimit float64
	pos, neg    func(n int) float64
	dests       map[string]*dest
	ready       []*dest // destinations with queued entries, in turn
}

func newTransport(name string, t Transport, p *config.Params) *transport {
	fb := func(suffix string) func(int) float64 {
		v, ok := p.Lookup(name + "_" + suffix)
		if !ok {
			v, _ = p.Lookup("default_" + suffix)
		}
		return feedback(v)
	}
	tr := &transport{
		name: name, c: t.C, limit: max(t.Limit, 1),
		rcptLimit:   p.TransportInt(name, "destination_recipient_limit"),
		concLimit:   p.TransportInt(name, "destination_concurrency_limit"),
		initConc:    max(p.InitialDestinationConcurrency, 1),
		cohortLimit: float64(max(p.TransportInt(name, "destination_concurrency_failed_cohort_limit"), 1)),
		pos:         fb("destination_concurrency_positive_feedback"),
		neg:         fb("destination_concurrency_negative_feedback"),
		dests:       map[string]*dest{},
	}
	if tr.concLimit <= 0 {
		tr.concLimit = tr.limit
	}
	if tr.rcptLimit <= 0 {
		tr.rcptLimit = math.MaxInt32
	}
	return tr
}

// feedback parses a concurrency feedback setting: a number, a fraction,
// 1/concurrency or 1/sqrt_concurrency.
func feedback(v string) func(int) float64 {
	v = strings.TrimSpace(v)
	switch v {
	case "1/concurrency", "1/window":
		return func(n int) float64 { return 1 / float64(max(n, 1)) }
	case "1/sqrt_concurrency", "1/sqrt_window":
		return func(n int) float64 { return 1 / math.Sqrt(float64(max(n, 1))) }
	}
	x := 1.0
	if a, b, ok := strings.Cut(v, "/"); ok {
		n, err1 := strconv.ParseFloat(a, 64)
		d, err2 := strconv.ParseFloat(b, 64)
		if err1 == nil && err2 == nil && d > 0 {
			x = n / d
		}
	} else if f, err := strconv.ParseFloat(v, 64); err == nil {
		x = f
	}
	return func(int) float64 { return x }
}

// dest returns (creating) a destination queue.
func (t *transport) dest(name string) *dest {
	d := t.dests[name]
	if d == nil {
		d = &dest{name: name, window: min(t.initConc, t.concLimit)}
		t.dests[name] = d
	}
	return d
}

// list puts a destination with work in the dispatch ring.
func (t *transport) list(d *dest) {
	if !d.listed && len(d.entries) > 0 {
		d.listed = true
		t.ready = append(t.ready, d)
	}
}

// gc forgets an idle, healthy destination at its initial state.
func (t *transport) gc(d *dest) {
	if d.busy == 0 && len(d.entries) == 0 && !d.dead && !d.listed {
		delete(t.dests, d.name)
	}
}

// dest is a per-destination queue with its concurrency window.
type dest struct {
	name       string
	entries    []*entry
	busy       int
	window     int
	success    float64
	failure    float64
	cohorts    float64
	dead       bool
	reviveAt   time.Time
	deadStatus outcome.Status
	listed     bool
}

// positive applies positive feedback, as Postfix's qmgr does: grow the window by
// one per whole unit of success, while it is actually being used.
func (d *dest) positive(t *transport) {
	d.cohorts = 0
	if d.window >= t.concLimit || d.window >= d.busy+1+t.initConc {
		return
	}
	d.success += t.pos(d.window)
	for d.success >= 1 {
		d.window++
		d.success--
		d.failure = 0
	}
	d.window = min(d.window, t.concLimit)
}

// negative applies negative feedback and reports whether the destination
// is now dead (failed_cohort_limit whole cohorts failed).
func (d *dest) negative(t *transport) bool {
	d.cohorts += 1 / float64(max(d.window, 1))
	if d.cohorts >= t.cohortLimit {
		return true
	}
	d.failure -= t.neg(d.window)
	for d.failure < 0 {
		d.window--
		d.failure++
		d.success = 0
	}
	d.window = max(d.window, 1)
	return false
}

func (d *dest) revive(t *transport) {
	d.dead = false
	d.window = min(t.initConc, t.concLimit)
	d.success, d.failure, d.cohorts = 0, 0, 0
}
