package master

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// sharedListener is a socket the master owns across reloads and restarts.
// The master binds it once (before dropping privileges) and accepts on it;
// each instance of the service gets a handle whose Accept receives those
// connections. Closing a handle retires that instance without closing the
// socket, so a reload or a restarted service never drops the listening
// port and never loses a connection waiting in the kernel backlog.
type sharedListener struct {
	ln    net.Listener
	conns chan net.Conn
	stop  chan struct{} // closed by close()
	done  chan struct{} // closed when the accept loop has ended
	once  sync.Once
}

func newSharedListener(ln net.Listener) *sharedListener {
	sl := &sharedListener{ln: ln, conns: make(chan net.Conn), stop: make(chan struct{}), done: make(chan struct{})}
	go sl.acceptLoop()
	return sl
}

func (sl *sharedListener) acceptLoop() {
	defer close(sl.done)
	for {
		c, err := sl.ln.Accept()
		if err != nil {
			select {
			case <-sl.stop:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors or a similar passing fault: wait a
			// little instead of spinning, and keep the port open.
			time.Sleep(100 * time.Millisecond)
			continue
		}
		select {
		case sl.conns <- c:
		case <-sl.stop:
			c.Close()
			return
		}
	}
}

// requeue hands a connection to whichever instance accepts next, or closes
// it when the socket is closed.
func (sl *sharedListener) requeue(c net.Conn) {
	select {
	case sl.conns <- c:
	case <-sl.stop:
		c.Close()
	}
}

// close stops accepting; handles then see net.ErrClosed.
func (sl *sharedListener) close() {
	sl.once.Do(func() {
		close(sl.stop)
		sl.ln.Close()
	})
	<-sl.done
}

// handle returns a listener for one service instance.
func (sl *sharedListener) handle() net.Listener {
	return &listenerHandle{sl: sl, closed: make(chan struct{})}
}

type listenerHandle struct {
	sl     *sharedListener
	closed chan struct{}
	once   sync.Once
}

func (h *listenerHandle) Accept() (net.Conn, error) {
	select {
	case c := <-h.sl.conns:
		select {
		case <-h.closed:
			// Retired while taking it: the connection belongs to the
			// next instance.
			go h.sl.requeue(c)
			return nil, net.ErrClosed
		default:
		}
		return c, nil
	case <-h.closed:
		return nil, net.ErrClosed
	case <-h.sl.done:
		return nil, net.ErrClosed
	}
}

// Close retires this handle only; the socket stays open for the next
// instance.
func (h *listenerHandle) Close() error {
	h.once.Do(func() { close(h.closed) })
	return nil
}

func (h *listenerHandle) Addr() net.Addr { return h.sl.ln.Addr() }

// listen binds an inet (host:port) or unix (path) socket.
func listen(typ, addr string) (net.Listener, error) {
	if typ == "unix" {
		if st, err := os.Lstat(addr); err == nil && st.Mode()&os.ModeSocket != 0 {
			os.Remove(addr) // a stale socket from an earlier run
		}
		return net.Listen("unix", addr)
	}
	// No TCP keepalive on accepted connections (Go's default sets four
	// socket options on each): as in Postfix, smtpd_timeout ends a
	// session whose client has gone.
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", addr)
}

var _ net.Listener = (*listenerHandle)(nil)
