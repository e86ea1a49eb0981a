package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// defaultExceptions are the parameters whose mailsrv default deliberately
// differs from Postfix 3.7's `postconf -d`, with the reason.
var defaultExceptions = map[string]string{
	"mail_name":                      "mailsrv names itself in the greeting",
	"mail_owner":                     "mailsrv runs as its own user",
	"queue_directory":                "mailsrv has its own queue format",
	"syslog_name":                    "log lines read mailsrv/smtpd",
	"alias_maps":                     "Postfix's compiled-in default adds nis:mail.aliases, which Debian and mailsrv drop",
	"smtpd_sasl_type":                "no Cyrus SASL; the built-in password table is the default",
	"smtpd_forbid_bare_newline":      "Postfix 3.9 default (normalize): SMTP smuggling defence",
	"smtpd_forbid_unauth_pipelining": "Postfix 3.9 default (yes)",
	"mailsrv_stop_timeout":           "a mailsrv parameter",
	"mailsrv_dns_servers":            "a mailsrv parameter (tests and split DNS)",
	"smtpd_tls_auth_only":            "passwords are never offered over plain text unless the operator says so",
	"smtp_sasl_tls_security_options": "Postfix inherits noplaintext, so PLAIN/LOGIN to a smarthost never works without extra settings; mailsrv allows them over TLS (never without)",
	"virtual_maps":                   "legacy name that Postfix still reads through virtual_alias_maps = $virtual_maps",
}

// modernDefault resolves the compatibility-level and stress conditionals of
// a Postfix default to the value at a modern compatibility level without
// stress.
func modernDefault(v string) string {
	compat := regexp.MustCompile(`\$\{\{\$compatibility_level\} <level \{[0-9.]+\} \? \{([^{}]*)\} : \{([^{}]*)\}\}`)
	v = compat.ReplaceAllString(v, "$2")
	stress := regexp.MustCompile(`\$\{stress\?\{([^{}]*)\}:\{([^{}]*)\}\}`)
	v = stress.ReplaceAllString(v, "$2")
	// ${smtpd_per_record_deadline?{...}:{no}} and
	// ${smtpd_client_connection_limit_exceptions:$mynetworks}: legacy
	// names mailsrv does not have; take the value they fall back to.
	v = regexp.MustCompile(`^\$\{smtpd_per_record_deadline\?\{[^{}]*\}:\{(.*)\}\}$`).ReplaceAllString(v, "$1")
	v = regexp.MustCompile(`^\$\{smtpd_client_connection_limit_exceptions:(.*)\}$`).ReplaceAllString(v, "$1")
	return v
}

func TestDefaultsMatchPostfix(t *testing.T) {
	t.Parallel()
	for _, name := range Names() {
		p := registry[name]
		if _, ok := defaultExceptions[name]; ok || p.Computed {
			continue
		}
		pf, ok := PostfixDefault(name)
		if !ok {
			t.Errorf("%s is not a Postfix 3.7 parameter; list it in defaultExceptions if it is a mailsrv one", name)
			continue
		}
		want := modernDefault(pf)
		got := p.Default
		if p.Kind == KindList {
			want, got = JoinList(SplitList(want)), JoinList(SplitList(got))
		}
		if got != want {
			t.Errorf("%s: default %q, Postfix has %q", name, got, want)
		}
	}
	for name := range defaultExceptions {
		if _, ok := registry[name]; !ok {
			t.Errorf("defaultExceptions lists %s, which is not in the schema", name)
		}
	}
}

