// Package smtpd is Postfix's smtpd: the SMTP server that receives mail
// from the network (and, through sendmail -bs, from local programs). It
// owns the SMTP conversation, relay control and recipient validation
// (smtpd_*_restrictions, evaluated with trivial-rewrite's
// resolver and lookup tables), the limits and timeouts of a session, and
// the smuggling defences (smtpd_forbid_bare_newline). Accepted mail goes
// to cleanup while it arrives; the 250 "queued as" reply is sent only once
// cleanup has made the queue file durable.
//
// Why not go-smtp's server: Postfix operators read replies and logs, and
// every reply must carry Postfix's code, enhanced code and wording (the
// banner, "Error: command not recognized", "Relay access denied", 452
// 4.5.3 for the recipient limit, 421 4.7.0 after too many errors). go-smtp
// (v0.25) fixes its own texts for the greeting, EHLO, syntax errors, the
// recipient limit and VRFY; it has no error counting, no ETRN, no
// per-command statistics for the disconnect line, refreshes its read
// deadline only per command line, and rejects every bare LF instead of
// Postfix's "normalize" (accept bare LF in lines, but end DATA only at
// <CR><LF>.<CR><LF>). The protocol itself is small; the work is in those
// details, so this package implements it on bufio, and the tests use
// go-smtp's client (and raw sockets) against it.
package smtpd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"mailsrv/config"
	"mailsrv/internal/resolver"
	"mailsrv/internal/tlsutil"
	"mailsrv/maillog"
	"mailsrv/outcome"
	"mailsrv/rewrite"
	"mailsrv/rewrite/cleanup"
)

// Queue is where accepted mail goes: cleanup in the daemon, the local
// submission socket for sendmail -bs.
type Queue interface {
	Open(env cleanup.Envelope) (Message, error)
}

// Message is one message being queued (see cleanup.Message).
type Message interface {
	io.Writer
	ID() string
	Reject(outcome.Reply)
	Finish() error
	Abort()
}

// CleanupQueue adapts cleanup to Queue.
type CleanupQueue struct{ C *cleanup.Cleanup }

// Open starts a message in cleanup.
func (q CleanupQueue) Open(env cleanup.Envelope) (Message, error) {
	m, err := q.C.Open(env)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Server is one smtpd service: a listener's worth of sessions.
type Server struct {
	p     *config.Params
	name  string // the service name, for logs and limits
	log   *maillog.Logger
	rw    *rewrite.Rewriter
	queue Queue
	flush func(site string) (int, error) // ETRN; nil: none
	limit int                            // concurrent sessions (the service's process_limit)
	// notify is the problem classes of notify_classes whose sessions
	// end with a transcript to error_notice_recipient.
	notify outcome.Class

	check              *checker
	mynetworks         *clientList
	limitExceptions    *clientList
	bareLFExclusions   *clientList
	localHeaderClients *clientList
	localHeaderAll     bool
	localHeaderInet    bool
	localHeaderMynet   bool
	resolver           *net.Resolver
	// tls is the server's TLS configuration (nil: no TLS); tlsLevel is
	// smtpd_tls_security_level ("encrypt" requires STARTTLS first).
	tls      *tls.Config
	tlsLevel string
	wrapper  bool
	// passwd checks SASL passwords (nil: AUTH is not offered).
	passwd authenticator
	// ccertRoots verify client certificates (smtpd_tls_CAfile).
	ccertRoots *x509.CertPool
	// dns looks up DNS lists (nil when no restriction uses one).
	dns *resolver.Resolver

	mu      sync.Mutex
	clients map[netip.Addr]int // sessions per client address (anvil)
	rates   map[netip.Addr]*rateWindow
}

// rateWindow counts one client's events in the current anvil_rate_time_unit.
type rateWindow struct {
	start time.Time
	auth  int
}

// authEvent counts an AUTH command of a client and returns how many it
// sent in the current window (anvil's rate counter).
func (s *Server) authEvent(a netip.Addr) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rates == nil {
		s.rates = map[netip.Addr]*rateWindow{}
	}
	now := time.Now()
	unit := s.p.AnvilRateTimeUnit
	if unit <= 0 {
		unit = time.Minute
	}
	w := s.rates[a]
	if w == nil || now.Sub(w.start) >= unit {
		if len(s.rates) > 10000 {
			// Bounded: forget windows that are over.
			for k, v := range s.rates {
				if now.Sub(v.start) >= unit {
					delete(s.rates, k)
				}
			}
		}
		w = &rateWindow{start: now}
		s.rates[a] = w
	}
	w.auth++
	return w.auth
}

// Options build a Server.
type Options struct {
	Params  *config.Params
	Service string // e.g. "smtp"
	Log     *maillog.Logger
	Rewrite *rewrite.Rewriter
	Queue   Queue
	Limit   int // concurrent sessions; 0 = default_process_limit
	// Resolver for the client's name (nil: net.DefaultResolver).
	Resolver *net.Resolver
	// Flush releases the deferred mail of a fast_flush_domains site
	// for ETRN (nil: ETRN is not available); flush.ErrDenied for a
	// site that is not listed.
	Flush func(site string) (int, error)
}

