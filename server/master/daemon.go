package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"mailsrv/config"
	"mailsrv/delivery/local"
	"mailsrv/delivery/spawn"
	"mailsrv/maillog"
	"mailsrv/queue"
	"mailsrv/queue/flush"
	"mailsrv/queue/qmgr"
	"mailsrv/rewrite"
	"mailsrv/server/pickup"
)

// Options control one run of the daemon.
type Options struct {
	ConfigFile string
	Verbose    bool      // debug detail to Debug (not to the mail log)
	Debug      io.Writer // where -v output goes (standard error)
	// ReadyFD, when non-nil, is told "READY" once the daemon serves; this
	// is how `postfix start` learns that its background child came up.
	ReadyFD *os.File

	// keepPrivileges skips the switch to mail_owner (in-process tests run
	// as root but must not change the test binary's uid).
	keepPrivileges bool
	// users replaces passwd for local(8), localExec the executable of
	// its children (tests).
	users     local.Users
	localExec string
}

// Daemon is the running master: it owns the configuration, the listening
// sockets, the supervisor and the control socket.
type Daemon struct {
	opts Options
	log  *maillog.Log
	mlog *maillog.Logger
	sup  *Supervisor

	ctx    context.Context // cancelled when stopping
	cancel context.CancelFunc
	hard   context.Context // cancelled when the stop deadline passes
	hardC  context.CancelFunc

	mu        sync.Mutex // guards cfg, listeners and reloads
	cfg       *config.Config
	listeners map[string]*sharedListener // "type addr" -> socket
	owner     queue.Owner

	stopReq chan string
	// wakeups holds each service's wakeup channel, by service name;
	// buffered 1 so a burst of changes is one wakeup. Guarded by mu.
	wakeups map[string]chan struct{}
	// deliveries holds each transport's request channel, by service
	// name, so that qmgr's requests outlive a restart of the agent.
	// Guarded by mu.
	deliveries map[string]chan *qmgr.Delivery
	lock       *os.File // the locked pid file
	stopHelper func()   // ends the privileged helper (nil = none)
	// fastFlush is the flush service of the configuration in force
	// (replaced on reload). Guarded by mu.
	fastFlush *flush.Service
	ctl       *controlServer
}

// PIDFile is where the running master records its pid; the file is also
// locked for as long as the master runs.
func PIDFile(queueDir string) string { return filepath.Join(queueDir, "pid", "master.pid") }

// Run starts the daemon in the foreground and returns when it has stopped.
// Errors before it serves (bad config, port in use, already running) are
// returned; afterwards it logs.
func Run(opts Options) error {
	cfg, err := config.Load(opts.ConfigFile)
	if err != nil {
		return err
	}
	d := &Daemon{opts: opts, cfg: cfg, listeners: map[string]*sharedListener{}, stopReq: make(chan string, 1), wakeups: map[string]chan struct{}{}, deliveries: map[string]chan *qmgr.Delivery{}}
	p := cfg.Params
	d.log, err = maillog.Open(p.MaillogFile, p.SyslogFacility, p.Myhostname)
	if err != nil {
		return err
	}
	defer d.log.Close()
	if opts.Verbose {
		d.log.SetDebug(opts.Debug)
	}
	d.mlog = d.log.Role(p.SyslogName, "master")
	if err := d.start(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			d.mlog.Fatalf("%s", line)
		}
		return err
	}
	return d.serve()
}

