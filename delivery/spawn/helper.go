package spawn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"mailsrv/internal/peercred"
)

// The privileged helper. The daemon binds its ports as root and then
// becomes mail_owner for good; but local(8) and pipe(8) must start
// programs as other users, which needs root. Before dropping privileges
// the master starts this helper: a child process of the same binary that
// keeps root and does one thing, start a program with a given non-root
// uid and gids and the standard input/output descriptors the daemon
// passes along (SCM_RIGHTS), and report how it ended. It listens on a
// socket in the queue's private/ directory and answers only mail_owner
// (SO_PEERCRED). It never runs anything as root. (Postfix's equivalent
// is that master, local and pipe themselves run as root.)
const (
	helperEnv = "MAILSRV_SPAWN_HELPER"
	helperUID = "MAILSRV_SPAWN_PEER_UID"
)

var (
	helperMu   sync.Mutex
	helperPath string   // the socket, once a helper runs
	helperLife *os.File // held open for as long as the helper may live
)

// IsHelper reports whether this process was started as the helper.
func IsHelper() bool { return os.Getenv(helperEnv) == "1" }

// HelperSocket is the helper's socket under the queue directory.
func HelperSocket(queueDir string) string { return queueDir + "/private/spawn" }

// StartHelper starts the helper (as root, before the caller drops its
// privileges) on the socket path, for requests from peerUID, and makes
// Run use it from then on. The helper dies with the caller.
func StartHelper(path string, peerUID, peerGID int) (stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	f, err := ul.File()
	ul.Close()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The daemon connects as mail_owner.
	if err := os.Chown(path, peerUID, peerGID); err != nil {
		return nil, err
	}
	_ = os.Chmod(path, 0o600)
	// The helper lives as long as this pipe's write end: when the
	// daemon exits, for whatever reason, the helper reads EOF and ends
	// (a signal from an unprivileged daemon could not reach it).
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer lifeR.Close()
	cmd := exec.Command(self)
	cmd.Args = []string{"mailsrv-spawn"}
	cmd.Env = []string{helperEnv + "=1", helperUID + "=" + strconv.Itoa(peerUID), "PATH=/usr/bin:/bin"}
	cmd.ExtraFiles = []*os.File{f, lifeR}
	// No stdout/stderr: the helper must not hold the terminal or the
	// pipe of whoever ran postfix start (they would wait for it).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	// Pdeathsig fires when the *thread* that forked the helper ends, and
	// Go ends threads whose goroutine exits while locked to them
	// (virtual(8) does that). Fork from a thread of our own that lives
	// as long as the helper.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
	}()
	if err := <-started; err != nil {
		lifeW.Close()
		return nil, err
	}
	helperMu.Lock()
	helperPath = path
	helperLife = lifeW
	helperMu.Unlock()
	return func() {
		helperMu.Lock()
		helperPath = ""
		helperMu.Unlock()
		lifeW.Close()
	}, nil
}

// request is what the daemon asks of the helper.
type request struct {
	Path    string        `json:"path"`
	Args    []string      `json:"args"`
	Env     []string      `json:"env"`
	Dir     string        `json:"dir"`
	UID     int           `json:"uid"`
	GID     int           `json:"gid"`
	Groups  []int         `json:"groups"`
	Timeout time.Duration `json:"timeout"`
}

type answer struct {
	Error    string `json:"error,omitempty"`
	Status   int    `json:"status"`
	Signaled bool   `json:"signaled"`
	TimedOut bool   `json:"timed_out"`
}

// HelperMain serves requests (fd 3 is the listening socket) until the
// parent dies.
func HelperMain() int {
	peer, err := strconv.Atoi(os.Getenv(helperUID))
	if err != nil || peer == 0 {
		fmt.Fprintln(os.Stderr, "mailsrv spawn helper: bad peer uid")
		return 1
	}
	l, err := net.FileListener(os.NewFile(3, "spawn"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "mailsrv spawn helper:", err)
		return 1
	}
	go func() {
		// The daemon is gone when its end of the pipe closes.
		io.Copy(io.Discard, os.NewFile(4, "life"))
		os.Exit(0)
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			return 1
		}
		go serveHelper(c.(*net.UnixConn), peer)
	}
}

