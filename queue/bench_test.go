package queue

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

var benchSizes = []struct {
	name string
	size int
}{{"1KB", 1 << 10}, {"100KB", 100 << 10}}

// BenchmarkEnqueue measures creating durable queue files ("queue") beside
// the floor on the same disk in the same run ("raw": create + write +
// fsync + rename of a plain file). The two alternate, so a noisy disk
// affects both alike; compare their msgs/s.
func BenchmarkEnqueue(b *testing.B) {
	env := Envelope{Sender: "s@example.org", Recipients: []Recipient{{Addr: "r@example.net"}}}
	for _, sz := range benchSizes {
		content := body(1, sz.size)
		for _, mode := range []string{"serial", "parallel32"} {
			ops := map[string]func(b *testing.B) func() error{
				"queue": func(b *testing.B) func() error {
					q := newQueue(b)
					return func() error {
						_, err := q.Inject(Incoming, env, bytes.NewReader(content))
						return err
					}
				},
				"raw": func(b *testing.B) func() error {
					dir := b.TempDir()
					var seq atomic.Uint64
					return func() error { return rawWrite(dir, seq.Add(1), content) }
				},
			}
			for _, kind := range []string{"queue", "raw"} {
				b.Run(sz.name+"/"+mode+"/"+kind, func(b *testing.B) {
					op := ops[kind](b)
					b.SetBytes(int64(sz.size))
					if mode == "serial" {
						for i := 0; i < b.N; i++ {
							if err := op(); err != nil {
								b.Fatal(err)
							}
						}
					} else {
						b.SetParallelism(32 / max(runtime.GOMAXPROCS(0), 1))
						b.RunParallel(func(pb *testing.PB) {
							for pb.Next() {
								if err := op(); err != nil {
									b.Error(err)
									return
								}
							}
						})
					}
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
				})
			}
		}
	}
}

func rawWrite(dir string, n uint64, content []byte) error {
	tmp := filepath.Join(dir, fmt.Sprintf("t%d", n))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(content); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, fmt.Sprintf("f%d", n)))
}

// BenchmarkList lists queues of 10,000 and 100,000 messages (spread over
// deferred and incoming, with defer logs) and reports time per listing and
// the peak heap seen while listing: flat memory means the peak does not
// grow with the queue.
func BenchmarkList(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			q := newQueue(b)
			q.sync = func(*os.File) error { return nil } // setup speed only
			env := Envelope{Sender: "s@example.org", Recipients: []Recipient{{Addr: "r@example.net"}, {Addr: "t@example.net"}}}
			content := body(1, 2000)
			for i := 0; i < n; i++ {
				id, err := q.Inject(Incoming, env, bytes.NewReader(content))
				if err != nil {
					b.Fatal(err)
				}
				if i%2 == 0 {
					if err := q.Move(id, Incoming, Deferred); err != nil {
						b.Fatal(err)
					}
					if err := q.AppendStatus(DeferLog, id, Status{Recipient: "r@example.net", Reason: "connect to mx.example.net[192.0.2.1]:25: Connection refused"}); err != nil {
						b.Fatal(err)
					}
				}
			}
			runtime.GC()
			var base runtime.MemStats
			runtime.ReadMemStats(&base)
			var peak atomic.Uint64
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				var ms runtime.MemStats
				tk := time.NewTicker(5 * time.Millisecond)
				defer tk.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tk.C:
						runtime.ReadMemStats(&ms)
						if ms.HeapInuse > peak.Load() {
							peak.Store(ms.HeapInuse)
						}
					}
				}
			}()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				count := 0
				if err := q.List(func(*Listed) error { count++; return nil }); err != nil {
					b.Fatal(err)
				}
				if count != n {
					b.Fatalf("listed %d of %d", count, n)
				}
			}
			b.StopTimer()
			close(stop)
			<-done
			b.ReportMetric(float64(peak.Load()-min(peak.Load(), base.HeapInuse))/(1<<20), "peak-heap-MB")
			b.ReportMetric(float64(n)/(b.Elapsed().Seconds()/float64(b.N)), "msgs/s")
		})
	}
}
