package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"mailsrv/config"
	"mailsrv/maps"
)

type postmapFlags struct {
	query, del                        string
	dump, add, withNUL, noNUL, noFold bool
	replace, quietDups                bool
}

// newPostmap builds postmap (aliases=false) or postalias (aliases=true).
func newPostmap(g *globals, aliases bool) *cobra.Command {
	f := &postmapFlags{}
	name := "postmap"
	what := "lookup tables"
	if aliases {
		name, what = "postalias", "alias tables"
	}
	cmd := &cobra.Command{
		Use:   name + " [-NnfrwSi] [-q KEY|-] [-d KEY|-] [-s] [type:]file ...",
		Short: "Build and query " + what,
		Long: name + ` builds the indexed table type:file.db (hash) or .cdb (cdb) from the
text file, atomically; without type: the default_database_type is used.

  -q KEY   look KEY up (exactly; "-" reads keys from standard input) in the
           listed tables of any type, print the value; exit 0 found, 1 not
  -d KEY   delete KEY ("-": keys from standard input); exit 0 deleted, 1 not
  -s       print every entry of an indexed table
  -i       add entries from standard input to an indexed table
  -N / -n  store keys and values with / without a terminating NUL
  -f       do not fold keys to lower case
  -r / -w  on duplicate keys, keep the last / keep the first silently

Exit status 2 means an error.`,
		RunE: func(c *cobra.Command, args []string) error {
			return runPostmap(g, f, aliases, name, args, c.InOrStdin(), c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.query, "query", "q", "", "look up a key")
	fl.StringVarP(&f.del, "delete", "d", "", "delete a key")
	fl.BoolVarP(&f.dump, "show", "s", false, "show all entries")
	fl.BoolVarP(&f.add, "incremental", "i", false, "add entries from standard input")
	fl.BoolVarP(&f.withNUL, "nul", "N", false, "include the terminating NUL")
	fl.BoolVarP(&f.noNUL, "no-nul", "n", false, "leave out the terminating NUL")
	fl.BoolVarP(&f.noFold, "no-fold", "f", false, "do not fold keys to lower case")
	fl.BoolVarP(&f.replace, "replace", "r", false, "later duplicates replace earlier ones")
	fl.BoolVarP(&f.quietDups, "ignore-duplicates", "w", false, "ignore duplicates silently")
	return cmd
}

func runPostmap(g *globals, f *postmapFlags, aliases bool, name string, args []string, in io.Reader, out, errOut io.Writer) error {
	// postmap works without a configuration file (Postfix's own test
	// idiom, postmap -q KEY regexp:FILE), with the defaults.
	cfg, err := config.Load(g.file())
	if errors.Is(err, os.ErrNotExist) {
		cfg, err = config.Parse(g.file(), nil)
	}
	if err != nil {
		return exitf(2, "fatal: %v", err)
	}
	warn := func(format string, a ...any) {
		fmt.Fprintf(errOut, "%s: warning: %s\n", name, fmt.Sprintf(format, a...))
	}
	if len(args) == 0 {
		if !aliases {
			return exitf(2, "fatal: usage: postmap [options] [type:]file...")
		}
		args = cfg.Params.AliasDatabase
	}
	opts := maps.BuildOptions{Aliases: aliases, NoFold: f.noFold, WithNUL: f.withNUL && !f.noNUL, Replace: f.replace, QuietDups: f.quietDups, Warn: warn}
	specs := make([]string, len(args))
	for i, a := range args {
		if !strings.Contains(a, ":") {
			a = cfg.Params.DefaultDatabaseType + ":" + a
		}
		specs[i] = a
	}

	switch {
	case f.query != "":
		return postmapQuery(f, specs, in, out)
	case f.del != "":
		keys := []string{f.del}
		if f.del == "-" {
			keys = readKeys(in)
		}
		deleted := 0
		for _, s := range specs {
			typ, file, _ := strings.Cut(s, ":")
			n, err := maps.Delete(typ, file, opts, keys)
			if err != nil {
				return exitf(2, "fatal: %s: %v", s, err)
			}
			deleted += n
		}
		if deleted == 0 {
			return exitf(1, "")
		}
		return nil
	case f.dump:
		for _, s := range specs {
			typ, file, _ := strings.Cut(s, ":")
			entries, err := maps.Dump(typ, file)
			if err != nil {
				return exitf(2, "fatal: %s: %v", s, err)
			}
			for _, e := range entries {
				if aliases {
					fmt.Fprintf(out, "%s:\t%s\n", e.Key, e.Value)
				} else {
					fmt.Fprintf(out, "%s\t%s\n", e.Key, e.Value)
				}
			}
		}
		return nil
	case f.add:
		for _, s := range specs {
			typ, file, _ := strings.Cut(s, ":")
			if _, err := maps.Add(typ, file, opts, in); err != nil {
				return exitf(2, "fatal: %s: %v", s, err)
			}
		}
		return nil
	}
	for _, s := range specs {
		typ, file, _ := strings.Cut(s, ":")
		if _, err := maps.Build(typ, file, opts); err != nil {
			return exitf(2, "fatal: %s: %v", s, err)
		}
	}
	return nil
}

func readKeys(in io.Reader) []string {
	var keys []string
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if k := strings.TrimSpace(sc.Text()); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// postmapQuery answers -q: the first table that has the key wins.
func postmapQuery(f *postmapFlags, specs []string, in io.Reader, out io.Writer) error {
	tables := make([]*maps.Map, 0, len(specs))
	for _, s := range specs {
		m, err := maps.Open(s)
		if err != nil {
			return exitf(2, "fatal: %v", err)
		}
		if err := m.Check(); err != nil {
			return exitf(2, "fatal: %s: %v", s, err)
		}
		tables = append(tables, m)
	}
	lookup := func(key string) (string, bool, error) {
		for _, m := range tables {
			get := m.Lookup
			if f.noFold {
				get = m.LookupExact
			}
			v, ok, err := get(key)
			if err != nil || ok {
				return v, ok, err
			}
		}
		return "", false, nil
	}
	if f.query != "-" {
		v, ok, err := lookup(f.query)
		if err != nil {
			return exitf(2, "fatal: %v", err)
		}
		if !ok {
			return exitf(1, "")
		}
		fmt.Fprintln(out, v)
		return nil
	}
	found := false
	for _, key := range readKeys(in) {
		v, ok, err := lookup(key)
		if err != nil {
			return exitf(2, "fatal: %v", err)
		}
		if ok {
			found = true
			fmt.Fprintf(out, "%s\t%s\n", key, v)
		}
	}
	if !found {
		return exitf(1, "")
	}
	return nil
}
