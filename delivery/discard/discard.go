// Package discard holds the two agents that deliver nothing: discard(8),
// which reports every recipient delivered (the nexthop is the reason that
// is logged), and error(8), which bounces every recipient with the
// nexthop as the reason (or defers, as the retry service and the error
// service's 4.x.x texts do).
package discard

import (
	"strings"

	"mailsrv/outcome"
	"mailsrv/queue/qmgr"
)

// Discard is discard(8).
var Discard = qmgr.AgentFunc(func(d *qmgr.Delivery) {
	text := strings.TrimSpace(d.Nexthop)
	if text == "" {
		text = "discarded"
	}
	for _, r := range d.Recipients {
		d.Sent(r, outcome.Status{DSN: "2.0.0", Text: text, Relay: "none"})
	}
})

// Error is error(8); Retry is the same program as master.cf's retry
// service, which defers instead.
var (
	Error = qmgr.AgentFunc(func(d *qmgr.Delivery) { fail(d, false) })
	Retry = qmgr.AgentFunc(func(d *qmgr.Delivery) { fail(d, true) })
)

// fail reports every recipient with the nexthop's text: "5.1.1 User
// unknown" sets the status code, a bare text gets 5.0.0 (4.0.0 for retry).
func fail(d *qmgr.Delivery, retry bool) {
	dsn, text := "5.0.0", strings.TrimSpace(d.Nexthop)
	if retry {
		dsn = "4.0.0"
	}
	if code, rest, ok := strings.Cut(text, " "); ok && isDSN(code) {
		dsn, text = code, strings.TrimSpace(rest)
	}
	if text == "" {
		text = "unknown error"
	}
	st := outcome.Status{DSN: dsn, Text: text, Relay: "none"}
	for _, r := range d.Recipients {
		if retry || st.Temporary() {
			d.Defer(r, st)
		} else {
			d.Bounce(r, st)
		}
	}
}

func isDSN(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}
