package smtpd

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailsrv/internal/resolver"
	"mailsrv/maps"
	"mailsrv/outcome"
)

// DNS block and allow lists, as Postfix's smtpd_check.c has them:
// reject_rbl_client and permit_dnswl_client look the client's address
// up (reversed octets or nibbles under the list's domain), the rhsbl and
// rhswl restrictions a domain (the client's name, the HELO name, the
// sender's or recipient's domain). An A record means listed; a list may
// be written domain=127.0.0.2 or domain=127.0.0.[2..11;20] to count only
// some answers. A lookup that fails gives the client the benefit of the
// doubt (an allow list defers instead of permitting). Answers are kept
// for the session, and the client-address lists of a session are all
// asked at once when it starts.

// dnsxlTimeout bounds one list's lookups (A, then TXT for the reason).
const dnsxlTimeout = 10 * time.Second

// dnsCacheSize bounds the DNS answers the sessions share: a busy MX sees
// a few thousand distinct clients an hour.
const dnsCacheSize = 10000

// restrictionsWithDomain take the next list element as a DNS list domain.
var restrictionsWithDomain = map[string]bool{
	"reject_rbl_client": true, "reject_rbl": true, "permit_dnswl_client": true,
	"reject_rhsbl_client": true, "reject_rhsbl_reverse_client": true, "reject_rhsbl_helo": true,
	"reject_rhsbl_sender": true, "reject_rhsbl_recipient": true, "permit_rhswl_client": true,
}

// dnsxlList is a list domain with its answer filter: zen.example or
// zen.example=127.0.0.[2..11].
type dnsxlList struct {
	domain string // the DNS domain queried
	spec   string // as written (rbl_reply_maps key)
	filter []octetSet
}

// octetSet is one octet of a filter: the values it accepts.
type octetSet [256]bool

func parseDNSXL(spec string) (dnsxlList, error) {
	l := dnsxlList{spec: spec}
	domain, filter, hasFilter := strings.Cut(spec, "=")
	l.domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if l.domain == "" || !validHelo(l.domain) || strings.HasPrefix(l.domain, "[") {
		return l, fmt.Errorf("bad DNS list domain %q", spec)
	}
	if !hasFilter {
		return l, nil
	}
	// Four octets, each a number or [items] of numbers and n..m ranges
	// separated by ; (Postfix's ip_match).
	var octets []string
	for rest := filter; rest != ""; {
		var o string
		if strings.HasPrefix(rest, "[") {
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return l, fmt.Errorf("bad DNS list reply filter %q: missing ]", filter)
			}
			o, rest = rest[:end+1], rest[end+1:]
		} else if dot := strings.IndexByte(rest, '.'); dot >= 0 {
			o, rest = rest[:dot], rest[dot:]
		} else {
			o, rest = rest, ""
		}
		octets = append(octets, o)
		if strings.HasPrefix(rest, ".") {
			rest = rest[1:]
			if rest == "" {
				return l, fmt.Errorf("bad DNS list reply filter %q", filter)
			}
		} else if rest != "" {
			return l, fmt.Errorf("bad DNS list reply filter %q", filter)
		}
	}
	if len(octets) != 4 {
		return l, fmt.Errorf("bad DNS list reply filter %q: want four octets", filter)
	}
	for _, o := range octets {
		var set octetSet
		items := []string{o}
		if strings.HasPrefix(o, "[") {
			items = strings.Split(o[1:len(o)-1], ";")
		}
		for _, it := range items {
			lo, hi, isRange := strings.Cut(it, "..")
			a, err1 := strconv.Atoi(lo)
			b := a
			var err2 error
			if isRange {
				b, err2 = strconv.Atoi(hi)
			}
			if err1 != nil || err2 != nil || a < 0 || b > 255 || a > b {
				return l, fmt.Errorf("bad DNS list reply filter %q", filter)
			}
			for v := a; v <= b; v++ {
				set[v] = true
			}
		}
		l.filter = append(l.filter, set)
	}
	return l, nil
}

// matches reports whether an answer counts.
func (l dnsxlList) matches(a netip.Addr) bool {
	if l.filter == nil {
		return true
	}
	if !a.Is4() {
		return false
	}
	b := a.As4()
	for i, set := range l.filter {
		if !set[b[i]] {
			return false
		}
	}
	return true
}

// dnsxlAnswer is what a DNS list said about one name.
type dnsxlAnswer struct {
	done  chan struct{}
	addrs []netip.Addr // nil: not listed
	txt   string       // the reason (TXT records), up to 500 bytes
	soft  bool         // the lookup failed
}

