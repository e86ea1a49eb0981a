// Package rewrite is trivial-rewrite and the address half of cleanup:
// canonicalization of addresses (myorigin, append_at_myorigin, bang paths,
// the percent hack), canonical and virtual alias mapping, masquerading, and
// the resolver that gives each recipient its address class and its
// (transport, nexthop, recipient). smtpd's relay and recipient checks and
// qmgr's scheduling both use Resolve, so they never disagree.
package rewrite

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"mailsrv/config"
	"mailsrv/maps"
)

// Context says whose address is rewritten: envelope addresses and headers
// of local submissions use Local; headers from remote clients use Remote.
type Context int

const (
	Local Context = iota
	Remote
)

// Rewriter holds the compiled tables of one configuration.
type Rewriter struct {
	p *config.Params

	mydestination, relayDomains, virtualAlias, virtualMailbox *DomainList

	canonical, senderCanonical, recipientCanonical []*maps.Map
	virtualAliasMaps, transportMaps, relocated     []*maps.Map
	senderRelayhost, senderTransport               []*maps.Map

	ownAddrs map[netip.Addr]bool
}

// New compiles the rewriting and routing rules of a configuration.
func New(p *config.Params) (*Rewriter, error) {
	r := &Rewriter{p: p}
	var err error
	lists := []struct {
		name string
		list []string
		dst  **DomainList
	}{
		{"mydestination", p.Mydestination, &r.mydestination},
		{"relay_domains", p.RelayDomains, &r.relayDomains},
		{"virtual_alias_domains", p.VirtualAliasDomains, &r.virtualAlias},
		{"virtual_mailbox_domains", p.VirtualMailboxDomains, &r.virtualMailbox},
	}
	for _, l := range lists {
		if *l.dst, err = NewDomainList(l.name, l.list, p.ParentDomainMatchesSubdomains); err != nil {
			return nil, fmt.Errorf("%s: %w", l.name, err)
		}
	}
	tables := []struct {
		name string
		list []string
		dst  *[]*maps.Map
	}{
		{"canonical_maps", p.CanonicalMaps, &r.canonical},
		{"sender_canonical_maps", p.SenderCanonicalMaps, &r.senderCanonical},
		{"recipient_canonical_maps", p.RecipientCanonicalMaps, &r.recipientCanonical},
		{"virtual_alias_maps", p.VirtualAliasMaps, &r.virtualAliasMaps},
		{"transport_maps", p.TransportMaps, &r.transportMaps},
		{"relocated_maps", p.RelocatedMaps, &r.relocated},
		{"sender_dependent_relayhost_maps", p.SenderDependentRelayhostMaps, &r.senderRelayhost},
		{"sender_dependent_default_transport_maps", p.SenderDependentDefaultTransportMaps, &r.senderTransport},
	}
	for _, t := range tables {
		if *t.dst, err = maps.OpenAll(t.list); err != nil {
			return nil, fmt.Errorf("%s: %w", t.name, err)
		}
	}
	r.ownAddrs = ownAddresses(p)
	return r, nil
}

// ownAddresses are the IP addresses that make [ip] literals local:
// inet_interfaces (all of the machine's for "all") and proxy_interfaces.
func ownAddresses(p *config.Params) map[netip.Addr]bool {
	own := map[netip.Addr]bool{}
	add := func(s string) {
		if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
			own[a.Unmap()] = true
		}
	}
	for _, i := range append(append([]string(nil), p.InetInterfaces...), p.ProxyInterfaces...) {
		switch i {
		case "all":
			if addrs, err := net.InterfaceAddrs(); err == nil {
				for _, a := range addrs {
					if n, ok := a.(*net.IPNet); ok {
						add(n.IP.String())
					}
				}
			}
		case "loopback-only":
			add("127.0.0.1")
			add("::1")
		default:
			add(i)
		}
	}
	return own
}

