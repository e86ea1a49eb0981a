package smtpd

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"mailsrv/config"
	"mailsrv/maillog"
	"mailsrv/maps"
	"mailsrv/outcome"
	"mailsrv/rewrite"
	"mailsrv/server/policy"
)

// Restriction lists (smtpd_*_restrictions). Each list runs left to right:
// a permit ends that list, a reject ends everything, the end of a list
// permits. With smtpd_delay_reject (the default) the client, helo and
// sender lists run at RCPT TO, before the relay and recipient lists.

// listClass names whose address a list judges: it words the reply.
type listClass int

const (
	classClient listClass = iota
	classHelo
	classSender
	classRecipient
	classData
	classEtrn
	classSASL
	classCcert
)

var classText = [...]string{
	classClient:    "Client host rejected",
	classHelo:      "Helo command rejected",
	classSender:    "Sender address rejected",
	classRecipient: "Recipient address rejected",
	classData:      "Data command rejected",
	classEtrn:      "Etrn command rejected",
	classSASL:      "SASL login name rejected",
	classCcert:     "Client certificate rejected",
}

// restriction is one compiled list element.
type restriction struct {
	name   string
	table  *maps.Map      // check_*_access
	list   dnsxlList      // DNS block and allow lists
	arg    string         // check_policy_service's server, sleep's seconds
	policy *policy.Client // check_policy_service
	pause  time.Duration  // sleep
}

// restrictionsWithTable take the next list element as a table.
var restrictionsWithTable = map[string]bool{
	"check_client_access": true, "check_helo_access": true,
	"check_sender_access": true, "check_recipient_access": true,
	"check_reverse_client_hostname_access": true, "check_sasl_access": true, "check_ccert_access": true,
}

// simpleRestrictions are the restrictions this build implements without
// an argument.
var simpleRestrictions = map[string]bool{
	"permit": true, "reject": true, "defer": true, "dunno": true,
	"defer_if_permit": true, "defer_if_reject": true, "warn_if_reject": true,
	"permit_mynetworks": true, "permit_sasl_authenticated": true,
	"reject_unauth_destination": true, "defer_unauth_destination": true,
	"permit_auth_destination": true, "reject_unlisted_recipient": true,
	"reject_unlisted_sender": true, "reject_non_fqdn_sender": true,
	"reject_non_fqdn_recipient": true, "reject_non_fqdn_helo_hostname": true,
	"reject_invalid_helo_hostname": true, "reject_unauth_pipelining": true,
	"check_recipient_maps": true, "permit_inet_interfaces": true,
	"reject_sender_login_mismatch": true, "reject_authenticated_sender_login_mismatch": true,
	"reject_unauthenticated_sender_login_mismatch": true, "reject_multi_recipient_bounce": true,
	"permit_tls_clientcerts": true, "permit_tls_all_clientcerts": true,
	"permit_mx_backup": true,
}

// checker holds the compiled restriction lists and the tables the checks
// read.
type checker struct {
	p          *config.Params
	rw         *rewrite.Rewriter
	log        *maillog.Logger
	mynetworks *clientList

	// mxBackupNetworks is permit_mx_backup_networks (nil when empty).
	mxBackupNetworks *clientList
	usesMXBackup     bool // warned once that it is deprecated

	client, helo, sender, relay, recipient, data, eod, etrn []restriction
	classes                                                 map[string][]restriction

	localRcpt, virtualMailbox, relayRcpt, virtualAlias, canonical []*maps.Map
	senderLogins                                                  []*maps.Map

	// DNS lists: rbl_reply_maps; whether any restriction looks things
	// up in the DNS (smtpd then needs a resolver); the client-address
	// lists, asked when a session starts.
	rblReplyMaps     []*maps.Map
	relayClientcerts []*maps.Map
	policies         map[string]*policy.Client // by endpoint
	usesDNS          bool
	usesClientDNSXL  bool
	clientDNSXL      []dnsxlList
}

