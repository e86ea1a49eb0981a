package rewrite

import (
	"slices"
	"strings"

	"mailsrv/maps"
)

// DomainList matches domains against a Postfix domain list parameter
// (mydestination, relay_domains, virtual_*_domains): literal domains,
// ".example.com" for the subdomains, "!domain" to exclude, and type:table
// lookups. With subdomains set (the parameter is in
// parent_domain_matches_subdomains) example.com also matches its
// subdomains. The first matching entry decides.
type DomainList struct {
	entries    []domainEntry
	subdomains bool
}

type domainEntry struct {
	negate bool
	domain string
	table  *maps.Map
}

// NewDomainList compiles a list; name is the parameter's name.
func NewDomainList(name string, list []string, parentMatches []string) (*DomainList, error) {
	d := &DomainList{subdomains: slices.Contains(parentMatches, name)}
	for _, e := range list {
		neg := strings.HasPrefix(e, "!")
		e = strings.TrimPrefix(e, "!")
		if strings.Contains(e, ":") && !strings.HasPrefix(e, "[") {
			m, err := maps.Open(e)
			if err != nil {
				return nil, err
			}
			d.entries = append(d.entries, domainEntry{negate: neg, table: m})
			continue
		}
		d.entries = append(d.entries, domainEntry{negate: neg, domain: strings.ToLower(strings.TrimSuffix(e, "."))})
	}
	return d, nil
}

// Empty reports whether the list has no entries.
func (d *DomainList) Empty() bool { return d == nil || len(d.entries) == 0 }

// Match reports whether domain is in the list. A table error is returned
// so that the caller defers instead of guessing.
func (d *DomainList) Match(domain string) (bool, error) {
	if d == nil {
		return false, nil
	}
	domain = strings.ToLower(domain)
	for _, e := range d.entries {
		hit, err := e.match(domain, d.subdomains)
		if err != nil {
			return false, err
		}
		if hit {
			return !e.negate, nil
		}
	}
	return false, nil
}

func (e domainEntry) match(domain string, subdomains bool) (bool, error) {
	if e.table != nil {
		if _, ok, err := e.table.Lookup(domain); err != nil || ok {
			return ok, err
		}
		// Parent domains: key "example.com" (subdomain matching) or
		// ".example.com".
		for d := domain; ; {
			i := strings.IndexByte(d, '.')
			if i < 0 {
				return false, nil
			}
			d = d[i+1:]
			keys := []string{"." + d}
			if subdomains {
				keys = append(keys, d)
			}
			for _, k := range keys {
				if _, ok, err := e.table.Lookup(k); err != nil || ok {
					return ok, err
				}
			}
		}
	}
	if strings.HasPrefix(e.domain, ".") {
		return strings.HasSuffix(domain, e.domain), nil
	}
	if domain == e.domain {
		return true, nil
	}
	return subdomains && strings.HasSuffix(domain, "."+e.domain), nil
}
