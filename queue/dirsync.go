package queue

import (
	"os"
	"sync"
)

// dirSyncer makes directory entries durable with group commit: one fsync of
// a directory covers every entry created in it before that fsync started,
// so concurrent writers share fsyncs instead of queueing one each. A
// caller waits for the first fsync that starts after its call.
type dirSyncer struct {
	dir  string
	sync func(*os.File) error

	mu      sync.Mutex
	cond    *sync.Cond
	started uint64 // fsyncs started
	done    uint64 // fsyncs finished
	running bool
	failed  map[uint64]error // errors of finished fsyncs, by number
}

func newDirSyncer(dir string, fsync func(*os.File) error) *dirSyncer {
	d := &dirSyncer{dir: dir, sync: fsync, failed: map[uint64]error{}}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// Sync returns once an fsync of the directory that started after the call
// has finished, with that fsync's error.
func (d *dirSyncer) Sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	target := d.started + 1
	for d.done < target {
		if d.running {
			d.cond.Wait()
			continue
		}
		d.running = true
		d.started++
		n := d.started
		d.mu.Unlock()
		err := syncDir(d.dir, d.sync)
		d.mu.Lock()
		d.running = false
		d.done = n
		if err != nil {
			d.failed[n] = err
		}
		d.cond.Broadcast()
	}
	// The fsync that covered us is number target: the first one started
	// after our call (fsyncs run one at a time, in order).
	err := d.failed[target]
	if len(d.failed) > 64 {
		for n := range d.failed {
			if n < target {
				delete(d.failed, n)
			}
		}
	}
	return err
}

// dirSync returns the syncer of a directory.
func (q *Queue) dirSync(dir string) *dirSyncer {
	q.syncMu.Lock()
	defer q.syncMu.Unlock()
	if q.syncers == nil {
		q.syncers = map[string]*dirSyncer{}
	}
	d, ok := q.syncers[dir]
	if !ok {
		d = newDirSyncer(dir, q.sync)
		q.syncers[dir] = d
	}
	return d
}
