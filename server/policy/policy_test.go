package policy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeServer answers each request by its recipient: "garbage" gets a
// line that is not name=value, "noaction" an answer without action,
// "hang" nothing, "close" a closed connection, anything else
// action=DUNNO <recipient>. It counts connections and keeps requests.
type fakeServer struct {
	ln    net.Listener
	conns atomic.Int32
	mu    sync.Mutex
	reqs  []map[string]string
}

func startFake(t *testing.T) *fakeServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.conns.Add(1)
			go f.serve(c)
		}
	}()
	return f
}

func (f *fakeServer) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req := map[string]string{}
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			l = strings.TrimRight(l, "\n")
			if l == "" {
				break
			}
			k, v, _ := strings.Cut(l, "=")
			req[k] = v
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, req)
		f.mu.Unlock()
		switch req["recipient"] {
		case "garbage":
			c.Write([]byte("this is not the protocol\n\n"))
		case "noaction":
			c.Write([]byte("foo=bar\n\n"))
		case "hang":
			time.Sleep(time.Hour)
		case "close":
			return
		default:
			c.Write([]byte("action=DUNNO " + req["recipient"] + "\n\n"))
		}
	}
}

func TestAsk(t *testing.T) {
	t.Parallel()
	f := startFake(t)
	c, err := New("inet:"+f.ln.Addr().String(), Options{Timeout: 500 * time.Millisecond, MaxIdle: time.Minute, MaxTTL: time.Hour, TryLimit: 2, RetryDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		action, err := c.Ask(ctx, []Attr{{Name: "request", Value: "smtpd_access_policy"}, {Name: "recipient", Value: "a@b"}, {Name: "helo_name", Value: "two\nlines"}})
		if err != nil || action != "DUNNO a@b" {
			t.Fatalf("Ask = %q, %v", action, err)
		}
	}
	if n := f.conns.Load(); n != 1 {
		t.Errorf("%d connections for 3 requests, want 1 reused", n)
	}
	f.mu.Lock()
	if f.reqs[0]["helo_name"] != "two lines" {
		t.Errorf("a value's line end went through: %q", f.reqs[0]["helo_name"])
	}
	f.mu.Unlock()
	for _, rcpt := range []string{"garbage", "noaction", "hang", "close"} {
		start := time.Now()
		_, err := c.Ask(ctx, []Attr{{Name: "recipient", Value: rcpt}})
		if err == nil {
			t.Errorf("%s: no error", rcpt)
		}
		if (rcpt == "garbage" || rcpt == "noaction") && !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want a protocol error", rcpt, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s took %v", rcpt, d)
		}
	}
	if _, err := c.Ask(ctx, []Attr{{Name: "recipient", Value: "after@trouble"}}); err != nil {
		t.Errorf("after the failures: %v", err)
	}
	for _, bad := range []string{"tcp:1.2.3.4:5", "unix:relative", "inet:nohost"} {
		if _, err := New(bad, Options{}); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
}

// FuzzAnswer: whatever a policy server sends back, the client returns an
// action or an error, in bounded time, and never panics.
func FuzzAnswer(f *testing.F) {
	f.Add([]byte("action=DUNNO\n\n"))
	f.Add([]byte("action=\n\n"))
	f.Add([]byte("x\n\n"))
	f.Add([]byte("action=REJECT no\nfoo=bar\n\nextra"))
	f.Fuzz(func(t *testing.T, answer []byte) {
		server, client := net.Pipe()
		go func() {
			buf := make([]byte, 4096)
			server.Read(buf)
			server.Write(answer)
			server.Close()
		}()
		cn := &conn{c: client, br: bufio.NewReaderSize(client, maxLine)}
		action, err := cn.exchange("request=smtpd_access_policy\n\n", time.Second)
		if err == nil && strings.TrimSpace(action) == "" {
			t.Fatalf("empty action accepted from %q", answer)
		}
		client.Close()
	})
}
