// Package config owns mailsrv's configuration: the TOML file that replaces
// Postfix's main.cf and master.cf. Top-level keys are main.cf parameter
// names with Postfix 3.x defaults (see Params); $name references expand as in
// main.cf; [[service]] tables are master.cf entries. Loading validates every
// key and value and reports problems with file, line and key, suggesting the
// closest known name for a misspelt one.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// Version is the mailsrv version, reported as mail_version.
var Version = "0.1.0"

// DefaultFile is the configuration file used when neither -c nor
// MAILSRV_CONFIG names one.
const DefaultFile = "/etc/mailsrv/mailsrv.toml"

// Config is a loaded, validated configuration.
type Config struct {
	File     string // path as given
	Dir      string // absolute folder of File; relative paths are based here
	Params   *Params
	Services []*Service
	// Warnings name settings that load but have no effect (Postfix
	// parameters or commands mailsrv does not implement).
	Warnings []string

	set        map[string]setting // top-level values from the file
	transports map[string]bool
}

// setting is one value from the file, in main.cf form (lists joined with
// ", ", booleans as yes/no), before $name expansion.
type setting struct {
	raw  string
	line int
}

// builtinTransports are the transport names of Postfix's stock master.cf;
// per-transport parameters (<transport>_destination_concurrency_limit …)
// are accepted for these and for every configured service.
var builtinTransports = []string{"smtp", "relay", "local", "virtual", "lmtp", "error", "retry", "discard"}

// Load reads, validates and expands a configuration file. The returned error
// lists every problem found, one per line.
func Load(file string) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return Parse(file, data)
}

// Parse is Load for data already read from file.
func Parse(file string, data []byte) (*Config, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	c := &Config{File: file, Dir: filepath.Dir(abs), set: map[string]setting{}, transports: map[string]bool{}}
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		return nil, c.tomlError(err)
	}
	pos, err := positions(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	ld := &loader{c: c, pos: pos, refs: map[string]bool{}}
	collectRefs(doc, ld.refs)
	for _, t := range builtinTransports {
		c.transports[t] = true
	}
	if svcs, ok := doc["service"].([]any); ok {
		for _, s := range svcs {
			if m, ok := s.(map[string]any); ok {
				if n, ok := m["name"].(string); ok {
					c.transports[n] = true
				}
			}
		}
	}

	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return pos[keys[i]].line < pos[keys[j]].line })
	for _, k := range keys {
		if k == "service" {
			continue
		}
		if raw, ok := ld.setting(k, doc[k], k, ""); ok {
			c.set[k] = setting{raw: raw, line: pos[k].line}
		}
	}
	if v, ok := doc["service"]; ok {
		ld.services(v)
	}
	if len(ld.errs) > 0 {
		return nil, errors.Join(ld.errs...)
	}

	c.Params, err = c.build(nil, "")
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, s := range c.Services {
		if s.Params, err = c.build(s.overrides, fmt.Sprintf(" in [[service]] %q overrides", s.Name)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

func (c *Config) tomlError(err error) error {
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, col := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if k := strings.Join(de.Key(), "."); k != "" && !strings.Contains(msg, k) {
			msg = "key " + k + ": " + msg
		}
		return fmt.Errorf("broken TOML at %s:%d:%d: %s", c.File, line, col, msg)
	}
	return fmt.Errorf("broken TOML in %s: %v", c.File, err)
}

// loader carries the state of one Parse.
type loader struct {
	c    *Config
	pos  map[string]keyPos
	refs map[string]bool // names referenced as $name anywhere in the file
	errs []error
}

func (ld *loader) errorf(format string, args ...any) {
	ld.errs = append(ld.errs, fmt.Errorf(format, args...))
}

func (ld *loader) at(path string) string {
	return fmt.Sprintf("%s:%d", ld.c.File, ld.pos[path].line)
}

// setting validates one parameter assignment (top level when where is "",
// else inside a service's overrides) and returns its main.cf form.
func (ld *loader) setting(name string, v any, path, where string) (string, bool) {
	p, known := registry[name]
	if !known {
		p, known = perTransport(name, ld.c.transports)
	}
	if !known {
		switch {
		case IsPostfixParameter(name):
			ld.c.Warnings = append(ld.c.Warnings, fmt.Sprintf("%s: %s%s is a Postfix parameter that mailsrv does not implement; it has no effect", ld.at(path), name, where))
		case ld.refs[name]:
			// A user-defined parameter, used elsewhere as $name (like
			// $mua_client_restrictions in a stock master.cf).
		default:
			msg := fmt.Sprintf("unknown key %s%s at %s", name, where, ld.at(path))
			if s := suggest(name); s != "" {
				msg += "; did you mean " + s + "?"
			}
			ld.errs = append(ld.errs, errors.New(msg))
			return "", false
		}
		raw, err := anyToRaw(v)
		if err != nil {
			ld.errorf("wrong type for %s%s at %s: %v", name, where, ld.at(path), err)
			return "", false
		}
		return raw, true
	}
	raw, err := toRaw(p, v)
	if err != nil {
		ld.errorf("wrong type for %s%s at %s: %v", name, where, ld.at(path), err)
		return "", false
	}
	return raw, true
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "table"
	}
	return fmt.Sprintf("%T", v)
}

