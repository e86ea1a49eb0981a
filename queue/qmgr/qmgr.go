// Package qmgr is Postfix's queue manager (nqmgr): it owns the active
// queue. It takes messages from incoming (when cleanup says there is new
// mail, and at start) and from deferred (every queue_run_delay, and on
// postqueue -f), fairly alternating between the two; resolves each
// recipient to (transport, nexthop) through trivial-rewrite; groups the
// recipients per transport and destination; hands deliveries to the
// transports' worker pools over their channels, with Postfix's
// per-destination concurrency window (slow start, feedback, dead
// destinations); and when every recipient of a message has been tried,
// removes it, returns it to its sender (bounces, expiry) or puts it in
// deferred with Postfix's backoff.
//
// Delivery agents (delivery/...) receive a *Delivery (a Request and a
// Reporter) and report each recipient through it; qmgr's reporter logs
// the Postfix delivery line, writes the per-recipient status logs and
// marks recipients done in the queue file, so a crash repeats only what
// was not finished.
//
// qmgr.go has the manager's loop; scan.go reads incoming and deferred;
// schedule.go resolves, groups and hands out deliveries; destination.go
// keeps the per-destination concurrency windows; finish.go settles a
// message; delivery.go, report.go and agent.go are the agents' side.
//
// Left out on purpose: Postfix's preemptive job scheduler; jobs are
// served FIFO per destination with round-robin over destinations, which
// SCHEDULER_README calls an acceptable simplification. All recipients of
// a message are loaded at once (no recipient refill batches).
package qmgr

import (
	"context"
	"errors"
	"os"
	"slices"
	"time"

	"mailsrv/config"
	"mailsrv/maillog"
	"mailsrv/queue"
)

// Route is where trivial-rewrite sends a recipient.
type Route struct {
	Transport string
	Nexthop   string
	Recipient string
	Local     bool   // the address class is local (mydestination)
	Error     string // the address cannot be delivered as written
}

// Resolver is trivial-rewrite's resolve service. An error means a table
// could not be read: the recipient is deferred.
type Resolver func(addr, sender string) (Route, error)

// Transport is a delivery service as qmgr sees it: the channel its worker
// pool reads and the pool's size.
type Transport struct {
	C     chan<- *Delivery
	Limit int
}

// Notifier is the bounce service: it tells senders about mail that failed
// or is late. An error leaves the message in the queue to try again.
type Notifier interface {
	// NonDelivery returns failed recipients to the sender (bounced now,
	// or deferred until the queue lifetime ran out).
	NonDelivery(f *queue.File, failed []queue.Status) error
	// DelayWarning warns the sender that recipients are still deferred.
	DelayWarning(f *queue.File, delayed []queue.Status) error
	// Success reports delivered recipients: those with NOTIFY=SUCCESS,
	// or all of them when the sender requested a report (sendmail -v).
	Success(f *queue.File, delivered []queue.Status, requested bool) error
}

// Options configure a queue manager.
type Options struct {
	Params     *config.Params
	Queue      *queue.Queue
	Log        *maillog.Logger
	Resolve    Resolver
	Transports map[string]Transport
	Notify     Notifier
	// Wake receives a value when incoming may hold new mail (cleanup,
	// postqueue -f, postsuper).
	Wake <-chan struct{}
	// Requeued is called when a stopping instance has put messages back
	// in incoming, so that its successor (after a reload) looks at once.
	Requeued func()
	// Hard ends when work in progress must be abandoned (stop deadline).
	Hard context.Context
	// Flush is the fast flush service (nil: none): told of every
	// domain a message was deferred for, so that ETRN and postqueue
	// -s can release it.
	Flush FlushLog
}

// FlushLog records which deferred messages wait for which destination
// (Postfix's flush_add). It decides itself whether a site is eligible.
type FlushLog interface {
	Add(site, id string) error
}

// Manager is one queue manager instance.
type Manager struct {
	o          Options
	p          *config.Params
	q          *queue.Queue
	log        *maillog.Logger
	transports map[string]*transport
	msgs       map[string]*message
	done       chan *Delivery
	incoming   scan
	deferred   scan
	turn       bool // which scan imports next
	inflight   int
	warned     map[string]bool // unavailable transports already logged
}

// message is a message in the active queue.
type message struct {
	id       string
	f        *queue.File
	active   time.Time
	entries  int  // deliveries queued or in flight
	deferred bool // a recipient was deferred in this pass
	bounced  bool // a recipient was bounced in this pass
	traced   bool // a success went to the trace log in this pass
	flush    bool // released by postqueue -f/-i/-s: deliver defer_transports too
	retry    bool // tried before: it may have status logs from then
	// flushed are the domains of recipients deferred in this pass: the
	// flush service logs the message for them.
	flushed map[string]bool
}

