package maps

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// maxLine bounds one logical line of a table source file.
const maxLine = 1 << 20

// Entry is one key/value pair read from a table source file.
type Entry struct {
	Line       int
	Key, Value string
}

// logicalLines reads Postfix's source file layout: '#' comment lines and
// blank lines are skipped; a line that starts with white space continues
// the previous logical line (the newline goes, the white space stays).
func logicalLines(r io.Reader, fn func(line int, text string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var cur strings.Builder
	start, n := 0, 0
	flush := func() error {
		if cur.Len() == 0 {
			return nil
		}
		text := strings.TrimRight(cur.String(), " \t\r")
		cur.Reset()
		if text == "" {
			// Only white space (a lone CR before a blank): no entry.
			return nil
		}
		return fn(start, text)
	}
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		trimmed := strings.TrimLeft(line, " \t")
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur.Len() > 0 {
				if cur.Len()+len(line) > maxLine {
					return fmt.Errorf("line %d: logical line longer than %d bytes", n, maxLine)
				}
				cur.WriteString(line)
				continue
			}
			// A continuation without a start: Postfix treats it as a
			// line of its own.
			line = trimmed
		}
		if err := flush(); err != nil {
			return err
		}
		start = n
		cur.WriteString(line)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", n+1, err)
	}
	return flush()
}

// ParseTable reads the key/value source format of postmap(1): "key value"
// with the key ending at the first white space, or "\"quoted key\" value"
// where the key runs to the closing quote (quotes included, as Postfix
// stores it). warn hears about lines without a value.
func ParseTable(r io.Reader, warn func(line int, msg string), fn func(Entry) error) error {
	return logicalLines(r, func(line int, text string) error {
		var key, rest string
		if text[0] == '"' {
			if end := strings.IndexByte(text[1:], '"'); end >= 0 {
				key, rest = text[:end+2], text[end+2:]
			}
		}
		if key == "" {
			i := strings.IndexAny(text, " \t")
			if i < 0 {
				key, rest = text, ""
			} else {
				key, rest = text[:i], text[i:]
			}
		}
		value := strings.TrimLeft(rest, " \t")
		if value == "" || (rest != "" && rest[0] != ' ' && rest[0] != '\t') {
			if warn != nil {
				warn(line, "expected format: key whitespace value")
			}
			return nil
		}
		return fn(Entry{Line: line, Key: key, Value: value})
	})
}

// ParseAliases reads aliases(5): "name: value, value, ...", where the value
// is a comma-separated list (commas inside double quotes do not count),
// stored as its elements joined with ", " as postalias does.
func ParseAliases(r io.Reader, warn func(line int, msg string), fn func(Entry) error) error {
	return logicalLines(r, func(line int, text string) error {
		name, value, ok := cutAliasName(text)
		if !ok {
			if warn != nil {
				warn(line, "need name:value pair")
			}
			return nil
		}
		return fn(Entry{Line: line, Key: name, Value: strings.Join(SplitAliasList(value), ", ")})
	})
}

// cutAliasName splits "name: value"; the name may be quoted.
func cutAliasName(text string) (string, string, bool) {
	i := 0
	if text[0] == '"' {
		end := strings.IndexByte(text[1:], '"')
		if end < 0 {
			return "", "", false
		}
		i = end + 2
	}
	j := strings.IndexByte(text[i:], ':')
	if j < 0 {
		return "", "", false
	}
	name := strings.TrimRight(text[:i+j], " \t")
	value := strings.TrimSpace(text[i+j+1:])
	if name == "" || value == "" {
		return "", "", false
	}
	return name, value, true
}

// SplitAliasList splits an alias value at commas outside double quotes,
// trimming each element.
func SplitAliasList(v string) []string {
	var out []string
	quoted := false
	start := 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				out = append(out, strings.TrimSpace(v[start:i]))
				start = i + 1
			}
		}
	}
	return append(out, strings.TrimSpace(v[start:]))
}
