package master

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"mailsrv/config"
	"mailsrv/queue"
)

// lookupOwner resolves mail_owner and setgid_group. As a normal user
// (development) the daemon runs as that user and mail_owner is not used.
func lookupOwner(p *config.Params) (queue.Owner, error) {
	o := queue.Owner{UID: -1, GID: -1, SetgidGID: -1}
	if os.Geteuid() != 0 {
		return o, nil
	}
	u, err := user.Lookup(p.MailOwner)
	if err != nil {
		return o, fmt.Errorf("mail_owner %s: no such user (create it, e.g. useradd --system --no-create-home %s, or set mail_owner)", p.MailOwner, p.MailOwner)
	}
	o.UID, _ = strconv.Atoi(u.Uid)
	o.GID, _ = strconv.Atoi(u.Gid)
	if o.UID == 0 {
		return o, fmt.Errorf("mail_owner %s: must not be root", p.MailOwner)
	}
	if g, err := user.LookupGroup(p.SetgidGroup); err == nil {
		o.SetgidGID, _ = strconv.Atoi(g.Gid)
	}
	return o, nil
}

// dropPrivileges switches the whole process to mail_owner once the
// listeners are bound. Since Go 1.16 the set*id calls apply to every thread.
func (d *Daemon) dropPrivileges() error {
	if os.Geteuid() != 0 || d.opts.keepPrivileges {
		name := strconv.Itoa(os.Geteuid())
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
		d.mlog.Infof("running as unprivileged user %s (uid %d); mail_owner %s is not used", name, os.Geteuid(), d.cfg.Params.MailOwner)
		return nil
	}
	o := d.owner
	if err := syscall.Setgroups([]int{o.GID}); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(o.GID); err != nil {
		return fmt.Errorf("setgid %d: %w", o.GID, err)
	}
	if err := syscall.Setuid(o.UID); err != nil {
		return fmt.Errorf("setuid %d: %w", o.UID, err)
	}
	if os.Geteuid() != o.UID || os.Getegid() != o.GID {
		return fmt.Errorf("privileges not dropped (uid %d gid %d)", os.Geteuid(), os.Getegid())
	}
	return nil
}
