package qmgr

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailsrv/maillog"
	"mailsrv/outcome"
	"mailsrv/queue"
)

// Delivery is one request from qmgr to a delivery agent: some recipients
// of one message, all for one transport and nexthop. The agent reports
// each recipient exactly once with Sent, Defer or Bounce; those calls log
// the Postfix "to=<…>, relay=…, status=…" line, record the status where
// postqueue and the bounce service find it, and mark finished recipients
// done in the queue file (durably) before returning.
type Delivery struct {
	ID         string
	Transport  string
	Nexthop    string
	Sender     string // "" = the null sender
	Arrival    time.Time
	Attrs      map[string]string // envelope attributes (client_address, …); read only
	Size       int64             // content size
	Recipients []*Recipient
	// More is set when more mail for the same destination is queued or
	// being delivered: the smtp client then keeps its session
	// (connection cache on demand).
	More bool
	// Ctx ends when the daemon's stop deadline has passed: long work
	// (commands, network) must then give up; the queue keeps the rest.
	Ctx context.Context
	// Verify is set for an address verification request (sendmail
	// -bv): the agent decides whether each recipient is deliverable,
	// as far as it can without delivering (local expands aliases and
	// .forward, smtp and lmtp stop after RCPT), and delivers nothing.
	// Its Sent means "deliverable", Defer and Bounce "undeliverable".
	Verify bool
	// Flush is set when the operator released the message (postqueue
	// -f, -s, -i, ETRN, sendmail -q, postsuper -r): the agent tries
	// every server now, even one it has just seen fail.
	Flush bool

	file       *queue.File
	q          *queue.Queue
	log        *maillog.Logger
	soft       bool // soft_bounce
	wantReport bool // the sender asked for a delivery report (sendmail -v)
	decimals   int  // delay_logging_resolution_limit
	active     time.Time
	handed     time.Time
	setup      time.Time

	mu      sync.Mutex
	siteErr *outcome.Status // destination-wide failure: negative feedback
	msg     *message
	dest    *dest
	done    chan<- *Delivery
}

// Recipient is one recipient of a delivery.
type Recipient struct {
	Addr   string // as resolved (the address to deliver to)
	Orig   string // the original recipient, before rewriting ("" = Addr)
	ORCPT  string // DSN ORCPT
	Notify int    // DSN NOTIFY bits
	rec    *queue.Recipient
	state  outcome.State
	traced bool // a success entry went to the trace log
	// failedMember: a member of its expansion bounced (the recipient
	// itself is done, but the bounce log has news for the sender).
	failedMember bool
}

// Recipient states, short.
const (
	pending  = outcome.Pending
	sent     = outcome.Sent
	deferred = outcome.Deferred
	bounced  = outcome.Bounced
)

// Content returns a fresh reader of the message content (LF line ends,
// no dot stuffing). Several readers may be used at once.
func (d *Delivery) Content() *io.SectionReader { return d.file.Content() }

// Log is the agent's logger (mailsrv/virtual, …).
func (d *Delivery) Log() *maillog.Logger { return d.log }

// SetupDone marks the end of connection setup (DNS, connect, greeting,
// HELO, TLS) for the third delays= field.
func (d *Delivery) SetupDone() {
	d.mu.Lock()
	d.setup = time.Now()
	d.mu.Unlock()
}

// Sent reports a recipient delivered.
func (d *Delivery) Sent(r *Recipient, st outcome.Status) {
	d.report(r, sent, st)
}

// Defer reports a recipient that should be tried again later.
func (d *Delivery) Defer(r *Recipient, st outcome.Status) {
	d.report(r, deferred, st)
}

// Bounce reports a recipient that cannot be delivered (soft_bounce turns
// this into Defer).
func (d *Delivery) Bounce(r *Recipient, st outcome.Status) {
	if d.soft {
		d.report(r, deferred, st.Soft())
		return
	}
	d.report(r, bounced, st)
}