// start does everything up to serving; on error nothing is left running.
func (d *Daemon) start() (err error) {
	cfg := d.cfg
	p := cfg.Params
	for _, w := range cfg.Warnings {
		d.mlog.Warnf("%s", w)
	}
	if probs := CheckServices(cfg); len(probs) > 0 {
		return fmt.Errorf("%s", strings.Join(probs, "\n"))
	}
	if d.fastFlush, err = newFastFlush(p); err != nil {
		return err
	}
	d.owner = queue.Owner{UID: -1, GID: -1, SetgidGID: -1}
	if !d.opts.keepPrivileges {
		if d.owner, err = lookupOwner(p); err != nil {
			return err
		}
	}
	if f := p.MaillogFile; d.owner.UID >= 0 && f != "" && !strings.HasPrefix(f, "/dev/") {
		// The daemon reopens its log as mail_owner after logrotate.
		_ = os.Chown(f, d.owner.UID, d.owner.GID)
	}
	if err := queue.Create(p.QueueDirectory, d.owner); err != nil {
		return fmt.Errorf("queue_directory %s: %w", p.QueueDirectory, err)
	}
	if d.owner.UID >= 0 {
		if err := queue.Reachable(p.QueueDirectory, d.owner.UID, d.owner.GID); err != nil {
			return fmt.Errorf("mail_owner %s cannot reach queue_directory %s: %v (make it searchable, e.g. chmod o+x, or move the queue)", p.MailOwner, p.QueueDirectory, err)
		}
	}
	if err := d.lockPID(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			d.closeListeners(nil)
			if d.stopHelper != nil {
				d.stopHelper()
				d.stopHelper = nil
			}
			d.lock.Close()
		}
	}()
	if err := d.openListeners(cfg); err != nil {
		return err
	}
	if os.Geteuid() == 0 && !d.opts.keepPrivileges && d.owner.UID > 0 {
		// local(8) and pipe(8) start programs as other users: that
		// takes root, which this process is about to give up.
		stop, err := spawn.StartHelper(spawn.HelperSocket(p.QueueDirectory), d.owner.UID, d.owner.GID)
		if err != nil {
			return fmt.Errorf("start the privileged helper: %w", err)
		}
		d.stopHelper = stop
	}
	if err := d.dropPrivileges(); err != nil {
		return err
	}
	// Only one master runs on a queue (the lock above), so nothing else
	// moves files in active now: put them back for scheduling. This runs
	// as mail_owner: a directory recovery creates (a hash directory of
	// deferred) must belong to the user that reads it later, or the
	// mail moved there would be stranded. Damaged files in incoming are
	// looked for in the background: reading a large incoming queue must
	// not delay the start (qmgr sets aside a damaged file it meets first
	// by itself).
	q := queue.FromConfig(p)
	if err := q.EnableRecycling(); err != nil {
		return fmt.Errorf("queue recovery: %w", err)
	}
	if err := q.RecoverActive(d.mlog); err != nil {
		return fmt.Errorf("queue recovery: %w", err)
	}
	go func() {
		if _, err := q.CheckIncoming(d.mlog, time.Hour); err != nil {
			d.mlog.Warnf("queue recovery: %v", err)
		}
	}()
	if err := d.writePID(); err != nil {
		return err
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.hard, d.hardC = context.WithCancel(context.Background())
	// Files for cleanup to reuse, made as mail_owner (reuse takes only
	// files of its own user).
	go func() {
		if err := q.FillRecycling(d.ctx); err != nil {
			d.mlog.Warnf("queue files for reuse: %v", err)
		}
	}()
	d.sup = NewSupervisor(d.mlog, p.ServiceThrottleTime)
	// The control socket last: a request may come in at once.
	d.mu.Lock()
	d.startServices(cfg)
	d.mu.Unlock()
	if err := d.startControl(); err != nil {
		d.cancel()
		d.sup.StopAll()
		return err
	}
	d.mlog.Infof("daemon started -- version %s, configuration %s", config.Version, absPath(cfg.File))
	return nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// serve handles signals and control requests until stopped.
func (d *Daemon) serve() error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	// SIGPIPE on the log or a client socket must never kill the daemon.
	signal.Ignore(syscall.SIGPIPE)

	_, _ = daemon.SdNotify(false, daemon.SdNotifyReady)
	if d.opts.ReadyFD != nil {
		// Detach from the terminal of `postfix start` before saying so.
		if null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
			_ = syscall.Dup2(int(null.Fd()), 1)
			_ = syscall.Dup2(int(null.Fd()), 2)
			null.Close()
		}
		fmt.Fprintln(d.opts.ReadyFD, "READY")
		d.opts.ReadyFD.Close()
	}

	var reason string
	for reason == "" {
		select {
		case s := <-sigs:
			switch s {
			case syscall.SIGHUP:
				_ = d.Reload()
			case syscall.SIGUSR1:
				if err := d.log.Reopen(); err != nil {
					d.mlog.Warnf("reopen the mail log: %v", err)
				} else {
					d.mlog.Infof("reopened the mail log")
				}
			default:
				reason = fmt.Sprintf("terminating on signal %d", s.(syscall.Signal))
			}
		case reason = <-d.stopReq:
		}
	}
	d.shutdown(reason)
	return nil
}

