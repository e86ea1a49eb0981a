// Package pipe is Postfix's pipe(8) delivery agent: it runs a [[service]]'s
// argv with the message on standard input, as the service's user= (never
// root or mail_owner), with Postfix's macros (${sender}, ${recipient},
// ${user}, ${extension}, ${domain}, ${nexthop}, ${queue_id}, ${size}, …)
// and flags (B D F O R X h q u . >). The command's exit status is read as
// sysexits(3): 0 delivers, 75 (EX_TEMPFAIL) and 71 defer, others bounce
// with their DSN; output that starts with an enhanced status code
// overrides it; a command killed by a signal is deferred, one that runs
// past command_time_limit bounced.
package pipe

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os/user"
	"regexp"
	"strconv"
	"strings"
	"time"

	"mailsrv/config"
	"mailsrv/delivery/mailbox"
	"mailsrv/delivery/spawn"
	"mailsrv/outcome"
	"mailsrv/queue/qmgr"
)

// Agent is one pipe service.
type Agent struct {
	name  string
	p     *config.Params
	attrs *config.PipeAttrs
	uid   int
	gid   int
	limit time.Duration
	flag  map[rune]bool
}

// New checks a pipe service's attributes.
func New(name string, p *config.Params, attrs *config.PipeAttrs) (*Agent, error) {
	if attrs == nil || len(attrs.Argv) == 0 {
		return nil, fmt.Errorf("pipe service %s: missing argv", name)
	}
	uname, gname, _ := strings.Cut(attrs.User, ":")
	u, err := user.Lookup(uname)
	if err != nil {
		return nil, fmt.Errorf("pipe service %s: user=%s: %v", name, uname, err)
	}
	a := &Agent{name: name, p: p, attrs: attrs, limit: p.CommandTimeLimit, flag: map[rune]bool{}}
	a.uid, _ = strconv.Atoi(u.Uid)
	a.gid, _ = strconv.Atoi(u.Gid)
	if gname != "" {
		g, err := user.LookupGroup(gname)
		if err != nil {
			return nil, fmt.Errorf("pipe service %s: user=%s: %v", name, attrs.User, err)
		}
		a.gid, _ = strconv.Atoi(g.Gid)
	}
	if a.uid == 0 || a.gid == 0 {
		return nil, fmt.Errorf("pipe service %s: user=%s: a pipe command must not run as root", name, attrs.User)
	}
	if uname == p.MailOwner {
		return nil, fmt.Errorf("pipe service %s: user=%s: a pipe command must not run as mail_owner", name, attrs.User)
	}
	for _, f := range attrs.Flags {
		a.flag[f] = true
	}
	return a, nil
}

var macro = regexp.MustCompile(`\$\{([a-z_]+)\}|\$([a-z_]+)`)

// recipientMacros expand to one argument per recipient.
var recipientMacros = map[string]bool{
	"recipient": true, "original_recipient": true, "user": true,
	"extension": true, "mailbox": true, "domain": true,
}

