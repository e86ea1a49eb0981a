// Package local is Postfix's local(8) delivery agent: mail for the
// domains in mydestination. Per recipient, in Postfix's order: the
// Delivered-To loop check; alias_maps (addresses, |command, /file,
// :include:/file, owner- lists); the user's .forward (forward_path); and
// the mailbox: mailbox_command, home_mailbox (Maildir/ or an mbox file
// under the home directory), or mail_spool_directory/USER with fcntl and
// dotlock locking and >From quoting. Unknown users go to luser_relay or
// bounce.
//
// The daemon never touches a user's files itself: mailbox writes, file
// destinations, .forward reading and commands run in a child process of
// this binary with the user's uid and gids (child.go). Alias commands and
// files run as the owner of the alias table, or default_privs when that
// is root; :include: items as the include file's owner (default_privs for
// root), as in Postfix. Addresses that leave the machine are forwarded in
// a new message through cleanup, so each has its own status.
package local

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"mailsrv/config"
	"mailsrv/delivery/mailbox"
	"mailsrv/delivery/spawn"
	"mailsrv/maps"
	"mailsrv/outcome"
	"mailsrv/queue"
	"mailsrv/queue/qmgr"
	"mailsrv/rewrite/cleanup"
)

// User is a passwd entry.
type User struct {
	Name  string
	UID   int
	GID   int
	Home  string
	Shell string
}

// Users finds local users; the system's passwd by default, a table in
// tests.
type Users interface {
	Lookup(name string) (*User, bool, error)
}

// SystemUsers is the passwd database.
type SystemUsers struct{}

// Lookup finds a user in passwd.
func (SystemUsers) Lookup(name string) (*User, bool, error) {
	u, err := user.Lookup(name)
	if errors.As(err, new(user.UnknownUserError)) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &User{Name: u.Username, UID: uid, GID: gid, Home: u.HomeDir, Shell: "/bin/sh"}, true, nil
}

// Forwarder submits a new message (forwarded mail) and returns its ID.
type Forwarder interface {
	Open(env cleanup.Envelope) (*cleanup.Message, error)
}

// Options configure the agent.
type Options struct {
	Params  *config.Params
	Users   Users     // nil = SystemUsers
	Forward Forwarder // cleanup, for forwarded mail
	// IsLocal says whether an address is delivered by this agent (its
	// domain is one of mydestination): trivial-rewrite's verdict.
	IsLocal func(addr string) bool
	// Self is the executable of the child processes (os.Executable()).
	Self string
}

// Agent is local(8).
type Agent struct {
	o        Options
	p        *config.Params
	aliases  []*maps.Map
	locking  mailbox.Locking
	users    Users
	defPrivs *User
}