// New checks the configuration (restriction lists, tables, client lists)
// and returns a server; a configuration that would make an open relay is
// refused here.
func New(o Options) (*Server, error) {
	p := o.Params
	s := &Server{p: p, name: o.Service, log: o.Log, rw: o.Rewrite, queue: o.Queue, flush: o.Flush, limit: o.Limit,
		resolver: o.Resolver, clients: map[netip.Addr]int{}, notify: outcome.Classes(o.Params.NotifyClasses)}
	if s.limit <= 0 {
		s.limit = p.DefaultProcessLimit
	}
	if s.resolver == nil {
		s.resolver = net.DefaultResolver
	}
	var err error
	if err := s.setupTLS(); err != nil {
		return nil, err
	}
	if p.SmtpdSaslAuthEnable {
		switch p.SmtpdSaslType {
		case "dovecot":
			s.passwd = &dovecotAuth{path: dovecotPath(p.QueueDirectory, p.SmtpdSaslPath)}
		default:
			s.passwd = &passwdFile{path: SaslPasswdPath(p)}
		}
	}
	if s.mynetworks, err = newClientList("mynetworks", p.Mynetworks); err != nil {
		return nil, err
	}
	if s.limitExceptions, err = newClientList("smtpd_client_event_limit_exceptions", p.SmtpdClientEventLimitExceptions); err != nil {
		return nil, err
	}
	if s.bareLFExclusions, err = newClientList("smtpd_forbid_bare_newline_exclusions", p.SmtpdForbidBareNewlineExclusions); err != nil {
		return nil, err
	}
	// local_header_rewrite_clients: the permit_* words are decided per
	// session; the rest is a client list.
	var lhc []string
	for _, e := range p.LocalHeaderRewriteClients {
		switch e {
		case "permit_inet_interfaces":
			s.localHeaderInet = true
		case "permit_mynetworks":
			s.localHeaderMynet = true
		case "static:all":
			s.localHeaderAll = true
		case "permit_sasl_authenticated", "permit_tls_clientcerts", "permit_tls_all_clientcerts", "check_address_map":
			// No SASL or client certificates yet; check_address_map
			// only announces the table that follows.
		default:
			lhc = append(lhc, e)
		}
	}
	if s.localHeaderClients, err = newClientList("local_header_rewrite_clients", lhc); err != nil {
		return nil, err
	}
	if s.check, err = newChecker(p, o.Rewrite, o.Log, s.mynetworks); err != nil {
		return nil, err
	}
	if s.check.usesDNS {
		if s.dns, err = resolver.NewResolver(p.DNSServers); err != nil {
			return nil, fmt.Errorf("DNS lookups of the restrictions: %w", err)
		}
		// Sessions share the answers (DNS lists ask about the same
		// clients again and again), for as long as their TTLs allow.
		s.dns.WithCache(dnsCacheSize)
	}
	return s, nil
}

// Serve accepts sessions until ctx ends. At most limit sessions run at
// once; further clients wait in the listen queue as they do for Postfix's
// master. When ctx ends the listener is closed and Serve waits for the
// sessions. They run to their end as after a Postfix reload, unless
// sessions ends too (the daemon is stopping): then each ends after its
// current command with a 421. When hard ends their connections are closed.
func (s *Server) Serve(ctx, sessions, hard context.Context, l net.Listener) error {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	// On the way out: wait for the sessions (closing their connections if
	// hard ends meanwhile), then retire the closer.
	stopped := make(chan struct{})
	defer close(stopped)
	// Last, once the sessions are done: the policy servers' idle
	// connections.
	defer s.check.closePolicies()
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, s.limit)
	var conns sync.Map
	go func() {
		select {
		case <-hard.Done():
		case <-stopped:
			return
		}
		conns.Range(func(k, _ any) bool {
			k.(net.Conn).Close()
			return true
		})
	}()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		c, err := l.Accept()
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return nil
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				// The master closed the socket: a stop or a reload
				// is under way, and cancels ctx right after.
				<-ctx.Done()
				return nil
			}
			// A temporary accept error (EMFILE): back off, as Go's
			// http server does, rather than spin.
			s.log.Warnf("accept: %v", err)
			select {
			case <-time.After(100 * time.Millisecond):
				continue
			case <-ctx.Done():
				return nil
			}
		}
		conns.Store(c, true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			defer conns.Delete(c)
			s.ServeConn(sessions, c)
		}()
	}
}

// ServeConn runs one session on an accepted connection and closes it.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	sess := s.newSession(ctx, c, c)
	sess.run()
	sess.release()
}

