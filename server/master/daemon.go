// Package master is Postfix's master(8): it reads the configuration,
// creates the queue, opens every service's socket, drops to mail_owner,
// starts each role (smtpd, pickup, qmgr, the delivery agents) as a
// supervised goroutine service that is restarted with backoff when it
// fails, and answers the control socket (status, reload, stop, flush,
// profiles) that the postfix, postqueue and sendmail commands use.
//
// daemon.go has the daemon's life (start, serve, reload, stop);
// services.go the services, their sockets and channels; supervisor.go
// the supervision; roles.go how each role is built; check.go the check
// of a configuration's services before they start; commands.go and
// control.go the control socket; pidfile.go the master lock;
// privileges.go mail_owner.
package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
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
