package smtpd

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"mailsrv/outcome"

	"github.com/emersion/go-sasl"
	"golang.org/x/crypto/bcrypt"
)

// authenticator checks a user name and password: the built-in password
// file or Dovecot.
type authenticator interface {
	check(user, pass string, secured bool, client string) error
}

// The built-in SASL back end (smtpd_sasl_type = mailsrv): a file of
// "user:bcrypt-hash" lines that `mailsrv saslpasswd` maintains. It is
// read again when it changes, so adding a user needs no reload.
type passwdFile struct {
	path  string
	mu    sync.Mutex
	mtime time.Time
	size  int64
	users map[string]string
}

// ErrAuth is a failed authentication (wrong user or password).
var ErrAuth = errors.New("authentication failure")

func (f *passwdFile) load() (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := os.Stat(f.path)
	if err != nil {
		return nil, err
	}
	if f.users != nil && st.ModTime().Equal(f.mtime) && st.Size() == f.size {
		return f.users, nil
	}
	users, err := ReadPasswd(f.path)
	if err != nil {
		return nil, err
	}
	f.users, f.mtime, f.size = users, st.ModTime(), st.Size()
	return users, nil
}

// ReadPasswd reads a password file.
func ReadPasswd(path string) (map[string]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	users := map[string]string{}
	sc := bufio.NewScanner(fh)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("%s:%d: want user:hash", path, n)
		}
		users[user] = hash
	}
	return users, sc.Err()
}

// check verifies a password. A missing user costs a bcrypt comparison too,
// so the time taken does not tell which user names exist.
func (f *passwdFile) check(user, pass string, _ bool, _ string) error {
	users, err := f.load()
	if err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	hash, ok := users[user]
	if !ok {
		hash = string(dummyHash())
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(pass)) != nil || !ok {
		return ErrAuth
	}
	return nil
}

var dummy = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("no such user"), bcrypt.DefaultCost)
	return h
})

func dummyHash() []byte { return dummy() }

// authMechanisms are the mechanisms offered now: PLAIN and LOGIN, which
// send the password, only over TLS unless the security options allow
// plain text (smtpd_sasl_security_options without noplaintext).
func (s *session) authMechanisms() []string {
	srv := s.srv
	if srv.passwd == nil {
		return nil
	}
	if s.tls == nil && !s.stdio && srv.p.SmtpdTLSAuthOnly {
		return nil
	}
	if s.tls == nil {
		for _, o := range srv.p.SmtpdSaslSecurityOptions {
			if strings.EqualFold(strings.TrimSpace(o), "noplaintext") {
				return nil
			}
		}
	}
	return []string{sasl.Plain, sasl.Login}
}

// cmdAuth is AUTH (RFC 4954).
func (s *session) cmdAuth(arg string) outcome.Reply {
	srv := s.srv
	if srv.passwd == nil {
		return outcome.New(503, "5.5.1", "Error: authentication not enabled")
	}
	mechs := s.authMechanisms()
	switch {
	case len(mechs) == 0 && srv.tls != nil && s.tls == nil:
		return replyNeedTLS
	case len(mechs) == 0:
		return outcome.New(503, "5.5.1", "Error: authentication not enabled")
	case !s.esmtp:
		return outcome.New(503, "5.5.1", "Error: send EHLO first")
	case s.saslUser != "":
		return outcome.New(503, "5.5.1", "Error: already authenticated")
	case s.txn.active:
		return outcome.New(503, "5.5.1", "Error: MAIL transaction in progress")
	}
	if limit := srv.p.SmtpdClientAuthRateLimit; limit > 0 && !s.stdio {
		if exempt, _ := srv.limitExceptions.match(s.clientAddr, s.clientName); !exempt {
			if n := srv.authEvent(s.clientAddr); n > limit {
				srv.log.Warnf("AUTH command rate limit exceeded: %d from %s for service %s", n, s.namaddr(), srv.name)
				return reply(450, "4.7.1", "Error: too many AUTH commands from %s", s.clientAddr)
			}
		}
	}
	mech, initial, _ := strings.Cut(arg, " ")
	mech = strings.ToUpper(mech)
	var authzid, user, pass string
	var err error
	switch mech {
	case sasl.Plain:
		var resp []byte
		if initial == "" {
			resp, err = s.challenge("")
		} else {
			resp, err = decode64(initial)
		}
		if err == nil {
			parts := strings.Split(string(resp), "\x00")
			if len(parts) != 3 {
				err = errors.New("malformed PLAIN response")
			} else {
				authzid, user, pass = parts[0], parts[1], parts[2]
			}
		}
	case sasl.Login:
		var u, p []byte
		if initial != "" {
			u, err = decode64(initial)
		} else {
			u, err = s.challenge("Username:")
		}
		if err == nil {
			p, err = s.challenge("Password:")
		}
		user, pass = string(u), string(p)
	default:
		return outcome.New(504, "5.5.4", "Unsupported authentication mechanism")
	}
	if errors.Is(err, errAuthAborted) {
		return outcome.New(501, "5.7.0", "Authentication aborted")
	}
	if err != nil {
		if s.closing {
			return outcome.Reply{}
		}
		return outcome.New(501, "5.5.2", "Cannot decode response")
	}
	err = nil
	if authzid != "" && authzid != user {
		// RFC 4616: the server must refuse an authorization identity
		// the user may not act as; no user here may act as another.
		err = ErrAuth
	}
	if err == nil {
		err = srv.passwd.check(user, pass, s.tls != nil, s.clientAddr.String())
	}
	if err != nil {
		reason := "authentication failure"
		if !errors.Is(err, ErrAuth) {
			srv.log.Warnf("SASL authentication problem: %v", err)
			return outcome.New(454, "4.7.0", "Temporary authentication failure")
		}
		// The line fail2ban's postfix-sasl filter looks for.
		srv.log.Warnf("%s: SASL %s authentication failed: %s", s.namaddr(), mech, reason)
		// Every failure costs the guesser smtpd_error_sleep_time.
		if d := srv.p.SmtpdErrorSleepTime; d > 0 {
			select {
			case <-time.After(d):
			case <-s.ctx.Done():
			}
		}
		return outcome.New(535, "5.7.8", "Error: authentication failed: "+reason)
	}
	s.saslUser, s.saslMethod = user, mech
	return outcome.New(235, "2.7.0", "Authentication successful")
}

var errAuthAborted = errors.New("aborted")

// challenge sends a 334 challenge and reads the client's base64 answer.
func (s *session) challenge(text string) ([]byte, error) {
	s.send(outcome.New(334, "", base64.StdEncoding.EncodeToString([]byte(text))))
	if err := s.bw.Flush(); err != nil {
		s.closing = true
		return nil, err
	}
	s.beginRequest(false)
	line, buf, err := readCommand(s.br, s.srv.p.LineLengthLimit, s.line)
	s.line = buf
	if err != nil {
		s.lost(err)
		s.closing = true
		return nil, err
	}
	if string(line.text) == "*" {
		return nil, errAuthAborted
	}
	return decode64(string(line.text))
}

func decode64(s string) ([]byte, error) {
	if s == "=" {
		return []byte{}, nil
	}
	return base64.StdEncoding.DecodeString(s)
}
