package maps

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// benchTable writes a 100,000-entry source table.
func benchTable(b *testing.B) (string, []string) {
	b.Helper()
	dir := b.TempDir()
	path := filepath.Join(dir, "virtual")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	keys := make([]string, 0, 100000)
	for i := 0; i < 100000; i++ {
		k := fmt.Sprintf("user%d@domain%d.example", i, i%500)
		keys = append(keys, k)
		fmt.Fprintf(w, "%s mailbox%d@store.example\n", k, i)
	}
	w.Flush()
	f.Close()
	return path, keys
}

// BenchmarkPostmapBuild is the time postmap takes to build a
// 100,000-entry hash table.
func BenchmarkPostmapBuild(b *testing.B) {
	path, _ := benchTable(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Build("hash", path, BuildOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookup compares lookups per second in a 100,000-entry table:
// hash (CDB file), cdb, texthash (in memory), and a regexp table (whose
// cost grows with its number of rules, so it gets 100 rules, a realistic
// size for a pattern table).
func BenchmarkLookup(b *testing.B) {
	path, keys := benchTable(b)
	for _, typ := range []string{"hash", "cdb"} {
		if _, err := Build(typ, path, BuildOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	reFile := filepath.Join(b.TempDir(), "re")
	f, _ := os.Create(reFile)
	for i := 0; i < 100; i++ {
		fmt.Fprintf(f, "/^user%d@domain[0-9]+\\.example$/ rule%d\n", i*1000, i)
	}
	fmt.Fprintf(f, "/@domain[0-9]+\\.example$/ catchall\n")
	f.Close()
	for _, spec := range []string{"hash:" + path, "cdb:" + path, "texthash:" + path, "regexp:" + reFile} {
		m := mustOpen(b, spec)
		if err := m.Check(); err != nil {
			b.Fatal(err)
		}
		b.Run(m.Type, func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, ok, err := m.Lookup(keys[i%len(keys)]); err != nil || !ok {
						b.Fatalf("lookup %q: %v %v", keys[i%len(keys)], ok, err)
					}
					i += 7919
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
		})
	}
}