// New opens the alias tables and checks the settings.
func New(o Options) (*Agent, error) {
	p := o.Params
	a := &Agent{o: o, p: p, users: o.Users}
	if a.users == nil {
		a.users = SystemUsers{}
	}
	var err error
	if a.aliases, err = maps.OpenAll(p.AliasMaps); err != nil {
		return nil, fmt.Errorf("alias_maps: %w", err)
	}
	if a.locking, err = mailbox.ParseLocking(p.MailboxDeliveryLock, p.StaleLockTime, p.DeliverLockAttempts, p.DeliverLockDelay); err != nil {
		return nil, fmt.Errorf("mailbox_delivery_lock: %w", err)
	}
	if a.o.Self == "" {
		if a.o.Self, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// Deliver delivers each recipient (normally one: local_destination_recipient_limit).
func (a *Agent) Deliver(d *qmgr.Delivery) {
	for _, r := range d.Recipients {
		s := &state{a: a, d: d, r: r, seen: map[string]bool{}}
		s.deliver(strings.ToLower(r.Addr), "", 0)
		if len(s.members) == 1 && s.members[0].Addr == "" {
			m := s.members[0]
			switch m.State {
			case outcome.Sent:
				d.Sent(r, m.Status)
			case outcome.Deferred:
				d.Defer(r, m.Status)
			default:
				d.Bounce(r, m.Status)
			}
			continue
		}
		d.Members(r, s.members)
	}
}

// state is one recipient's delivery, with the members it expanded to.
type state struct {
	a       *Agent
	d       *qmgr.Delivery
	r       *qmgr.Recipient
	seen    map[string]bool
	members []qmgr.Member
	content []byte // the header, for loop checks (read once)
}

// privs is who runs an alias or .forward item, and where it came from.
type privs struct {
	user  *User
	class string // alias, forward, include
}

const maxDepth = 100

func (s *state) result(addr string, state outcome.State, st outcome.Status) {
	if st.Relay == "" {
		st.Relay = "local"
	}
	if addr == strings.ToLower(s.r.Addr) {
		addr = ""
	}
	s.members = append(s.members, qmgr.Member{Addr: addr, State: state, Status: st})
}

// sent records a delivery: "delivered to mailbox" (local(8)'s words),
// or under verification what would be done, "delivers to mailbox".
func (s *state) sent(addr, text string) {
	if s.d.Verify {
		if rest, ok := strings.CutPrefix(text, "delivered to "); ok {
			text = "delivers to " + rest
		}
	}
	s.result(addr, outcome.Sent, outcome.Status{DSN: "2.0.0", Text: text})
}

func (s *state) fail(addr string, err result) {
	st, state := outcome.Status{DSN: err.DSN, Text: err.Text}, outcome.Bounced
	if st.Temporary() {
		state = outcome.Deferred
	}
	s.result(addr, state, st)
}

// deliver delivers one local address: the recipient, or a member of an
// alias or .forward expansion. parent is the name whose expansion this
// is: a name in its own expansion skips aliases and .forward and goes to
// its mailbox.
func (s *state) deliver(addr, parent string, depth int) {
	a, p := s.a, s.a.p
	if depth > maxDepth {
		s.fail(addr, failed("5.4.6", "mail forwarding loop for "+addr))
		return
	}
	if looped, err := s.deliveredTo(addr); err != nil {
		s.fail(addr, failed("4.3.0", "cannot read the message: "+err.Error()))
		return
	} else if looped {
		s.fail(addr, failed("5.4.6", "mail forwarding loop for "+addr))
		return
	}
	local, domain := maps.SplitAddress(addr)
	name, ext, _ := maps.SplitExtension(local, p.RecipientDelimiter)

	// Aliases, unless this is the name expanding to itself.
	if parent != name && !s.seen["alias:"+name] {
		value, found, owner, err := s.alias(local, name)
		if err != nil {
			s.fail(addr, failed("4.3.0", "alias database unavailable: "+err.Error()))
			return
		}
		if found {
			s.seen["alias:"+name] = true
			s.expand(addr, name, value, depth, &privs{user: owner, class: "alias"})
			return
		}
	}
	u, ok, err := a.users.Lookup(name)
	if err != nil {
		s.fail(addr, failed("4.3.0", "user lookup problem: "+err.Error()))
		return
	}
	if !ok {
		s.unknown(addr, name, local, domain)
		return
	}
	if u.UID == 0 {
		// Nothing runs as root here, and root's mail is better read
		// by a person: Postfix's advice is an alias.
		s.fail(addr, failed("4.3.5", fmt.Sprintf("mail for %s is not delivered to a mailbox owned by root: alias %s to a real user in alias_maps", name, name)))
		return
	}
	// .forward, once per user in an expansion.
	if parent != name && !s.seen["forward:"+name] && len(p.ForwardPath) > 0 {
		s.seen["forward:"+name] = true
		text, found, res := s.forwardFile(u, name, ext, local, domain)
		if res.DSN != "" {
			s.fail(addr, res)
			return
		}
		if found {
			s.expand(addr, name, text, depth, &privs{user: u, class: "forward"})
			return
		}
	}
	s.mailbox(addr, u, ext, local, domain)
}

// alias looks a local part up (with, then without its extension) and
// says who owns the table, for commands and files.
func (s *state) alias(local, name string) (string, bool, *User, error) {
	for _, m := range s.a.aliases {
		for _, key := range []string{local, name} {
			v, ok, err := m.Lookup(key)
			if err != nil {
				return "", false, nil, err
			}
			if ok {
				return v, true, s.a.tableOwner(m), nil
			}
		}
	}
	return "", false, nil, nil
}

// tableOwner is who alias commands and files run as: the owner of the
// table's file, or default_privs when that is root or unknown.
func (a *Agent) tableOwner(m *maps.Map) *User {
	path := m.Path()
	if path != "" {
		if st, err := os.Stat(path); err == nil {
			uid := int(st.Sys().(*syscall.Stat_t).Uid)
			if uid != 0 {
				if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
					gid, _ := strconv.Atoi(u.Gid)
					return &User{Name: u.Username, UID: uid, GID: gid, Home: u.HomeDir, Shell: "/bin/sh"}
				}
			}
		}
	}
	return a.defaultPrivs()
}

func (a *Agent) defaultPrivs() *User {
	if u, ok, err := a.users.Lookup(a.p.DefaultPrivs); err == nil && ok {
		return u
	}
	if u, ok, _ := (SystemUsers{}).Lookup(a.p.DefaultPrivs); ok {
		return u
	}
	return &User{Name: a.p.DefaultPrivs, UID: 65534, GID: 65534, Home: "/", Shell: "/bin/sh"}
}

// expand delivers the items of an alias or .forward value.
func (s *state) expand(addr, name, value string, depth int, via *privs) {
	var forward []string
	for _, item := range splitItems(value) {
		switch {
		case strings.HasPrefix(item, "|"):
			s.command(addr, strings.TrimSpace(item[1:]), via)
		case strings.HasPrefix(item, "/"):
			s.file(addr, item, via)
		case strings.HasPrefix(strings.ToLower(item), ":include:"):
			s.include(addr, name, strings.TrimSpace(item[len(":include:"):]), depth, via)
		case strings.HasPrefix(item, "\\"):
			// \user: that user's mailbox, no aliases, no .forward.
			target := strings.ToLower(item[1:])
			if !strings.Contains(target, "@") {
				target += "@" + s.a.p.Myorigin
			}
			tl, _ := maps.SplitAddress(target)
			tn, _, _ := maps.SplitExtension(tl, s.a.p.RecipientDelimiter)
			s.deliver(target, tn, depth+1)
		default:
			target := strings.ToLower(item)
			if !strings.Contains(target, "@") {
				target += "@" + s.a.p.Myorigin
			}
			tl, _ := maps.SplitAddress(target)
			if s.a.o.IsLocal(target) && (tl == name || strings.HasPrefix(tl, name+s.a.p.RecipientDelimiter) && s.a.p.RecipientDelimiter != "") {
				// The name itself: its mailbox.
				s.deliver(target, name, depth+1)
			} else if s.a.o.IsLocal(target) {
				if !s.seen["addr:"+target] {
					s.seen["addr:"+target] = true
					s.deliver(target, "", depth+1)
				}
			} else {
				forward = append(forward, item)
			}
		}
	}
	if len(forward) > 0 {
		s.forward(addr, name, forward)
	}
}

// splitItems splits an alias value at commas outside double quotes, and
// drops the quotes around "|command with spaces" items.
func splitItems(v string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	flush := func() {
		item := strings.TrimSpace(cur.String())
		cur.Reset()
		if len(item) >= 2 && item[0] == '"' && item[len(item)-1] == '"' {
			item = strings.TrimSpace(item[1 : len(item)-1])
		}
		if item != "" {
			out = append(out, item)
		}
	}
	for _, c := range v {
		switch {
		case c == '"':
			quoted = !quoted
			cur.WriteRune(c)
		case (c == ',' || c == '\n') && !quoted:
			flush()
		default:
			cur.WriteRune(c)
		}
	}
	flush()
	return out
}

func allowed(list []string, class string) bool {
	for _, c := range list {
		if strings.EqualFold(strings.TrimSpace(c), class) {
			return true
		}
	}
	return false
}

// command delivers to |command.
func (s *state) command(addr, cmd string, via *privs) {
	p := s.a.p
	if !allowed(p.AllowMailToCommands, via.class) {
		s.fail(addr, failed("5.7.1", "mail to command is restricted"))
		return
	}
	u := via.user
	local, domain := maps.SplitAddress(addr)
	_, ext, _ := maps.SplitExtension(local, p.RecipientDelimiter)
	j := &job{Kind: "command", Command: cmd, Shell: p.LocalCommandShell, Dir: u.Home,
		Env: s.commandEnv(u, local, ext, domain), FromLine: true, TimeLimit: p.CommandTimeLimit,
		Envelope: s.envelope(addr, allowed(p.PrependDeliveredHeader, "command"))}
	if res := s.a.run(s.d, u, j, nil); res.DSN != "" {
		s.fail(addr, res)
		return
	}
	s.sent(addr, "delivered to command: "+cmd)
}

// file appends to /file (mbox format).
func (s *state) file(addr, path string, via *privs) {
	p := s.a.p
	if !allowed(p.AllowMailToFiles, via.class) {
		s.fail(addr, failed("5.7.1", "mail to file is restricted"))
		return
	}
	if strings.HasSuffix(path, "/") {
		j := &job{Kind: "maildir", Path: path, Hostname: p.Myhostname, Envelope: s.envelope(addr, allowed(p.PrependDeliveredHeader, "file"))}
		j.Envelope.Limit = int64(p.MailboxSizeLimit)
		if res := s.a.run(s.d, via.user, j, nil); res.DSN != "" {
			s.fail(addr, res)
			return
		}
		s.sent(addr, "delivered to maildir")
		return
	}
	j := &job{Kind: "mbox", Path: path, Locking: s.a.locking, Owner: -1, Envelope: s.envelope(addr, allowed(p.PrependDeliveredHeader, "file"))}
	j.Envelope.Limit = int64(p.MailboxSizeLimit)
	if res := s.a.run(s.d, via.user, j, nil); res.DSN != "" {
		s.fail(addr, res)
		return
	}
	s.sent(addr, "delivered to file: "+path)
}

// include expands :include:/file, read as the file's owner; its items
// run as that owner too (default_privs for root).
func (s *state) include(addr, name, path string, depth int, via *privs) {
	if !filepath.IsAbs(path) {
		s.fail(addr, failed("5.3.5", fmt.Sprintf(":include:%s is not an absolute path", path)))
		return
	}
	owner := s.a.defaultPrivs()
	if st, err := os.Stat(path); err == nil {
		if uid := int(st.Sys().(*syscall.Stat_t).Uid); uid != 0 {
			if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
				gid, _ := strconv.Atoi(u.Gid)
				owner = &User{Name: u.Username, UID: uid, GID: gid, Home: u.HomeDir, Shell: "/bin/sh"}
			}
		}
	}
	res := s.a.run(s.d, owner, &job{Kind: "read", Path: path}, nil)
	if res.DSN != "" {
		s.fail(addr, failed(res.DSN, fmt.Sprintf("cannot open include file %s: %s", path, res.Text)))
		return
	}
	s.expand(addr, name, res.Data, depth+1, &privs{user: owner, class: "include"})
}

