package smtpd

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// dovecotAuth is smtpd_sasl_type = dovecot: Dovecot's authentication
// protocol (version 1.2) on its auth socket, as Postfix's xsasl_dovecot
// speaks it, so that mail users are the IMAP users. One connection per
// AUTH: they are rare, and a fresh connection never carries a stale
// state.
type dovecotAuth struct {
	path string
	seq  atomic.Uint32
}

// check asks Dovecot whether user and pass are right, over mech PLAIN.
func (d *dovecotAuth) check(user, pass string, secured bool, client string) error {
	conn, err := net.DialTimeout("unix", d.path, 5*time.Second)
	if err != nil {
		return fmt.Errorf("connect to Dovecot auth socket %s: %v", d.path, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	// Bounded: the handshake and one answer are a few hundred bytes.
	br := bufio.NewReader(io.LimitReader(conn, 64<<10))
	fmt.Fprintf(conn, "VERSION\t1\t2\nCPID\t%d\n", os.Getpid())
	plain := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return fmt.Errorf("Dovecot auth handshake: %v", err)
		}
		f := strings.Split(strings.TrimRight(line, "\n"), "\t")
		switch f[0] {
		case "VERSION":
			if len(f) < 2 || f[1] != "1" {
				return fmt.Errorf("Dovecot auth protocol version %q is not supported", strings.Join(f[1:], "."))
			}
		case "MECH":
			if len(f) > 1 && strings.EqualFold(f[1], "PLAIN") {
				plain = true
			}
		}
		if f[0] == "DONE" {
			break
		}
	}
	if !plain {
		return fmt.Errorf("Dovecot offers no PLAIN mechanism")
	}
	id := d.seq.Add(1)
	resp := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	req := fmt.Sprintf("AUTH\t%d\tPLAIN\tservice=smtp\tnologin", id)
	if secured {
		req += "\tsecured"
	}
	if client != "" {
		req += "\trip=" + client
	}
	fmt.Fprintf(conn, "%s\tresp=%s\n", req, resp)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return fmt.Errorf("Dovecot auth reply: %v", err)
		}
		f := strings.Split(strings.TrimRight(line, "\n"), "\t")
		if len(f) < 2 || f[1] != fmt.Sprint(id) {
			continue
		}
		switch f[0] {
		case "OK":
			return nil
		case "FAIL":
			for _, kv := range f[2:] {
				if strings.HasPrefix(kv, "temp") {
					return fmt.Errorf("Dovecot: temporary failure")
				}
			}
			return ErrAuth
		default:
			return fmt.Errorf("Dovecot auth: unexpected %q", f[0])
		}
	}
}

// dovecotPath is smtpd_sasl_path for Dovecot: relative to queue_directory
// (Postfix's private/auth), or absolute.
func dovecotPath(queueDir, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(queueDir, path)
}
