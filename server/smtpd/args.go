package smtpd

import (
	"strconv"
	"strings"

	"mailsrv/outcome"
	"mailsrv/queue"
)

// parsePath splits "<address> PARAM=VALUE ..." (after FROM: or TO:). Like
// Postfix with strict_rfc821_envelopes = no it accepts spaces after the
// colon and an address without angle brackets. It returns the address
// with any source route (@a,@b:) removed, the parameters, and false when
// the text is not an address at all.
func parsePath(s string) (addr string, params []string, ok bool) {
	s = strings.TrimLeft(s, " \t")
	var raw string
	if strings.HasPrefix(s, "<") {
		end := closingBracket(s)
		if end < 0 {
			return "", nil, false
		}
		raw, s = s[1:end], s[end+1:]
		if s != "" && s[0] != ' ' && s[0] != '\t' {
			return "", nil, false
		}
	} else {
		raw, s, _ = strings.Cut(s, " ")
		if raw == "" {
			return "", nil, false
		}
	}
	if !validAddress(raw) {
		return "", nil, false
	}
	if strings.HasPrefix(raw, "@") {
		// A source route: RFC 5321 says to ignore it.
		// Its domains hold no quotes, so the first ':' ends it, and
		// what follows must be an address of its own.
		i := strings.IndexByte(raw, ':')
		if i < 0 || strings.ContainsAny(raw[:i], `"\`) || !validAddress(raw[i+1:]) {
			return "", nil, false
		}
		raw = raw[i+1:]
	}
	if raw == `""` {
		raw = ""
	}
	return raw, strings.Fields(s), true
}

// closingBracket finds the '>' that closes the path, skipping quoted text.
func closingBracket(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == '>' && !quoted:
			return i
		}
	}
	return -1
}

// validAddress rejects what no mail address contains: control
// characters, unquoted white space and brackets, and unbalanced quotes.
func validAddress(a string) bool {
	if len(a) > 1000 {
		return false
	}
	quoted := false
	for i := 0; i < len(a); i++ {
		c := a[i]
		switch {
		case c < ' ' || c == 0x7f:
			return false
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == ' ' || c == '\t' || c == '<' || c == '>' || c == '(' || c == ')':
			return false
		}
	}
	return !quoted
}

// printable is an address as Postfix shows it in replies and logs: the
// internal form, quotes around the local part removed.
func printable(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	local, rest := addr, ""
	if i >= 0 {
		local, rest = addr[:i], addr[i:]
	}
	if len(local) >= 2 && local[0] == '"' && local[len(local)-1] == '"' {
		local = strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(local[1 : len(local)-1])
	}
	return local + rest
}

// mailParams are the MAIL FROM parameters.
type mailParams struct {
	size     int64
	body     string // 7BIT, 8BITMIME
	smtputf8 bool
	ret      string // FULL, HDRS
	envid    string
}

func parseMailParams(params []string) (mailParams, *outcome.Reply) {
	var mp mailParams
	for _, p := range params {
		key, val, hasVal := strings.Cut(p, "=")
		switch strings.ToUpper(key) {
		case "SIZE":
			n, err := strconv.ParseInt(val, 10, 64)
			if !hasVal || err != nil || n < 0 {
				r := reply(501, "5.5.4", "Bad message size syntax")
				return mp, &r
			}
			mp.size = n
		case "BODY":
			switch v := strings.ToUpper(val); v {
			case "7BIT", "8BITMIME":
				mp.body = v
			default:
				return mp, unsupported(p)
			}
		case "SMTPUTF8":
			if hasVal {
				return mp, unsupported(p)
			}
			mp.smtputf8 = true
		case "RET":
			switch v := strings.ToUpper(val); v {
			case "FULL", "HDRS":
				if mp.ret != "" {
					r := reply(501, "5.5.4", "Duplicate RET parameter")
					return mp, &r
				}
				mp.ret = v
			default:
				r := reply(501, "5.5.4", "Bad RET parameter syntax")
				return mp, &r
			}
		case "ENVID":
			id, ok := xtextDecode(val)
			if !hasVal || !ok || len(id) > 100 {
				r := reply(501, "5.5.4", "Bad ENVID parameter syntax")
				return mp, &r
			}
			mp.envid = id
		case "AUTH":
			// AUTH=<> or AUTH=addr: accepted and ignored (Postfix keeps
			// it only for authenticated clients; SASL comes later).
		default:
			return mp, unsupported(p)
		}
	}
	return mp, nil
}

// rcptParams are the RCPT TO parameters (DSN).
type rcptParams struct {
	notify int
	orcpt  string
}

func parseRcptParams(params []string) (rcptParams, *outcome.Reply) {
	var rp rcptParams
	for _, p := range params {
		key, val, hasVal := strings.Cut(p, "=")
		switch strings.ToUpper(key) {
		case "NOTIFY":
			bad := reply(501, "5.5.4", "Error: Bad NOTIFY parameter syntax")
			if !hasVal || rp.notify != 0 {
				return rp, &bad
			}
			for _, v := range strings.Split(strings.ToUpper(val), ",") {
				switch v {
				case "NEVER":
					rp.notify |= queue.NotifyNever
				case "SUCCESS":
					rp.notify |= queue.NotifySuccess
				case "FAILURE":
					rp.notify |= queue.NotifyFailure
				case "DELAY":
					rp.notify |= queue.NotifyDelay
				default:
					return rp, &bad
				}
			}
			if rp.notify&queue.NotifyNever != 0 && rp.notify != queue.NotifyNever {
				return rp, &bad
			}
		case "ORCPT":
			bad := reply(501, "5.5.4", "Error: Bad ORCPT parameter syntax")
			typ, addr, ok := strings.Cut(val, ";")
			if !hasVal || !ok || typ == "" || rp.orcpt != "" {
				return rp, &bad
			}
			dec, ok := xtextDecode(addr)
			if !ok || dec == "" || len(dec) > 1000 {
				return rp, &bad
			}
			rp.orcpt = strings.ToLower(typ) + ";" + dec
		default:
			return rp, unsupported(p)
		}
	}
	return rp, nil
}

func unsupported(p string) *outcome.Reply {
	r := reply(555, "5.5.4", "Unsupported option: %s", p)
	return &r
}

// xtextDecode decodes RFC 3461 xtext (+HH escapes); printable ASCII only.
func xtextDecode(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) {
				return "", false
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil || s[i+1] >= 'a' || s[i+2] >= 'a' {
				return "", false
			}
			b.WriteByte(byte(v))
			i += 2
		case c < '!' || c > '~' || c == '=':
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}
