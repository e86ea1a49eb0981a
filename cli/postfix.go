package cli

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"mailsrv/config"
	"mailsrv/queue"
	"mailsrv/server/master"
)

// readyFDEnv tells a daemon started by `postfix start` which file
// descriptor to report readiness on.
const readyFDEnv = "MAILSRV_READY_FD"

func newPostfix(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "postfix",
		Short: "Start, stop, reload and check the mail system",
	}
	// say prints as Postfix's postfix-script does.
	say := func(c *cobra.Command, cfg *config.Config, format string, args ...any) {
		fmt.Fprintf(c.ErrOrStderr(), "%s/postfix-script: %s\n", cfg.Params.SyslogName, fmt.Sprintf(format, args...))
	}
	startFg := &cobra.Command{
		Use:   "start-fg",
		Short: "Run the mail system in the foreground (systemd Type=notify)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			opts := master.Options{ConfigFile: g.file(), Verbose: g.verbose, Debug: c.ErrOrStderr()}
			if fd := os.Getenv(readyFDEnv); fd == "3" {
				opts.ReadyFD = os.NewFile(3, "ready")
				os.Unsetenv(readyFDEnv)
			}
			if err := master.Run(opts); err != nil {
				return exitf(1, "fatal: %v", err)
			}
			return nil
		},
	}
	start := &cobra.Command{
		Use:   "start",
		Short: "Start the mail system in the background",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			if pid, _ := master.RunningPID(cfg.Params.QueueDirectory); pid != 0 {
				return exitf(1, "fatal: the mail system is already running (pid %d)", pid)
			}
			say(c, cfg, "starting the mail system")
			return startBackground(g, c.ErrOrStderr())
		},
	}
	stop := &cobra.Command{
		Use:   "stop",
		Short: "Stop the mail system gracefully",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			q := cfg.Params.QueueDirectory
			resp, err := master.Call(q, master.Request{Cmd: "stop"}, 10*time.Second)
			if err != nil {
				if errors.Is(err, master.ErrDown) {
					return exitf(1, "fatal: the mail system is not running")
				}
				return exitf(1, "fatal: %v", err)
			}
			say(c, cfg, "stopping the mail system")
			deadline := time.Now().Add(cfg.Params.StopTimeout + 10*time.Second)
			for time.Now().Before(deadline) {
				if !master.ProcessAlive(resp.PID) {
					return nil
				}
				time.Sleep(50 * time.Millisecond)
			}
			return exitf(1, "fatal: the mail system did not stop within %s", cfg.Params.StopTimeout+10*time.Second)
		},
	}
	reload := &cobra.Command{
		Use:   "reload",
		Short: "Re-read the configuration without dropping connections",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			if _, err := master.Call(cfg.Params.QueueDirectory, master.Request{Cmd: "reload"}, time.Minute); err != nil {
				if errors.Is(err, master.ErrDown) {
					return exitf(1, "fatal: the mail system is not running")
				}
				return exitf(1, "fatal: %v", err)
			}
			say(c, cfg, "refreshing the mail system")
			return nil
		},
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Report whether the mail system is running (exit 0) or not (exit 1)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			pid, err := master.RunningPID(cfg.Params.QueueDirectory)
			if err != nil {
				return exitf(1, "fatal: %v", err)
			}
			if pid == 0 {
				say(c, cfg, "the mail system is not running")
				return exitf(1, "")
			}
			say(c, cfg, "the mail system is running: PID: %d", pid)
			if g.verbose {
				if resp, err := master.Call(cfg.Params.QueueDirectory, master.Request{Cmd: "status"}, 10*time.Second); err == nil {
					for _, s := range resp.Services {
						fmt.Fprintf(c.OutOrStdout(), "%-16s %-8s restarts=%d %s\n", s.Name, s.State, s.Restarts, s.LastErr)
					}
				}
			}
			return nil
		},
	}
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration and the queue directory",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := config.Load(g.file())
			if err != nil {
				for _, line := range strings.Split(err.Error(), "\n") {
					fmt.Fprintf(c.ErrOrStderr(), "mailsrv/postfix-script: fatal: %s\n", line)
				}
				return exitf(1, "")
			}
			for _, w := range checkWarnings(cfg) {
				say(c, cfg, "warning: %s", w)
			}
			if probs := master.CheckServices(cfg); len(probs) > 0 {
				for _, p := range probs {
					say(c, cfg, "fatal: %s", p)
				}
				return exitf(1, "")
			}
			return nil
		},
	}
	setPerms := &cobra.Command{
		Use:   "set-permissions",
		Short: "Give the queue directory and everything in it the owners and modes it needs (as root)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			if os.Geteuid() != 0 {
				return exitf(1, "fatal: set-permissions must run as root")
			}
			p := cfg.Params
			uid, gid, err := lookupUser(p.MailOwner)
			if err != nil {
				return exitf(1, "fatal: mail_owner %s: no such user", p.MailOwner)
			}
			if uid == 0 {
				return exitf(1, "fatal: mail_owner %s: must not be root", p.MailOwner)
			}
			o := queue.Owner{UID: uid, GID: gid, SetgidGID: -1}
			if gr, err := user.LookupGroup(p.SetgidGroup); err == nil {
				o.SetgidGID, _ = strconv.Atoi(gr.Gid)
			}
			n := 0
			err = queue.SetPermissions(p.QueueDirectory, o, func(what string) {
				n++
				if g.verbose {
					say(c, cfg, "%s", what)
				}
			})
			if err != nil {
				return exitf(1, "fatal: %s: %v", p.QueueDirectory, err)
			}
			say(c, cfg, "set-permissions: %d owner or mode changes in %s", n, p.QueueDirectory)
			return nil
		},
	}
	cmd.AddCommand(start, startFg, stop, reload, status, check, setPerms, profileCmd(g))
	return cmd
}

