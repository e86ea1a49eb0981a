// Package maps owns Postfix's lookup tables (dict_*), shared by every role:
// hash: and cdb: (indexed files that postmap builds), texthash:, regexp:,
// pcre:, cidr:, inline:, static:, unionmap:, pipemap:, fail:,
// unix:passwd.byname, with proxy: accepted and unwrapped. A lookup answers
// found, not found, or an error; an error (a table that cannot be opened or
// read) must make the caller fail temporarily, never treat the key as
// unknown.
package maps

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strings"
	"sync"
	"syscall"
	"time"

	"mailsrv/config"
)

// ErrTemp wraps every lookup error: the caller defers (4xx), it never
// bounces or relays because of it.
var ErrTemp = errors.New("table lookup failed")

type lookupError struct {
	spec string
	err  error
}

func (e *lookupError) Error() string   { return fmt.Sprintf("%s: %v", e.spec, e.err) }
func (e *lookupError) Unwrap() []error { return []error{ErrTemp, e.err} }

// table is one type's implementation.
type table interface {
	lookup(key string) (string, bool, error)
}

// Map is an open lookup table. It is safe for concurrent use. File-backed
// tables notice when their file changes and load it again.
type Map struct {
	Spec string // as configured, e.g. hash:/etc/mailsrv/virtual
	Type string
	Name string
	// Fixed is true for tables of fixed strings (hash, cdb, texthash,
	// inline, …): keys are folded to lower case and address lookups try
	// the partial keys user@domain, user, @domain. Pattern tables
	// (regexp, pcre, cidr) get exactly one query with the whole key.
	Fixed bool

	file  string // watched for changes; "" when not file-backed
	open  func() (table, error)
	mu    sync.Mutex
	impl  table
	err   error
	stamp fileStamp
	check time.Time
}

type fileStamp struct {
	ino   uint64
	size  int64
	mtime time.Time
}

func stampOf(path string) (fileStamp, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	var ino uint64
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		ino = sys.Ino
	}
	return fileStamp{ino: ino, size: st.Size(), mtime: st.ModTime()}, nil
}

// recheck is how often a file-backed table looks at its file.
const recheck = time.Second

var (
	cacheMu sync.Mutex
	cache   = map[string]*Map{}
)

// Open returns the table a spec names. Tables are shared: every caller
// opening the same spec gets the same Map (what Postfix's proxymap does).
// Open fails only for a spec that cannot name a table (unknown type, bad
// syntax of an inline table); a file that is missing or broken makes
// lookups fail instead, so that mail is deferred until it is fixed.
func Open(spec string) (*Map, error) {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if m, ok := cache[spec]; ok {
		return m, nil
	}
	m, err := newMap(spec)
	if err != nil {
		return nil, err
	}
	cache[spec] = m
	return m, nil
}

