package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"os/user"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"mailsrv/config"
	"mailsrv/maillog"
	"mailsrv/outcome"
	"mailsrv/queue"
	"mailsrv/rewrite"
	"mailsrv/rewrite/cleanup"
	"mailsrv/server/pickup"
	"mailsrv/server/smtpd"
)

// Exit codes of sendmail (sysexits.h), as Postfix's sendmail uses them.
const (
	exUsage    = 64
	exDataErr  = 65
	exNoUser   = 67
	exSoftware = 70
	exTempFail = 75
)

// sendmailOpts are the parsed sendmail flags.
type sendmailOpts struct {
	mode       string // "m" (deliver), "s" (SMTP on stdin), "p" (mailq), "v" (verify), "i" (newaliases)
	extract    bool   // -t
	dotOK      bool   // -i, -oi: a line with one dot is data
	sender     string
	senderSet  bool
	fullName   string
	queueRun   bool // -q
	configFile string
	verbose    bool
	recipients []string
}

// sendmailOptions lists the flags that take a value (Postfix's getopt
// string): everything else is a single-letter switch.
const sendmailWithValue = "ABCFLNORVXbcefhopr"

func parseSendmailArgs(args []string) (*sendmailOpts, error) {
	o := &sendmailOpts{mode: "m"}
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		for j := 1; j < len(a); j++ {
			flag := a[j]
			var val string
			if flag == 'q' {
				// -q, -q30m, -qR site, -qI id: a queue run now.
				o.queueRun = true
				break
			}
			if strings.IndexByte(sendmailWithValue, flag) >= 0 {
				if j+1 < len(a) {
					val = a[j+1:]
				} else if i+1 < len(args) {
					i++
					val = args[i]
				} else {
					return nil, fmt.Errorf("option requires an argument -- '%c'", flag)
				}
				j = len(a)
			}
			switch flag {
			case 'b':
				switch val {
				case "m", "s", "p", "v", "i":
					o.mode = val
				case "d", "D", "h", "H", "l":
					return nil, fmt.Errorf("-b%s is not supported: start the daemon with \"mailsrv postfix start\"", val)
				default:
					return nil, fmt.Errorf("unsupported: -b%s", val)
				}
			case 'C', 'c':
				o.configFile = val
			case 'F':
				o.fullName = val
			case 'f', 'r':
				o.sender, o.senderSet = strings.TrimSuffix(strings.TrimPrefix(val, "<"), ">"), true
			case 'i':
				o.dotOK = true
			case 'o':
				if val == "i" {
					o.dotOK = true
				}
			case 't':
				o.extract = true
			case 'v':
				o.verbose = true
			default:
				// -B -G -h -I -L -m -n -N -O -R -U -V -X -e -x and
				// the rest of -o: accepted and ignored, as Postfix
				// ignores them.
			}
		}
	}
	o.recipients = args[i:]
	return o, nil
}

func newSendmail(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "sendmail [options] [recipient ...]",
		Short: "Submit a message, the way programs and scripts send mail",
		Long: `sendmail reads a message from standard input and hands it to the running
mailsrv daemon through its submission socket; when the daemon is down, the
message waits in maildrop for pickup. No set-uid or set-gid bit is needed:
the daemon learns who submitted from the socket.

Flags as in Postfix: -t (recipients from To:, Cc:, Bcc:), -i / -oi (a line
with one dot is not the end), -f / -r SENDER, -F "Full Name", -bm (the
default), -bs (SMTP on standard input and output), -bp (mailq), -bv ADDRESS
(show where each address would go, sending nothing), -bi (newaliases), -q
(deliver deferred mail now). Other Sendmail flags are ignored.`,
		DisableFlagParsing: true,
		RunE: func(c *cobra.Command, args []string) error {
			// Help needs no configuration. Sendmail's -h takes a hop
			// count, so only a bare -h asks for help.
			if len(args) == 1 && (args[0] == "--help" || args[0] == "-h") || slices.Contains(args, "--help") {
				return c.Help()
			}
			o, err := parseSendmailArgs(args)
			if err != nil {
				return exitf(exUsage, "fatal: usage: sendmail [options] [recipient ...]: %v", err)
			}
			if o.configFile != "" {
				g.configFile = o.configFile
			}
			cfg, err := g.load()
			if err != nil {
				return err
			}
			return runSendmail(g, cfg, o, c.InOrStdin(), c.OutOrStdout(), c.ErrOrStderr())
		},
	}
}

