// Package cli holds mailsrv's commands, named and behaving like Postfix's
// admin tools (postfix, postconf, …). Each command lives in its own file and
// stays thin: it parses flags and calls the packages that do the work.
package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"mailsrv/config"
)

// globals are the flags every command shares.
type globals struct {
	configFile string
	verbose    bool
}

// exitError carries a process exit code (Postfix tools use 1 for "not
// found"/"not running" and other failures).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// exitf returns an error that makes Main print msg (if any) and exit with
// code.
func exitf(code int, format string, args ...any) error {
	return &exitError{code: code, msg: fmt.Sprintf(format, args...)}
}

// NewRoot builds the mailsrv command tree.
func NewRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "mailsrv",
		Short: "A mail server with Postfix's architecture in one binary",
		Long: `mailsrv is a mail transfer agent that rebuilds Postfix's architecture as one
Go binary, administered with the Postfix commands (postfix, postconf, ...).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       config.Version,
	}
	root.PersistentFlags().StringVarP(&g.configFile, "config", "c", "", "configuration file (default $MAILSRV_CONFIG or "+config.DefaultFile+")")
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "debug output on standard error (not in the mail log)")
	newaliases := newPostmap(g, true)
	newaliases.Use = "newaliases"
	newaliases.Short = "Rebuild the alias databases (postalias $alias_database)"
	root.AddCommand(newPostconf(g), newPostfix(g), newPostqueue(g), newPostsuper(g), newPostcat(g),
		newPostmap(g, false), newPostmap(g, true), newaliases, newSendmail(g), newSaslpasswd(g))
	return root
}

// file is the configuration file to use.
func (g *globals) file() string {
	if g.configFile != "" {
		return g.configFile
	}
	if f := os.Getenv("MAILSRV_CONFIG"); f != "" {
		return f
	}
	return config.DefaultFile
}

// load reads the configuration or returns an error naming the problems.
func (g *globals) load() (*config.Config, error) {
	cfg, err := config.Load(g.file())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, exitf(1, "fatal: open %s: no such file (use -c FILE or MAILSRV_CONFIG)", g.file())
		}
		return nil, exitf(1, "fatal: %v", err)
	}
	return cfg, nil
}

// Links maps the names mailsrv may be invoked as (through a symlink such as
// /usr/sbin/sendmail -> mailsrv) to the command line they stand for.
var Links = map[string][]string{
	"sendmail":   {"sendmail"},
	"mailq":      {"postqueue", "-p"},
	"newaliases": {"newaliases"},
	"postqueue":  {"postqueue"},
	"postsuper":  {"postsuper"},
	"postmap":    {"postmap"},
	"postconf":   {"postconf"},
	"postcat":    {"postcat"},
	"postalias":  {"postalias"},
	"postfix":    {"postfix"},
}

// Main runs the command line and returns the process exit code. argv0 is
// the name the binary was invoked as; for a link name the arguments are
// those of the matching subcommand.
func Main(root *cobra.Command, argv0 string, args []string) int {
	if pre, ok := Links[argv0]; ok {
		if c, _, err := root.Find(pre[:1]); err != nil || c == root {
			fmt.Fprintf(os.Stderr, "%s: this version of mailsrv has no %s command yet\n", argv0, pre[0])
			return 1
		}
		args = append(append([]string(nil), pre...), args...)
	}
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(os.Stderr, prefix(argv0, ee.msg))
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, prefix(argv0, err.Error()))
	return 1
}

func prefix(argv0, msg string) string {
	if argv0 == "" {
		argv0 = "mailsrv"
	}
	return argv0 + ": " + msg
}
