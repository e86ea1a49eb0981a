package smtpd

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"mailsrv/internal/testutil"
)

// policyFake answers by recipient local part: reject, defer (a
// DEFER_IF_PERMIT), prepend, hang (no answer), else DUNNO; it keeps the
// requests.
type policyFake struct {
	mu   sync.Mutex
	reqs []map[string]string
}

func startPolicyFake(t *testing.T) (*policyFake, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f := &policyFake{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req := map[string]string{}
					for {
						l, err := br.ReadString('\n')
						if err != nil {
							return
						}
						if l = strings.TrimRight(l, "\n"); l == "" {
							break
						}
						k, v, _ := strings.Cut(l, "=")
						req[k] = v
					}
					f.mu.Lock()
					f.reqs = append(f.reqs, req)
					f.mu.Unlock()
					local, _, _ := strings.Cut(req["recipient"], "@")
					action := "DUNNO"
					switch local {
					case "reject":
						action = "REJECT policy says no"
					case "defer":
						action = "DEFER_IF_PERMIT Service temporarily unavailable"
					case "prepend":
						action = "PREPEND X-Policy: checked " + req["client_address"]
					case "hang":
						time.Sleep(time.Hour)
					}
					fmt.Fprintf(c, "action=%s\n\n", action)
				}
			}()
		}
	}()
	return f, ln.Addr().String()
}

// TestPolicyService: check_policy_service with a policy server's answers
// taken as access table results (REJECT, DEFER_IF_PERMIT, PREPEND into
// the queued message's header, DUNNO), Postfix's attributes in the
// request, and a server that does not answer costing the timeout and
// giving smtpd_policy_service_default_action.
func TestPolicyService(t *testing.T) {
	t.Parallel()
	f, addr := startPolicyFake(t)
	ts := startServer(t, fmt.Sprintf(`
smtpd_recipient_restrictions = ["permit_mynetworks", "reject_unauth_destination", "check_policy_service", "inet:%s"]
smtpd_policy_service_timeout = "1s"
smtpd_policy_service_try_limit = 1
`, addr))
	c := ts.dialFrom(t, "127.0.0.2")
	c.cmd("EHLO client.example", "250-*")
	c.cmd("MAIL FROM:<s@remote.example> SIZE=100", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<reject@relayed.test>", "554 5.7.1 <reject@relayed.test>: Recipient address rejected: policy says no")
	c.cmd("RCPT TO:<defer@relayed.test>", "450 4.7.1 <defer@relayed.test>: Recipient address rejected: Service temporarily unavailable")
	c.cmd("RCPT TO:<prepend@relayed.test>", "250 2.1.5 Ok")
	c.cmd("RCPT TO:<alice@our.test>", "250 2.1.5 Ok")
	c.cmd("DATA", "354 *")
	c.cmd("Subject: policy\r\n\r\nx\r\n.", "250 2.0.0 Ok: queued as *")
	start := time.Now()
	c.cmd("MAIL FROM:<s@remote.example>", "250 2.1.0 Ok")
	c.cmd("RCPT TO:<hang@relayed.test>", "451 4.3.5 <hang@relayed.test>: Recipient address rejected: Server configuration problem")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("a silent policy server cost %v", d)
	}
	ts.waitLog(t, "warning: problem talking to server inet:"+addr+": ")
	msgs := ts.messages(t)
	if len(msgs) != 1 || !strings.HasPrefix(body(t, msgs[0]), "X-Policy: checked 127.0.0.2\nReceived: from client.example") {
		t.Errorf("queued: %q", body(t, msgs[0]))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.reqs[0]
	for k, want := range map[string]string{"request": "smtpd_access_policy", "protocol_state": "RCPT", "protocol_name": "ESMTP",
		"client_address": "127.0.0.2", "client_name": "unknown", "helo_name": "client.example", "sender": "s@remote.example",
		"recipient": "reject@relayed.test", "recipient_count": "0", "size": "100", "server_address": "127.0.0.1"} {
		if r[k] != want {
			t.Errorf("attribute %s = %q, want %q (request %v)", k, r[k], want, r)
		}
	}
	if r["instance"] == "" || f.reqs[3]["instance"] != r["instance"] || f.reqs[4]["instance"] == r["instance"] {
		t.Errorf("instance: one per transaction: %q %q %q", r["instance"], f.reqs[3]["instance"], f.reqs[4]["instance"])
	}
	if f.reqs[3]["recipient_count"] != "1" {
		t.Errorf("recipient_count at the fourth RCPT: %q", f.reqs[3]["recipient_count"])
	}
}

// TestPostgrey: Debian's postgrey as the policy server: the first
// attempt is greylisted (450 with postgrey's text), the same triplet
// after the delay is accepted and the message gets postgrey's
// X-Greylist header.
func TestPostgrey(t *testing.T) {
	t.Parallel()
	addr, out := testutil.Postgrey(t, t.TempDir(), "--delay=1", "--auto-whitelist-clients=0",
		"--whitelist-clients=/dev/null", "--whitelist-recipients=/dev/null", "--hostname=grey.example")
	ts := startServer(t, fmt.Sprintf(`
smtpd_recipient_restrictions = ["reject_unauth_destination", "check_policy_service", "inet:%s"]
`, addr))
	try := func(want string) {
		t.Helper()
		c := ts.dialFrom(t, "127.0.0.2")
		c.cmd("EHLO client.example", "250-*")
		c.cmd("MAIL FROM:<friend@remote.example>", "250 2.1.0 Ok")
		c.cmd("RCPT TO:<alice@our.test>", want)
		if strings.HasPrefix(want, "250") {
			c.cmd("DATA", "354 *")
			c.cmd("Subject: greylisted\r\n\r\nx\r\n.", "250 2.0.0 Ok: queued as *")
		}
		c.cmd("QUIT", "221 2.0.0 Bye")
	}
	try("450 4.2.0 <alice@our.test>: Recipient address rejected: Greylisted*")
	deadline := time.Now().Add(30 * time.Second)
	for {
		// The delay is a second: poll until postgrey lets the triplet
		// through (each try before that is greylisted again).
		c := ts.dialFrom(t, "127.0.0.2")
		c.cmd("EHLO client.example", "250-*")
		c.cmd("MAIL FROM:<friend@remote.example>", "250 2.1.0 Ok")
		r := c.cmd("RCPT TO:<alice@our.test>", "*")
		if strings.HasPrefix(r, "250") {
			c.cmd("DATA", "354 *")
			c.cmd("Subject: greylisted\r\n\r\nx\r\n.", "250 2.0.0 Ok: queued as *")
			break
		}
		c.cmd("QUIT", "221 2.0.0 Bye")
		if time.Now().After(deadline) {
			t.Fatalf("still greylisted after 30 s: %q\n%s", r, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	msgs := ts.messages(t)
	if len(msgs) != 1 || !strings.HasPrefix(body(t, msgs[0]), "X-Greylist: delayed ") || !strings.Contains(body(t, msgs[0]), "by postgrey") {
		t.Errorf("queued: %d messages, first %q", len(msgs), body(t, msgs[0]))
	}
}
