package maps

import "strings"

// indexedTable is a hash: or cdb: table: a CDB file built by postmap.
type indexedTable struct{ r *cdbReader }

func openIndexed(path string) (table, error) {
	r, err := openCDB(path)
	if err != nil {
		return nil, err
	}
	return indexedTable{r}, nil
}

func (t indexedTable) lookup(key string) (string, bool, error) {
	v, ok, err := t.r.get([]byte(key))
	if err == nil && !ok {
		// A table built with postmap -N stores the terminating NUL.
		v, ok, err = t.r.get([]byte(key + "\x00"))
	}
	if err != nil || !ok {
		return "", false, err
	}
	return strings.TrimSuffix(string(v), "\x00"), true, nil
}