func newChecker(p *config.Params, rw *rewrite.Rewriter, log *maillog.Logger, mynetworks *clientList) (*checker, error) {
	c := &checker{p: p, rw: rw, log: log, mynetworks: mynetworks, classes: map[string][]restriction{}}
	for _, name := range p.SmtpdRestrictionClasses {
		c.classes[name] = nil // known before any list refers to it
	}
	for _, name := range p.SmtpdRestrictionClasses {
		raw, _ := p.Lookup(name)
		list, err := c.compile(name, config.SplitList(raw))
		if err != nil {
			return nil, err
		}
		c.classes[name] = list
	}
	lists := []struct {
		name string
		in   []string
		out  *[]restriction
	}{
		{"smtpd_client_restrictions", p.SmtpdClientRestrictions, &c.client},
		{"smtpd_helo_restrictions", p.SmtpdHeloRestrictions, &c.helo},
		{"smtpd_sender_restrictions", p.SmtpdSenderRestrictions, &c.sender},
		{"smtpd_relay_restrictions", p.SmtpdRelayRestrictions, &c.relay},
		{"smtpd_recipient_restrictions", p.SmtpdRecipientRestrictions, &c.recipient},
		{"smtpd_data_restrictions", p.SmtpdDataRestrictions, &c.data},
		{"smtpd_end_of_data_restrictions", p.SmtpdEndOfDataRestrictions, &c.eod},
		{"smtpd_etrn_restrictions", p.SmtpdEtrnRestrictions, &c.etrn},
	}
	for _, l := range lists {
		list, err := c.compile(l.name, l.in)
		if err != nil {
			return nil, err
		}
		*l.out = list
	}
	if !c.guardsRelay() {
		return nil, errors.New("smtpd_relay_restrictions and smtpd_recipient_restrictions: neither list has reject_unauth_destination, defer_unauth_destination, reject, defer or defer_if_permit; refusing to run an open relay")
	}
	tables := []struct {
		name string
		in   []string
		out  *[]*maps.Map
	}{
		{"local_recipient_maps", p.LocalRecipientMaps, &c.localRcpt},
		{"virtual_mailbox_maps", p.VirtualMailboxMaps, &c.virtualMailbox},
		{"relay_recipient_maps", p.RelayRecipientMaps, &c.relayRcpt},
		{"virtual_alias_maps", p.VirtualAliasMaps, &c.virtualAlias},
		{"canonical_maps", append(append([]string(nil), p.RecipientCanonicalMaps...), p.CanonicalMaps...), &c.canonical},
		{"smtpd_sender_login_maps", p.SmtpdSenderLoginMaps, &c.senderLogins},
		{"rbl_reply_maps", p.RBLReplyMaps, &c.rblReplyMaps},
		{"relay_clientcerts", p.RelayClientcerts, &c.relayClientcerts},
	}
	if len(p.PermitMxBackupNetworks) > 0 {
		var err error
		if c.mxBackupNetworks, err = newClientList("permit_mx_backup_networks", p.PermitMxBackupNetworks); err != nil {
			return nil, err
		}
	}
	for _, t := range tables {
		m, err := maps.OpenAll(t.in)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
		*t.out = m
	}
	return c, nil
}

func (c *checker) compile(param string, items []string) ([]restriction, error) {
	var out []restriction
	for i := 0; i < len(items); i++ {
		name := strings.ToLower(items[i])
		switch {
		case restrictionsWithTable[name]:
			if i+1 >= len(items) {
				return nil, fmt.Errorf("%s: %s needs a table argument", param, name)
			}
			i++
			m, err := maps.Open(items[i])
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", param, name, err)
			}
			out = append(out, restriction{name: name, table: m})
			if _, ok := restrictionsServerAccess[name]; ok {
				c.usesDNS = true
			}
		case restrictionsWithDomain[name]:
			if i+1 >= len(items) {
				return nil, fmt.Errorf("%s: %s needs a DNS list domain argument", param, name)
			}
			i++
			l, err := parseDNSXL(items[i])
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", param, name, err)
			}
			c.usesDNS = true
			if name == "reject_rbl_client" || name == "reject_rbl" || name == "permit_dnswl_client" {
				c.usesClientDNSXL = true
				c.clientDNSXL = append(c.clientDNSXL, l)
			}
			out = append(out, restriction{name: name, list: l})
		case name == "sleep":
			// sleep N: a pause, for clients that talk before their
			// turn (Postfix's; at most smtpd_timeout).
			if i+1 >= len(items) {
				return nil, fmt.Errorf("%s: sleep needs a number of seconds", param)
			}
			i++
			n, err := strconv.Atoi(items[i])
			if err != nil || n < 0 {
				return nil, fmt.Errorf("%s: sleep %q: want a number of seconds", param, items[i])
			}
			out = append(out, restriction{name: name, arg: items[i], pause: time.Duration(n) * time.Second})
		case name == "check_policy_service":
			if i+1 >= len(items) {
				return nil, fmt.Errorf("%s: %s needs a server argument", param, name)
			}
			i++
			cl, err := c.policyClient(items[i])
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", param, name, err)
			}
			out = append(out, restriction{name: name, arg: items[i], policy: cl})
		case restrictionsUnknown[name]:
			if name != "reject_unknown_client_hostname" && name != "reject_unknown_client" && name != "reject_unknown_reverse_client_hostname" {
				c.usesDNS = true
			}
			out = append(out, restriction{name: name})
		case simpleRestrictions[name]:
			if name == "permit_mx_backup" && !c.usesMXBackup {
				c.usesMXBackup = true
				c.usesDNS = true
				c.log.Warnf(`%s: support for restriction "permit_mx_backup" will be removed; instead, specify "relay_domains"`, param)
			}
			out = append(out, restriction{name: name})
		case c.isClass(items[i]):
			out = append(out, restriction{name: items[i]})
		default:
			return nil, fmt.Errorf("%s: unknown or unsupported restriction %q", param, items[i])
		}
	}
	return out, nil
}

