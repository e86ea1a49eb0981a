package config

import (
	"os"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary files to the loader: it must return a config or
// an error, never panic or hang.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("../config.example.toml"); err == nil {
		f.Add(string(b))
	}
	f.Add(editBase)
	f.Add("myhostname = \"$mydomain\"\nmydomain = \"${myhostname?{x}:{y}}\"\n")
	f.Add("smtpd_banner = \"${a?{b}\"\n")
	f.Add("[[service]]\nname=\"x\"\n[service.overrides]\nmyorigin=\"$(myhostname\"\n")
	f.Fuzz(func(t *testing.T, text string) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			c, err := Parse("/etc/mailsrv/mailsrv.toml", []byte(text))
			if err == nil && c.Params == nil {
				t.Error("no error and no params")
			}
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("Parse hangs on %q", text)
		}
	})
}

// FuzzEdit checks that postconf -e never produces a file that does not
// load: Edit either refuses or writes a valid config.
func FuzzEdit(f *testing.F) {
	f.Add(editBase, "myhostname", "a.example")
	f.Add("# x", "mydestination", "a, b, $myhostname")
	f.Add("x = [\n 1,\n]\n", "smtpd_banner", "\"quoted\" \\ back")
	f.Fuzz(func(t *testing.T, base, name, value string) {
		file := t.TempDir() + "/m.toml"
		if err := os.WriteFile(file, []byte(base), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := Edit(file, []string{name + "=" + value}, nil); err != nil {
			return
		}
		if _, err := Load(file); err != nil {
			t.Fatalf("Edit wrote a file that does not load: %v", err)
		}
	})
}