// shutdown stops gracefully: stop accepting, let sessions and deliveries in
// progress finish up to mailsrv_stop_timeout, then abandon the rest.
func (d *Daemon) shutdown(reason string) {
	d.mlog.Infof("%s", reason)
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	d.ctl.ln.Close()
	d.mu.Lock()
	d.closeListeners(nil)
	p := d.cfg.Params
	d.mu.Unlock()
	timeout := p.StopTimeout
	d.cancel()
	d.sup.StopAll()
	wctx, cancel := context.WithTimeout(context.Background(), timeout)
	err := d.sup.Wait(wctx)
	cancel()
	if err != nil {
		d.mlog.Warnf("stop deadline of %s passed: %v; abandoning work in progress", timeout, err)
		d.hardC()
		wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = d.sup.Wait(wctx)
		cancel()
	}
	d.hardC()
	if d.stopHelper != nil {
		d.stopHelper()
	}
	os.Remove(ControlSocket(p.QueueDirectory))
	os.Remove(PIDFile(p.QueueDirectory))
	d.mlog.Infof("daemon stopped")
	d.lock.Close()
}

// ProcessAlive reports whether pid exists and has not exited (a zombie
// waiting to be reaped counts as exited).
func ProcessAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// Reload re-reads the configuration and applies it to every service
// without dropping connections. A configuration that does not validate is
// refused and the current one stays in force.
func (d *Daemon) Reload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, _ = daemon.SdNotify(false, daemon.SdNotifyReloading)
	defer daemon.SdNotify(false, daemon.SdNotifyReady)
	cfg, err := config.Load(d.opts.ConfigFile)
	if err == nil {
		err = d.checkReloadable(cfg)
	}
	if err == nil {
		if probs := CheckServices(cfg); len(probs) > 0 {
			err = errors.New(strings.Join(probs, "\n"))
		}
	}
	var ff *flush.Service
	if err == nil {
		ff, err = newFastFlush(cfg.Params)
	}
	if err != nil {
		msg := strings.ReplaceAll(err.Error(), "\n", "; ")
		d.mlog.Warnf("reload refused, keeping the current configuration: %s", msg)
		return fmt.Errorf("reload refused, keeping the current configuration: %s", msg)
	}
	for _, w := range cfg.Warnings {
		d.mlog.Warnf("%s", w)
	}
	if err := d.openListeners(cfg); err != nil {
		d.mlog.Warnf("reload refused, keeping the current configuration: %v", err)
		return fmt.Errorf("reload refused, keeping the current configuration: %w", err)
	}
	if err := d.log.Reopen(); err != nil {
		d.mlog.Warnf("reopen %s: %v", cfg.Params.MaillogFile, err)
	}
	d.cfg, d.fastFlush = cfg, ff
	started := d.startServices(cfg)
	for _, name := range d.sup.Names() {
		if !started[name] {
			d.sup.Stop(name)
		}
	}
	d.closeListeners(cfg)
	d.mlog.Infof("reload -- version %s, configuration %s", config.Version, absPath(cfg.File))
	return nil
}

