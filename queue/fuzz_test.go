package queue

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzQueueFile feeds arbitrary bytes to the queue file parser: it must
// return a message or an error, never panic, and a message it returns must
// describe content that lies inside the file.
func FuzzQueueFile(f *testing.F) {
	dir := f.TempDir()
	q := New(dir, nil, 1)
	if err := Create(dir, Owner{UID: -1, GID: -1, SetgidGID: -1}); err != nil {
		f.Fatal(err)
	}
	id, err := q.Inject(Incoming, Envelope{
		Sender: "s@example.org", Attrs: map[string]string{"client_name": "x"},
		Recipients: []Recipient{{Addr: "r@example.net", Orig: "R@example.net", ORCPT: "rfc822;R@example.net", Notify: 6}},
		Arrival:    time.Unix(1700000000, 0),
	}, strings.NewReader("Subject: x\n\nbody\n"))
	if err != nil {
		f.Fatal(err)
	}
	seed, _ := os.ReadFile(q.Path(Incoming, id))
	f.Add(seed)
	f.Add(seed[:len(seed)-3])
	f.Add([]byte{})
	f.Add(appendRecord(nil, recVersion, formatVersion))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "m")
		if err := os.WriteFile(path, data, 0o700); err != nil {
			t.Fatal(err)
		}
		fh, err := OpenPath(path)
		if err != nil {
			return
		}
		defer fh.Close()
		if fh.ContentOffset < 0 || fh.ContentOffset+fh.ContentSize > int64(len(data)) {
			t.Fatalf("content [%d,+%d) outside a %d-byte file", fh.ContentOffset, fh.ContentSize, len(data))
		}
		n, err := io.Copy(io.Discard, fh.Content())
		if err != nil || n != fh.ContentSize {
			t.Fatalf("content read %d of %d: %v", n, fh.ContentSize, err)
		}
		for _, r := range fh.Recipients {
			if r.Offset < 0 || r.Offset >= int64(len(data)) || (data[r.Offset] != recRcpt && data[r.Offset] != recDone) {
				t.Fatalf("recipient offset %d does not point at its record", r.Offset)
			}
		}
	})
}