// Canonicalize applies trivial-rewrite's "rewrite" to one address: source
// route stripped; for an address without @ the bang path
// (site!user → user@site), else the percent hack (user%site → user@site),
// else @$myorigin; .$mydomain when append_dot_mydomain; one trailing dot
// removed.
func (r *Rewriter) Canonicalize(addr string, ctx Context) string {
	p := r.p
	if addr == "" || addr == `""` {
		return addr
	}
	if addr == "@" {
		return ""
	}
	addr = stripRoute(addr)
	local, domain, hasAt := splitAt(addr)
	if !hasAt {
		switch {
		case p.SwapBangpath && strings.Contains(local, "!"):
			i := strings.IndexByte(local, '!')
			local, domain, hasAt = local[i+1:], local[:i], true
		case p.AllowPercentHack && strings.Contains(local, "%"):
			i := strings.LastIndexByte(local, '%')
			local, domain, hasAt = local[:i], local[i+1:], true
		case p.AppendAtMyorigin:
			if ctx == Remote {
				if p.RemoteHeaderRewriteDomain == "" {
					return addr
				}
				domain = p.RemoteHeaderRewriteDomain
			} else {
				domain = p.Myorigin
			}
			hasAt = true
		}
	}
	if !hasAt {
		return local
	}
	if p.AppendDotMydomain && domain != "" && !strings.Contains(domain, ".") && !strings.HasPrefix(domain, "[") {
		domain += "." + p.Mydomain
	}
	if strings.HasSuffix(domain, ".") && !strings.HasSuffix(domain, "..") {
		domain = domain[:len(domain)-1]
	}
	return local + "@" + domain
}

// Class is an address class (ADDRESS_CLASS_README).
type Class int

const (
	ClassLocal Class = iota
	ClassVirtualAlias
	ClassVirtualMailbox
	ClassRelay
	ClassDefault
)

func (c Class) String() string {
	return [...]string{"local", "virtual alias", "virtual mailbox", "relay", "default"}[c]
}

// Resolution is where a recipient goes.
type Resolution struct {
	Class     Class
	Transport string
	Nexthop   string
	Recipient string
	// Routed is set when the final local part still carries routing
	// characters (user%host@relay.example): such an address is never
	// authorized for relaying.
	Routed bool
	// Error is set for an address that cannot be delivered as written
	// (bad domain syntax, a leading -, an empty domain); the text says why.
	Error string
}

// ErrLookup is returned when a table could not be read: the caller must
// defer (4xx), never relay or bounce on a guess.
var ErrLookup = maps.ErrTemp

// isLocalDomain reports whether a domain is delivered here: mydestination,
// or an [ip] literal of one of our addresses.
func (r *Rewriter) isLocalDomain(domain string) (bool, error) {
	if strings.HasPrefix(domain, "[") && strings.HasSuffix(domain, "]") {
		a, err := netip.ParseAddr(literalAddr(domain[1 : len(domain)-1]))
		return err == nil && r.ownAddrs[a.Unmap()], nil
	}
	return r.mydestination.Match(domain)
}

// IsLocalDomain is isLocalDomain for other roles (errors count as not
// local; callers that must defer use Resolve).
func (r *Rewriter) IsLocalDomain(domain string) bool {
	ok, _ := r.isLocalDomain(domain)
	return ok
}

