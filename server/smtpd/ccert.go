package smtpd

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"mailsrv/internal/tlsutil"
	"mailsrv/maps"
	"mailsrv/outcome"
)

// Client certificates, as Postfix uses them for relaying: with
// smtpd_tls_ask_ccert smtpd asks TLS clients for a certificate (without
// requiring one); permit_tls_clientcerts lets a client relay whose
// certificate's or public key's fingerprint (smtpd_tls_fingerprint_digest)
// is in relay_clientcerts, permit_tls_all_clientcerts one whose
// certificate verifies with smtpd_tls_CAfile, and check_ccert_access
// looks the fingerprints up in an access table.

// ccert is what a session knows of its client's certificate.
type ccert struct {
	fingerprint, pubkeyFingerprint string
	subject, issuer                string // common names
	verified                       bool   // chains to smtpd_tls_CAfile
}

// setupClientCerts asks for client certificates when configured.
func (s *Server) setupClientCerts() error {
	p := s.p
	if !p.SmtpdTLSAskCcert || s.tls == nil {
		return nil
	}
	s.tls.ClientAuth = tls.RequestClientCert
	if p.SmtpdTLSCAfile != "" {
		b, err := os.ReadFile(p.SmtpdTLSCAfile)
		if err != nil {
			return fmt.Errorf("smtpd_tls_CAfile: %v", err)
		}
		s.ccertRoots = x509.NewCertPool()
		if !s.ccertRoots.AppendCertsFromPEM(b) {
			return fmt.Errorf("smtpd_tls_CAfile %s: no certificates", p.SmtpdTLSCAfile)
		}
	}
	return nil
}

// clientCert reads the certificate a client presented in its handshake.
func (s *Server) clientCert(cs tls.ConnectionState) *ccert {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	c := &ccert{
		fingerprint:       tlsutil.Fingerprint(s.p.SmtpdTLSFingerprintDigest, leaf.Raw),
		pubkeyFingerprint: tlsutil.Fingerprint(s.p.SmtpdTLSFingerprintDigest, leaf.RawSubjectPublicKeyInfo),
		subject:           leaf.Subject.CommonName, issuer: leaf.Issuer.CommonName,
	}
	if s.ccertRoots != nil {
		inter := x509.NewCertPool()
		for _, ic := range cs.PeerCertificates[1:] {
			inter.AddCert(ic)
		}
		_, err := leaf.Verify(x509.VerifyOptions{Roots: s.ccertRoots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		c.verified = err == nil
	}
	return c
}

// ccertCheck evaluates permit_tls_clientcerts, permit_tls_all_clientcerts
// and check_ccert_access.
func (c *checker) ccertCheck(st *checkState, r restriction) (verdict, *outcome.Reply) {
	cc := st.s.ccert
	if cc == nil {
		return dunno, nil
	}
	switch r.name {
	case "permit_tls_all_clientcerts":
		if cc.verified {
			return permit, nil
		}
	case "permit_tls_clientcerts":
		for _, fp := range []string{cc.fingerprint, cc.pubkeyFingerprint} {
			_, ok, err := maps.LookupAll(c.relayClientcerts, fp)
			if err != nil {
				return rejected, st.tempFail(classClient, err)
			}
			if ok {
				return permit, nil
			}
		}
	case "check_ccert_access":
		return c.access(st, classCcert, r.table, []lookupKey{{cc.fingerprint, false}, {cc.pubkeyFingerprint, false}})
	}
	return dunno, nil
}
