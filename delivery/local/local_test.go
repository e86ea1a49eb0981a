package local

import (
	"strings"
	"testing"
)

func TestSplitItems(t *testing.T) {
	t.Parallel()
	got := splitItems(`alice, bob,"|/usr/bin/prog -a, -b" , /var/log/file, :include:/etc/list
carol`)
	want := []string{"alice", "bob", "|/usr/bin/prog -a, -b", "/var/log/file", ":include:/etc/list", "carol"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("splitItems = %q, want %q", got, want)
	}
}

// FuzzSplitItems: alias values come from files users and admins write;
// splitting never panics and never yields an empty item.
func FuzzSplitItems(f *testing.F) {
	for _, s := range []string{"a, b", `"|x, y", /f`, `"unterminated, a`, ",,,", "\n\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, it := range splitItems(s) {
			if strings.TrimSpace(it) == "" {
				t.Fatalf("empty item from %q", s)
			}
		}
	})
}
