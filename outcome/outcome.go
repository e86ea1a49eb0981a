// Package outcome owns the shapes of an outcome that every role produces
// and judges: Reply, an SMTP reply (what smtpd, cleanup and the
// submission socket answer a client), and Status, a recipient's delivery
// status (what an agent reports and qmgr logs and records for notices:
// Postfix's DSN record), with State, where a recipient stands. Whether an
// outcome is temporary or permanent, and which notify_classes class a
// problem belongs to, is decided here from codes and explicit classes,
// never by matching text.
package outcome

import (
	"fmt"
	"strconv"
	"strings"
)

// Class is a problem class of notify_classes; a Reply may carry one
// (classes combine as bits in a mask).
type Class int

// The classes, as Postfix names them.
const (
	Policy Class = 1 << iota
	Protocol
	Resource
	Software
	Bounce
	Delay
)

var classNames = map[string]Class{"policy": Policy, "protocol": Protocol, "resource": Resource,
	"software": Software, "bounce": Bounce, "delay": Delay}

// Classes turns notify_classes names into a mask (unknown names are
// ignored: config has checked them).
func Classes(names []string) Class {
	var m Class
	for _, n := range names {
		m |= classNames[strings.ToLower(strings.TrimSpace(n))]
	}
	return m
}

// Reply is one SMTP reply: a code, an RFC 3463 enhanced status code
// (empty for the few replies Postfix sends without one, such as the
// answer to a bare HELO) and the text; Class marks the problem it
// reports when that is not plain from the code.
type Reply struct {
	Code     int
	Enhanced string
	Text     string
	Class    Class
}

// New is a reply without an explicit class.
func New(code int, enhanced, text string) Reply {
	return Reply{Code: code, Enhanced: enhanced, Text: text}
}

// Newf is New with a formatted text.
func Newf(code int, enhanced, format string, args ...any) Reply {
	return Reply{Code: code, Enhanced: enhanced, Text: fmt.Sprintf(format, args...)}
}

// WithClass returns the reply marked with a problem class.
func (r Reply) WithClass(c Class) Reply {
	r.Class = c
	return r
}

func (r Reply) String() string {
	if r.Enhanced == "" {
		return strconv.Itoa(r.Code) + " " + r.Text
	}
	return strconv.Itoa(r.Code) + " " + r.Enhanced + " " + r.Text
}

// Error lets a refusal travel as an error.
func (r Reply) Error() string { return r.String() }

// OK reports a positive completion or intermediate reply (2xx, 3xx).
func (r Reply) OK() bool { return r.Code > 0 && r.Code < 400 }

// Temporary reports a 4xx reply: the client may try again.
func (r Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }

// Permanent reports a 5xx reply.
func (r Reply) Permanent() bool { return r.Code >= 500 }

// Problem is the notify_classes class of an error reply: its explicit
// class, else protocol for a syntax or sequence error (500-504, 5.5.x)
// and bounce for a message too big or looping (5.3.4, 5.4.0); a success
// is no problem.
func (r Reply) Problem() Class {
	switch {
	case r.OK():
		return 0
	case r.Class != 0:
		return r.Class
	case r.Enhanced == "5.3.4" || r.Enhanced == "5.4.0":
		return Bounce
	case r.Code >= 500 && r.Code <= 504 || len(r.Enhanced) > 4 && r.Enhanced[:4] == "5.5.":
		return Protocol
	}
	return 0
}

// Status is one recipient's delivery status (Postfix's DSN record): the
// enhanced status code, the reason, and what the delivery status notice
// and the log line say about it. The zero value is no status yet.
type Status struct {
	DSN     string // enhanced status code: 2.0.0, 4.2.0, 5.1.1 …
	Text    string // "delivered to maildir", or the remote server's reply
	Relay   string // relay= field: "virtual", "host[ip]:port", "none" …
	ConnUse int    // conn_use= when a cached connection was reused (> 1)
	// DiagType/DiagText and MTA go into the DSN report (Diagnostic-Code,
	// Remote-MTA) when the reason came from a remote server.
	DiagType, DiagText string
	MTA                string
	// Action is the DSN action of a success: delivered (the default),
	// relayed (handed to a next hop that does not do DSN) or expanded
	// (an alias or .forward).
	Action string
	// NextHopNotifies is set when the next hop took the DSN request
	// (NOTIFY passed on): success notices are then its business.
	NextHopNotifies bool
}

// Failed is a status with just a code and a reason.
func Failed(dsn, text string) Status { return Status{DSN: dsn, Text: text} }

// Temporary reports a status to try again later (4.x.x).
func (s Status) Temporary() bool { return len(s.DSN) > 0 && s.DSN[0] == '4' }

// Permanent reports a status that will not change (5.x.x).
func (s Status) Permanent() bool { return len(s.DSN) > 0 && s.DSN[0] == '5' }

// Soft is the status made temporary (soft_bounce, a refused greeting):
// a 5.x.x code becomes 4.x.x, the rest is kept.
func (s Status) Soft() Status {
	if s.Permanent() {
		s.DSN = "4" + s.DSN[1:]
	}
	return s
}

// Error lets a failure travel as an error (its reason).
func (s Status) Error() string { return s.Text }

// State is where a recipient of a delivery stands.
type State int

// The states; Pending is the zero value.
const (
	Pending State = iota
	Sent
	Deferred
	Bounced
)

// String is the state as the log's status= field writes it.
func (s State) String() string {
	switch s {
	case Sent:
		return "sent"
	case Deferred:
		return "deferred"
	case Bounced:
		return "bounced"
	}
	return "pending"
}
