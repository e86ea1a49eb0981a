// Package queue owns the mail queue on disk: the directories under
// queue_directory (maildrop, incoming, active, deferred, hold, corrupt and
// the per-message logs bounce, defer, trace), their ownership and modes,
// and recycle, where the daemon keeps the files of delivered messages to
// write new ones into (recycle.go says why). The queue directory is the
// only truth about mail in flight: everything the daemon holds in memory
// can be rebuilt from it.
package queue

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Dir describes one directory of the queue.
type Dir struct {
	Name string
	Mode fs.FileMode
	// Group is true for directories whose group is setgid_group, so that
	// a set-gid helper can drop mail (maildrop) or poke the daemon
	// (public) without being mail_owner.
	Group bool
}

// Dirs are the queue's directories, as in Postfix's postfix-files, with
// one difference: mailsrv has no set-gid postdrop helper, so maildrop is
// mode 1733 (anyone may create a file, nobody but mail_owner may list or
// remove other users' files, like /tmp without the read bit) and public is
// 0711 (anyone may reach the submission socket inside it). sendmail writes
// to maildrop only while the daemon is down; pickup trusts nothing in
// those files but the owner's uid.
var Dirs = []Dir{
	{Name: "maildrop", Mode: fs.ModeSticky | 0o733},
	{Name: "incoming", Mode: 0o700},
	{Name: "active", Mode: 0o700},
	{Name: "deferred", Mode: 0o700},
	{Name: "hold", Mode: 0o700},
	{Name: "corrupt", Mode: 0o700},
	{Name: "bounce", Mode: 0o700},
	{Name: "defer", Mode: 0o700},
	{Name: "trace", Mode: 0o700},
	{Name: "flush", Mode: 0o700},
	{Name: "saved", Mode: 0o700},
	{Name: Recycle, Mode: 0o700},
	{Name: "private", Mode: 0o700},
	{Name: "public", Mode: 0o711},
	{Name: "pid", Mode: 0o755},
}

// Owner says who should own the queue: uid/gid of mail_owner and the gid of
// setgid_group (-1 when unknown, e.g. in development as a normal user).
type Owner struct {
	UID, GID, SetgidGID int
}

// Create makes the queue directory and every subdirectory that is missing,
// and, when running as root, gives them to the owner. It never loosens or
// changes the mode of an existing directory that is correct.
func Create(root string, o Owner) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	for _, d := range Dirs {
		p := filepath.Join(root, d.Name)
		if err := os.Mkdir(p, d.Mode); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		// Mkdir applies the umask; set the exact mode.
		if err := os.Chmod(p, d.Mode); err != nil {
			return err
		}
		if os.Geteuid() == 0 && o.UID >= 0 {
			gid := o.GID
			if d.Group && o.SetgidGID >= 0 {
				gid = o.SetgidGID
			}
			if err := os.Lchown(p, o.UID, gid); err != nil {
				return err
			}
		}
	}
	return nil
}

// Check reports every problem with the queue's structure, ownership and
// permissions, one message per problem, as postfix check does.
func Check(root string, o Owner) []string {
	var out []string
	st, err := os.Stat(root)
	if err != nil {
		return []string{fmt.Sprintf("queue_directory %s: %v", root, err)}
	}
	if !st.IsDir() {
		return []string{fmt.Sprintf("queue_directory %s: not a directory", root)}
	}
	if st.Mode().Perm()&0o022 != 0 {
		out = append(out, fmt.Sprintf("group or other writable: %s", root))
	}
	for _, d := range Dirs {
		p := filepath.Join(root, d.Name)
		st, err := os.Lstat(p)
		if err != nil {
			out = append(out, fmt.Sprintf("missing directory: %s (postfix start creates it)", p))
			continue
		}
		if !st.IsDir() {
			out = append(out, fmt.Sprintf("not a directory: %s", p))
			continue
		}
		if got := st.Mode() & (fs.ModePerm | fs.ModeSticky); got != d.Mode {
			out = append(out, fmt.Sprintf("bad permissions %04o (want %04o): %s", unixMode(got), unixMode(d.Mode), p))
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && o.UID >= 0 && int(sys.Uid) != o.UID {
			out = append(out, fmt.Sprintf("not owned by mail_owner (uid %d, owner is uid %d): %s", o.UID, sys.Uid, p))
		}
	}
	return out
}

// Reachable checks that a user (uid, gid) can search every folder above
// dir, so that the daemon still reaches its queue after dropping to
// mail_owner. It returns the first folder that blocks the way.
func Reachable(dir string, uid, gid int) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		mode := st.Mode().Perm()
		if ok {
			var can bool
			switch {
			case int(sys.Uid) == uid:
				can = mode&0o100 != 0
			case int(sys.Gid) == gid:
				can = mode&0o010 != 0
			default:
				can = mode&0o001 != 0
			}
			if !can {
				return fmt.Errorf("%s (mode %04o) is not searchable by uid %d", p, mode, uid)
			}
		}
		if p == "/" {
			return nil
		}
	}
}

// unixMode is a mode as chmod(1) writes it.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}