// checkReloadable refuses changes that only a restart can apply.
func (d *Daemon) checkReloadable(cfg *config.Config) error {
	o, n := d.cfg.Params, cfg.Params
	switch {
	case o.QueueDirectory != n.QueueDirectory:
		return fmt.Errorf("queue_directory changed: restart with postfix stop; postfix start")
	case o.MailOwner != n.MailOwner:
		return fmt.Errorf("mail_owner changed: restart with postfix stop; postfix start")
	case o.MaillogFile != n.MaillogFile:
		return fmt.Errorf("maillog_file changed: restart with postfix stop; postfix start")
	}
	return nil
}

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

// lockPID takes the master lock: the pid file, locked for the daemon's
// lifetime, so two masters never share a queue.
func (d *Daemon) lockPID() error {
	path := PIDFile(d.cfg.Params.QueueDirectory)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid, _ := RunningPID(d.cfg.Params.QueueDirectory)
			return fmt.Errorf("the mail system is already running (pid %d)", pid)
		}
		return err
	}
	if os.Geteuid() == 0 && d.owner.UID >= 0 {
		_ = f.Chown(d.owner.UID, d.owner.GID)
	}
	d.lock = f
	return nil
}

func (d *Daemon) writePID() error {
	if err := d.lock.Truncate(0); err != nil {
		return err
	}
	if _, err := d.lock.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		return err
	}
	return d.lock.Sync()
}

// RunningPID returns the pid of the master running on queueDir, or 0.
func RunningPID(queueDir string) (int, error) {
	f, err := os.Open(PIDFile(queueDir))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return 0, err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err == nil {
		// Nobody holds the lock: a stale file.
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return 0, nil
	}
	b, err := io.ReadAll(io.LimitReader(f, 32))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		// Locked but not yet written: starting up.
		return -1, nil
	}
	return pid, nil
}

func (d *Daemon) startControl() error {
	path := ControlSocket(d.cfg.Params.QueueDirectory)
	ln, err := listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	_ = os.Chmod(path, 0o600)
	allowed := map[uint32]bool{0: true, uint32(os.Geteuid()): true}
	d.ctl = &controlServer{ln: ln, allowed: allowed, handle: d.control}
	go d.ctl.serve()
	return nil
}

// control answers one control request.
func (d *Daemon) control(req Request) Response {
	switch req.Cmd {
	case "status":
		d.mu.Lock()
		file := absPath(d.cfg.File)
		d.mu.Unlock()
		return Response{OK: true, PID: os.Getpid(), Config: file, Services: d.sup.Status()}
	case "reload":
		if err := d.Reload(); err != nil {
			return Response{Error: err.Error()}
		}
		return Response{OK: true, PID: os.Getpid()}
	case "stop":
		select {
		case d.stopReq <- "terminating on request of postfix stop":
		default:
		}
		return Response{OK: true, PID: os.Getpid()}
	case "wakeup":
		d.wakeup()
		return Response{OK: true}
	case "flush", "flush-site", "flush-id":
		return d.flush(req)
	case "profile":
		data, err := profile(req.Args)
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{OK: true, Data: data}
	}
	return Response{Error: fmt.Sprintf("unknown request %q", req.Cmd)}
}

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