// forwardFile reads the user's .forward (the first of forward_path that
// exists), as the user.
func (s *state) forwardFile(u *User, name, ext, local, domain string) (string, bool, result) {
	p := s.a.p
	for _, pat := range p.ForwardPath {
		path := expandDelivery(pat, map[string]string{
			"home": u.Home, "user": name, "extension": ext, "recipient_delimiter": p.RecipientDelimiter,
			"local": local, "domain": domain, "recipient": s.r.Addr, "mailbox": name, "shell": u.Shell,
		})
		if path == "" || !filepath.IsAbs(path) {
			continue
		}
		if strings.Contains(pat, "${recipient_delimiter}${extension}") && ext == "" && strings.HasSuffix(path, p.RecipientDelimiter) {
			continue
		}
		res := s.a.run(s.d, u, &job{Kind: "read", Path: path}, nil)
		if res.DSN == "5.0.0" {
			continue // no such file
		}
		if res.DSN != "" {
			return "", false, res
		}
		text := stripComments(res.Data)
		if strings.TrimSpace(text) == "" {
			return "", false, result{} // an empty .forward means no forwarding
		}
		return text, true, result{}
	}
	return "", false, result{}
}

func stripComments(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			out = append(out, t)
		}
	}
	return strings.Join(out, ",")
}

