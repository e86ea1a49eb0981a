package maps

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// BuildOptions control how postmap and postalias write an indexed table.
type BuildOptions struct {
	Aliases   bool // aliases(5) source (postalias)
	NoFold    bool // -f: keep key case
	WithNUL   bool // -N: store keys and values with a terminating NUL
	Replace   bool // -r: a later duplicate replaces the earlier one
	QuietDups bool // -w: keep the first duplicate without a warning
	Warn      func(format string, args ...any)
}

// IndexedFile is the file postmap writes for an indexed table spec.
func IndexedFile(typ, name string) (string, error) {
	switch typ {
	case "hash":
		return name + ".db", nil
	case "cdb":
		return name + ".cdb", nil
	}
	return "", fmt.Errorf("unsupported table type for postmap: %s (use hash or cdb)", typ)
}

// Build reads the source file name and writes the indexed table for typ,
// atomically: readers see the old table or the new one, never half of one.
// The new file gets the source file's permissions.
func Build(typ, name string, opts BuildOptions) (int, error) {
	out, err := IndexedFile(typ, name)
	if err != nil {
		return 0, err
	}
	src, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return 0, err
	}
	return writeIndexed(out, st.Mode().Perm(), opts, nil, func(add func(Entry) error) error {
		return parseSource(src, name, opts, add)
	})
}

func parseSource(r io.Reader, name string, opts BuildOptions, add func(Entry) error) error {
	warn := func(line int, msg string) {
		if opts.Warn != nil {
			opts.Warn("%s, line %d: %s", name, line, msg)
		}
	}
	if opts.Aliases {
		return ParseAliases(r, warn, add)
	}
	return ParseTable(r, warn, add)
}

// writeIndexed writes the CDB file from base entries (the table as it was,
// for postmap -i and -d) and the source's entries. A source entry replaces
// a base entry with the same key; between source entries the first one
// wins (with a warning) unless Replace.
func writeIndexed(out string, mode os.FileMode, opts BuildOptions, base []Entry, source func(add func(Entry) error) error) (int, error) {
	index := map[string]int{}
	fromBase := map[string]bool{}
	var entries []Entry
	add := func(e Entry) {
		index[e.Key] = len(entries)
		entries = append(entries, e)
	}
	for _, e := range base {
		e.Key = foldKey(e.Key, opts)
		if _, dup := index[e.Key]; !dup {
			add(e)
			fromBase[e.Key] = true
		}
	}
	err := source(func(e Entry) error {
		e.Key = foldKey(e.Key, opts)
		i, dup := index[e.Key]
		switch {
		case !dup:
			add(e)
		case fromBase[e.Key] || opts.Replace:
			entries[i] = e
			delete(fromBase, e.Key)
		case !opts.QuietDups && opts.Warn != nil:
			opts.Warn("%s: duplicate entry: %q", out, e.Key)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if _, ok := index["@"]; opts.Aliases && !ok {
		// Sendmail compatibility marker that postalias also writes.
		add(Entry{Key: "@", Value: "@"})
	}
	w, err := createCDB(out)
	if err != nil {
		return 0, err
	}
	nul := ""
	if opts.WithNUL {
		nul = "\x00"
	}
	for _, e := range entries {
		w.add([]byte(e.Key+nul), []byte(e.Value+nul))
	}
	return len(entries), w.commit(mode)
}

func foldKey(k string, opts BuildOptions) string {
	if opts.NoFold {
		return k
	}
	return strings.ToLower(k)
}

// Dump returns every entry of an indexed table in file order.
func Dump(typ, name string) ([]Entry, error) {
	file, err := IndexedFile(typ, name)
	if err != nil {
		return nil, err
	}
	r, err := openCDB(file)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []Entry
	err = r.each(func(k, v []byte) error {
		out = append(out, Entry{Key: strings.TrimSuffix(string(k), "\x00"), Value: strings.TrimSuffix(string(v), "\x00")})
		return nil
	})
	return out, err
}

// Add merges entries into an indexed table (postmap -i): new values
// replace old ones.
func Add(typ, name string, opts BuildOptions, r io.Reader) (int, error) {
	out, err := IndexedFile(typ, name)
	if err != nil {
		return 0, err
	}
	old, err := Dump(typ, name)
	if err != nil && !os.IsNotExist(err) {
		return 0, err
	}
	mode := os.FileMode(0o644)
	if st, err := os.Stat(out); err == nil {
		mode = st.Mode().Perm()
	}
	return writeIndexed(out, mode, opts, old, func(add func(Entry) error) error {
		return parseSource(r, "-", opts, add)
	})
}

// Delete removes keys from an indexed table (postmap -d) and returns how
// many were there.
func Delete(typ, name string, opts BuildOptions, keys []string) (int, error) {
	out, err := IndexedFile(typ, name)
	if err != nil {
		return 0, err
	}
	old, err := Dump(typ, name)
	if err != nil {
		return 0, err
	}
	st, err := os.Stat(out)
	if err != nil {
		return 0, err
	}
	drop := map[string]bool{}
	for _, k := range keys {
		drop[foldKey(k, opts)] = true
	}
	var kept []Entry
	n := 0
	for _, e := range old {
		if drop[e.Key] {
			n++
			continue
		}
		kept = append(kept, e)
	}
	if n == 0 {
		return 0, nil
	}
	_, err = writeIndexed(out, st.Mode().Perm(), opts, kept, func(func(Entry) error) error { return nil })
	return n, err
}
