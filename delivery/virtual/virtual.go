// Package virtual is Postfix's virtual(8) delivery agent: mailboxes for
// virtual_mailbox_domains, found through virtual_mailbox_maps under
// virtual_mailbox_base (a path ending in / is a Maildir, else an mbox
// file), owned by the uid and gid of virtual_uid_maps/virtual_gid_maps.
// No aliases, no .forward, no commands.
//
// Files are written with the mailbox owner's file-system identity: when
// the process is root, on a locked OS thread whose fsuid/fsgid are
// switched (Linux's per-thread credentials; the thread is discarded
// afterwards), so that nothing else in the process gains or loses a
// privilege; when the daemon has dropped to mail_owner, by a child
// process of this binary started as the owner through the privileged
// helper (local's WriteMailbox); as the owner itself, directly.
package virtual

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"mailsrv/config"
	"mailsrv/delivery/local"
	"mailsrv/delivery/mailbox"
	"mailsrv/maps"
	"mailsrv/outcome"
	"mailsrv/queue/qmgr"
)

// Agent delivers to virtual mailboxes.
type Agent struct {
	p                  *config.Params
	mailboxes          []*maps.Map
	uids, gids         []*maps.Map
	locking            mailbox.Locking
	hostname, basePath string
}

// New opens the tables.
func New(p *config.Params) (*Agent, error) {
	a := &Agent{p: p, hostname: p.Myhostname, basePath: p.VirtualMailboxBase}
	var err error
	if a.mailboxes, err = maps.OpenAll(p.VirtualMailboxMaps); err != nil {
		return nil, fmt.Errorf("virtual_mailbox_maps: %w", err)
	}
	if a.uids, err = maps.OpenAll(p.VirtualUIDMaps); err != nil {
		return nil, fmt.Errorf("virtual_uid_maps: %w", err)
	}
	if a.gids, err = maps.OpenAll(p.VirtualGIDMaps); err != nil {
		return nil, fmt.Errorf("virtual_gid_maps: %w", err)
	}
	if a.locking, err = mailbox.ParseLocking(p.VirtualMailboxLock, p.StaleLockTime, p.DeliverLockAttempts, p.DeliverLockDelay); err != nil {
		return nil, fmt.Errorf("virtual_mailbox_lock: %w", err)
	}
	return a, nil
}

// Deliver delivers each recipient.
func (a *Agent) Deliver(d *qmgr.Delivery) {
	for _, r := range d.Recipients {
		a.one(d, r)
	}
}

var configError = outcome.Status{DSN: "4.3.5", Text: "mail system configuration error", Relay: "virtual"}

