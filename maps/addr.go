package maps

import "strings"

// SplitAddress splits user@domain at the last @ ("" domain when none).
func SplitAddress(addr string) (local, domain string) {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[:i], addr[i+1:]
	}
	return addr, ""
}

// SplitExtension splits a local part at the first recipient delimiter
// character: "user+ext" → "user", "ext". delims may hold several
// characters (Postfix 2.11+); "" means no extensions.
func SplitExtension(local, delims string) (user, ext string, delim byte) {
	if delims == "" {
		return local, "", 0
	}
	if i := strings.IndexAny(local, delims); i > 0 {
		return local[:i], local[i+1:], local[i]
	}
	return local, "", 0
}

// AddrMatch says how an address lookup matched.
type AddrMatch struct {
	Value string
	Key   string // the key form that matched
	// Extension is the address extension the matching key left out
	// ("" when the key kept it): callers propagate it (see
	// propagate_unmatched_extensions).
	Extension string
	Delim     byte
}

// LookupAddress searches tables for an address the way Postfix's
// mail_addr_find does: fixed-string tables are asked user+ext@domain,
// user@domain, user+ext, user and @domain, in that order (the forms without
// a domain only when isLocal says the domain is one of ours; the +ext forms
// only when recipient_delimiter is set); pattern tables get one query with
// the whole address. For each key form every table is tried in turn. An
// error stops the search: the caller must defer.
func LookupAddress(tables []*Map, addr, delims string, isLocal func(domain string) bool) (AddrMatch, bool, error) {
	local, domain := SplitAddress(addr)
	user, ext, delim := SplitExtension(local, delims)
	type form struct {
		key     string
		dropExt bool
	}
	var forms []form
	if domain != "" {
		forms = append(forms, form{addr, false})
		if ext != "" {
			forms = append(forms, form{user + "@" + domain, true})
		}
	}
	if domain == "" || (isLocal != nil && isLocal(domain)) {
		forms = append(forms, form{local, false})
		if ext != "" {
			forms = append(forms, form{user, true})
		}
	}
	if domain != "" {
		forms = append(forms, form{"@" + domain, false})
	}
	for i, f := range forms {
		for _, m := range tables {
			if !m.Fixed {
				if i > 0 {
					continue
				}
				v, ok, err := m.LookupExact(addr)
				if err != nil {
					return AddrMatch{}, false, err
				}
				if ok {
					return AddrMatch{Value: v, Key: addr}, true, nil
				}
				continue
			}
			v, ok, err := m.Lookup(f.key)
			if err != nil {
				return AddrMatch{}, false, err
			}
			if ok {
				am := AddrMatch{Value: v, Key: f.key}
				if f.dropExt {
					am.Extension, am.Delim = ext, delim
				}
				return am, true, nil
			}
		}
	}
	return AddrMatch{}, false, nil
}

// LookupAll asks each table for one key in turn; the first hit wins.
func LookupAll(tables []*Map, key string) (string, bool, error) {
	for _, m := range tables {
		v, ok, err := m.Lookup(key)
		if err != nil || ok {
			return v, ok, err
		}
	}
	return "", false, nil
}
