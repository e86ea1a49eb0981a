// Package pickup is Postfix's pickup: it takes the messages waiting in
// maildrop (local submissions written while the daemon was down, and mail
// requeued by postsuper -r) and passes each through cleanup under a new
// queue ID, then removes the maildrop file. maildrop content is untrusted:
// it is parsed strictly, and a file that does not parse is moved to
// corrupt/ with a log line.
package pickup

import (
	"context"
	"errors"
	"io"
	"os"
	"strconv"
	"time"

	"mailsrv/config"
	"mailsrv/maillog"
	"mailsrv/queue"
	"mailsrv/queue/qmgr"
	"mailsrv/rewrite/cleanup"
)

// Pickup scans maildrop.
type Pickup struct {
	P       *config.Params
	Q       *queue.Queue
	Cleanup *cleanup.Cleanup
	Log     *maillog.Logger
	// Wake asks for a scan now (postsuper -r, sendmail); otherwise pickup
	// scans every Interval (Postfix: 60s).
	Wake     <-chan struct{}
	Interval time.Duration
}

// Serve scans maildrop until ctx ends.
func (p *Pickup) Serve(ctx context.Context) error {
	interval := p.Interval
	if interval <= 0 {
		interval = 60 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := p.Scan(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-p.Wake:
		case <-t.C:
		}
	}
}

// Scan takes every ready message in maildrop once.
func (p *Pickup) Scan(ctx context.Context) error {
	return p.Q.Walk(queue.Maildrop, func(e queue.Entry) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.one(e)
		return nil
	}, nil)
}

func (p *Pickup) one(e queue.Entry) {
	f, err := p.Q.Open(queue.Maildrop, e.ID, false)
	var ce *queue.CorruptError
	switch {
	case errors.Is(err, queue.ErrNotReady):
		return // still being written
	case errors.As(err, &ce):
		p.Log.Warnf("%s: %s; moved to %s", e.ID, ce.Reason, queue.Corrupt)
		if err := p.Q.Quarantine(queue.Maildrop, e.ID); err != nil {
			p.Log.Warnf("%s: %v", e.ID, err)
		}
		return
	case err != nil:
		// Gone meanwhile (postsuper -d), or unreadable: look again later.
		return
	}
	defer f.Close()
	env := cleanup.Envelope{
		Sender:     f.Sender,
		FullName:   f.Attr("full_name"),
		Recipients: f.Pending(),
		Attrs:      map[string]string{},
		Arrival:    f.Arrival,
		Create:     time.Now(),
	}
	// Who wrote the file decides what it may say. A file of another user
	// (sendmail while the daemon was down) is a local submission by that
	// uid, whatever its attributes claim; only files written by the
	// daemon's own user (postsuper -r, or sendmail run as that user) keep
	// their attributes.
	owner := f.Owner()
	uid, submitted := f.Attrs["submit_uid"]
	if owner != os.Geteuid() {
		uid, submitted = strconv.Itoa(owner), true
		// Asking for a delivery report or a verification is every
		// user's right.
		if v := f.Attr(qmgr.TraceFlags); v == qmgr.TraceRecord || v == qmgr.TraceVerify {
			env.Attrs[qmgr.TraceFlags] = v
		}
	} else {
		for k, v := range f.Attrs {
			env.Attrs[k] = v
		}
		// Requeued by the operator (postsuper -r): deliver now.
		env.Flush = true
	}
	if submitted {
		env.Attrs["submit_uid"] = uid
		env.Attrs["rewrite_context"] = "local"
		// A local submission: pickup's Received header, and the local
		// header rewrite context.
		env.Received = func(id string) string {
			return "by " + p.P.Myhostname + " (" + p.P.MailName + ", from userid " + uid + ")\n\tid " + id + "; " + time.Now().Format("Mon, 2 Jan 2006 15:04:05 -0700 (MST)")
		}
		env.LocalHeaders = true
	}
	m, err := p.Cleanup.Open(env)
	if err != nil {
		p.Log.Warnf("%s: %v", e.ID, err)
		return
	}
	if _, err := io.Copy(m, f.Content()); err != nil {
		m.Abort()
		p.Log.Warnf("%s: read error: %v", e.ID, err)
		return
	}
	if err := m.Finish(); err != nil {
		p.Log.Warnf("%s: %v", e.ID, err)
		return
	}
	if submitted {
		p.Log.Infof("%s: uid=%s from=<%s>", m.ID(), uid, f.Sender)
	} else {
		p.Log.Infof("%s: from=<%s>, requeued as %s", e.ID, f.Sender, m.ID())
	}
	if err := p.Q.Remove(queue.Maildrop, e.ID); err != nil {
		p.Log.Warnf("%s: remove from maildrop: %v", e.ID, err)
	}
}