// expandDelivery expands $name and ${name} with the delivery attributes
// of forward_path, mailbox_command and luser_relay.
func expandDelivery(s string, vars map[string]string) string {
	return os.Expand(s, func(k string) string { return vars[k] })
}

// mailbox delivers to the user's mailbox.
func (s *state) mailbox(addr string, u *User, ext, local, domain string) {
	p := s.a.p
	if p.MailboxTransport != "" {
		s.fail(addr, failed("4.3.5", "mailbox_transport is not supported by this version of mailsrv"))
		return
	}
	env := s.envelope(addr, true)
	env.Limit = int64(p.MailboxSizeLimit)
	if p.MailboxCommand != "" {
		cmd := expandDelivery(p.MailboxCommand, map[string]string{
			"home": u.Home, "user": u.Name, "extension": ext, "local": local, "domain": domain,
			"recipient": s.r.Addr, "sender": s.d.Sender, "mailbox": u.Name, "shell": u.Shell,
		})
		j := &job{Kind: "command", Command: cmd, Shell: p.LocalCommandShell, Dir: u.Home,
			Env: s.commandEnv(u, local, ext, domain), FromLine: true, TimeLimit: p.CommandTimeLimit, Envelope: env}
		if res := s.a.run(s.d, u, j, nil); res.DSN != "" {
			s.fail(addr, res)
			return
		}
		s.sent(addr, "delivered to command: "+cmd)
		return
	}
	var path string
	var groups []int
	if p.HomeMailbox != "" {
		path = filepath.Join(u.Home, p.HomeMailbox)
		if strings.HasSuffix(p.HomeMailbox, "/") {
			path += "/"
		}
	} else {
		path = filepath.Join(p.MailSpoolDirectory, u.Name)
		// The spool directory is usually group mail, mode 2775: the
		// child gets that group to create the mailbox and its dotlock.
		if st, err := os.Stat(p.MailSpoolDirectory); err == nil {
			// Never the root group: that would be a privilege, not a
			// mail spool's group.
			if gid := int(st.Sys().(*syscall.Stat_t).Gid); gid != 0 {
				groups = append(groups, gid)
			}
		}
	}
	if strings.HasSuffix(path, "/") {
		j := &job{Kind: "maildir", Path: path, Envelope: env, Hostname: p.Myhostname}
		if res := s.a.run(s.d, u, j, groups); res.DSN != "" {
			s.fail(addr, res)
			return
		}
		s.sent(addr, "delivered to maildir")
		return
	}
	owner := -1
	if p.StrictMailboxOwnership {
		owner = u.UID
	}
	j := &job{Kind: "mbox", Path: path, Envelope: env, Locking: s.a.locking, Owner: owner}
	if res := s.a.run(s.d, u, j, groups); res.DSN != "" {
		s.fail(addr, res)
		return
	}
	s.sent(addr, "delivered to mailbox")
}