func runSendmail(g *globals, cfg *config.Config, o *sendmailOpts, in io.Reader, out, errOut io.Writer) error {
	p := cfg.Params
	switch {
	case o.queueRun:
		if _, err := pickup.Submit(p.QueueDirectory, pickup.SubmitRequest{Op: "flush"}, nil, time.Minute); err != nil {
			if errors.Is(err, pickup.ErrDaemonDown) {
				return exitf(exTempFail, "fatal: Cannot flush mail queue - mail system is down")
			}
			return exitf(exTempFail, "fatal: %v", err)
		}
		return nil
	case o.mode == "p":
		bw := bufio.NewWriter(out)
		defer bw.Flush()
		return showqCompat(queue.FromConfig(p), bw)
	case o.mode == "i":
		return runPostmap(g, &postmapFlags{}, true, "newaliases", nil, in, out, errOut)
	case o.mode == "v":
		return verifyAddresses(p, o, out)
	case o.mode == "s":
		return sendmailSMTP(cfg, o, in, out)
	}
	if !o.senderSet {
		o.sender = loginName()
	}
	msg, rcpts, err := readMessage(in, o, int64(p.MessageSizeLimit))
	if err != nil {
		return err
	}
	if len(rcpts) == 0 {
		if o.extract {
			return exitf(exUsage, "fatal: no recipients found in message header")
		}
		return exitf(exUsage, "fatal: no recipient addresses specified")
	}
	req := pickup.SubmitRequest{Op: "mail", Sender: o.sender, SenderSet: o.senderSet, FullName: o.fullName, Recipients: rcpts,
		Report: o.verbose}
	if _, err := submitOrDrop(p, req, msg); err != nil {
		return err
	}
	if o.verbose {
		fmt.Fprintf(out, "Mail Delivery Status Report will be mailed to <%s>.\n", o.sender)
	}
	return nil
}

// submitOrDrop hands the message to the daemon, or leaves it in maildrop.
func submitOrDrop(p *config.Params, req pickup.SubmitRequest, msg []byte) (string, error) {
	id, err := pickup.Submit(p.QueueDirectory, req, bytes.NewReader(msg), 5*time.Minute)
	if errors.Is(err, pickup.ErrDaemonDown) {
		id, err = pickup.Drop(queue.FromConfig(p), req, bytes.NewReader(msg))
		if err != nil {
			return "", exitf(exTempFail, "fatal: the mail system is down and maildrop is not writable: %v", err)
		}
		return id, nil
	}
	var refusal outcome.Reply
	if errors.As(err, &refusal) {
		code := exDataErr
		if refusal.Temporary() {
			code = exTempFail
		}
		return "", exitf(code, "fatal: %s %s", refusal.Enhanced, refusal.Text)
	}
	if err != nil {
		return "", exitf(exTempFail, "fatal: %v", err)
	}
	return id, nil
}

func loginName() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return fmt.Sprint(os.Getuid())
}

// readMessage reads standard input as Postfix's sendmail does: CRLF line
// ends become LF (sendmail_fix_line_endings = always), a line with a
// single dot ends the message unless -i, and with -t the recipients are
// also taken from To:, Cc: and Bcc: (Resent-To: and friends when the
// message has Resent- headers). The size is bounded by
// message_size_limit.
func readMessage(in io.Reader, o *sendmailOpts, limit int64) ([]byte, []string, error) {
	br := bufio.NewReaderSize(in, 64<<10)
	var msg bytes.Buffer
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			text := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
			if !o.dotOK && string(text) == "." {
				break
			}
			msg.Write(text)
			msg.WriteByte('\n')
			if limit > 0 && int64(msg.Len()) > limit {
				return nil, nil, exitf(exDataErr, "fatal: message file too big")
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, exitf(exTempFail, "fatal: read standard input: %v", err)
		}
	}
	rcpts := append([]string(nil), o.recipients...)
	if o.extract {
		rcpts = append(rcpts, headerRecipients(msg.Bytes())...)
	}
	return msg.Bytes(), rcpts, nil
}