// SiteFailure defers every recipient not yet reported with a reason that
// concerns the destination as a whole (connection refused, a bad
// greeting): qmgr lowers the destination's concurrency and, after
// failed_cohort_limit such failures, suspends it.
func (d *Delivery) SiteFailure(st outcome.Status) {
	d.mu.Lock()
	cp := st
	d.siteErr = &cp
	d.mu.Unlock()
	d.DeferRest(st)
}

// DeferRest defers every recipient not yet reported.
func (d *Delivery) DeferRest(st outcome.Status) {
	for _, r := range d.Recipients {
		if d.state(r) == pending {
			d.Defer(r, st)
		}
	}
}

// BounceRest bounces every recipient not yet reported.
func (d *Delivery) BounceRest(st outcome.Status) {
	for _, r := range d.Recipients {
		if d.state(r) == pending {
			d.Bounce(r, st)
		}
	}
}

func (d *Delivery) state(r *Recipient) outcome.State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return r.state
}

// Pending reports whether a recipient has not been reported yet.
func (d *Delivery) Pending(r *Recipient) bool { return d.state(r) == pending }

func (d *Delivery) report(r *Recipient, state outcome.State, st outcome.Status) {
	d.mu.Lock()
	if r.state != pending {
		d.mu.Unlock()
		d.log.Warnf("%s: recipient <%s> reported twice; ignoring the second result", d.ID, r.Addr)
		return
	}
	r.state = state
	setup := d.setup
	d.mu.Unlock()
	if st.Relay == "" {
		st.Relay = "none"
	}
	if st.DSN == "" {
		st.DSN = map[outcome.State]string{sent: "2.0.0", deferred: "4.0.0", bounced: "5.0.0"}[state]
	}
	now := time.Now()
	if d.Verify {
		d.verified(r, state, st, setup, now)
		return
	}
	d.log.Infof("%s: %s", d.ID, logLine(r, st, state.String(), d.Arrival, d.active, d.handed, setup, now, d.decimals))

	var err error
	switch state {
	case sent:
		d.trace(r, st)
		err = d.file.MarkDone(r.rec)
	case deferred:
		err = d.q.AppendStatus(queue.DeferLog, d.ID, d.entry(r, st, "delayed"))
	case bounced:
		if err = d.q.AppendStatus(queue.BounceLog, d.ID, d.entry(r, st, "failed")); err == nil {
			err = d.file.MarkDone(r.rec)
		}
	}
	if err != nil {
		// The result is logged but could not be recorded: the recipient
		// stays undone in the queue file and will be tried again (a
		// duplicate at worst, never a loss).
		d.log.Warnf("%s: cannot record the status of <%s>: %v", d.ID, r.Addr, err)
		d.mu.Lock()
		if state != deferred {
			r.state = deferred
		}
		d.mu.Unlock()
	}
}

// verified records the answer to a verification request: logged as
// status=deliverable or status=undeliverable, recorded in the trace log
// for the report to the sender, and the recipient is done either way (a
// temporary failure is an answer too, as in Postfix: it is not retried).
func (d *Delivery) verified(r *Recipient, state outcome.State, st outcome.Status, setup, now time.Time) {
	word := "deliverable"
	if state != sent {
		word = "undeliverable"
	}
	d.log.Infof("%s: %s", d.ID, logLine(r, st, word, d.Arrival, d.active, d.handed, setup, now, d.decimals))
	d.traceEntry(r, d.entry(r, st, word))
	if err := d.file.MarkDone(r.rec); err != nil {
		d.log.Warnf("%s: cannot record the status of <%s>: %v", d.ID, r.Addr, err)
		d.mu.Lock()
		r.state = deferred
		d.mu.Unlock()
		return
	}
	d.mu.Lock()
	r.state = sent
	d.mu.Unlock()
}

// trace records a success for a notice: when the recipient asked with
// NOTIFY=SUCCESS (unless the next hop took that request over), or when
// the sender asked for a report of every recipient. The delivery stands
// even if the record fails: a missing notice is better than a duplicate
// delivery.
func (d *Delivery) trace(r *Recipient, st outcome.Status) {
	if !d.wantReport && (r.Notify&queue.NotifySuccess == 0 || st.NextHopNotifies) {
		return
	}
	action := st.Action
	if action == "" {
		action = "delivered"
	}
	d.traceEntry(r, d.entry(r, st, action))
}