// Resolve gives a recipient its class and (transport, nexthop, recipient),
// as trivial-rewrite's "resolve" does. sender selects
// sender-dependent relayhosts and transports.
func (r *Rewriter) Resolve(addr, sender string) (Resolution, error) {
	p := r.p
	addr = r.Canonicalize(addr, Local)
	routing := routingOpts{bang: p.SwapBangpath, percent: p.AllowPercentHack}
	res := Resolution{}
	var local, domain string
	localDomain := false
	for guard := 0; ; guard++ {
		var hasAt bool
		local, domain, hasAt = splitAt(addr)
		if !hasAt {
			domain = ""
		}
		if strings.HasSuffix(domain, ".") && !strings.HasSuffix(domain, "..") {
			domain = domain[:len(domain)-1]
		}
		domain = strings.ToLower(domain)
		if domain != "" {
			isLocal, err := r.isLocalDomain(domain)
			if err != nil {
				return res, err
			}
			if !isLocal {
				break
			}
			localDomain = true
		}
		// A local (or absent) domain: look inside the local part for
		// routing, as in user%remote@local or remote!user@local.
		inner := local
		if p.ResolveDequotedAddress && isQuoted(inner) {
			inner = unquote(inner)
		}
		if guard > 10 || !hasRouting(inner, routing) {
			break
		}
		next := r.Canonicalize(inner, Local)
		if next == addr {
			// Nothing left to open.
			break
		}
		addr, localDomain = next, false
	}
	unq := local
	if p.ResolveDequotedAddress {
		unq = unquote(local)
	}
	switch {
	case local == "" || local == `""`:
		local = p.EmptyAddressRecipient
		if domain == "" {
			domain, localDomain = p.Myhostname, true
		}
	case domain == "" && strings.Contains(addr, "@"):
		if !p.ResolveNullDomain {
			res.Error = "empty domain"
		}
		domain, localDomain = p.Myhostname, true
	case domain == "":
		domain, localDomain = p.Myhostname, true
	}
	if res.Error == "" {
		res.Error = r.checkSyntax(unq, domain)
	}
	res.Routed = hasRouting(unq, routing)
	res.Recipient = local + "@" + domain

	parseTransport := func(spec string) (string, string) {
		tr, hop, _ := strings.Cut(spec, ":")
		return tr, hop
	}
	var transport, nexthop string
	switch {
	case localDomain:
		res.Class = ClassLocal
		transport, nexthop = parseTransport(p.LocalTransport)
	default:
		var err error
		var in bool
		if in, err = r.virtualAlias.Match(domain); err == nil && in && !r.virtualAlias.Empty() {
			res.Class = ClassVirtualAlias
		} else if err == nil {
			if in, err = r.virtualMailbox.Match(domain); err == nil && in {
				res.Class = ClassVirtualMailbox
			} else if err == nil {
				if in, err = r.relayDomains.Match(domain); err == nil && in {
					res.Class = ClassRelay
				} else {
					res.Class = ClassDefault
				}
			}
		}
		if err != nil {
			return res, err
		}
		switch res.Class {
		case ClassVirtualAlias:
			transport, nexthop = "error", "5.1.1 User unknown in virtual alias table"
		case ClassVirtualMailbox:
			transport, nexthop = parseTransport(p.VirtualTransport)
		case ClassRelay, ClassDefault:
			spec := p.RelayTransport
			if res.Class == ClassDefault {
				spec = p.DefaultTransport
				if v, ok, err := r.senderLookup(r.senderTransport, sender); err != nil {
					return res, err
				} else if ok {
					spec = v
				}
			}
			transport, nexthop = parseTransport(spec)
			if nexthop == "" {
				relay := p.Relayhost
				if v, ok, err := r.senderLookup(r.senderRelayhost, sender); err != nil {
					return res, err
				} else if ok && !strings.EqualFold(v, "DUNNO") {
					relay = v
				}
				nexthop = relay
			}
		}
	}
	if nexthop == "" {
		nexthop = domain
	}
	res.Transport, res.Nexthop = transport, nexthop

	if res.Class != ClassVirtualAlias && len(r.transportMaps) > 0 {
		if err := r.applyTransportMaps(&res, local, domain); err != nil {
			return res, err
		}
	}
	if len(r.relocated) > 0 {
		m, ok, err := maps.LookupAddress(r.relocated, res.Recipient, p.RecipientDelimiter, r.IsLocalDomain)
		if err != nil {
			return res, err
		}
		if ok {
			res.Transport, res.Nexthop = "error", "5.1.6 User has moved to "+m.Value
		}
	}
	return res, nil
}

// senderLookup asks sender-dependent tables: the address, then @domain;
// the null sender is looked up as <>.
func (r *Rewriter) senderLookup(tables []*maps.Map, sender string) (string, bool, error) {
	if len(tables) == 0 {
		return "", false, nil
	}
	if sender == "" {
		return maps.LookupAll(tables, r.p.SmtpdNullAccessLookupKey)
	}
	m, ok, err := maps.LookupAddress(tables, sender, r.p.RecipientDelimiter, nil)
	return m.Value, ok, err
}

