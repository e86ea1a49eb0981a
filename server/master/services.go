package master

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"

	"mailsrv/config"
	"mailsrv/maillog"
	"mailsrv/queue/qmgr"
	"mailsrv/server/pickup"
)

func listenKey(s *config.Service) string { return s.Type + " " + s.Listen }

// hasSocket reports whether a service listens on a socket of its own.
func hasSocket(s *config.Service) bool {
	return (s.Type == "inet" || s.Type == "unix") && s.Listen != ""
}

// openListeners binds every socket cfg needs that is not open yet. On
// error, the sockets it opened are closed again.
func (d *Daemon) openListeners(cfg *config.Config) error {
	var opened []string
	open := func(key string, listen func() (net.Listener, error)) error {
		if _, ok := d.listeners[key]; ok {
			return nil
		}
		ln, err := listen()
		if err != nil {
			for _, k := range opened {
				d.listeners[k].close()
				delete(d.listeners, k)
			}
			return err
		}
		d.listeners[key] = newSharedListener(ln)
		opened = append(opened, key)
		return nil
	}
	for _, s := range cfg.Services {
		if !hasSocket(s) || !Implemented(s.Command) {
			continue
		}
		if err := open(listenKey(s), func() (net.Listener, error) { return listen(s.Type, s.Listen) }); err != nil {
			return fmt.Errorf("service %s: bind %s: %w", s.Name, s.Listen, err)
		}
	}
	// The submission socket too (pickup's): a sendmail run right after
	// the start is reported must reach the daemon, not fall back to
	// maildrop.
	if err := open(submitKey(cfg), func() (net.Listener, error) { return pickup.Listen(cfg.Params.QueueDirectory) }); err != nil {
		return fmt.Errorf("submission socket: %w", err)
	}
	return nil
}

// listenerFor is the shared socket the instances of a service take: its
// own (s is nil for a built-in role), or for pickup the submission
// socket; nil for none.
func (d *Daemon) listenerFor(cfg *config.Config, s *config.Service, command string) *sharedListener {
	switch {
	case s != nil && hasSocket(s):
		return d.listeners[listenKey(s)]
	case command == "pickup":
		return d.listeners[submitKey(cfg)]
	}
	return nil
}

// submitKey is the submission socket's key among the listeners.
func submitKey(cfg *config.Config) string {
	return "unix " + filepath.Join(cfg.Params.QueueDirectory, pickup.SubmitSocket)
}

// closeListeners closes sockets cfg does not use (all when cfg is nil).
func (d *Daemon) closeListeners(cfg *config.Config) {
	keep := map[string]bool{}
	if cfg != nil {
		keep[submitKey(cfg)] = true
		for _, s := range cfg.Services {
			if hasSocket(s) && Implemented(s.Command) {
				keep[listenKey(s)] = true
			}
		}
	}
	for k, sl := range d.listeners {
		if !keep[k] {
			sl.close()
			delete(d.listeners, k)
		}
	}
}

// startServices (re)starts every service of cfg under the supervisor.
func (d *Daemon) startServices(cfg *config.Config) map[string]bool {
	started := map[string]bool{}
	for _, s := range cfg.Services {
		role, ok := roles[s.Command]
		if !ok {
			d.mlog.Warnf("service %s: command %s is not part of this version of mailsrv; the service is not started", s.Name, s.Command)
			continue
		}
		slot := slotName(s.Name, s.Command)
		started[slot] = true
		d.sup.Start(d.ctx, slot, d.factory(cfg, s, s.Name, s.Command, role, d.listenerFor(cfg, s, s.Command)))
	}
	for _, b := range builtinRoles {
		if !replaced(cfg, b.name, b.command) {
			slot := slotName(b.name, b.command)
			started[slot] = true
			d.sup.Start(d.ctx, slot, d.factory(cfg, nil, b.name, b.command, roles[b.command], d.listenerFor(cfg, nil, b.command)))
		}
	}
	return started
}

// slotName is a service's name under the supervisor. As in master.cf a
// service is its name and type: smtp/inet (smtpd) and smtp/unix (the
// client) are two services; transports are the unix ones.
func slotName(name, command string) string {
	if deliveryCommands[command] {
		return name + "/unix"
	}
	return name
}

