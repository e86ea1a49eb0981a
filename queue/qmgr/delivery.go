package qmgr

import (
	"context"
	"io"
	"sync"
	"time"

	"mailsrv/maillog"
	"mailsrv/outcome"
	"mailsrv/queue"
)

// Request is what qmgr asks of a delivery agent (Postfix's
// deliver_request): some recipients of one message, all for one transport
// and nexthop.
type Request struct {
	ID         string
	Transport  string
	Nexthop    string
	Sender     string // "" = the null sender
	Arrival    time.Time
	Attrs      map[string]string // envelope attributes (client_address, …); read only
	Size       int64             // content size
	Recipients []*Recipient
	// Content returns a fresh reader of the message content (LF line
	// ends, no dot stuffing). Several readers may be used at once.
	Content func() *io.SectionReader
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
}

// Reporter records what an agent reports (Postfix's sent(),
// defer_append() and bounce_append(), and qmgr's view of a destination).
// qmgr's logs the delivery lines, keeps the status logs for notices and
// postqueue, and marks finished recipients done in the queue file; a
// test gives an agent a fake one. Delivery calls it once per recipient.
type Reporter interface {
	// Report records one recipient's fate.
	Report(r *Recipient, state outcome.State, st outcome.Status)
	// Members records the members of a recipient's expansion (local's
	// aliases and .forward files).
	Members(r *Recipient, members []Member)
	// SiteFailure notes a failure of the destination as a whole
	// (before the recipients are deferred with it).
	SiteFailure(st outcome.Status)
	// SetupDone marks the end of connection setup (delays=).
	SetupDone()
}

// Delivery is one request being delivered: the request, and what the
// agent reports about each of its recipients, exactly once each, with
// Sent, Defer or Bounce (or Members). The report reaches the Reporter
// before the call returns (qmgr's makes it durable first).
type Delivery struct {
	Request
	rep Reporter
	log *maillog.Logger
	mu  sync.Mutex // guards the recipients' states
}

// NewDelivery is a delivery of req whose outcomes go to rep; log is the
// agent's logger.
func NewDelivery(req Request, rep Reporter, log *maillog.Logger) *Delivery {
	return &Delivery{Request: req, rep: rep, log: log}
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

// Log is the agent's logger (mailsrv/virtual, …).
func (d *Delivery) Log() *maillog.Logger { return d.log }

// SetupDone marks the end of connection setup (DNS, connect, greeting,
// HELO, TLS) for the third delays= field.
func (d *Delivery) SetupDone() { d.rep.SetupDone() }

// Sent reports a recipient delivered.
func (d *Delivery) Sent(r *Recipient, st outcome.Status) { d.claim(r, sent, st) }

// Defer reports a recipient that should be tried again later.
func (d *Delivery) Defer(r *Recipient, st outcome.Status) { d.claim(r, deferred, st) }

// Bounce reports a recipient that cannot be delivered (qmgr's reporter
// makes it a deferral under soft_bounce).
func (d *Delivery) Bounce(r *Recipient, st outcome.Status) { d.claim(r, bounced, st) }

// claim settles a recipient once and passes the report on; a second
// report of the same recipient is a bug of the agent, logged and ignored.
func (d *Delivery) claim(r *Recipient, state outcome.State, st outcome.Status) {
	d.mu.Lock()
	if r.state != pending {
		d.mu.Unlock()
		d.log.Warnf("%s: recipient <%s> reported twice; ignoring the second result", d.ID, r.Addr)
		return
	}
	r.state = state
	d.mu.Unlock()
	d.rep.Report(r, state, st)
}

// SiteFailure defers every recipient not yet reported with a reason that
// concerns the destination as a whole (connection refused, a bad
// greeting): qmgr lowers the destination's concurrency and, after
// failed_cohort_limit such failures, suspends it.
func (d *Delivery) SiteFailure(st outcome.Status) {
	d.rep.SiteFailure(st)
	d.DeferRest(st)
}

// DeferRest defers every recipient not yet reported.
func (d *Delivery) DeferRest(st outcome.Status) {
	for _, r := range d.Recipients {
		if d.Pending(r) {
			d.Defer(r, st)
		}
	}
}

// BounceRest bounces every recipient not yet reported.
func (d *Delivery) BounceRest(st outcome.Status) {
	for _, r := range d.Recipients {
		if d.Pending(r) {
			d.Bounce(r, st)
		}
	}
}

// State is where a recipient stands in this delivery.
func (d *Delivery) State(r *Recipient) outcome.State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return r.state
}

// Pending reports whether a recipient has not been reported yet.
func (d *Delivery) Pending(r *Recipient) bool { return d.State(r) == pending }

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
	r.state = sent // until the reporter says otherwise
	d.mu.Unlock()
	d.rep.Members(r, members)
}

// Member is the result for one member of a recipient's expansion (an
// alias, a .forward): local(8) delivers to each member and reports them
// together.
type Member struct {
	Addr   string // the member ("" = the recipient itself)
	Status outcome.Status
	State  outcome.State
}