// toRaw converts a TOML value to main.cf form, checking its type.
func toRaw(p *Param, v any) (string, error) {
	switch p.Kind {
	case KindString:
		if s, ok := v.(string); ok {
			return s, nil
		}
		return "", fmt.Errorf("expected a string, got %s", typeName(v))
	case KindBool:
		switch x := v.(type) {
		case bool:
			return FormatBool(x), nil
		case string:
			return x, nil
		}
		return "", fmt.Errorf("expected a boolean (true/false or \"yes\"/\"no\"), got %s", typeName(v))
	case KindInt:
		switch x := v.(type) {
		case int64:
			return strconv.FormatInt(x, 10), nil
		case string:
			return x, nil
		}
		return "", fmt.Errorf("expected an integer, got %s", typeName(v))
	case KindDuration:
		if s, ok := v.(string); ok {
			return s, nil
		}
		return "", fmt.Errorf("expected a time value string such as \"300s\" or \"5d\", got %s", typeName(v))
	case KindList:
		switch x := v.(type) {
		case string:
			return x, nil
		case []any:
			l := make([]string, 0, len(x))
			for i, e := range x {
				s, ok := e.(string)
				if !ok {
					return "", fmt.Errorf("element %d: expected a string, got %s", i+1, typeName(e))
				}
				l = append(l, s)
			}
			return JoinList(l), nil
		}
		return "", fmt.Errorf("expected an array of strings, got %s", typeName(v))
	}
	return "", fmt.Errorf("unsupported kind")
}

// anyToRaw converts the value of a parameter mailsrv does not interpret.
func anyToRaw(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case bool:
		return FormatBool(x), nil
	case []any:
		return toRaw(&Param{Kind: KindList}, x)
	}
	return "", fmt.Errorf("expected a string, number, boolean or array of strings, got %s", typeName(v))
}

func collectRefs(v any, refs map[string]bool) {
	switch x := v.(type) {
	case string:
		for _, r := range references(x) {
			refs[r] = true
		}
	case []any:
		for _, e := range x {
			collectRefs(e, refs)
		}
	case map[string]any:
		for k, e := range x {
			if k == "smtpd_restriction_classes" {
				// The classes named there are parameters the
				// user defines, referred to by name, not as $name.
				for _, name := range classNames(e) {
					refs[name] = true
				}
			}
			collectRefs(e, refs)
		}
	}
}

// classNames are the names in a smtpd_restriction_classes value (a list,
// or one string of names separated by commas or spaces).
func classNames(v any) []string {
	var out []string
	switch x := v.(type) {
	case string:
		out = append(out, SplitList(x)...)
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, SplitList(s)...)
			}
		}
	}
	return out
}