// unknown handles a local part that is neither an alias nor a user.
func (s *state) unknown(addr, name, local, domain string) {
	p := s.a.p
	if p.FallbackTransport != "" {
		s.fail(addr, failed("4.3.5", "fallback_transport is not supported by this version of mailsrv"))
		return
	}
	if p.LuserRelay != "" {
		target := expandDelivery(p.LuserRelay, map[string]string{"user": name, "local": local, "domain": domain, "recipient": addr, "extension": ""})
		s.forward(addr, name, []string{target})
		return
	}
	s.fail(addr, failed("5.1.1", fmt.Sprintf("unknown user: %q", name)))
}

// forward resubmits the message to addresses through cleanup, as a new
// message with its own queue ID ("forwarded as ID"). The sender of a
// list's copies is owner-NAME when that alias exists.
func (s *state) forward(addr, name string, targets []string) {
	p, d := s.a.p, s.d
	if d.Verify {
		for _, t := range targets {
			s.sent(t, "forwards to "+t)
		}
		return
	}
	sender := d.Sender
	if p.OwnerRequestSpecial && sender != "" {
		if _, ok, _, err := s.alias("owner-"+name, "owner-"+name); err == nil && ok {
			sender = "owner-" + name + "@" + p.Myorigin
		}
	}
	var rcpts []queue.Recipient
	for _, t := range targets {
		rcpts = append(rcpts, queue.Recipient{Addr: t, ORCPT: s.r.ORCPT, Notify: s.r.Notify})
	}
	attrs := map[string]string{}
	for k, v := range d.Attrs {
		attrs[k] = v
	}
	msg, err := s.a.o.Forward.Open(cleanup.Envelope{Sender: sender, Recipients: rcpts, Attrs: attrs, Arrival: d.Arrival})
	if err != nil {
		s.fail(addr, failed("4.3.0", "cannot forward: "+err.Error()))
		return
	}
	hdr := ""
	if allowed(p.PrependDeliveredHeader, "forward") {
		hdr = "Delivered-To: " + addr + "\n"
	}
	_, err = io.Copy(msg, io.MultiReader(strings.NewReader(hdr), d.Content()))
	if err == nil {
		err = msg.Finish()
	} else {
		msg.Abort()
	}
	if err != nil {
		s.fail(addr, failed("4.3.0", "cannot forward: "+err.Error()))
		return
	}
	s.sent(addr, "forwarded as "+msg.ID())
}

