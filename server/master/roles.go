package master

import (
	"context"
	"net"

	"mailsrv/config"
	"mailsrv/maillog"
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
	// Hard is cancelled when the stop deadline (mailsrv_stop_timeout) has
	// passed: work still in progress must then be abandoned (safely: the
	// queue keeps everything not yet done).
	Hard context.Context
	// QueueChanged receives a value when the queue changed behind the
	// daemon's back (postsuper, postqueue -f): qmgr rescans. The master
	// owns it, so it survives a restart of qmgr.
	QueueChanged <-chan struct{}
}

// Role builds a service instance from its environment.
type Role func(env *Env) (Service, error)

// roles maps a [[service]] command to its implementation. Roles are wired
// here, in the master, so that they need not import it (the imports run one
// way: roles below, master above). A command that config accepts but is
// not listed here is reported at start and by postfix check.
var roles = map[string]Role{}

// builtinRoles run without a [[service]] entry (cleanup, qmgr, … in
// Postfix terms); an entry with the same name tunes them.
var builtinRoles []string

// Implemented reports whether this build runs a command.
func Implemented(command string) bool {
	_, ok := roles[command]
	return ok
}