// replaced reports whether cfg has its own service for a built-in one: a
// transport is replaced by a delivery service of that name, anything else
// by any service of that name.
func replaced(cfg *config.Config, name, command string) bool {
	for _, s := range cfg.Services {
		if s.Name == name && deliveryCommands[s.Command] == deliveryCommands[command] {
			return true
		}
	}
	return false
}

func (d *Daemon) factory(cfg *config.Config, s *config.Service, name, command string, role Role, sl *sharedListener) Factory {
	params := cfg.Params
	limit := params.DefaultProcessLimit
	if s != nil {
		params, limit = s.Params, s.Limit()
	}
	wake := d.wakeChan(name)
	var deliveries chan *qmgr.Delivery
	if deliveryCommands[command] {
		deliveries = d.deliveryChan(name, limit)
	}
	var transports map[string]qmgr.Transport
	if command == "qmgr" {
		transports = d.transports(cfg)
	}
	ff := d.fastFlush
	return func() (Service, error) {
		env := &Env{Config: cfg, Service: s, Params: params, Stopping: d.ctx, Hard: d.hard, Wakeup: wake,
			NewMail: func() { d.notify("qmgr") },
			Flush: func() error {
				if r := d.flush(Request{Cmd: "flush"}); r.Error != "" {
					return errors.New(r.Error)
				}
				return nil
			},
			FastFlush:  ff,
			FlushSite:  siteFlusher{d}.SendSite,
			LogAs:      func(role string) *maillog.Logger { return d.log.Role(params.SyslogName, role) },
			Log:        d.log.Role(params.SyslogName, command),
			Name:       name,
			Limit:      limit,
			Deliveries: deliveries,
			Transports: transports,
			Users:      d.opts.users,
			LocalExec:  d.opts.localExec,
		}
		if sl != nil {
			env.Listener = sl.handle()
		}
		svc, err := role(env)
		if err != nil {
			if env.Listener != nil {
				env.Listener.Close()
			}
			return nil, err
		}
		if env.Listener == nil {
			return svc, nil
		}
		return &listenerService{svc: svc, ln: env.Listener}, nil
	}
}

// listenerService is an instance with a handle on a shared socket: the
// handle stops taking connections when the instance is retired (at once,
// so that they go to its successor) or ends.
type listenerService struct {
	svc Service
	ln  net.Listener
}

func (l *listenerService) Serve(ctx context.Context) error {
	defer l.ln.Close()
	return l.svc.Serve(ctx)
}

func (l *listenerService) Retire() { l.ln.Close() }

// deliveryChan returns a transport's request channel; called with d.mu
// held. Its buffer is the pool size: qmgr never has more requests out.
func (d *Daemon) deliveryChan(name string, limit int) chan *qmgr.Delivery {
	c, ok := d.deliveries[name]
	if !ok {
		c = make(chan *qmgr.Delivery, max(limit, 1))
		d.deliveries[name] = c
	}
	return c
}

// transports lists the delivery services of cfg for qmgr: the
// [[service]] entries with a delivery command this build runs, and the
// built-in ones no entry replaces. Called with d.mu held.
func (d *Daemon) transports(cfg *config.Config) map[string]qmgr.Transport {
	out := map[string]qmgr.Transport{}
	for _, s := range cfg.Services {
		if deliveryCommands[s.Command] && Implemented(s.Command) {
			out[s.Name] = qmgr.Transport{C: d.deliveryChan(s.Name, s.Limit()), Limit: s.Limit()}
		}
	}
	for _, b := range builtinRoles {
		if deliveryCommands[b.command] && !replaced(cfg, b.name, b.command) {
			n := cfg.Params.DefaultProcessLimit
			out[b.name] = qmgr.Transport{C: d.deliveryChan(b.name, n), Limit: n}
		}
	}
	return out
}

// wakeChan returns a service's wakeup channel; called with d.mu held.
func (d *Daemon) wakeChan(name string) chan struct{} {
	c, ok := d.wakeups[name]
	if !ok {
		c = make(chan struct{}, 1)
		d.wakeups[name] = c
	}
	return c
}

// notify wakes the named services (all of them when none is named).
func (d *Daemon) notify(names ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, c := range d.wakeups {
		if len(names) > 0 && !slices.Contains(names, name) {
			continue
		}
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// wakeup tells every service that the queue changed.
func (d *Daemon) wakeup() { d.notify() }