// checkWarnings lists what postfix check reports for a valid config.
func checkWarnings(cfg *config.Config) []string {
	out := append([]string(nil), cfg.Warnings...)
	for _, s := range cfg.Services {
		if !master.Implemented(s.Command) {
			out = append(out, fmt.Sprintf("%s:%d: service %s: command %s is not part of this version of mailsrv; it will not run", cfg.File, s.Line, s.Name, s.Command))
		}
	}
	p := cfg.Params
	o := queue.Owner{UID: -1, GID: -1, SetgidGID: -1}
	if os.Geteuid() == 0 {
		if uid, gid, err := lookupUser(p.MailOwner); err != nil {
			out = append(out, fmt.Sprintf("mail_owner %s: no such user", p.MailOwner))
		} else {
			o.UID, o.GID = uid, gid
		}
	}
	if _, err := os.Stat(p.QueueDirectory); err == nil {
		out = append(out, queue.Check(p.QueueDirectory, o)...)
	} else {
		out = append(out, fmt.Sprintf("queue_directory %s does not exist yet; postfix start creates it", p.QueueDirectory))
	}
	return out
}

// startBackground runs `postfix start-fg` as a detached child and waits
// until it reports readiness on fd 3 (or fails, showing why).
func startBackground(g *globals, errOut io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return exitf(1, "fatal: %v", err)
	}
	file, err := filepath.Abs(g.file())
	if err != nil {
		return exitf(1, "fatal: %v", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return exitf(1, "fatal: %v", err)
	}
	args := []string{"-c", file, "postfix", "start-fg"}
	if g.verbose {
		args = append(args, "-v")
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.Stdout, cmd.Stderr = w, w
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return exitf(1, "fatal: %v", err)
	}
	w.Close()
	// The child closes every copy of w once it is ready (or dies), so
	// reading to EOF is bounded by its startup.
	_ = r.SetReadDeadline(time.Now().Add(2 * time.Minute))
	var output bytes.Buffer
	ready := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if sc.Text() == "READY" {
			ready = true
			continue
		}
		output.WriteString(sc.Text() + "\n")
	}
	r.Close()
	if ready {
		_ = cmd.Process.Release()
		errOut.Write(output.Bytes())
		return nil
	}
	_ = cmd.Wait()
	if output.Len() > 0 {
		errOut.Write(output.Bytes())
	}
	return exitf(1, "fatal: the mail system did not start")
}

func lookupUser(name string) (uid, gid int, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, err
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// asMailOwner switches a root process to mail_owner before it touches the
// queue, so that files and directories it creates belong to the daemon's
// user (as Postfix's postsuper does). As a normal user it does nothing.
func asMailOwner(cfg *config.Config) error {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid, err := lookupUser(cfg.Params.MailOwner)
	if err != nil {
		return exitf(1, "fatal: mail_owner %s: %v", cfg.Params.MailOwner, err)
	}
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return exitf(1, "fatal: setgroups: %v", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return exitf(1, "fatal: setgid: %v", err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return exitf(1, "fatal: setuid: %v", err)
	}
	return nil
}

// profileCmd is `postfix profile`: a pprof profile of the running daemon,
// for `go tool pprof`. Not a Postfix command: Postfix's daemons are
// profiled with perf; mailsrv's goroutines need Go's profiler.
func profileCmd(g *globals) *cobra.Command {
	var out string
	var dur time.Duration
	cmd := &cobra.Command{
		Use:   "profile cpu|heap|allocs|goroutine -o FILE",
		Short: "Write a pprof profile of the running daemon (cpu: over --duration)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if out == "" {
				return exitf(2, "fatal: say where the profile goes with -o FILE")
			}
			cfg, err := g.load()
			if err != nil {
				return err
			}
			resp, err := master.Call(cfg.Params.QueueDirectory,
				master.Request{Cmd: "profile", Args: []string{args[0], dur.String()}}, dur+time.Minute)
			if err != nil {
				if errors.Is(err, master.ErrDown) {
					return exitf(1, "fatal: the mail system is not running")
				}
				return exitf(1, "fatal: %v", err)
			}
			if err := os.WriteFile(out, resp.Data, 0o600); err != nil {
				return exitf(1, "fatal: %v", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "file to write the profile to")
	cmd.Flags().DurationVarP(&dur, "duration", "d", 30*time.Second, "how long a CPU profile runs")
	return cmd
}