func (c *checker) isClass(name string) bool {
	_, ok := c.classes[name]
	return ok
}

// guardsRelay is Postfix's start-up check against an open relay.
func (c *checker) guardsRelay() bool {
	for _, list := range [][]restriction{c.relay, c.recipient} {
		for _, r := range list {
			switch r.name {
			case "reject_unauth_destination", "defer_unauth_destination", "reject", "defer", "defer_if_permit":
				return true
			}
		}
	}
	return false
}

// checkState is the evaluation of the lists for one event.
type checkState struct {
	s         *session
	rcpt      string // the recipient as the client wrote it (source route removed)
	etrn      string // the ETRN domain
	res       *rewrite.Resolution
	resErr    error
	deferPerm *outcome.Reply // defer_if_permit: applies if the outcome is permit
	deferRej  *outcome.Reply // defer_if_reject: a later 5xx reject gives this instead
	warnNext  bool           // warn_if_reject: log the next reject instead
	unlisted  bool           // reject_unlisted_recipient already ran
	depth     int
}

type verdict int

const (
	dunno verdict = iota
	permit
	rejected
)

// resolve resolves the recipient once per check.
func (st *checkState) resolve() (*rewrite.Resolution, error) {
	if st.res == nil && st.resErr == nil {
		res, err := st.s.srv.rw.Resolve(st.rcpt, st.s.txn.sender)
		st.res, st.resErr = &res, err
	}
	return st.res, st.resErr
}

// rcptCheck runs every list that applies at RCPT TO and returns the reply
// to refuse with, or nil.
func (c *checker) rcptCheck(st *checkState) *outcome.Reply {
	var lists []struct {
		class listClass
		list  []restriction
	}
	add := func(cl listClass, l []restriction) {
		lists = append(lists, struct {
			class listClass
			list  []restriction
		}{cl, l})
	}
	if c.p.SmtpdDelayReject {
		add(classClient, c.client)
		add(classHelo, c.helo)
		add(classSender, c.sender)
	}
	add(classRecipient, c.relay)
	add(classRecipient, c.recipient)
	for _, l := range lists {
		v, r := c.runList(st, l.class, l.list)
		if v == rejected {
			return r
		}
	}
	if c.p.SmtpdRejectUnlistedRecipient && !st.unlisted {
		if r := c.unlistedRecipient(st); r != nil {
			return c.rejectReply(st, r)
		}
	}
	if c.p.SmtpdRejectUnlistedSender {
		if r := c.unlistedSender(st); r != nil {
			return c.rejectReply(st, r)
		}
	}
	return st.deferPerm
}

// etrnCheck runs the client, helo and ETRN lists for an ETRN domain
// (with smtpd_delay_reject the first two wait for the command, as Postfix
// runs them there too).
func (c *checker) etrnCheck(s *session, domain string) *outcome.Reply {
	st := &checkState{s: s, etrn: domain}
	var lists [][]restriction
	if c.p.SmtpdDelayReject {
		lists = append(lists, c.client, c.helo)
	}
	classes := []listClass{classClient, classHelo}
	for i, l := range lists {
		if v, r := c.runList(st, classes[i], l); v == rejected {
			return r
		}
	}
	if v, r := c.runList(st, classEtrn, c.etrn); v == rejected {
		return r
	}
	return st.deferPerm
}

