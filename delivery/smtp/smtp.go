// Package smtp is Postfix's smtp(8) client: it delivers mail to other
// hosts. It finds the servers of a nexthop (MX lookup in preference
// order, equal preferences shuffled; the domain's own addresses when it
// has no MX; null MX and NXDOMAIN bounce, DNS trouble defers; [host] and
// [host]:port skip the MX lookup), talks SMTP with each in turn until one
// takes the mail (EHLO with HELO fallback, STARTTLS by
// smtp_tls_security_level and smtp_tls_policy_maps, AUTH for relayhosts
// with a password, pipelined MAIL and RCPTs, SIZE, 8BITMIME, SMTPUTF8 and
// DSN), reads each reply by phase the way Postfix does, and keeps
// sessions in a connection cache for the next delivery to the same
// destination.
//
// The client is its own small one (bufio, with a bounded reply reader,
// reply.go) rather than go-smtp's client:
// that one sends its own EHLO before STARTTLS and cannot pipeline, cannot
// fall back to plain text after a failed handshake with our EHLO name, and
// does not tell replies apart by phase.
package smtp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"mailsrv/config"
	"mailsrv/internal/resolver"
	"mailsrv/internal/tlsutil"
	"mailsrv/maillog"
	"mailsrv/maps"
	"mailsrv/outcome"
	"mailsrv/queue/qmgr"
)

// Agent is smtp(8) (and relay, which is the same program).
type Agent struct {
	p        *config.Params
	dns      *resolver.Resolver
	policy   []*maps.Map
	passwd   []*maps.Map
	roots    *x509.CertPool
	port     int
	isOwn    func(netip.Addr) bool
	cache    *cache
	minTLS   uint16
	minMandy uint16

	deadMu sync.Mutex
	dead   map[netip.AddrPort]deadHost // servers that just failed
}

// deadHost is a server that failed to connect or greet: for deadTime the
// following deliveries skip it instead of waiting for it again, so a dead
// MX costs one timeout per burst, not one per message. Mail the operator
// released (Delivery.Flush) tries it all the same, and a server that
// answers again is forgotten at once.
type deadHost struct {
	until  time.Time
	reason outcome.Status
}

const deadTime = 60 * time.Second

// New builds the client for a transport's parameters. isOwn says whether
// an address is this host's (mail that would loop back is refused).
func New(p *config.Params, isOwn func(netip.Addr) bool) (*Agent, error) {
	r, err := resolver.NewResolver(p.DNSServers)
	if err != nil {
		return nil, err
	}
	a := &Agent{p: p, dns: r, isOwn: isOwn, cache: newCache(), dead: map[netip.AddrPort]deadHost{}}
	if a.port, err = port(p.SMTPTCPPort); err != nil {
		return nil, fmt.Errorf("smtp_tcp_port: %v", err)
	}
	if a.policy, err = maps.OpenAll(p.SMTPTLSPolicyMaps); err != nil {
		return nil, fmt.Errorf("smtp_tls_policy_maps: %w", err)
	}
	if a.passwd, err = maps.OpenAll(p.SMTPSASLPasswordMaps); err != nil {
		return nil, fmt.Errorf("smtp_sasl_password_maps: %w", err)
	}
	if a.roots, err = loadRoots(p.SMTPTLSCAfile, p.SMTPTLSCApath); err != nil {
		return nil, err
	}
	if a.minTLS, err = tlsutil.MinVersion(p.SMTPTLSProtocols); err != nil {
		return nil, fmt.Errorf("smtp_tls_protocols: %v", err)
	}
	if a.minMandy, err = tlsutil.MinVersion(p.SMTPTLSMandatoryProtocols); err != nil {
		return nil, fmt.Errorf("smtp_tls_mandatory_protocols: %v", err)
	}
	switch lvl := p.SMTPTLSSecurityLevel; {
	case lvl == "dane" || lvl == "dane-only":
		return nil, fmt.Errorf("smtp_tls_security_level = %s: %s", lvl, errDANE)
	case lvl == "fingerprint" && len(p.SMTPTLSFingerprintCertMatch) == 0:
		return nil, errors.New("smtp_tls_security_level = fingerprint: smtp_tls_fingerprint_cert_match lists no fingerprint")
	}
	return a, nil
}