func serveHelper(c *net.UnixConn, peer int) {
	defer c.Close()
	reply := func(a answer) { _ = json.NewEncoder(c).Encode(a) }
	if uid, err := peercred.UID(c); err != nil || uid != peer {
		return
	}
	buf := make([]byte, 64<<10)
	oob := make([]byte, syscall.CmsgSpace(3*4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return
	}
	var fds []int
	if msgs, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			if f, err := syscall.ParseUnixRights(&m); err == nil {
				fds = append(fds, f...)
			}
		}
	}
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), "fd")
		defer files[i].Close()
	}
	var req request
	if err := json.Unmarshal(buf[:n], &req); err != nil || len(files) != 3 {
		reply(answer{Error: "bad request"})
		return
	}
	if req.UID == 0 || req.GID == 0 || slices.Contains(req.Groups, 0) {
		reply(answer{Error: "refusing to run a program as root or with the root group"})
		return
	}
	cmd := exec.Command(req.Path)
	cmd.Args, cmd.Env, cmd.Dir = req.Args, req.Env, req.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = files[0], files[1], files[2]
	groups := make([]uint32, 0, len(req.Groups))
	for _, g := range req.Groups {
		groups = append(groups, uint32(g))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true,
		Credential: &syscall.Credential{Uid: uint32(req.UID), Gid: uint32(req.GID), Groups: groups}}
	if err := cmd.Start(); err != nil {
		reply(answer{Error: err.Error()})
		return
	}
	for _, f := range files {
		f.Close()
	}
	ctx := context.Background()
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Timeout)
		defer cancel()
	}
	// The daemon hanging up (it gave up on the delivery) kills the
	// program too.
	hangup := make(chan struct{})
	go func() {
		io.Copy(io.Discard, c)
		close(hangup)
	}()
	done := make(chan struct{})
	var timedOut bool
	go func() {
		select {
		case <-ctx.Done():
			timedOut = true
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		case <-hangup:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		case <-done:
		}
	}()
	err = cmd.Wait()
	close(done)
	a := answer{TimedOut: timedOut}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		if ws.Signaled() {
			a.Signaled = true
		} else {
			a.Status = ws.ExitStatus()
		}
	} else if err != nil {
		a.Error = err.Error()
	}
	reply(a)
}

// viaHelper runs c through the helper.
func viaHelper(ctx context.Context, path string, c *Cmd) (*Result, error) {
	conn, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("the privileged helper is not available: %w", err)
	}
	defer conn.Close()
	uc := conn.(*net.UnixConn)
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, err
	}
	b, _ := json.Marshal(request{Path: c.Path, Args: c.Args, Env: c.Env, Dir: c.Dir, UID: c.UID, GID: c.GID, Groups: c.Groups, Timeout: c.Timeout})
	rights := syscall.UnixRights(int(inR.Fd()), int(outW.Fd()), int(errW.Fd()))
	_, _, err = uc.WriteMsgUnix(b, rights, nil)
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, err
	}
	var wg sync.WaitGroup
	out := &limitBuffer{max: OutputLimit}
	var stdout io.Writer = out
	if c.Stdout != nil {
		stdout = c.Stdout
	}
	wg.Add(3)
	go func() {
		defer wg.Done()
		if c.Stdin != nil {
			io.Copy(inW, c.Stdin)
		}
		inW.Close()
	}()
	go func() { defer wg.Done(); io.Copy(stdout, outR); outR.Close() }()
	go func() { defer wg.Done(); io.Copy(out, errR); errR.Close() }()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var a answer
	err = json.NewDecoder(conn).Decode(&a)
	wg.Wait()
	if err != nil {
		return nil, fmt.Errorf("the privileged helper did not answer: %w", err)
	}
	if a.Error != "" {
		return nil, errors.New(a.Error)
	}
	return &Result{Status: a.Status, Signaled: a.Signaled, TimedOut: a.TimedOut, Output: trimSpace(out.String())}, nil
}
