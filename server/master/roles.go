package master

import (
	"context"
	"errors"
	"net"

	"mailsrv/config"
	"mailsrv/delivery/bounce"
	"mailsrv/delivery/discard"
	"mailsrv/delivery/lmtp"
	"mailsrv/delivery/local"
	"mailsrv/delivery/pipe"
	"mailsrv/delivery/smtp"
	"mailsrv/delivery/virtual"
	"mailsrv/maillog"
	"mailsrv/queue"
	"mailsrv/queue/flush"
	"mailsrv/queue/qmgr"
	"mailsrv/rewrite"
	"mailsrv/rewrite/cleanup"
	"mailsrv/server/pickup"
	"mailsrv/server/smtpd"
)

// Env is what the master hands a role when it starts an instance of it.
type Env struct {
	Config  *config.Config
	Service *config.Service // nil for a built-in role no [[service]] lists
	Params  *config.Params  // the service's effective parameters
	Log     *maillog.Logger // tagged syslog_name/command
	// Listener is set for services with a socket. It stays open across
	// reloads and restarts; the instance must stop accepting and close it
	// when its context ends.
	Listener net.Listener
	// Stopping is cancelled when the daemon stops, not on a reload (which
	// ends only the replaced instance's own context).
	Stopping context.Context
	// Hard is cancelled when the stop deadline (mailsrv_stop_timeout) has
	// passed: work still in progress must then be abandoned (safely: the
	// queue keeps everything not yet done).
	Hard context.Context
	// Wakeup receives a value when the service should look at the queue
	// now (postsuper, postqueue -f, sendmail). The master owns it, so it
	// survives a restart of the service.
	Wakeup <-chan struct{}
	// NewMail tells qmgr that cleanup queued a message.
	NewMail func()
	// Flush releases the deferred queue and wakes qmgr (postqueue -f,
	// sendmail -q).
	Flush func() error
	// FastFlush is the flush service qmgr logs deferred mail to;
	// FlushSite releases one site's mail through it and wakes qmgr
	// (ETRN).
	FastFlush *flush.Service
	FlushSite func(site string) (int, error)
	// LogAs returns a logger for another role run on this service's
	// behalf (pickup's cleanup logs as mailsrv/cleanup).
	LogAs func(role string) *maillog.Logger
	// Name is the service name (for a transport, the transport name);
	// Limit its process_limit.
	Name  string
	Limit int
	// Deliveries is a delivery agent's request channel (owned by the
	// master, so it survives the agent's restart).
	Deliveries <-chan *qmgr.Delivery
	// Transports are the delivery services qmgr may use.
	Transports map[string]qmgr.Transport
	// Users is local(8)'s passwd (nil = the system's) and LocalExec the
	// executable of its children ("" = this one); tests set them.
	Users     local.Users
	LocalExec string
}

// Role builds a service instance from its environment.
type Role func(env *Env) (Service, error)

// roles maps a [[service]] command to its implementation. Roles are wired
// here, in the master, so that they need not import it (the imports run one
// way: roles below, master above). A command that config accepts but is
// not listed here is reported at start and by postfix check.
var roles = map[string]Role{
	"pickup":  newPickup,
	"smtpd":   newSmtpd,
	"qmgr":    newQmgr,
	"virtual": agentRole(newVirtual),
	"discard": agentRole(func(*Env) (qmgr.Agent, error) { return discard.Discard, nil }),
	"error":   agentRole(newError),
	"local":   agentRole(newLocal),
	"pipe":    agentRole(newPipe),
	"lmtp":    agentRole(func(env *Env) (qmgr.Agent, error) { return lmtp.New(env.Params), nil }),
	"smtp":    agentRole(newSMTP),
}

// deliveryCommands are the commands that are transports: qmgr sends them
// deliveries.
var deliveryCommands = map[string]bool{
	"local": true, "virtual": true, "pipe": true, "lmtp": true,
	"discard": true, "error": true, "smtp": true,
}

// builtinRoles run without a [[service]] entry, as the stock master.cf
// would have them; an entry with the same name replaces one.
var builtinRoles = []struct{ name, command string }{
	{"pickup", "pickup"},
	{"qmgr", "qmgr"},
	{"local", "local"},
	{"virtual", "virtual"},
	{"lmtp", "lmtp"},
	{"smtp", "smtp"},
	{"relay", "smtp"},
	{"discard", "discard"},
	{"error", "error"},
	{"retry", "error"},
}

// newQmgr is the queue manager, with trivial-rewrite's resolver and the
// bounce service.
func newQmgr(env *Env) (Service, error) {
	rw, err := rewrite.New(env.Params)
	if err != nil {
		return nil, err
	}
	q := queue.FromConfig(env.Params)
	notices, err := bounce.New(env.Params, cleanup.New(env.Params, q, rw, env.LogAs("cleanup"), env.NewMail), env.LogAs("bounce"))
	if err != nil {
		return nil, err
	}
	o := qmgr.Options{
		Params: env.Params, Queue: q, Log: env.Log,
		Resolve: func(addr, sender string) (qmgr.Route, error) {
			res, err := rw.Resolve(addr, sender)
			return qmgr.Route{Transport: res.Transport, Nexthop: res.Nexthop, Recipient: res.Recipient,
				Local: res.Class == rewrite.ClassLocal, Error: res.Error}, err
		},
		Transports: env.Transports,
		Notify:     notices,
		Wake:       env.Wakeup,
		Requeued:   env.NewMail,
		Hard:       env.Hard,
	}
	if env.FastFlush != nil {
		o.Flush = env.FastFlush
	}
	m, err := qmgr.New(o)
	if err != nil {
		return nil, err
	}
	return ServiceFunc(m.Run), nil
}