// Close ends the cached sessions.
func (a *Agent) Close() { a.cache.closeAll() }

// loadRoots reads smtp_tls_CAfile and smtp_tls_CApath; with neither the
// system's roots are used.
func loadRoots(file, dir string) (*x509.CertPool, error) {
	if file == "" && dir == "" {
		return x509.SystemCertPool()
	}
	pool := x509.NewCertPool()
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("smtp_tls_CAfile: %v", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("smtp_tls_CAfile %s: no certificates", file)
		}
	}
	if dir != "" {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("smtp_tls_CApath: %v", err)
		}
		for _, e := range ents {
			if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
				pool.AppendCertsFromPEM(b)
			}
		}
	}
	return pool, nil
}

// server is one address to try.
type server struct {
	host string // the name (MX host, or the nexthop)
	addr netip.Addr
	port int
	mx   bool // found through MX (its name is not trusted at level secure)
}

func (s server) String() string { return fmt.Sprintf("%s[%s]:%d", s.host, s.addr, s.port) }

// servers finds where a nexthop's mail goes.
func (a *Agent) servers(ctx context.Context, nexthop string) ([]server, *outcome.Status) {
	var out []server
	var firstFail *outcome.Status
	for _, hop := range strings.FieldsFunc(nexthop, func(r rune) bool { return r == ',' || r == ' ' }) {
		s, f := a.serversOf(ctx, hop)
		out = append(out, s...)
		if f != nil && firstFail == nil {
			firstFail = f
		}
	}
	if len(out) == 0 {
		if firstFail == nil {
			firstFail = &outcome.Status{DSN: "4.4.4", Text: "unable to look up host " + nexthop}
		}
		return nil, firstFail
	}
	if limit := a.p.SMTPMxAddressLimit; limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (a *Agent) serversOf(ctx context.Context, hop string) ([]server, *outcome.Status) {
	host, prt := hop, a.port
	literal := false
	if strings.HasPrefix(hop, "[") {
		end := strings.Index(hop, "]")
		if end < 0 {
			return nil, &outcome.Status{DSN: "5.4.4", Text: "bad nexthop " + hop}
		}
		host, literal = hop[1:end], true
		if rest := hop[end+1:]; strings.HasPrefix(rest, ":") {
			p, err := port(rest[1:])
			if err != nil {
				return nil, &outcome.Status{DSN: "5.4.4", Text: fmt.Sprintf("bad nexthop %s: %v", hop, err)}
			}
			prt = p
		}
	} else if h, p, err := net.SplitHostPort(hop); err == nil {
		pn, err := port(p)
		if err != nil {
			return nil, &outcome.Status{DSN: "5.4.4", Text: fmt.Sprintf("bad nexthop %s: %v", hop, err)}
		}
		host, prt = h, pn
	}
	dnsFail := func(err error) *outcome.Status {
		var de *resolver.DNSError
		if errors.As(err, &de) && de.NotFound {
			return &outcome.Status{DSN: "5.4.4", Text: de.Error()}
		}
		return &outcome.Status{DSN: "4.4.3", Text: err.Error()}
	}
	var out []server
	if literal {
		addrs, err := a.dns.Addrs(ctx, host, a.p.InetProtocols)
		if err != nil {
			return nil, dnsFail(err)
		}
		for _, ad := range addrs {
			out = append(out, server{host: host, addr: ad, port: prt})
		}
		return out, nil
	}
	mxs, err := a.dns.MX(ctx, host, a.p.SMTPRandomizeAddresses)
	if err != nil {
		return nil, dnsFail(err)
	}
	if len(mxs) == 1 && mxs[0].Host == "." {
		// RFC 7505's specific code 5.1.10 (Postfix says 5.1.0).
		return nil, &outcome.Status{DSN: "5.1.10", Text: fmt.Sprintf("Domain %s does not accept mail (nullMX)", host)}
	}
	if len(mxs) == 0 {
		// No MX: the domain itself (implicit MX).
		addrs, err := a.dns.Addrs(ctx, host, a.p.InetProtocols)
		if err != nil {
			return nil, dnsFail(err)
		}
		for _, ad := range addrs {
			if a.isOwn != nil && a.isOwn(ad) {
				return nil, &outcome.Status{DSN: "5.4.6", Text: fmt.Sprintf("mail for %s loops back to myself", host)}
			}
			out = append(out, server{host: host, addr: ad, port: prt})
		}
		return out, nil
	}
	var fail *outcome.Status
	for _, mx := range mxs {
		addrs, err := a.dns.Addrs(ctx, mx.Host, a.p.InetProtocols)
		if err != nil {
			// An MX without addresses is skipped (and remembered).
			if fail == nil {
				fail = &outcome.Status{DSN: "4.4.3", Text: err.Error()}
			}
			continue
		}
		own := false
		for _, ad := range addrs {
			if a.isOwn != nil && a.isOwn(ad) {
				own = true
			}
		}
		if own {
			// We are this MX: only better ones may be used.
			if len(out) == 0 {
				if fail != nil {
					return nil, &outcome.Status{DSN: "4.4.4", Text: fmt.Sprintf("unable to find primary relay for %s", host)}
				}
				return nil, &outcome.Status{DSN: "5.4.6", Text: fmt.Sprintf("mail for %s loops back to myself", host)}
			}
			break
		}
		for _, ad := range addrs {
			out = append(out, server{host: mx.Host, addr: ad, port: prt, mx: true})
		}
	}
	if len(out) == 0 {
		return nil, fail
	}
	return out, nil
}

// Deliver delivers one request: to the first server that takes it.
func (a *Agent) Deliver(d *qmgr.Delivery) {
	ctx := d.Ctx
	p := a.p
	key := strings.ToLower(d.Nexthop)
	// A cached session first.
	if s := a.cache.get(key, p.SMTPConnectionReuseTimeLimit, p.SMTPConnectionReuseCountLimit); s != nil {
		d.SetupDone()
		if s.transaction(d) {
			a.release(d, key, s)
			return
		}
		s.close()
		if !anyPending(d) {
			return
		}
		// The cached session died under us: start afresh.
	}
	servers, f := a.servers(ctx, d.Nexthop)
	if f != nil {
		st := *f
		st.Relay = "none"
		if st.Permanent() {
			d.BounceRest(st)
		} else {
			d.SiteFailure(st)
		}
		return
	}
	sessions := 0
	var last outcome.Status
	for i, srv := range servers {
		if sessions >= max(p.SMTPMxSessionLimit, 1) {
			break
		}
		final := i == len(servers)-1 || sessions+1 >= max(p.SMTPMxSessionLimit, 1)
		ap := netip.AddrPortFrom(srv.addr, uint16(srv.port))
		if st, ok := a.isDead(ap); ok && !d.Flush {
			last = st
			continue
		}
		s, st, fail := a.connect(ctx, d, srv)
		if s == nil {
			last = st
			if fail == hardFailure && final {
				d.BounceRest(st)
				return
			}
			if fail == unreachable {
				a.markDead(ap, st)
			}
			continue
		}
		a.forgetDead(ap)
		sessions++
		d.SetupDone()
		ok := s.transaction(d)
		if ok {
			a.release(d, key, s)
			return
		}
		last = s.lastFailure
		s.close()
		if !anyPending(d) {
			return
		}
	}
	if last.Text == "" {
		last = outcome.Status{DSN: "4.4.1", Text: "no server could be reached"}
	}
	if last.Relay == "" {
		last.Relay = "none"
	}
	d.SiteFailure(last)
}

func (a *Agent) isDead(ap netip.AddrPort) (outcome.Status, bool) {
	a.deadMu.Lock()
	defer a.deadMu.Unlock()
	h, ok := a.dead[ap]
	if !ok {
		return outcome.Status{}, false
	}
	if time.Now().After(h.until) {
		delete(a.dead, ap)
		return outcome.Status{}, false
	}
	return h.reason, true
}

// forgetDead clears a server that answered again.
func (a *Agent) forgetDead(ap netip.AddrPort) {
	a.deadMu.Lock()
	defer a.deadMu.Unlock()
	if len(a.dead) > 0 {
		delete(a.dead, ap)
	}
}

func (a *Agent) markDead(ap netip.AddrPort, st outcome.Status) {
	a.deadMu.Lock()
	defer a.deadMu.Unlock()
	a.dead[ap] = deadHost{until: time.Now().Add(deadTime), reason: st}
}

func anyPending(d *qmgr.Delivery) bool {
	for _, r := range d.Recipients {
		if d.Pending(r) {
			return true
		}
	}
	return false
}

// release caches a session that ended a good transaction, when more mail
// for the destination waits (smtp_connection_cache_on_demand) or the
// destination is listed in smtp_connection_cache_destinations.
func (a *Agent) release(d *qmgr.Delivery, key string, s *session) {
	p := a.p
	want := (p.SMTPConnectionCacheOnDemand && d.More) || listed(p.SMTPConnectionCacheDests, d.Nexthop)
	// TLS sessions are cached too (Postfix needs smtp_tls_connection_reuse
	// and tlsproxy for that; here the session lives in this process).
	if !want || s.broken {
		s.quit()
		return
	}
	if s.cmd(p.SMTPHeloTimeout, "RSET") != nil {
		s.close()
		return
	}
	if r, err := s.reply(p.SMTPHeloTimeout); err != nil || r.code/100 != 2 {
		s.close()
		return
	}
	a.cache.put(key, s, p.SMTPConnectionCacheTimeLimit)
}

func listed(list []string, nexthop string) bool {
	for _, l := range list {
		if strings.EqualFold(strings.TrimSpace(l), nexthop) {
			return true
		}
	}
	return false
}

// errDANE refuses the DANE levels, which this version does not verify:
// treating them as another level would weaken them (or, for dane without
// TLSA records, insist on TLS where none is due).
var errDANE = errors.New("DANE is not part of this version of mailsrv; use may, encrypt, fingerprint, verify or secure")

// tlsPolicy is the TLS level and its options for a nexthop.
type tlsPolicy struct {
	level     string
	match     []string
	protocols []string
}

// tlsLevels are the client TLS levels this version implements.
var tlsLevels = map[string]bool{"none": true, "may": true, "encrypt": true, "fingerprint": true, "verify": true, "secure": true}

// mandatoryTLS: the level does not deliver without TLS.
func (p tlsPolicy) mandatoryTLS() bool { return p.level != "none" && p.level != "may" }

// policy looks the nexthop up in smtp_tls_policy_maps: the exact nexthop,
// then its parent domains as .domain.
func (a *Agent) policyFor(nexthop string) (tlsPolicy, error) {
	pol := tlsPolicy{level: a.p.SMTPTLSSecurityLevel}
	if pol.level == "" {
		pol.level = "none"
	}
	if len(a.policy) == 0 {
		return pol, nil
	}
	keys := []string{strings.ToLower(nexthop)}
	bare := strings.ToLower(strings.Trim(strings.Split(nexthop, "]")[0], "["))
	if h, _, err := net.SplitHostPort(bare); err == nil {
		bare = h
	}
	for d := bare; strings.Contains(d, "."); {
		_, d, _ = strings.Cut(d, ".")
		keys = append(keys, "."+d)
	}
	for _, k := range keys {
		v, ok, err := maps.LookupAll(a.policy, k)
		if err != nil {
			return pol, err
		}
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		pol.level = strings.ToLower(f[0])
		switch {
		case pol.level == "dane" || pol.level == "dane-only":
			return pol, fmt.Errorf("TLS policy %s for %s: %w", pol.level, k, errDANE)
		case !tlsLevels[pol.level]:
			return pol, fmt.Errorf("invalid TLS security level %q for %s", maillog.Clip(pol.level, 30), k)
		}
		pol.match = nil
		for _, attr := range f[1:] {
			name, val, _ := strings.Cut(attr, "=")
			switch strings.ToLower(name) {
			case "match":
				// Fingerprints have colons of their own: at level
				// fingerprint the list separator is "|".
				sep := ":"
				if pol.level == "fingerprint" {
					sep = "|"
				}
				pol.match = append(pol.match, strings.Split(val, sep)...)
			case "protocols":
				pol.protocols = strings.Split(val, ":")
			}
		}
		break
	}
	if pol.level == "fingerprint" && len(pol.match) == 0 {
		pol.match = a.p.SMTPTLSFingerprintCertMatch
	}
	return pol, nil
}

// connFailure says how connecting to a server failed, for what the caller
// does next.
type connFailure int

const (
	noFailure   connFailure = iota
	softFailure             // try the next server, or defer
	hardFailure             // permanent for every recipient (a 5xx to EHLO and HELO)
	unreachable             // no answer at all: skip the server for a while
)

// connect opens a session with one server: connection, greeting,
// EHLO/HELO, STARTTLS and AUTH. On failure it returns the reason and its
// kind.
func (a *Agent) connect(ctx context.Context, d *qmgr.Delivery, srv server) (*session, outcome.Status, connFailure) {
	p := a.p
	relay := srv.String()
	hostIP := fmt.Sprintf("%s[%s]", srv.host, srv.addr)
	// Until a session is up, nothing was relayed: relay=none.
	fail := func(dsn, text string) (*session, outcome.Status, connFailure) {
		return nil, outcome.Status{DSN: dsn, Text: text, Relay: "none"}, softFailure
	}
	pol, err := a.policyFor(d.Nexthop)
	if err != nil {
		d.Log().Warnf("%s: smtp_tls_policy_maps: %v", d.ID, err)
		return fail("4.7.5", "TLS policy lookup problem")
	}
	plainOnly := false
	for attempt := 0; attempt < 2; attempt++ {
		dialer := net.Dialer{Timeout: p.SMTPConnectTimeout}
		if p.SMTPBindAddress != "" && srv.addr.Is4() {
			dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(p.SMTPBindAddress)}
		}
		nc, err := dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(srv.addr, uint16(srv.port)).String())
		if err != nil {
			s, st, _ := fail("4.4.1", fmt.Sprintf("connect to %s: %s", relay, SysText(err)))
			return s, st, unreachable
		}
		s := newSession(nc, srv.host, hostIP, relay, p, false)
		r, err := s.reply(p.SMTPHeloTimeout)
		if err != nil {
			s.close()
			return nil, s.lost("receiving the initial server greeting"), unreachable
		}
		if r.code/100 != 2 {
			s.close()
			st := outcome.Status{DSN: r.dsn(), Text: fmt.Sprintf("host %s refused to talk to me: %s", hostIP, r), Relay: relay,
				DiagType: "smtp", DiagText: r.String(), MTA: srv.host}
			if p.SMTPSkip5xxGreeting {
				st = st.Soft()
			}
			return nil, st, softFailure
		}
		if st, ok := s.hello(); !ok {
			s.close()
			if st.Permanent() {
				return nil, st, hardFailure
			}
			return nil, st, softFailure
		}
		wantTLS := pol.level != "none" && !plainOnly
		mandatory := pol.mandatoryTLS()
		if wantTLS {
			if _, offered := s.ext["STARTTLS"]; !offered {
				if mandatory {
					s.quit()
					return fail("4.7.4", fmt.Sprintf("TLS is required, but was not offered by host %s", hostIP))
				}
			} else {
				st, retryPlain := a.starttls(d, s, srv, pol, mandatory)
				if st != nil {
					s.close()
					if retryPlain {
						// Opportunistic TLS: try again in plain text.
						plainOnly = true
						continue
					}
					return nil, *st, softFailure
				}
			}
		} else if mandatory {
			s.quit()
			return fail("4.7.4", fmt.Sprintf("TLS is required, but was not offered by host %s", hostIP))
		}
		if p.SMTPSASLAuthEnable {
			if st := a.auth(d, s, srv); st != nil {
				s.quit()
				return nil, *st, softFailure
			}
		}
		return s, outcome.Status{}, noFailure
	}
	return fail("4.4.2", "TLS handshake failed with "+relay)
}