func (d *Delivery) traceEntry(r *Recipient, e queue.Status) {
	if err := d.q.AppendStatus(queue.TraceLog, d.ID, e); err != nil {
		d.log.Warnf("%s: cannot record the delivery of <%s> for a notice: %v", d.ID, r.Addr, err)
		return
	}
	d.mu.Lock()
	r.traced = true
	d.mu.Unlock()
}

// self is the member that is the recipient itself (its own mailbox).
func self(members []Member) *Member {
	for i := range members {
		if members[i].Addr == "" && members[i].State == sent {
			return &members[i]
		}
	}
	return nil
}

func (d *Delivery) entry(r *Recipient, st outcome.Status, action string) queue.Status {
	return queue.Status{
		Recipient: r.Addr, Original: r.Orig, Offset: r.rec.Offset,
		ORCPT: r.ORCPT, Notify: r.Notify, Status: st.DSN, Action: action,
		DiagType: st.DiagType, DiagText: st.DiagText, MTAType: mtaType(st.MTA), MTAName: st.MTA,
		Reason: st.Text,
	}
}

func mtaType(mta string) string {
	if mta == "" {
		return ""
	}
	return "dns"
}

// logLine is the body of Postfix's delivery log line.
func logLine(r *Recipient, st outcome.Status, status string, arrival, active, handed, setup, now time.Time, decimals int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "to=<%s>", r.Addr)
	if r.Orig != "" && r.Orig != r.Addr {
		fmt.Fprintf(&b, ", orig_to=<%s>", r.Orig)
	}
	fmt.Fprintf(&b, ", relay=%s", st.Relay)
	if st.ConnUse > 1 {
		fmt.Fprintf(&b, ", conn_use=%d", st.ConnUse)
	}
	if active.IsZero() {
		active = now
	}
	if handed.IsZero() {
		handed = now
	}
	c := time.Duration(0)
	xfer := handed
	if !setup.IsZero() {
		c = setup.Sub(handed)
		xfer = setup
	}
	fmt.Fprintf(&b, ", delay=%s, delays=%s/%s/%s/%s, dsn=%s, status=%s (%s)",
		FormatDelay(now.Sub(arrival), decimals),
		FormatDelay(active.Sub(arrival), decimals), FormatDelay(handed.Sub(active), decimals),
		FormatDelay(c, decimals), FormatDelay(now.Sub(xfer), decimals),
		st.DSN, status, st.Text)
	return b.String()
}

// FormatDelay prints a delay as Postfix does: whole seconds from 10 s up,
// else two significant digits with at most decimals decimals, trailing
// zeros dropped, and 0 for anything smaller.
func FormatDelay(d time.Duration, decimals int) string {
	if d < 0 {
		d = 0
	}
	s := d.Seconds()
	if s >= 10 {
		return strconv.FormatInt(int64(s), 10)
	}
	prec := 1
	for v := s; v < 1 && prec < decimals; v *= 10 {
		prec++
	}
	if s >= 1 {
		prec = 1
	}
	prec = min(prec, decimals)
	// Truncate rather than round, as Postfix does.
	pow := 1.0
	for range prec {
		pow *= 10
	}
	t := float64(int64(s*pow)) / pow
	out := strconv.FormatFloat(t, 'f', prec, 64)
	out = strings.TrimRight(out, "0")
	out = strings.TrimSuffix(out, ".")
	if out == "" {
		out = "0"
	}
	return out
}

// Member is the result for one member of a recipient's expansion (an
// alias, a .forward): local(8) delivers to each member and reports them
// together.
type Member struct {
	Addr   string // the member ("" = the recipient itself)
	Status outcome.Status
	State  outcome.State
}