// Deliver runs the command once for the delivery's recipients.
func (a *Agent) Deliver(d *qmgr.Delivery) {
	relay := a.name
	st := func(dsn, text string) outcome.Status { return outcome.Status{DSN: dsn, Text: text, Relay: relay} }
	if a.attrs.Size > 0 && d.Size > a.attrs.Size {
		d.BounceRest(st("5.2.3", "message too large"))
		return
	}
	if a.flag['D'] {
		for _, r := range d.Recipients {
			if seen, err := mailbox.HasDeliveredTo(d.Content(), a.addr(r.Addr)); err == nil && seen {
				d.Bounce(r, st("5.4.6", "mail forwarding loop for "+r.Addr))
			}
		}
	}
	var rcpts []*qmgr.Recipient
	for _, r := range d.Recipients {
		if d.Pending(r) {
			rcpts = append(rcpts, r)
		}
	}
	if len(rcpts) == 0 {
		return
	}
	argv := a.argv(d, rcpts)
	if d.Verify {
		for _, r := range rcpts {
			d.Sent(r, st("2.0.0", "delivers to command: "+argv[0]))
		}
		return
	}
	in := a.input(d, rcpts)
	res, err := spawn.Run(d.Ctx, &spawn.Cmd{
		Path: argv[0], Args: argv, Env: a.env(), Dir: a.dir(),
		UID: a.uid, GID: a.gid, Groups: []int{a.gid},
		Stdin: in, Timeout: a.limit,
	})
	// A command that did not read all its input leaves the writer
	// waiting: release it.
	in.Close()
	switch {
	case err != nil:
		d.DeferRest(st("4.3.0", fmt.Sprintf("cannot run %s: %v", argv[0], err)))
	case res.TimedOut:
		d.BounceRest(st("5.3.0", fmt.Sprintf("Command time limit exceeded: %q", argv[0])+output(res.Output)))
	case res.Signaled:
		d.DeferRest(st("4.3.0", fmt.Sprintf("Command died with signal: %q", argv[0])+output(res.Output)))
	case res.Status == 0:
		for _, r := range rcpts {
			d.Sent(r, st("2.0.0", "delivered via "+a.name+" service"+maybe(res.Output)))
		}
	default:
		e := spawn.ExitStatus(res.Status, argv[0], res.Output)
		if e.Temporary() {
			d.DeferRest(st(e.DSN, e.Text+output(res.Output)))
		} else {
			d.BounceRest(st(e.DSN, e.Text+output(res.Output)))
		}
	}
}

func output(s string) string {
	if s == "" {
		return ""
	}
	return ". Command output: " + strings.Join(strings.Fields(s), " ")
}

func maybe(s string) string {
	if s == "" {
		return ""
	}
	return " (" + strings.Join(strings.Fields(s), " ") + ")"
}

func (a *Agent) dir() string {
	if a.attrs.Directory != "" {
		return a.attrs.Directory
	}
	return "/"
}

func (a *Agent) env() []string {
	env := []string{"PATH=/usr/bin:/bin"}
	for _, name := range a.p.ExportEnvironment {
		if strings.Contains(name, "=") {
			env = append(env, name)
		}
	}
	return env
}

// addr applies the h, u and q flags to an address.
func (a *Agent) addr(s string) string {
	local, domain, hasAt := strings.Cut(s, "@")
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		local, domain, hasAt = s[:i], s[i+1:], true
	}
	if a.flag['u'] {
		local = strings.ToLower(local)
	}
	if a.flag['h'] {
		domain = strings.ToLower(domain)
	}
	if a.flag['q'] && strings.ContainsAny(local, " \"(),:;<>@[\\]") {
		local = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(local) + `"`
	}
	if !hasAt {
		return local
	}
	return local + "@" + domain
}

