package config

import (
	"fmt"
	"strings"
)

// expander expands $name references the way main.cf does: $name, ${name},
// $(name), ${name?text} (text if name is non-empty), ${name:text} (text if
// name is empty), and the Postfix 3 forms ${name?{text}:{text}}. A reference
// loop is an error that names the loop.
type expander struct {
	// raw returns the unexpanded value of a parameter, and whether the
	// name is defined at all.
	raw   func(name string) (string, bool)
	cache map[string]string
	stack []string
}

// maxExpanded bounds the length of an expanded value, so that a file like
// a = "$b$b", b = "$c$c", … (each level doubling) is an error instead of
// eating all memory.
const maxExpanded = 1 << 20

func newExpander(raw func(string) (string, bool)) *expander {
	return &expander{raw: raw, cache: map[string]string{}}
}

// param returns the fully expanded value of a parameter.
func (e *expander) param(name string) (string, error) {
	if v, ok := e.cache[name]; ok {
		return v, nil
	}
	for i, n := range e.stack {
		if n == name {
			loop := append(append([]string(nil), e.stack[i:]...), name)
			return "", fmt.Errorf("$%s refers to itself (%s)", name, strings.Join(loop, " -> "))
		}
	}
	raw, ok := e.raw(name)
	if !ok {
		return "", fmt.Errorf("undefined parameter $%s", name)
	}
	e.stack = append(e.stack, name)
	v, err := e.text(raw)
	e.stack = e.stack[:len(e.stack)-1]
	if err != nil {
		return "", err
	}
	e.cache[name] = v
	return v, nil
}

func isNameChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// text expands every reference in s.
func (e *expander) text(s string) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if b.Len() > maxExpanded {
			return "", fmt.Errorf("value longer than %d bytes after $name expansion", maxExpanded)
		}
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		switch open := s[i+1]; {
		case open == '{' || open == '(':
			close := byte('}')
			if open == '(' {
				close = ')'
			}
			end := matching(s, i+1, open, close)
			if end < 0 {
				return "", fmt.Errorf("missing %q in %q", string(close), s)
			}
			v, err := e.braced(s[i+2 : end])
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i = end
		case isNameChar(open):
			j := i + 1
			for j < len(s) && isNameChar(s[j]) {
				j++
			}
			v, err := e.param(s[i+1 : j])
			if err != nil {
				return "", err
			}
			if b.Len()+len(v) > maxExpanded {
				return "", fmt.Errorf("value longer than %d bytes after $name expansion", maxExpanded)
			}
			b.WriteString(v)
			i = j - 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// braced expands the inside of ${...}: name, name?text, name:text or
// name?{text}:{text}.
func (e *expander) braced(in string) (string, error) {
	j := 0
	for j < len(in) && isNameChar(in[j]) {
		j++
	}
	name := in[:j]
	if name == "" {
		return "", fmt.Errorf("bad parameter reference ${%s}", in)
	}
	if j == len(in) {
		return e.param(name)
	}
	op, rest := in[j], in[j+1:]
	if op != '?' && op != ':' {
		return "", fmt.Errorf("bad parameter reference ${%s}", in)
	}
	val, err := e.param(name)
	if err != nil {
		return "", err
	}
	ifSet, ifEmpty := "", ""
	if strings.HasPrefix(rest, "{") {
		end := matching(rest, 0, '{', '}')
		if end < 0 {
			return "", fmt.Errorf("bad parameter reference ${%s}", in)
		}
		first, tail := rest[1:end], strings.TrimSpace(rest[end+1:])
		if op == '?' {
			ifSet = first
			if strings.HasPrefix(tail, ":") {
				t := strings.TrimSpace(tail[1:])
				if !strings.HasPrefix(t, "{") || !strings.HasSuffix(t, "}") {
					return "", fmt.Errorf("bad parameter reference ${%s}", in)
				}
				ifEmpty = t[1 : len(t)-1]
			} else if tail != "" {
				return "", fmt.Errorf("bad parameter reference ${%s}", in)
			}
		} else {
			ifEmpty = first
		}
	} else if op == '?' {
		ifSet = rest
	} else {
		ifEmpty = rest
	}
	if val != "" {
		return e.text(ifSet)
	}
	return e.text(ifEmpty)
}

// matching returns the index of the bracket closing the one at s[i].
func matching(s string, i int, open, close byte) int {
	depth := 0
	for ; i < len(s); i++ {
		switch s[i] {
		case open:
			depth++
		case close:
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// references returns the parameter names that s refers to.
func references(s string) []string {
	var out []string
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			continue
		}
		j := i + 1
		if s[j] == '{' || s[j] == '(' {
			j++
		}
		k := j
		for k < len(s) && isNameChar(s[k]) {
			k++
		}
		if k > j {
			out = append(out, s[j:k])
		}
	}
	return out
}
