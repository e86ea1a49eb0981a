package smtpd

import (
	"fmt"
	"strconv"
	"strings"
)

// Reply is one SMTP reply: a code, an enhanced status code (RFC 3463;
// empty for the few replies Postfix sends without one, such as the answer
// to a bare HELO) and the text.
type Reply struct {
	Code     int
	Enhanced string
	Text     string
}

func (r Reply) String() string {
	if r.Enhanced == "" {
		return strconv.Itoa(r.Code) + " " + r.Text
	}
	return strconv.Itoa(r.Code) + " " + r.Enhanced + " " + r.Text
}

// Error lets a Reply travel as an error.
func (r Reply) Error() string { return r.String() }

// ok reports a positive completion or intermediate reply.
func (r Reply) ok() bool { return r.Code < 400 }

func reply(code int, enh, format string, args ...any) Reply {
	return Reply{Code: code, Enhanced: enh, Text: fmt.Sprintf(format, args...)}
}

// Replies that do not depend on the session, as Postfix words them.
var (
	replyOK          = Reply{250, "2.0.0", "Ok"}
	replyMailOK      = Reply{250, "2.1.0", "Ok"}
	replyRcptOK      = Reply{250, "2.1.5", "Ok"}
	replyBye         = Reply{221, "2.0.0", "Bye"}
	replyData        = Reply{354, "", "End data with <CR><LF>.<CR><LF>"}
	replyUnknown     = Reply{500, "5.5.2", "Error: command not recognized"}
	replyNotImpl     = Reply{502, "5.5.1", "Error: command not implemented"}
	replyNeedMail    = Reply{503, "5.5.1", "Error: need MAIL command"}
	replyNeedRcpt    = Reply{503, "5.5.1", "Error: need RCPT command"}
	replyNested      = Reply{503, "5.5.1", "Error: nested MAIL command"}
	replyNeedHelo    = Reply{503, "5.5.1", "Error: send HELO/EHLO first"}
	replyNoValidRcpt = Reply{554, "5.5.1", "Error: no valid recipients"}
	replyMailSyntax  = Reply{501, "5.5.4", "Syntax: MAIL FROM:<address>"}
	replyRcptSyntax  = Reply{501, "5.5.4", "Syntax: RCPT TO:<address>"}
	replyBadSender   = Reply{501, "5.1.7", "Bad sender address syntax"}
	replyBadRcpt     = Reply{501, "5.1.3", "Bad recipient address syntax"}
	replySizeLimit   = Reply{552, "5.3.4", "Message size exceeds fixed limit"}
	replyTooBig      = Reply{552, "5.3.4", "Error: message file too big"}
	replyTooManyRcpt = Reply{452, "4.5.3", "Error: too many recipients"}
	replyTempLookup  = Reply{451, "4.3.0", "Temporary lookup failure"}
	replyConfig      = Reply{451, "4.3.5", "Server configuration error"}
	replyVrfyOff     = Reply{502, "5.5.1", "VRFY command is disabled"}
	replyVrfySyntax  = Reply{501, "5.5.4", "Syntax: VRFY address [SMTPUTF8]"}
	replyDataSyntax  = Reply{501, "5.5.4", "Syntax: DATA"}
	replyBdatSyntax  = Reply{521, "5.5.4", "Syntax: BDAT count [LAST]"}
	replySync        = Reply{554, "5.5.0", "Error: SMTP protocol synchronization"}
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
