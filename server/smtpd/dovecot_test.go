package smtpd

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestAuthDovecot: smtpd_sasl_type = dovecot against a real Dovecot auth
// service (a private instance with a throwaway passwd-file).
func TestAuthDovecot(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("dovecot")
	if err != nil {
		t.Skip("Dovecot is not installed (apt-get install dovecot-core); skipping the Dovecot auth test")
	}
	if os.Geteuid() != 0 {
		t.Skip("starting Dovecot needs root; skipping the Dovecot auth test")
	}
	base := t.TempDir()
	for d := base; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	for _, d := range []string{"run", "state"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(base, "users"), []byte("alice:{PLAIN}correct horse:65534:65534::/nonexistent::\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(base, "dovecot.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols =
ssl = no
default_internal_user = dovecot
default_login_user = dovenull
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
`, base)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-F", "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sock := filepath.Join(base, "run", "auth-smtpd")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(base, "dovecot.log"))
			t.Fatalf("Dovecot did not create %s:\n%s", sock, b)
		}
		time.Sleep(10 * time.Millisecond)
	}

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
