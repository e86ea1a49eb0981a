// Package peercred tells who is at the other end of a local socket
// (SO_PEERCRED): the daemon's control socket, the submission socket and
// the privileged helper admit callers by their uid, never by what they
// say about themselves.
package peercred

import (
	"net"

	"golang.org/x/sys/unix"
)

// UID returns the uid of the process that connected c.
func UID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if cerr != nil {
		return -1, cerr
	}
	return int(cred.Uid), nil
}
