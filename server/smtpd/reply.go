package smtpd

import (
	"strings"

	"mailsrv/outcome"
)

// reply is outcome.Newf, short: smtpd builds many replies.
func reply(code int, enh, format string, args ...any) outcome.Reply {
	return outcome.Newf(code, enh, format, args...)
}

// Replies that do not depend on the session, as Postfix words them.
var (
	replyOK          = outcome.New(250, "2.0.0", "Ok")
	replyMailOK      = outcome.New(250, "2.1.0", "Ok")
	replyRcptOK      = outcome.New(250, "2.1.5", "Ok")
	replyBye         = outcome.New(221, "2.0.0", "Bye")
	replyData        = outcome.New(354, "", "End data with <CR><LF>.<CR><LF>")
	replyUnknown     = outcome.New(500, "5.5.2", "Error: command not recognized")
	replyNotImpl     = outcome.New(502, "5.5.1", "Error: command not implemented")
	replyNeedMail    = outcome.New(503, "5.5.1", "Error: need MAIL command")
	replyNeedRcpt    = outcome.New(503, "5.5.1", "Error: need RCPT command")
	replyNested      = outcome.New(503, "5.5.1", "Error: nested MAIL command")
	replyNeedHelo    = outcome.New(503, "5.5.1", "Error: send HELO/EHLO first")
	replyNoValidRcpt = outcome.New(554, "5.5.1", "Error: no valid recipients")
	replyMailSyntax  = outcome.New(501, "5.5.4", "Syntax: MAIL FROM:<address>")
	replyRcptSyntax  = outcome.New(501, "5.5.4", "Syntax: RCPT TO:<address>")
	replyBadSender   = outcome.New(501, "5.1.7", "Bad sender address syntax")
	replyBadRcpt     = outcome.New(501, "5.1.3", "Bad recipient address syntax")
	replySizeLimit   = outcome.New(552, "5.3.4", "Message size exceeds fixed limit")
	replyTooBig      = outcome.New(552, "5.3.4", "Error: message file too big")
	replyTooManyRcpt = outcome.New(452, "4.5.3", "Error: too many recipients")
	replyTempLookup  = outcome.New(451, "4.3.0", "Temporary lookup failure")
	replyConfig      = outcome.New(451, "4.3.5", "Server configuration error")
	replyVrfyOff     = outcome.New(502, "5.5.1", "VRFY command is disabled")
	replyVrfySyntax  = outcome.New(501, "5.5.4", "Syntax: VRFY address [SMTPUTF8]")
	replyDataSyntax  = outcome.New(501, "5.5.4", "Syntax: DATA")
	replyBdatSyntax  = outcome.New(521, "5.5.4", "Syntax: BDAT count [LAST]")
	replySync        = outcome.New(554, "5.5.0", "Error: SMTP protocol synchronization")
)

// enhancedFor picks the enhanced code a restriction reply gets when its
// text does not bring one: Postfix's defaults for access-table actions.
func enhancedFor(code int, text string) (string, string) {
	if f := strings.Fields(text); len(f) > 0 && isEnhanced(f[0]) && f[0][0] == byte('0'+code/100) {
		return f[0], strings.TrimSpace(text[len(f[0]):])
	}
	if code >= 500 {
		return "5.7.1", text
	}
	return "4.7.1", text
}

func isEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 {
			return false
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}
