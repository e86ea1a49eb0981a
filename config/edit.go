package config

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Edit applies postconf -e style assignments ("name=value", value in main.cf
// form) and removals (postconf -X) to the top level of a TOML config file.
// Only the edited values change: comments, order and everything else in the
// file stay as they were. The result is validated before it replaces the
// file, atomically; on any error the file is left untouched.
func Edit(file string, assignments []string, removals []string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	for _, a := range assignments {
		name, value, ok := strings.Cut(a, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" {
			return fmt.Errorf("bad assignment %q: use name=value", a)
		}
		if data, err = setKey(data, name, tomlValue(name, value)); err != nil {
			return err
		}
	}
	for _, name := range removals {
		if data, err = removeKey(data, name); err != nil {
			return err
		}
	}
	if _, err := Parse(file, data); err != nil {
		return fmt.Errorf("not changing %s: %w", file, err)
	}
	return WriteFileAtomic(file, data)
}

var digits = regexp.MustCompile(`^[0-9]+$`)

// tomlValue renders a main.cf value as TOML of the parameter's type.
func tomlValue(name, value string) string {
	p, ok := registry[name]
	if !ok {
		p, _ = perTransport(name, map[string]bool{strings.SplitN(name, "_", 2)[0]: true})
	}
	if p != nil {
		switch p.Kind {
		case KindBool:
			if b, err := parseBool(value); err == nil {
				return fmt.Sprint(b)
			}
		case KindInt:
			if digits.MatchString(value) {
				return value
			}
		case KindList:
			l := SplitList(value)
			q := make([]string, len(l))
			for i, e := range l {
				q[i] = quote(e)
			}
			return "[" + strings.Join(q, ", ") + "]"
		}
	}
	return quote(value)
}

// quote writes a TOML basic string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func setKey(data []byte, name, value string) ([]byte, error) {
	pos, err := positions(data)
	if err != nil {
		return nil, err
	}
	if kp, ok := pos[name]; ok && !kp.table {
		return splice(data, kp.valueStart, kp.end, value), nil
	}
	// A new key goes after the last top-level key, else before the first
	// table, else at the end.
	at, firstTable := -1, len(data)
	for path, kp := range pos {
		if kp.table {
			firstTable = min(firstTable, kp.start)
		} else if !strings.Contains(path, ".") && kp.end > at {
			at = kp.end
		}
	}
	line := name + " = " + value + "\n"
	if at >= 0 {
		for at < len(data) && data[at] != '\n' {
			at++
		}
		if at < len(data) {
			at++
		} else {
			line = "\n" + line
		}
		return splice(data, at, at, line), nil
	}
	if firstTable < len(data) {
		return splice(data, firstTable, firstTable, line+"\n"), nil
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		line = "\n" + line
	}
	return splice(data, len(data), len(data), line), nil
}

func removeKey(data []byte, name string) ([]byte, error) {
	pos, err := positions(data)
	if err != nil {
		return nil, err
	}
	kp, ok := pos[name]
	if !ok || kp.table {
		return data, nil
	}
	start := kp.start
	for start > 0 && data[start-1] != '\n' {
		start--
	}
	end := kp.end
	for end < len(data) && data[end] != '\n' {
		end++
	}
	if end < len(data) {
		end++
	}
	return splice(data, start, end, ""), nil
}

func splice(data []byte, from, to int, s string) []byte {
	out := make([]byte, 0, len(data)+len(s))
	out = append(out, data[:from]...)
	out = append(out, s...)
	return append(out, data[to:]...)
}

// WriteFileAtomic replaces file with data: a temporary file in the same
// folder, fsync, rename, fsync of the folder. The file keeps its mode.
func WriteFileAtomic(file string, data []byte) error {
	mode := os.FileMode(0o644)
	if st, err := os.Stat(file); err == nil {
		mode = st.Mode().Perm()
	}
	dir := filepath.Dir(file)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(file)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
