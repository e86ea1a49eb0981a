package rewrite

import (
	"errors"
	"strings"
	"testing"

	"mailsrv/config"
	"mailsrv/maps"
)

func newRewriter(t *testing.T, extra string) *Rewriter {
	t.Helper()
	cfg, err := config.Parse("/etc/mailsrv/mailsrv.toml", []byte(`
myhostname = "mx.our.dom"
mydomain = "our.dom"
myorigin = "$mydomain"
mydestination = ["$myhostname", "localhost", "our.dom"]
relay_domains = ["relay.dom"]
inet_interfaces = ["127.0.0.1"]
`+extra))
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(cfg.Params)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCanonicalize(t *testing.T) {
	t.Parallel()
	r := newRewriter(t, "")
	cases := []struct{ in, want string }{
		{"user", "user@our.dom"},
		{"user@host", "user@host"},
		{"user@example.com.", "user@example.com"},
		{"user@example.com..", "user@example.com.."},
		{"site!user", "user@site"},
		{"user%site", "user@site"},
		{"@a,@b:user@c", "user@c"},
		{"", ""},
		{`""`, `""`},
		{"@", ""},
		{`"quoted user"`, `"quoted user"@our.dom`},
	}
	for _, c := range cases {
		if got := r.Canonicalize(c.in, Local); got != c.want {
			t.Errorf("Canonicalize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	// Remote context: no domain appended unless remote_header_rewrite_domain.
	if got := r.Canonicalize("user", Remote); got != "user" {
		t.Errorf("remote: %q", got)
	}
	off := newRewriter(t, "allow_percent_hack = false\nswap_bangpath = false\nappend_dot_mydomain = true\n")
	for in, want := range map[string]string{"user%site": "user%site@our.dom", "site!user": "site!user@our.dom", "u@host": "u@host.our.dom", "u@[1.2.3.4]": "u@[1.2.3.4]"} {
		if got := off.Canonicalize(in, Local); got != want {
			t.Errorf("hacks off: Canonicalize(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestResolveAbuseCases: the relay tricks (%-hack, bang paths, quoted
// local parts, source routes, trailing dots). Whatever the
// spelling, an address for evil.example resolves to the default class (so
// reject_unauth_destination refuses it) with the real recipient.
func TestResolveAbuseCases(t *testing.T) {
	t.Parallel()
	r := newRewriter(t, "")
	cases := []struct {
		in        string
		class     Class
		recipient string
		routed    bool
		errText   string
	}{
		{"v%evil.example@our.dom", ClassDefault, "v@evil.example", false, ""},
		{"evil.example!v@our.dom", ClassDefault, "v@evil.example", false, ""},
		{`"v@evil.example"@our.dom`, ClassDefault, "v@evil.example", false, ""},
		{"@our.dom:v@evil.example", ClassDefault, "v@evil.example", false, ""},
		{"v%evil@relay.dom", ClassRelay, "v%evil@relay.dom", true, ""},
		{"u@our.dom.", ClassLocal, "u@our.dom", false, ""},
		{"u@evil.example.", ClassDefault, "u@evil.example", false, ""},
		{"u@our.dom..", ClassDefault, "u@our.dom..", false, "malformed domain name"},
		{"v@[192.0.2.1]", ClassDefault, "v@[192.0.2.1]", false, ""},
		{"v@[127.0.0.1]", ClassLocal, "v@[127.0.0.1]", false, ""},
		{"v@192.0.2.1", ClassDefault, "v@192.0.2.1", false, "numeric domain name without [brackets]"},
		{"v@", ClassLocal, "v@mx.our.dom", false, "empty domain"},
		{"-oQ@our.dom", ClassLocal, "-oQ@our.dom", false, "local part starts with -"},
		{"postmaster", ClassLocal, "postmaster@our.dom", false, ""},
		{"User@OUR.DOM", ClassLocal, "User@our.dom", false, ""},
		{"a%b%evil.example@our.dom", ClassDefault, "a%b@evil.example", true, ""},
	}
	for _, c := range cases {
		res, err := r.Resolve(c.in, "s@our.dom")
		if err != nil {
			t.Fatalf("Resolve(%q): %v", c.in, err)
		}
		if res.Class != c.class || res.Recipient != c.recipient || res.Routed != c.routed || res.Error != c.errText {
			t.Errorf("Resolve(%q) = %+v; want class %v recipient %q routed %v error %q", c.in, res, c.class, c.recipient, c.routed, c.errText)
		}
	}
}

func TestResolveTransports(t *testing.T) {
	t.Parallel()
	r := newRewriter(t, `
virtual_alias_domains = ["alias.dom"]
virtual_mailbox_domains = ["mbox.dom"]
transport_maps = ["inline:{ special.example=smtp:[mx1.example.net]:2525, .parent.example=relay:, { down.example = error:5.7.1 we do not deliver there }, { discard.example = discard: } }"]
relocated_maps = ["inline:{ gone@our.dom=gone@new.example }"]
`)
	cases := []struct{ in, transport, nexthop, recipient string }{
		{"u@our.dom", "local", "mx.our.dom", "u@our.dom"},
		{"u@alias.dom", "error", "5.1.1 User unknown in virtual alias table", "u@alias.dom"},
		{"u@mbox.dom", "virtual", "mbox.dom", "u@mbox.dom"},
		{"u@relay.dom", "relay", "relay.dom", "u@relay.dom"},
		{"u@else.example", "smtp", "else.example", "u@else.example"},
		{"u@special.example", "smtp", "[mx1.example.net]:2525", "u@special.example"},
		{"u@sub.parent.example", "relay", "sub.parent.example", "u@sub.parent.example"},
		{"u@parent.example", "smtp", "parent.example", "u@parent.example"},
		{"u@down.example", "error", "5.7.1 we do not deliver there", "u@down.example"},
		{"u@discard.example", "discard", "discard.example", "u@discard.example"},
		{"gone@our.dom", "error", "5.1.6 User has moved to gone@new.example", "gone@our.dom"},
	}
	for _, c := range cases {
		res, err := r.Resolve(c.in, "")
		if err != nil {
			t.Fatal(err)
		}
		if res.Transport != c.transport || res.Nexthop != c.nexthop || res.Recipient != c.recipient {
			t.Errorf("Resolve(%q) = %s:%s %s; want %s:%s %s", c.in, res.Transport, res.Nexthop, res.Recipient, c.transport, c.nexthop, c.recipient)
		}
	}
	// relayhost and sender-dependent relayhosts.
	r = newRewriter(t, `
relayhost = "[gw.our.dom]:587"
sender_dependent_relayhost_maps = ["inline:{ @vip.example=[fast.our.dom], boss@our.dom=DUNNO }"]
sender_dependent_default_transport_maps = ["inline:{ <>=bounces: }"]
`)
	for _, c := range []struct{ sender, transport, nexthop string }{
		{"x@our.dom", "smtp", "[gw.our.dom]:587"},
		{"x@vip.example", "smtp", "[fast.our.dom]"},
		{"boss@our.dom", "smtp", "[gw.our.dom]:587"},
		{"", "bounces", "[gw.our.dom]:587"},
	} {
		res, err := r.Resolve("u@else.example", c.sender)
		if err != nil {
			t.Fatal(err)
		}
		if res.Transport != c.transport || res.Nexthop != c.nexthop {
			t.Errorf("sender %q: %s:%s, want %s:%s", c.sender, res.Transport, res.Nexthop, c.transport, c.nexthop)
		}
	}
	// A table that cannot be read is an error, never a guess.
	r = newRewriter(t, `transport_maps = ["hash:/nonexistent/transport"]`)
	if _, err := r.Resolve("u@else.example", ""); !errors.Is(err, maps.ErrTemp) {
		t.Errorf("missing transport table: %v", err)
	}
}

func TestVirtualAliasExpansion(t *testing.T) {
	t.Parallel()
	r := newRewriter(t, `
recipient_delimiter = "+"
virtual_alias_domains = ["v.dom"]
virtual_alias_maps = ["inline:{ { sales@v.dom = alice@our.dom, bob }, a@v.dom=b@v.dom, b@v.dom=a@v.dom, { self@v.dom = self@v.dom, other@our.dom }, joe@v.dom=joseph@our.dom, @catch.dom=catch@our.dom, { dup@v.dom = x@our.dom, X@our.dom, x@our.dom }, c1@v.dom=c2@v.dom, c2@v.dom=c3@v.dom, c3@v.dom=c4@v.dom, c4@v.dom=c5@v.dom, { wide@v.dom = w1, w2, w3, w4, w5 } }"]
virtual_alias_recursion_limit = 3
virtual_alias_expansion_limit = 4
`)
	cases := []struct {
		in   string
		want string
	}{
		{"sales@v.dom", "alice@our.dom bob@our.dom"},
		{"a@v.dom", "a@v.dom"},
		{"self@v.dom", "self@v.dom other@our.dom"},
		{"joe+tag@v.dom", "joseph+tag@our.dom"},
		{"anyone@catch.dom", "catch@our.dom"},
		{"dup@v.dom", "x@our.dom"},
		{"plain@elsewhere.example", "plain@elsewhere.example"},
	}
	for _, c := range cases {
		got, err := r.ExpandVirtual(c.in)
		if err != nil {
			t.Errorf("ExpandVirtual(%q): %v", c.in, err)
			continue
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("ExpandVirtual(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, in := range []string{"c1@v.dom", "wide@v.dom"} {
		_, err := r.ExpandVirtual(in)
		var ee *ExpansionError
		if !errors.As(err, &ee) || !strings.Contains(err.Error(), "451 4.6.0") {
			t.Errorf("ExpandVirtual(%q) over the limits: %v", in, err)
		}
	}
}

func TestCanonicalAndMasquerade(t *testing.T) {
	t.Parallel()
	r := newRewriter(t, `
recipient_delimiter = "+"
sender_canonical_maps = ["inline:{ @old.example=@new.example, alice@our.dom=Alice.Smith@our.dom }"]
recipient_canonical_maps = ["inline:{ bob@our.dom=robert@our.dom }"]
canonical_maps = ["inline:{ robert@our.dom=rob@our.dom, alice.smith@our.dom=not-recursive@our.dom }"]
masquerade_domains = ["!sub.our.dom", "our.dom"]
masquerade_exceptions = ["root"]
`)
	cases := []struct{ in, class, want string }{
		{"joe@old.example", EnvelopeSender, "joe@new.example"},
		{"alice@our.dom", EnvelopeSender, "not-recursive@our.dom"},
		{"bob+x@our.dom", EnvelopeRecipient, "rob+x@our.dom"},
		{"bob@our.dom", EnvelopeSender, "bob@our.dom"},
		{"u@host.our.dom", EnvelopeSender, "u@our.dom"},
		{"u@host.our.dom", EnvelopeRecipient, "u@host.our.dom"},
		{"u@x.sub.our.dom", EnvelopeSender, "u@x.sub.our.dom"},
		{"root@host.our.dom", EnvelopeSender, "root@host.our.dom"},
	}
	for _, c := range cases {
		got, err := r.Canonical(c.in, c.class)
		if err != nil || got != c.want {
			t.Errorf("Canonical(%q, %s) = %q %v, want %q", c.in, c.class, got, err, c.want)
		}
	}
}

func TestDomainList(t *testing.T) {
	t.Parallel()
	d, err := NewDomainList("relay_domains", []string{"!no.example", ".dot.example", "example.org", "inline:{ table.example=x }"}, []string{"relay_domains"})
	if err != nil {
		t.Fatal(err)
	}
	for dom, want := range map[string]bool{
		"example.org": true, "sub.example.org": true, "no.example": false,
		"a.dot.example": true, "dot.example": false, "table.example": true,
		"sub.table.example": true, "other.example": false,
	} {
		if got, err := d.Match(dom); err != nil || got != want {
			t.Errorf("Match(%q) = %v %v", dom, got, err)
		}
	}
	exact, _ := NewDomainList("mydestination", []string{"example.org"}, []string{"relay_domains"})
	if ok, _ := exact.Match("sub.example.org"); ok {
		t.Error("mydestination matched a subdomain")
	}
}