// stageCheck runs one list at its own command (client, helo and sender
// lists without smtpd_delay_reject; data and end-of-data lists).
func (c *checker) stageCheck(s *session, class listClass, list []restriction) *outcome.Reply {
	if len(list) == 0 {
		return nil
	}
	st := &checkState{s: s}
	if v, r := c.runList(st, class, list); v == rejected {
		return r
	}
	return st.deferPerm
}

func (c *checker) runList(st *checkState, class listClass, list []restriction) (verdict, *outcome.Reply) {
	for _, r := range list {
		// warn_if_reject covers exactly the restriction after it.
		warn := st.warnNext && r.name != "warn_if_reject"
		if warn {
			st.warnNext = false
		}
		v, rep := c.apply(st, class, r)
		switch {
		case v == permit:
			return permit, nil
		case v == rejected && warn:
			st.s.logRejectTo("reject_warning", *rep, st.rcpt)
		case v == rejected:
			return rejected, c.rejectReply(st, rep)
		}
	}
	return dunno, nil
}

// rejectReply applies defer_if_reject to a reject.
func (c *checker) rejectReply(st *checkState, r *outcome.Reply) *outcome.Reply {
	if st.deferRej != nil && r.Permanent() {
		return st.deferRej
	}
	return r
}

// deferIfReject remembers why a later rejection must become a deferral:
// the first reason counts, as in Postfix (a DNS lookup or a list that
// could not be asked, defer_if_reject).
func (st *checkState) deferIfReject(r *outcome.Reply) {
	if st.deferRej == nil {
		st.deferRej = r
	}
}

// subject is what a reply of this class names.
func (st *checkState) subject(class listClass) string {
	s := st.s
	switch class {
	case classClient:
		return s.clientName + "[" + s.clientAddr.String() + "]"
	case classHelo:
		return s.helo
	case classSender:
		return printable(s.txn.sender)
	case classRecipient:
		return printable(st.rcpt)
	case classData:
		return "DATA"
	case classEtrn:
		return st.etrn
	case classSASL:
		return printable(s.saslUser)
	case classCcert:
		if s.ccert != nil {
			return s.ccert.fingerprint
		}
	}
	return ""
}

func (st *checkState) rejectf(class listClass, code int, enh, format string, args ...any) *outcome.Reply {
	r := outcome.New(code, enh, "<"+st.subject(class)+">: "+classText[class]+": "+fmt.Sprintf(format, args...))
	return &r
}