// argv expands the macros: recipient macros give one argument per
// recipient.
func (a *Agent) argv(d *qmgr.Delivery, rcpts []*qmgr.Recipient) []string {
	sender := d.Sender
	if sender == "" {
		sender = a.attrs.NullSender
	} else {
		sender = a.addr(sender)
	}
	nexthop := d.Nexthop
	if a.flag['h'] {
		nexthop = strings.ToLower(nexthop)
	}
	msg := map[string]string{
		"sender": sender, "nexthop": nexthop, "size": strconv.FormatInt(d.Size, 10),
		"queue_id": d.ID, "envid": d.Attrs["envelope_id"],
		"client_address": d.Attrs["client_address"], "client_hostname": d.Attrs["client_name"],
		"client_helo": d.Attrs["helo_name"], "client_protocol": d.Attrs["protocol_name"],
		"client_port": d.Attrs["client_port"], "sasl_method": d.Attrs["sasl_method"],
		"sasl_username": d.Attrs["sasl_username"], "sasl_sender": d.Attrs["sasl_sender"],
	}
	var out []string
	for _, arg := range a.attrs.Argv {
		perRcpt := false
		for _, m := range macro.FindAllStringSubmatch(arg, -1) {
			if recipientMacros[m[1]+m[2]] {
				perRcpt = true
			}
		}
		if !perRcpt {
			out = append(out, expand(arg, msg))
			continue
		}
		for _, r := range rcpts {
			vars := map[string]string{}
			for k, v := range msg {
				vars[k] = v
			}
			addr := a.addr(r.Addr)
			local, domain := addr, ""
			if i := strings.LastIndexByte(addr, '@'); i >= 0 {
				local, domain = addr[:i], addr[i+1:]
			}
			user, ext := local, ""
			if dl := a.p.RecipientDelimiter; dl != "" {
				if i := strings.IndexAny(local, dl); i > 0 {
					user, ext = local[:i], local[i+1:]
				}
			}
			orig := r.Orig
			if orig == "" {
				orig = r.Addr
			}
			vars["recipient"], vars["original_recipient"] = addr, a.addr(orig)
			vars["user"], vars["extension"], vars["mailbox"], vars["domain"] = user, ext, local, domain
			out = append(out, expand(arg, vars))
		}
	}
	return out
}

func expand(arg string, vars map[string]string) string {
	return macro.ReplaceAllStringFunc(arg, func(m string) string {
		name := strings.Trim(m, "${}")
		if v, ok := vars[name]; ok {
			return v
		}
		return m
	})
}

// input is what the command reads: the optional From_ line and headers,
// then the message, with the flags' quoting and the service's eol.
func (a *Agent) input(d *qmgr.Delivery, rcpts []*qmgr.Recipient) io.ReadCloser {
	var head bytes.Buffer
	sender := d.Sender
	if a.flag['F'] {
		s := sender
		if s == "" {
			s = "MAILER-DAEMON"
		}
		fmt.Fprintf(&head, "From %s  %s\n", s, time.Now().Format("Mon Jan _2 15:04:05 2006"))
	}
	if a.flag['R'] {
		fmt.Fprintf(&head, "Return-Path: <%s>\n", sender)
	}
	if a.flag['O'] && len(rcpts) == 1 {
		orig := rcpts[0].Orig
		if orig == "" {
			orig = rcpts[0].Addr
		}
		fmt.Fprintf(&head, "X-Original-To: %s\n", a.addr(orig))
	}
	if a.flag['D'] && len(rcpts) == 1 {
		fmt.Fprintf(&head, "Delivered-To: %s\n", a.addr(rcpts[0].Addr))
	}
	pr, pw := io.Pipe()
	go func() {
		w := bufio.NewWriterSize(pw, 64<<10)
		eol := a.attrs.Eol
		put := func(line []byte) {
			nl := len(line) > 0 && line[len(line)-1] == '\n'
			if nl {
				line = line[:len(line)-1]
			}
			w.Write(line)
			if nl {
				w.WriteString(eol)
			}
		}
		for _, line := range bytes.SplitAfter(head.Bytes(), []byte("\n")) {
			put(line)
		}
		br := bufio.NewReaderSize(d.Content(), 64<<10)
		inBody, start := false, true
		var err error
		for {
			var line []byte
			line, err = br.ReadSlice('\n')
			if len(line) > 0 {
				if start {
					if !inBody && line[0] == '\n' {
						inBody = true
					}
					if a.flag['.'] && line[0] == '.' {
						w.WriteByte('.')
					}
					if a.flag['>'] && inBody && bytes.HasPrefix(line, []byte("From ")) {
						w.WriteByte('>')
					}
				}
				put(line)
				start = line[len(line)-1] == '\n'
			}
			if err != nil && err != bufio.ErrBufferFull {
				break
			}
		}
		if err == io.EOF {
			err = nil
			if !start {
				w.WriteString(eol)
			}
			if a.flag['B'] {
				w.WriteString(eol)
			}
			err = w.Flush()
		}
		pw.CloseWithError(err)
	}()
	return pr
}
