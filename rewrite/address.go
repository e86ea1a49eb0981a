package rewrite

import "strings"

// splitAt splits an address at its last @ outside double quotes. ok is
// false when there is no such @.
func splitAt(addr string) (local, domain string, ok bool) {
	quoted := false
	at := -1
	for i := 0; i < len(addr); i++ {
		switch addr[i] {
		case '\\':
			i++
		case '"':
			quoted = !quoted
		case '@':
			if !quoted {
				at = i
			}
		}
	}
	if at < 0 {
		return addr, "", false
	}
	return addr[:at], addr[at+1:], true
}

// isQuoted reports whether a local part is (partly) quoted.
func isQuoted(local string) bool { return strings.Contains(local, `"`) }

// unquote removes double quotes and backslash escapes from a local part:
// "a@b"@c has the local part a@b once opened (resolve_dequoted_address).
func unquote(local string) string {
	if !strings.ContainsAny(local, `"\`) {
		return local
	}
	var b strings.Builder
	for i := 0; i < len(local); i++ {
		switch c := local[i]; c {
		case '"':
		case '\\':
			if i+1 < len(local) {
				i++
				b.WriteByte(local[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// hasRouting reports whether a (dequoted) local part still holds routing
// characters: user@host, host!user, user%host.
func hasRouting(local string, p routingOpts) bool {
	return strings.ContainsRune(local, '@') || (p.bang && strings.ContainsRune(local, '!')) || (p.percent && strings.ContainsRune(local, '%'))
}

type routingOpts struct{ bang, percent bool }

// stripRoute removes an RFC 822 source route: @a,@b:user@c → user@c.
func stripRoute(addr string) string {
	if !strings.HasPrefix(addr, "@") {
		return addr
	}
	if i := strings.IndexByte(addr, ':'); i >= 0 {
		return addr[i+1:]
	}
	return addr
}