// starttls upgrades the session. It returns a failure, and whether the
// caller should try again without TLS (level may).
func (a *Agent) starttls(d *qmgr.Delivery, s *session, srv server, pol tlsPolicy, mandatory bool) (*outcome.Status, bool) {
	p := a.p
	relay := srv.String()
	if err := s.cmd(p.SMTPHeloTimeout, "STARTTLS"); err != nil {
		return &outcome.Status{DSN: "4.4.2", Text: fmt.Sprintf("lost connection with %s while sending STARTTLS", relay), Relay: relay}, false
	}
	r, err := s.reply(p.SMTPHeloTimeout)
	if err != nil {
		return &outcome.Status{DSN: "4.4.2", Text: fmt.Sprintf("lost connection with %s while receiving the STARTTLS reply", relay), Relay: relay}, false
	}
	if r.code != 220 {
		if mandatory {
			return &outcome.Status{DSN: "4.7.5", Text: fmt.Sprintf("host %s said: %s (in reply to STARTTLS command)", relay, r), Relay: relay}, false
		}
		return nil, false // may: carry on in plain text on this session
	}
	minV := a.minTLS
	if mandatory {
		minV = a.minMandy
	}
	if len(pol.protocols) > 0 {
		if v, err := tlsutil.MinVersion(pol.protocols); err == nil {
			minV = v
		}
	}
	// Names are checked only where the level asks for it: at may and
	// encrypt a good chain is "Trusted", never "Verified" (Postfix).
	var names []string
	if pol.level == "verify" || pol.level == "secure" {
		names = a.certNames(d, srv, pol)
	}
	cfg := &tls.Config{
		ServerName:         srv.host,
		MinVersion:         minV,
		InsecureSkipVerify: true, // verified below, by level
	}
	if net.ParseIP(srv.host) != nil {
		cfg.ServerName = ""
	}
	tc := tls.Client(s.conn, cfg)
	_ = tc.SetDeadline(time.Now().Add(p.SMTPHeloTimeout))
	if err := tc.HandshakeContext(d.Ctx); err != nil {
		text := fmt.Sprintf("TLS handshake failed with %s: %v", relay, err)
		if !mandatory {
			d.Log().Infof("%s: %s; trying again without TLS", d.ID, text)
			return &outcome.Status{DSN: "4.7.5", Text: text, Relay: relay}, true
		}
		return &outcome.Status{DSN: "4.7.5", Text: text, Relay: relay}, false
	}
	cs := tc.ConnectionState()
	trusted, verified := a.verify(cs, names)
	if pol.level == "fingerprint" {
		// The certificate is pinned: its chain and names do not
		// matter, its digest (or its public key's) does.
		trusted, verified = false, fingerprintMatch(cs, a.p.SMTPTLSFingerprintDigest, pol.match)
	}
	word := "Untrusted"
	switch {
	case verified:
		word = "Verified"
	case trusted:
		word = "Trusted"
	}
	d.Log().Infof("%s TLS connection established to %s: %s", word, relay, tlsutil.Describe(cs))
	switch pol.level {
	case "fingerprint", "verify", "secure":
		if !verified {
			why := "untrusted issuer"
			switch {
			case pol.level == "fingerprint":
				why = "fingerprint mismatch"
			case trusted:
				why = "name mismatch"
			}
			_ = tc.Close()
			return &outcome.Status{DSN: "4.7.5", Text: fmt.Sprintf("Server certificate not verified: %s[%s] (%s)", srv.host, srv.addr, why), Relay: relay}, false
		}
	}
	s.upgrade(tc)
	if st, ok := s.hello(); !ok {
		return &st, false
	}
	return nil, false
}

