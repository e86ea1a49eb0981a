package smtpd

import (
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestAuth: AUTH only after STARTTLS (smtpd_tls_auth_only), PLAIN and
// LOGIN against the built-in password file, Postfix's failure reply and
// the warning fail2ban matches, relaying allowed by
// permit_sasl_authenticated and the user name logged.
func TestAuth(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hash, _ := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	pw := filepath.Join(dir, "passwd")
	if err := os.WriteFile(pw, []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, fmt.Sprintf(`
smtpd_tls_security_level = "may"
smtpd_tls_chain_files = [%q]
smtpd_tls_auth_only = true
smtpd_sasl_auth_enable = true
smtpd_sasl_path = %q
smtpd_relay_restrictions = ["permit_mynetworks", "permit_sasl_authenticated", "reject_unauth_destination"]
smtpd_sender_restrictions = ["reject_sender_login_mismatch"]
smtpd_sender_login_maps = ["inline:{ alice@client.test=alice, bob@client.test=bob }"]
smtpd_delay_reject = false
`, certFile(t), pw))
	plain := func(user, pass string) string {
		return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	}
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO client.test", "250-mx.our.test*")
	c.cmd("AUTH PLAIN "+plain("alice", "correct horse"), "530 5.7.0 Must issue a STARTTLS command first")
	c.cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
	c.upgrade()
	if r := c.cmd("EHLO client.test", "250-mx.our.test*"); !contains(r, "250-AUTH PLAIN LOGIN") {
		t.Errorf("AUTH not offered after STARTTLS:\n%s", r)
	}
	// Before AUTH: alice's address needs a login.
	c.cmd("MAIL FROM:<alice@client.test>", "553 5.7.1 <alice@client.test>: Sender address rejected: not logged in")
	c.cmd("MAIL FROM:<carol@client.test>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<x@elsewhere.test>", "554 5.7.1 <x@elsewhere.test>: Relay access denied")
	c.cmd("RSET", "250 2.0.0 Ok")
	c.cmd("AUTH PLAIN "+plain("alice", "wrong"), "535 5.7.8 Error: authentication failed: authentication failure")
	// RFC 4616: an authorization identity the user may not act as.
	asRoot := base64.StdEncoding.EncodeToString([]byte("root\x00alice\x00correct horse"))
	c.cmd("AUTH PLAIN "+asRoot, "535 5.7.8 Error: authentication failed: authentication failure")
	c.cmd("AUTH CRAM-MD5", "504 5.5.4 Unsupported authentication mechanism")
	// LOGIN, step by step: Username:, Password:.
	c.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
	c.cmd(base64.StdEncoding.EncodeToString([]byte("alice")), "334 UGFzc3dvcmQ6")
	c.cmd(base64.StdEncoding.EncodeToString([]byte("correct horse")), "235 2.7.0 Authentication successful")
	c.cmd("AUTH PLAIN "+plain("alice", "correct horse"), "503 5.5.1 Error: already authenticated")
	// Sending as someone else is refused; alice may send as herself.
	c.cmd("MAIL FROM:<bob@client.test>", "553 5.7.1 <bob@client.test>: Sender address rejected: not owned by user alice")
	c.cmd("MAIL FROM:<alice@client.test>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<x@elsewhere.test>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 End data with <CR><LF>.<CR><LF>")
	c.cmd("Subject: relayed\r\n\r\nx\r\n.", "250 2.0.0 Ok: queued as *")
	c.cmd("QUIT", "221 2.0.0 Bye")
	ts.waitLog(t, "warning: unknown[127.0.0.2]: SASL PLAIN authentication failed: authentication failure")
	ts.waitLog(t, ", sasl_method=LOGIN, sasl_username=alice")
	msgs := ts.messages(t)
	if len(msgs) != 1 || msgs[0].Attr("sasl_username") != "alice" || msgs[0].Attr("sasl_method") != "LOGIN" {
		t.Errorf("queued message attributes: %v", msgs)
	}
	// RFC 3848: TLS and AUTH make ESMTPSA.
	if b := body(t, msgs[0]); !regexp.MustCompile(`\n\tby mx.our.test \(mailsrv\) with ESMTPSA id `).MatchString(b) {
		t.Errorf("Received header without ESMTPSA:\n%s", b)
	}

	// The user's own name as authorization identity is fine.
	c = ts.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO client.test", "250-mx.our.test*")
	c.cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
	c.upgrade()
	c.cmd("EHLO client.test", "250-mx.our.test*")
	self := base64.StdEncoding.EncodeToString([]byte("alice\x00alice\x00correct horse"))
	c.cmd("AUTH PLAIN "+self, "235 2.7.0 Authentication successful")
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestAuthRateLimit: past smtpd_client_auth_rate_limit a client's AUTH
// commands get 450 4.7.1 and a warning, whatever the password.
func TestAuthRateLimit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hash, _ := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	pw := filepath.Join(dir, "passwd")
	if err := os.WriteFile(pw, []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, fmt.Sprintf(`
smtpd_sasl_auth_enable = true
smtpd_sasl_path = %q
smtpd_sasl_security_options = ["noanonymous"]
smtpd_tls_auth_only = false
smtpd_client_auth_rate_limit = 2
`, pw))
	bad := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00wrong"))
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO client.test", "250-mx.our.test*")
	c.cmd("AUTH PLAIN "+bad, "535 5.7.8 Error: authentication failed: authentication failure")
	c.cmd("AUTH PLAIN "+bad, "535 5.7.8 Error: authentication failed: authentication failure")
	c.cmd("AUTH PLAIN "+bad, "450 4.7.1 Error: too many AUTH commands from 127.0.0.2")
	ts.waitLog(t, "warning: AUTH command rate limit exceeded: 3 from unknown[127.0.0.2] for service smtp")

	// fail2ban's stock postfix filter (mode auth) catches the failures,
	// told the program name (or with syslog_name = postfix).
	bin, err := exec.LookPath("fail2ban-regex")
	if err != nil {
		t.Log("fail2ban-regex is not installed (apt-get install fail2ban); the filter check is skipped")
		return
	}
	logFile := filepath.Join(dir, "maillog")
	if err := os.WriteFile(logFile, []byte(ts.logs.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, logFile, `postfix[mode=auth, _daemon="mailsrv(-\w+)?/\w+(?:/smtp[ds])?"]`).CombinedOutput()
	if err != nil || !strings.Contains(string(out), " 2 matched,") {
		t.Errorf("fail2ban-regex: %v\n%s", err, out)
	}
}
