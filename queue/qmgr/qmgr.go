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
// Delivery agents (delivery/...) receive a *Delivery and report each
// recipient through it; the reporting methods log the Postfix delivery
// line, write the per-recipient status logs and mark recipients done in the
// queue file, so a crash repeats only what was not finished.
//
// Left out on purpose: Postfix's preemptive job scheduler; jobs are
// served FIFO per destination with round-robin over destinations, which
// SCHEDULER_README calls an acceptable simplification. All recipients of
// a message are loaded at once (no recipient refill batches).
package qmgr

import (
	"context"
	"errors"
	"io/fs"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailsrv/config"
	"mailsrv/maillog"
	"mailsrv/outcome"
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

// schedule resolves a message's pending recipients and queues them.
func (m *Manager) schedule(msg *message) {
	f := msg.f
	type key struct{ tr, dest string }
	open := map[key]*entry{}
	dsb := strings.ToLower(m.p.DoubleBounceSender)
	for i := range f.Recipients {
		rec := &f.Recipients[i]
		if rec.Done {
			continue
		}
		r := &Recipient{Addr: rec.Addr, Orig: rec.Orig, ORCPT: rec.ORCPT, Notify: rec.Notify, rec: rec}
		route, err := m.o.Resolve(rec.Addr, f.Sender)
		if err != nil {
			m.qmgrReport(msg, r, deferred, outcome.Status{DSN: "4.3.0", Text: "address resolver failure"})
			continue
		}
		if route.Recipient != "" {
			r.Addr = route.Recipient
		}
		if route.Error != "" {
			m.qmgrReport(msg, r, bounced, outcome.Status{DSN: "5.1.3", Text: "bad address syntax"})
			continue
		}
		if route.Local {
			local, _, _ := strings.Cut(strings.ToLower(r.Addr), "@")
			if local == dsb {
				// Mail to double-bounce is the end of a loop.
				m.qmgrReport(msg, r, sent, outcome.Status{DSN: "2.0.0", Text: "undeliverable postmaster notification discarded"})
				continue
			}
		}
		t := m.transports[route.Transport]
		switch {
		case t == nil:
			if !m.warned[route.Transport] {
				// Once per instance: a busy queue would repeat it for
				// every message.
				m.warned[route.Transport] = true
				m.log.Warnf("transport %s is not available: no [[service]] defines it, or its command is not part of this version of mailsrv; its mail stays in the queue", route.Transport)
			}
			m.qmgrReport(msg, r, deferred, outcome.Status{DSN: "4.3.0", Text: "mail transport unavailable"})
			continue
		case !msg.flush && slices.Contains(m.p.DeferTransports, route.Transport):
			m.qmgrReport(msg, r, deferred, outcome.Status{DSN: "4.3.2", Text: "deferred transport"})
			continue
		}
		name := strings.ToLower(route.Nexthop)
		if t.rcptLimit == 1 {
			// Per-recipient destinations: local's concurrency is per user.
			name = strings.ToLower(r.Addr)
		}
		d := t.dest(name)
		if msg.flush && d.dead {
			d.revive(t)
		}
		if d.dead {
			m.qmgrReport(msg, r, deferred, d.deadStatus)
			continue
		}
		k := key{route.Transport, name}
		e := open[k]
		if e == nil || len(e.rcpts) >= max(t.rcptLimit, 1) {
			e = &entry{msg: msg, nexthop: route.Nexthop}
			open[k] = e
			d.entries = append(d.entries, e)
			msg.entries++
		}
		e.rcpts = append(e.rcpts, r)
		t.list(d)
	}
}

// qmgrReport reports a recipient qmgr settles itself, with qmgr's logger.
func (m *Manager) qmgrReport(msg *message, r *Recipient, state outcome.State, st outcome.Status) {
	d := m.newDelivery(Request{ID: msg.id, Arrival: msg.f.Arrival, Verify: verifyOnly(msg.f)}, msg, nil)
	d.log = m.log
	switch state {
	case sent:
		d.Sent(r, st)
	case deferred:
		d.Defer(r, st)
	case bounced:
		d.Bounce(r, st)
	}
	switch r.state {
	case deferred:
		msg.deferred = true
		m.flushLog(msg, r)
	case bounced:
		msg.bounced = true
	}
	msg.traced = msg.traced || r.traced
	msg.bounced = msg.bounced || r.failedMember
}

// flushLog notes the domain of a deferred recipient, for the fast flush
// service to log once the message is in deferred (finish).
func (m *Manager) flushLog(msg *message, r *Recipient) {
	if m.o.Flush == nil {
		return
	}
	at := strings.LastIndexByte(r.Addr, '@')
	if at < 0 || at == len(r.Addr)-1 {
		return
	}
	if msg.flushed == nil {
		msg.flushed = map[string]bool{}
	}
	msg.flushed[strings.ToLower(r.Addr[at+1:])] = true
}

// TraceFlags is the queue file attribute of a message whose sender asked
// for a report of every recipient: "record" (sendmail -v: delivered, and
// reported) or "verify" (sendmail -bv: only verified, and reported).
const TraceFlags = "trace_flags"

// The values of TraceFlags.
const (
	TraceRecord = "record"
	TraceVerify = "verify"
)

func wantsReport(f *queue.File) bool {
	v := f.Attr(TraceFlags)
	return v == TraceRecord || v == TraceVerify
}

func verifyOnly(f *queue.File) bool { return f.Attr(TraceFlags) == TraceVerify }

// dispatch hands queued entries to idle workers, destination by
// destination in turn, within each destination's window.
func (m *Manager) dispatch(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
transports:
	for _, t := range m.transports {
		for t.busy < t.limit && len(t.ready) > 0 {
			progress := false
			for i := 0; i < len(t.ready) && t.busy < t.limit; {
				d := t.ready[i]
				if len(d.entries) == 0 || d.dead {
					t.ready = slices.Delete(t.ready, i, i+1)
					d.listed = false
					continue
				}
				if d.busy >= d.window {
					i++
					continue
				}
				e := d.entries[0]
				dl := m.delivery(t, d, e)
				// More mail for this destination: queued behind this
				// entry, or in flight (a steady stream, whose next
				// message is moments away). The smtp client then keeps
				// its session for it (connection cache on demand).
				dl.More = len(d.entries) > 1 || d.busy > 0
				select {
				case t.c <- dl:
				default:
					// This pool's channel is full (a previous instance's
					// deliveries are still queued): try it again later,
					// the other transports now.
					continue transports
				}
				d.entries = d.entries[1:]
				d.busy++
				t.busy++
				m.inflight++
				progress = true
				i++
			}
			if !progress {
				break
			}
		}
	}
}

func (m *Manager) delivery(t *transport, d *dest, e *entry) *Delivery {
	f := e.msg.f
	return m.newDelivery(Request{
		ID: f.ID, Transport: t.name, Nexthop: e.nexthop, Sender: f.Sender,
		Arrival: f.Arrival, Attrs: f.Attrs, Size: f.ContentSize, Recipients: e.rcpts,
		Content: f.Content, Ctx: m.o.Hard, Verify: verifyOnly(f), Flush: e.msg.flush,
	}, e.msg, d)
}

// newDelivery makes a delivery of a message whose reports go to qmgr's
// recorder (dest is nil for what qmgr settles itself).
func (m *Manager) newDelivery(req Request, msg *message, d *dest) *Delivery {
	rc := &recorder{file: msg.f, q: m.q, soft: m.p.SoftBounce, wantReport: wantsReport(msg.f),
		decimals: m.p.DelayLoggingResolutionLimit, active: msg.active, msg: msg, dest: d, done: m.done}
	dl := &Delivery{Request: req, rep: rc}
	rc.d = dl
	return dl
}

// completed takes a delivery's result.
func (m *Manager) completed(dl *Delivery) {
	m.inflight--
	rc := dl.rep.(*recorder)
	d, msg := rc.dest, rc.msg
	t := m.transports[dl.Transport]
	t.busy--
	d.busy--
	if rc.siteErr != nil {
		if d.negative(t) {
			m.kill(t, d, *rc.siteErr)
		}
	} else {
		d.positive(t)
	}
	for _, r := range dl.Recipients {
		switch r.state {
		case deferred:
			msg.deferred = true
			m.flushLog(msg, r)
		case bounced:
			msg.bounced = true
		}
		msg.traced = msg.traced || r.traced
		msg.bounced = msg.bounced || r.failedMember
	}
	msg.entries--
	if msg.entries == 0 {
		m.finish(msg)
	}
	t.list(d)
	t.gc(d)
}

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
