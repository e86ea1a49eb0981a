package smtpd

import (
	"fmt"
	"net/netip"
	"strings"

	"mailsrv/maps"
)

// clientList is Postfix's "namadr" list (mynetworks,
// smtpd_client_event_limit_exceptions, smtpd_forbid_bare_newline_exclusions):
// addresses, networks in CIDR form (IPv6 may be in brackets), host or
// domain names (".domain" matches its subdomains too), type:table lookups
// of the address or the name, and "!" to negate an entry. The first match
// decides.
type clientList struct {
	entries []clientEntry
}

type clientEntry struct {
	negate bool
	prefix netip.Prefix
	name   string
	table  *maps.Map
}

func newClientList(param string, list []string) (*clientList, error) {
	cl := &clientList{}
	for _, item := range list {
		e := clientEntry{}
		if strings.HasPrefix(item, "!") {
			e.negate = true
			item = item[1:]
		}
		if pfx, ok := parsePrefix(item); ok {
			e.prefix = pfx
		} else if strings.Contains(item, ":") && !strings.Contains(item, "[") {
			m, err := maps.Open(item)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", param, err)
			}
			e.table = m
		} else if item != "" {
			e.name = strings.ToLower(item)
		} else {
			continue
		}
		cl.entries = append(cl.entries, e)
	}
	return cl, nil
}

// parsePrefix reads 1.2.3.4, 1.2.3.0/24, [::1], [2001:db8::]/32, ::1/128.
func parsePrefix(s string) (netip.Prefix, bool) {
	addr, bits, hasBits := strings.Cut(s, "/")
	addr = strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	if !hasBits {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	if strings.HasPrefix(s, "[::ffff:") {
		// [::ffff:127.0.0.0]/104: an IPv4 network written as mapped IPv6.
		var n int
		if _, err := fmt.Sscanf(bits, "%d", &n); err != nil || n < 96 || n > 128 {
			return netip.Prefix{}, false
		}
		p, err := a.Prefix(n - 96)
		return p, err == nil
	}
	p, err := netip.ParsePrefix(a.String() + "/" + bits)
	if err != nil {
		return netip.Prefix{}, false
	}
	return p.Masked(), true
}

// match reports whether the client matches; an error (a table that cannot
// be read) is returned so the caller can defer instead of guessing.
func (cl *clientList) match(addr netip.Addr, name string) (bool, error) {
	if cl == nil {
		return false, nil
	}
	addr = addr.Unmap()
	name = strings.ToLower(name)
	for _, e := range cl.entries {
		hit := false
		switch {
		case e.table != nil:
			for _, key := range []string{addr.String(), name} {
				if key == "" || key == "unknown" {
					continue
				}
				_, ok, err := e.table.Lookup(key)
				if err != nil {
					return false, err
				}
				if ok {
					hit = true
					break
				}
			}
		case e.name != "":
			if strings.HasPrefix(e.name, ".") {
				hit = strings.HasSuffix(name, e.name)
			} else {
				hit = name == e.name || strings.HasSuffix(name, "."+e.name)
			}
		default:
			hit = e.prefix.Contains(addr)
		}
		if hit {
			return !e.negate, nil
		}
	}
	return false, nil
}
