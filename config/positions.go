package config

import (
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// keyPos is where a key-value pair sits in the TOML source.
type keyPos struct {
	line       int
	start, end int  // byte range of the whole "key = value" expression
	valueStart int  // byte offset where the value begins
	table      bool // a [table] or [[array]] header; start is its line
}

// positions maps each key of the document to its position. Keys are dotted
// paths; entries of an array of tables carry their index, so the third
// [[service]] table's listen key is "service.2.listen" and the table header
// itself is "service.2".
func positions(data []byte) (map[string]keyPos, error) {
	out := map[string]keyPos{}
	var p unstable.Parser
	p.Reset(data)
	arrayCount := map[string]int{}
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = table[:0]
			it := e.Key()
			var first unstable.Node
			for it.Next() {
				if len(table) == 0 {
					first = *it.Node()
				}
				table = append(table, string(it.Node().Data))
			}
			path := strings.Join(table, ".")
			// A sub-table of the latest array entry ([service.overrides]
			// after [[service]]) belongs to that entry.
			if len(table) > 1 {
				if n, ok := arrayCount[table[0]]; ok && e.Kind == unstable.Table {
					table = append([]string{table[0], strconv.Itoa(n - 1)}, table[1:]...)
					path = strings.Join(table, ".")
				}
			}
			if e.Kind == unstable.ArrayTable {
				n := arrayCount[path]
				arrayCount[path] = n + 1
				table = append(table, strconv.Itoa(n))
				path = strings.Join(table, ".")
			}
			sh := p.Shape(first.Raw)
			lineStart := sh.Start.Offset - (sh.Start.Column - 1)
			out[path] = keyPos{line: sh.Start.Line, start: lineStart, end: -1, table: true}
		case unstable.KeyValue:
			parts := append([]string(nil), table...)
			it := e.Key()
			var first, last unstable.Node
			for it.Next() {
				if len(parts) == len(table) {
					first = *it.Node()
				}
				last = *it.Node()
				parts = append(parts, string(it.Node().Data))
			}
			// The value starts after the '=' that follows the last key part.
			vs := int(last.Raw.Offset + last.Raw.Length)
			for vs < len(data) && data[vs] != '=' {
				vs++
			}
			vs++
			for vs < len(data) && (data[vs] == ' ' || data[vs] == '\t') {
				vs++
			}
			out[strings.Join(parts, ".")] = keyPos{
				line:       p.Shape(first.Raw).Start.Line,
				start:      int(e.Raw.Offset),
				end:        int(e.Raw.Offset + e.Raw.Length),
				valueStart: vs,
			}
		}
	}
	return out, p.Error()
}