// OpenAll opens a list of table specs (a *_maps parameter).
func OpenAll(specs []string) ([]*Map, error) {
	out := make([]*Map, 0, len(specs))
	for _, s := range specs {
		m, err := Open(s)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// Types lists the supported table types.
var Types = []string{"hash", "cdb", "texthash", "regexp", "pcre", "cidr", "inline", "static", "unionmap", "pipemap", "fail", "unix", "proxy"}

func newMap(spec string) (*Map, error) {
	typ, name, ok := strings.Cut(spec, ":")
	if !ok || typ == "" {
		return nil, fmt.Errorf("bad table %q: need type:name", spec)
	}
	if typ == "proxy" {
		// proxymap's job, sharing one open table between roles, is what
		// Open's cache does.
		m, err := newMap(name)
		if err != nil {
			return nil, err
		}
		m.Spec = spec
		return m, nil
	}
	m := &Map{Spec: spec, Type: typ, Name: name, Fixed: true}
	switch typ {
	case "hash", "cdb":
		ext := ".db"
		if typ == "cdb" {
			ext = ".cdb"
		}
		m.file = name + ext
		m.open = func() (table, error) { return openIndexed(m.file) }
	case "texthash":
		m.file = name
		m.open = func() (table, error) { return loadTextHash(name) }
	case "regexp", "pcre":
		m.Fixed = false
		m.file = name
		m.open = func() (table, error) { return loadRegexp(name, typ == "pcre") }
	case "cidr":
		m.Fixed = false
		m.file = name
		m.open = func() (table, error) { return loadCIDR(name) }
	case "inline":
		t, err := parseInline(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", spec, err)
		}
		m.impl = t
	case "static":
		v := name
		if strings.HasPrefix(v, "{") && strings.HasSuffix(v, "}") {
			v = strings.TrimSpace(v[1 : len(v)-1])
		}
		m.impl = staticTable(v)
	case "fail":
		m.impl = failTable(name)
	case "unionmap", "pipemap":
		subs, err := subMaps(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", spec, err)
		}
		if typ == "unionmap" {
			m.impl = unionTable(subs)
		} else {
			m.impl = pipeTable(subs)
		}
	case "unix":
		switch name {
		case "passwd.byname", "group.byname":
			m.impl = unixTable(name)
		default:
			return nil, fmt.Errorf("%s: unknown unix table (passwd.byname or group.byname)", spec)
		}
	default:
		return nil, fmt.Errorf("%s: unsupported table type %q (supported: %s)", spec, typ, strings.Join(Types, ", "))
	}
	return m, nil
}

// Path is the file a table is read from ("" for tables that are not
// file-backed): local(8) runs alias commands as its owner.
func (m *Map) Path() string { return m.file }

// Check loads the table now and reports a problem with its file (postfix
// check, postmap -q).
func (m *Map) Check() error {
	_, err := m.current()
	return err
}

// current returns the loaded table, loading or reloading its file when
// needed.
func (m *Map) current() (table, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.open == nil {
		return m.impl, nil
	}
	now := time.Now()
	if (m.impl != nil || m.err != nil) && now.Sub(m.check) < recheck {
		return m.impl, m.err
	}
	m.check = now
	st, err := stampOf(m.file)
	if err != nil {
		m.impl, m.err = nil, err
		return nil, err
	}
	if m.impl != nil && st == m.stamp {
		return m.impl, nil
	}
	t, err := m.open()
	if err != nil {
		m.impl, m.err = nil, err
		return nil, err
	}
	// The old table is dropped, not closed: lookups in flight may still
	// read it, and its file is closed by the runtime once unreachable.
	m.impl, m.err, m.stamp = t, nil, st
	return t, nil
}

// Lookup queries the table with one key (folded to lower case for fixed
// tables). An error wraps ErrTemp.
func (m *Map) Lookup(key string) (string, bool, error) {
	t, err := m.current()
	if err != nil {
		return "", false, &lookupError{m.Spec, err}
	}
	if m.Fixed {
		key = strings.ToLower(key)
	}
	v, ok, err := t.lookup(key)
	if err != nil {
		return "", false, &lookupError{m.Spec, err}
	}
	return v, ok, nil
}

// LookupExact is Lookup without case folding (postmap -f).
func (m *Map) LookupExact(key string) (string, bool, error) {
	t, err := m.current()
	if err != nil {
		return "", false, &lookupError{m.Spec, err}
	}
	v, ok, err := t.lookup(key)
	if err != nil {
		return "", false, &lookupError{m.Spec, err}
	}
	return v, ok, nil
}

// staticTable answers every key with the same value.
type staticTable string

func (s staticTable) lookup(string) (string, bool, error) { return string(s), true, nil }

// failTable fails every lookup (to test error handling).
type failTable string

func (f failTable) lookup(string) (string, bool, error) {
	return "", false, fmt.Errorf("fail:%s: table lookup failure", string(f))
}

// memTable is an in-memory table (texthash, inline).
type memTable map[string]string

func (t memTable) lookup(key string) (string, bool, error) {
	v, ok := t[key]
	return v, ok, nil
}

func loadTextHash(path string) (table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t := memTable{}
	err = ParseTable(f, nil, func(e Entry) error {
		k := strings.ToLower(e.Key)
		if _, dup := t[k]; !dup {
			t[k] = e.Value
		}
		return nil
	})
	return t, err
}

// parseInline reads inline:{ key=value, { key = value with spaces } }.
func parseInline(name string) (table, error) {
	inner, ok := braced(name)
	if !ok {
		return nil, errors.New("expected inline:{ key=value, ... }")
	}
	t := memTable{}
	for _, el := range config.SplitList(inner) {
		el = strings.TrimSpace(el)
		if b, ok := braced(el); ok {
			el = b
		}
		k, v, ok := strings.Cut(el, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("bad inline element %q: need key=value", el)
		}
		k = strings.ToLower(k)
		if _, dup := t[k]; !dup {
			t[k] = v
		}
	}
	return t, nil
}

// braced returns the text inside {...}.
func braced(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return "", false
	}
	return strings.TrimSpace(s[1 : len(s)-1]), true
}

func subMaps(name string) ([]*Map, error) {
	inner, ok := braced(name)
	if !ok {
		return nil, errors.New("expected {type:name, ...}")
	}
	var out []*Map
	for _, spec := range config.SplitList(inner) {
		m, err := newMap(spec)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, errors.New("no tables listed")
	}
	return out, nil
}

// unionTable queries every table and joins what they found with commas.
type unionTable []*Map

func (u unionTable) lookup(key string) (string, bool, error) {
	var found []string
	for _, m := range u {
		v, ok, err := m.Lookup(key)
		if err != nil {
			return "", false, err
		}
		if ok {
			found = append(found, v)
		}
	}
	return strings.Join(found, ","), len(found) > 0, nil
}

// pipeTable feeds each table's result to the next; any miss is a miss.
type pipeTable []*Map

func (p pipeTable) lookup(key string) (string, bool, error) {
	for _, m := range p {
		v, ok, err := m.Lookup(key)
		if err != nil || !ok {
			return "", false, err
		}
		key = v
	}
	return key, true, nil
}

// unixTable answers from the system's user or group database; the value
// is the passwd/group line, as Postfix's unix: table returns it.
type unixTable string

func (u unixTable) lookup(key string) (string, bool, error) {
	if string(u) == "group.byname" {
		g, err := user.LookupGroup(key)
		if errors.As(err, new(user.UnknownGroupError)) {
			return "", false, nil
		}
		if err != nil {
			return "", false, err
		}
		return fmt.Sprintf("%s:*:%s:", g.Name, g.Gid), true, nil
	}
	pw, err := user.Lookup(key)
	if errors.As(err, new(user.UnknownUserError)) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return fmt.Sprintf("%s:*:%s:%s:%s:%s:", pw.Username, pw.Uid, pw.Gid, pw.Name, pw.HomeDir), true, nil
}
