// Package qmgrtest gives a delivery agent's tests what qmgr gives the
// agent in the daemon: a delivery of a message to some recipients, and a
// Reporter that keeps what the agent reports instead of logging and
// recording it. Only tests import it.
package qmgrtest

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"mailsrv/internal/testutil"
	"mailsrv/maillog"
	"mailsrv/outcome"
	"mailsrv/queue/qmgr"
)

// Report is one recipient's reported fate.
type Report struct {
	State   outcome.State
	Status  outcome.Status
	Members []qmgr.Member // set when the recipient was reported by Members
}

// Reporter keeps the reports of one delivery, by recipient address.
type Reporter struct {
	mu           sync.Mutex
	reports      map[string]Report
	siteFailures []outcome.Status
	setup        bool
}

func (f *Reporter) Report(r *qmgr.Recipient, state outcome.State, st outcome.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reports[r.Addr] = Report{State: state, Status: st}
}

func (f *Reporter) Members(r *qmgr.Recipient, members []qmgr.Member) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reports[r.Addr] = Report{State: outcome.Sent, Members: members}
}

func (f *Reporter) SiteFailure(st outcome.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.siteFailures = append(f.siteFailures, st)
}

func (f *Reporter) SetupDone() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setup = true
}

// Of returns the report of a recipient; false when it was not reported.
func (f *Reporter) Of(addr string) (Report, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.reports[addr]
	return r, ok
}

// SiteFailures are the destination-wide failures reported.
func (f *Reporter) SiteFailures() []outcome.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]outcome.Status(nil), f.siteFailures...)
}

// Setup reports whether the agent marked its connection setup done.
func (f *Reporter) Setup() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.setup
}

// Delivery is a delivery of content (LF line ends) to the recipients, for
// req's transport and nexthop, with its reporter and the agent's log.
// Unset request fields get test values: the sender, arrival, size,
// content and a context that ends with the test.
func Delivery(t testing.TB, req qmgr.Request, content string, rcpts ...string) (*qmgr.Delivery, *Reporter, *testutil.SyncBuffer) {
	t.Helper()
	if req.ID == "" {
		req.ID = "4TpXvC0sf8z9HdB"
	}
	if req.Arrival.IsZero() {
		req.Arrival = time.Now()
	}
	if req.Sender == "" {
		req.Sender = "sender@example.test"
	}
	for _, a := range rcpts {
		req.Recipients = append(req.Recipients, &qmgr.Recipient{Addr: a})
	}
	req.Size = int64(len(content))
	if req.Content == nil {
		req.Content = func() *io.SectionReader {
			return io.NewSectionReader(strings.NewReader(content), 0, int64(len(content)))
		}
	}
	if req.Ctx == nil {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		req.Ctx = ctx
	}
	rep := &Reporter{reports: map[string]Report{}}
	logs := &testutil.SyncBuffer{}
	return qmgr.NewDelivery(req, rep, maillog.New(logs, "test").Role("mailsrv", req.Transport)), rep, logs
}

// Expect checks a recipient's report: its state and, when dsn is not
// empty, its enhanced code; it returns the report.
func Expect(t testing.TB, rep *Reporter, addr string, state outcome.State, dsn string) Report {
	t.Helper()
	r, ok := rep.Of(addr)
	switch {
	case !ok:
		t.Errorf("<%s> was not reported", addr)
	case r.State != state:
		t.Errorf("<%s>: %s (%s %s), want %s", addr, r.State, r.Status.DSN, r.Status.Text, state)
	case dsn != "" && r.Status.DSN != dsn:
		t.Errorf("<%s>: dsn %s (%s), want %s", addr, r.Status.DSN, r.Status.Text, dsn)
	}
	return r
}
