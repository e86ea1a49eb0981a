package maps

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t testing.TB, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustOpen(t testing.TB, spec string) *Map {
	t.Helper()
	m, err := newMap(spec)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func expect(t *testing.T, m *Map, key, want string, found bool) {
	t.Helper()
	v, ok, err := m.Lookup(key)
	if err != nil {
		t.Fatalf("%s: Lookup(%q): %v", m.Spec, key, err)
	}
	if ok != found || v != want {
		t.Errorf("%s: Lookup(%q) = %q, %v; want %q, %v", m.Spec, key, v, ok, want, found)
	}
}

func TestTextFormats(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := write(t, dir, "virtual", `# comment
Alice@Example.com   alice
 # indented comment
bob@example.com     bob1,
    bob2
"with space" quoted
@example.com        catchall
nokey
ALICE@example.com   duplicate
`)
	var warnings []string
	n, err := Build("hash", src, BuildOptions{Warn: func(f string, a ...any) { warnings = append(warnings, fmt.Sprintf(f, a...)) }})
	if err != nil || n != 4 {
		t.Fatalf("Build = %d, %v", n, err)
	}
	if len(warnings) != 2 || !strings.Contains(warnings[0], "line 8: expected format: key whitespace value") || !strings.Contains(warnings[1], `duplicate entry: "alice@example.com"`) {
		t.Errorf("warnings %q", warnings)
	}
	for _, typ := range []string{"hash", "texthash"} {
		m := mustOpen(t, typ+":"+src)
		expect(t, m, "alice@example.com", "alice", true)
		expect(t, m, "ALICE@EXAMPLE.COM", "alice", true)
		expect(t, m, "bob@example.com", "bob1,    bob2", true)
		expect(t, m, `"with space"`, "quoted", true)
		expect(t, m, "@example.com", "catchall", true)
		expect(t, m, "nokey", "", false)
	}

	aliases := write(t, dir, "aliases", "postmaster: root\nroot: |\"/usr/bin/x y\"\n  , admin@example.com,\n  /var/log/mail.copy\nStaff : a,b,,c\nbad line\n")
	if _, err := Build("cdb", aliases, BuildOptions{Aliases: true}); err != nil {
		t.Fatal(err)
	}
	m := mustOpen(t, "cdb:"+aliases)
	expect(t, m, "root", `|"/usr/bin/x y", admin@example.com, /var/log/mail.copy`, true)
	expect(t, m, "staff", "a, b, , c", true)
	expect(t, m, "@", "@", true)
}

func TestInlineStaticUnionPipeFail(t *testing.T) {
	t.Parallel()
	m := mustOpen(t, "inline:{ Alice=a, bob=b, { carol = c with, comma } }")
	expect(t, m, "alice", "a", true)
	expect(t, m, "BOB", "b", true)
	expect(t, m, "carol", "c with, comma", true)
	expect(t, m, "dave", "", false)
	expect(t, mustOpen(t, "static:OK"), "anything", "OK", true)
	expect(t, mustOpen(t, "static:{ 550 go away }"), "x", "550 go away", true)
	u := mustOpen(t, "unionmap:{inline:{a=1}, static:2, inline:{b=3}}")
	expect(t, u, "a", "1,2", true)
	p := mustOpen(t, "pipemap:{inline:{a=b}, inline:{b=c}}")
	expect(t, p, "a", "c", true)
	expect(t, p, "b", "", false)
	_, _, err := mustOpen(t, "fail:oops").Lookup("x")
	if !errors.Is(err, ErrTemp) {
		t.Errorf("fail: gives %v", err)
	}
	for _, bad := range []string{"nosuch:x", "inline:a=b", "unionmap:{}", "nocolon"} {
		if _, err := newMap(bad); err == nil {
			t.Errorf("newMap(%q) accepted", bad)
		}
	}
	if m := mustOpen(t, "unix:passwd.byname"); true {
		v, ok, err := m.Lookup("root")
		if err != nil || !ok || !strings.HasPrefix(v, "root:*:0:") {
			t.Errorf("passwd root: %q %v %v", v, ok, err)
		}
		expect(t, m, "no-such-user-here", "", false)
	}
}

func TestRegexpTable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := write(t, dir, "re", `/^(.*)@example\.com$/   $1@other.example
/^postmaster@/i         SENSITIVE
if /@lists\.example$/
/^owner-/               OWNER
endif
!/\./                   NO-DOT
/x(y)?z/                X[$1]${1}$$
/(foo|foobar)baz/       LONGEST $1
`)
	m := mustOpen(t, "regexp:"+src)
	expect(t, m, "User@Example.COM", "User@other.example", true)
	expect(t, m, "postmaster@x", "SENSITIVE", true)
	expect(t, m, "POSTMASTER@x.y", "", false)
	expect(t, m, "owner-x@lists.example", "OWNER", true)
	expect(t, m, "owner-x@other.example.org", "", false)
	expect(t, m, "nodot", "NO-DOT", true)
	expect(t, m, "a.xz", "X[]$", true)
	expect(t, m, "a.xyz", "X[y]y$", true)
	// POSIX leftmost-longest for regexp:, Perl leftmost-first for pcre:.
	expect(t, m, "a.foobarbaz", "LONGEST foobar", true)
	p := mustOpen(t, "pcre:"+write(t, dir, "pcre", "/(fo+?)/ $1\n/\\d+/ DIGITS\n"))
	expect(t, p, "fooo", "fo", true)
	expect(t, p, "x42", "DIGITS", true)

	// Constructs Go's regexp cannot run are errors naming the line.
	for _, tc := range []struct{ typ, text, want string }{
		{"pcre", "/a/ A\n/(a)\\1/ BACKREF\n", "line 2"},
		{"pcre", "/(?=x)y/ LOOKAHEAD\n", "line 1"},
		{"regexp", "/\\d+/ PERLCLASS\n", "line 1"},
		{"regexp", "/(a)/ $2\n", "out of range replacement index"},
		{"regexp", "if /a/\n/b/ B\n", "IF without matching ENDIF"},
		{"regexp", "/a/\n", "no replacement text"},
		{"regexp", "/a/q X\n", `flag "q" is not supported`},
	} {
		f := write(t, dir, "bad", tc.text)
		_, _, err := mustOpen(t, tc.typ+":"+f).Lookup("x")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrTemp) {
			t.Errorf("%s %q: %v (want %q)", tc.typ, tc.text, err, tc.want)
		}
	}
}

