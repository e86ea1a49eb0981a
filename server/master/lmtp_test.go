package master

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"mailsrv/internal/testutil"
)

// startDovecot runs a private Dovecot LMTP server on a unix socket under
// base, with a passwd-file of the given users, and returns the socket.
func startDovecot(t *testing.T, base string, users ...string) string {
	t.Helper()
	openDir(t, filepath.Join(base, "mail"), 0o755)
	os.Chown(filepath.Join(base, "mail"), 65534, 65534)
	var pw strings.Builder
	for _, u := range users {
		fmt.Fprintf(&pw, "%s::65534:65534::%s::\n", u, filepath.Join(base, "mail", u))
	}
	if err := os.WriteFile(filepath.Join(base, "users"), []byte(pw.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return testutil.Dovecot(t, base, fmt.Sprintf(`
protocols = lmtp
mail_location = maildir:~/Maildir
auth_username_format = %%n
userdb {
  driver = passwd-file
  args = %[1]s/users
}
passdb {
  driver = passwd-file
  args = %[1]s/users
}
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
}
`, base), "lmtp")
}

// TestLMTPDovecot: mail for a domain routed to lmtp:unix:… goes into a
// real Dovecot; one transaction with a known and an unknown recipient
// gives each its own status (delivered, bounced).
func TestLMTPDovecot(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	sock := startDovecot(t, filepath.Join(base, "dovecot"), "alice", "bob")
	dir, addr, stop := deliveryDaemon(t, fmt.Sprintf(`
alias_maps = []
relay_domains = ["lmtp.example"]
transport_maps = ["inline:{ lmtp.example=lmtp:unix:%s }"]
`, sock))
	send(t, addr, "s@example.test", []string{"alice@lmtp.example", "bob@lmtp.example", "carol@lmtp.example"}, "Subject: via lmtp\r\n\r\nhello dovecot\r\n")
	eventuallyLog(t, dir, "three LMTP results", func() bool {
		return strings.Count(readLog(dir), "relay=mx.example.test["+sock+"]") == 3
	})
	stop()
	for _, u := range []string{"alice", "bob"} {
		files, _ := filepath.Glob(filepath.Join(base, "dovecot", "mail", u, "Maildir", "new", "*"))
		if len(files) != 1 {
			t.Errorf("%s has %d messages in Dovecot, want 1", u, len(files))
			continue
		}
		b, _ := os.ReadFile(files[0])
		if !strings.Contains(string(b), "Subject: via lmtp") || !strings.Contains(string(b), "hello dovecot") {
			t.Errorf("%s's message:\n%s", u, b)
		}
	}
	log := readLog(dir)
	for _, re := range []string{
		`lmtp\[\d+\]: \w+: to=<alice@lmtp.example>, relay=mx.example.test\[` + regexp.QuoteMeta(sock) + `\], delay=[\d.]+, delays=[\d./]+, dsn=2.0.0, status=sent \(250 2.0.0 <alice@lmtp.example> \S+ Saved\)`,
		`lmtp\[\d+\]: \w+: to=<carol@lmtp.example>, relay=mx.example.test\[` + regexp.QuoteMeta(sock) + `\], .*dsn=5.1.1, status=bounced \(host mx.example.test\[` + regexp.QuoteMeta(sock) + `\] said: 550 5.1.1 <carol@lmtp.example> User doesn't exist: carol@lmtp.example \(in reply to RCPT TO command\)\)`,
	} {
		if !regexp.MustCompile(re).MatchString(log) {
			t.Errorf("mail log lacks %s:\n%s", re, log)
		}
	}
}