// headerRecipients extracts -t recipients.
func headerRecipients(msg []byte) []string {
	r, err := mail.ReadMessage(bytes.NewReader(append(append([]byte(nil), msg...), '\n')))
	if err != nil {
		return nil
	}
	names := []string{"To", "Cc", "Bcc"}
	for k := range r.Header {
		if strings.HasPrefix(strings.ToLower(k), "resent-") {
			names = []string{"Resent-To", "Resent-Cc", "Resent-Bcc"}
			break
		}
	}
	var out []string
	for _, n := range names {
		for _, v := range r.Header[n] {
			list, err := mail.ParseAddressList(v)
			if err != nil {
				// Not RFC 5322: take comma-separated words, as
				// Postfix's tokenizer would.
				for _, a := range strings.Split(v, ",") {
					if a = strings.TrimSpace(a); a != "" {
						out = append(out, a)
					}
				}
				continue
			}
			for _, a := range list {
				out = append(out, a.Address)
			}
		}
	}
	return out
}

// verifyAddresses is sendmail -bv: a message with no content, flagged
// for verification only, is queued for the recipients; the delivery
// agents decide what would become of each without delivering, and the
// sender gets the answer as a "Mail Delivery Status Report".
func verifyAddresses(p *config.Params, o *sendmailOpts, out io.Writer) error {
	if len(o.recipients) == 0 {
		return exitf(exUsage, "fatal: usage: sendmail -bv address ...")
	}
	if !o.senderSet {
		o.sender = loginName()
	}
	req := pickup.SubmitRequest{Op: "mail", Sender: o.sender, SenderSet: o.senderSet, FullName: o.fullName,
		Recipients: o.recipients, Verify: true}
	if _, err := submitOrDrop(p, req, nil); err != nil {
		return err
	}
	fmt.Fprintf(out, "Mail Delivery Status Report will be mailed to <%s>.\n", o.sender)
	return nil
}

// sendmailSMTP is sendmail -bs: an SMTP session on standard input and
// output, as a local submission.
func sendmailSMTP(cfg *config.Config, o *sendmailOpts, in io.Reader, out io.Writer) error {
	p := cfg.Params
	rw, err := rewrite.New(p)
	if err != nil {
		return exitf(exSoftware, "fatal: %v", err)
	}
	lg, err := maillog.Open(p.MaillogFile, p.SyslogFacility, p.Myhostname)
	if err != nil {
		lg = maillog.New(io.Discard, p.Myhostname)
	}
	defer lg.Close()
	srv, err := smtpd.New(smtpd.Options{
		Params:  p,
		Service: "sendmail",
		Log:     lg.Role(p.SyslogName, "sendmail"),
		Rewrite: rw,
		Queue:   &submitQueue{p: p, fullName: o.fullName},
	})
	if err != nil {
		return exitf(exSoftware, "fatal: %v", err)
	}
	srv.ServeStdio(context.Background(), in, out)
	return nil
}

// submitQueue collects a -bs message and submits it at the end of DATA.
type submitQueue struct {
	p        *config.Params
	fullName string
}

func (q *submitQueue) Open(env cleanup.Envelope) (smtpd.Message, error) {
	req := pickup.SubmitRequest{Op: "mail", Sender: env.Sender, SenderSet: true, FullName: q.fullName}
	for _, r := range env.Recipients {
		req.Recipients = append(req.Recipients, r.Addr)
	}
	return &submitMessage{p: q.p, req: req}, nil
}

type submitMessage struct {
	p   *config.Params
	req pickup.SubmitRequest
	buf bytes.Buffer
	id  string
	err *outcome.Reply // a refusal before the end (the size limit)
}

func (m *submitMessage) Write(b []byte) (int, error) { return m.buf.Write(b) }

// ID is known only after Finish; until then the session logs none.
func (m *submitMessage) ID() string {
	if m.id == "" {
		return "NOQUEUE"
	}
	return m.id
}
func (m *submitMessage) Reject(e outcome.Reply) { m.err = &e }
func (m *submitMessage) Abort()                 {}
func (m *submitMessage) Finish() error {
	if m.err != nil {
		return *m.err
	}
	id, err := submitOrDrop(m.p, m.req, m.buf.Bytes())
	if err != nil {
		return cleanup.ErrWrite
	}
	m.id = id
	return nil
}
