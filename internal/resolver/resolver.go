// Package resolver is the project's DNS client: it asks DNS servers
// directly (miekg/dns), so that NXDOMAIN, NODATA and server failures can
// be told apart as Postfix does (the system resolver hides those
// differences), and so that tests point it at a fake server on
// loopback. The smtp client finds mail exchangers with it, smtpd's
// restrictions look up DNS lists and domains.
package resolver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Resolver asks its DNS servers in turn: those of /etc/resolv.conf
// unless mailsrv_dns_servers names others.
type Resolver struct {
	servers []string
	client  *dns.Client
	cache   *answerCache // nil: every lookup asks the servers
}

// NewResolver returns a resolver for the given servers (host:port), or
// for those of /etc/resolv.conf when there are none.
func NewResolver(servers []string) (*Resolver, error) {
	r := &Resolver{client: &dns.Client{Timeout: 5 * time.Second}}
	for _, s := range servers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			s = net.JoinHostPort(s, "53")
		}
		r.servers = append(r.servers, s)
	}
	if len(r.servers) == 0 {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("no DNS servers: %v", err)
		}
		for _, s := range cc.Servers {
			r.servers = append(r.servers, net.JoinHostPort(s, cc.Port))
		}
	}
	return r, nil
}

// DNSError is a failed lookup: NotFound (NXDOMAIN) is permanent,
// anything else temporary.
type DNSError struct {
	Name     string
	Type     string
	NotFound bool
}

func (e *DNSError) Error() string {
	if e.NotFound {
		return fmt.Sprintf("Host or domain name not found. Name service error for name=%s type=%s: Host not found", e.Name, e.Type)
	}
	return fmt.Sprintf("Host or domain name not found. Name service error for name=%s type=%s: Host not found, try again", e.Name, e.Type)
}

// query asks each server in turn; a server that fails is skipped.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	fail := &DNSError{Name: strings.TrimSuffix(name, "."), Type: dns.TypeToString[qtype]}
	if r.cache != nil {
		if e, ok := r.cache.get(name, qtype); ok {
			if e.notFound {
				fail.NotFound = true
				return nil, fail
			}
			return e.answer, nil
		}
	}
	for _, s := range r.servers {
		resp, _, err := r.client.ExchangeContext(ctx, m, s)
		if err != nil {
			continue
		}
		if r.cache != nil {
			r.cache.put(name, qtype, resp)
		}
		switch resp.Rcode {
		case dns.RcodeSuccess:
			return resp.Answer, nil
		case dns.RcodeNameError:
			fail.NotFound = true
			return nil, fail
		}
	}
	return nil, fail
}

// follow returns the records of type qtype for name, following CNAMEs
// (up to a few), and the final name.
func (r *Resolver) follow(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	for range 8 {
		ans, err := r.query(ctx, name, qtype)
		if err != nil {
			return nil, err
		}
		var out []dns.RR
		cname := ""
		for _, rr := range ans {
			if rr.Header().Rrtype == qtype {
				out = append(out, rr)
			} else if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, dns.Fqdn(name)) {
				cname = c.Target
			}
		}
		if len(out) > 0 || cname == "" {
			return out, nil
		}
		name = cname
	}
	return nil, &DNSError{Name: name, Type: dns.TypeToString[qtype]}
}

// MX is one mail exchanger.
type MX struct {
	Host string
	Pref uint16
}

// MX returns a domain's mail exchangers sorted by preference, those of
// equal preference shuffled when randomize is set. A null MX (RFC 7505)
// is returned as a single MX with Host ".".
func (r *Resolver) MX(ctx context.Context, domain string, randomize bool) ([]MX, error) {
	ans, err := r.follow(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	var out []MX
	for _, rr := range ans {
		mx := rr.(*dns.MX)
		out = append(out, MX{Host: strings.TrimSuffix(mx.Mx, "."), Pref: mx.Preference})
		if mx.Mx == "." {
			out[len(out)-1].Host = "."
		}
	}
	if randomize {
		rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Pref < out[j].Pref })
	return out, nil
}

// Addrs returns a host's addresses for the IP versions in protocols
// ("all", "ipv4", "ipv6"); an IP literal is returned as is.
func (r *Resolver) Addrs(ctx context.Context, host string, protocols []string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.TrimPrefix(strings.ToLower(host), "ipv6:")); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	v4, v6 := true, true
	if len(protocols) > 0 && !slices.Contains(protocols, "all") {
		v4, v6 = slices.Contains(protocols, "ipv4"), slices.Contains(protocols, "ipv6")
	}
	var out []netip.Addr
	var firstErr error
	found := false
	for _, t := range []struct {
		on bool
		q  uint16
	}{{v4, dns.TypeA}, {v6, dns.TypeAAAA}} {
		if !t.on {
			continue
		}
		ans, err := r.follow(ctx, host, t.q)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		found = true
		for _, rr := range ans {
			switch v := rr.(type) {
			case *dns.A:
				if a, ok := netip.AddrFromSlice(v.A.To4()); ok {
					out = append(out, a)
				}
			case *dns.AAAA:
				if a, ok := netip.AddrFromSlice(v.AAAA); ok {
					out = append(out, a)
				}
			}
		}
	}
	if len(out) == 0 {
		if firstErr != nil && !found {
			return nil, firstErr
		}
		return nil, &DNSError{Name: host, Type: "A", NotFound: found}
	}
	return out, nil
}

// TXT returns the texts of name's TXT records, each record's strings
// joined.
func (r *Resolver) TXT(ctx context.Context, name string) ([]string, error) {
	ans, err := r.follow(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range ans {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return out, nil
}

// NS returns the name servers of a domain (none when it has no NS
// records of its own).
func (r *Resolver) NS(ctx context.Context, domain string) ([]string, error) {
	ans, err := r.follow(ctx, domain, dns.TypeNS)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range ans {
		out = append(out, strings.TrimSuffix(rr.(*dns.NS).Ns, "."))
	}
	return out, nil
}
