// Command mailsrv is a mail server with Postfix's architecture in one
// binary. Invoked through a link named like a Postfix tool (sendmail, mailq,
// postqueue, postconf, …) it behaves as that tool.
package main

import (
	"os"
	"path/filepath"

	"mailsrv/cli"
	"mailsrv/delivery/local"
	"mailsrv/delivery/spawn"
)

func main() {
	// local(8) runs its per-user work in children of this binary.
	if local.IsChild() {
		os.Exit(local.ChildMain())
	}
	// The privileged helper the daemon starts before dropping root.
	if spawn.IsHelper() {
		os.Exit(spawn.HelperMain())
	}
	os.Exit(cli.Main(cli.NewRoot(), filepath.Base(os.Args[0]), os.Args[1:]))
}