func TestEveryDefaultLoads(t *testing.T) {
	t.Parallel()
	c, err := Parse(filepath.Join(t.TempDir(), "empty.toml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := c.Params
	if p.SmtpdTimeout != 300*time.Second || p.MaximalQueueLifetime != 5*24*time.Hour || p.DelayWarningTime != 0 {
		t.Errorf("durations: %v %v %v", p.SmtpdTimeout, p.MaximalQueueLifetime, p.DelayWarningTime)
	}
	if p.MessageSizeLimit != 10240000 || !p.SmtpdDelayReject || p.SmtpdHeloRequired {
		t.Errorf("scalars: %d %v %v", p.MessageSizeLimit, p.SmtpdDelayReject, p.SmtpdHeloRequired)
	}
	want := []string{"permit_mynetworks", "permit_sasl_authenticated", "defer_unauth_destination"}
	if strings.Join(p.SmtpdRelayRestrictions, ",") != strings.Join(want, ",") {
		t.Errorf("smtpd_relay_restrictions = %q", p.SmtpdRelayRestrictions)
	}
	if p.Myorigin != p.Myhostname || p.Myhostname == "" || !strings.Contains(p.Myhostname, ".") {
		t.Errorf("myorigin %q myhostname %q", p.Myorigin, p.Myhostname)
	}
	if p.SmtpdBanner != p.Myhostname+" ESMTP mailsrv" {
		t.Errorf("smtpd_banner = %q", p.SmtpdBanner)
	}
	if len(p.Mynetworks) == 0 || p.Mynetworks[0] != "127.0.0.0/8" {
		t.Errorf("mynetworks = %q", p.Mynetworks)
	}
}

func parse(t *testing.T, text string) (*Config, error) {
	t.Helper()
	return Parse(filepath.Join("/etc/mailsrv", "mailsrv.toml"), []byte(text))
}

func TestExpansion(t *testing.T) {
	t.Parallel()
	c, err := parse(t, `
myhostname = "mx.example.org"
mydomain = "example.org"
myorigin = "$mydomain"
mydestination = ["$myhostname", "localhost.${mydomain}", "$(myorigin)"]
smtpd_banner = "${myhostname} ESMTP ${relayhost?relayed}${relayhost:direct}"
relay_domains = ["$mydestination", "other.example"]
smtpd_recipient_restrictions = ["${myorigin?{permit}:{reject}}"]
`)
	if err != nil {
		t.Fatal(err)
	}
	p := c.Params
	if p.Myorigin != "example.org" {
		t.Errorf("myorigin = %q", p.Myorigin)
	}
	if got := strings.Join(p.Mydestination, " "); got != "mx.example.org localhost.example.org example.org" {
		t.Errorf("mydestination = %q", got)
	}
	if p.SmtpdBanner != "mx.example.org ESMTP direct" {
		t.Errorf("smtpd_banner = %q", p.SmtpdBanner)
	}
	// A list element that expands to a list is split again.
	if got := strings.Join(p.RelayDomains, " "); got != "mx.example.org localhost.example.org example.org other.example" {
		t.Errorf("relay_domains = %q", got)
	}
	if got := strings.Join(p.SmtpdRecipientRestrictions, " "); got != "permit" {
		t.Errorf("smtpd_recipient_restrictions = %q", got)
	}
	// postconf shows the value as written.
	if raw, _ := c.Raw("myorigin"); raw != "$mydomain" {
		t.Errorf("raw myorigin = %q", raw)
	}
}

func TestExpansionLoop(t *testing.T) {
	t.Parallel()
	_, err := parse(t, `
myhostname = "$mydomain"
mydomain = "$myorigin"
myorigin = "$myhostname"
`)
	if err == nil {
		t.Fatal("loop accepted")
	}
	if !strings.Contains(err.Error(), "refers to itself") || !strings.Contains(err.Error(), "myhostname -> mydomain -> myorigin -> myhostname") {
		t.Errorf("error does not name the loop: %v", err)
	}
	if !strings.Contains(err.Error(), "mailsrv.toml:2") {
		t.Errorf("error does not name the line: %v", err)
	}
	_, err = parse(t, `myorigin = "$nosuchparameter"`)
	if err == nil || !strings.Contains(err.Error(), "undefined parameter $nosuchparameter") {
		t.Errorf("undefined reference: %v", err)
	}
}

// TestBadInput checks that every kind of bad input is an error naming file,
// line and key.
func TestBadInput(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, text string
		want       []string
	}{
		{"unknown key", "myhostname = \"a.b\"\n\nmydestinaton = \"x\"\n",
			[]string{"unknown key mydestinaton at /etc/mailsrv/mailsrv.toml:3; did you mean mydestination?"}},
		{"wrong type int", "message_size_limit = true\n",
			[]string{"wrong type for message_size_limit at /etc/mailsrv/mailsrv.toml:1", "expected an integer, got boolean"}},
		{"wrong type list", "\nmydestination = 5\n",
			[]string{"wrong type for mydestination at /etc/mailsrv/mailsrv.toml:2", "expected an array of strings"}},
		{"integer duration", "smtpd_timeout = 300\n",
			[]string{"wrong type for smtpd_timeout at /etc/mailsrv/mailsrv.toml:1", "time value string"}},
		{"bad duration", "# c\nsmtpd_timeout = \"5x\"\n",
			[]string{"bad value for smtpd_timeout at /etc/mailsrv/mailsrv.toml:2", `unknown time unit "x"`}},
		{"bad integer", "message_size_limit = \"big\"\n",
			[]string{"bad value for message_size_limit at /etc/mailsrv/mailsrv.toml:1", "not an integer"}},
		{"bad bool", "smtpd_helo_required = \"maybe\"\n",
			[]string{"bad value for smtpd_helo_required at /etc/mailsrv/mailsrv.toml:1", "not a boolean"}},
		{"bad enum", "mynetworks_style = \"planet\"\n",
			[]string{"bad value for mynetworks_style at /etc/mailsrv/mailsrv.toml:1", "host, subnet, class"}},
		{"duplicate key", "myhostname = \"a.b\"\nmyhostname = \"c.d\"\n",
			[]string{"/etc/mailsrv/mailsrv.toml:2", "myhostname", "already defined"}},
		{"broken TOML", "myhostname = \"a.b\"\nmydomain = \n",
			[]string{"broken TOML at /etc/mailsrv/mailsrv.toml:2"}},
		{"unknown service key", "[[service]]\nname = \"smtp\"\ntype = \"inet\"\nlisten = \"127.0.0.1:25\"\ncommand = \"smtpd\"\nlsiten = \"x\"\n",
			[]string{`unknown key lsiten in [[service]] "smtp" at /etc/mailsrv/mailsrv.toml:6; did you mean listen?`}},
		{"unknown override", "[[service]]\nname = \"smtp\"\ntype = \"inet\"\nlisten = \"127.0.0.1:25\"\ncommand = \"smtpd\"\n[service.overrides]\nsmtpd_tmeout = \"10s\"\n",
			[]string{`unknown key smtpd_tmeout in [[service]] "smtp" overrides at /etc/mailsrv/mailsrv.toml:7; did you mean smtpd_timeout?`}},
		{"bad override value", "[[service]]\nname = \"smtp\"\ntype = \"inet\"\nlisten = \"127.0.0.1:25\"\ncommand = \"smtpd\"\n[service.overrides]\nsmtpd_timeout = \"ten\"\n",
			[]string{`bad value for smtpd_timeout in [[service]] "smtp" overrides at /etc/mailsrv/mailsrv.toml:7`}},
		{"unknown command", "[[service]]\nname = \"smtp\"\ntype = \"inet\"\nlisten = \"127.0.0.1:25\"\ncommand = \"smptd\"\n",
			[]string{`[[service]] "smtp" at /etc/mailsrv/mailsrv.toml:1: unknown command "smptd"; did you mean smtpd?`}},
		{"bad listen", "[[service]]\nname = \"smtp\"\ntype = \"inet\"\nlisten = \"localhost\"\ncommand = \"smtpd\"\n",
			[]string{`[[service]] "smtp" at /etc/mailsrv/mailsrv.toml:1: listen "localhost"`}},
		{"duplicate service", "[[service]]\nname = \"smtp\"\ntype = \"inet\"\nlisten = \":25\"\ncommand = \"smtpd\"\n[[service]]\nname = \"smtp\"\ntype = \"inet\"\nlisten = \":26\"\ncommand = \"smtpd\"\n",
			[]string{`at /etc/mailsrv/mailsrv.toml:6: duplicate service smtp/inet (first at /etc/mailsrv/mailsrv.toml:1)`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := parse(t, tc.text)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestUnimplementedAndUserDefined(t *testing.T) {
	t.Parallel()
	c, err := parse(t, `
smtpd_milters = ["inet:127.0.0.1:8891"]
mua_client_restrictions = ["permit_sasl_authenticated", "reject"]
relay_destination_concurrency_limit = 5
smtp_destination_recipient_limit = "$default_destination_recipient_limit"

[[service]]
name = "submission"
type = "inet"
listen = "127.0.0.1:587"
command = "smtpd"
[service.overrides]
syslog_name = "mailsrv/submission"
smtpd_client_restrictions = "$mua_client_restrictions"
smtpd_timeout = "10s"
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "mailsrv.toml:2: smtpd_milters is a Postfix parameter that mailsrv does not implement") {
		t.Errorf("warnings = %q", c.Warnings)
	}
	if n := c.Params.TransportInt("relay", "destination_concurrency_limit"); n != 5 {
		t.Errorf("relay concurrency = %d", n)
	}
	if n := c.Params.TransportInt("smtp", "destination_recipient_limit"); n != 50 {
		t.Errorf("smtp recipient limit = %d", n)
	}
	if n := c.Params.TransportInt("local", "destination_recipient_limit"); n != 1 {
		t.Errorf("local recipient limit = %d", n)
	}
	s := serviceNamed(c, "submission")
	if s == nil {
		t.Fatal("no submission service")
	}
	if got := strings.Join(s.Params.SmtpdClientRestrictions, " "); got != "permit_sasl_authenticated reject" {
		t.Errorf("override through user-defined parameter = %q", got)
	}
	if s.Params.SyslogName != "mailsrv/submission" || s.Params.SmtpdTimeout != 10*time.Second {
		t.Errorf("overrides: %q %v", s.Params.SyslogName, s.Params.SmtpdTimeout)
	}
	if c.Params.SmtpdTimeout != 300*time.Second || len(c.Params.SmtpdClientRestrictions) != 0 {
		t.Errorf("overrides leaked into the main scope")
	}
	if s.Limit() != 100 {
		t.Errorf("process limit = %d", s.Limit())
	}

	// Not referenced anywhere: a typo, not a user-defined parameter.
	_, err = parse(t, `mua_client_restrictions = ["reject"]`)
	if err == nil || !strings.Contains(err.Error(), "unknown key mua_client_restrictions") {
		t.Errorf("unreferenced unknown key: %v", err)
	}
}

func TestRelativePaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "mailsrv.toml")
	c, err := Parse(file, []byte(`
queue_directory = "run/spool"
maillog_file = "/dev/stdout"
alias_maps = ["hash:aliases", "inline:{ a=b }", "proxy:texthash:virtual", "hash:/etc/aliases"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Params.QueueDirectory != filepath.Join(dir, "run/spool") {
		t.Errorf("queue_directory = %q", c.Params.QueueDirectory)
	}
	if c.Params.MaillogFile != "/dev/stdout" {
		t.Errorf("maillog_file = %q", c.Params.MaillogFile)
	}
	want := []string{"hash:" + dir + "/aliases", "inline:{ a=b }", "proxy:texthash:" + dir + "/virtual", "hash:/etc/aliases"}
	if strings.Join(c.Params.AliasMaps, "|") != strings.Join(want, "|") {
		t.Errorf("alias_maps = %q", c.Params.AliasMaps)
	}
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		unit byte
		want time.Duration
		ok   bool
	}{
		{"300s", 's', 300 * time.Second, true},
		{"300", 's', 300 * time.Second, true},
		{"5", 'd', 5 * 24 * time.Hour, true},
		{"1h30m", 's', 90 * time.Minute, true},
		{"2w", 's', 14 * 24 * time.Hour, true},
		{"0h", 'h', 0, true},
		{"", 's', 0, false},
		{"5x", 's', 0, false},
		{"s", 's', 0, false},
		{"1h30", 's', 0, false},
		{"-5s", 's', 0, false},
	}
	for _, c := range cases {
		got, err := ParseDuration(c.in, c.unit)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseDuration(%q) = %v, %v", c.in, got, err)
		}
	}
}

func TestSplitList(t *testing.T) {
	t.Parallel()
	got := SplitList("a, b\tc,,d inline:{ x=1, y=2 } e")
	want := []string{"a", "b", "c", "d", "inline:{ x=1, y=2 }", "e"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("SplitList = %q", got)
	}
}

const editBase = `# My mail server.
myhostname = "mx.example.org"   # the name
# Who may relay.
mynetworks = ["127.0.0.0/8"]

[[service]]
# the SMTP listener
name = "smtp"
type = "inet"
listen = "127.0.0.1:2525"
command = "smtpd"
`

func TestEdit(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "mailsrv.toml")
	if err := os.WriteFile(file, []byte(editBase), 0o640); err != nil {
		t.Fatal(err)
	}
	err := Edit(file, []string{
		"myhostname=mail.example.org",
		"mynetworks = 127.0.0.0/8, [::1]/128",
		"smtpd_helo_required=yes",
		"message_size_limit=20480000",
		"smtpd_banner=$myhostname ESMTP \"hi\"",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(file)
	got := string(b)
	want := `# My mail server.
myhostname = "mail.example.org"   # the name
# Who may relay.
mynetworks = ["127.0.0.0/8", "[::1]/128"]
smtpd_helo_required = true
message_size_limit = 20480000
smtpd_banner = "$myhostname ESMTP \"hi\""

[[service]]
# the SMTP listener
name = "smtp"
type = "inet"
listen = "127.0.0.1:2525"
command = "smtpd"
`
	if got != want {
		t.Errorf("after -e:\n%s\nwant:\n%s", got, want)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o640 {
		t.Errorf("mode changed to %v", st.Mode())
	}
	c, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Params.SmtpdHeloRequired || c.Params.MessageSizeLimit != 20480000 || c.Params.SmtpdBanner != `mail.example.org ESMTP "hi"` {
		t.Errorf("edited values not loaded: %+v", c.Params.SmtpdBanner)
	}

	// A bad edit is refused and leaves the file as it was.
	for _, bad := range []string{"smtpd_timeout=soon", "mydestinaton=x", "novalue"} {
		if err := Edit(file, []string{bad}, nil); err == nil {
			t.Errorf("Edit(%q) accepted", bad)
		}
	}
	if b2, _ := os.ReadFile(file); string(b2) != got {
		t.Errorf("a refused edit changed the file")
	}

	// -X removes a key and only its line.
	if err := Edit(file, nil, []string{"smtpd_helo_required"}); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(file)
	if strings.Contains(string(b), "smtpd_helo_required") || !strings.Contains(string(b), "# Who may relay.") {
		t.Errorf("after -X:\n%s", b)
	}
}

func TestEditEmptyFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "mailsrv.toml")
	if err := os.WriteFile(file, []byte("# nothing yet"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Edit(file, []string{"relayhost=[smtp.example.net]:587"}, nil); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(file)
	if string(b) != "# nothing yet\nrelayhost = \"[smtp.example.net]:587\"\n" {
		t.Errorf("got %q", b)
	}
}

func TestExpansionBomb(t *testing.T) {
	t.Parallel()
	text := "mynetworks_style = \"host\"\n"
	names := []string{"myorigin", "mydomain", "smtpd_banner", "relayhost", "mail_name", "double_bounce_sender", "bounce_notice_recipient", "delay_notice_recipient", "error_notice_recipient", "2bounce_notice_recipient", "always_bcc", "default_privs", "setgid_group", "syslog_facility", "relay_transport", "local_transport", "virtual_transport", "default_transport", "recipient_delimiter", "home_mailbox", "empty_address_recipient", "smtp_helo_name", "smtp_bind_address", "smtpd_null_access_lookup_key", "remote_header_rewrite_domain"}
	for i := 0; i+1 < len(names); i++ {
		text += names[i] + " = \"$" + names[i+1] + "$" + names[i+1] + "\"\n"
	}
	text += names[len(names)-1] + " = \"xxxxxxxx\"\n"
	_, err := parse(t, text)
	if err == nil || !strings.Contains(err.Error(), "after $name expansion") {
		t.Errorf("2^24-fold expansion: %v", err)
	}
}

// serviceNamed returns the first service with the given name, or nil.
func serviceNamed(c *Config, name string) *Service {
	for _, s := range c.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}
