package smtpd

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"mailsrv/internal/testutil"
)

// TestAuthDovecot: smtpd_sasl_type = dovecot against a real Dovecot auth
// service (a private instance with a throwaway passwd-file).
func TestAuthDovecot(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	if err := os.WriteFile(filepath.Join(base, "users"), []byte("alice:{PLAIN}correct horse:65534:65534::/nonexistent::\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := testutil.Dovecot(t, base, fmt.Sprintf(`
protocols =
auth_mechanisms = plain login
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
passdb {
  driver = passwd-file
  args = %[1]s/users
}
userdb {
  driver = passwd-file
  args = %[1]s/users
}
service auth {
  unix_listener auth-smtpd {
    mode = 0666
  }
}
`, base), "auth-smtpd")

	ts := startServer(t, fmt.Sprintf(`
smtpd_sasl_auth_enable = true
smtpd_sasl_type = "dovecot"
smtpd_sasl_path = %q
smtpd_sasl_security_options = ["noanonymous"]
smtpd_tls_auth_only = false
`, sock))
	plain := func(user, pass string) string {
		return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	}
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO client.test", "250-mx.our.test*")
	// One failure only: Dovecot's per-client penalty slows every further
	// attempt (as it should).
	c.cmd("AUTH PLAIN "+plain("alice", "wrong"), "535 5.7.8 Error: authentication failed: authentication failure")
	c.cmd("AUTH PLAIN "+plain("alice", "correct horse"), "235 2.7.0 Authentication successful")
	c.cmd("QUIT", "221 2.0.0 Bye")
	ts.waitLog(t, "warning: unknown[127.0.0.2]: SASL PLAIN authentication failed: authentication failure")
}
