// Command mkqueue fills a mailsrv queue with test messages, for the
// large-queue measurements of docs/PERFORMANCE.md (postqueue -p on
// 200,000 deferred messages, restart time, memory). It writes through the
// queue package, as cleanup does (each file fsynced), with the daemon
// stopped.
//
//	go run ./bench/mkqueue -c mailsrv.toml -n 200000 [-size 1024] [-queue deferred] [-retry 1h]
//
// Deferred messages get a retry time -retry ahead (the file's mtime), so
// that qmgr leaves them alone until then. Run it as mail_owner, or give
// the files to mail_owner afterwards (chown -R): the daemon cannot read
// root's 0700 queue files.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mailsrv/config"
	"mailsrv/queue"
)

func main() {
	cfgFile := flag.String("c", "mailsrv.toml", "configuration file (for queue_directory and the hash settings)")
	n := flag.Int("n", 1000, "messages to write")
	size := flag.Int("size", 1024, "content bytes per message")
	name := flag.String("queue", queue.Deferred, "queue to fill (incoming, deferred, hold)")
	retry := flag.Duration("retry", time.Hour, "deferred: next retry this far ahead")
	workers := flag.Int("j", 8, "files written at once (fsyncs overlap)")
	flag.Parse()
	if err := run(*cfgFile, *n, *size, *name, *retry, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "mkqueue:", err)
		os.Exit(1)
	}
}

func run(cfgFile string, n, size int, name string, retry time.Duration, workers int) error {
	switch name {
	case queue.Incoming, queue.Deferred, queue.Hold:
	default:
		return fmt.Errorf("-queue %s: one of incoming, deferred, hold", name)
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		return err
	}
	q := queue.FromConfig(cfg.Params)
	if err := queue.Create(q.Dir, queue.Owner{UID: -1, GID: -1, SetgidGID: -1}); err != nil {
		return err
	}
	line := strings.Repeat("x", 70) + "\n"
	body := "Subject: queued for a measurement\n\n" + strings.Repeat(line, max(size/len(line), 1))
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				env := queue.Envelope{Sender: "sender@bench.example",
					Recipients: []queue.Recipient{{Addr: fmt.Sprintf("r%d@remote.example", i)}}}
				id, err := q.Inject(name, env, strings.NewReader(body))
				if err == nil && name == queue.Deferred {
					err = q.SetTimes(name, id, time.Now().Add(retry))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Printf("%d messages in %s/%s in %s\n", n, q.Dir, name, time.Since(start).Round(time.Millisecond))
	return nil
}