// agentRole makes a delivery agent a service: its worker pool reads the
// transport's channel.
func agentRole(build func(env *Env) (qmgr.Agent, error)) Role {
	return func(env *Env) (Service, error) {
		if env.Deliveries == nil {
			return nil, errors.New("not a transport")
		}
		a, err := build(env)
		if err != nil {
			return nil, err
		}
		return ServiceFunc(func(ctx context.Context) error {
			err := qmgr.ServeAgent(ctx, env.Deliveries, env.Limit, env.Log, a)
			// The smtp client's connection cache.
			if c, ok := a.(interface{ Close() }); ok {
				c.Close()
			}
			return err
		}), nil
	}
}

// newLocal is local(8): forwarded mail goes back through cleanup, and
// trivial-rewrite says which addresses are its own.
func newLocal(env *Env) (qmgr.Agent, error) {
	rw, err := rewrite.New(env.Params)
	if err != nil {
		return nil, err
	}
	q := queue.FromConfig(env.Params)
	return local.New(local.Options{
		Params:  env.Params,
		Users:   env.Users,
		Self:    env.LocalExec,
		Forward: cleanup.New(env.Params, q, rw, env.LogAs("cleanup"), env.NewMail),
		IsLocal: func(addr string) bool {
			res, err := rw.Resolve(addr, "")
			return err == nil && res.Class == rewrite.ClassLocal
		},
	})
}

// newPipe is pipe(8) for a [[service]] with argv, flags and user.
func newPipe(env *Env) (qmgr.Agent, error) {
	if env.Service == nil {
		return nil, errors.New("pipe needs a [[service]] with argv and user")
	}
	return pipe.New(env.Service.Name, env.Params, env.Service.Pipe)
}

// newSMTP is the smtp client (also the relay transport); it refuses mail
// that would come back to one of this host's addresses.
func newSMTP(env *Env) (qmgr.Agent, error) {
	rw, err := rewrite.New(env.Params)
	if err != nil {
		return nil, err
	}
	return smtp.New(env.Params, rw.IsOwnAddress)
}

func newVirtual(env *Env) (qmgr.Agent, error) { return virtual.New(env.Params) }

// newError is error(8); the stock master.cf's retry service runs the
// same program and defers instead.
func newError(env *Env) (qmgr.Agent, error) {
	if env.Name == "retry" {
		return discard.Retry, nil
	}
	return discard.Error, nil
}

func newPickup(env *Env) (Service, error) {
	rw, err := rewrite.New(env.Params)
	if err != nil {
		return nil, err
	}
	q := queue.FromConfig(env.Params)
	c := cleanup.New(env.Params, q, rw, env.LogAs("cleanup"), env.NewMail)
	pk := &pickup.Pickup{
		P:       env.Params,
		Q:       q,
		Cleanup: c,
		Log:     env.Log,
		Wake:    env.Wakeup,
	}
	sub := &pickup.Submitter{P: env.Params, Cleanup: c, Log: env.Log, Flush: env.Flush}
	// pickup also serves the submission socket (the master opens it):
	// both are the way local mail comes in.
	return ServiceFunc(func(ctx context.Context) error {
		l := env.Listener
		if l == nil {
			return errors.New("no submission socket")
		}
		errc := make(chan error, 1)
		go func() { errc <- sub.Serve(ctx, l) }()
		err = pk.Serve(ctx)
		l.Close()
		if serr := <-errc; err == nil {
			err = serr
		}
		return err
	}), nil
}

func newSmtpd(env *Env) (Service, error) {
	if env.Listener == nil || env.Service == nil {
		return nil, errors.New("smtpd needs a [[service]] with a listening socket (type inet or unix)")
	}
	rw, err := rewrite.New(env.Params)
	if err != nil {
		return nil, err
	}
	q := queue.FromConfig(env.Params)
	srv, err := smtpd.New(smtpd.Options{
		Params:  env.Params,
		Service: env.Service.Name,
		Log:     env.Log,
		Rewrite: rw,
		Queue:   smtpd.CleanupQueue{C: cleanup.New(env.Params, q, rw, env.LogAs("cleanup"), env.NewMail)},
		Limit:   env.Service.Limit(),
		Flush:   env.FlushSite,
	})
	if err != nil {
		return nil, err
	}
	return ServiceFunc(func(ctx context.Context) error {
		return srv.Serve(ctx, env.Stopping, env.Hard, env.Listener)
	}), nil
}

// Implemented reports whether this build runs a command.
func Implemented(command string) bool {
	_, ok := roles[command]
	return ok
}
