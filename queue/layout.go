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
	if o.UID >= 0 {
		_ = walkOwned(root, func(path string, d fs.DirEntry, st *syscall.Stat_t) {
			if int(st.Uid) != o.UID {
				out = append(out, fmt.Sprintf("not owned by mail_owner (uid %d, owner is uid %d): %s", o.UID, st.Uid, path))
			}
			if d.IsDir() && st.Mode&0o7777 != 0o700 {
				out = append(out, fmt.Sprintf("bad permissions %04o (want 0700): %s", st.Mode&0o7777, path))
			}
		}, func(path string, err error) {
			out = append(out, fmt.Sprintf("cannot read %s: %v", path, err))
		})
	}
	return out
}

// ownedDirs are the directories whose whole content belongs to
// mail_owner: everything but maildrop (users' files), and private,
// public and pid (sockets and the pid file, made by the master itself).
func ownedDirs() []string {
	var out []string
	for _, d := range Dirs {
		switch d.Name {
		case Maildrop, "private", "public", "pid":
		default:
			out = append(out, d.Name)
		}
	}
	return out
}

// walkOwned calls fn for everything below the directories of ownedDirs
// (not for those directories themselves), without following links.
func walkOwned(root string, fn func(path string, d fs.DirEntry, st *syscall.Stat_t), bad func(path string, err error)) error {
	for _, name := range ownedDirs() {
		top := filepath.Join(root, name)
		err := filepath.WalkDir(top, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					bad(path, err)
				}
				return nil
			}
			if path == top {
				return nil
			}
			var st syscall.Stat_t
			if err := syscall.Lstat(path, &st); err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					bad(path, err)
				}
				return nil
			}
			fn(path, d, &st)
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// SetPermissions repairs the queue's ownership and modes, as postfix
// set-permissions does: the directories as Create makes them, and every
// file and hashed directory below them (but maildrop's files, which are
// their senders') owned by mail_owner, hashed directories mode 0700. File
// modes are left alone: a queue file's mode says whether it is complete.
// It must run as root; it reports each change through fixed.
func SetPermissions(root string, o Owner, fixed func(what string)) error {
	if os.Geteuid() != 0 || o.UID < 0 {
		return errors.New("set-permissions must run as root")
	}
	for _, d := range Dirs {
		p := filepath.Join(root, d.Name)
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err == nil {
			gid := o.GID
			if d.Group && o.SetgidGID >= 0 {
				gid = o.SetgidGID
			}
			if int(st.Uid) != o.UID || int(st.Gid) != gid {
				fixed(fmt.Sprintf("owner of %s: uid %d gid %d -> uid %d gid %d", p, st.Uid, st.Gid, o.UID, gid))
			}
			if fs.FileMode(st.Mode&0o777)|sticky(st.Mode) != d.Mode {
				fixed(fmt.Sprintf("mode of %s: %04o -> %04o", p, st.Mode&0o7777, unixMode(d.Mode)))
			}
		}
	}
	if err := Create(root, o); err != nil {
		return err
	}
	var firstErr error
	note := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	err := walkOwned(root, func(path string, d fs.DirEntry, st *syscall.Stat_t) {
		if int(st.Uid) != o.UID || int(st.Gid) != o.GID {
			fixed(fmt.Sprintf("owner of %s: uid %d gid %d -> uid %d gid %d", path, st.Uid, st.Gid, o.UID, o.GID))
			note(os.Lchown(path, o.UID, o.GID))
		}
		if d.IsDir() && st.Mode&0o7777 != 0o700 {
			fixed(fmt.Sprintf("mode of %s: %04o -> 0700", path, st.Mode&0o7777))
			note(os.Chmod(path, 0o700))
		}
	}, func(path string, err error) { note(err) })
	if err != nil {
		return err
	}
	return firstErr
}

func sticky(m uint32) fs.FileMode {
	if m&syscall.S_ISVTX != 0 {
		return fs.ModeSticky
	}
	return 0
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
