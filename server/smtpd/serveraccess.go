package smtpd

import (
	"context"
	"strings"

	"mailsrv/maps"
	"mailsrv/outcome"
)

// check_{client,reverse_client,helo,sender,recipient}_{a,mx,ns}_access:
// an access table searched for the servers behind a name rather than the
// name itself: its addresses (a), its mail exchangers (mx: their names,
// then their addresses; the name itself when it has no MX) or its name
// servers (ns: of the name, or of the nearest parent that has some).
// As in Postfix, OK is no answer these tables may give (they serve to
// block): it counts as DUNNO, with a warning.

// restrictionsServerAccess maps each of these restrictions to what it
// looks at and how.
var restrictionsServerAccess = map[string]struct {
	subject listClass
	what    string // client, reverse_client, helo, sender, recipient
	kind    string // a, mx, ns
}{}

func init() {
	for _, what := range []string{"client", "reverse_client", "helo", "sender", "recipient"} {
		class := map[string]listClass{"client": classClient, "reverse_client": classClient, "helo": classHelo,
			"sender": classSender, "recipient": classRecipient}[what]
		for _, kind := range []string{"a", "mx", "ns"} {
			restrictionsServerAccess["check_"+what+"_"+kind+"_access"] = struct {
				subject listClass
				what    string
				kind    string
			}{class, what, kind}
			restrictionsWithTable["check_"+what+"_"+kind+"_access"] = true
		}
	}
}

func (c *checker) serverAccess(st *checkState, r restriction) (verdict, *outcome.Reply) {
	s := st.s
	spec := restrictionsServerAccess[r.name]
	var name string
	switch spec.what {
	case "client":
		name = s.clientName
	case "reverse_client":
		name = s.reverseName
	case "helo":
		name = s.helo
	case "sender":
		name = s.txn.sender
	case "recipient":
		name = st.rcpt
	}
	if at := strings.LastIndexByte(name, '@'); at >= 0 {
		name = name[at+1:]
	}
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "" || name == "unknown" || strings.HasPrefix(name, "[") || !validHelo(name) || s.stdio {
		return dunno, nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, dnsxlTimeout)
	defer cancel()
	dns := s.srv.dns
	var hosts []string
	switch spec.kind {
	case "a":
		return c.serverAddrs(ctx, st, spec.subject, r.table, name)
	case "mx":
		mxs, err := dns.MX(ctx, name, false)
		if err != nil {
			return dunno, nil // no MX to judge (Postfix: DUNNO)
		}
		for _, mx := range mxs {
			if mx.Host != "." {
				hosts = append(hosts, mx.Host)
			}
		}
		if len(mxs) == 0 {
			hosts = []string{name}
		}
	case "ns":
		for d := name; d != ""; {
			ns, err := dns.NS(ctx, d)
			if err == nil && len(ns) > 0 {
				hosts = ns
				break
			}
			_, parent, ok := strings.Cut(d, ".")
			if !ok {
				break
			}
			d = parent
		}
	}
	for _, h := range hosts {
		if v, rep := c.noOK(st, spec.subject, r.table, domainKeys(strings.ToLower(h))); v != dunno {
			return v, rep
		}
		if v, rep := c.serverAddrs(ctx, st, spec.subject, r.table, h); v != dunno {
			return v, rep
		}
	}
	return dunno, nil
}

// serverAddrs searches the table for a host's addresses.
func (c *checker) serverAddrs(ctx context.Context, st *checkState, class listClass, table *maps.Map, host string) (verdict, *outcome.Reply) {
	addrs, err := st.s.srv.dns.Addrs(ctx, host, nil)
	if err != nil {
		return dunno, nil
	}
	for _, a := range addrs {
		if v, rep := c.noOK(st, class, table, clientKeys("", a)); v != dunno {
			return v, rep
		}
	}
	return dunno, nil
}

// noOK is access without OK: a permit becomes DUNNO, with a warning.
func (c *checker) noOK(st *checkState, class listClass, table *maps.Map, keys []lookupKey) (verdict, *outcome.Reply) {
	v, rep := c.access(st, class, table, keys)
	if v == permit {
		c.log.Warnf("access table %s: an OK answer is not allowed for a server check; taken as DUNNO", table.Spec)
		return dunno, nil
	}
	return v, rep
}