// Members reports a recipient that local delivery expanded: each member
// is logged as "to=<member>, orig_to=<recipient>"; failed members go to
// the bounce log (the sender hears about them with "expanded from"), and
// the recipient is done unless a member was deferred, in which case the
// whole recipient is tried again later (Postfix does the same; members
// already delivered may then get a duplicate).
func (d *Delivery) Members(r *Recipient, members []Member) {
	d.mu.Lock()
	if r.state != pending {
		d.mu.Unlock()
		return
	}
	setup := d.setup
	d.mu.Unlock()
	now := time.Now()
	orig := r.Orig
	if orig == "" {
		orig = r.Addr
	}
	if d.Verify {
		d.verifiedMembers(r, members, orig, setup, now)
		return
	}
	anyDeferred, expanded := false, false
	var recErr error
	for _, m := range members {
		st := m.Status
		if st.Relay == "" {
			st.Relay = "none"
		}
		state := m.State
		if state == bounced && d.soft {
			state, st = deferred, st.Soft()
		}
		mr := memberRecipient(r, m, orig)
		d.log.Infof("%s: %s", d.ID, logLine(mr, st, state.String(), d.Arrival, d.active, d.handed, setup, now, d.decimals))
		e := d.entry(r, st, "")
		e.Recipient, e.Original = mr.Addr, orig
		switch state {
		case sent:
			if d.wantReport {
				e.Action = "delivered"
				d.traceEntry(r, e)
			} else if m.Addr != "" {
				expanded = true
			}
		case deferred:
			anyDeferred = true
			e.Action = "delayed"
			if err := d.q.AppendStatus(queue.DeferLog, d.ID, e); err != nil {
				recErr = err
			}
		case bounced:
			e.Action = "failed"
			if err := d.q.AppendStatus(queue.BounceLog, d.ID, e); err != nil {
				recErr = err
			} else {
				d.mu.Lock()
				r.failedMember = true
				d.mu.Unlock()
			}
		}
	}
	final := sent
	if anyDeferred || recErr != nil {
		final = deferred
	} else if expanded && r.Notify&queue.NotifySuccess != 0 {
		// NOTIFY=SUCCESS through an alias or .forward: the sender
		// hears that it was expanded (RFC 3461 "expanded"), then the
		// members' own fates are the business of their owners.
		d.traceEntry(r, d.entry(r, outcome.Status{DSN: "2.0.0", Text: "alias expanded"}, "expanded"))
	} else if m := self(members); m != nil && r.Notify&queue.NotifySuccess != 0 && !d.wantReport {
		d.trace(r, m.Status)
	}
	d.settle(r, final, recErr)
}

// settle ends a recipient reported through its members: done in the
// queue file when final is sent (if that cannot be recorded, it stays
// for another attempt), with a warning when a status was not recorded.
func (d *Delivery) settle(r *Recipient, final outcome.State, recErr error) {
	if final == sent {
		if err := d.file.MarkDone(r.rec); err != nil {
			recErr = err
			final = deferred
		}
	}
	if recErr != nil {
		d.log.Warnf("%s: cannot record the status of <%s>: %v", d.ID, r.Addr, recErr)
	}
	d.mu.Lock()
	r.state = final
	d.mu.Unlock()
}

// memberRecipient is a member as it is logged: to=<member>,
// orig_to=<the expanded recipient>; the recipient's own mailbox is
// logged as the recipient itself.
func memberRecipient(r *Recipient, m Member, orig string) *Recipient {
	if m.Addr == "" {
		return &Recipient{Addr: r.Addr, Orig: r.Orig}
	}
	return &Recipient{Addr: m.Addr, Orig: orig}
}

// verifiedMembers records the answer for each member of an expansion of
// a recipient under verification; the recipient is then done.
func (d *Delivery) verifiedMembers(r *Recipient, members []Member, orig string, setup, now time.Time) {
	for _, m := range members {
		st := m.Status
		if st.Relay == "" {
			st.Relay = "none"
		}
		word := "deliverable"
		if m.State != sent {
			word = "undeliverable"
		}
		mr := memberRecipient(r, m, orig)
		d.log.Infof("%s: %s", d.ID, logLine(mr, st, word, d.Arrival, d.active, d.handed, setup, now, d.decimals))
		e := d.entry(r, st, word)
		e.Recipient, e.Original = mr.Addr, orig
		if m.Addr == "" {
			e.Original = r.Orig
		}
		d.traceEntry(r, e)
	}
	d.settle(r, sent, nil)
}
