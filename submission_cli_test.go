package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"mailsrv/internal/testutil"
)

// TestSubmissionWithSwaks runs the example configuration's submission
// (587: STARTTLS, then AUTH) and submissions (465: implicit TLS) services
// and talks to them with swaks, as a mail client would.
func TestSubmissionWithSwaks(t *testing.T) {
	t.Parallel()
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Skip("swaks is not installed (apt-get install swaks)")
	}
	dir, _ := newInstance(t)
	// A certificate, and the example's commented submission services
	// switched on, on free loopback ports.
	chain := filepath.Join(dir, "chain.pem")
	writeSelfSigned(t, chain, "mail.example.test")
	if err := os.WriteFile(filepath.Join(dir, "senders"), []byte("alice@example.test alice\nbob@example.test bob\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "mailsrv.toml")
	b, _ := os.ReadFile(cfgPath)
	text := string(b)
	i := strings.Index(text, "# [[service]]\n# name = \"submission\"")
	if i < 0 {
		t.Fatal("config.example.toml has no submission example")
	}
	var on []string
	for _, l := range strings.Split(text[i:], "\n") {
		switch {
		case strings.HasPrefix(l, "# # "):
			l = l[4:]
		case strings.HasPrefix(l, "# "):
			l = l[2:]
		case l == "#":
			l = ""
		}
		on = append(on, l)
	}
	sub, subs := testutil.FreeAddr(t), testutil.FreeAddr(t)
	block := strings.Join(on, "\n")
	block = strings.ReplaceAll(block, "/etc/mailsrv/tls/chain.pem", chain)
	block = strings.ReplaceAll(block, "/etc/mailsrv/senders", filepath.Join(dir, "senders"))
	block = strings.Replace(block, "127.0.0.1:5587", sub, 1)
	block = strings.Replace(block, "127.0.0.1:5465", subs, 1)
	if err := os.WriteFile(cfgPath, []byte(text[:i]+block), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "start"); code != 0 {
		t.Fatalf("start: %d %s", code, errOut)
	}
	defer mailsrv(t, dir, "mailsrv", "-c", "mailsrv.toml", "postfix", "stop")
	for _, u := range []string{"alice", "bob"} {
		if _, e, code := mailsrvStdin(t, dir, "correct horse "+u+"\n", "mailsrv", "-c", "mailsrv.toml", "saslpasswd", u); code != 0 {
			t.Fatalf("saslpasswd: %s", e)
		}
	}
	run := func(args ...string) string {
		out, _ := exec.Command(swaks, append([]string{"--timeout", "20"}, args...)...).CombinedOutput()
		return string(out)
	}
	alice := []string{"--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "correct horse alice", "--from", "alice@example.test", "--to", "friend@remote.example"}
	if out := run(append([]string{"--server", sub, "-tls"}, alice...)...); !strings.Contains(out, "235 2.7.0 Authentication successful") || !strings.Contains(out, "250 2.0.0 Ok: queued as") {
		t.Errorf("587 STARTTLS + AUTH PLAIN:\n%s", out)
	}
	if out := run(append([]string{"--server", subs, "--tlsc"}, alice...)...); !strings.Contains(out, "250 2.0.0 Ok: queued as") {
		t.Errorf("465 implicit TLS:\n%s", out)
	}
	if out := run("--server", sub, "-tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "wrong", "--from", "alice@example.test", "--to", "friend@remote.example"); !strings.Contains(out, "535 5.7.8 Error: authentication failed") {
		t.Errorf("wrong password:\n%s", out)
	}
	if out := run("--server", sub, "-tls", "--from", "alice@example.test", "--to", "friend@remote.example"); !strings.Contains(out, "554 5.7.1") {
		t.Errorf("relay without AUTH:\n%s", out)
	}
	if out := run("--server", sub, "-tls", "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "correct horse alice", "--from", "bob@example.test", "--to", "friend@remote.example"); !strings.Contains(out, "553 5.7.1 <bob@example.test>: Sender address rejected: not owned by user alice") {
		t.Errorf("sending as bob:\n%s", out)
	}
	// Postfix's posttls-finger sees the chain and the protocol.
	if finger, err := exec.LookPath("posttls-finger"); err == nil {
		mc := t.TempDir()
		os.WriteFile(filepath.Join(mc, "main.cf"), nil, 0o644)
		fc := exec.Command(finger, "-c", "-C", "-l", "may", "["+strings.Split(sub, ":")[0]+"]:"+strings.Split(sub, ":")[1])
		fc.Env = append(os.Environ(), "MAIL_CONFIG="+mc)
		out, _ := fc.CombinedOutput()
		host, port, _ := net.SplitHostPort(sub)
		if !strings.Contains(string(out), "TLS connection established to "+host+"["+host+"]:"+port+": TLSv1.3 with cipher") ||
			!strings.Contains(string(out), "-----BEGIN CERTIFICATE-----") || !strings.Contains(string(out), "mail.example.test") {
			t.Errorf("posttls-finger:\n%s", out)
		}
	}
	// AUTH before STARTTLS: swaks will not even try (no AUTH offered), so
	// by hand.
	c := dialSMTP(t, "127.0.0.1", sub)
	for _, l := range c.cmd("EHLO client.test", "250 *") {
		if strings.Contains(l, "AUTH") {
			t.Errorf("AUTH offered before STARTTLS: %s", l)
		}
	}
	c.cmd("AUTH PLAIN AGFsaWNlAGNvcnJlY3QgaG9yc2UgYWxpY2U=", "530 5.7.0 Must issue a STARTTLS command first")
}
