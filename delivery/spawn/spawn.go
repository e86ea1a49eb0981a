// Package spawn runs programs on behalf of delivery agents with another
// user's credentials: local(8)'s per-user work (mailbox files, .forward,
// |commands) runs in a child process of this same binary, pipe(8) runs
// its argv, each as the user it belongs to, never inside the daemon.
//
// Switching to a user needs root. When the process is root (tests, or a
// daemon told to keep its privileges) the child is started directly with
// the user's uid, gid and groups; a daemon that dropped to mail_owner asks
// the privileged helper (helper.go); an unprivileged trial instance can
// only run children as its own user, and asking for another is an error
// that says so. Nothing is ever run as root.
//
// Commands get the limits every input has: a time limit (the child and
// its process group are killed when it passes) and bounded output.
package spawn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"mailsrv/outcome"
)

// Cmd is a program to run.
type Cmd struct {
	Path    string
	Args    []string // including argv[0]
	Env     []string
	Dir     string
	UID     int
	GID     int
	Groups  []int
	Stdin   io.Reader
	Stdout  io.Writer // nil: collected into Result.Output (bounded)
	Timeout time.Duration
}

// Result is how a program ended.
type Result struct {
	Status   int  // exit status (valid when !Signaled)
	Signaled bool // killed by a signal
	TimedOut bool
	// Output is what the program wrote to stdout and stderr (the first
	// OutputLimit bytes) when Stdout was nil, else its stderr.
	Output string
}

// OutputLimit bounds the output kept from a program.
const OutputLimit = 4096

// ErrNotPermitted means the daemon cannot act as the requested user.
var ErrNotPermitted = errors.New("not permitted")

// Run runs c and waits for it. An error means it could not be started.
func Run(ctx context.Context, c *Cmd) (*Result, error) {
	euid := os.Geteuid()
	if c.UID == 0 || c.GID == 0 || slices.Contains(c.Groups, 0) {
		return nil, fmt.Errorf("refusing to run a delivery as root or with the root group: %w", ErrNotPermitted)
	}
	if euid != 0 && c.UID != euid {
		helperMu.Lock()
		path := helperPath
		helperMu.Unlock()
		if path != "" {
			return viaHelper(ctx, path, c)
		}
		return nil, fmt.Errorf("cannot run as uid %d: the mail system runs as uid %d without root: %w", c.UID, euid, ErrNotPermitted)
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	cmd := exec.Command(c.Path)
	cmd.Args = c.Args
	cmd.Env = c.Env
	cmd.Dir = c.Dir
	cmd.Stdin = c.Stdin
	out := &limitBuffer{max: OutputLimit}
	cmd.Stdout = out
	if c.Stdout != nil {
		cmd.Stdout = c.Stdout
	}
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if euid == 0 {
		groups := make([]uint32, 0, len(c.Groups))
		for _, g := range c.Groups {
			groups = append(groups, uint32(g))
		}
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(c.UID), Gid: uint32(c.GID), Groups: groups}
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// Kill the whole process group when the time is up or the daemon
	// gives up: a shell's children must not outlive the delivery.
	waitDone := make(chan struct{})
	timedOut := false
	go func() {
		select {
		case <-ctx.Done():
			timedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		case <-waitDone:
		}
	}()
	err := cmd.Wait()
	close(waitDone)
	res := &Result{Output: trimSpace(out.String())}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			res.Signaled = true
		} else {
			res.Status = ws.ExitStatus()
		}
	default:
		// Copying stdin failed (the program did not read it all): the
		// exit status decides, as with Postfix.
		if ps := cmd.ProcessState; ps != nil {
			if ws := ps.Sys().(syscall.WaitStatus); ws.Signaled() {
				res.Signaled = true
			} else {
				res.Status = ws.ExitStatus()
			}
		}
	}
	res.TimedOut = timedOut
	return res, nil
}

// limitBuffer keeps the first max bytes written and discards the rest,
// so a chatty program cannot fill the daemon's memory.
type limitBuffer struct {
	bytes.Buffer
	max int
}

func (l *limitBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.Len(); room > 0 {
		l.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// sysexits maps sysexits(3) statuses to enhanced status codes and texts
// as Postfix does (sys_exits.c).
var sysexits = map[int]outcome.Status{
	64: {DSN: "5.3.0", Text: "command line usage error"},
	65: {DSN: "5.6.0", Text: "data format error"},
	66: {DSN: "5.3.0", Text: "cannot open input"},
	67: {DSN: "5.1.1", Text: "user unknown"},
	68: {DSN: "5.1.2", Text: "host name unknown"},
	69: {DSN: "5.3.0", Text: "service unavailable"},
	70: {DSN: "5.3.0", Text: "internal software error"},
	71: {DSN: "4.3.0", Text: "system resource problem"},
	72: {DSN: "5.3.0", Text: "critical OS file missing"},
	73: {DSN: "5.2.0", Text: "can't create user output file"},
	74: {DSN: "5.3.0", Text: "input/output error"},
	75: {DSN: "4.3.0", Text: "temporary failure"},
	76: {DSN: "5.5.0", Text: "remote error in protocol"},
	77: {DSN: "5.7.0", Text: "permission denied"},
	78: {DSN: "5.3.5", Text: "local configuration error"},
}

// ExitStatus is the status of a command that exited with a non-zero
// status: the enhanced code the command printed at the start of its
// output ("4.2.2 mailbox full"), else its sysexits(3) code's, else 5.3.0
// as in Postfix; the text is what the log and the notice say.
func ExitStatus(status int, command, output string) outcome.Status {
	dsn := "5.3.0"
	if e, ok := sysexits[status]; ok {
		dsn = e.DSN
	}
	if code, ok := dsnFromOutput(output); ok {
		dsn = code
	}
	return outcome.Status{DSN: dsn, Text: fmt.Sprintf("Command died with status %d: %q", status, command)}
}

// dsnFromOutput returns an enhanced status code the program printed at
// the start of its output ("4.2.2 mailbox full"), which overrides the one
// derived from its exit status.
func dsnFromOutput(out string) (string, bool) {
	code, _, _ := strings.Cut(strings.TrimSpace(out), " ")
	parts := strings.Split(code, ".")
	if len(parts) != 3 || (parts[0] != "4" && parts[0] != "5") {
		return "", false
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return "", false
		}
	}
	return code, true
}

func trimSpace(s string) string { return strings.TrimSpace(s) }