func (c *checker) apply(st *checkState, class listClass, r restriction) (verdict, *outcome.Reply) {
	s := st.s
	p := c.p
	switch r.name {
	case "permit":
		return permit, nil
	case "dunno":
		return dunno, nil
	case "reject":
		return rejected, st.rejectf(class, p.RejectCode, codeClass(p.RejectCode)+".7.1", "Access denied")
	case "defer":
		return rejected, st.rejectf(class, p.DeferCode, codeClass(p.DeferCode)+".7.1", "Access denied")
	case "defer_if_permit":
		if st.deferPerm == nil {
			st.deferPerm = st.rejectf(class, 450, "4.7.0", "defer_if_permit requested")
		}
		return dunno, nil
	case "defer_if_reject":
		st.deferIfReject(st.rejectf(class, 450, "4.7.0", "defer_if_reject requested"))
		return dunno, nil
	case "warn_if_reject":
		st.warnNext = true
		return dunno, nil
	case "permit_mynetworks":
		ok, err := s.inMynetworks()
		if err != nil {
			return rejected, st.tempFail(class, err)
		}
		if ok {
			return permit, nil
		}
	case "permit_sasl_authenticated":
		if s.saslUser != "" {
			return permit, nil
		}
	case "permit_inet_interfaces":
		if c.rw.IsOwnAddress(s.clientAddr) {
			return permit, nil
		}
	case "reject_rbl_client", "reject_rbl", "permit_dnswl_client", "reject_rhsbl_client", "reject_rhsbl_reverse_client",
		"reject_rhsbl_helo", "reject_rhsbl_sender", "reject_rhsbl_recipient", "permit_rhswl_client":
		if strings.HasPrefix(r.name, "permit_") && st.rcpt != "" {
			// An allow list never permits relaying (Postfix's
			// safety): at RCPT only a recipient we accept anyway.
			if v, rep := c.apply(st, class, restriction{name: "permit_auth_destination"}); v != permit {
				return dunno, rep
			}
		}
		return c.dnsxl(st, r)
	case "reject_unknown_client_hostname", "reject_unknown_client", "reject_unknown_reverse_client_hostname",
		"reject_unknown_helo_hostname", "reject_unknown_hostname", "reject_unknown_sender_domain", "reject_unknown_recipient_domain":
		return c.unknown(st, class, r)
	case "check_policy_service":
		return c.askPolicy(st, class, r)
	case "reject_unauth_pipelining":
		// Improper pipelining already ends the session
		// (smtpd_forbid_unauth_pipelining); nothing is left to judge.
	case "reject_unauth_destination", "defer_unauth_destination", "permit_auth_destination":
		if st.rcpt == "" {
			return dunno, nil
		}
		res, err := st.resolve()
		if err != nil {
			return rejected, st.tempFail(class, err)
		}
		authorized := !res.Routed && res.Class != rewrite.ClassDefault
		switch {
		case r.name == "permit_auth_destination" && authorized:
			return permit, nil
		case r.name == "reject_unauth_destination" && !authorized:
			code := p.RelayDomainsRejectCode
			rep := outcome.New(code, codeClass(code)+".7.1", "<"+printable(st.rcpt)+">: Relay access denied")
			return rejected, &rep
		case r.name == "defer_unauth_destination" && !authorized:
			rep := outcome.New(454, "4.7.1", "<"+printable(st.rcpt)+">: Relay access denied")
			return rejected, &rep
		}
	case "permit_mx_backup":
		return c.mxBackup(st)
	case "reject_unlisted_recipient", "check_recipient_maps":
		if st.rcpt == "" {
			return dunno, nil
		}
		st.unlisted = true
		if rep := c.unlistedRecipient(st); rep != nil {
			return rejected, rep
		}
	case "reject_unlisted_sender":
		if rep := c.unlistedSender(st); rep != nil {
			return rejected, rep
		}
	case "reject_sender_login_mismatch", "reject_authenticated_sender_login_mismatch", "reject_unauthenticated_sender_login_mismatch":
		// smtpd_sender_login_maps: who owns which sender address.
		snd := s.txn.sender
		if !s.txn.active || snd == "" {
			return dunno, nil
		}
		m, found, err := maps.LookupAddress(c.senderLogins, strings.ToLower(snd), p.RecipientDelimiter, nil)
		if err != nil {
			return rejected, st.tempFail(class, err)
		}
		owners := map[string]bool{}
		if found {
			for _, o := range strings.FieldsFunc(m.Value, func(r rune) bool { return r == ',' || r == ' ' }) {
				owners[o] = true
			}
		}
		authOnly := r.name == "reject_authenticated_sender_login_mismatch"
		unauthOnly := r.name == "reject_unauthenticated_sender_login_mismatch"
		switch {
		case s.saslUser != "" && !unauthOnly && !owners[s.saslUser]:
			return rejected, st.rejectf(classSender, 553, "5.7.1", "not owned by user %s", s.saslUser)
		case s.saslUser == "" && !authOnly && found:
			return rejected, st.rejectf(classSender, 553, "5.7.1", "not logged in")
		}
	case "reject_non_fqdn_sender":
		if snd := s.txn.sender; s.txn.active && snd != "" && !fqdnAddress(snd) {
			return rejected, st.rejectf(classSender, p.NonFqdnRejectCode, codeClass(p.NonFqdnRejectCode)+".5.2", "need fully-qualified address")
		}
	case "reject_non_fqdn_recipient":
		if st.rcpt != "" && !fqdnAddress(st.rcpt) {
			return rejected, st.rejectf(classRecipient, p.NonFqdnRejectCode, codeClass(p.NonFqdnRejectCode)+".5.2", "need fully-qualified address")
		}
	case "reject_non_fqdn_helo_hostname":
		if s.helo != "" && !fqdnHost(s.helo) {
			return rejected, st.rejectf(classHelo, p.NonFqdnRejectCode, codeClass(p.NonFqdnRejectCode)+".5.2", "need fully-qualified hostname")
		}
	case "reject_invalid_helo_hostname":
		if s.helo != "" && !validHelo(s.helo) {
			return rejected, st.rejectf(classHelo, p.InvalidHostnameRejectCode, codeClass(p.InvalidHostnameRejectCode)+".5.2", "Invalid name")
		}
	case "check_client_access", "check_reverse_client_hostname_access":
		name := s.clientName
		if r.name == "check_reverse_client_hostname_access" {
			name = s.reverseName
		}
		return c.access(st, classClient, r.table, clientKeys(name, s.clientAddr))
	case "check_helo_access":
		if s.helo == "" {
			return dunno, nil
		}
		return c.access(st, classHelo, r.table, domainKeys(strings.ToLower(strings.Trim(s.helo, "[]"))))
	case "check_sender_access":
		if !s.txn.active {
			return dunno, nil
		}
		return c.access(st, classSender, r.table, addressKeys(s.txn.sender, p.SmtpdNullAccessLookupKey))
	case "check_recipient_access":
		if st.rcpt == "" {
			return dunno, nil
		}
		return c.access(st, classRecipient, r.table, addressKeys(st.rcpt, ""))
	case "check_client_a_access", "check_client_mx_access", "check_client_ns_access",
		"check_reverse_client_a_access", "check_reverse_client_mx_access", "check_reverse_client_ns_access",
		"check_helo_a_access", "check_helo_mx_access", "check_helo_ns_access",
		"check_sender_a_access", "check_sender_mx_access", "check_sender_ns_access",
		"check_recipient_a_access", "check_recipient_mx_access", "check_recipient_ns_access":
		return c.serverAccess(st, r)
	case "permit_tls_clientcerts", "permit_tls_all_clientcerts", "check_ccert_access":
		return c.ccertCheck(st, r)
	case "check_sasl_access":
		if s.saslUser == "" {
			return dunno, nil
		}
		return c.access(st, classSASL, r.table, []lookupKey{{s.saslUser, false}})
	case "reject_multi_recipient_bounce":
		// Mail from <> to more than one recipient: nobody sends a
		// bounce like that (Postfix counts the recipient at hand at
		// RCPT, all of them at DATA).
		n := len(s.txn.rcpts)
		if st.rcpt != "" {
			n++
		}
		if s.txn.active && s.txn.sender == "" && n > 1 {
			// The reply names what the list checks: the recipient
			// at RCPT, <DATA> at DATA (Postfix's wording).
			code := p.MultiRecipientBounceRejectCode
			return rejected, st.rejectf(class, code, codeClass(code)+".5.3", "Multi-recipient bounce")
		}
	case "sleep":
		select {
		case <-time.After(min(r.pause, p.SmtpdTimeout)):
		case <-s.ctx.Done():
		}
	default:
		if list, ok := c.classes[r.name]; ok {
			if st.depth > 10 {
				c.log.Warnf("restriction class %s: nested too deep", r.name)
				return rejected, &replyConfig
			}
			st.depth++
			defer func() { st.depth-- }()
			return c.runList(st, class, list)
		}
	}
	return dunno, nil
}

