package smtpd

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
)

// BenchmarkAccept measures whole SMTP transactions as smtp-source sends
// them (HELO, MAIL, RCPT, DATA, QUIT, one connection per message), each
// ending with the queue file fsynced: messages per second in one session
// at a time, and with parallel clients.
func BenchmarkAccept(b *testing.B) {
	for _, size := range []int{1 << 10, 100 << 10} {
		for _, par := range []int{1, 20} {
			b.Run(fmt.Sprintf("size=%dk/clients=%d", size>>10, par), func(b *testing.B) {
				ts := startServerTB(b, "")
				line := strings.Repeat("x", 78) + "\r\n"
				body := "Subject: bench\r\n\r\n" + strings.Repeat(line, size/len(line)) + ".\r\n"
				b.SetBytes(int64(len(body)))
				b.SetParallelism(par)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := oneMessage(ts.addr, body); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

func oneMessage(addr, body string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	br := bufio.NewReader(c)
	expect := func(code string) error {
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return err
			}
			if !strings.HasPrefix(l, code) {
				return fmt.Errorf("got %q, want %s", l, code)
			}
			if len(l) > 3 && l[3] == ' ' {
				return nil
			}
		}
	}
	steps := []struct{ send, code string }{
		{"", "220"}, {"HELO client.bench.example\r\n", "250"}, {"MAIL FROM:<sender@client.example>\r\n", "250"},
		{"RCPT TO:<user@remote.example>\r\n", "250"}, {"DATA\r\n", "354"}, {body, "250"}, {"QUIT\r\n", "221"},
	}
	for _, s := range steps {
		if s.send != "" {
			if _, err := c.Write([]byte(s.send)); err != nil {
				return err
			}
		}
		if err := expect(s.code); err != nil {
			return err
		}
	}
	return nil
}