// New checks the options and returns a manager.
func New(o Options) (*Manager, error) {
	if o.Params == nil || o.Queue == nil || o.Log == nil || o.Resolve == nil {
		return nil, errors.New("qmgr: incomplete options")
	}
	if o.Hard == nil {
		o.Hard = context.Background()
	}
	m := &Manager{o: o, p: o.Params, q: o.Queue, log: o.Log,
		transports: map[string]*transport{}, msgs: map[string]*message{}, warned: map[string]bool{},
		incoming: scan{queue: queue.Incoming}, deferred: scan{queue: queue.Deferred}}
	capacity := 16
	for name, t := range o.Transports {
		m.transports[name] = newTransport(name, t, o.Params)
		capacity += max(t.Limit, 1)
	}
	// Every delivery in flight can report back without blocking, even
	// after this instance has stopped reading.
	m.done = make(chan *Delivery, capacity)
	return m, nil
}

// Run schedules deliveries until ctx ends, then stops taking new work,
// waits for deliveries in progress (until Hard ends) and leaves the queue
// consistent for its successor.
func (m *Manager) Run(ctx context.Context) error {
	m.reclaim()
	m.incoming.start(m.q)
	m.deferred.start(m.q)
	delay := m.p.QueueRunDelay
	if delay <= 0 {
		delay = 300 * time.Second
	}
	ticker := time.NewTicker(delay)
	defer ticker.Stop()
	revive := time.NewTimer(time.Hour)
	defer revive.Stop()
	for ctx.Err() == nil {
		m.drain()
		m.dispatch(ctx)
		if len(m.msgs) < max(m.p.QmgrMessageActiveLimit, 1) && m.importOne(ctx) {
			continue
		}
		revive.Reset(m.nextRevive())
		select {
		case d := <-m.done:
			m.completed(d)
		case <-m.o.Wake:
			m.incoming.start(m.q)
		case <-ticker.C:
			m.deferred.start(m.q)
		case <-revive.C:
		case <-ctx.Done():
		}
	}
	m.stop()
	return nil
}

// drain handles every delivery result waiting, without blocking.
func (m *Manager) drain() {
	for {
		select {
		case d := <-m.done:
			m.completed(d)
		default:
			return
		}
	}
}

// stop waits for deliveries in flight, then finishes the messages that
// were fully tried and hands the others back to incoming.
func (m *Manager) stop() {
	for m.inflight > 0 {
		select {
		case d := <-m.done:
			m.completed(d)
		case <-m.o.Hard.Done():
			m.log.Warnf("stopping with %d deliveries in progress; their messages stay in the active queue until the next start", m.inflight)
			return
		}
	}
	requeued := false
	for id, msg := range m.msgs {
		// Entries not yet handed out: nothing was attempted for them.
		for _, t := range m.transports {
			for _, d := range t.dests {
				d.entries = slices.DeleteFunc(d.entries, func(e *entry) bool { return e.msg == msg })
			}
		}
		if err := m.q.SetTimes(queue.Active, id, time.Now()); err == nil {
			if err := m.q.Move(id, queue.Active, queue.Incoming); err != nil {
				m.log.Warnf("%s: cannot move back to incoming: %v", id, err)
			}
		}
		msg.f.Close()
		delete(m.msgs, id)
		requeued = true
	}
	if requeued && m.o.Requeued != nil {
		m.o.Requeued()
	}
}

// reclaim takes back messages that a previous instance of qmgr left in
// active (it failed): those that no delivery holds locked go back to
// incoming, or to deferred when their recorded retry time is still ahead.
func (m *Manager) reclaim() {
	now := time.Now()
	_ = m.q.Walk(queue.Active, func(e queue.Entry) error {
		f, err := m.q.Open(queue.Active, e.ID, false)
		if err != nil {
			return nil
		}
		defer f.Close()
		if f.Lock() != nil {
			return nil // a delivery of the old instance still runs
		}
		to := queue.Incoming
		if st, err := os.Stat(e.Path); err == nil && st.ModTime().After(now.Add(time.Second)) {
			to = queue.Deferred
		}
		if err := m.q.Move(e.ID, queue.Active, to); err != nil {
			m.log.Warnf("%s: cannot move back to %s: %v", e.ID, to, err)
		}
		return nil
	}, nil)
}
