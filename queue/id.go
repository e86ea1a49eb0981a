package queue

import (
	"fmt"
	"strings"
	"time"
)

// Queue IDs follow Postfix's long-ID scheme (enable_long_queue_ids = yes),
// which mailsrv always uses because it never repeats: the creation time in
// seconds (base 52, at least 6 digits) and microseconds (base 52, exactly 4
// digits), the letter z, and the file's inode number (base 51, the alphabet
// without z). Example: 4TpXvC0sf8z9HdB. The alphabet is digits and
// consonants only, so an ID never spells a word and is safe as a file name.
const (
	idAlphabet = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxy" + "z"
	base52     = 52 // idAlphabet
	base51     = 51 // idAlphabet without the z
)

var idValue [256]int8

func init() {
	for i := range idValue {
		idValue[i] = -1
	}
	for i := 0; i < len(idAlphabet); i++ {
		idValue[idAlphabet[i]] = int8(i)
	}
}

func encode(n uint64, base uint64, width int) string {
	var buf [16]byte
	i := len(buf)
	for n > 0 || len(buf)-i < width {
		i--
		buf[i] = idAlphabet[n%base]
		n /= base
	}
	return string(buf[i:])
}

func decode(s string, base int) (uint64, bool) {
	var n uint64
	for i := 0; i < len(s); i++ {
		v := idValue[s[i]]
		if v < 0 || int(v) >= base {
			return 0, false
		}
		n = n*uint64(base) + uint64(v)
	}
	return n, true
}

// NewID builds the queue ID of a file created at t with inode ino.
func NewID(t time.Time, ino uint64) string {
	return encode(uint64(t.Unix()), base52, 6) + encode(uint64(t.Nanosecond()/1000), base52, 4) + "z" + encode(ino, base51, 1)
}

// ParseID splits a queue ID into its creation time and inode number. It
// is also the validity check for names found in queue directories.
func ParseID(id string) (time.Time, uint64, error) {
	// The inode part never contains z (base 51), the time parts may.
	i := strings.LastIndexByte(id, 'z')
	if len(id) > 64 || i < 10 || i == len(id)-1 {
		return time.Time{}, 0, fmt.Errorf("bad queue ID %q", id)
	}
	sec, ok1 := decode(id[:i-4], base52)
	usec, ok2 := decode(id[i-4:i], base52)
	ino, ok3 := decode(id[i+1:], base51)
	if !ok1 || !ok2 || !ok3 || usec >= 1000000 {
		return time.Time{}, 0, fmt.Errorf("bad queue ID %q", id)
	}
	return time.Unix(int64(sec), int64(usec)*1000), ino, nil
}

// ValidID reports whether name is a well-formed queue ID.
func ValidID(name string) bool {
	_, _, err := ParseID(name)
	return err == nil
}

// hashDirs returns the hashed subdirectory levels for an ID: one
// hexadecimal digit per level of the 5-digit hexadecimal microseconds of
// its creation time, as Postfix does for long IDs, so the
// files fan out into 0-9A-F.
func hashDirs(id string, depth int) []string {
	t, _, err := ParseID(id)
	if err != nil || depth <= 0 {
		return nil
	}
	hex := fmt.Sprintf("%05X", t.Nanosecond()/1000)
	out := make([]string, 0, depth)
	for i := 0; i < depth && i < len(hex); i++ {
		out = append(out, hex[i:i+1])
	}
	return out
}