// applyTransportMaps looks the recipient up in transport_maps: the address
// (with, then without extension), the domain, its parent domains as
// .parent, then "*" (transport(5)).
func (r *Rewriter) applyTransportMaps(res *Resolution, local, domain string) error {
	user, ext, _ := maps.SplitExtension(local, r.p.RecipientDelimiter)
	keys := []string{local + "@" + domain}
	if ext != "" {
		keys = append(keys, user+"@"+domain)
	}
	keys = append(keys, domain)
	for d := domain; strings.Contains(d, "."); {
		d = d[strings.IndexByte(d, '.')+1:]
		keys = append(keys, "."+d)
	}
	keys = append(keys, "*")
	for _, k := range keys {
		for _, m := range r.transportMaps {
			v, ok, err := m.Lookup(k)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			tr, hop, hasColon := strings.Cut(strings.TrimSpace(v), ":")
			if tr != "" {
				res.Transport = tr
			}
			switch {
			case hop != "":
				res.Nexthop = hop
			case hasColon || tr != "":
				// "smtp:" or "smtp": the recipient domain again.
				res.Nexthop = domain
			}
			return nil
		}
	}
	return nil
}

// checkSyntax flags addresses that cannot be delivered as written
// (trivial-rewrite's checks): bad [literal], bare IP address domain, bad hostname
// syntax, a local part starting with -.
func (r *Rewriter) checkSyntax(local, domain string) string {
	if strings.HasPrefix(local, "-") && !r.p.AllowMinUser {
		return "local part starts with -"
	}
	if strings.HasPrefix(domain, "[") {
		lit := literalAddr(strings.TrimSuffix(strings.TrimPrefix(domain, "["), "]"))
		if !strings.HasSuffix(domain, "]") {
			return "malformed address literal"
		}
		if _, err := netip.ParseAddr(lit); err != nil {
			return "malformed address literal"
		}
		return ""
	}
	if _, err := netip.ParseAddr(domain); err == nil && !r.p.ResolveNumericDomain {
		return "numeric domain name without [brackets]"
	}
	if !validHostname(domain) {
		return "malformed domain name"
	}
	return ""
}

// validHostname accepts letters, digits, - and . in labels of at most 63
// bytes (UTF-8 letters allowed for SMTPUTF8 domains).
func validHostname(d string) bool {
	if d == "" || len(d) > 255 || strings.HasPrefix(d, ".") || strings.Contains(d, "..") {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return false
		}
		for _, c := range label {
			if !(c == '-' || c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80) {
				return false
			}
		}
	}
	return true
}

// ExpansionError is a virtual alias expansion that went too far or could
// not read its tables: the message is not accepted (451 4.6.0).
type ExpansionError struct{ Reason string }

func (e *ExpansionError) Error() string { return "451 4.6.0 Alias expansion error: " + e.Reason }

// ExpandVirtual replaces a recipient by its virtual alias expansion,
// recursively: a result is looked up again, an address that appears in
// its own expansion is kept as it is, duplicates are dropped, and
// virtual_alias_recursion_limit, _expansion_limit and
// _address_length_limit bound the work. An address without an alias
// expands to itself.
func (r *Rewriter) ExpandVirtual(rcpt string) ([]string, error) {
	if len(r.virtualAliasMaps) == 0 {
		return []string{rcpt}, nil
	}
	var out []string
	seen := map[string]bool{}
	var walk func(addr string, depth int, path []string) error
	walk = func(addr string, depth int, path []string) error {
		if depth > r.p.VirtualAliasRecursionLimit {
			return &ExpansionError{fmt.Sprintf("unreasonable virtual_alias_maps map nesting for %s", rcpt)}
		}
		m, ok, err := maps.LookupAddress(r.virtualAliasMaps, addr, r.p.RecipientDelimiter, r.IsLocalDomain)
		if err != nil {
			return &ExpansionError{err.Error()}
		}
		if !ok {
			if !seen[strings.ToLower(addr)] {
				seen[strings.ToLower(addr)] = true
				out = append(out, addr)
			}
			return nil
		}
		for _, next := range maps.SplitAliasList(strings.ReplaceAll(m.Value, " ", ",")) {
			if next == "" {
				continue
			}
			next = r.Canonicalize(next, Local)
			if m.Extension != "" && slices.Contains(r.p.PropagateUnmatchedExtensions, "virtual") {
				next = addExtension(next, m.Delim, m.Extension)
			}
			if len(next) > r.p.VirtualAliasAddressLengthLimit {
				return &ExpansionError{fmt.Sprintf("unreasonable virtual_alias_maps address length for %s", rcpt)}
			}
			if strings.EqualFold(next, addr) || slices.ContainsFunc(path, func(s string) bool { return strings.EqualFold(s, next) }) {
				// In its own expansion (or a loop back up the path):
				// deliver as it is.
				if !seen[strings.ToLower(next)] {
					seen[strings.ToLower(next)] = true
					out = append(out, next)
				}
				continue
			}
			if err := walk(next, depth+1, append(path, addr)); err != nil {
				return err
			}
			if len(out) > r.p.VirtualAliasExpansionLimit {
				return &ExpansionError{fmt.Sprintf("unreasonable virtual_alias_maps expansion size for %s", rcpt)}
			}
		}
		return nil
	}
	if err := walk(rcpt, 0, nil); err != nil {
		return nil, err
	}
	return out, nil
}

