// Package tlsutil holds what the TLS server (smtpd) and client (smtp)
// share: Postfix's protocol lists read as a minimum version, and the
// names and key sizes Postfix writes in its TLS log lines.
package tlsutil

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"strings"
)

// MinVersion reads a protocol list (">=TLSv1.2", or "!SSLv2, !SSLv3,
// !TLSv1") as a minimum version.
func MinVersion(list []string) (uint16, error) {
	versions := map[string]uint16{"tlsv1": tls.VersionTLS10, "tlsv1.1": tls.VersionTLS11, "tlsv1.2": tls.VersionTLS12, "tlsv1.3": tls.VersionTLS13}
	min := uint16(tls.VersionTLS10)
	for _, item := range list {
		for _, w := range strings.FieldsFunc(item, func(r rune) bool { return r == ':' || r == ' ' || r == ',' }) {
			w = strings.ToLower(w)
			switch {
			case strings.HasPrefix(w, ">="):
				v, ok := versions[w[2:]]
				if !ok {
					return 0, fmt.Errorf("unknown protocol %q", w[2:])
				}
				min = max(min, v)
			case strings.HasPrefix(w, "!"):
				// Excluding the oldest versions raises the minimum.
				switch w[1:] {
				case "sslv2", "sslv3":
				case "tlsv1":
					min = max(min, tls.VersionTLS11)
				case "tlsv1.1":
					min = max(min, tls.VersionTLS12)
				}
			}
		}
	}
	return min, nil
}

// VersionName is the protocol as Postfix logs it (TLSv1.3).
func VersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS11:
		return "TLSv1.1"
	}
	return "TLSv1"
}

// CipherBits is the symmetric key size of a cipher suite.
func CipherBits(id uint16) int {
	name := tls.CipherSuiteName(id)
	switch {
	case strings.Contains(name, "AES_128"):
		return 128
	case strings.Contains(name, "AES_256"), strings.Contains(name, "CHACHA20"):
		return 256
	}
	return 0
}

// Describe is "TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits)".
func Describe(cs tls.ConnectionState) string {
	bits := CipherBits(cs.CipherSuite)
	return fmt.Sprintf("%s with cipher %s (%d/%d bits)", VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), bits, bits)
}

// Fingerprint is a digest of DER bytes (a certificate, or its public
// key's SubjectPublicKeyInfo) as Postfix prints fingerprints: upper-case
// hex bytes separated by colons. digest is md5, sha1, sha224, sha256,
// sha384 or sha512 (smtp_tls_fingerprint_digest,
// smtpd_tls_fingerprint_digest); anything else is sha256.
func Fingerprint(digest string, der []byte) string {
	var sum []byte
	switch digest {
	case "md5":
		s := md5.Sum(der)
		sum = s[:]
	case "sha1":
		s := sha1.Sum(der)
		sum = s[:]
	case "sha224":
		s := sha256.Sum224(der)
		sum = s[:]
	case "sha384":
		s := sha512.Sum384(der)
		sum = s[:]
	case "sha512":
		s := sha512.Sum512(der)
		sum = s[:]
	default:
		s := sha256.Sum256(der)
		sum = s[:]
	}
	h := strings.ToUpper(hex.EncodeToString(sum))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// SameFingerprint compares fingerprints written with or without colons,
// in either case.
func SameFingerprint(a, b string) bool {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", "")) }
	na, nb := norm(a), norm(b)
	return na != "" && subtle.ConstantTimeCompare([]byte(na), []byte(nb)) == 1
}
