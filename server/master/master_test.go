package master

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mailsrv/internal/testutil"
	"mailsrv/maillog"
)

func TestSupervisorRestartsPanickingService(t *testing.T) {
	t.Parallel()
	logs := &testutil.SyncBuffer{}
	sup := NewSupervisor(maillog.New(logs, "test").Role("mailsrv", "master"), time.Second)
	sup.MinBackoff, sup.MaxBackoff, sup.FailureAlarm = time.Millisecond, 20*time.Millisecond, 3
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var crashes, healthyStarts, ticks atomic.Int32
	sup.Start(ctx, "crashy", func() (Service, error) {
		return ServiceFunc(func(ctx context.Context) error {
			n := crashes.Add(1)
			if n <= 4 {
				panic(fmt.Sprintf("boom %d", n))
			}
			<-ctx.Done()
			return nil
		}), nil
	})
	sup.Start(ctx, "healthy", func() (Service, error) {
		healthyStarts.Add(1)
		return ServiceFunc(func(ctx context.Context) error {
			tk := time.NewTicker(time.Millisecond)
			defer tk.Stop()
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-tk.C:
					ticks.Add(1)
				}
			}
		}), nil
	})

	testutil.Eventually(t, "crashy to run a fifth time", func() bool { return crashes.Load() >= 5 })
	testutil.Eventually(t, "crashy to be running", func() bool {
		for _, s := range sup.Status() {
			if s.Name == "crashy" {
				return s.State == "running" && s.Restarts == 4
			}
		}
		return false
	})
	// The healthy service was never restarted and kept working.
	before := ticks.Load()
	testutil.Eventually(t, "healthy to keep ticking", func() bool { return ticks.Load() > before+5 })
	if n := healthyStarts.Load(); n != 1 {
		t.Errorf("healthy service started %d times", n)
	}
	out := logs.String()
	if !strings.Contains(out, "mailsrv/master[") || !strings.Contains(out, "warning: service crashy failed: panic: boom 1; restarting in 1ms") {
		t.Errorf("no restart warning in log:\n%s", out)
	}
	if !strings.Contains(out, "error: service crashy keeps failing (3 times in a row): panic: boom 3") {
		t.Errorf("repeated failure not reported loudly:\n%s", out)
	}
	sup.StopAll()
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := sup.Wait(wctx); err != nil {
		t.Fatal(err)
	}
}

func TestSupervisorRestartsFailingFactory(t *testing.T) {
	t.Parallel()
	sup := NewSupervisor(maillog.New(&testutil.SyncBuffer{}, "test").Role("mailsrv", "master"), time.Second)
	sup.MinBackoff, sup.MaxBackoff = time.Millisecond, 5*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var tries atomic.Int32
	started := make(chan struct{})
	sup.Start(ctx, "flaky", func() (Service, error) {
		if tries.Add(1) < 3 {
			return nil, errors.New("socket not ready")
		}
		return ServiceFunc(func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			return nil
		}), nil
	})
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("service never started")
	}
	if st := sup.Status()[0]; st.LastErr != "cannot start: socket not ready" || st.Restarts != 2 {
		t.Errorf("status = %+v", st)
	}
}

// The tests below run the real daemon in-process with a test role: a line
// server that greets with the value of smtpd_banner and echoes lines back,
// standing in for a network service.
const testCommand = "qmqpd"

func init() {
	roles[testCommand] = func(env *Env) (Service, error) {
		banner := env.Params.SmtpdBanner
		return ServiceFunc(func(ctx context.Context) error {
			var wg sync.WaitGroup
			go func() {
				<-ctx.Done()
				env.Listener.Close()
			}()
			for {
				c, err := env.Listener.Accept()
				if err != nil {
					wg.Wait()
					return nil
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer c.Close()
					fmt.Fprintf(c, "220 %s\r\n", banner)
					sc := bufio.NewScanner(c)
					for sc.Scan() {
						if sc.Text() == "QUIT" {
							return
						}
						fmt.Fprintf(c, "250 %s %s\r\n", banner, sc.Text())
					}
				}()
			}
		}), nil
	}
}

func writeConfig(t *testing.T, file, addr, banner string) {
	t.Helper()
	text := fmt.Sprintf(`
queue_directory = "spool"
maillog_file = "maillog"
myhostname = "mx.example.test"
smtpd_banner = %q
mailsrv_stop_timeout = "5s"

[[service]]
name = "test"
type = "inet"
listen = %q
command = %q
`, banner, addr, testCommand)
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startDaemon runs the daemon in-process and waits until it answers.
func startDaemon(t *testing.T, file string) (queueDir string, done chan error) {
	t.Helper()
	return startDaemonWith(t, file, nil)
}

// startDaemonWith is startDaemon with test options.
func startDaemonWith(t *testing.T, file string, opts func(*Options)) (queueDir string, done chan error) {
	t.Helper()
	queueDir = filepath.Join(filepath.Dir(file), "spool")
	done = make(chan error, 1)
	o := Options{ConfigFile: file, keepPrivileges: true}
	if opts != nil {
		opts(&o)
	}
	go func() { done <- Run(o) }()
	testutil.Eventually(t, "the daemon to answer", func() bool {
		select {
		case err := <-done:
			t.Fatalf("daemon exited: %v", err)
		default:
		}
		_, err := Call(queueDir, Request{Cmd: "status"}, time.Second)
		return err == nil
	})
	return queueDir, done
}

type lineConn struct {
	c  net.Conn
	sc *bufio.Scanner
}

func dial(t *testing.T, addr string) *lineConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &lineConn{c: c, sc: bufio.NewScanner(c)}
}