func TestCIDRTable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m := mustOpen(t, "cidr:"+write(t, dir, "c", `192.168.0.0/16 LAN
!10.0.0.0/8 NOT-TEN
10.1.2.3 EXACT
[2001:db8::]/32 DOC6
if 172.16.0.0/12
172.16.5.0/24 INNER
endif
`))
	expect(t, m, "192.168.1.1", "LAN", true)
	expect(t, m, "11.0.0.1", "NOT-TEN", true)
	expect(t, m, "10.1.2.3", "EXACT", true)
	expect(t, m, "10.9.9.9", "", false)
	expect(t, m, "2001:db8::1", "DOC6", true)
	expect(t, m, "::ffff:192.168.1.1", "LAN", true)
	expect(t, m, "172.16.5.9", "NOT-TEN", true) // the negation comes first
	expect(t, m, "not-an-ip", "", false)
	_, _, err := mustOpen(t, "cidr:"+write(t, dir, "bad", "10.0.0.1/8 X\n")).Lookup("10.0.0.1")
	if err == nil || !strings.Contains(err.Error(), "non-null host address bits") {
		t.Errorf("bad cidr: %v", err)
	}
}

// A missing or broken table makes lookups fail temporarily; fixing the file
// fixes the lookups without a restart, and a rebuilt table is picked up.
func TestMissingAndReloaded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := filepath.Join(dir, "transport")
	m := mustOpen(t, "hash:"+src)
	if _, _, err := m.Lookup("x"); !errors.Is(err, ErrTemp) {
		t.Fatalf("missing table: %v", err)
	}
	write(t, dir, "transport", "example.com smtp:[relay.example.net]\n")
	if _, err := Build("hash", src, BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, ok, err := m.Lookup("example.com")
		if err == nil && ok && v == "smtp:[relay.example.net]" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("table never loaded: %q %v %v", v, ok, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	write(t, dir, "transport", "example.com relay:[other.example.net]\n")
	if _, err := Build("hash", src, BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		v, _, _ := m.Lookup("example.com")
		if v == "relay:[other.example.net]" {
			break
		}
		if time.Now().After(deadline.Add(5 * time.Second)) {
			t.Fatalf("rebuilt table not reloaded: %q", v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAddressSearchOrder(t *testing.T) {
	t.Parallel()
	local := func(d string) bool { return d == "example.com" }
	full := mustOpen(t, "inline:{ user+ext@example.com=1, user@example.com=2, user+ext=3, user=4, @example.com=5, @other.org=6, joe=7 }")
	cases := []struct {
		addr, delim, want, ext string
		found                  bool
	}{
		{"user+ext@example.com", "+", "1", "", true},
		{"user+other@example.com", "+", "2", "other", true},
		{"user@example.com", "+", "2", "", true},
		{"user+ext@example.com", "", "1", "", true},
		{"user+zzz@example.com", "", "5", "", true},
		{"joe@example.com", "+", "7", "", true},
		{"joe@other.org", "+", "6", "", true}, // user forms only for local domains
		{"nobody@nowhere.net", "+", "", "", false},
		{"user-x@example.com", "+-", "2", "x", true},
	}
	for _, c := range cases {
		m, ok, err := LookupAddress([]*Map{full}, c.addr, c.delim, local)
		if err != nil || ok != c.found || m.Value != c.want || m.Extension != c.ext {
			t.Errorf("LookupAddress(%q, %q) = %+v %v %v", c.addr, c.delim, m, ok, err)
		}
	}
	// Pattern tables get the whole address once.
	dir := t.TempDir()
	re := mustOpen(t, "regexp:"+write(t, dir, "re", "/^user@/ RE\n"))
	if m, ok, _ := LookupAddress([]*Map{re}, "user+ext@example.com", "+", local); ok {
		t.Errorf("regexp got a partial key: %+v", m)
	}
	// An error stops the search.
	if _, _, err := LookupAddress([]*Map{mustOpen(t, "fail:x"), full}, "user@example.com", "+", local); !errors.Is(err, ErrTemp) {
		t.Errorf("error not reported: %v", err)
	}
}

func TestPostmapEditing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := write(t, dir, "t", "a 1\nb 2\n")
	if _, err := Build("cdb", src, BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Add("cdb", src, BuildOptions{}, strings.NewReader("b 20\nc 3\n")); err != nil {
		t.Fatal(err)
	}
	n, err := Delete("cdb", src, BuildOptions{}, []string{"A", "zz"})
	if err != nil || n != 1 {
		t.Fatalf("Delete = %d %v", n, err)
	}
	entries, err := Dump("cdb", src)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Key+"="+e.Value)
	}
	if strings.Join(got, " ") != "b=20 c=3" {
		t.Errorf("after -i and -d: %v", got)
	}
	// -N tables are found by plain keys too.
	if _, err := Build("hash", src, BuildOptions{WithNUL: true}); err != nil {
		t.Fatal(err)
	}
	expect(t, mustOpen(t, "hash:"+src), "a", "1", true)
}

// TestSameAnswersAsPostfix runs Postfix 3.7's postmap and ours on the same
// table files and keys (testdata/compare.*), where Postfix is installed.
func TestSameAnswersAsPostfix(t *testing.T) {
	t.Parallel()
	pf, err := exec.LookPath("postmap")
	if err != nil {
		if _, err = os.Stat("/usr/sbin/postmap"); err != nil {
			t.Skip("Postfix's postmap is not installed (apt-get install postfix)")
		}
		pf = "/usr/sbin/postmap"
	}
	dir := t.TempDir()
	conf := write(t, dir, "main.cf", "")
	env := append(os.Environ(), "MAIL_CONFIG="+filepath.Dir(conf))
	keysFile, err := os.Open("testdata/compare.keys")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	sc := bufio.NewScanner(keysFile)
	for sc.Scan() {
		keys = append(keys, sc.Text())
	}
	keysFile.Close()

	for _, tc := range []struct{ typ, file string }{
		{"regexp", "compare.regexp"}, {"cidr", "compare.cidr"},
		{"texthash", "compare.table"}, {"hash", "compare.table"},
	} {
		src, err := os.ReadFile("testdata/" + tc.file)
		if err != nil {
			t.Fatal(err)
		}
		// Separate folders: both postmaps write file.db for hash.
		theirs := write(t, t.TempDir(), tc.file, string(src))
		ours := write(t, t.TempDir(), tc.file, string(src))
		if tc.typ == "hash" {
			cmd := exec.Command(pf, "hash:"+theirs)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("postfix postmap: %v %s", err, out)
			}
			if _, err := Build("hash", ours, BuildOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		m := mustOpen(t, tc.typ+":"+ours)
		for _, key := range keys {
			cmd := exec.Command(pf, "-q", key, tc.typ+":"+theirs)
			cmd.Env = env
			out, err := cmd.Output()
			pfFound := err == nil
			var ee *exec.ExitError
			if err != nil && (!errors.As(err, &ee) || ee.ExitCode() != 1) {
				t.Fatalf("postfix postmap -q %q %s: %v", key, tc.typ, err)
			}
			// postmap -q folds the key for fixed-string tables, as ours
			// does in Lookup.
			v, ok, err := m.Lookup(key)
			if err != nil {
				t.Fatalf("%s: %v", tc.typ, err)
			}
			if ok != pfFound || (ok && v != strings.TrimSuffix(string(out), "\n")) {
				t.Errorf("%s:%s -q %q: Postfix %v %q, mailsrv %v %q", tc.typ, tc.file, key, pfFound, strings.TrimSpace(string(out)), ok, v)
			}
		}
	}
}
