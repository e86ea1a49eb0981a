package smtpd

import (
	"context"
	"strings"

	"mailsrv/internal/resolver"
	"mailsrv/outcome"
	"mailsrv/rewrite"
)

// permit_mx_backup: relay for a domain that lists this host as one of its
// backup MX hosts (never as a primary: the primary is where the mail
// ends, and relaying to itself would loop). With
// permit_mx_backup_networks set, every address of every primary MX host
// must be in those networks too, so that a stranger cannot make this host
// relay for a domain just by naming it in the DNS. Postfix 3.9 deprecates
// the restriction in favour of listing the domains in relay_domains; it
// still works there, with a warning, and so it does here.

// mxBackup applies permit_mx_backup to the recipient at hand.
func (c *checker) mxBackup(st *checkState) (verdict, *outcome.Reply) {
	s := st.s
	if st.rcpt == "" {
		return dunno, nil
	}
	res, err := st.resolve()
	if err != nil {
		return rejected, st.tempFail(classRecipient, err)
	}
	// Like permit_auth_destination: our own and relay_domains pass,
	// unless the local part still routes somewhere.
	at := strings.LastIndexByte(res.Recipient, '@')
	if at < 0 {
		return permit, nil
	}
	if res.Routed && !c.p.AllowUntrustedRouting {
		return dunno, nil
	}
	if res.Class != rewrite.ClassDefault {
		return permit, nil
	}
	domain := strings.ToLower(res.Recipient[at+1:])
	if strings.HasPrefix(domain, "[") {
		// An address literal that is not ours.
		return dunno, nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, dnsxlTimeout)
	defer cancel()
	who := "<" + printable(st.rcpt) + ">: " + classText[classRecipient] + ": "
	mxs, err := s.srv.dns.MX(ctx, domain, false)
	if err != nil || len(mxs) == 0 || mxs[0].Host == "." {
		// No MX (or a null MX): nothing names us. A lookup that
		// failed must not turn into a rejection, though.
		if err != nil && dnsStatus(err) == peerTemp {
			st.deferIfReject(mxDefer(who + "Unable to look up mail exchanger information: Host not found, try again"))
		}
		return dunno, nil
	}
	n := 0
	for n < len(mxs) && mxs[n].Pref == mxs[0].Pref {
		n++
	}
	primaries, backups := mxs[:n], mxs[n:]
	if c.listsMe(ctx, st, primaries, who) || len(backups) == 0 || !c.listsMe(ctx, st, backups, who) {
		return dunno, nil
	}
	if c.mxBackupNetworks != nil && !c.primariesAllowed(ctx, st, primaries, who) {
		return dunno, nil
	}
	return permit, nil
}

// mxDefer is the deferral a failed lookup leaves behind: a later
// rejection of the recipient becomes this (Postfix's 450 4.4.4).
func mxDefer(text string) *outcome.Reply {
	r := outcome.New(450, "4.4.4", text).WithClass(outcome.Policy)
	return &r
}

// listsMe reports whether one of the MX hosts is this one: by name (one
// of mydestination), else by address (inet_interfaces, proxy_interfaces).
func (c *checker) listsMe(ctx context.Context, st *checkState, mxs []resolver.MX, who string) bool {
	for _, mx := range mxs {
		if c.rw.IsLocalDomain(strings.ToLower(mx.Host)) {
			return true
		}
	}
	s := st.s
	for _, mx := range mxs {
		addrs, err := s.srv.dns.Addrs(ctx, mx.Host, c.p.InetProtocols)
		if err != nil {
			if dnsStatus(err) == peerTemp {
				st.deferIfReject(mxDefer(who + "Unable to look up mail exchanger host " + printable(mx.Host) + ": Host not found, try again"))
			}
			continue
		}
		for _, a := range addrs {
			if c.rw.IsOwnAddress(a) {
				return true
			}
		}
	}
	return false
}

// primariesAllowed reports whether every address of every primary MX
// host is in permit_mx_backup_networks.
func (c *checker) primariesAllowed(ctx context.Context, st *checkState, mxs []resolver.MX, who string) bool {
	s := st.s
	for _, mx := range mxs {
		addrs, err := s.srv.dns.Addrs(ctx, mx.Host, c.p.InetProtocols)
		if err != nil {
			reason := "Host not found"
			if dnsStatus(err) == peerTemp {
				reason = "Host not found, try again"
			}
			st.deferIfReject(mxDefer(who + "Unable to look up host " + printable(mx.Host) + " as mail exchanger: " + reason))
			return false
		}
		for _, a := range addrs {
			ok, err := c.mxBackupNetworks.match(a, mx.Host)
			if err != nil {
				c.log.Warnf("permit_mx_backup_networks lookup error for address %s for %s: %v", a, printable(mx.Host), err)
				st.deferIfReject(mxDefer(who + "Unable to verify host " + printable(mx.Host) + " as mail exchanger"))
				return false
			}
			if !ok {
				return false
			}
		}
	}
	return true
}