func codeClass(code int) string { return strconv.Itoa(code / 100) }

func (st *checkState) tempFail(class listClass, err error) *outcome.Reply {
	st.s.srv.log.Warnf("%s: %v", st.s.namaddr(), err)
	return st.rejectf(class, 451, "4.3.0", "Temporary lookup failure")
}

// access looks the keys up in order and acts on the first result.
func (c *checker) access(st *checkState, class listClass, table *maps.Map, keys []lookupKey) (verdict, *outcome.Reply) {
	for _, k := range keys {
		if k.partial && !table.Fixed {
			// Pattern tables see whole names and addresses only.
			continue
		}
		v, ok, err := table.Lookup(k.key)
		if err != nil {
			return rejected, st.tempFail(class, err)
		}
		if ok {
			return c.action(st, class, table.Spec, v)
		}
	}
	return dunno, nil
}

// action interprets an access(5) result.
func (c *checker) action(st *checkState, class listClass, spec, value string) (verdict, *outcome.Reply) {
	p := c.p
	word, text, _ := strings.Cut(strings.TrimSpace(value), " ")
	text = strings.TrimSpace(text)
	orDefault := func(t string) string {
		if t == "" {
			return "Access denied"
		}
		return t
	}
	switch up := strings.ToUpper(word); {
	case up == "OK" || up == "PERMIT":
		return permit, nil
	case up == "DUNNO":
		return dunno, nil
	case up == "REJECT":
		code := p.AccessMapRejectCode
		enh, t := enhancedFor(code, orDefault(text))
		return rejected, st.rejectf(class, code, enh, "%s", t)
	case up == "DEFER":
		code := p.AccessMapDeferCode
		enh, t := enhancedFor(code, orDefault(text))
		return rejected, st.rejectf(class, code, enh, "%s", t)
	case up == "DEFER_IF_PERMIT" || up == "DEFER_IF_REJECT":
		// Postfix's generic text for these two is not "Access denied".
		if text == "" {
			text = "Service unavailable"
		}
		code := p.AccessMapDeferCode
		enh, t := enhancedFor(code, text)
		if up == "DEFER_IF_REJECT" {
			st.deferIfReject(st.rejectf(class, code, enh, "%s", t))
		} else if st.deferPerm == nil {
			st.deferPerm = st.rejectf(class, code, enh, "%s", t)
		}
		return dunno, nil
	case up == "WARN" || up == "INFO":
		st.s.logAction(strings.ToLower(up), text, st.rcpt)
		return dunno, nil
	case up == "PREPEND":
		name, _, ok := strings.Cut(text, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") || !printableASCII(text) {
			c.log.Warnf("access table %s: bad PREPEND header %q", spec, maillog.Clip(value, 200))
			return rejected, &replyConfig
		}
		a := st.s.acts()
		a.prepend = append(a.prepend, text)
		return dunno, nil
	case up == "HOLD" || up == "DISCARD" || up == "REDIRECT" || up == "BCC":
		// Postfix's log line says what triggered the action.
		s := st.s
		who := "<" + st.subject(class) + ">: " + strings.TrimSuffix(classText[class], " rejected") + " "
		a := s.acts()
		switch up {
		case "HOLD":
			s.logAction("hold", who+cmp.Or(text, "triggers HOLD action"), st.rcpt)
			a.hold = true
		case "DISCARD":
			s.logAction("discard", who+cmp.Or(text, "triggers DISCARD action"), st.rcpt)
			a.discard = true
			return permit, nil
		default:
			target := strings.Fields(text + " ")[0]
			if !strings.Contains(target, "@") {
				c.log.Warnf("access table %s entry %q requires user@domain target", spec, maillog.Clip(value, 200))
				return dunno, nil
			}
			s.logAction(strings.ToLower(up), who+"triggers "+up+" "+printable(target), st.rcpt)
			if up == "REDIRECT" {
				a.redirect = target
			} else if len(a.bcc) < 20 {
				a.bcc = append(a.bcc, target)
			}
		}
		return dunno, nil
	case allDigits(up):
		code, _ := strconv.Atoi(up)
		switch {
		case len(up) == 3 && code >= 400 && code < 600:
			enh, t := enhancedFor(code, orDefault(text))
			return rejected, st.rejectf(class, code, enh, "%s", t)
		case len(up) == 3 && code >= 200 && code < 300, len(up) != 3:
			// An all-numerical result other than a 4xx/5xx code is OK
			// (as in cidr tables of client networks).
			return permit, nil
		}
	default:
		// A restriction or class name as a result.
		name := strings.ToLower(word)
		if simpleRestrictions[name] || c.isClass(word) {
			if st.depth > 10 {
				return rejected, &replyConfig
			}
			st.depth++
			defer func() { st.depth-- }()
			return c.apply(st, class, restriction{name: name})
		}
	}
	// FILTER and anything else are not supported by this build:
	// refusing with 4xx keeps the table's intent (never let through what
	// the operator meant to stop).
	c.log.Warnf("access table %s: unsupported result %q", spec, value)
	return rejected, &replyConfig
}