func (l *lineConn) read(t *testing.T) string {
	t.Helper()
	if !l.sc.Scan() {
		t.Fatalf("connection closed: %v", l.sc.Err())
	}
	return l.sc.Text()
}

func (l *lineConn) cmd(t *testing.T, s string) string {
	t.Helper()
	fmt.Fprintf(l.c, "%s\r\n", s)
	return l.read(t)
}

func TestDaemonReloadKeepsConnectionsAndRefusesBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "mailsrv.toml")
	addr := testutil.FreeAddr(t)
	writeConfig(t, file, addr, "one")
	queueDir, done := startDaemon(t, file)

	old := dial(t, addr)
	if got := old.read(t); got != "220 one" {
		t.Fatalf("greeting %q", got)
	}

	// A reload applies the new config to new connections; the session in
	// progress goes on with the old one, on the same socket.
	writeConfig(t, file, addr, "two")
	if _, err := Call(queueDir, Request{Cmd: "reload"}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := old.cmd(t, "PING"); got != "250 one PING" {
		t.Errorf("old session after reload: %q", got)
	}
	fresh := dial(t, addr)
	if got := fresh.read(t); got != "220 two" {
		t.Errorf("new session after reload: %q", got)
	}

	// A broken file is refused and the running config stays.
	if err := os.WriteFile(file, []byte("smtpd_banner = \"three\"\nmydestinaton = \"x\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Call(queueDir, Request{Cmd: "reload"}, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "keeping the current configuration") || !strings.Contains(err.Error(), "unknown key mydestinaton at") {
		t.Errorf("broken reload: %v", err)
	}
	third := dial(t, addr)
	if got := third.read(t); got != "220 two" {
		t.Errorf("after refused reload: %q", got)
	}
	if got := fresh.cmd(t, "x"); got != "250 two x" {
		t.Errorf("session across refused reload: %q", got)
	}

	// Stop: sessions in progress may finish (QUIT), then the daemon exits.
	if _, err := Call(queueDir, Request{Cmd: "stop"}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*lineConn{old, fresh, third} {
		fmt.Fprintf(c.c, "QUIT\r\n")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("port still open after stop")
	}
	if pid, _ := RunningPID(queueDir); pid != 0 {
		t.Errorf("RunningPID after stop = %d", pid)
	}
	logs, _ := os.ReadFile(filepath.Join(dir, "maillog"))
	for _, want := range []string{
		"mx mailsrv/master[",
		"daemon started -- version ",
		"reload -- version ",
		"warning: reload refused, keeping the current configuration: unknown key mydestinaton at",
		"terminating on request of postfix stop",
		"daemon stopped",
	} {
		if !strings.Contains(string(logs), want) {
			t.Errorf("mail log lacks %q:\n%s", want, logs)
		}
	}
}

func TestDaemonRefusesSecondInstanceAndBusyPort(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "mailsrv.toml")
	addr := testutil.FreeAddr(t)
	writeConfig(t, file, addr, "one")
	queueDir, done := startDaemon(t, file)
	err := Run(Options{ConfigFile: file, keepPrivileges: true})
	if err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second daemon: %v", err)
	}
	// Another queue, same port: the bind fails and is reported.
	dir2 := t.TempDir()
	file2 := filepath.Join(dir2, "mailsrv.toml")
	writeConfig(t, file2, addr, "other")
	err = Run(Options{ConfigFile: file2, keepPrivileges: true})
	if err == nil || !strings.Contains(err.Error(), "bind "+addr) {
		t.Errorf("busy port: %v", err)
	}
	if pid, _ := RunningPID(filepath.Join(dir2, "spool")); pid != 0 {
		t.Errorf("failed daemon left a lock: %d", pid)
	}
	if _, err := Call(queueDir, Request{Cmd: "stop"}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	<-done
}

func TestControlDown(t *testing.T) {
	t.Parallel()
	_, err := Call(t.TempDir(), Request{Cmd: "status"}, time.Second)
	if !errors.Is(err, ErrDown) {
		t.Errorf("Call on a stopped daemon: %v", err)
	}
}

// TestSystemdNotify checks the Type=notify protocol: READY=1 once serving,
// RELOADING=1 then READY=1 around a reload, STOPPING=1 on stop. Not
// parallel: NOTIFY_SOCKET is process-wide.
func TestSystemdNotify(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	file := filepath.Join(dir, "mailsrv.toml")
	writeConfig(t, file, testutil.FreeAddr(t), "n")
	queueDir, done := startDaemon(t, file)
	next := func() string {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 256)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
	if m := next(); m != "READY=1" {
		t.Errorf("first notification %q", m)
	}
	if _, err := Call(queueDir, Request{Cmd: "reload"}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if m := next(); !strings.HasPrefix(m, "RELOADING=1") {
		t.Errorf("reload notification %q", m)
	}
	if m := next(); m != "READY=1" {
		t.Errorf("after reload %q", m)
	}
	if _, err := Call(queueDir, Request{Cmd: "stop"}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if m := next(); m != "STOPPING=1" {
		t.Errorf("stop notification %q", m)
	}
	<-done
}
