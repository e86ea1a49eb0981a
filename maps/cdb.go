package maps

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// CDB files (D. J. Bernstein's constant database, the format of Postfix's
// cdb: tables and of tinycdb) back both hash: and cdb: tables. No Go module
// for it is reachable through the module proxy this project uses, and the
// format is small: a 2048-byte header of 256 (position, slots) pairs, the
// records (key length, value length, key, value), then 256 open-addressing
// hash tables of (hash, record position) slots. Lookups read at most two
// places of the file; a new file is written beside the old one and renamed
// over it, so a reader never sees half a table.

const cdbHeader = 256 * 8

func cdbHash(key []byte) uint32 {
	h := uint32(5381)
	for _, c := range key {
		h = (h<<5 + h) ^ uint32(c)
	}
	return h
}

// cdbReader reads a CDB file.
type cdbReader struct {
	f    *os.File
	size int64
	head [cdbHeader]byte
}

func openCDB(path string) (*cdbReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	r := &cdbReader{f: f, size: st.Size()}
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, cdbHeader), r.head[:]); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: not a cdb file (%v)", path, err)
	}
	return r, nil
}

func (r *cdbReader) Close() error { return r.f.Close() }

func (r *cdbReader) u32(off int64) (uint32, error) {
	var b [4]byte
	if _, err := r.f.ReadAt(b[:], off); err != nil {
		return 0, fmt.Errorf("cdb: read at %d: %w", off, err)
	}
	return binary.LittleEndian.Uint32(b[:]), nil
}

// get returns the first value stored under key.
func (r *cdbReader) get(key []byte) ([]byte, bool, error) {
	h := cdbHash(key)
	slot := h % 256
	tpos := int64(binary.LittleEndian.Uint32(r.head[slot*8:]))
	tlen := int64(binary.LittleEndian.Uint32(r.head[slot*8+4:]))
	if tlen == 0 {
		return nil, false, nil
	}
	start := int64(h>>8) % tlen
	var slotBuf [8]byte
	for i := int64(0); i < tlen; i++ {
		pos := tpos + ((start+i)%tlen)*8
		if _, err := r.f.ReadAt(slotBuf[:], pos); err != nil {
			return nil, false, fmt.Errorf("cdb: corrupt hash table: %w", err)
		}
		sh := binary.LittleEndian.Uint32(slotBuf[:4])
		rpos := int64(binary.LittleEndian.Uint32(slotBuf[4:]))
		if rpos == 0 {
			return nil, false, nil
		}
		if sh != h {
			continue
		}
		klen, err := r.u32(rpos)
		if err != nil {
			return nil, false, err
		}
		vlen, err := r.u32(rpos + 4)
		if err != nil {
			return nil, false, err
		}
		if int(klen) != len(key) {
			continue
		}
		if rpos+8+int64(klen)+int64(vlen) > r.size {
			return nil, false, errors.New("cdb: record runs past the end of the file")
		}
		buf := make([]byte, int(klen)+int(vlen))
		if _, err := r.f.ReadAt(buf, rpos+8); err != nil {
			return nil, false, err
		}
		if string(buf[:klen]) == string(key) {
			return buf[klen:], true, nil
		}
	}
	return nil, false, nil
}

// each calls fn for every record in file order.
func (r *cdbReader) each(fn func(k, v []byte) error) error {
	end := int64(binary.LittleEndian.Uint32(r.head[0:]))
	for i := 1; i < 256; i++ {
		end = min(end, int64(binary.LittleEndian.Uint32(r.head[i*8:])))
	}
	br := bufio.NewReader(io.NewSectionReader(r.f, cdbHeader, end-cdbHeader))
	var lens [8]byte
	for pos := int64(cdbHeader); pos < end; {
		if _, err := io.ReadFull(br, lens[:]); err != nil {
			return err
		}
		klen := binary.LittleEndian.Uint32(lens[:4])
		vlen := binary.LittleEndian.Uint32(lens[4:])
		if pos+8+int64(klen)+int64(vlen) > end {
			return errors.New("cdb: record runs past the data area")
		}
		buf := make([]byte, int(klen)+int(vlen))
		if _, err := io.ReadFull(br, buf); err != nil {
			return err
		}
		if err := fn(buf[:klen], buf[klen:]); err != nil {
			return err
		}
		pos += 8 + int64(klen) + int64(vlen)
	}
	return nil
}

// cdbWriter builds a CDB file in a temporary file next to its target;
// Commit renames it into place.
type cdbWriter struct {
	path string
	f    *os.File
	w    *bufio.Writer
	pos  uint32
	recs [256][]cdbSlot
	err  error
}

type cdbSlot struct{ hash, pos uint32 }

func createCDB(path string) (*cdbWriter, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, err
	}
	w := &cdbWriter{path: path, f: f, w: bufio.NewWriterSize(f, 256<<10), pos: cdbHeader}
	if _, err := f.Seek(cdbHeader, 0); err != nil {
		w.Abort()
		return nil, err
	}
	return w, nil
}

func (w *cdbWriter) add(key, value []byte) {
	if w.err != nil {
		return
	}
	if uint64(w.pos)+8+uint64(len(key))+uint64(len(value)) > 1<<32-1 {
		w.err = errors.New("cdb: table larger than 4 GB")
		return
	}
	h := cdbHash(key)
	w.recs[h%256] = append(w.recs[h%256], cdbSlot{h, w.pos})
	var lens [8]byte
	binary.LittleEndian.PutUint32(lens[:4], uint32(len(key)))
	binary.LittleEndian.PutUint32(lens[4:], uint32(len(value)))
	w.w.Write(lens[:])
	w.w.Write(key)
	_, w.err = w.w.Write(value)
	w.pos += 8 + uint32(len(key)) + uint32(len(value))
}

// commit writes the hash tables and header, fsyncs, and renames the file
// into place with the given mode.
func (w *cdbWriter) commit(mode os.FileMode) error {
	var head [cdbHeader]byte
	var slot [8]byte
	for i := 0; i < 256 && w.err == nil; i++ {
		n := uint32(len(w.recs[i]) * 2)
		binary.LittleEndian.PutUint32(head[i*8:], w.pos)
		binary.LittleEndian.PutUint32(head[i*8+4:], n)
		table := make([]cdbSlot, n)
		for _, s := range w.recs[i] {
			j := (s.hash >> 8) % n
			for table[j].pos != 0 {
				j = (j + 1) % n
			}
			table[j] = s
		}
		for _, s := range table {
			binary.LittleEndian.PutUint32(slot[:4], s.hash)
			binary.LittleEndian.PutUint32(slot[4:], s.pos)
			if _, w.err = w.w.Write(slot[:]); w.err != nil {
				break
			}
		}
		w.pos += n * 8
	}
	if w.err == nil {
		w.err = w.w.Flush()
	}
	if w.err == nil {
		_, w.err = w.f.WriteAt(head[:], 0)
	}
	if w.err == nil {
		w.err = w.f.Chmod(mode)
	}
	if w.err == nil {
		w.err = w.f.Sync()
	}
	if cerr := w.f.Close(); w.err == nil {
		w.err = cerr
	}
	if w.err == nil {
		w.err = os.Rename(w.f.Name(), w.path)
	}
	if w.err != nil {
		os.Remove(w.f.Name())
	}
	return w.err
}

func (w *cdbWriter) Abort() {
	w.f.Close()
	os.Remove(w.f.Name())
}