// printableASCII reports a header line made of printable ASCII.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// lookupKey is one access-table query; partial keys (parent domains,
// address prefixes, user@) are for fixed-string tables only.
type lookupKey struct {
	key     string
	partial bool
}

// clientKeys: the name, its parent domains, the address, then the address
// with its last octets (IPv4) or groups (IPv6) removed, as Postfix's
// check_client_access does.
func clientKeys(name string, addr netip.Addr) []lookupKey {
	var keys []lookupKey
	if name != "" && name != "unknown" {
		keys = domainKeys(strings.ToLower(name))
	}
	a := addr.Unmap().String()
	keys = append(keys, lookupKey{a, false})
	sep := "."
	if addr.Unmap().Is6() {
		sep = ":"
	}
	for {
		i := strings.LastIndex(a, sep)
		if i <= 0 {
			break
		}
		a = strings.TrimRight(a[:i], sep)
		if a == "" {
			break
		}
		keys = append(keys, lookupKey{a, true})
	}
	return keys
}

// domainKeys: the domain and its parents (a.b.c, b.c, c).
func domainKeys(d string) []lookupKey {
	keys := []lookupKey{{d, false}}
	for {
		i := strings.IndexByte(d, '.')
		if i < 0 {
			return keys
		}
		d = d[i+1:]
		if d == "" {
			return keys
		}
		keys = append(keys, lookupKey{d, true})
	}
}

