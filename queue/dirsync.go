package queue

import (
	"os"
	"sync"

	"golang.org/x/sys/unix"
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

// nameCovered reports whether, on the file system of the queue, the fsync
// of a new file also makes its directory entry durable, so that the
// directory fsync after it can be left out. That holds for ext4 (with a
// journal the link is in the inode's transaction, which the file's fsync
// commits together with every earlier one; without one, ext4 syncs the
// parent of a new inode itself), XFS (the log is forced up to the
// inode's last change, which includes the link) and btrfs (fsync logs
// the inode's new names). Anywhere else the directory is fsynced too.
// This matters: the directory changes all the time under concurrent
// sessions, so its fsync is almost always a second journal commit each
// 250 reply has to wait for.
func (q *Queue) nameCovered() bool {
	q.coveredOnce.Do(func() {
		if q.alwaysSyncDir {
			return
		}
		var st unix.Statfs_t
		if err := unix.Statfs(q.Dir, &st); err == nil {
			q.covered = fsyncCoversName(int64(st.Type))
		}
	})
	return q.covered
}

// File system magic numbers (statfs(2)).
const (
	ext4Magic  = 0xEF53 // ext2, ext3 and ext4, all run by the ext4 driver
	xfsMagic   = 0x58465342
	btrfsMagic = 0x9123683E
)

func fsyncCoversName(magic int64) bool {
	switch magic {
	case ext4Magic, xfsMagic, btrfsMagic:
		return true
	}
	return false
}
