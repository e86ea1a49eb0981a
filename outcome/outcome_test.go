package outcome

import (
	"errors"
	"fmt"
	"testing"
)

func TestReply(t *testing.T) {
	for _, c := range []struct {
		r              Reply
		text           string
		ok, temp, perm bool
		problem        Class
	}{
		{New(250, "2.0.0", "Ok"), "250 2.0.0 Ok", true, false, false, 0},
		{New(250, "", "mx.example"), "250 mx.example", true, false, false, 0},
		{New(451, "4.3.0", "Error: queue file write error").WithClass(Resource), "451 4.3.0 Error: queue file write error", false, true, false, Resource},
		{New(500, "5.5.2", "Error: command not recognized"), "500 5.5.2 Error: command not recognized", false, false, true, Protocol},
		{New(554, "5.5.1", "Error: no valid recipients"), "554 5.5.1 Error: no valid recipients", false, false, true, Protocol},
		{New(552, "5.3.4", "Message size exceeds fixed limit"), "552 5.3.4 Message size exceeds fixed limit", false, false, true, Bounce},
		{Newf(554, "5.7.1", "<%s>: Relay access denied", "a@b"), "554 5.7.1 <a@b>: Relay access denied", false, false, true, 0},
		{New(421, "4.3.0", "x Error: internal error").WithClass(Software), "421 4.3.0 x Error: internal error", false, true, false, Software},
	} {
		if c.r.String() != c.text || c.r.Error() != c.text {
			t.Errorf("%v: String %q", c.r, c.r.String())
		}
		if c.r.OK() != c.ok || c.r.Temporary() != c.temp || c.r.Permanent() != c.perm || c.r.Problem() != c.problem {
			t.Errorf("%s: ok %v temporary %v permanent %v problem %d", c.text, c.r.OK(), c.r.Temporary(), c.r.Permanent(), c.r.Problem())
		}
	}
	// A reply travels as an error and is found again.
	var r Reply
	if err := fmt.Errorf("wrapped: %w", New(554, "5.4.0", "Error: too many hops")); !errors.As(err, &r) || r.Enhanced != "5.4.0" {
		t.Errorf("errors.As: %v", r)
	}
	if got := Classes([]string{"Resource", " software", "policy", "nonsense"}); got != Resource|Software|Policy {
		t.Errorf("Classes = %b", got)
	}
}

func TestStatus(t *testing.T) {
	for _, c := range []struct {
		dsn        string
		temp, perm bool
		soft       string
	}{
		{"2.0.0", false, false, "2.0.0"},
		{"4.4.1", true, false, "4.4.1"},
		{"5.1.1", false, true, "4.1.1"},
		{"", false, false, ""},
	} {
		s := Status{DSN: c.dsn, Text: "why"}
		if s.Temporary() != c.temp || s.Permanent() != c.perm || s.Soft().DSN != c.soft || s.Soft().Text != "why" {
			t.Errorf("%q: temporary %v permanent %v soft %q", c.dsn, s.Temporary(), s.Permanent(), s.Soft().DSN)
		}
	}
	var st Status
	if err := error(Failed("4.2.0", "mailbox busy")); !errors.As(err, &st) || st.DSN != "4.2.0" || err.Error() != "mailbox busy" {
		t.Errorf("Status as error: %v", st)
	}
	for s, want := range map[State]string{Pending: "pending", Sent: "sent", Deferred: "deferred", Bounced: "bounced"} {
		if s.String() != want {
			t.Errorf("%d: %q", s, s.String())
		}
	}
}
