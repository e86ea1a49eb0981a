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
	return writeIndexed(out, st.Mode().Perm(), opts, func(add func(Entry) error) error {
		return parseSource(src, name, opts, add)
	}, nil)
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

// writeIndexed collects entries (first one wins unless Replace), then
// writes the CDB file. keep, when set, lists existing entries to start from
// (postmap -i) — they lose to new ones.
func writeIndexed(out string, mode os.FileMode, opts BuildOptions, source func(add func(Entry) error) error, keep []Entry) (int, error) {
	index := map[string]int{}
	var entries []Entry
	put := func(e Entry, fromSource bool) {
		if !opts.NoFold {
			e.Key = strings.ToLower(e.Key)
		}
		if i, dup := index[e.Key]; dup {
			if opts.Replace || !fromSource {
				entries[i] = e
				return
			}
			if !opts.QuietDups && opts.Warn != nil {
				opts.Warn("%s: duplicate entry: %q", out, e.Key)
			}
			return
		}
		index[e.Key] = len(entries)
		entries = append(entries, e)
	}
	for _, e := range keep {
		put(e, true)
	}
	err := source(func(e Entry) error {
		if _, dup := index[foldKey(e.Key, opts)]; dup && keep != nil {
			put(e, false) // -i: the new value replaces the old one
			return nil
		}
		put(e, true)
		return nil
	})
	if err != nil {
		return 0, err
	}
	if _, ok := index["@"]; opts.Aliases && !ok {
		// Sendmail compatibility marker that postalias also writes.
		put(Entry{Key: "@", Value: "@"}, true)
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
	if old == nil {
		old = []Entry{}
	}
	return writeIndexed(out, mode, opts, func(add func(Entry) error) error {
		return parseSource(r, "-", opts, add)
	}, old)
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
	_, err = writeIndexed(out, st.Mode().Perm(), opts, func(func(Entry) error) error { return nil }, kept)
	return n, err
}
