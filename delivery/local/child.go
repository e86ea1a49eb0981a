package local

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"mailsrv/delivery/mailbox"
	"mailsrv/delivery/spawn"
	"mailsrv/outcome"
)

// The work that touches a user's files or runs a user's command is done
// by a child process of this binary, started with the user's credentials
// (see package spawn). The job travels in the environment, the message on
// standard input, the result as JSON on standard output.
const (
	childEnv = "MAILSRV_LOCAL_CHILD"
	jobEnv   = "MAILSRV_LOCAL_JOB"
)

// job is one piece of work for a child.
type job struct {
	Kind      string           `json:"kind"` // mbox, maildir, command, read
	Path      string           `json:"path,omitempty"`
	Command   string           `json:"command,omitempty"`
	Shell     string           `json:"shell,omitempty"`
	Env       []string         `json:"env,omitempty"`
	Dir       string           `json:"dir,omitempty"`
	Envelope  mailbox.Envelope `json:"envelope"`
	FromLine  bool             `json:"from_line,omitempty"`
	Locking   mailbox.Locking  `json:"locking"`
	Owner     int              `json:"owner"` // required mbox owner, -1 = any
	Hostname  string           `json:"hostname,omitempty"`
	TimeLimit time.Duration    `json:"time_limit,omitempty"`
	MkParent  bool             `json:"mkparent,omitempty"` // create the mbox's directory
}

// result is a child's answer: a failure's status (DSN "" = success), and
// what a read job read.
type result struct {
	outcome.Status
	Data string `json:"data,omitempty"`
}

func failed(dsn, text string) result { return result{Status: outcome.Failed(dsn, text)} }

// readLimit bounds a .forward or :include: file.
const readLimit = 64 << 10

// IsChild reports whether this process was started as a local delivery
// child; main (and test binaries that run the daemon) must then call
// ChildMain instead of anything else.
func IsChild() bool { return os.Getenv(childEnv) == "1" }

