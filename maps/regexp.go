package maps

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"regexp/syntax"
	"strings"
)

// regexpRule is one line of a regexp: or pcre: table.
type regexpRule struct {
	re      *regexp.Regexp
	negate  bool
	result  string // empty for if/endif
	ifDepth int    // for "if": index of the matching endif
	isIf    bool
}

type regexpTable struct {
	rules []regexpRule
}

// loadRegexp reads a regexp_table(5) / pcre_table(5) file:
//
//	/pattern/flags result
//	!/pattern/flags result
//	if /pattern/flags
//	...
//	endif
//
// regexp: patterns are POSIX extended regular expressions with
// leftmost-longest matching; pcre: patterns are Perl-style. Both are run by
// Go's regexp (RE2): a construct it cannot run (a back reference, a look-
// around) is an error naming the line, never a silent mismatch. Matching is
// case-insensitive unless the i flag toggles it.
func loadRegexp(path string, pcre bool) (table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseRegexp(f, path, pcre)
}

func parseRegexp(r io.Reader, name string, pcre bool) (*regexpTable, error) {
	t := &regexpTable{}
	var ifs []int
	err := logicalLines(r, func(line int, text string) error {
		fail := func(format string, args ...any) error {
			return fmt.Errorf("%s, line %d: %s", name, line, fmt.Sprintf(format, args...))
		}
		switch {
		case text == "endif":
			if len(ifs) == 0 {
				return fail("ignoring ENDIF without matching IF")
			}
			t.rules[ifs[len(ifs)-1]].ifDepth = len(t.rules)
			ifs = ifs[:len(ifs)-1]
			return nil
		case strings.HasPrefix(text, "if ") || strings.HasPrefix(text, "if\t") || strings.HasPrefix(text, "if!"):
			re, negate, rest, err := parsePattern(strings.TrimLeft(text[2:], " \t"), pcre)
			if err != nil {
				return fail("%v", err)
			}
			if rest != "" {
				return fail("text after IF pattern: %q", rest)
			}
			ifs = append(ifs, len(t.rules))
			t.rules = append(t.rules, regexpRule{re: re, negate: negate, isIf: true})
			return nil
		}
		re, negate, rest, err := parsePattern(text, pcre)
		if err != nil {
			return fail("%v", err)
		}
		if rest == "" {
			return fail("no replacement text")
		}
		if negate && strings.Contains(rest, "$") {
			// A negated pattern matched nothing, so there is nothing to
			// substitute.
			if err := checkSubst(rest, 0); err != nil {
				return fail("%v", err)
			}
		} else if err := checkSubst(rest, re.NumSubexp()); err != nil {
			return fail("%v", err)
		}
		t.rules = append(t.rules, regexpRule{re: re, negate: negate, result: rest})
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

// parsePattern reads [!]<delim>pattern<delim>flags and returns the rest of
// the line.
func parsePattern(text string, pcre bool) (*regexp.Regexp, bool, string, error) {
	negate := false
	if strings.HasPrefix(text, "!") {
		negate = true
		text = text[1:]
	}
	if text == "" {
		return nil, false, "", fmt.Errorf("missing pattern")
	}
	delim := text[0]
	if delim == ' ' || delim == '\t' || delim == '\\' {
		return nil, false, "", fmt.Errorf("bad pattern delimiter %q", string(delim))
	}
	end := -1
	for i := 1; i < len(text); i++ {
		if text[i] == '\\' && delim != '\\' {
			i++
			continue
		}
		if text[i] == delim {
			end = i
			break
		}
	}
	if end < 0 {
		return nil, false, "", fmt.Errorf("missing closing %q of the pattern", string(delim))
	}
	pat := text[1:end]
	rest := text[end+1:]
	flagEnd := strings.IndexAny(rest, " \t")
	if flagEnd < 0 {
		flagEnd = len(rest)
	}
	flags := rest[:flagEnd]
	rest = strings.TrimSpace(rest[flagEnd:])

	fold := true
	prefix := ""
	for _, c := range flags {
		switch {
		case c == 'i':
			fold = !fold
		case c == 'm':
			prefix += "(?m)"
		case c == 's' && pcre:
			prefix += "(?s)"
		case c == 'U' && pcre:
			prefix += "(?U)"
		case c == 'x' && !pcre:
			// regexp: x toggles POSIX extended syntax; basic syntax is
			// not supported.
			return nil, false, "", fmt.Errorf("flag x (basic regular expressions) is not supported")
		default:
			return nil, false, "", fmt.Errorf("flag %q is not supported", string(c))
		}
	}
	if fold {
		prefix = "(?i)" + prefix
	}
	if !pcre {
		// Refuse what POSIX extended syntax does not have, then run it
		// leftmost-longest as regexec does.
		if _, err := syntax.Parse(pat, syntax.POSIX); err != nil {
			return nil, false, "", fmt.Errorf("%v (POSIX extended syntax)", err)
		}
	}
	re, err := regexp.Compile(prefix + pat)
	if err != nil {
		return nil, false, "", err
	}
	if !pcre {
		re.Longest()
	}
	return re, negate, rest, nil
}

// checkSubst checks $n references against the number of groups.
func checkSubst(s string, groups int) error {
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			continue
		}
		j := i + 1
		if s[j] == '$' {
			i++
			continue
		}
		braced := s[j] == '{'
		if braced {
			j++
		}
		k := j
		for k < len(s) && s[k] >= '0' && s[k] <= '9' {
			k++
		}
		if k == j {
			continue
		}
		n := 0
		fmt.Sscanf(s[j:k], "%d", &n)
		if n > groups {
			return fmt.Errorf("out of range replacement index \"%s\"", s[i:k])
		}
		if braced && (k >= len(s) || s[k] != '}') {
			return fmt.Errorf("missing } in %q", s[i:])
		}
	}
	return nil
}

func (t *regexpTable) lookup(key string) (string, bool, error) {
	for i := 0; i < len(t.rules); i++ {
		r := &t.rules[i]
		m := r.re.FindStringSubmatchIndex(key)
		matched := (m != nil) != r.negate
		if r.isIf {
			if !matched {
				i = r.ifDepth - 1 // skip to the matching endif
			}
			continue
		}
		if !matched {
			continue
		}
		if r.negate {
			return r.result, true, nil
		}
		return expandGroups(r.result, key, m), true, nil
	}
	return "", false, nil
}

// expandGroups substitutes $n and ${n}; $$ is a dollar.
func expandGroups(tmpl, key string, m []int) string {
	if !strings.Contains(tmpl, "$") {
		return tmpl
	}
	var b strings.Builder
	for i := 0; i < len(tmpl); i++ {
		c := tmpl[i]
		if c != '$' || i+1 == len(tmpl) {
			b.WriteByte(c)
			continue
		}
		if tmpl[i+1] == '$' {
			b.WriteByte('$')
			i++
			continue
		}
		j := i + 1
		braced := tmpl[j] == '{'
		if braced {
			j++
		}
		k := j
		n := 0
		for k < len(tmpl) && tmpl[k] >= '0' && tmpl[k] <= '9' {
			n = n*10 + int(tmpl[k]-'0')
			k++
		}
		if k == j {
			b.WriteByte(c)
			continue
		}
		if braced {
			k++ // the }
		}
		if 2*n+1 < len(m) && m[2*n] >= 0 {
			b.WriteString(key[m[2*n]:m[2*n+1]])
		}
		i = k - 1
	}
	return b.String()
}
