package maps

import (
	"strings"
	"testing"
)

// The table parsers take files an operator (or a converted Postfix setup)
// wrote: whatever the text, they return a table or an error naming the
// problem, never panic, and lookups on what they return never panic.

func FuzzRegexpTable(f *testing.F) {
	f.Add("/^(.*)@example\\.com$/ $1@other\n!/x/ Y\nif /a/\n/b/ ${1}\nendif\n", "user@example.com")
	f.Add("/(a)(b)?/i $2$1$$\n", "ab")
	f.Add("if !/x/\nif /y/\n/z/ Z\nendif\nendif\n", "yz")
	f.Fuzz(func(t *testing.T, text, key string) {
		for _, pcre := range []bool{false, true} {
			tbl, err := parseRegexp(strings.NewReader(text), "fuzz", pcre)
			if err != nil {
				continue
			}
			_, _, _ = tbl.lookup(key)
		}
	})
}

func FuzzCIDRTable(f *testing.F) {
	f.Add("192.168.0.0/16 LAN\n!10.0.0.0/8 X\nif [::1]/128\n::1 L\nendif\n", "10.1.2.3")
	f.Add("0.0.0.0/0 ANY\n", "::ffff:1.2.3.4")
	f.Fuzz(func(t *testing.T, text, key string) {
		tbl, err := parseCIDR(strings.NewReader(text), "fuzz")
		if err != nil {
			return
		}
		_, _, _ = tbl.lookup(key)
	})
}

func FuzzTextTables(f *testing.F) {
	f.Add("key value\n  continued\n# c\n\"quoted key\" v\nnovalue\n")
	f.Add("name: a, \"b, c\", |cmd\n :include:/x\n")
	f.Fuzz(func(t *testing.T, text string) {
		_ = ParseTable(strings.NewReader(text), func(int, string) {}, func(e Entry) error {
			if e.Key == "" || e.Value == "" {
				t.Fatalf("empty key or value from %q: %+v", text, e)
			}
			return nil
		})
		_ = ParseAliases(strings.NewReader(text), func(int, string) {}, func(e Entry) error {
			if e.Key == "" {
				t.Fatalf("empty alias name from %q", text)
			}
			return nil
		})
		if m, err := newMap("inline:{" + text + "}"); err == nil {
			_, _, _ = m.Lookup("key")
		}
	})
}
