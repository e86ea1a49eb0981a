package qmgr

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailsrv/outcome"
	"mailsrv/queue"
)

// recorder is qmgr's Reporter: it logs Postfix's delivery lines, keeps
// the status logs for notices and postqueue, marks finished recipients
// done in the queue file, and carries the scheduler's view of the
// delivery (which message and destination, the destination-wide failure)
// back to qmgr when the agent is done.
type recorder struct {
	d          *Delivery
	file       *queue.File
	q          *queue.Queue
	soft       bool // soft_bounce
	wantReport bool // the sender asked for a delivery report (sendmail -v)
	decimals   int  // delay_logging_resolution_limit
	active     time.Time
	handed     time.Time

	mu      sync.Mutex
	setup   time.Time
	siteErr *outcome.Status // destination-wide failure: negative feedback
	msg     *message
	dest    *dest
	done    chan<- *Delivery
}

func (rc *recorder) SetupDone() {
	rc.mu.Lock()
	rc.setup = time.Now()
	rc.mu.Unlock()
}

func (rc *recorder) SiteFailure(st outcome.Status) {
	rc.mu.Lock()
	rc.siteErr = &st
	rc.mu.Unlock()
}

func (rc *recorder) setupTime() time.Time {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.setup
}

// Report logs and records one recipient's fate.
func (rc *recorder) Report(r *Recipient, state outcome.State, st outcome.Status) {
	d := rc.d
	if state == bounced && rc.soft {
		state, st = deferred, st.Soft()
		d.mu.Lock()
		r.state = deferred
		d.mu.Unlock()
	}
	setup := rc.setupTime()
	if st.Relay == "" {
		st.Relay = "none"
	}
	if st.DSN == "" {
		st.DSN = map[outcome.State]string{sent: "2.0.0", deferred: "4.0.0", bounced: "5.0.0"}[state]
	}
	now := time.Now()
	if d.Verify {
		rc.verified(r, state, st, setup, now)
		return
	}
	d.log.Infof("%s: %s", d.ID, logLine(r, st, state.String(), d.Arrival, rc.active, rc.handed, setup, now, rc.decimals))

	var err error
	switch state {
	case sent:
		rc.trace(r, st)
		err = rc.file.MarkDone(r.rec)
	case deferred:
		err = rc.q.AppendStatus(queue.DeferLog, d.ID, rc.entry(r, st, "delayed"))
	case bounced:
		if err = rc.q.AppendStatus(queue.BounceLog, d.ID, rc.entry(r, st, "failed")); err == nil {
			err = rc.file.MarkDone(r.rec)
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
func (rc *recorder) verified(r *Recipient, state outcome.State, st outcome.Status, setup, now time.Time) {
	d := rc.d
	word := "deliverable"
	if state != sent {
		word = "undeliverable"
	}
	d.log.Infof("%s: %s", d.ID, logLine(r, st, word, d.Arrival, rc.active, rc.handed, setup, now, rc.decimals))
	rc.traceEntry(r, rc.entry(r, st, word))
	if err := rc.file.MarkDone(r.rec); err != nil {
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
func (rc *recorder) trace(r *Recipient, st outcome.Status) {
	if !rc.wantReport && (r.Notify&queue.NotifySuccess == 0 || st.NextHopNotifies) {
		return
	}
	action := st.Action
	if action == "" {
		action = "delivered"
	}
	rc.traceEntry(r, rc.entry(r, st, action))
}

func (rc *recorder) traceEntry(r *Recipient, e queue.Status) {
	d := rc.d
	if err := rc.q.AppendStatus(queue.TraceLog, d.ID, e); err != nil {
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

func (rc *recorder) entry(r *Recipient, st outcome.Status, action string) queue.Status {
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

// Members logs and records the members of an expanded recipient.
func (rc *recorder) Members(r *Recipient, members []Member) {
	d := rc.d
	setup := rc.setupTime()
	now := time.Now()
	orig := r.Orig
	if orig == "" {
		orig = r.Addr
	}
	if d.Verify {
		rc.verifiedMembers(r, members, orig, setup, now)
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
		if state == bounced && rc.soft {
			state, st = deferred, st.Soft()
		}
		mr := memberRecipient(r, m, orig)
		d.log.Infof("%s: %s", d.ID, logLine(mr, st, state.String(), d.Arrival, rc.active, rc.handed, setup, now, rc.decimals))
		e := rc.entry(r, st, "")
		e.Recipient, e.Original = mr.Addr, orig
		switch state {
		case sent:
			if rc.wantReport {
				e.Action = "delivered"
				rc.traceEntry(r, e)
			} else if m.Addr != "" {
				expanded = true
			}
		case deferred:
			anyDeferred = true
			e.Action = "delayed"
			if err := rc.q.AppendStatus(queue.DeferLog, d.ID, e); err != nil {
				recErr = err
			}
		case bounced:
			e.Action = "failed"
			if err := rc.q.AppendStatus(queue.BounceLog, d.ID, e); err != nil {
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
		rc.traceEntry(r, rc.entry(r, outcome.Status{DSN: "2.0.0", Text: "alias expanded"}, "expanded"))
	} else if m := self(members); m != nil && r.Notify&queue.NotifySuccess != 0 && !rc.wantReport {
		rc.trace(r, m.Status)
	}
	rc.settle(r, final, recErr)
}

// settle ends a recipient reported through its members: done in the
// queue file when final is sent (if that cannot be recorded, it stays
// for another attempt), with a warning when a status was not recorded.
func (rc *recorder) settle(r *Recipient, final outcome.State, recErr error) {
	d := rc.d
	if final == sent {
		if err := rc.file.MarkDone(r.rec); err != nil {
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
func (rc *recorder) verifiedMembers(r *Recipient, members []Member, orig string, setup, now time.Time) {
	d := rc.d
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
		d.log.Infof("%s: %s", d.ID, logLine(mr, st, word, d.Arrival, rc.active, rc.handed, setup, now, rc.decimals))
		e := rc.entry(r, st, word)
		e.Recipient, e.Original = mr.Addr, orig
		if m.Addr == "" {
			e.Original = r.Orig
		}
		rc.traceEntry(r, e)
	}
	rc.settle(r, sent, nil)
}
