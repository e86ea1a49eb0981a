package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseDuration parses a Postfix time value: one or more integers each with
// an optional unit s (seconds), m (minutes), h (hours), d (days) or w
// (weeks), e.g. "300s", "5d", "1h30m". A bare number takes defUnit, as in
// main.cf ("smtpd_timeout = 300" means 300s, "maximal_queue_lifetime = 5"
// means 5 days).
func ParseDuration(s string, defUnit byte) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("empty time value")
	}
	var total time.Duration
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, fmt.Errorf("%q is not a time value (use a number and a unit: s, m, h, d or w)", s)
		}
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		if err != nil || n > 1<<40 {
			return 0, fmt.Errorf("%q: number out of range", s)
		}
		unit := defUnit
		rest = rest[i:]
		if rest != "" {
			unit = rest[0]
			rest = rest[1:]
		} else if total != 0 {
			return 0, fmt.Errorf("%q: missing unit after the last number", s)
		}
		var u time.Duration
		switch unit {
		case 's':
			u = time.Second
		case 'm':
			u = time.Minute
		case 'h':
			u = time.Hour
		case 'd':
			u = 24 * time.Hour
		case 'w':
			u = 7 * 24 * time.Hour
		default:
			return 0, fmt.Errorf("%q: unknown time unit %q (use s, m, h, d or w)", s, string(unit))
		}
		total += time.Duration(n) * u
	}
	return total, nil
}

// parseBool accepts Postfix's yes/no and TOML's true/false.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "yes", "true":
		return true, nil
	case "no", "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (use yes/no or true/false)", s)
}

// SplitList splits a main.cf list value at commas and white space, keeping
// text inside { } together (Postfix 3.x grouping, e.g. inline:{ a=b, c=d }).
func SplitList(s string) []string {
	var out []string
	depth, start := 0, -1
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{':
			depth++
		case c == '}':
			if depth > 0 {
				depth--
			}
		case depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n'):
			if start >= 0 {
				out = append(out, s[start:i])
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}

// JoinList is the inverse of SplitList, in postconf's output style.
func JoinList(l []string) string { return strings.Join(l, ", ") }

// FormatBool prints a boolean as postconf does.
func FormatBool(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
