package qmgr

import (
	"context"
	"slices"
	"strings"

	"mailsrv/outcome"
	"mailsrv/queue"
)

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
	dl := NewDelivery(req, rc, nil) // the agent's logger comes with the agent
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
