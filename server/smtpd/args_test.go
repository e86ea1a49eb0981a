package smtpd

import (
	"slices"
	"testing"
)

// TestParsePath: what MAIL FROM and RCPT TO take as a path, source routes
// included, and what they refuse.
func TestParsePath(t *testing.T) {
	for _, c := range []struct {
		in, addr string
		params   []string
		ok       bool
	}{
		{"<a@b.example>", "a@b.example", nil, true},
		{"<> SIZE=10", "", []string{"SIZE=10"}, true},
		{`<"a b"@c.example>`, `"a b"@c.example`, nil, true},
		{"<@x.example,@y.example:u@z.example> NOTIFY=NEVER", "u@z.example", []string{"NOTIFY=NEVER"}, true},
		{`<@x.example:"u:v"@z.example>`, `"u:v"@z.example`, nil, true},
		{"a@b.example BODY=8BITMIME", "a@b.example", []string{"BODY=8BITMIME"}, true},
		{`<@":">`, "", nil, false},       // the colon is quoted: no route ends
		{`<@x:"a>`, "", nil, false},      // an unbalanced quote after the route
		{"<@x.example>", "", nil, false}, // a route and no address
		{"<a@b", "", nil, false},
		{"<a@b>x", "", nil, false},
		{"<a b@c>", "", nil, false},
	} {
		addr, params, ok := parsePath(c.in)
		if ok != c.ok || ok && (addr != c.addr || !slices.Equal(params, c.params)) {
			t.Errorf("parsePath(%q) = %q, %q, %v; want %q, %q, %v", c.in, addr, params, ok, c.addr, c.params, c.ok)
		}
	}
}