// flush is Postfix's flush service: postqueue -f (all deferred mail),
// -s SITE (the mail logged for a fast_flush_domains site) and -i ID.
func (d *Daemon) flush(req Request) Response {
	d.mu.Lock()
	p := d.cfg.Params
	d.mu.Unlock()
	q := queue.FromConfig(p)
	var err error
	switch req.Cmd {
	case "flush":
		_, err = q.ReleaseAll()
	case "flush-id":
		if len(req.Args) != 1 || !queue.ValidID(req.Args[0]) {
			return Response{Error: fmt.Sprintf("Invalid request: %q", strings.Join(req.Args, " "))}
		}
		err = q.Release(req.Args[0])
	case "flush-site":
		if len(req.Args) != 1 || req.Args[0] == "" || strings.ContainsAny(req.Args[0], " /\\") {
			return Response{Error: fmt.Sprintf("Invalid request: %q", strings.Join(req.Args, " "))}
		}
		d.mu.Lock()
		ff := d.fastFlush
		d.mu.Unlock()
		site := strings.ToLower(req.Args[0])
		if _, err = ff.SendSite(site); errors.Is(err, flush.ErrDenied) {
			return Response{Error: fmt.Sprintf("Flush service is not configured for destination %q", site)}
		}
	}
	if err != nil {
		return Response{Error: err.Error()}
	}
	d.wakeup()
	return Response{OK: true}
}

// newFastFlush is the flush service for a configuration: its sites are
// fast_flush_domains, matched as Postfix matches a domain list.
func newFastFlush(p *config.Params) (*flush.Service, error) {
	list, err := rewrite.NewDomainList("fast_flush_domains", p.FastFlushDomains, p.ParentDomainMatchesSubdomains)
	if err != nil {
		return nil, fmt.Errorf("fast_flush_domains: %w", err)
	}
	return flush.New(queue.FromConfig(p), list.Match), nil
}

// siteFlusher is ETRN's way to the flush service: release a site's mail,
// then wake qmgr.
type siteFlusher struct {
	d *Daemon
}

func (f siteFlusher) SendSite(site string) (int, error) {
	f.d.mu.Lock()
	ff := f.d.fastFlush
	f.d.mu.Unlock()
	n, err := ff.SendSite(site)
	if n > 0 {
		f.d.wakeup()
	}
	return n, err
}

// lookupOwner resolves mail_owner and setgid_group. As a normal user
// (development) the daemon runs as that user and mail_owner is not used.
func lookupOwner(p *config.Params) (queue.Owner, error) {
	o := queue.Owner{UID: -1, GID: -1, SetgidGID: -1}
	if os.Geteuid() != 0 {
		return o, nil
	}
	u, err := user.Lookup(p.MailOwner)
	if err != nil {
		return o, fmt.Errorf("mail_owner %s: no such user (create it, e.g. useradd --system --no-create-home %s, or set mail_owner)", p.MailOwner, p.MailOwner)
	}
	o.UID, _ = strconv.Atoi(u.Uid)
	o.GID, _ = strconv.Atoi(u.Gid)
	if o.UID == 0 {
		return o, fmt.Errorf("mail_owner %s: must not be root", p.MailOwner)
	}
	if g, err := user.LookupGroup(p.SetgidGroup); err == nil {
		o.SetgidGID, _ = strconv.Atoi(g.Gid)
	}
	return o, nil
}

// dropPrivileges switches the whole process to mail_owner once the
// listeners are bound. Since Go 1.16 the set*id calls apply to every thread.
func (d *Daemon) dropPrivileges() error {
	if os.Geteuid() != 0 || d.opts.keepPrivileges {
		name := strconv.Itoa(os.Geteuid())
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
		d.mlog.Infof("running as unprivileged user %s (uid %d); mail_owner %s is not used", name, os.Geteuid(), d.cfg.Params.MailOwner)
		return nil
	}
	o := d.owner
	if err := syscall.Setgroups([]int{o.GID}); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(o.GID); err != nil {
		return fmt.Errorf("setgid %d: %w", o.GID, err)
	}
	if err := syscall.Setuid(o.UID); err != nil {
		return fmt.Errorf("setuid %d: %w", o.UID, err)
	}
	if os.Geteuid() != o.UID || os.Getegid() != o.GID {
		return fmt.Errorf("privileges not dropped (uid %d gid %d)", os.Geteuid(), os.Getegid())
	}
	return nil
}

var _ net.Listener = (*listenerHandle)(nil)
