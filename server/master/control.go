package master

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"mailsrv/internal/peercred"
)

// ControlSocket is the control socket's path under the queue directory. It
// lives in private/ (mode 0700, owned by mail_owner) and the master also
// checks each peer's credentials: only root and mail_owner get through.
func ControlSocket(queueDir string) string {
	return filepath.Join(queueDir, "private", "control")
}

// Request is one command to the running daemon.
type Request struct {
	Cmd  string   `json:"cmd"` // status, reload, stop
	Args []string `json:"args,omitempty"`
}

// Response is the daemon's answer.
type Response struct {
	OK       bool     `json:"ok"`
	Error    string   `json:"error,omitempty"`
	PID      int      `json:"pid,omitempty"`
	Config   string   `json:"config,omitempty"`
	Services []Status `json:"services,omitempty"`
	Data     []byte   `json:"data,omitempty"` // a profile
}

// ErrDown means no daemon answered on the control socket.
var ErrDown = errors.New("the mail system is down")

// Call sends one request to the daemon of the queue directory.
func Call(queueDir string, req Request, timeout time.Duration) (*Response, error) {
	c, err := net.DialTimeout("unix", ControlSocket(queueDir), timeout)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("control socket %s: permission denied (run as root or mail_owner)", ControlSocket(queueDir))
		}
		return nil, ErrDown
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return nil, err
	}
	var resp Response
	// Bounded: a profile is the largest answer, a few megabytes at most.
	if err := json.NewDecoder(io.LimitReader(c, 256<<20)).Decode(&resp); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("the daemon closed the control connection (permission denied?)")
		}
		return nil, fmt.Errorf("bad answer from the daemon: %w", err)
	}
	if !resp.OK {
		return &resp, errors.New(resp.Error)
	}
	return &resp, nil
}

// controlServer answers control requests.
type controlServer struct {
	ln      net.Listener
	allowed map[uint32]bool // peer uids that may talk to us
	handle  func(Request) Response
}

func (cs *controlServer) serve() {
	for {
		c, err := cs.ln.Accept()
		if err != nil {
			return
		}
		go cs.conn(c)
	}
}

func (cs *controlServer) conn(c net.Conn) {
	defer c.Close()
	if uc, ok := c.(*net.UnixConn); ok {
		uid, err := peercred.UID(uc)
		if err != nil || !cs.allowed[uint32(uid)] {
			return
		}
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(io.LimitReader(c, 64<<10)).ReadBytes('\n')
	if err != nil {
		return
	}
	var req Request
	var resp Response
	if err := json.Unmarshal(line, &req); err != nil {
		resp = Response{Error: "bad request: " + err.Error()}
	} else {
		// The answer may take a while (a reload, a CPU profile);
		// extend the deadline.
		_ = c.SetDeadline(time.Now().Add(time.Minute + maxProfile))
		resp = cs.handle(req)
	}
	_ = json.NewEncoder(c).Encode(resp)
}
