package cli

import (
	"fmt"
	"io"
	"sort"

	"github.com/spf13/cobra"

	"mailsrv/config"
)

type postconfFlags struct {
	nonDefault, defaults, edit, expand, hideName, services bool
	remove                                                 bool
}

func newPostconf(g *globals) *cobra.Command {
	f := &postconfFlags{}
	cmd := &cobra.Command{
		Use:   "postconf [-n|-d|-x|-h] [name ...] | -e name=value ... | -X name ... | -M",
		Short: "Show or change configuration parameters",
		Long: `postconf prints the effective configuration parameters as "name = value",
sorted by name, the values unexpanded as written (-x expands them).

  -n   only the parameters set in the configuration file
  -d   the default values instead of the effective ones
  -x   expand $name references in values
  -h   values only, without "name = "
  -e   edit the file: set name=value (value in main.cf form); comments and
       order in the file are kept, and the result is validated before it
       atomically replaces the file
  -X   edit the file: remove the named parameters (back to their defaults)
  -M   show the [[service]] entries in master.cf form`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPostconf(g, f, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	// Postfix's -h means "values only", so help is --help alone.
	fl.Bool("help", false, "help for postconf")
	fl.BoolVarP(&f.nonDefault, "non-default", "n", false, "show only parameters set in the file")
	fl.BoolVarP(&f.defaults, "defaults", "d", false, "show default values")
	fl.BoolVarP(&f.edit, "edit", "e", false, "set name=value in the file")
	fl.BoolVarP(&f.remove, "remove", "X", false, "remove parameters from the file")
	fl.BoolVarP(&f.expand, "expand", "x", false, "expand $name in values")
	fl.BoolVarP(&f.hideName, "hide-name", "h", false, "print values only")
	fl.BoolVarP(&f.services, "master", "M", false, "show services")
	return cmd
}

func runPostconf(g *globals, f *postconfFlags, args []string, out, errOut io.Writer) error {
	if f.edit || f.remove {
		if len(args) == 0 {
			return exitf(1, "fatal: -e and -X need at least one argument")
		}
		var err error
		if f.edit {
			err = config.Edit(g.file(), args, nil)
		} else {
			err = config.Edit(g.file(), nil, args)
		}
		if err != nil {
			return exitf(1, "fatal: %v", err)
		}
		return nil
	}
	var cfg *config.Config
	var err error
	if f.defaults {
		// Defaults need no file.
		cfg, err = config.Parse(g.file(), nil)
		if err != nil {
			return exitf(1, "fatal: %v", err)
		}
	} else if cfg, err = g.load(); err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(errOut, "postconf: warning: %s\n", w)
	}
	if f.services {
		return printServices(cfg, out)
	}

	names := args
	if len(names) == 0 {
		if f.nonDefault {
			names = cfg.SetNames()
		} else {
			seen := map[string]bool{}
			for _, n := range append(config.Names(), cfg.SetNames()...) {
				if !seen[n] {
					seen[n] = true
					names = append(names, n)
				}
			}
			sort.Strings(names)
		}
	}
	var unknown []string
	for _, name := range names {
		var v string
		var ok bool
		switch {
		case f.defaults:
			v, ok = cfg.Default(name)
		case f.expand:
			v, ok = cfg.Params.Lookup(name)
			if !ok {
				v, ok = cfg.Raw(name)
			}
		default:
			v, ok = cfg.Raw(name)
		}
		if !ok {
			unknown = append(unknown, name)
			continue
		}
		if f.nonDefault && len(args) > 0 && !cfg.IsSet(name) {
			continue
		}
		if _, implemented := config.Lookup(name); !implemented && config.IsPostfixParameter(name) && len(args) > 0 {
			fmt.Fprintf(errOut, "postconf: warning: %s is a Postfix parameter that mailsrv does not implement\n", name)
		}
		if f.hideName {
			fmt.Fprintln(out, v)
		} else if v == "" {
			fmt.Fprintf(out, "%s =\n", name)
		} else {
			fmt.Fprintf(out, "%s = %s\n", name, v)
		}
	}
	for _, n := range unknown {
		fmt.Fprintf(errOut, "postconf: warning: %s: unknown parameter\n", n)
	}
	if len(unknown) > 0 {
		return exitf(1, "")
	}
	return nil
}

// printServices prints [[service]] entries as master.cf lines.
func printServices(cfg *config.Config, out io.Writer) error {
	for _, s := range cfg.Services {
		listen := s.Name
		if s.Type == "inet" {
			listen = s.Listen
		}
		limit := "-"
		if s.ProcessLimit > 0 {
			limit = fmt.Sprint(s.ProcessLimit)
		}
		fmt.Fprintf(out, "%-10s %-5s %-5s %-5s %-5s %-5s %-5s %s", listen, s.Type, "-", "-", "n", "-", limit, s.Command)
		for _, n := range s.OverrideNames() {
			v, _ := s.Override(n)
			fmt.Fprintf(out, "\n  -o %s=%s", n, v)
		}
		fmt.Fprintln(out)
	}
	return nil
}