// rawValue returns the unexpanded value of a parameter in a scope (service
// overrides first, then the file, then the default).
func (c *Config) rawValue(overrides map[string]setting, name string) (string, bool) {
	if s, ok := overrides[name]; ok {
		return s.raw, true
	}
	if s, ok := c.set[name]; ok {
		return s.raw, true
	}
	if p, ok := registry[name]; ok {
		return p.Default, !p.Computed
	}
	if p, ok := perTransport(name, c.transports); ok {
		return "$" + p.Name, true
	}
	return PostfixDefault(name)
}

// build expands and type-checks every parameter in one scope.
func (c *Config) build(overrides map[string]setting, where string) (*Params, error) {
	var e *expander
	e = newExpander(func(name string) (string, bool) {
		if v, ok := c.rawValue(overrides, name); ok {
			return v, true
		}
		if p, ok := registry[name]; ok && p.Computed {
			v, err := computedDefault(name, e)
			if err != nil {
				return "", false
			}
			return v, true
		}
		return "", false
	})
	params := &Params{values: map[string]string{}}
	rv := reflect.ValueOf(params).Elem()
	var errs []error
	line := func(name string) string {
		if s, ok := overrides[name]; ok {
			return fmt.Sprintf(" at %s:%d", c.File, s.line)
		}
		if s, ok := c.set[name]; ok {
			return fmt.Sprintf(" at %s:%d", c.File, s.line)
		}
		return " (default)"
	}
	for _, name := range paramOrder {
		p := registry[name]
		var val string
		var err error
		if p.Raw {
			val, _ = c.rawValue(overrides, name)
		} else {
			val, err = e.param(name)
		}
		if err == nil {
			err = c.assign(rv.Field(p.field), p, val)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("bad value for %s%s%s: %v", name, where, line(name), err))
			continue
		}
		params.values[name] = val
	}
	// Per-transport overrides and parameters mailsrv passes through.
	names := make([]string, 0, len(c.set)+len(overrides))
	for n := range c.set {
		names = append(names, n)
	}
	for n := range overrides {
		names = append(names, n)
	}
	for _, name := range names {
		if _, ok := registry[name]; ok {
			continue
		}
		val, err := e.param(name)
		if err == nil {
			if p, ok := perTransport(name, c.transports); ok {
				err = checkKind(p, val)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("bad value for %s%s%s: %v", name, where, line(name), err))
			continue
		}
		params.values[name] = val
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return params, nil
}

func checkKind(p *Param, val string) error {
	var dummy reflect.Value
	switch p.Kind {
	case KindInt:
		dummy = reflect.New(reflect.TypeOf(0)).Elem()
	case KindDuration:
		dummy = reflect.New(reflect.TypeOf(time.Duration(0))).Elem()
	default:
		return nil
	}
	return (&Config{}).assign(dummy, p, val)
}

// assign parses an expanded value into a Params field.
func (c *Config) assign(f reflect.Value, p *Param, val string) error {
	switch p.Kind {
	case KindString:
		if p.Enum != nil && !slices.Contains(p.Enum, val) {
			return fmt.Errorf("%q is not one of %s", val, strings.Join(p.Enum, ", "))
		}
		if p.Path {
			val = c.abs(val)
		}
		f.SetString(val)
	case KindBool:
		b, err := parseBool(val)
		if err != nil {
			return err
		}
		f.SetBool(b)
	case KindInt:
		n, err := strconv.Atoi(strings.TrimSpace(val))
		if err != nil {
			return fmt.Errorf("%q is not an integer", val)
		}
		if n < 0 {
			return fmt.Errorf("%d: must not be negative", n)
		}
		if n < p.Min {
			return fmt.Errorf("%d: must be at least %d", n, p.Min)
		}
		f.SetInt(int64(n))
	case KindDuration:
		d, err := ParseDuration(strings.TrimSpace(val), p.Unit)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
	case KindList:
		l := SplitList(val)
		if p.Maps {
			for i, m := range l {
				l[i] = c.absMap(m)
			}
		}
		f.Set(reflect.ValueOf(l))
	}
	return nil
}