// setupTLS loads the certificates when TLS is on (smtpd_tls_security_level
// may or encrypt, or smtpd_tls_wrappermode). They are read when the
// service starts, so a reload picks up renewed certificates while the
// sessions of the old instance finish with the old ones.
func (s *Server) setupTLS() error {
	p := s.p
	s.tlsLevel = strings.ToLower(p.SmtpdTLSSecurityLevel)
	s.wrapper = p.SmtpdTLSWrappermode
	if (s.tlsLevel == "" || s.tlsLevel == "none") && !s.wrapper {
		return nil
	}
	var certs []tls.Certificate
	for _, f := range p.SmtpdTLSChainFiles {
		// One PEM file with the key and its chain.
		c, err := tls.LoadX509KeyPair(f, f)
		if err != nil {
			return fmt.Errorf("smtpd_tls_chain_files %s: %v", f, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 && p.SmtpdTLSCertFile != "" {
		c, err := tls.LoadX509KeyPair(p.SmtpdTLSCertFile, p.SmtpdTLSKeyFile)
		if err != nil {
			return fmt.Errorf("smtpd_tls_cert_file %s / smtpd_tls_key_file %s: %v", p.SmtpdTLSCertFile, p.SmtpdTLSKeyFile, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		if s.tlsLevel == "may" && !s.wrapper {
			s.log.Warnf("smtpd_tls_security_level = may but no smtpd_tls_cert_file or smtpd_tls_chain_files: TLS is not offered")
			s.tlsLevel = "none"
			return nil
		}
		return errors.New("smtpd TLS needs a certificate: set smtpd_tls_chain_files or smtpd_tls_cert_file and smtpd_tls_key_file")
	}
	protocols := p.SmtpdTLSProtocols
	if s.tlsLevel == "encrypt" || s.wrapper {
		protocols = p.SmtpdTLSMandatoryProtocols
	}
	minV, err := tlsutil.MinVersion(protocols)
	if err != nil {
		return fmt.Errorf("smtpd_tls_protocols: %v", err)
	}
	// Go's default cipher suites are the modern safe set; session
	// tickets (on by default) let repeat senders resume cheaply.
	s.tls = &tls.Config{Certificates: certs, MinVersion: max(minV, tls.VersionTLS12)}
	return s.setupClientCerts()
}

// SaslPasswdPath is the built-in SASL password file: smtpd_sasl_path,
// relative to queue_directory like Postfix's SASL socket paths.
func SaslPasswdPath(p *config.Params) string {
	if filepath.IsAbs(p.SmtpdSaslPath) {
		return p.SmtpdSaslPath
	}
	return filepath.Join(p.QueueDirectory, p.SmtpdSaslPath)
}

// ServeStdio runs one session on a pipe (sendmail -bs): the client is the
// local user, there are no network timeouts to renew, and the session is
// logged as coming from localhost.
func (s *Server) ServeStdio(ctx context.Context, in io.Reader, out io.Writer) {
	sess := s.newSession(ctx, nil, struct {
		io.Reader
		io.Writer
	}{in, out})
	sess.run()
}

// admit counts a session of a client against
// smtpd_client_connection_count_limit; done must be called when it ends.
func (s *Server) admit(sess *session) (ok bool, done func()) {
	limit := s.p.SmtpdClientConnectionCountLimit
	if limit <= 0 || !sess.clientAddr.IsValid() {
		return true, func() {}
	}
	if exempt, _ := s.limitExceptions.match(sess.clientAddr, sess.clientName); exempt {
		return true, func() {}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.clients[sess.clientAddr] + 1
	if n > limit {
		s.log.Warnf("Connection concurrency limit exceeded: %d from %s for service %s", n, sess.namaddr(), s.name)
		return false, func() {}
	}
	s.clients[sess.clientAddr] = n
	return true, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.clients[sess.clientAddr]--; s.clients[sess.clientAddr] <= 0 {
			delete(s.clients, sess.clientAddr)
		}
	}
}

// lookupName finds the client's name as Postfix does: the reverse lookup,
// confirmed by a forward lookup that gives the address back; otherwise
// "unknown". Bounded by a few seconds so a dead DNS server cannot stall a
// session.
func (s *Server) lookupName(ctx context.Context, a netip.Addr) (name, reverse string, nameStatus, reverseStatus peerStatus) {
	if !s.p.SmtpdPeernameLookup {
		return "unknown", "unknown", peerPerm, peerPerm
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	names, err := s.resolver.LookupAddr(ctx, a.String())
	if err != nil || len(names) == 0 {
		st := dnsStatus(err)
		if err == nil {
			st = peerPerm
		}
		return "unknown", "unknown", st, st
	}
	reverse = strings.ToLower(strings.TrimSuffix(names[0], "."))
	if !validHelo(reverse) {
		return "unknown", "unknown", peerPerm, peerPerm
	}
	addrs, err := s.resolver.LookupNetIP(ctx, "ip", reverse)
	if err != nil {
		return "unknown", reverse, dnsStatus(err), peerOK
	}
	for _, x := range addrs {
		if x.Unmap() == a.Unmap() {
			return reverse, reverse, peerOK, peerOK
		}
	}
	return "unknown", reverse, peerPerm, peerOK
}