// dnsxlCache holds a session's answers, by queried name.
type dnsxlCache struct {
	mu      sync.Mutex
	answers map[string]*dnsxlAnswer
}

// lookup asks the DNS about name once per session: a second caller waits
// for the first one's answer.
func (s *session) dnsxlLookup(name string) *dnsxlAnswer {
	c := &s.dnsxl
	c.mu.Lock()
	if c.answers == nil {
		c.answers = map[string]*dnsxlAnswer{}
	}
	a, ok := c.answers[name]
	if !ok {
		a = &dnsxlAnswer{done: make(chan struct{})}
		c.answers[name] = a
		go s.srv.askDNSXL(s.ctx, name, a)
	}
	c.mu.Unlock()
	select {
	case <-a.done:
	case <-s.ctx.Done():
		return &dnsxlAnswer{soft: true}
	}
	return a
}

func (srv *Server) askDNSXL(ctx context.Context, name string, a *dnsxlAnswer) {
	defer close(a.done)
	ctx, cancel := context.WithTimeout(ctx, dnsxlTimeout)
	defer cancel()
	addrs, err := srv.dns.Addrs(ctx, name, []string{"ipv4"})
	var de *resolver.DNSError
	switch {
	case errors.As(err, &de) && de.NotFound:
		return
	case err != nil:
		srv.log.Warnf("%s: RBL lookup error: %v", name, err)
		a.soft = true
		return
	}
	a.addrs = addrs
	if txts, err := srv.dns.TXT(ctx, name); err == nil {
		a.txt = strings.Join(txts, " / ")
		if len(a.txt) > 500 {
			a.txt = a.txt[:500]
		}
	}
}

// prefetchDNSXL asks every client-address list of the configuration at
// once, when the session starts: the answers are ready, or on their way,
// when the restrictions need them.
func (s *session) prefetchDNSXL() {
	if !s.srv.check.usesClientDNSXL || s.stdio {
		return
	}
	for _, l := range s.srv.check.clientDNSXL {
		name := reverseAddr(s.clientAddr) + "." + l.domain
		s.dnsxl.mu.Lock()
		if s.dnsxl.answers == nil {
			s.dnsxl.answers = map[string]*dnsxlAnswer{}
		}
		if _, ok := s.dnsxl.answers[name]; !ok {
			a := &dnsxlAnswer{done: make(chan struct{})}
			s.dnsxl.answers[name] = a
			go s.srv.askDNSXL(s.ctx, name, a)
		}
		s.dnsxl.mu.Unlock()
	}
}

// reverseAddr is an address as DNS lists want it: IPv4 octets, or IPv6
// nibbles, in reverse order.
func reverseAddr(a netip.Addr) string {
	if a.Is4() {
		b := a.As4()
		return fmt.Sprintf("%d.%d.%d.%d", b[3], b[2], b[1], b[0])
	}
	b := a.As16()
	var sb strings.Builder
	for i := 15; i >= 0; i-- {
		fmt.Fprintf(&sb, "%x.%x.", b[i]&0xf, b[i]>>4)
	}
	return strings.TrimSuffix(sb.String(), ".")
}

// listed asks a list about a name and applies its filter: the answer
// when listed, nil when not; soft when the lookup failed.
func (s *session) listed(l dnsxlList, name string) (a *dnsxlAnswer, soft bool) {
	ans := s.dnsxlLookup(name)
	if ans.soft {
		return nil, true
	}
	for _, addr := range ans.addrs {
		if l.matches(addr) {
			return ans, false
		}
	}
	return nil, false
}

// rhsName is the domain of what an rhsbl restriction checks (an address's
// domain, or a host name), or "" when there is nothing to look up: an
// address literal, a name ending in a number (Postfix skips those), a
// name that is not a host name.
func rhsName(what string) string {
	if at := strings.LastIndexByte(what, '@'); at >= 0 {
		what = what[at+1:]
	}
	what = strings.ToLower(strings.TrimSuffix(what, "."))
	if what == "" || strings.HasPrefix(what, "[") || !validHelo(what) {
		return ""
	}
	last := what[strings.LastIndexByte(what, '.')+1:]
	if _, err := strconv.Atoi(last); err == nil {
		return ""
	}
	return what
}

