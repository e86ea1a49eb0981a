package smtpd

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestMoreRestrictions: reject_multi_recipient_bounce (a bounce to two
// recipients) and sleep (a pause before the answer, here 0 s: the
// restriction's parsing and its place in the list).
func TestMoreRestrictions(t *testing.T) {
	t.Parallel()
	ts := startServer(t, `
smtpd_recipient_restrictions = ["sleep", "0", "reject_multi_recipient_bounce", "permit_mynetworks", "reject_unauth_destination"]
`)
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO client.example", "250-*")
	c.cmd("MAIL FROM:<>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "250 2.1.5 Ok")
	c.cmd("RCPT TO:<bob@our.test>", "550 5.5.3 <bob@our.test>: Recipient address rejected: Multi-recipient bounce")
	c.cmd("RSET", "250 2.0.0 Ok")
	c.cmd("MAIL FROM:<a@remote.example>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "250 2.1.5 Ok")
	c.cmd("RCPT TO:<bob@our.test>", "250 2.1.5 Ok")
	// defer_if_reject turns a later rejection into its own deferral
	// (here the unknown user's 550); defer_if_permit defers what would
	// be accepted; access tables' DEFER_IF_* likewise (Postfix's texts).
	d := startServer(t, `
smtpd_recipient_restrictions = ["check_recipient_access", "inline:{ {alice@our.test=maybe}, {map@our.test=DEFER_IF_REJECT 4.2.0 busy here} }", "permit_mynetworks", "reject_unauth_destination"]
smtpd_restriction_classes = ["soft", "maybe"]
soft = ["defer_if_reject", "reject_unlisted_recipient"]
maybe = ["defer_if_permit"]
smtpd_sender_restrictions = ["check_sender_access", "inline:{ {a@soft.example=soft}, {a@perm.example=DEFER_IF_PERMIT} }"]
`)
	c = d.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO client.example", "250-*")
	c.cmd("MAIL FROM:<a@remote.example>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<bob@our.test>", "250 2.1.5 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "450 4.7.0 <alice@our.test>: Recipient address rejected: defer_if_permit requested")
	c.cmd("RCPT TO:<map@our.test>", "450 4.2.0 <map@our.test>: Recipient address rejected: busy here")
	c.cmd("RSET", "250 2.0.0 Ok")
	c.cmd("MAIL FROM:<a@soft.example>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<bob@our.test>", "250 2.1.5 Ok")
	c.cmd("RCPT TO:<nosuch@our.test>", "450 4.7.0 <a@soft.example>: Sender address rejected: defer_if_reject requested")
	c.cmd("RSET", "250 2.0.0 Ok")
	c.cmd("MAIL FROM:<a@perm.example>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<bob@our.test>", "450 4.7.1 <a@perm.example>: Sender address rejected: Service unavailable")
	if _, err := buildServer(t, `smtpd_recipient_restrictions = ["sleep", "soon", "reject_unauth_destination"]`); err == nil {
		t.Error("sleep soon accepted")
	}
}

// TestCheckSASLAccess: check_sasl_access looks the login name up.
func TestCheckSASLAccess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	pw := filepath.Join(dir, "passwd")
	if err := os.WriteFile(pw, []byte("alice:"+string(hash)+"\nmallory:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, fmt.Sprintf(`
smtpd_tls_auth_only = false
smtpd_sasl_auth_enable = true
smtpd_sasl_path = %q
smtpd_recipient_restrictions = ["check_sasl_access", "inline:{ {mallory=REJECT account suspended} }", "permit_sasl_authenticated", "reject_unauth_destination"]
`, pw))
	for user, want := range map[string]string{
		"alice":   "250 2.1.5 Ok",
		"mallory": "554 5.7.1 <mallory>: SASL login name rejected: account suspended",
	} {
		c := ts.dialFrom(t, "127.0.0.2")
		c.cmd("EHLO client.example", "250-*")
		c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00pw")), "235 2.7.0 Authentication successful")
		c.cmd("MAIL FROM:<"+user+"@our.test>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<x@elsewhere.example>", want)
	}
}