func (a *Agent) one(d *qmgr.Delivery, r *qmgr.Recipient) {
	rcpt := strings.ToLower(r.Addr)
	m, ok, err := maps.LookupAddress(a.mailboxes, rcpt, a.p.RecipientDelimiter, nil)
	if err != nil {
		d.Defer(r, outcome.Status{DSN: "4.3.0", Text: fmt.Sprintf("virtual_mailbox_maps: table lookup problem: %v", err), Relay: "virtual"})
		return
	}
	if !ok {
		d.Bounce(r, outcome.Status{DSN: "5.1.1", Text: fmt.Sprintf("unknown user: %q", rcpt), Relay: "virtual"})
		return
	}
	if strings.Contains(m.Value, "$") || strings.Contains(m.Value, "..") {
		d.Log().Warnf("virtual_mailbox_maps: %s: the mailbox %q must not contain $ or ..", rcpt, m.Value)
		d.Defer(r, configError)
		return
	}
	uid, err := a.id(a.uids, rcpt, "virtual_uid_maps")
	if err == nil && uid < a.p.VirtualMinimumUID {
		err = fmt.Errorf("virtual_uid_maps: %s: uid %d is below virtual_minimum_uid %d", rcpt, uid, a.p.VirtualMinimumUID)
	}
	var gid int
	if err == nil {
		gid, err = a.id(a.gids, rcpt, "virtual_gid_maps")
	}
	if err != nil {
		d.Log().Warnf("%v", err)
		d.Defer(r, configError)
		return
	}
	path := filepath.Join(a.basePath, m.Value)
	maildir := strings.HasSuffix(m.Value, "/")
	env := mailbox.Envelope{Sender: d.Sender, Recipient: rcpt, Original: r.Orig, DeliveredTo: true, Limit: int64(a.p.VirtualMailboxLimit)}
	if r.Orig == "" {
		env.Original = r.Addr
	}
	// Delivered-To loop check (local(8) and virtual(8) do it alike).
	if seen, err := mailbox.HasDeliveredTo(d.Content(), rcpt); err == nil && seen {
		d.Bounce(r, outcome.Status{DSN: "5.4.6", Text: "mail forwarding loop for " + rcpt, Relay: "virtual"})
		return
	}
	what := "mailbox"
	if maildir {
		what = "maildir"
	}
	if d.Verify {
		d.Sent(r, outcome.Status{DSN: "2.0.0", Text: "delivers to " + what, Relay: "virtual"})
		return
	}
	write := func() error {
		if maildir {
			_, err := mailbox.Maildir(path, env, d.Content(), a.hostname)
			return err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return outcome.Status{DSN: "4.2.0", Text: fmt.Sprintf("create directory %s: %v", filepath.Dir(path), err)}
		}
		return mailbox.Mbox(path, env, d.Content(), a.locking, uid)
	}
	if euid := os.Geteuid(); euid != 0 && uid != euid {
		// The daemon gave up root: a child process of this binary,
		// started as the owner by the privileged helper, writes.
		mpath := path
		if maildir {
			mpath += "/"
		}
		err = local.WriteMailbox(d.Ctx, uid, gid, mpath, env, a.locking, uid, a.hostname, d.Content())
	} else {
		err = asOwner(uid, gid, write)
	}
	if err != nil {
		st := outcome.Status{DSN: "4.2.0", Text: err.Error(), Relay: "virtual"}
		var me outcome.Status
		if errors.As(err, &me) {
			st.DSN = me.DSN
			if me.Temporary() {
				d.Defer(r, st)
			} else {
				d.Bounce(r, st)
			}
			return
		}
		d.Defer(r, st)
		return
	}
	d.Sent(r, outcome.Status{DSN: "2.0.0", Text: "delivered to " + what, Relay: "virtual"})
}

// id looks up a numeric uid or gid (static:5000, or a table of numbers).
func (a *Agent) id(tables []*maps.Map, rcpt, name string) (int, error) {
	m, ok, err := maps.LookupAddress(tables, rcpt, a.p.RecipientDelimiter, nil)
	if err != nil {
		return 0, fmt.Errorf("%s: table lookup problem for %s: %v", name, rcpt, err)
	}
	if !ok {
		return 0, fmt.Errorf("%s: no entry for %s", name, rcpt)
	}
	n, err := strconv.Atoi(strings.TrimSpace(m.Value))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: %s: bad number %q", name, rcpt, m.Value)
	}
	return n, nil
}

// asOwner runs fn with the file-system identity uid:gid. As root that is
// done on a dedicated OS thread that is thrown away afterwards (the Go
// runtime ends a thread whose goroutine exits while locked to it), so no
// other goroutine ever runs with the switched identity. Without root the
// caller has made sure the owner is ourselves.
func asOwner(uid, gid int, fn func() error) error {
	if os.Geteuid() != 0 {
		return fn()
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread dies with this goroutine.
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETFSGID, uintptr(gid), 0, 0); e != 0 {
			done <- e
			return
		}
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETFSUID, uintptr(uid), 0, 0); e != 0 {
			done <- e
			return
		}
		// setfsuid reports the previous value, not errors: check.
		if prev, _, _ := syscall.RawSyscall(syscall.SYS_SETFSUID, uintptr(uid), 0, 0); int(prev) != uid {
			done <- fmt.Errorf("setfsuid(%d) did not take effect", uid)
			return
		}
		done <- fn()
	}()
	return <-done
}
