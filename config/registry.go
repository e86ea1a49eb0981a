package config

import (
	"bufio"
	_ "embed"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Kind is the type of a parameter value.
type Kind int

const (
	KindString Kind = iota
	KindBool
	KindInt
	KindDuration
	KindList
)

// Param describes one implemented parameter.
type Param struct {
	Name     string
	Kind     Kind
	Default  string // main.cf form, unexpanded; "" for computed defaults
	Unit     byte   // default time unit for KindDuration
	Path     bool   // a file or directory, relative to the config folder
	Maps     bool   // a list of type:name lookup tables
	Computed bool   // default derived from the machine
	Raw      bool   // not expanded at load time (see the expand tag)
	Enum     []string
	Min      int // smallest value of a KindInt (the min tag; 0 without)
	Doc      string
	field    int // index into Params
}

var (
	registry   = map[string]*Param{}
	paramOrder []string // sorted names

	//go:embed postfix-3.7-defaults.txt
	postfixDefaultsText string
	// postfixDefaults maps every Postfix 3.7 parameter name to its default
	// as printed by `postconf -d`. A name found here but not in registry is
	// a Postfix parameter that mailsrv does not implement.
	postfixDefaults = map[string]string{}
	postfixNames    []string // sorted keys of postfixDefaults
)

// perTransportSuffixes are the qmgr parameters that Postfix lets every
// transport override as <transport>_<suffix>, falling back to
// default_<suffix> (the qmgr(8) concurrency and recipient limits).
var perTransportSuffixes = []string{
	"destination_concurrency_limit", "destination_recipient_limit",
	"destination_rate_delay", "transport_rate_delay",
	"destination_concurrency_positive_feedback", "destination_concurrency_negative_feedback",
	"destination_concurrency_failed_cohort_limit",
	"recipient_limit", "extra_recipient_limit", "delivery_slot_cost",
}

func init() {
	t := reflect.TypeOf(Params{})
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		p := &Param{
			Name:  f.Tag.Get("pf"),
			Doc:   f.Tag.Get("doc"),
			field: i,
		}
		def, hasDef := f.Tag.Lookup("def")
		p.Default = def
		switch f.Tag.Get("kind") {
		case "path":
			p.Path = true
		case "maps":
			p.Maps = true
		case "computed":
			p.Computed = true
		}
		p.Raw = f.Tag.Get("expand") == "delivery"
		if m, ok := f.Tag.Lookup("min"); ok {
			p.Min, _ = strconv.Atoi(m)
		}
		if e, ok := f.Tag.Lookup("enum"); ok {
			p.Enum = strings.Split(e, "|")
		}
		switch f.Type {
		case reflect.TypeOf(""):
			p.Kind = KindString
		case reflect.TypeOf(true):
			p.Kind = KindBool
		case reflect.TypeOf(0):
			p.Kind = KindInt
		case reflect.TypeOf(time.Duration(0)):
			p.Kind = KindDuration
			u := f.Tag.Get("unit")
			if len(u) != 1 {
				panic("config: time parameter without unit tag: " + p.Name)
			}
			p.Unit = u[0]
		case reflect.TypeOf([]string(nil)):
			p.Kind = KindList
		default:
			panic("config: unsupported field type for " + p.Name)
		}
		if p.Name == "" || p.Doc == "" || (!hasDef && !p.Computed) {
			panic("config: incomplete tags on field " + f.Name)
		}
		if registry[p.Name] != nil {
			panic("config: duplicate parameter " + p.Name)
		}
		registry[p.Name] = p
		paramOrder = append(paramOrder, p.Name)
	}
	sort.Strings(paramOrder)

	sc := bufio.NewScanner(strings.NewReader(postfixDefaultsText))
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " = ")
		if !ok {
			name, ok = strings.CutSuffix(sc.Text(), " =")
		}
		if ok {
			postfixDefaults[name] = val
			postfixNames = append(postfixNames, name)
		}
	}
	sort.Strings(postfixNames)
}

// Lookup returns the definition of an implemented parameter.
func Lookup(name string) (*Param, bool) {
	p, ok := registry[name]
	return p, ok
}

// Names returns the names of all implemented parameters, sorted.
func Names() []string { return append([]string(nil), paramOrder...) }

// IsPostfixParameter reports whether name is a parameter of Postfix 3.7
// (implemented by mailsrv or not).
func IsPostfixParameter(name string) bool {
	_, ok := postfixDefaults[name]
	return ok
}

// PostfixDefault returns Postfix's own default for a parameter, as printed by
// postconf -d of Postfix 3.7.
func PostfixDefault(name string) (string, bool) {
	v, ok := postfixDefaults[name]
	return v, ok
}

// perTransport reports whether name is a per-transport qmgr override such as
// relay_destination_concurrency_limit, and returns the default_ parameter
// that gives its type.
func perTransport(name string, transports map[string]bool) (*Param, bool) {
	for _, suf := range perTransportSuffixes {
		tr, ok := strings.CutSuffix(name, "_"+suf)
		if !ok || tr == "" || !transports[tr] {
			continue
		}
		if p, ok := registry["default_"+suf]; ok {
			return p, true
		}
	}
	return nil, false
}

// suggest returns the known name closest to name, or "".
func suggest(name string) string {
	best, bestD := "", len(name)/2+2
	try := func(c string) {
		if d := levenshtein(name, c); d < bestD {
			best, bestD = c, d
		}
	}
	for _, n := range paramOrder {
		try(n)
	}
	if best == "" {
		for _, n := range postfixNames {
			try(n)
		}
	}
	return best
}

// levenshtein is the edit distance between a and b, counting a swap of
// two adjacent letters as one edit (optimal string alignment), the most
// common typo in a parameter name.
func levenshtein(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