// dnsxl evaluates one DNS list restriction.
func (c *checker) dnsxl(st *checkState, r restriction) (verdict, *outcome.Reply) {
	s := st.s
	l := r.list
	var what, class, name string
	switch r.name {
	case "reject_rbl_client", "reject_rbl", "permit_dnswl_client":
		what, class = s.clientAddr.String(), "Client host"
		name = reverseAddr(s.clientAddr) + "." + l.domain
	case "reject_rhsbl_client", "permit_rhswl_client":
		what, class = s.clientName, "Client host"
	case "reject_rhsbl_reverse_client":
		what, class = s.reverseName, "Unverified Client host"
	case "reject_rhsbl_helo":
		what, class = s.helo, "Helo command"
	case "reject_rhsbl_sender":
		what, class = s.txn.sender, "Sender address"
	case "reject_rhsbl_recipient":
		what, class = st.rcpt, "Recipient address"
	}
	if name == "" {
		if what == "unknown" {
			return dunno, nil
		}
		d := rhsName(what)
		if d == "" {
			return dunno, nil
		}
		name = d + "." + l.domain
	}
	if s.stdio {
		return dunno, nil
	}
	ans, soft := s.listed(l, name)
	if strings.HasPrefix(r.name, "permit_") {
		switch {
		case soft:
			// Postfix: an allow list that cannot be asked defers a
			// later rejection rather than permitting.
			rep := outcome.New(450, "4.7.1", "<"+printable(what)+">: "+class+" rejected: Service unavailable")
			st.deferIfReject(&rep)
		case ans != nil:
			return permit, nil
		}
		return dunno, nil
	}
	if ans == nil {
		return dunno, nil
	}
	rep := c.rblReply(st, l, printable(what), class, ans.txt)
	return rejected, &rep
}

// rblReply is the refusal for a listed client, helo, sender or recipient:
// the list's template from rbl_reply_maps, else default_rbl_reply, with
// $rbl_code, $rbl_class, $rbl_what, $rbl_domain and $rbl_reason.
func (c *checker) rblReply(st *checkState, l dnsxlList, what, class, txt string) outcome.Reply {
	template := c.p.DefaultRBLReply
	if len(c.rblReplyMaps) > 0 {
		for _, key := range []string{l.spec, l.domain} {
			v, ok, err := maps.LookupAll(c.rblReplyMaps, key)
			if err != nil {
				c.log.Warnf("rbl_reply_maps: %v", err)
				return outcome.New(451, "4.3.0", "Server configuration error")
			}
			if ok {
				template = v
				break
			}
		}
	}
	vars := map[string]string{
		"rbl_code": strconv.Itoa(c.p.MapsRBLRejectCode), "rbl_class": class, "rbl_what": what,
		"rbl_domain": l.domain, "rbl_reason": printable(txt), "rbl_txt": printable(txt),
		"client_address": st.s.clientAddr.String(), "client_name": st.s.clientName,
		"helo_name": st.s.helo, "sender": printable(st.s.txn.sender), "recipient": printable(st.rcpt),
	}
	text := expandMacros(template, vars)
	code, err := strconv.Atoi(text[:min(3, len(text))])
	if err != nil || code < 400 || code > 599 || len(text) < 4 || text[3] != ' ' {
		c.log.Warnf("rbl response code configuration error: %s", text)
		return outcome.New(450, "4.7.1", "Service unavailable").WithClass(outcome.Policy)
	}
	enh, rest := enhancedFor(code, strings.TrimSpace(text[4:]))
	if rest == "" {
		rest = "Service unavailable"
	}
	return outcome.New(code, enh, rest).WithClass(outcome.Policy)
}

// expandMacros expands $name, ${name}, ${name?text} (text when name is
// not empty) and ${name:text} (text when it is) with vars; values are
// inserted as they are, unknown names as nothing.
func expandMacros(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		if s[i+1] == '{' {
			depth, end := 0, -1
			for j := i + 1; j < len(s); j++ {
				if s[j] == '{' {
					depth++
				} else if s[j] == '}' {
					depth--
					if depth == 0 {
						end = j
						break
					}
				}
			}
			if end < 0 {
				b.WriteString(s[i:])
				break
			}
			in := s[i+2 : end]
			n := 0
			for n < len(in) && isMacroChar(in[n]) {
				n++
			}
			name, rest := in[:n], in[n:]
			v := vars[name]
			switch {
			case rest == "":
				b.WriteString(v)
			case rest[0] == '?' && v != "":
				b.WriteString(expandMacros(rest[1:], vars))
			case rest[0] == ':' && v == "":
				b.WriteString(expandMacros(rest[1:], vars))
			}
			i = end
			continue
		}
		j := i + 1
		for j < len(s) && isMacroChar(s[j]) {
			j++
		}
		if j == i+1 {
			b.WriteByte('$')
			continue
		}
		b.WriteString(vars[s[i+1:j]])
		i = j - 1
	}
	return b.String()
}

func isMacroChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
