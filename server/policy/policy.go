// Package policy is the client side of Postfix's policy delegation
// protocol (SMTPD_POLICY_README), what smtpd's check_policy_service
// talks to a policy server (postgrey, policyd-spf, …) with: a request of
// name=value lines ended by an empty line, answered by action=… and an
// empty line. Connections are kept and reused per server, within an idle
// time, a lifetime and a request count; every exchange is bounded by a
// timeout and by the size of what the server may send, and a server that
// hangs, closes or talks garbage is an error for the caller to turn into
// its default action, never a stuck session.
package policy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// Options are a server's smtpd_policy_service_* settings.
type Options struct {
	Timeout      time.Duration // one request and its answer
	MaxIdle      time.Duration // an idle connection is closed after this
	MaxTTL       time.Duration // a connection is not used past this age
	TryLimit     int           // attempts per request
	RetryDelay   time.Duration // between attempts
	RequestLimit int           // requests per connection (0 = no limit)
}

// Attr is one request attribute.
type Attr struct{ Name, Value string }

// Client talks to one policy server.
type Client struct {
	network, address string
	o                Options

	mu   sync.Mutex
	idle []*conn
}

type conn struct {
	c        net.Conn
	br       *bufio.Reader
	born     time.Time
	lastUsed time.Time
	uses     int
}

// Limits on what a server may answer.
const (
	maxLine  = 4096
	maxLines = 100
)

// New returns a client for an endpoint inet:host:port or unix:path (an
// absolute path: the caller resolves a relative one).
func New(endpoint string, o Options) (*Client, error) {
	c := &Client{o: o}
	switch {
	case strings.HasPrefix(endpoint, "inet:"):
		c.network, c.address = "tcp", endpoint[len("inet:"):]
		if _, _, err := net.SplitHostPort(c.address); err != nil {
			return nil, fmt.Errorf("bad policy server %q: %v", endpoint, err)
		}
	case strings.HasPrefix(endpoint, "unix:") && strings.HasPrefix(endpoint[len("unix:"):], "/"):
		c.network, c.address = "unix", endpoint[len("unix:"):]
	default:
		return nil, fmt.Errorf("bad policy server %q: want inet:host:port or unix:/path", endpoint)
	}
	if c.o.TryLimit < 1 {
		c.o.TryLimit = 1
	}
	return c, nil
}

// ErrProtocol is a server that answered what is not the protocol.
var ErrProtocol = errors.New("policy server protocol error")

// Ask sends a request and returns the action the server answers, trying
// again (on a new connection) after a failure, up to the try limit.
func (c *Client) Ask(ctx context.Context, attrs []Attr) (string, error) {
	var req strings.Builder
	for _, a := range attrs {
		// A value cannot hold a line end: the protocol has no escape.
		req.WriteString(a.Name + "=" + strings.NewReplacer("\r", " ", "\n", " ").Replace(a.Value) + "\n")
	}
	req.WriteString("\n")
	var lastErr error
	for try := 0; try < c.o.TryLimit; try++ {
		if try > 0 {
			select {
			case <-time.After(c.o.RetryDelay):
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		cn, err := c.get(ctx)
		if err != nil {
			lastErr = err
			continue
		}
		action, err := cn.exchange(req.String(), c.o.Timeout)
		if err != nil {
			cn.c.Close()
			lastErr = err
			continue
		}
		c.put(cn)
		return action, nil
	}
	return "", lastErr
}

// get takes an idle connection that is still young enough, or dials.
func (c *Client) get(ctx context.Context) (*conn, error) {
	now := time.Now()
	c.mu.Lock()
	for len(c.idle) > 0 {
		cn := c.idle[len(c.idle)-1]
		c.idle = c.idle[:len(c.idle)-1]
		if now.Sub(cn.lastUsed) < c.o.MaxIdle && now.Sub(cn.born) < c.o.MaxTTL {
			c.mu.Unlock()
			return cn, nil
		}
		cn.c.Close()
	}
	c.mu.Unlock()
	d := net.Dialer{Timeout: c.o.Timeout}
	nc, err := d.DialContext(ctx, c.network, c.address)
	if err != nil {
		return nil, err
	}
	return &conn{c: nc, br: bufio.NewReaderSize(nc, maxLine), born: now}, nil
}

// put keeps a connection for the next request, unless it has served its
// request limit.
func (c *Client) put(cn *conn) {
	cn.uses++
	cn.lastUsed = time.Now()
	if c.o.RequestLimit > 0 && cn.uses >= c.o.RequestLimit {
		cn.c.Close()
		return
	}
	c.mu.Lock()
	c.idle = append(c.idle, cn)
	c.mu.Unlock()
	// Close it if it stays idle too long.
	time.AfterFunc(c.o.MaxIdle+time.Second, c.expire)
}

func (c *Client) expire() {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := c.idle[:0]
	for _, cn := range c.idle {
		if now.Sub(cn.lastUsed) >= c.o.MaxIdle || now.Sub(cn.born) >= c.o.MaxTTL {
			cn.c.Close()
			continue
		}
		keep = append(keep, cn)
	}
	c.idle = keep
}

// Close ends the idle connections.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cn := range c.idle {
		cn.c.Close()
	}
	c.idle = nil
}

// exchange sends a request and reads the answer: name=value lines up to
// an empty line, one of them action=.
func (cn *conn) exchange(req string, timeout time.Duration) (string, error) {
	if timeout > 0 {
		_ = cn.c.SetDeadline(time.Now().Add(timeout))
	}
	if _, err := cn.c.Write([]byte(req)); err != nil {
		return "", err
	}
	action, found := "", false
	for n := 0; ; n++ {
		if n > maxLines {
			return "", fmt.Errorf("%w: more than %d lines", ErrProtocol, maxLines)
		}
		line, err := cn.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", fmt.Errorf("%w: a line longer than %d bytes", ErrProtocol, maxLine)
		}
		if err != nil {
			return "", err
		}
		text := strings.TrimRight(string(line), "\r\n")
		if text == "" {
			break
		}
		name, value, ok := strings.Cut(text, "=")
		if !ok {
			return "", fmt.Errorf("%w: %q is not name=value", ErrProtocol, clip(text))
		}
		if name == "action" && !found {
			action, found = value, true
		}
	}
	if !found || strings.TrimSpace(action) == "" {
		return "", fmt.Errorf("%w: no action", ErrProtocol)
	}
	return action, nil
}

func clip(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}