// addressKeys: user@domain, domain and its parents, user@ (access(5)
// order); the null sender is looked up as nullKey.
func addressKeys(addr, nullKey string) []lookupKey {
	if addr == "" {
		return []lookupKey{{nullKey, false}}
	}
	addr = printable(addr)
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return []lookupKey{{addr, false}}
	}
	keys := []lookupKey{{addr, false}}
	for _, k := range domainKeys(strings.ToLower(addr[i+1:])) {
		keys = append(keys, lookupKey{k.key, true})
	}
	return append(keys, lookupKey{addr[:i+1], true})
}

func fqdnAddress(a string) bool {
	i := strings.LastIndexByte(a, '@')
	return i >= 0 && fqdnHost(a[i+1:])
}

func fqdnHost(h string) bool {
	if strings.HasPrefix(h, "[") {
		return true
	}
	return strings.Contains(strings.Trim(h, "."), ".")
}

// validHelo: a host name or an address literal.
func validHelo(h string) bool {
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		_, err := netip.ParseAddr(strings.TrimPrefix(h[1:len(h)-1], "IPv6:"))
		return err == nil
	}
	if len(h) > 255 || h == "" {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// unlistedRecipient refuses recipients in our own domains that no table
// knows (smtpd_check.c check_rcpt_maps).
func (c *checker) unlistedRecipient(st *checkState) *outcome.Reply {
	res, err := st.resolve()
	if err != nil {
		return st.tempFail(classRecipient, err)
	}
	if res.Class == rewrite.ClassDefault {
		return nil
	}
	addr := res.Recipient
	found := func(tables []*maps.Map) (bool, error) {
		if len(tables) == 0 {
			return false, nil
		}
		_, ok, err := maps.LookupAddress(tables, addr, c.p.RecipientDelimiter, c.rw.IsLocalDomain)
		return ok, err
	}
	for _, t := range [][]*maps.Map{c.canonical, c.virtualAlias} {
		ok, err := found(t)
		if err != nil {
			return st.tempFail(classRecipient, err)
		}
		if ok {
			return nil
		}
	}
	var tables []*maps.Map
	var code int
	var what string
	switch res.Class {
	case rewrite.ClassLocal:
		tables, code, what = c.localRcpt, c.p.UnknownLocalRecipientRejectCode, "local recipient"
		if len(c.p.LocalRecipientMaps) == 0 {
			return nil
		}
	case rewrite.ClassVirtualMailbox:
		tables, code, what = c.virtualMailbox, c.p.UnknownVirtualMailboxRejectCode, "virtual mailbox"
		if len(tables) == 0 {
			return nil
		}
	case rewrite.ClassRelay:
		tables, code, what = c.relayRcpt, c.p.UnknownRelayRecipientRejectCode, "relay recipient"
		if len(tables) == 0 {
			return nil
		}
	case rewrite.ClassVirtualAlias:
		code, what = c.p.UnknownVirtualAliasRejectCode, "virtual alias"
	}
	if tables != nil {
		ok, err := found(tables)
		if err != nil {
			return st.tempFail(classRecipient, err)
		}
		if ok {
			return nil
		}
	}
	return st.rejectf(classRecipient, code, codeClass(code)+".1.1", "User unknown in %s table", what)
}

// unlistedSender is the same test for the sender (reject_unlisted_sender).
func (c *checker) unlistedSender(st *checkState) *outcome.Reply {
	snd := st.s.txn.sender
	if !st.s.txn.active || snd == "" {
		return nil
	}
	sub := &checkState{s: st.s, rcpt: snd}
	r := c.unlistedRecipient(sub)
	if r == nil {
		return nil
	}
	out := *r
	out.Text = strings.Replace(out.Text, "<"+printable(snd)+">: Recipient address rejected", "<"+printable(snd)+">: Sender address rejected", 1)
	if out.Permanent() {
		out.Enhanced = codeClass(out.Code) + ".1.0"
	}
	return &out
}