// envelope is what the prepended headers say for a delivery to addr.
func (s *state) envelope(addr string, deliveredTo bool) mailbox.Envelope {
	orig := s.r.Orig
	if orig == "" {
		orig = s.r.Addr
	}
	return mailbox.Envelope{Sender: s.d.Sender, Recipient: addr, Original: orig, DeliveredTo: deliveredTo}
}

// commandEnv is the environment of a command (local(8)'s list).
func (s *state) commandEnv(u *User, local, ext, domain string) []string {
	env := []string{
		"HOME=" + u.Home, "USER=" + u.Name, "LOGNAME=" + u.Name, "SHELL=" + u.Shell,
		"LOCAL=" + local, "EXTENSION=" + ext, "DOMAIN=" + domain,
		"RECIPIENT=" + s.r.Addr, "ORIGINAL_RECIPIENT=" + s.r.Orig, "SENDER=" + s.d.Sender,
		"PATH=/usr/bin:/bin",
	}
	for _, name := range s.a.p.ExportEnvironment {
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	for _, k := range []string{"client_address", "client_name", "client_helo", "client_protocol"} {
		if v := s.d.Attrs[k]; v != "" {
			env = append(env, strings.ToUpper(k)+"="+v)
		}
	}
	if v := s.d.Attrs["envelope_id"]; v != "" {
		env = append(env, "ENVID="+v)
	}
	return env
}

// deliveredTo reports whether the message already carries a Delivered-To
// for addr (it has been here before).
func (s *state) deliveredTo(addr string) (bool, error) {
	if s.content == nil {
		var buf bytes.Buffer
		_, err := io.Copy(&buf, io.LimitReader(s.d.Content(), int64(s.a.p.HeaderSizeLimit)+4096))
		if err != nil {
			return false, err
		}
		s.content = buf.Bytes()
		if s.content == nil {
			s.content = []byte{}
		}
	}
	return mailbox.HasDeliveredTo(bytes.NewReader(s.content), addr)
}

// run runs a job in a child process as u, with the message on stdin.
// Under verification (sendmail -bv) only reads run: a mailbox, file or
// command is then taken as deliverable without being touched.
func (a *Agent) run(d *qmgr.Delivery, u *User, j *job, groups []int) result {
	if d.Verify && j.Kind != "read" {
		return result{}
	}
	b, err := json.Marshal(j)
	if err != nil {
		return failed("4.3.0", err.Error())
	}
	var out bytes.Buffer
	gids := append([]int{u.GID}, groups...)
	cmd := &spawn.Cmd{
		Path: a.o.Self, Args: []string{"mailsrv-local"},
		Env: []string{childEnv + "=1", jobEnv + "=" + string(b), "PATH=/usr/bin:/bin"},
		Dir: "/", UID: u.UID, GID: u.GID, Groups: slices.Compact(gids),
		Stdout: &out, Timeout: a.p.CommandTimeLimit + a.p.DeliverLockDelay*2,
	}
	if j.Kind != "read" {
		cmd.Stdin = d.Content()
	}
	res, err := spawn.Run(d.Ctx, cmd)
	if err != nil {
		return failed("4.3.0", fmt.Sprintf("cannot deliver as user %s: %v", u.Name, err))
	}
	var r result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		if res.TimedOut {
			return failed("4.3.0", "local delivery time limit exceeded")
		}
		return failed("4.3.0", fmt.Sprintf("local delivery child failed (status %d): %s", res.Status, res.Output))
	}
	return r
}
