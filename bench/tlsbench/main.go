// Command tlsbench measures STARTTLS handshakes per second against an
// SMTP server: each session is greeting, EHLO, STARTTLS, the handshake,
// EHLO, QUIT. With -resume the client keeps a TLS session cache, so every
// session after the first resumes (TLS 1.3 tickets) instead of doing a
// full handshake. Used by bench/tls-bench.sh to compare mailsrv and
// Postfix in one run.
package main

import (
	"bufio"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("a", "127.0.0.1:25", "server address")
	n := flag.Int("n", 2000, "sessions")
	conc := flag.Int("c", 10, "concurrent sessions")
	resume := flag.Bool("resume", false, "resume TLS sessions (a client session cache)")
	label := flag.String("l", "target", "label of the RESULT line")
	flag.Parse()
	if *n < 1 || *n > 1000000 || *conc < 1 || *conc > 1000 {
		fmt.Fprintln(os.Stderr, "tlsbench: -n 1..1000000, -c 1..1000")
		os.Exit(2)
	}
	cfg := &tls.Config{InsecureSkipVerify: true}
	if *resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1024)
	}
	var next, fails, resumed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(10 * time.Minute)
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(*n) && time.Now().Before(deadline) {
				r, err := session(*addr, cfg)
				if err != nil {
					fails.Add(1)
					continue
				}
				if r {
					resumed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	ok := int64(*n) - fails.Load()
	fmt.Printf("RESULT target=%s resume=%v sessions=%d failed=%d resumed=%d seconds=%.2f handshakes_per_s=%.1f\n",
		*label, *resume, ok, fails.Load(), resumed.Load(), el, float64(ok)/el)
	if fails.Load() > 0 {
		os.Exit(1)
	}
}

// session runs one STARTTLS session and reports whether TLS resumed.
func session(addr string, cfg *tls.Config) (bool, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return false, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	reply := func() (string, error) {
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return "", err
			}
			if len(l) < 4 || l[3] != '-' {
				return l, nil
			}
		}
	}
	if _, err := reply(); err != nil {
		return false, err
	}
	fmt.Fprintf(c, "EHLO tlsbench.example\r\n")
	if _, err := reply(); err != nil {
		return false, err
	}
	fmt.Fprintf(c, "STARTTLS\r\n")
	if r, err := reply(); err != nil || !strings.HasPrefix(r, "220") {
		return false, fmt.Errorf("STARTTLS: %q %v", r, err)
	}
	tc := tls.Client(c, cfg)
	if err := tc.Handshake(); err != nil {
		return false, err
	}
	tb := bufio.NewReader(tc)
	fmt.Fprintf(tc, "EHLO tlsbench.example\r\n")
	for {
		l, err := tb.ReadString('\n')
		if err != nil {
			return false, err
		}
		if len(l) < 4 || l[3] != '-' {
			break
		}
	}
	fmt.Fprintf(tc, "QUIT\r\n")
	_, _ = tb.ReadString('\n')
	// TLS 1.3 tickets arrive after the handshake: reading QUIT's reply
	// lets the client store the ticket for the next session.
	return tc.ConnectionState().DidResume, nil
}
