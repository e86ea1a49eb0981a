package qmgr

import (
	"context"
	"runtime/debug"
	"time"

	"mailsrv/maillog"
	"mailsrv/outcome"
)

// Agent is a delivery agent: it delivers what a Delivery asks and reports
// every recipient (Sent, Defer or Bounce) before returning.
type Agent interface {
	Deliver(d *Delivery)
}

// AgentFunc adapts a function to Agent.
type AgentFunc func(d *Delivery)

// Deliver calls f.
func (f AgentFunc) Deliver(d *Delivery) { f(d) }

// ServeAgent runs a transport's deliveries: at most n at once (the
// service's process_limit), each in a goroutine started for it, so an
// idle transport costs nothing (a pool of n parked workers for each of a
// dozen transports did: 800 goroutines on an idle server). When ctx ends
// it delivers what is still waiting in c, waits for the deliveries in
// progress, and returns: the channel belongs to the master, and a
// successor instance (after a reload) takes over from there.
func ServeAgent(ctx context.Context, c <-chan *Delivery, n int, log *maillog.Logger, a Agent) error {
	if n < 1 {
		n = 1
	}
	slots := make(chan struct{}, n)
	start := func(d *Delivery) {
		slots <- struct{}{} // qmgr never hands out more than n; this is the guard
		go func() {
			defer func() { <-slots }()
			run(d, log, a)
		}()
	}
	for {
		select {
		case d := <-c:
			start(d)
			continue
		case <-ctx.Done():
		}
		break
	}
	for {
		select {
		case d := <-c:
			start(d)
			continue
		default:
		}
		break
	}
	for range n {
		slots <- struct{}{}
	}
	return nil
}

// run delivers one request. A panic in an agent is contained here: its
// recipients are deferred as Postfix does when a delivery agent crashes,
// and the worker goes on.
func run(d *Delivery, log *maillog.Logger, a Agent) {
	d.log = log
	rc := d.rep.(*recorder)
	rc.handed = time.Now()
	defer func() {
		if r := recover(); r != nil {
			log.Warnf("%s: delivery agent panic: %v", d.ID, r)
			log.Debugf("%s: panic stack:\n%s", d.ID, debug.Stack())
			d.DeferRest(outcome.Status{DSN: "4.3.0", Text: "unknown mail transport error"})
		}
		// An agent that forgot a recipient must not lose it.
		for _, r := range d.Recipients {
			if d.Pending(r) {
				log.Warnf("%s: transport %s did not report <%s>", d.ID, d.Transport, r.Addr)
				d.Defer(r, outcome.Status{DSN: "4.3.0", Text: "unknown mail transport error"})
			}
		}
		rc.done <- d
	}()
	a.Deliver(d)
}