// certNames are the names a certificate must match: at level verify the
// server's (MX) host name and the nexthop; at level secure the nexthop
// and its subdomains, never an MX name learned from DNS.
func (a *Agent) certNames(d *qmgr.Delivery, srv server, pol tlsPolicy) []string {
	hop := strings.ToLower(strings.Trim(strings.Split(d.Nexthop, "]")[0], "["))
	if h, _, err := net.SplitHostPort(hop); err == nil {
		hop = h
	}
	match := pol.match
	if len(match) == 0 {
		if pol.level == "secure" {
			match = a.p.SMTPTLSSecureCertMatch
		} else {
			match = a.p.SMTPTLSVerifyCertMatch
		}
	}
	var out []string
	for _, m := range match {
		switch m = strings.ToLower(strings.TrimSpace(m)); m {
		case "hostname":
			out = append(out, strings.ToLower(srv.host))
		case "nexthop":
			out = append(out, hop)
		case "dot-nexthop":
			out = append(out, "*."+hop)
		case "":
		default:
			if strings.HasPrefix(m, ".") {
				out = append(out, "*"+m)
			} else {
				out = append(out, m)
			}
		}
	}
	return out
}

// verify checks the chain against the trusted roots (trusted) and the
// names (verified).
func (a *Agent) verify(cs tls.ConnectionState, names []string) (trusted, verified bool) {
	if len(cs.PeerCertificates) == 0 {
		return false, false
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	leaf := cs.PeerCertificates[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: a.roots, Intermediates: inter}); err != nil {
		return false, false
	}
	for _, n := range names {
		if strings.HasPrefix(n, "*.") {
			// Any subdomain: check the certificate's names.
			suffix := n[1:]
			for _, dn := range leaf.DNSNames {
				if strings.HasSuffix(strings.ToLower(strings.TrimPrefix(dn, "*")), suffix) {
					return true, true
				}
			}
			continue
		}
		if leaf.VerifyHostname(n) == nil {
			return true, true
		}
	}
	return true, false
}

// fingerprintMatch reports whether the server's certificate, or its
// public key, has one of the fingerprints (smtp_tls_fingerprint_cert_match,
// or a policy's match=). Fingerprints are hex digests of the given kind,
// with or without colons, in either case.
func fingerprintMatch(cs tls.ConnectionState, digest string, want []string) bool {
	if len(cs.PeerCertificates) == 0 {
		return false
	}
	leaf := cs.PeerCertificates[0]
	cert, pkey := tlsutil.Fingerprint(digest, leaf.Raw), tlsutil.Fingerprint(digest, leaf.RawSubjectPublicKeyInfo)
	for _, w := range want {
		if tlsutil.SameFingerprint(w, cert) || tlsutil.SameFingerprint(w, pkey) {
			return true
		}
	}
	return false
}

// SysText is an error's system message ("Connection refused"), as Postfix
// writes it in its reasons.
func SysText(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		err = se.Err
	}
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "i/o timeout") {
		return "Connection timed out"
	}
	msg := err.Error()
	if msg != "" {
		msg = strings.ToUpper(msg[:1]) + msg[1:]
	}
	return msg
}