// addExtension puts +ext back into an address's local part.
func addExtension(addr string, delim byte, ext string) string {
	local, domain, ok := splitAt(addr)
	if !ok {
		return addr + string(delim) + ext
	}
	return local + string(delim) + ext + "@" + domain
}

// Which addresses a canonical mapping concerns (the *_classes parameters).
const (
	EnvelopeSender    = "envelope_sender"
	EnvelopeRecipient = "envelope_recipient"
	HeaderSender      = "header_sender"
	HeaderRecipient   = "header_recipient"
)

// Canonical applies canonical mapping to an address of a class: for
// senders sender_canonical_maps then canonical_maps, for recipients
// recipient_canonical_maps then canonical_maps, each once (not recursive),
// then masquerade_domains where masquerade_classes says so.
func (r *Rewriter) Canonical(addr, class string) (string, error) {
	p := r.p
	type step struct {
		tables  []*maps.Map
		classes []string
	}
	first := step{r.recipientCanonical, p.RecipientCanonicalClasses}
	if class == EnvelopeSender || class == HeaderSender {
		first = step{r.senderCanonical, p.SenderCanonicalClasses}
	}
	steps := []step{first, {r.canonical, p.CanonicalClasses}}
	for _, s := range steps {
		if len(s.tables) == 0 || !slices.Contains(s.classes, class) {
			continue
		}
		m, ok, err := maps.LookupAddress(s.tables, addr, p.RecipientDelimiter, r.IsLocalDomain)
		if err != nil {
			return addr, err
		}
		if !ok {
			continue
		}
		next := strings.TrimSpace(m.Value)
		if strings.HasPrefix(next, "@") {
			// "@other": the same user in another domain.
			local, _, _ := splitAt(addr)
			next = local + next
		} else {
			next = r.Canonicalize(next, Local)
			if m.Extension != "" && slices.Contains(p.PropagateUnmatchedExtensions, "canonical") {
				next = addExtension(next, m.Delim, m.Extension)
			}
		}
		addr = next
	}
	if slices.Contains(p.MasqueradeClasses, class) {
		addr = r.Masquerade(addr)
	}
	return addr, nil
}

// Masquerade hides the subdomains listed in masquerade_domains:
// user@host.example.com → user@example.com. The first entry that fits
// decides; "!sub.example.com" before it keeps that subtree as it is.
// Local parts in masquerade_exceptions are left alone.
func (r *Rewriter) Masquerade(addr string) string {
	local, domain, ok := splitAt(addr)
	if !ok || len(r.p.MasqueradeDomains) == 0 || slices.Contains(r.p.MasqueradeExceptions, strings.ToLower(local)) {
		return addr
	}
	d := strings.ToLower(domain)
	for _, e := range r.p.MasqueradeDomains {
		neg := strings.HasPrefix(e, "!")
		e = strings.ToLower(strings.TrimPrefix(e, "!"))
		if neg {
			if d == e || strings.HasSuffix(d, "."+e) {
				return addr
			}
			continue
		}
		if strings.HasSuffix(d, "."+e) {
			return local + "@" + e
		}
	}
	return addr
}

// IsOwnAddress reports whether an IP address is one this host receives
// mail on (inet_interfaces, proxy_interfaces): smtpd's
// permit_inet_interfaces.
func (r *Rewriter) IsOwnAddress(a netip.Addr) bool {
	return r.ownAddrs[a.Unmap()]
}

// literalAddr strips the IPv6: tag of an address literal (any case: the
// domain has been folded to lower case by then).
func literalAddr(lit string) string {
	if len(lit) > 5 && strings.EqualFold(lit[:5], "IPv6:") {
		return lit[5:]
	}
	return lit
}