// abs makes a path relative to the config folder absolute.
func (c *Config) abs(p string) string {
	if p == "" || filepath.IsAbs(p) || c.Dir == "" {
		return p
	}
	return filepath.Join(c.Dir, p)
}

// fileMapTypes are lookup table types whose name is a file.
var fileMapTypes = map[string]bool{
	"hash": true, "btree": true, "cdb": true, "dbm": true, "lmdb": true, "sdbm": true,
	"texthash": true, "regexp": true, "pcre": true, "cidr": true,
}

// absMap makes the file of a type:name table absolute (proxy: unwrapped).
func (c *Config) absMap(m string) string {
	typ, name, ok := strings.Cut(m, ":")
	if !ok {
		return m
	}
	if typ == "proxy" {
		return typ + ":" + c.absMap(name)
	}
	if fileMapTypes[typ] {
		return typ + ":" + c.abs(name)
	}
	return m
}

// Where says where a parameter's value comes from, for a message about
// it: "file:line" of the service's override or of the top-level setting,
// or "file (default)" for a value the file does not set. s may be nil.
func (c *Config) Where(name string, s *Service) string {
	if s != nil {
		if o, ok := s.overrides[name]; ok {
			return fmt.Sprintf("%s:%d", c.File, o.line)
		}
	}
	if v, ok := c.set[name]; ok {
		return fmt.Sprintf("%s:%d", c.File, v.line)
	}
	return c.File + " (default)"
}

// IsSet reports whether the file sets a top-level parameter.
func (c *Config) IsSet(name string) bool {
	_, ok := c.set[name]
	return ok
}

// SetNames returns the parameters set in the file, sorted.
func (c *Config) SetNames() []string {
	out := make([]string, 0, len(c.set))
	for n := range c.set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Raw returns a parameter's unexpanded value as postconf prints it, and
// whether the name is known at all (implemented, a Postfix parameter, or
// user-defined in the file).
func (c *Config) Raw(name string) (string, bool) {
	if v, ok := c.rawValue(nil, name); ok {
		return v, true
	}
	if p, ok := registry[name]; ok && p.Computed {
		return c.Params.values[name], true
	}
	return "", false
}

// Default returns the default of a parameter in main.cf form; computed
// defaults (myhostname, mynetworks …) are evaluated for this machine.
func (c *Config) Default(name string) (string, bool) {
	if p, ok := registry[name]; ok {
		if !p.Computed {
			return p.Default, true
		}
		d, err := Parse(filepath.Join(c.Dir, "(defaults)"), nil)
		if err != nil {
			return "", false
		}
		return d.Params.values[name], true
	}
	if p, ok := perTransport(name, c.transports); ok {
		return "$" + p.Name, true
	}
	return PostfixDefault(name)
}

// Lookup returns the expanded value of any parameter known in this scope
// (implemented, per-transport, or passed through), as a string.
func (p *Params) Lookup(name string) (string, bool) {
	v, ok := p.values[name]
	return v, ok
}

// TransportInt returns the per-transport qmgr parameter <transport>_<suffix>
// (for example smtp_destination_concurrency_limit), falling back to
// default_<suffix>.
func (p *Params) TransportInt(transport, suffix string) int {
	for _, n := range []string{transport + "_" + suffix, "default_" + suffix} {
		if v, ok := p.values[n]; ok {
			if i, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				return i
			}
		}
	}
	return 0
}

// TransportDuration is TransportInt for time values.
func (p *Params) TransportDuration(transport, suffix string) time.Duration {
	def := registry["default_"+suffix]
	for _, n := range []string{transport + "_" + suffix, "default_" + suffix} {
		if v, ok := p.values[n]; ok && def != nil {
			if d, err := ParseDuration(strings.TrimSpace(v), def.Unit); err == nil {
				return d
			}
		}
	}
	return 0
}
