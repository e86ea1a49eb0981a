package master

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// PIDFile is where the running master records its pid; the file is also
// locked for as long as the master runs.
func PIDFile(queueDir string) string { return filepath.Join(queueDir, "pid", "master.pid") }

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