// ChildMain does the job of a child process and returns its exit status.
func ChildMain() int {
	var j job
	res := result{}
	if err := json.Unmarshal([]byte(os.Getenv(jobEnv)), &j); err != nil {
		res = failed("4.3.0", "bad job: "+err.Error())
	} else {
		res = j.run(os.Stdin)
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

func failure(err error) result {
	var st outcome.Status
	if errors.As(err, &st) {
		return result{Status: st}
	}
	return failed("4.3.0", err.Error())
}

func (j *job) run(in io.Reader) result {
	switch j.Kind {
	case "mbox":
		if j.MkParent {
			if err := os.MkdirAll(filepath.Dir(j.Path), 0o700); err != nil {
				return failure(outcome.Status{DSN: "4.2.0", Text: fmt.Sprintf("create directory %s: %v", filepath.Dir(j.Path), err)})
			}
		}
		if err := mailbox.Mbox(j.Path, j.Envelope, in, j.Locking, j.Owner); err != nil {
			return failure(err)
		}
	case "maildir":
		if _, err := mailbox.Maildir(j.Path, j.Envelope, in, j.Hostname); err != nil {
			return failure(err)
		}
	case "read":
		f, err := os.Open(j.Path)
		if errors.Is(err, os.ErrNotExist) {
			return failed("5.0.0", "no such file")
		}
		if err != nil {
			return failed("4.3.0", fmt.Sprintf("cannot open %s: %v", j.Path, err))
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, readLimit+1))
		if err != nil {
			return failed("4.3.0", fmt.Sprintf("cannot read %s: %v", j.Path, err))
		}
		if len(b) > readLimit {
			return failed("5.3.0", fmt.Sprintf("%s is larger than %d bytes", j.Path, readLimit))
		}
		return result{Data: string(b)}
	case "command":
		return j.command(in)
	default:
		return failed("4.3.0", "unknown job "+j.Kind)
	}
	return result{}
}

// command pipes the message (with From_ line and the prepended headers,
// as local(8) does) into /bin/sh -c COMMAND, or local_command_shell.
func (j *job) command(in io.Reader) result {
	shell := []string{"/bin/sh", "-c", j.Command}
	if j.Shell != "" {
		shell = append(strings.Fields(j.Shell), j.Command)
	}
	ctx := context.Background()
	if j.TimeLimit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, j.TimeLimit)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, shell[0], shell[1:]...)
	cmd.Env = j.Env
	// The home directory when it can be entered (default_privs' often
	// cannot), else the root.
	cmd.Dir = "/"
	if st, err := os.Stat(j.Dir); err == nil && st.IsDir() && syscall.Access(j.Dir, 1) == nil {
		cmd.Dir = j.Dir
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out limited
	cmd.Stdout, cmd.Stderr = &out, &out
	pr, pw := io.Pipe()
	cmd.Stdin = pr
	go func() {
		w := bufio.NewWriter(pw)
		if j.FromLine {
			sender := j.Envelope.Sender
			if sender == "" {
				sender = "MAILER-DAEMON"
			}
			fmt.Fprintf(w, "From %s  %s\n", sender, time.Now().Format("Mon Jan _2 15:04:05 2006"))
		}
		w.Write(mailbox.Headers(j.Envelope))
		_, err := io.Copy(w, in)
		if err == nil {
			err = w.Flush()
		}
		pw.CloseWithError(err)
	}()
	err := cmd.Run()
	pr.Close()
	output := strings.TrimSpace(out.String())
	if ctx.Err() == context.DeadlineExceeded {
		return failed("5.3.0", fmt.Sprintf("Command time limit exceeded: %q", j.Command))
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return failed("4.3.0", fmt.Sprintf("cannot run command %q: %v", j.Command, err))
	}
	if ee == nil {
		return result{}
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return failed("4.3.0", fmt.Sprintf("Command died with signal %d: %q", ws.Signal(), j.Command)+outputText(output))
	}
	st := spawn.ExitStatus(ws.ExitStatus(), j.Command, output)
	st.Text += outputText(output)
	return result{Status: st}
}

func outputText(out string) string {
	if out == "" {
		return ""
	}
	return ". Command output: " + strings.Join(strings.Fields(out), " ")
}

// limited keeps the first bytes of a command's output.
type limited struct{ bytes.Buffer }

func (l *limited) Write(p []byte) (int, error) {
	if room := spawn.OutputLimit - l.Len(); room > 0 {
		l.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// WriteMailbox delivers into a Maildir (path ending in /) or an mbox file
// as uid:gid, in a child process of this binary: virtual(8) uses it when
// the daemon has given up root and cannot take the mailbox owner's
// identity itself. The error is an outcome.Status when the child
// reports one.
func WriteMailbox(ctx context.Context, uid, gid int, path string, env mailbox.Envelope, lk mailbox.Locking, owner int, hostname string, content io.Reader) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	j := &job{Kind: "mbox", Path: path, Envelope: env, Locking: lk, Owner: owner, Hostname: hostname, MkParent: true}
	if strings.HasSuffix(path, "/") {
		j.Kind = "maildir"
	}
	b, err := json.Marshal(j)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	res, err := spawn.Run(ctx, &spawn.Cmd{
		Path: self, Args: []string{"mailsrv-local"},
		Env: []string{childEnv + "=1", jobEnv + "=" + string(b), "PATH=/usr/bin:/bin"},
		Dir: "/", UID: uid, GID: gid, Groups: []int{gid},
		Stdin: content, Stdout: &out, Timeout: 10 * time.Minute,
	})
	if err != nil {
		return outcome.Status{DSN: "4.3.0", Text: fmt.Sprintf("cannot deliver as uid %d: %v", uid, err)}
	}
	var r result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return outcome.Status{DSN: "4.3.0", Text: fmt.Sprintf("delivery child failed (status %d): %s", res.Status, res.Output)}
	}
	if r.DSN != "" {
		return r.Status
	}
	return nil
}
