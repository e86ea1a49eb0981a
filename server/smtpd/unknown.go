package smtpd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"mailsrv/internal/resolver"
	"mailsrv/outcome"
	"mailsrv/rewrite"
)

// The reject_unknown_* restrictions: a client without a (forward-
// confirmed) name, a HELO name, or a sender or recipient domain that the
// DNS does not know. A name the DNS says does not exist gets the
// unknown_*_reject_code; a lookup that failed gets 450, or under
// defer_if_permit (the default *_tempfail_action) a deferral only if the
// mail would otherwise be accepted.

// peerStatus is how finding the client's name went.
type peerStatus int

const (
	peerOK   peerStatus = iota
	peerTemp            // the DNS could not answer
	peerPerm            // no name, or one that does not lead back
)

// restrictionsUnknown are the reject_unknown_* restrictions (with their
// older names).
var restrictionsUnknown = map[string]bool{
	"reject_unknown_client_hostname": true, "reject_unknown_client": true,
	"reject_unknown_reverse_client_hostname": true,
	"reject_unknown_helo_hostname":           true, "reject_unknown_hostname": true,
	"reject_unknown_sender_domain": true, "reject_unknown_recipient_domain": true,
}

// dnsStatus sorts a lookup error: not found (permanent) or temporary.
func dnsStatus(err error) peerStatus {
	var de *net.DNSError
	var re *resolver.DNSError
	switch {
	case err == nil:
		return peerOK
	case errors.As(err, &re):
		if re.NotFound {
			return peerPerm
		}
	case errors.As(err, &de):
		if de.IsNotFound {
			return peerPerm
		}
	}
	return peerTemp
}

// withClass makes an enhanced code's class digit agree with the reply
// code (4.1.8 for 450, 5.1.8 for 550), as Postfix's replies do.
func withClass(code int, enh string) string {
	return codeClass(code) + enh[1:]
}

func (c *checker) unknown(st *checkState, class listClass, r restriction) (verdict, *outcome.Reply) {
	s := st.s
	p := c.p
	reject := func(code int, enh, text string) (verdict, *outcome.Reply) {
		rep := outcome.New(code, withClass(code, enh), text).WithClass(outcome.Policy)
		return rejected, &rep
	}
	// tempfail answers a lookup that failed: a 450, or one that only
	// counts if the mail would otherwise be accepted.
	tempfail := func(action string, rep outcome.Reply) (verdict, *outcome.Reply) {
		rep = rep.WithClass(outcome.Policy)
		if action == "defer_if_permit" {
			if st.deferPerm == nil {
				st.deferPerm = &rep
			}
			return dunno, nil
		}
		return rejected, &rep
	}
	switch r.name {
	case "reject_unknown_reverse_client_hostname":
		if s.stdio || s.reverseStatus == peerOK {
			return dunno, nil
		}
		code := 450
		if s.reverseStatus == peerPerm {
			code = p.UnknownClientRejectCode
		}
		return reject(code, "4.7.1", fmt.Sprintf("Client host rejected: cannot find your reverse hostname, [%s]", s.clientAddr))
	case "reject_unknown_client_hostname", "reject_unknown_client":
		if s.stdio || s.nameStatus == peerOK {
			return dunno, nil
		}
		code := 450
		if s.nameStatus == peerPerm {
			code = p.UnknownClientRejectCode
		}
		return reject(code, "4.7.25", fmt.Sprintf("Client host rejected: cannot find your hostname, [%s]", s.clientAddr))
	case "reject_unknown_helo_hostname", "reject_unknown_hostname":
		h := s.helo
		if h == "" || strings.HasPrefix(h, "[") || s.stdio {
			return dunno, nil
		}
		switch s.hostKnown(h) {
		case peerPerm:
			return reject(p.UnknownHostnameRejectCode, "4.7.1", fmt.Sprintf("<%s>: %s: Host not found", printable(h), classText[classHelo]))
		case peerTemp:
			return tempfail(p.UnknownHeloHostnameTempfailAction, outcome.New(450, "4.7.1", fmt.Sprintf("<%s>: %s: Host not found", printable(h), classText[classHelo])))
		}
		return dunno, nil
	}
	// The sender's or the recipient's domain.
	addr, subject, enh, sender := st.rcpt, classRecipient, "4.1.2", false
	if r.name == "reject_unknown_sender_domain" {
		addr, subject, enh, sender = s.txn.sender, classSender, "4.1.8", true
	}
	if addr == "" || s.stdio || (!sender && st.rcpt == "") {
		return dunno, nil
	}
	res, err := c.rw.Resolve(addr, "")
	if err != nil {
		return rejected, st.tempFail(subject, err)
	}
	at := strings.LastIndexByte(res.Recipient, '@')
	// Our own domains, and address literals, are not looked up.
	if at < 0 || res.Class != rewrite.ClassDefault || strings.HasPrefix(res.Recipient[at+1:], "[") {
		return dunno, nil
	}
	domain := strings.ToLower(res.Recipient[at+1:])
	who := "<" + printable(addr) + ">: " + classText[subject] + ": "
	switch status, nullMX := s.mailhostKnown(domain); {
	case nullMX:
		code, nenh := 556, "4.1.10"
		if sender {
			code, nenh = 550, "4.7.27"
		}
		return reject(code, nenh, who+fmt.Sprintf("Domain %s does not accept mail (nullMX)", printable(domain)))
	case status == peerPerm:
		return reject(p.UnknownAddressRejectCode, enh, who+"Domain not found")
	case status == peerTemp:
		return tempfail(p.UnknownAddressTempfailAction, outcome.New(450, enh, who+"Domain not found"))
	}
	return dunno, nil
}

// hostKnown looks a host name up: any address or MX record will do (a
// null MX too: an MTA's name may have one).
func (s *session) hostKnown(name string) peerStatus {
	ctx, cancel := context.WithTimeout(s.ctx, dnsxlTimeout)
	defer cancel()
	_, err := s.srv.dns.Addrs(ctx, name, nil)
	if err == nil {
		return peerOK
	}
	if mxs, merr := s.srv.dns.MX(ctx, name, false); merr == nil && len(mxs) > 0 {
		return peerOK
	}
	return dnsStatus(err)
}

// mailhostKnown looks a mail domain up: its MX records, else its
// addresses; a null MX is reported apart.
func (s *session) mailhostKnown(domain string) (peerStatus, bool) {
	ctx, cancel := context.WithTimeout(s.ctx, dnsxlTimeout)
	defer cancel()
	mxs, err := s.srv.dns.MX(ctx, domain, false)
	if err != nil {
		return dnsStatus(err), false
	}
	if len(mxs) == 1 && mxs[0].Host == "." {
		return peerOK, true
	}
	if len(mxs) > 0 {
		return peerOK, false
	}
	_, err = s.srv.dns.Addrs(ctx, domain, nil)
	return dnsStatus(err), false
}
