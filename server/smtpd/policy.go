package smtpd

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"mailsrv/config"
	"mailsrv/internal/tlsutil"
	"mailsrv/outcome"
	"mailsrv/server/policy"
)

// check_policy_service: smtpd asks a policy server (Postfix's policy
// delegation protocol, the policy package) and takes its answer as an
// access table's result. A server that cannot be asked answers
// smtpd_policy_service_default_action, with a warning.

// policyClients keeps one client, and so one connection pool, per
// server of a configuration.
func (c *checker) policyClient(endpoint string) (*policy.Client, error) {
	if cl, ok := c.policies[endpoint]; ok {
		return cl, nil
	}
	target := endpoint
	if rest, ok := strings.CutPrefix(endpoint, "unix:"); ok && !strings.HasPrefix(rest, "/") {
		// As in Postfix: a relative path is under queue_directory.
		target = "unix:" + filepath.Join(c.p.QueueDirectory, rest)
	}
	p := c.p
	cl, err := policy.New(target, policy.Options{
		Timeout: p.SmtpdPolicyServiceTimeout, MaxIdle: p.SmtpdPolicyServiceMaxIdle, MaxTTL: p.SmtpdPolicyServiceMaxTTL,
		TryLimit: p.SmtpdPolicyServiceTryLimit, RetryDelay: p.SmtpdPolicyServiceRetryDelay, RequestLimit: p.SmtpdPolicyServiceRequestLimit,
	})
	if err != nil {
		return nil, err
	}
	if c.policies == nil {
		c.policies = map[string]*policy.Client{}
	}
	c.policies[endpoint] = cl
	return cl, nil
}

// closePolicies ends the policy servers' idle connections.
func (c *checker) closePolicies() {
	for _, cl := range c.policies {
		cl.Close()
	}
}

// instanceSeq numbers the mail transactions for the instance attribute
// (unique within this process's life: instanceBase is its start).
var (
	instanceSeq  atomic.Uint64
	instanceBase = time.Now().UnixNano() & 0xffffffff
)

// policyAttrs is what a policy request says about the session, as
// Postfix sends it.
func (st *checkState) policyAttrs(c *checker) []policy.Attr {
	s := st.s
	state := strings.ToUpper(strings.Fields(s.lastCmd + " x")[0])
	if state == "BDAT" {
		state = "DATA"
	}
	if s.txn.instance == "" {
		s.txn.instance = fmt.Sprintf("%x.%x", instanceBase, instanceSeq.Add(1))
	}
	queueID := ""
	if s.txn.msg != nil {
		queueID = s.txn.msg.ID()
	}
	size := "0"
	if s.txn.params.size > 0 {
		size = strconv.FormatInt(s.txn.params.size, 10)
	}
	attrs := []policy.Attr{
		{Name: "request", Value: "smtpd_access_policy"},
		{Name: "protocol_state", Value: state},
		{Name: "protocol_name", Value: s.proto()},
		{Name: "client_address", Value: s.clientAddr.String()},
		{Name: "client_name", Value: s.clientName},
		{Name: "client_port", Value: s.clientPort},
		{Name: "reverse_client_name", Value: s.reverseName},
		{Name: "server_address", Value: s.serverAddr},
		{Name: "server_port", Value: s.serverPort},
		{Name: "helo_name", Value: s.helo},
		{Name: "sender", Value: s.txn.sender},
		{Name: "recipient", Value: st.rcpt},
		{Name: "recipient_count", Value: strconv.Itoa(len(s.txn.rcpts))},
		{Name: "queue_id", Value: queueID},
		{Name: "instance", Value: s.txn.instance},
		{Name: "size", Value: size},
		{Name: "etrn_domain", Value: st.etrn},
		{Name: "stress", Value: ""},
		{Name: "sasl_method", Value: s.saslMethod},
		{Name: "sasl_username", Value: s.saslUser},
		{Name: "sasl_sender", Value: ""},
		{Name: "ccert_subject", Value: ""},
		{Name: "ccert_issuer", Value: ""},
		{Name: "ccert_fingerprint", Value: ""},
		{Name: "ccert_pubkey_fingerprint", Value: ""},
		{Name: "encryption_protocol", Value: ""},
		{Name: "encryption_cipher", Value: ""},
		{Name: "encryption_keysize", Value: "0"},
		{Name: "policy_context", Value: c.p.SmtpdPolicyServicePolicyContext},
		{Name: "compatibility_level", Value: "3.6"},
		{Name: "mail_version", Value: config.Version},
	}
	if cc := s.ccert; cc != nil {
		for i := range attrs {
			switch attrs[i].Name {
			case "ccert_subject":
				attrs[i].Value = cc.subject
			case "ccert_issuer":
				attrs[i].Value = cc.issuer
			case "ccert_fingerprint":
				attrs[i].Value = cc.fingerprint
			case "ccert_pubkey_fingerprint":
				attrs[i].Value = cc.pubkeyFingerprint
			}
		}
	}
	if s.tls != nil {
		proto, cipher, bits := tlsutil.VersionName(s.tls.Version), tls.CipherSuiteName(s.tls.CipherSuite), tlsutil.CipherBits(s.tls.CipherSuite)
		for i := range attrs {
			switch attrs[i].Name {
			case "encryption_protocol":
				attrs[i].Value = proto
			case "encryption_cipher":
				attrs[i].Value = cipher
			case "encryption_keysize":
				attrs[i].Value = strconv.Itoa(bits)
			}
		}
	}
	return attrs
}

// askPolicy evaluates check_policy_service.
func (c *checker) askPolicy(st *checkState, class listClass, r restriction) (verdict, *outcome.Reply) {
	ctx, cancel := context.WithTimeout(st.s.ctx, c.p.SmtpdPolicyServiceTimeout*2+c.p.SmtpdPolicyServiceRetryDelay*2)
	defer cancel()
	action, err := r.policy.Ask(ctx, st.policyAttrs(c))
	if err != nil {
		c.log.Warnf("problem talking to server %s: %v", r.arg, err)
		action = c.p.SmtpdPolicyServiceDefaultAction
	}
	return c.action(st, class, "check_policy_service "+r.arg, action)
}
