package bounce

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailsrv/config"
)

func TestTemplates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "bounce.cf")
	if err := os.WriteFile(file, []byte(`# comment
failure_template = <<EOF
Charset: utf-8
Subject: Zurück an den Absender
Postmaster-Subject: Kopie

Hier ist $myhostname. Warnung nach $delay_warning_time_hours Stunden,
Aufgabe nach $maximal_queue_lifetime_days Tagen ($maximal_queue_lifetime_seconds s).
Unbekannt: $no_such_parameter.
EOF
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(filepath.Join(dir, "mailsrv.toml"), []byte(`myhostname = "mx.test"
delay_warning_time = "4h"
maximal_queue_lifetime = "2d"
bounce_template_file = "bounce.cf"
`))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Params
	ts, err := loadTemplates(p.BounceTemplateFile)
	if err != nil {
		t.Fatal(err)
	}
	f := ts["failure_template"]
	if f.subject != "Zurück an den Absender" || f.pmSubject != "Kopie" || f.charset != "utf-8" || f.from != builtinTemplates["failure_template"].from {
		t.Errorf("failure_template: %+v", f)
	}
	want := "Hier ist mx.test. Warnung nach 4 Stunden,\nAufgabe nach 2 Tagen (172800 s).\nUnbekannt: $no_such_parameter.\n"
	if got := expand(f.text, p); got != want {
		t.Errorf("expanded:\n%q\nwant\n%q", got, want)
	}
	if ts["delay_template"] != builtinTemplates["delay_template"] {
		t.Error("a template the file leaves out lost its built-in text")
	}
	if got := expand(builtinTemplates["delay_template"].text, p); !strings.Contains(got, "for more than 4 hour(s).\nIt will be retried until it is 2 day(s) old.") {
		t.Errorf("built-in delay text:\n%s", got)
	}
	if got := qualify("MAILER-DAEMON (Mail Delivery System)", "our.test"); got != "MAILER-DAEMON@our.test (Mail Delivery System)" {
		t.Errorf("qualify: %q", got)
	}
	if got := qualify("Mail System <daemon@x.test>", "our.test"); got != "Mail System <daemon@x.test>" {
		t.Errorf("qualify kept: %q", got)
	}

	for name, text := range map[string]string{
		"unknown template": "hello_template = <<EOF\nx\nEOF\n",
		"no end":           "failure_template = <<EOF\nSubject: x\n\ntext\n",
		"no marker":        "failure_template = text\n",
		"unknown header":   "failure_template = <<EOF\nX-Foo: bar\n\ntext\nEOF\n",
		"8-bit in ascii":   "failure_template = <<EOF\nCharset: us-ascii\n\nGrüße\nEOF\n",
	} {
		bad := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		if err := os.WriteFile(bad, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := loadTemplates(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%s: error %v, want one naming the file", name, err)
		}
	}
	if _, err := loadTemplates(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing template file loaded")
	}
}

// FuzzTemplates: any bounce_template_file either loads or is refused with
// an error naming the file; it never panics, and a loaded template's text
// expands.
func FuzzTemplates(f *testing.F) {
	f.Add("failure_template = <<EOF\nSubject: x\n\ntext $myhostname\nEOF\n")
	f.Add("delay_template = <<END\nCharset: utf-8\nPostmaster-Subject: y\n\n${delay_warning_time_hours}\nEND\n# c\n")
	f.Add("verify_template = <<EOF\nFrom: a (b)\n\nEOF\n")
	f.Add("success_template = <<\n")
	cfg, err := config.Parse("/tmp/mailsrv.toml", []byte(`myhostname = "mx.test"`))
	if err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, text string) {
		file := filepath.Join(dir, "t.cf")
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Skip()
		}
		ts, err := loadTemplates(file)
		if err != nil {
			if !strings.Contains(err.Error(), file) && !strings.Contains(err.Error(), "bounce_template_file") {
				t.Errorf("error does not name the file: %v", err)
			}
			return
		}
		for _, tp := range ts {
			_ = expand(tp.text, cfg.Params)
			_ = qualify(tp.from, "x.test")
		}
	})
}
