package master

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailsrv/internal/testutil"
)

// postfixMasterCF is the stock Postfix 3.7 service list with chroot off
// (a private instance has no chroot jail), smtpd on the given address.
const postfixMasterCF = `%s inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

// TestInteropPostfixAndSink delivers into real peers on loopback: a
// private Postfix 3.7 instance with STARTTLS (its certificate first
// checked with Postfix's own posttls-finger, then verified by mailsrv at
// level verify), and smtp-sink.
func TestInteropPostfixAndSink(t *testing.T) {
	t.Parallel()
	for _, bin := range []string{"postfix", "posttls-finger", "smtp-sink"} {
		if _, err := exec.LookPath(bin); err != nil {
			if _, err := os.Stat("/usr/sbin/" + bin); err != nil {
				t.Skipf("%s is not installed (apt-get install postfix); skipping the interoperability test", bin)
			}
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("a private Postfix instance needs root; skipping the interoperability test")
	}
	pfUser, err := user.Lookup("postfix")
	if err != nil {
		t.Skip("no postfix user; skipping the interoperability test")
	}
	base := t.TempDir()
	openDir(t, base, 0o755)
	cert := selfSigned(t, "pf.interop.test")
	certFile, keyFile, caFile := filepath.Join(base, "cert.pem"), filepath.Join(base, "key.pem"), filepath.Join(base, "ca.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(caFile, certPEM, 0o644)
	if err := writeKey(keyFile, cert); err != nil {
		t.Fatal(err)
	}

	// Postfix on a loopback address and port, accepting mail for interop.test and
	// discarding it (its log says what it received).
	pfAddr := testutil.FreeAddr(t)
	pfHost, pfPort, _ := net.SplitHostPort(pfAddr)
	etc, spool, data := filepath.Join(base, "pf", "etc"), filepath.Join(base, "pf", "spool"), filepath.Join(base, "pf", "data")
	for _, d := range []string{etc, spool, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	uid, _ := strconv.Atoi(pfUser.Uid)
	os.Chown(data, uid, -1)
	pfLog := filepath.Join(base, "pf", "maillog")
	if err := os.WriteFile(filepath.Join(etc, "master.cf"), []byte(fmt.Sprintf(postfixMasterCF, pfAddr)), 0o644); err != nil {
		t.Fatal(err)
	}
	mainCF := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %s
data_directory = %s
# The only listener is master.cf's, on %s: Postfix's check of
# inet_interfaces knows 127.0.0.1 alone on lo.
inet_interfaces = all
inet_protocols = ipv4
myhostname = pf.interop.test
mydestination =
mynetworks = 127.0.0.0/8
relay_domains = interop.test
transport_maps = inline:{ interop.test=discard:received }
maillog_file = %s
maillog_file_prefixes = %s
alias_maps =
alias_database =
smtpd_tls_cert_file = %s
smtpd_tls_key_file = %s
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
`, spool, data, pfHost, pfLog, base, certFile, keyFile)
	if err := os.WriteFile(filepath.Join(etc, "main.cf"), []byte(mainCF), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("postfix", "-c", etc, "start").CombinedOutput(); err != nil {
		b, _ := os.ReadFile(pfLog)
		t.Fatalf("postfix start: %v %s\n%s", err, out, b)
	}
	t.Cleanup(func() { exec.Command("postfix", "-c", etc, "stop").Run() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", pfAddr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Postfix does not listen on %s", pfAddr)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Postfix's own TLS client agrees that the certificate verifies.
	fc := exec.Command("posttls-finger", "-c", "-l", "verify", "-F", caFile, "["+pfHost+"]:"+pfPort, "pf.interop.test")
	fc.Env = append(os.Environ(), "MAIL_CONFIG="+etc)
	finger, err := fc.CombinedOutput()
	if err != nil || !strings.Contains(string(finger), "Verified TLS connection established to "+pfHost+"["+pfHost+"]:"+pfPort) {
		t.Fatalf("posttls-finger: %v\n%s", err, finger)
	}

	// smtp-sink on another port.
	sinkAddr := testutil.FreeAddr(t)
	sinkHost, _, _ := net.SplitHostPort(sinkAddr)
	sink := exec.Command("smtp-sink", "-u", "nobody", "-c", sinkAddr, "50")
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Process.Kill(); sink.Wait() })
	testutil.Eventually(t, "smtp-sink to listen", func() bool {
		c, err := net.Dial("tcp", sinkAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	d := startDNS(t, map[string]string{"pf.interop.test": pfHost}, nil)
	dir, addr, stop := deliveryDaemon(t, fmt.Sprintf(`
alias_maps = []
mailsrv_dns_servers = [%q]
smtp_tls_CAfile = %q
smtp_tls_policy_maps = ["inline:{ {[pf.interop.test]:%s=verify} }"]
transport_maps = ["inline:{ {interop.test=smtp:[pf.interop.test]:%s}, {sink.test=smtp:[%s]:%s} }"]
minimal_backoff_time = "1h"
`, d.addr, caFile, pfPort, pfPort, sinkHost, strings.Split(sinkAddr, ":")[1]))
	send(t, addr, "s@example.test", []string{"a@interop.test"}, "Subject: to postfix\r\n\r\nhello postfix\r\n")
	send(t, addr, "s@example.test", []string{"b@sink.test"}, "Subject: to the sink\r\n\r\nhello sink\r\n")
	eventuallyLog(t, dir, "both deliveries", func() bool {
		l := readLog(dir)
		return strings.Contains(l, "to=<a@interop.test>") && strings.Contains(l, "to=<b@sink.test>")
	})
	stop()
	log := readLog(dir)
	m := regexp.MustCompile(`to=<a@interop.test>, relay=pf.interop.test\[` + regexp.QuoteMeta(pfHost) + `\]:` + pfPort + `, .*status=sent \(250 2.0.0 Ok: queued as (\w+)\)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no delivery into Postfix in the log:\n%s", log)
	}
	if !regexp.MustCompile(`Verified TLS connection established to pf.interop.test\[` + regexp.QuoteMeta(pfHost) + `\]:` + pfPort + `: TLSv1.3 with cipher`).MatchString(log) {
		t.Errorf("no verified TLS session with Postfix:\n%s", log)
	}
	if !regexp.MustCompile(`to=<b@sink.test>, relay=` + regexp.QuoteMeta(sinkHost+"["+sinkHost+"]") + `:\d+, .*status=sent \(250 2.0.0 Ok`).MatchString(log) {
		t.Errorf("no delivery into smtp-sink:\n%s", log)
	}
	// Postfix's side: the TLS session and the message under the ID it
	// gave us.
	testutil.Eventually(t, "Postfix to log the message", func() bool {
		b, _ := os.ReadFile(pfLog)
		return strings.Contains(string(b), m[1]+": to=<a@interop.test>")
	})
	b, _ := os.ReadFile(pfLog)
	for _, want := range []string{"TLS connection established from", m[1] + ": from=<s@example.test>", "status=sent (received)"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("Postfix's log lacks %q:\n%s", want, b)
		}
	}
}

// writeKey writes the certificate's private key in PEM (mode 0600).
func writeKey(path string, cert tls.Certificate) error {
	der, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}
