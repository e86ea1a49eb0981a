package master

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"

	"mailsrv/config"
	"mailsrv/maillog"
	"mailsrv/queue/qmgr"
)

// CheckServices builds every service a configuration runs, as the master
// would start it, and throws the instances away without serving: a
// setting that a role refuses (an unknown restriction, a table that does
// not open, a certificate that does not load, a TLS level this version
// does not implement) is found before any port is opened, so that
// postfix check reports it, start refuses to run, and reload keeps the
// configuration in force. Each problem names the file, line and value.
func CheckServices(cfg *config.Config) []string {
	log := maillog.New(io.Discard, "check")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	transports := map[string]qmgr.Transport{}
	for _, s := range cfg.Services {
		if deliveryCommands[s.Command] && Implemented(s.Command) {
			transports[s.Name] = qmgr.Transport{C: make(chan *qmgr.Delivery), Limit: s.Limit()}
		}
	}
	for _, b := range builtinRoles {
		if deliveryCommands[b.command] && !replaced(cfg, b.name, b.command) {
			transports[b.name] = qmgr.Transport{C: make(chan *qmgr.Delivery), Limit: 1}
		}
	}
	var out []string
	build := func(s *config.Service, name, command string) {
		role, ok := roles[command]
		if !ok {
			return // reported as a warning: the service does not run
		}
		params := cfg.Params
		if s != nil {
			params = s.Params
		}
		env := &Env{Config: cfg, Service: s, Params: params, Stopping: ctx, Hard: ctx,
			Wakeup: make(chan struct{}), NewMail: func() {}, Flush: func() error { return nil },
			LogAs: func(r string) *maillog.Logger { return log.Role(params.SyslogName, r) },
			Log:   log.Role(params.SyslogName, command), Name: name, Limit: 1}
		if deliveryCommands[command] {
			env.Deliveries = make(chan *qmgr.Delivery)
		}
		if command == "qmgr" {
			env.Transports = transports
		}
		if s != nil && hasSocket(s) || command == "pickup" {
			env.Listener = closedListener{}
		}
		if _, err := role(env); err != nil {
			out = append(out, describe(cfg, s, slotName(name, command), err))
		}
	}
	for _, s := range cfg.Services {
		build(s, s.Name, s.Command)
	}
	for _, b := range builtinRoles {
		if !replaced(cfg, b.name, b.command) {
			build(nil, b.name, b.command)
		}
	}
	return out
}

// describe places a service's error: at the parameter it names first
// (role errors start with the parameter, "smtpd_recipient_restrictions:
// ..."), else at the service's table.
func describe(cfg *config.Config, s *config.Service, name string, err error) string {
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	param := msg
	if i := strings.IndexAny(param, ": ="); i >= 0 {
		param = param[:i]
	}
	where := cfg.File
	switch {
	case isParam(param):
		where = cfg.Where(param, s)
	case s != nil:
		where = fmt.Sprintf("%s:%d", cfg.File, s.Line)
	}
	return fmt.Sprintf("%s: service %s: %s", where, name, msg)
}

// closedListener stands in for a service's socket while checking.
type closedListener struct{}

func (closedListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (closedListener) Close() error              { return nil }
func (closedListener) Addr() net.Addr            { return &net.TCPAddr{} }

func isParam(name string) bool {
	_, ok := config.Lookup(name)
	return ok
}
