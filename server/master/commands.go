package master

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"mailsrv/config"
	"mailsrv/queue"
	"mailsrv/queue/flush"
	"mailsrv/rewrite"
)

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
