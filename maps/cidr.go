package maps

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
)

type cidrRule struct {
	prefix  netip.Prefix
	negate  bool
	result  string
	isIf    bool
	endif   int
	invalid bool // a rule that can never match (Postfix warns and skips)
}

type cidrTable struct{ rules []cidrRule }

// loadCIDR reads a cidr_table(5) file: "network/prefix result", a bare
// address (a /32 or /128), "!pattern result", if/endif; IPv6 may be in
// brackets. The first match wins; the key is an IP address.
func loadCIDR(path string) (table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseCIDR(f, path)
}

func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.Replace(strings.Replace(s, "[", "", 1), "]", "", 1)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, err
		}
		if p.Masked() != p {
			return p, fmt.Errorf("non-null host address bits in %q, perhaps you should use %s instead", s, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parseCIDR(r io.Reader, name string) (*cidrTable, error) {
	t := &cidrTable{}
	var ifs []int
	err := logicalLines(r, func(line int, text string) error {
		fail := func(format string, args ...any) error {
			return fmt.Errorf("%s, line %d: %s", name, line, fmt.Sprintf(format, args...))
		}
		if text == "endif" {
			if len(ifs) == 0 {
				return fail("ENDIF without IF")
			}
			t.rules[ifs[len(ifs)-1]].endif = len(t.rules)
			ifs = ifs[:len(ifs)-1]
			return nil
		}
		isIf := strings.HasPrefix(text, "if ") || strings.HasPrefix(text, "if\t")
		if isIf {
			text = strings.TrimLeft(text[2:], " \t")
		}
		negate := strings.HasPrefix(text, "!")
		if negate {
			text = text[1:]
		}
		pat, rest, _ := strings.Cut(strings.Replace(text, "\t", " ", 1), " ")
		rest = strings.TrimSpace(rest)
		p, err := parsePrefix(pat)
		if err != nil {
			return fail("bad net/mask pattern %q: %v", pat, err)
		}
		if isIf {
			if rest != "" {
				return fail("text after IF pattern")
			}
			ifs = append(ifs, len(t.rules))
		} else if rest == "" {
			return fail("no result")
		}
		t.rules = append(t.rules, cidrRule{prefix: p, negate: negate, result: rest, isIf: isIf})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(ifs) > 0 {
		return nil, fmt.Errorf("%s: IF without matching ENDIF", name)
	}
	return t, nil
}

func (t *cidrTable) lookup(key string) (string, bool, error) {
	a, err := netip.ParseAddr(strings.Trim(key, "[]"))
	if err != nil {
		return "", false, nil
	}
	a = a.Unmap()
	for i := 0; i < len(t.rules); i++ {
		r := &t.rules[i]
		// A pattern of the other address family never matches, negated
		// or not.
		matched := r.prefix.Addr().BitLen() == a.BitLen() && r.prefix.Contains(a) != r.negate
		if r.isIf {
			if !matched {
				i = r.endif - 1
			}
			continue
		}
		if matched {
			return r.result, true, nil
		}
	}
	return "", false, nil
}
